//! cooc-serve's request parsing: the first byte picks the route (`/recommend` query,
//! `:predict` body, or with bit 4 `:recommend` body) and the model's key kind; the rest is
//! the query string or the body.
#![no_main]
use std::sync::OnceLock;

use cooc_serve::fuzz::Harness;
use libfuzzer_sys::fuzz_target;

static INT: OnceLock<Harness> = OnceLock::new();
static STR: OnceLock<Harness> = OnceLock::new();

fuzz_target!(|data: &[u8]| {
    let Some((&pick, rest)) = data.split_first() else {
        return;
    };
    let h = if pick & 2 == 0 {
        INT.get_or_init(|| Harness::new(false))
    } else {
        STR.get_or_init(|| Harness::new(true))
    };
    if pick & 1 == 0 {
        h.recommend(rest);
    } else if pick & 4 != 0 {
        h.basket(rest);
    } else {
        h.predict(rest);
    }
});
