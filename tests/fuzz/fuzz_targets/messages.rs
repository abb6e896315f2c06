//! The gang's message decoders (keys, rows, baskets, top-K blocks, summaries, outcomes).
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| cooc::fuzz::messages(data));
