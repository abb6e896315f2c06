//! Dense ids for raw key columns: integers when every key is one (ordered numerically),
//! else strings (ordered bytewise); id `i` is the i-th key in that order.

use std::sync::atomic::{AtomicU32, Ordering::Relaxed};

use rayon::prelude::*;
use rustc_hash::FxHashMap;

use cooc_model::Keys;

use super::csv::parse_int;

/// One column of a chunk before ids are assigned.
pub(crate) enum Col {
    Int(Vec<i64>),
    Str { ids: Vec<u32>, keys: Vec<Box<[u8]>> },
}

impl Col {
    pub(crate) fn len(&self) -> usize {
        match self {
            Col::Int(v) => v.len(),
            Col::Str { ids, .. } => ids.len(),
        }
    }
}

/// Parses a key column as integers, or interns strings once integers have failed.
pub(crate) struct ColBuilder {
    pub(crate) as_str: bool,
    pub(crate) ints: Vec<i64>,
    pub(crate) ids: Vec<u32>,
    pub(crate) dict: FxHashMap<Box<[u8]>, u32>,
    pub(crate) keys: Vec<Box<[u8]>>,
}

/// Why a key was not taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum KeyErr {
    /// Not an integer: the column must be re-read as strings.
    NotInt,
    /// Not valid UTF-8: a bad row.
    NotUtf8,
}
impl ColBuilder {
    pub(crate) fn new(as_str: bool) -> Self {
        ColBuilder {
            as_str,
            ints: Vec::new(),
            ids: Vec::new(),
            dict: FxHashMap::default(),
            keys: Vec::new(),
        }
    }

    #[inline]
    pub(crate) fn push(&mut self, field: &[u8]) -> Result<(), KeyErr> {
        if self.as_str {
            let next = self.keys.len() as u32;
            let id = match self.dict.get(field) {
                Some(&id) => id,
                None => {
                    // Validated once per distinct key: a key that is not UTF-8 would be
                    // changed into one no client can look up.
                    if std::str::from_utf8(field).is_err() {
                        return Err(KeyErr::NotUtf8);
                    }
                    self.dict.insert(field.into(), next);
                    self.keys.push(field.into());
                    next
                }
            };
            self.ids.push(id);
            Ok(())
        } else {
            match parse_int(field) {
                Some(v) => {
                    self.ints.push(v);
                    Ok(())
                }
                None => Err(KeyErr::NotInt),
            }
        }
    }

    pub(crate) fn finish(self) -> Col {
        if self.as_str {
            Col::Str {
                ids: self.ids,
                keys: self.keys,
            }
        } else {
            Col::Int(self.ints)
        }
    }
}

/// Turns chunked raw keys into dense ids in key order, freeing each chunk as it goes.
pub(crate) fn assign_ids(chunks: Vec<Col>) -> (Vec<Vec<u32>>, Keys) {
    if chunks.iter().any(|c| matches!(c, Col::Str { .. })) {
        return assign_str(chunks);
    }
    let ints: Vec<Vec<i64>> = chunks
        .into_iter()
        .map(|c| match c {
            Col::Int(v) => v,
            Col::Str { .. } => unreachable!(),
        })
        .collect();
    let total: usize = ints.iter().map(Vec::len).sum();
    let (min, max) = ints
        .par_iter()
        .flat_map_iter(|v| v.iter().copied())
        .fold(
            || (i64::MAX, i64::MIN),
            |(lo, hi), x| (lo.min(x), hi.max(x)),
        )
        .reduce(|| (i64::MAX, i64::MIN), |a, b| (a.0.min(b.0), a.1.max(b.1)));
    if total == 0 {
        return (
            ints.into_iter().map(|_| Vec::new()).collect(),
            Keys::Int(Vec::new()),
        );
    }
    let span = (max as i128 - min as i128 + 1) as u128;
    if span <= (4 * total as u128).max(1 << 20) && span < (1 << 31) {
        // Dense table indexed by key - min: no hashing on the hot path.
        // Keys present are marked by all threads at once (each store writes the same 0).
        let marks: Vec<AtomicU32> = (0..span).map(|_| AtomicU32::new(u32::MAX)).collect();
        ints.par_iter().for_each(|v| {
            for &x in v {
                marks[(x - min) as usize].store(0, Relaxed);
            }
        });
        let mut table: Vec<u32> = marks.into_iter().map(AtomicU32::into_inner).collect();
        let mut keys = Vec::new();
        for (off, slot) in table.iter_mut().enumerate() {
            if *slot == 0 {
                *slot = keys.len() as u32;
                keys.push(min + off as i64);
            }
        }
        let ids = ints
            .into_par_iter()
            .map(|v| v.iter().map(|&x| table[(x - min) as usize]).collect())
            .collect();
        (ids, Keys::Int(keys))
    } else {
        let mut set: FxHashMap<i64, u32> = FxHashMap::default();
        for v in &ints {
            for &x in v {
                set.insert(x, 0);
            }
        }
        let mut keys: Vec<i64> = set.keys().copied().collect();
        keys.sort_unstable();
        for (i, k) in keys.iter().enumerate() {
            set.insert(*k, i as u32);
        }
        let ids = ints
            .into_par_iter()
            .map(|v| v.iter().map(|x| set[x]).collect())
            .collect();
        (ids, Keys::Int(keys))
    }
}

fn assign_str(chunks: Vec<Col>) -> (Vec<Vec<u32>>, Keys) {
    // Merge chunk dictionaries, then renumber in bytewise key order.
    let mut global: FxHashMap<Box<[u8]>, u32> = FxHashMap::default();
    let mut keys: Vec<Box<[u8]>> = Vec::new();
    let mut local_ids = Vec::with_capacity(chunks.len());
    let mut translations = Vec::with_capacity(chunks.len());
    let mut itoa_buf = itoa::Buffer::new();
    for c in chunks {
        let (ids, local_keys): (Vec<u32>, Vec<Box<[u8]>>) = match c {
            Col::Str { ids, keys } => (ids, keys),
            // A chunk that saw only integers while another saw strings.
            Col::Int(v) => {
                let mut dict: FxHashMap<i64, u32> = FxHashMap::default();
                let mut lk = Vec::new();
                let ids = v
                    .iter()
                    .map(|&x| {
                        *dict.entry(x).or_insert_with(|| {
                            lk.push(itoa_buf.format(x).as_bytes().into());
                            lk.len() as u32 - 1
                        })
                    })
                    .collect();
                (ids, lk)
            }
        };
        let tr: Vec<u32> = local_keys
            .into_iter()
            .map(|k| {
                let next = keys.len() as u32;
                *global.entry(k.clone()).or_insert_with(|| {
                    keys.push(k);
                    next
                })
            })
            .collect();
        local_ids.push(ids);
        translations.push(tr);
    }
    let mut order: Vec<u32> = (0..keys.len() as u32).collect();
    order.sort_unstable_by(|&a, &b| keys[a as usize].cmp(&keys[b as usize]));
    let mut rank = vec![0u32; keys.len()];
    for (new, &old) in order.iter().enumerate() {
        rank[old as usize] = new as u32;
    }
    let ids = local_ids
        .into_par_iter()
        .zip(translations)
        .map(|(ids, tr)| ids.iter().map(|&l| rank[tr[l as usize] as usize]).collect())
        .collect();
    let sorted = order
        .iter()
        .map(|&o| String::from_utf8_lossy(&keys[o as usize]).into_owned())
        .collect();
    (ids, Keys::Str(sorted))
}
