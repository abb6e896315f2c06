//! One basket per line (the arules/FIMI format): comma separated when the file has a comma
//! anywhere, else whitespace separated; surrounding spaces trimmed.
//!
//! Basket files carry no time. For a hold-out, each row gets a stand-in "time", a hash of
//! its line and position ([`holdout_rank`]): the hold-out of the latest order then holds out
//! one pseudo-random item of every basket of two or more, the same one on any gang.

use std::path::Path;

use super::csv::parse_int;
use super::ids::{assign_ids, ColBuilder};
use super::{io_err, strip_bom, Interactions, KeyKind};
use crate::error::InputError;

/// The stand-in time of the item at `position` of line `line` (both from 0), for the
/// hold-out of basket files: a fixed mix of the two, so the held-out item depends on
/// neither the order of processing nor the gang.
pub(crate) fn holdout_rank(line: u64, position: u64) -> i64 {
    let mut x = line
        .wrapping_mul(0x9E37_79B9_7F4A_7C15)
        .wrapping_add(position)
        .wrapping_add(0x2545_F491_4F6C_DD1D);
    // splitmix64's finaliser.
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    (x ^ (x >> 31)) as i64
}

/// Reads a one-basket-per-line file; with `need_time`, each row's [`holdout_rank`] as its
/// time.
pub fn read_baskets(
    path: &Path,
    keys: KeyKind,
    need_time: bool,
) -> Result<Interactions, InputError> {
    let data = std::fs::read(path).map_err(io_err(path))?;
    let body = strip_bom(&data);
    let text = std::str::from_utf8(body).map_err(|e| {
        let line = 1 + memchr::memchr_iter(b'\n', &body[..e.valid_up_to()]).count() as u64;
        InputError::Row {
            path: path.to_owned(),
            line,
            msg: "not UTF-8".into(),
        }
    })?;
    let comma = text.contains(',');
    fn split(line: &str, comma: bool) -> Vec<&str> {
        if comma {
            line.split(',').map(str::trim).collect()
        } else {
            line.split_ascii_whitespace().collect()
        }
    }
    let tokens = |line| split(line, comma);
    let all_int = text
        .lines()
        .flat_map(tokens)
        .all(|t| t.is_empty() || parse_int(t.as_bytes()).is_some());
    if keys == KeyKind::Int && !all_int {
        return Err(InputError::File {
            path: path.to_owned(),
            msg: "--keys int: an item is not a canonical integer (digits, no sign, no leading zero); use --keys string or auto".into(),
        });
    }
    let mut item = ColBuilder::new(keys == KeyKind::String || !all_int);
    let mut basket = Vec::new();
    let mut time = Vec::new();
    let mut n_baskets = 0u32;
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        for (position, t) in tokens(line).into_iter().enumerate() {
            if need_time {
                time.push(holdout_rank(i as u64, position as u64));
            }
            if t.is_empty() {
                return Err(InputError::Row {
                    path: path.to_owned(),
                    line: i as u64 + 1,
                    msg: "empty item (two separators in a row, or a trailing separator)".into(),
                });
            }
            let _ = item.push(t.as_bytes());
            basket.push(n_baskets);
        }
        n_baskets += 1;
    }
    let n_rows = basket.len() as u64;
    let (item, item_keys) = assign_ids(vec![item.finish()]);
    Ok(Interactions {
        basket: vec![basket],
        item,
        time: if need_time { vec![time] } else { Vec::new() },
        n_baskets: n_baskets as usize,
        item_keys,
        n_rows,
        fingerprint: format!("crc32:{:08x}:len={}", crc32fast::hash(&data), data.len()),
    })
}
