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

/// Baskets bound for one row owner, as words `[len, gap, gap, ...]` per basket: each item as
/// its gap to the least value it could take (the first item as itself, each next one less
/// the previous one plus one). On the wire: the number of words (u64, little-endian), then
/// blocks of 128 words (the last padded with zeros), each a byte giving its bit width (that
/// of its largest word) and the words bit-packed at that width (`bitpacking`'s
/// `BitPacker4x`). At size l a gap needs 11 to 17 bits, so a message is about half the bytes
/// of raw words, and the gang's transport costs more per byte than packing does.
///
/// Every basket routed has two items or more (see `for_each_route`), which the decoder
/// holds to: blocks of one or two bits cannot carry baskets, so no message decodes to more
/// than a few words per byte.
#[derive(Default)]
pub(crate) struct BasketsOut {
    gaps: Vec<u32>,
}

/// Words per bit-packed block.
const BLOCK: usize = <bitpacking::BitPacker4x as bitpacking::BitPacker>::BLOCK_LEN;

impl BasketsOut {
    /// An empty message with room for `words` words.
    pub(crate) fn with_capacity(words: usize) -> BasketsOut {
        BasketsOut {
            gaps: Vec::with_capacity(words),
        }
    }

    /// Adds `basket` (two or more sorted, distinct items).
    pub(crate) fn push(&mut self, basket: &[u32]) {
        debug_assert!(
            basket.len() >= 2,
            "only baskets of two or more items travel"
        );
        self.gaps.push(basket.len() as u32);
        let mut least = 0;
        for &i in basket {
            debug_assert!(i >= least, "basket items ascend and are distinct");
            self.gaps.push(i - least);
            least = i + 1;
        }
    }

    /// The message.
    pub(crate) fn encode(self) -> Vec<u8> {
        use bitpacking::BitPacker;
        let packer = bitpacking::BitPacker4x::new();
        let n = self.gaps.len();
        // Room for the widest blocks; pages never written cost nothing.
        let mut out = Vec::with_capacity(8 + n.div_ceil(BLOCK) * (1 + 4 * BLOCK));
        out.extend_from_slice(&(n as u64).to_le_bytes());
        let mut last = [0u32; BLOCK];
        for words in self.gaps.chunks(BLOCK) {
            let block = if words.len() == BLOCK {
                words
            } else {
                last[..words.len()].copy_from_slice(words);
                &last[..]
            };
            let bits = packer.num_bits(block);
            out.push(bits);
            let at = out.len();
            out.resize(at + bits as usize * BLOCK / 8, 0);
            packer.compress(block, &mut out[at..], bits);
        }
        out
    }
}

/// Decodes a [`BasketsOut`] message from `from` of at most `max_words` words: appends its
/// baskets to `words` as `[len, item, item, ...]` back to back, and where each starts in
/// `words` to `starts`; returns the words added. Every basket must have two or more items,
/// all within `n_items`. A bad message is named with what is wrong and adds nothing to
/// either.
pub(crate) fn decode_baskets(
    bytes: &[u8],
    from: u32,
    n_items: usize,
    max_words: usize,
    words: &mut Vec<u32>,
    starts: &mut Vec<u64>,
) -> Result<usize, WireError> {
    let (kept_words, kept_starts) = (words.len(), starts.len());
    decode_baskets_into(bytes, n_items, max_words, words, starts).map_err(|detail| {
        words.truncate(kept_words);
        starts.truncate(kept_starts);
        bad(from, phase::BASKETS, detail)
    })
}

/// [`decode_baskets`]' work; an error says what is wrong.
fn decode_baskets_into(
    bytes: &[u8],
    n_items: usize,
    max_words: usize,
    words: &mut Vec<u32>,
    starts: &mut Vec<u64>,
) -> Result<usize, String> {
    use bitpacking::BitPacker;
    let (head, mut rest) = bytes
        .split_first_chunk::<8>()
        .ok_or_else(|| format!("{} bytes, too few for the word count", bytes.len()))?;
    let n = u64::from_le_bytes(*head);
    if n > max_words as u64 {
        return Err(format!(
            "{n} words of baskets, more than the {max_words} expected"
        ));
    }
    let n = n as usize;
    let base = words.len();
    words.resize(base + n.div_ceil(BLOCK) * BLOCK, 0);
    let packer = bitpacking::BitPacker4x::new();
    for (b, block) in words[base..].chunks_mut(BLOCK).enumerate() {
        let (&bits, r) = rest
            .split_first()
            .ok_or_else(|| format!("the message ends before block {b}"))?;
        let len = bits as usize * BLOCK / 8;
        if bits > 32 || r.len() < len {
            return Err(format!("block {b} of {bits} bits in {} bytes", r.len()));
        }
        packer.decompress(&r[..len], block, bits);
        rest = &r[len..];
    }
    if !rest.is_empty() {
        return Err(format!("{} bytes after the last block", rest.len()));
    }
    words.truncate(base + n);
    // The gaps back to items, in place, checked.
    let mut at = base;
    while at < words.len() {
        let len = words[at] as usize;
        let end = at + 1 + len;
        if len < 2 || end > words.len() {
            return Err(format!("a basket of {len} items at word {}", at - base));
        }
        starts.push(at as u64);
        let mut least = 0u64;
        for w in &mut words[at + 1..end] {
            let item = least + u64::from(*w);
            if item >= n_items as u64 {
                return Err(format!("item {item} of a catalogue of {n_items}"));
            }
            *w = item as u32;
            least = item + 1;
        }
        at = end;
    }
    Ok(n)
}

/// Appends the baskets of a [`BasketsOut`] message from `from` (at most `max_words` words) to
/// `csr`, as [`decode_baskets`] checks them: a bad message adds nothing.
pub(crate) fn append_baskets(
    csr: &mut Csr,
    bytes: &[u8],
    from: u32,
    n_items: usize,
    max_words: usize,
) -> Result<(), WireError> {
    let (mut words, mut starts) = (Vec::new(), Vec::new());
    decode_baskets(bytes, from, n_items, max_words, &mut words, &mut starts)?;
    csr.values.reserve(words.len() - starts.len());
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
    fn baskets_round_trip_bit_packed_and_malformed_ones_are_refused() {
        // Three full blocks and a part: 100 baskets of 3 items, the last item up to 70,000.
        let baskets: Vec<Vec<u32>> = (0..100u32)
            .map(|b| vec![b, b + 1 + b % 7, 70_000 - b])
            .collect();
        let mut out = BasketsOut::default();
        for basket in &baskets {
            out.push(basket);
        }
        let bytes = out.encode();
        // 400 words in 4 blocks: the count, 4 widths, and 17 bits per word at most.
        assert!(bytes.len() <= 8 + 4 + 4 * 17 * 16, "{}", bytes.len());
        let mut csr = Csr {
            offsets: vec![0],
            values: Vec::new(),
        };
        append_baskets(&mut csr, &bytes, 1, 70_001, 400).unwrap();
        assert_eq!(csr.n_rows(), 100);
        for (b, basket) in baskets.iter().enumerate() {
            assert_eq!(csr.row(b), &basket[..]);
        }
        // Appended after two words, with where each basket starts.
        let (mut words, mut starts) = (vec![7, 7], vec![0]);
        let n = decode_baskets(&bytes, 1, 70_001, 400, &mut words, &mut starts).unwrap();
        assert_eq!(n, 400);
        assert_eq!(&words[..6], [7, 7, 3, 0, 1, 70_000]);
        assert_eq!(starts[..3], [0, 2, 6]);
        assert_eq!(starts.len(), 101);

        let message = |gaps: &[u32]| {
            let mut out = BasketsOut::default();
            out.gaps.extend_from_slice(gaps);
            out.encode()
        };
        let mut cut = message(&[2, 0, 0]);
        cut.pop();
        let mut long = message(&[2, 0, 0]);
        long.push(0);
        let mut wide = message(&[2, 0, 0]);
        wide[8] = 33;
        let cases: [(Vec<u8>, usize, &str); 9] = [
            (message(&[2, 1, 3]), 100, "item 5 of a catalogue of 5"), // items 1, 5
            // Past the end; then one item, which never travels.
            (message(&[2, 0, 0, 3, 0, 0]), 100, "3 items at word 3"),
            (message(&[1, 4]), 100, "a basket of 1 items"),
            (message(&[2, 0, 0, 0]), 100, "a basket of 0 items at word 3"),
            (
                message(&[2, 0, 0]),
                2,
                "3 words of baskets, more than the 2 expected",
            ),
            (cut, 100, "block 0 of"),
            (long, 100, "1 bytes after the last block"),
            (wide, 100, "block 0 of 33 bits"),
            (vec![1, 2, 3], 100, "too few for the word count"),
        ];
        for (bytes, max_words, want) in cases {
            let (mut words, mut starts) = (vec![9], vec![0]);
            let e = decode_baskets(&bytes, 2, 5, max_words, &mut words, &mut starts).unwrap_err();
            let e = e.to_string();
            assert!(e.contains(want) && e.contains("rank 2"), "{bytes:?}: {e}");
            assert_eq!((words, starts), (vec![9], vec![0]), "{bytes:?}");
            let mut csr = Csr {
                offsets: vec![0],
                values: Vec::new(),
            };
            assert!(append_baskets(&mut csr, &bytes, 2, 5, max_words).is_err());
            assert_eq!((csr.n_rows(), csr.nnz()), (0, 0));
        }
        // Raw words (the own share): where each basket starts, and bad ones named.
        let mut starts = vec![0];
        basket_starts(&[2, 1, 3, 3, 0, 2, 4], 1, 5, 2, &mut starts).unwrap();
        assert_eq!(starts, [0, 2, 5]);
        for words in [&[2u32, 3, 1][..], &[2, 1, 1], &[1, 9], &[3, 0, 1]] {
            let e = basket_starts(words, 2, 5, 0, &mut Vec::new()).unwrap_err();
            assert!(e.to_string().contains("bad basket"), "{words:?}: {e}");
        }
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
