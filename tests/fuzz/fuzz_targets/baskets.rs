//! The one-basket-per-line reader.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| cooc::fuzz::baskets(data));
