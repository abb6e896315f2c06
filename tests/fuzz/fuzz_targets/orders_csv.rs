//! The orders CSV reader, with chunk boundaries anywhere (the first byte picks the chunk
//! size and the basket rule).
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Some((&first, rest)) = data.split_first() {
        cooc::fuzz::orders_csv(rest, first & 0x7f, first & 0x80 != 0);
    }
});
