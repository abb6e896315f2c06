//! The pipeline's messages between ranks, each with its encoder and a decoder that checks
//! everything a peer could get wrong (lengths, ranges, order) and names the peer and the
//! phase: item keys, rows bound for a basket owner, baskets bound for a row owner, top-K
//! blocks, rank summaries and the outcome of the write.

use cooc_model::Keys;
use rustc_hash::FxHashMap;
use serde::{Deserialize, Serialize};

use crate::csr::Csr;
use crate::eval::EvalPartial;
use crate::gang::wire::{self, Reader, WireError, Writer};
use crate::input::{Col, RawChunks};
use crate::kernel::TopK;

/// Phase names, shared by both ends of each collective.
pub(crate) mod phase {
    pub(crate) const SNAPSHOT: &str = "sharing the database snapshot";
    pub(crate) const KEYS: &str = "merging item keys";
    pub(crate) const OWNERS: &str = "agreeing on basket owners";
    pub(crate) const ROWS: &str = "routing rows to basket owners";
    pub(crate) const BASKET_SIZES: &str = "sizing the baskets' routes";
    pub(crate) const BASKETS: &str = "routing baskets to row owners";
    pub(crate) const MODEL: &str = "gathering the model";
    pub(crate) const SUMMARIES: &str = "gathering summaries";
    pub(crate) const WRITE: &str = "confirming the write";
    pub(crate) const EVALUATIONS: &str = "gathering the evaluations";
    pub(crate) const REFERENCE: &str = "agreeing on the decay's reference time";
    pub(crate) const WEIGHTS: &str = "routing basket weights";
}

fn bad(rank: u32, phase: &'static str, detail: impl Into<String>) -> WireError {
    WireError {
        rank,
        phase,
        detail: detail.into(),
    }
}

/// Sorted item (or basket) keys.
pub(crate) fn encode_keys(keys: &Keys) -> Vec<u8> {
    match keys {
        Keys::Int(v) => Writer::new().value(&false).slice(v).finish(),
        Keys::Str(v) => Writer::new().value(&true).value(v).finish(),
    }
}

/// The inverse of [`encode_keys`]; keys must ascend strictly.
pub(crate) fn decode_keys(bytes: &[u8], from: u32, phase: &'static str) -> Result<Keys, WireError> {
    let mut r = Reader::new(bytes, from, phase);
    let keys = if r.value::<bool>()? {
        Keys::Str(r.value()?)
    } else {
        Keys::Int(r.slice()?)
    };
    let sorted = match &keys {
        Keys::Int(v) => v.windows(2).all(|w| w[0] < w[1]),
        Keys::Str(v) => v.windows(2).all(|w| w[0] < w[1]),
    };
    if !sorted {
        return Err(bad(from, phase, "keys out of order"));
    }
    Ok(keys)
}

/// A basket key of a row bound for another rank.
pub(crate) enum BasketKey<'a> {
    Int(i64),
    Str(&'a [u8]),
}

/// Rows bound for one basket owner: basket keys (integers, or interned strings), global
/// item ids and, when needed, times.
#[derive(Default)]
pub(crate) struct RowsOut {
    ints: Vec<i64>,
    dict: FxHashMap<Box<[u8]>, u32>,
    strs: Vec<Box<[u8]>>,
    str_ids: Vec<u32>,
    items: Vec<u32>,
    time: Vec<i64>,
}

/// Rows received from one rank.
pub(crate) struct RowsIn {
    pub(crate) baskets: Col,
    pub(crate) items: Vec<u32>,
    pub(crate) time: Vec<i64>,
}

impl RowsOut {
    pub(crate) fn push(&mut self, key: BasketKey, item: u32, time: Option<i64>) {
        match key {
            BasketKey::Int(k) => self.ints.push(k),
            BasketKey::Str(k) => {
                let next = self.strs.len() as u32;
                let id = *self.dict.entry(k.into()).or_insert(next);
                if id == next {
                    self.strs.push(k.into());
                }
                self.str_ids.push(id);
            }
        }
        self.items.push(item);
        if let Some(t) = time {
            self.time.push(t);
        }
    }

    /// The message; `str_basket` says the gang's basket keys are strings.
    pub(crate) fn encode(self, str_basket: bool) -> Vec<u8> {
        let mut w = Writer::new();
        w.value(&str_basket);
        if str_basket {
            // Keys of rows whose basket parsed as an integer (windows) travel as text too.
            let mut strs: Vec<Vec<u8>> = self.strs.into_iter().map(Into::into).collect();
            let mut ids = self.str_ids;
            if ids.is_empty() && !self.ints.is_empty() {
                let mut buf = itoa::Buffer::new();
                for (n, k) in self.ints.iter().enumerate() {
                    strs.push(buf.format(*k).as_bytes().to_vec());
                    ids.push(n as u32);
                }
            }
            w.value(&strs).slice(&ids);
        } else {
            w.slice(&self.ints);
        }
        w.slice(&self.items).slice(&self.time).finish()
    }

    /// The inverse of [`RowsOut::encode`].
    pub(crate) fn decode(bytes: &[u8], from: u32) -> Result<RowsIn, WireError> {
        let mut r = Reader::new(bytes, from, phase::ROWS);
        let is_str: bool = r.value()?;
        let baskets = if is_str {
            let keys: Vec<Vec<u8>> = r.value()?;
            let ids: Vec<u32> = r.slice()?;
            if ids.iter().any(|&i| i as usize >= keys.len()) {
                return Err(bad(from, phase::ROWS, "a basket key id out of range"));
            }
            Col::Str {
                ids,
                keys: keys.into_iter().map(Into::into).collect(),
            }
        } else {
            Col::Int(r.slice()?)
        };
        let items: Vec<u32> = r.slice()?;
        let time: Vec<i64> = r.slice()?;
        if baskets.len() != items.len() || !(time.is_empty() || time.len() == items.len()) {
            return Err(bad(from, phase::ROWS, "columns of different lengths"));
        }
        Ok(RowsIn {
            baskets,
            items,
            time,
        })
    }
}

/// Baskets bound for one row owner: `[len, item, item, ...]` back to back, as raw
/// little-endian words.
#[derive(Default)]
pub(crate) struct BasketsOut(Vec<u8>);

impl BasketsOut {
    pub(crate) fn push(&mut self, basket: &[u32]) {
        self.0
            .extend_from_slice(bytemuck::bytes_of(&(basket.len() as u32)));
        self.0.extend_from_slice(bytemuck::cast_slice(basket));
    }

    /// The message, as built (no copy).
    pub(crate) fn encode(self) -> Vec<u8> {
        self.0
    }
}

/// The words of a [`BasketsOut`] message from `from`.
pub(crate) fn basket_words(
    bytes: &[u8],
    from: u32,
) -> Result<std::borrow::Cow<'_, [u32]>, WireError> {
    if !bytes.len().is_multiple_of(4) {
        return Err(bad(
            from,
            phase::BASKETS,
            format!("{} bytes are not whole words", bytes.len()),
        ));
    }
    // Zero-copy when the buffer is aligned for u32 (allocators give at least that).
    Ok(match bytemuck::try_cast_slice::<u8, u32>(bytes) {
        Ok(w) => std::borrow::Cow::Borrowed(w),
        Err(_) => std::borrow::Cow::Owned(bytemuck::pod_collect_to_vec(bytes)),
    })
}

/// Appends the baskets in `words` (from rank `from`) to `csr`, checking first (as
/// [`basket_starts`]) that every basket is sorted, distinct and within `n_items`: a bad
/// message adds nothing.
pub(crate) fn append_baskets(
    csr: &mut Csr,
    words: &[u32],
    from: u32,
    n_items: usize,
) -> Result<(), WireError> {
    let mut starts = Vec::new();
    basket_starts(words, from, n_items, 0, &mut starts)?;
    for at in starts {
        let at = at as usize;
        let len = words[at] as usize;
        csr.values.extend_from_slice(&words[at + 1..at + 1 + len]);
        csr.offsets.push(csr.values.len() as u64);
    }
    Ok(())
}

/// Records where each basket of `words` (from rank `from`, `[len, items]` back to back)
/// will start once `words` is placed at `base`, checking that every basket is sorted,
/// distinct and within `n_items`. On error `starts` may hold some of them.
pub(crate) fn basket_starts(
    words: &[u32],
    from: u32,
    n_items: usize,
    base: u64,
    starts: &mut Vec<u64>,
) -> Result<(), WireError> {
    let mut at = 0usize;
    while at < words.len() {
        let len = words[at] as usize;
        let ok = words.get(at + 1..at + 1 + len).is_some_and(|r| {
            r.windows(2).all(|w| w[0] < w[1]) && r.last().is_none_or(|&x| (x as usize) < n_items)
        });
        if !ok {
            return Err(bad(
                from,
                phase::BASKETS,
                format!("a bad basket at word {at}"),
            ));
        }
        starts.push(base + at as u64);
        at += 1 + len;
    }
    Ok(())
}

/// A rank's block of top-K rows.
pub(crate) fn encode_topk(t: &TopK) -> Vec<u8> {
    Writer::new()
        .slice(&t.indptr)
        .slice(&t.indices)
        .slice(&t.scores)
        .finish()
}

/// The inverse of [`encode_topk`]; the arrays must form a valid CSR block.
pub(crate) fn decode_topk(bytes: &[u8], from: u32) -> Result<TopK, WireError> {
    let mut r = Reader::new(bytes, from, phase::MODEL);
    let t = TopK {
        indptr: r.slice()?,
        indices: r.slice()?,
        scores: r.slice()?,
    };
    let ok = t.indptr.first().is_none_or(|&p| p == 0)
        && t.indptr.windows(2).all(|w| w[0] <= w[1])
        && t.indptr.last().map_or(0, |&p| p as usize) == t.indices.len()
        && t.indices.len() == t.scores.len();
    if !ok {
        return Err(bad(from, phase::MODEL, "inconsistent top-K arrays"));
    }
    Ok(t)
}

/// The checksum of one chunk of the input file a rank read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub(crate) struct ChunkCrc {
    /// The chunk's index in the file's plan.
    pub(crate) chunk: u32,
    /// crc32 of its bytes.
    pub(crate) crc: u32,
    /// Its length in bytes.
    pub(crate) len: u64,
}

/// What rank 0 needs from every rank besides its top-K block.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct Summary {
    pub(crate) n_rows: u64,
    pub(crate) n_baskets: u64,
    pub(crate) n_pairs: u64,
    /// The input chunks this rank read.
    pub(crate) crcs: Vec<ChunkCrc>,
    pub(crate) evaluation: Option<EvalPartial>,
}

impl Summary {
    pub(crate) fn encode(&self) -> Vec<u8> {
        wire::encode(self)
    }

    pub(crate) fn decode(bytes: &[u8], from: u32) -> Result<Summary, WireError> {
        wire::decode_from(bytes, from, phase::SUMMARIES)
    }
}

/// A failure as it travels between ranks: its exit code and its message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Failure {
    /// The exit code the failing rank exits with.
    pub(crate) code: u8,
    /// The error, formatted with its causes.
    pub(crate) message: String,
}

impl ChunkCrc {
    /// The named checksums of the chunks in `raw`.
    pub(crate) fn of(raw: &RawChunks) -> Vec<ChunkCrc> {
        raw.crcs
            .iter()
            .map(|&(chunk, crc, len)| ChunkCrc { chunk, crc, len })
            .collect()
    }
}

/// What rank 0 tells every rank after trying to write the model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) enum WriteOutcome {
    /// Written: the version (or file) and its path.
    Written { written: String, path: String },
    /// Not written, and why.
    Failed(Failure),
}

impl WriteOutcome {
    pub(crate) fn encode(&self) -> Vec<u8> {
        wire::encode(self)
    }

    pub(crate) fn decode(bytes: &[u8]) -> Result<WriteOutcome, WireError> {
        wire::decode_from(bytes, 0, phase::WRITE)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_round_trip_and_unsorted_or_truncated_keys_are_refused() {
        for keys in [
            Keys::Int(vec![-3, 1, 99]),
            Keys::Str(vec!["a".into(), "b b".into()]),
        ] {
            let bytes = encode_keys(&keys);
            assert_eq!(decode_keys(&bytes, 1, phase::KEYS).unwrap(), keys);
            for cut in 0..bytes.len() {
                assert!(decode_keys(&bytes[..cut], 1, phase::KEYS).is_err(), "{cut}");
            }
        }
        let e = decode_keys(&encode_keys(&Keys::Int(vec![2, 1])), 3, phase::KEYS).unwrap_err();
        assert_eq!(e.rank, 3);
        assert!(e.to_string().contains("out of order"), "{e}");
    }

    #[test]
    fn rows_round_trip_and_bad_ids_or_lengths_are_refused() {
        let mut out = RowsOut::default();
        out.push(BasketKey::Str(b"c1"), 4, Some(10));
        out.push(BasketKey::Str(b"c2"), 5, Some(11));
        out.push(BasketKey::Str(b"c1"), 6, Some(12));
        let got = RowsOut::decode(&out.encode(true), 2).unwrap();
        let Col::Str { ids, keys } = got.baskets else {
            panic!("string keys")
        };
        assert_eq!(ids, vec![0, 1, 0]);
        assert_eq!(&*keys[1], b"c2");
        assert_eq!(got.items, vec![4, 5, 6]);
        assert_eq!(got.time, vec![10, 11, 12]);

        // An id past the key table.
        let msg = Writer::new()
            .value(&true)
            .value(&vec![b"k".to_vec()])
            .slice(&[1u32])
            .slice(&[0u32])
            .slice::<i64>(&[])
            .finish();
        let e = RowsOut::decode(&msg, 1).err().unwrap();
        assert!(e.to_string().contains("out of range"), "{e}");
        // Columns of different lengths.
        let msg = Writer::new()
            .value(&false)
            .slice(&[7i64, 8])
            .slice(&[0u32])
            .slice::<i64>(&[])
            .finish();
        let e = RowsOut::decode(&msg, 1).err().unwrap();
        assert!(e.to_string().contains("different lengths"), "{e}");
        // Every truncation is an error, never a panic.
        let mut out = RowsOut::default();
        out.push(BasketKey::Int(7), 1, None);
        let bytes = out.encode(false);
        for cut in 0..bytes.len() {
            assert!(RowsOut::decode(&bytes[..cut], 1).is_err(), "{cut}");
        }
    }

    #[test]
    fn baskets_append_and_malformed_ones_are_refused() {
        let mut out = BasketsOut::default();
        out.push(&[1, 3]);
        out.push(&[0, 2, 4]);
        let bytes = out.encode();
        let mut csr = Csr {
            offsets: vec![0],
            values: Vec::new(),
        };
        append_baskets(&mut csr, &basket_words(&bytes, 1).unwrap(), 1, 5).unwrap();
        assert_eq!(csr.row(0), &[1, 3]);
        assert_eq!(csr.row(1), &[0, 2, 4]);
        // Where each would start, placed after two words.
        let mut starts = vec![0];
        basket_starts(&basket_words(&bytes, 1).unwrap(), 1, 5, 2, &mut starts).unwrap();
        assert_eq!(starts, [0, 2, 5]);
        let cases: [(&[u32], usize); 4] = [
            (&[2, 3, 1], 5), // not ascending
            (&[2, 1, 1], 5), // duplicate
            (&[1, 9], 5),    // item out of range
            (&[3, 0, 1], 5), // length past the end
        ];
        for (words, n_items) in cases {
            let mut csr = Csr {
                offsets: vec![0],
                values: Vec::new(),
            };
            let e = append_baskets(&mut csr, words, 2, n_items).unwrap_err();
            assert!(e.to_string().contains("bad basket"), "{words:?}: {e}");
            let e = basket_starts(words, 2, n_items, 0, &mut Vec::new()).unwrap_err();
            assert!(e.to_string().contains("bad basket"), "{words:?}: {e}");
        }
        // A good basket before a bad one: nothing of the message is kept.
        let mut csr = Csr {
            offsets: vec![0],
            values: Vec::new(),
        };
        assert!(append_baskets(&mut csr, &[1, 0, 2, 3, 1], 2, 5).is_err());
        assert_eq!((csr.n_rows(), csr.nnz()), (0, 0));
        let e = basket_words(&[1, 0, 0], 2).unwrap_err();
        assert!(e.to_string().contains("not whole words"), "{e}");
    }

    #[test]
    fn topk_blocks_round_trip_and_inconsistent_ones_are_refused() {
        let t = TopK {
            indptr: vec![0, 2, 3],
            indices: vec![1, 2, 0],
            scores: vec![0.5, 0.25, 0.5],
        };
        assert_eq!(decode_topk(&encode_topk(&t), 1).unwrap(), t);
        let broken = [
            TopK {
                indptr: vec![1, 2],
                ..t.clone()
            },
            TopK {
                indptr: vec![0, 3, 2],
                ..t.clone()
            },
            TopK {
                scores: vec![0.5],
                ..t.clone()
            },
        ];
        for b in broken {
            let e = decode_topk(&encode_topk(&b), 1).unwrap_err();
            assert!(e.to_string().contains("inconsistent"), "{e}");
        }
    }

    #[test]
    fn summaries_and_outcomes_round_trip_and_garbage_is_named() {
        let s = Summary {
            n_rows: 3,
            n_baskets: 2,
            n_pairs: 3,
            crcs: vec![ChunkCrc {
                chunk: 0,
                crc: 7,
                len: 9,
            }],
            evaluation: None,
        };
        let back = Summary::decode(&s.encode(), 1).unwrap();
        assert_eq!((back.n_rows, back.crcs), (3, s.crcs));
        let e = Summary::decode(&[0xff; 3], 4).unwrap_err();
        assert_eq!((e.rank, e.phase), (4, phase::SUMMARIES));
        let o = WriteOutcome::Failed(Failure {
            code: 2,
            message: "bad".into(),
        });
        assert_eq!(WriteOutcome::decode(&o.encode()).unwrap(), o);
        assert!(WriteOutcome::decode(&[9, 9, 9]).is_err());
    }
}
