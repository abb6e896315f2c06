//! The artifact's validating reader: any bytes are a model or a named refusal; a model
//! that loads answers every lookup without panicking.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(m) = cooc_model::Model::from_bytes(data, "fuzz") {
        for i in 0..m.n_items().min(64) {
            let _ = m.key(i);
            let _ = m.neighbours(i);
            let _ = m.title(i);
            let _ = m.author(i);
            let _ = m.find(m.key(i));
        }
        let _ = m.identity_digest();
        // Basket answers walk the neighbour lists and the popularity list together.
        let seeds: Vec<(u32, f32)> = (0..m.n_items().min(4) as u32).map(|i| (i, 1.0)).collect();
        let _ = cooc_model::basket::recommend(&m, &seeds, &[0], 8);
    }
});
