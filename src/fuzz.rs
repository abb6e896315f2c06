//! Entry points for the coverage-guided fuzz targets in `tests/fuzz`: each feeds arbitrary
//! bytes to a parser that reads untrusted input and must answer with a value or a named
//! error, never a panic. Not part of the API (hidden from the docs).

use std::io::Write as _;

use crate::csr::Csr;
use crate::input::{self, BasketBy, KeyKind, KeyMode, OrdersFile, OrdersOptions};
use crate::pipeline::codec::{self, phase, RowsOut, Summary, WriteOutcome};

/// Every decoder of the gang's messages, on the same bytes (a peer with the secret, or a
/// bug, could send any of them anything).
pub fn messages(data: &[u8]) {
    let _ = codec::decode_keys(data, 1, phase::KEYS);
    let _ = RowsOut::decode(data, 1);
    let mut csr = Csr {
        offsets: vec![0],
        values: Vec::new(),
    };
    let _ = codec::append_baskets(&mut csr, data, 1, 1000, 1 << 16);
    if let Ok(words) = bytemuck::try_cast_slice::<u8, u32>(data) {
        let _ = codec::basket_starts(words, 1, 1000, 0, &mut Vec::new());
    }
    let _ = codec::decode_topk(data, 1);
    let _ = Summary::decode(data, 1);
    let _ = WriteOutcome::decode(data);
    let _ = crate::gang::wire::decode::<Option<input::ParseStop>>(data);
}

/// The orders CSV reader on `data` as a file, cut into chunks of `chunk` bytes (1..=256, so
/// rows straddle chunk boundaries), each chunk parsed alone as a rank would, then all at
/// once.
pub fn orders_csv(data: &[u8], chunk: u8, window: bool) {
    let Ok(mut f) = tempfile::NamedTempFile::new() else {
        return;
    };
    if f.write_all(data).is_err() {
        return;
    }
    let opts = OrdersOptions {
        basket_by: if window {
            BasketBy::Window(60_000_000)
        } else {
            BasketBy::Customer
        },
        need_time: true,
    };
    let Ok(file) = OrdersFile::open(f.path(), opts, u64::from(chunk.max(1))) else {
        return;
    };
    let mut mode = KeyMode::default();
    for _ in 0..4 {
        for c in 0..file.n_chunks() {
            let _ = file.parse(|i| i == c, mode);
        }
        match file.parse(|_| true, mode) {
            Ok(raw) => {
                let _ = input::assign_ids(raw.item);
                return;
            }
            Err(stop) => {
                if !mode.learn(&stop) {
                    return;
                }
            }
        }
    }
}

/// The basket-file reader on `data` as a file.
pub fn baskets(data: &[u8]) {
    let Ok(mut f) = tempfile::NamedTempFile::new() else {
        return;
    };
    if f.write_all(data).is_ok() {
        for keys in [KeyKind::Auto, KeyKind::String] {
            let _ = input::read_baskets(f.path(), keys, true);
        }
    }
}
