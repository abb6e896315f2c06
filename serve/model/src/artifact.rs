//! The model artifact: one binary file holding a trained top-K neighbour model.
//!
//! Owns the on-disk layout (documented in `serve/ARTIFACT.md`), the writer the trainer
//! uses and the validating, memory-mapped reader the server uses. It must not depend on
//! how a model was trained: it sees keys, neighbour lists and metadata, nothing else.
//!
//! Layout, all integers little-endian:
//!
//! ```text
//! 0   magic  "COOCMDL\0"                     8 bytes
//! 8   format version (u32) = 2 (1 is still read: it has no popularity sections)
//! 12  section count (u32)
//! 16  payload length (u64): bytes after this 32-byte header
//! 24  CRC-32 (IEEE) of the payload (u32), then 4 zero bytes
//! 32  section table: count x { kind u32, zero u32, offset u64, length u64 }
//! ..  sections, each starting on an 8-byte boundary, zero padded
//! ```

use std::fs::File;
use std::path::{Path, PathBuf};

use crate::keys::{Key, Keys};
use crate::meta::{ModelMeta, Provenance};

#[cfg(target_endian = "big")]
compile_error!("the cooc artifact is read in place as little-endian arrays");

/// First eight bytes of every artifact.
pub const MAGIC: [u8; 8] = *b"COOCMDL\0";
/// The layout this build writes.
pub const FORMAT_VERSION: u32 = 2;
/// The oldest layout this build still reads (version 1: no popularity sections, so its
/// basket answers have no popularity backfill).
pub const OLDEST_READ_VERSION: u32 = 1;
/// How many of the most-bought items an artifact lists for popularity backfill (all of
/// them when fewer were bought). Enough for any basket request within the server's bounds
/// (100 seeds, 1,000 excluded ids, k <= 100 leave at most 1,199 listed items unusable).
pub const POPULAR_LISTED: usize = 2048;
const HEADER_LEN: usize = 32;
const ENTRY_LEN: usize = 24;

/// Section kinds. Numbers are part of the format: never reuse one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
enum Kind {
    /// JSON [`ModelMeta`]: everything that defines the model.
    Meta = 1,
    /// JSON [`Provenance`]: when and how it was built; excluded from payload comparisons.
    Provenance = 2,
    KeysInt = 3,
    KeysStrOffsets = 4,
    KeysStrBytes = 5,
    TitleOffsets = 6,
    TitleBytes = 7,
    AuthorOffsets = 8,
    AuthorBytes = 9,
    Indptr = 10,
    Indices = 11,
    Scores = 12,
    /// The most-bought items, most first (`u32` ids); version 2 on.
    PopularItems = 13,
    /// Their training basket counts `c_i` (`u64`), aligned with `PopularItems`.
    PopularCounts = 14,
}

impl Kind {
    fn from_u32(v: u32) -> Option<Kind> {
        use Kind::*;
        Some(match v {
            1 => Meta,
            2 => Provenance,
            3 => KeysInt,
            4 => KeysStrOffsets,
            5 => KeysStrBytes,
            6 => TitleOffsets,
            7 => TitleBytes,
            8 => AuthorOffsets,
            9 => AuthorBytes,
            10 => Indptr,
            11 => Indices,
            12 => Scores,
            13 => PopularItems,
            14 => PopularCounts,
            _ => return None,
        })
    }
}

/// Why an artifact was refused. Every variant names the file.
#[derive(Debug, thiserror::Error)]
pub enum ArtifactError {
    /// The file could not be read.
    #[error("{path}: {error}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        error: std::io::Error,
    },
    /// Not a cooc model.
    #[error("{path}: not a cooc model (bad magic)")]
    BadMagic {
        /// The file.
        path: PathBuf,
    },
    /// A format version this build does not read.
    #[error("{path}: model format version {found}, this build reads versions {OLDEST_READ_VERSION} to {FORMAT_VERSION}")]
    Version {
        /// The file.
        path: PathBuf,
        /// The version the file has.
        found: u32,
    },
    /// Shorter than its header or section table says.
    #[error("{path}: truncated: {detail}")]
    Truncated {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        detail: String,
    },
    /// The payload does not match its stored CRC-32.
    #[error("{path}: checksum mismatch (stored {stored:08x}, computed {computed:08x}): the file is corrupt")]
    Checksum {
        /// The file.
        path: PathBuf,
        /// The CRC-32 the header stores.
        stored: u32,
        /// The CRC-32 of the payload as read.
        computed: u32,
    },
    /// Well-formed but inconsistent (unsorted keys, out-of-range ids, bad UTF-8...).
    #[error("{path}: invalid model: {detail}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        detail: String,
    },
}

/// Everything a trainer hands over to be written.
pub struct ModelParts<'a> {
    /// What defines the model.
    pub meta: &'a ModelMeta,
    /// How and when it was built.
    pub provenance: &'a Provenance,
    /// Sorted strictly ascending; item id `i` is `keys[i]`.
    pub keys: &'a Keys,
    /// Optional per-item title and author (`None` or empty string = unknown).
    pub titles: Option<&'a [Option<String>]>,
    /// Per-item authors, like titles.
    pub authors: Option<&'a [Option<String>]>,
    /// CSR neighbour lists: row i is `indices[indptr[i]..indptr[i+1]]`.
    pub indptr: &'a [u64],
    /// Neighbour ids, row by row.
    pub indices: &'a [u32],
    /// Neighbour scores, aligned with `indices`.
    pub scores: &'a [f32],
    /// The most-bought items with their training basket counts, most first (ties: item id
    /// ascending), at most [`POPULAR_LISTED`]; see [`popular`].
    pub popular: &'a [(u32, u64)],
}

/// The `listed` most-bought items of `counts` (item `i` was in `counts[i]` training
/// baskets), most first, ties by item id; items never bought are not listed.
pub fn popular(counts: &[u32], listed: usize) -> Vec<(u32, u64)> {
    let mut all: Vec<(u32, u64)> = counts
        .iter()
        .enumerate()
        .filter(|&(_, &c)| c > 0)
        .map(|(i, &c)| (i as u32, c as u64))
        .collect();
    let order = |a: &(u32, u64), b: &(u32, u64)| b.1.cmp(&a.1).then(a.0.cmp(&b.0));
    if all.len() > listed {
        all.select_nth_unstable_by(listed, order);
        all.truncate(listed);
    }
    all.sort_unstable_by(order);
    all
}

fn pad8(buf: &mut Vec<u8>) {
    while !buf.len().is_multiple_of(8) {
        buf.push(0);
    }
}

fn string_table(items: &[Option<String>]) -> (Vec<u8>, Vec<u8>) {
    let mut offsets = Vec::with_capacity((items.len() + 1) * 8);
    let mut bytes = Vec::new();
    offsets.extend_from_slice(&0u64.to_le_bytes());
    for s in items {
        if let Some(s) = s {
            bytes.extend_from_slice(s.as_bytes());
        }
        offsets.extend_from_slice(&(bytes.len() as u64).to_le_bytes());
    }
    (offsets, bytes)
}

/// Serialises a model into the artifact layout.
pub fn encode(parts: &ModelParts<'_>) -> Vec<u8> {
    let n = parts.keys.len();
    assert_eq!(
        parts.indptr.len(),
        n + 1,
        "indptr must have n_items + 1 entries"
    );
    assert_eq!(parts.indices.len(), parts.scores.len());
    let mut sections: Vec<(Kind, Vec<u8>)> = vec![
        (
            Kind::Meta,
            serde_json::to_vec(parts.meta).expect("metadata serialises"),
        ),
        (
            Kind::Provenance,
            serde_json::to_vec(parts.provenance).expect("provenance serialises"),
        ),
    ];
    match parts.keys {
        Keys::Int(v) => sections.push((Kind::KeysInt, bytemuck::cast_slice(v).to_vec())),
        Keys::Str(v) => {
            let owned: Vec<Option<String>> = v.iter().cloned().map(Some).collect();
            let (o, b) = string_table(&owned);
            sections.push((Kind::KeysStrOffsets, o));
            sections.push((Kind::KeysStrBytes, b));
        }
    }
    for (items, ko, kb) in [
        (parts.titles, Kind::TitleOffsets, Kind::TitleBytes),
        (parts.authors, Kind::AuthorOffsets, Kind::AuthorBytes),
    ] {
        if let Some(items) = items {
            assert_eq!(items.len(), n);
            let (o, b) = string_table(items);
            sections.push((ko, o));
            sections.push((kb, b));
        }
    }
    sections.push((Kind::Indptr, bytemuck::cast_slice(parts.indptr).to_vec()));
    sections.push((Kind::Indices, bytemuck::cast_slice(parts.indices).to_vec()));
    sections.push((Kind::Scores, bytemuck::cast_slice(parts.scores).to_vec()));
    let items: Vec<u32> = parts.popular.iter().map(|p| p.0).collect();
    let counts: Vec<u64> = parts.popular.iter().map(|p| p.1).collect();
    sections.push((Kind::PopularItems, bytemuck::cast_slice(&items).to_vec()));
    sections.push((Kind::PopularCounts, bytemuck::cast_slice(&counts).to_vec()));

    let table_end = HEADER_LEN + ENTRY_LEN * sections.len();
    let mut out = vec![0u8; table_end];
    let mut entries = Vec::with_capacity(sections.len());
    for (kind, data) in &sections {
        pad8(&mut out);
        entries.push((*kind as u32, out.len() as u64, data.len() as u64));
        out.extend_from_slice(data);
    }
    pad8(&mut out);
    for (i, (kind, off, len)) in entries.iter().enumerate() {
        let at = HEADER_LEN + i * ENTRY_LEN;
        out[at..at + 4].copy_from_slice(&kind.to_le_bytes());
        out[at + 8..at + 16].copy_from_slice(&off.to_le_bytes());
        out[at + 16..at + 24].copy_from_slice(&len.to_le_bytes());
    }
    out[0..8].copy_from_slice(&MAGIC);
    out[8..12].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
    out[12..16].copy_from_slice(&(sections.len() as u32).to_le_bytes());
    let payload_len = (out.len() - HEADER_LEN) as u64;
    out[16..24].copy_from_slice(&payload_len.to_le_bytes());
    let crc = crc32fast::hash(&out[HEADER_LEN..]);
    out[24..28].copy_from_slice(&crc.to_le_bytes());
    out
}

/// Bytes backing a loaded model.
/// The model's bytes, owned: read into memory (8-byte aligned for the arrays read in
/// place), never mapped, so that no change to the file on disk (truncated, or rewritten
/// with `cp`) can reach a running server.
struct Backing {
    words: Vec<u64>,
    len: usize,
}

impl Backing {
    fn bytes(&self) -> &[u8] {
        &bytemuck::cast_slice(&self.words)[..self.len]
    }
}

type Range = std::ops::Range<usize>;

/// A validated, read-only model. Cheap lookups straight out of the mapped file.
pub struct Model {
    backing: Backing,
    /// The file.
    path: PathBuf,
    meta: ModelMeta,
    provenance: Provenance,
    n: usize,
    keys_int: Option<Range>,
    keys_str: Option<(Range, Range)>,
    titles: Option<(Range, Range)>,
    authors: Option<(Range, Range)>,
    indptr: Range,
    indices: Range,
    scores: Range,
    /// The popularity sections (items, counts); `None` in a version 1 file.
    popular: Option<(Range, Range)>,
    /// The file's format version.
    version: u32,
    /// Byte ranges of every section but provenance, in file order: the model's identity.
    identity: Vec<Range>,
}

impl std::fmt::Debug for Model {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Model")
            .field("path", &self.path)
            .field("n_items", &self.n)
            .finish_non_exhaustive()
    }
}

fn read_u32(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().expect("4 bytes"))
}
fn read_u64(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().expect("8 bytes"))
}

impl Model {
    /// Reads and validates a model file. The bytes are copied into memory: a model is
    /// small (size l: 13 MB), and a copy cannot change under a reader.
    pub fn open(path: &Path) -> Result<Model, ArtifactError> {
        let io = |error| ArtifactError::Io {
            path: path.to_owned(),
            error,
        };
        let file = File::open(path).map_err(io)?;
        let len = file.metadata().map_err(io)?.len();
        if len < HEADER_LEN as u64 {
            return Err(ArtifactError::Truncated {
                path: path.to_owned(),
                detail: format!("{len} bytes, shorter than the {HEADER_LEN}-byte header"),
            });
        }
        let len = usize::try_from(len).map_err(|_| ArtifactError::Invalid {
            path: path.to_owned(),
            detail: format!("{len} bytes do not fit in memory"),
        })?;
        let mut words = vec![0u64; len.div_ceil(8)];
        let bytes = &mut bytemuck::cast_slice_mut::<u64, u8>(&mut words)[..len];
        // Exactly the length seen above: a file that shrank meanwhile is an error here, one
        // that grew is read up to that length and then fails its checksum.
        std::io::Read::read_exact(&mut &file, bytes).map_err(io)?;
        Model::validate(Backing { words, len }, path.to_owned())
    }

    /// Validates a model held in memory (tests, and trainers checking what they wrote).
    pub fn from_bytes(bytes: &[u8], path: impl Into<PathBuf>) -> Result<Model, ArtifactError> {
        let mut words = vec![0u64; bytes.len().div_ceil(8)];
        bytemuck::cast_slice_mut::<u64, u8>(&mut words)[..bytes.len()].copy_from_slice(bytes);
        Model::validate(
            Backing {
                words,
                len: bytes.len(),
            },
            path.into(),
        )
    }

    fn validate(backing: Backing, path: PathBuf) -> Result<Model, ArtifactError> {
        let b = backing.bytes();
        let invalid = |detail: String| ArtifactError::Invalid {
            path: path.clone(),
            detail,
        };
        if b.len() < HEADER_LEN {
            return Err(ArtifactError::Truncated {
                path,
                detail: "shorter than the header".into(),
            });
        }
        if b[0..8] != MAGIC {
            return Err(ArtifactError::BadMagic { path });
        }
        let version = read_u32(b, 8);
        if !(OLDEST_READ_VERSION..=FORMAT_VERSION).contains(&version) {
            return Err(ArtifactError::Version {
                path,
                found: version,
            });
        }
        let count = read_u32(b, 12) as usize;
        let payload_len = read_u64(b, 16);
        let actual = (b.len() - HEADER_LEN) as u64;
        if payload_len != actual {
            return Err(ArtifactError::Truncated {
                path,
                detail: format!("header promises {payload_len} payload bytes, file has {actual}"),
            });
        }
        if read_u32(b, 28) != 0 {
            return Err(invalid("reserved header bytes are not zero".into()));
        }
        let stored = read_u32(b, 24);
        let computed = crc32fast::hash(&b[HEADER_LEN..]);
        if stored != computed {
            return Err(ArtifactError::Checksum {
                path,
                stored,
                computed,
            });
        }
        let table_end = count
            .checked_mul(ENTRY_LEN)
            .and_then(|t| t.checked_add(HEADER_LEN))
            .filter(|&t| t <= b.len())
            .ok_or_else(|| {
                invalid(format!(
                    "section table of {count} entries overruns the file"
                ))
            })?;
        let mut found: [Option<Range>; 15] = Default::default();
        let mut identity = Vec::new();
        for i in 0..count {
            let at = HEADER_LEN + i * ENTRY_LEN;
            let kind_raw = read_u32(b, at);
            let off = read_u64(b, at + 8);
            let len = read_u64(b, at + 16);
            let kind = Kind::from_u32(kind_raw)
                .ok_or_else(|| invalid(format!("unknown section kind {kind_raw}")))?;
            let end = off
                .checked_add(len)
                .filter(|&e| {
                    e <= b.len() as u64 && off >= table_end as u64 && off.is_multiple_of(8)
                })
                .ok_or_else(|| {
                    invalid(format!(
                        "section {kind:?} at {off}+{len} is out of bounds or misaligned"
                    ))
                })?;
            let r = off as usize..end as usize;
            if version < 2 && matches!(kind, Kind::PopularItems | Kind::PopularCounts) {
                return Err(invalid(format!(
                    "section {kind:?} in a version {version} file"
                )));
            }
            if found[kind as usize].replace(r.clone()).is_some() {
                return Err(invalid(format!("section {kind:?} appears twice")));
            }
            if kind != Kind::Provenance {
                identity.push(r);
            }
        }
        let need = |k: Kind| {
            found[k as usize]
                .clone()
                .ok_or_else(|| invalid(format!("missing section {k:?}")))
        };
        let meta: ModelMeta = serde_json::from_slice(&b[need(Kind::Meta)?])
            .map_err(|e| invalid(format!("metadata: {e}")))?;
        let provenance: Provenance = serde_json::from_slice(&b[need(Kind::Provenance)?])
            .map_err(|e| invalid(format!("provenance: {e}")))?;

        let indptr = need(Kind::Indptr)?;
        let indices = need(Kind::Indices)?;
        let scores = need(Kind::Scores)?;
        if indptr.len() % 8 != 0 || indptr.is_empty() {
            return Err(invalid(
                "neighbour index pointer has a partial entry".into(),
            ));
        }
        let n = indptr.len() / 8 - 1;
        let popular = if version >= 2 {
            Some((need(Kind::PopularItems)?, need(Kind::PopularCounts)?))
        } else {
            None
        };
        if meta.n_items != n as u64 {
            return Err(invalid(format!(
                "metadata says {} items, neighbour table has {n}",
                meta.n_items
            )));
        }
        let model = Model {
            keys_int: found[Kind::KeysInt as usize].clone(),
            keys_str: pair(&found, Kind::KeysStrOffsets, Kind::KeysStrBytes),
            titles: pair(&found, Kind::TitleOffsets, Kind::TitleBytes),
            authors: pair(&found, Kind::AuthorOffsets, Kind::AuthorBytes),
            backing,
            path,
            meta,
            provenance,
            n,
            indptr,
            indices,
            scores,
            popular,
            version,
            identity,
        };
        model.check_structure()?;
        Ok(model)
    }

    fn check_structure(&self) -> Result<(), ArtifactError> {
        let invalid = |detail: String| ArtifactError::Invalid {
            path: self.path.clone(),
            detail,
        };
        let n = self.n;
        let b = self.backing.bytes();
        let indptr: &[u64] = cast(b, &self.indptr).ok_or_else(|| invalid("indptr".into()))?;
        let indices: &[u32] =
            cast(b, &self.indices).ok_or_else(|| invalid("indices section size".into()))?;
        let scores: &[f32] =
            cast(b, &self.scores).ok_or_else(|| invalid("scores section size".into()))?;
        if indices.len() != scores.len() || indptr[0] != 0 || indptr[n] != indices.len() as u64 {
            return Err(invalid("neighbour arrays disagree in length".into()));
        }
        if indptr.windows(2).any(|w| w[0] > w[1]) {
            return Err(invalid("neighbour index pointer is not monotone".into()));
        }
        if indices.iter().any(|&j| j as usize >= n) {
            return Err(invalid("a neighbour id is out of range".into()));
        }
        if scores.iter().any(|s| !s.is_finite() || *s <= 0.0) {
            return Err(invalid(
                "a neighbour score is not a positive finite number".into(),
            ));
        }
        if let Some((ri, rc)) = &self.popular {
            let items: &[u32] =
                cast(b, ri).ok_or_else(|| invalid("popular items section size".into()))?;
            let counts: &[u64] =
                cast(b, rc).ok_or_else(|| invalid("popular counts section size".into()))?;
            if items.len() != counts.len() || items.len() > n {
                return Err(invalid("popularity sections disagree in length".into()));
            }
            if items.iter().any(|&i| i as usize >= n) || counts.contains(&0) {
                return Err(invalid(
                    "a popular item is out of range or never bought".into(),
                ));
            }
            let ordered = items
                .windows(2)
                .zip(counts.windows(2))
                .all(|(i, c)| c[0] > c[1] || (c[0] == c[1] && i[0] < i[1]));
            if !ordered {
                return Err(invalid(
                    "popular items are not most-bought first, ties by id".into(),
                ));
            }
            // Ordered by (count desc, id asc) is not enough: an item listed twice under
            // two counts would pass.
            let mut seen = items.to_vec();
            seen.sort_unstable();
            if seen.windows(2).any(|w| w[0] == w[1]) {
                return Err(invalid("a popular item is listed twice".into()));
            }
        }
        match (&self.keys_int, &self.keys_str) {
            (Some(r), None) => {
                let keys: &[i64] = cast(b, r).ok_or_else(|| invalid("integer keys".into()))?;
                if keys.len() != n || keys.windows(2).any(|w| w[0] >= w[1]) {
                    return Err(invalid(
                        "integer keys are not n strictly ascending values".into(),
                    ));
                }
            }
            (None, Some((o, s))) => {
                check_strings(b, o, s, n).map_err(|e| invalid(format!("string keys: {e}")))?;
                for i in 1..n {
                    if self.str_at(o, s, i - 1) >= self.str_at(o, s, i) {
                        return Err(invalid("string keys are not strictly ascending".into()));
                    }
                }
            }
            _ => return Err(invalid("needs exactly one kind of key section".into())),
        }
        for (what, t) in [("titles", &self.titles), ("authors", &self.authors)] {
            if let Some((o, s)) = t {
                check_strings(b, o, s, n).map_err(|e| invalid(format!("{what}: {e}")))?;
            }
        }
        Ok(())
    }

    fn str_at(&self, offsets: &Range, bytes: &Range, i: usize) -> &str {
        let b = self.backing.bytes();
        let o: &[u64] = cast(b, offsets).expect("validated");
        let s = &b[bytes.clone()];
        let bytes = &s[o[i] as usize..o[i + 1] as usize];
        // SAFETY: `check_strings` verified at load that the whole section is UTF-8 and that
        // every offset is a char boundary, and the bytes are owned and never written after
        // load (see `Backing`), so any slice between two offsets is valid UTF-8. This runs
        // on every served title: checking again per request cost ~5% of serving throughput.
        unsafe { std::str::from_utf8_unchecked(bytes) }
    }

    /// The file (or name) the model was read from.
    pub fn path(&self) -> &Path {
        &self.path
    }
    /// What defines the model.
    pub fn meta(&self) -> &ModelMeta {
        &self.meta
    }
    /// How and when the model was built.
    pub fn provenance(&self) -> &Provenance {
        &self.provenance
    }
    /// Items in the catalogue (rows of the model).
    pub fn n_items(&self) -> usize {
        self.n
    }
    /// Whether keys are integers.
    pub fn int_keys(&self) -> bool {
        self.keys_int.is_some()
    }

    /// The key of item `i`.
    pub fn key(&self, i: usize) -> Key<'_> {
        match (&self.keys_int, &self.keys_str) {
            (Some(r), _) => Key::Int(cast::<i64>(self.backing.bytes(), r).expect("validated")[i]),
            (_, Some((o, s))) => Key::Str(self.str_at(o, s, i)),
            _ => unreachable!("validated at load"),
        }
    }

    /// Item id of a key, by binary search over the sorted keys.
    pub fn find(&self, key: Key<'_>) -> Option<usize> {
        match (key, &self.keys_int, &self.keys_str) {
            (Key::Int(k), Some(r), _) => cast::<i64>(self.backing.bytes(), r)
                .expect("validated")
                .binary_search(&k)
                .ok(),
            (Key::Str(k), _, Some((o, s))) => {
                let (mut lo, mut hi) = (0, self.n);
                while lo < hi {
                    let mid = (lo + hi) / 2;
                    match self.str_at(o, s, mid).cmp(k) {
                        std::cmp::Ordering::Less => lo = mid + 1,
                        std::cmp::Ordering::Greater => hi = mid,
                        std::cmp::Ordering::Equal => return Some(mid),
                    }
                }
                None
            }
            _ => None,
        }
    }

    /// Neighbour ids and scores of item `i`, best first.
    pub fn neighbours(&self, i: usize) -> (&[u32], &[f32]) {
        let b = self.backing.bytes();
        let indptr: &[u64] = cast(b, &self.indptr).expect("validated");
        let (lo, hi) = (indptr[i] as usize, indptr[i + 1] as usize);
        (
            &cast::<u32>(b, &self.indices).expect("validated")[lo..hi],
            &cast::<f32>(b, &self.scores).expect("validated")[lo..hi],
        )
    }

    /// The most-bought items of the training data (ids, and the training baskets holding
    /// each), most first, ties by id; `None` for a version 1 file, which has no such list.
    pub fn popular(&self) -> Option<(&[u32], &[u64])> {
        let b = self.backing.bytes();
        self.popular.as_ref().map(|(ri, rc)| {
            (
                cast::<u32>(b, ri).expect("validated"),
                cast::<u64>(b, rc).expect("validated"),
            )
        })
    }

    /// The file's format version ([`OLDEST_READ_VERSION`]..=[`FORMAT_VERSION`]).
    pub fn format_version(&self) -> u32 {
        self.version
    }

    /// The title of item `i`, if the model stores one.
    pub fn title(&self, i: usize) -> Option<&str> {
        self.titles
            .as_ref()
            .map(|(o, s)| self.str_at(o, s, i))
            .filter(|s| !s.is_empty())
    }
    /// The author of item `i`, if the model stores one.
    pub fn author(&self, i: usize) -> Option<&str> {
        self.authors
            .as_ref()
            .map(|(o, s)| self.str_at(o, s, i))
            .filter(|s| !s.is_empty())
    }

    /// CRC-32 over every section except provenance: equal for equal models, whoever built them.
    pub fn identity_digest(&self) -> u32 {
        let mut h = crc32fast::Hasher::new();
        for r in &self.identity {
            h.update(&self.backing.bytes()[r.clone()]);
        }
        h.finalize()
    }

    /// The bytes of every section except provenance, in file order.
    pub fn identity_bytes(&self) -> Vec<u8> {
        let b = self.backing.bytes();
        self.identity
            .iter()
            .flat_map(|r| b[r.clone()].iter().copied())
            .collect()
    }

    /// Size of the file in bytes.
    pub fn file_len(&self) -> usize {
        self.backing.bytes().len()
    }
}

fn pair(found: &[Option<Range>; 15], a: Kind, b: Kind) -> Option<(Range, Range)> {
    Some((found[a as usize].clone()?, found[b as usize].clone()?))
}

fn cast<'a, T: bytemuck::Pod>(b: &'a [u8], r: &Range) -> Option<&'a [T]> {
    bytemuck::try_cast_slice(&b[r.clone()]).ok()
}

fn check_strings(b: &[u8], offsets: &Range, bytes: &Range, n: usize) -> Result<(), String> {
    let o: &[u64] = cast(b, offsets).ok_or("offset table size")?;
    if o.len() != n + 1 || o[0] != 0 || o[n] != bytes.len() as u64 {
        return Err("offset table does not cover the string bytes".into());
    }
    if o.windows(2).any(|w| w[0] > w[1]) {
        return Err("offsets are not monotone".into());
    }
    let s = &b[bytes.clone()];
    let s = std::str::from_utf8(s).map_err(|e| format!("not UTF-8: {e}"))?;
    for &x in o {
        if !s.is_char_boundary(x as usize) {
            return Err("an offset splits a character".into());
        }
    }
    Ok(())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn sample(keys: Keys) -> Vec<u8> {
        let meta = ModelMeta::example();
        let prov = Provenance::example();
        let titles = vec![Some("A, \"quoted\"".to_string()), None, Some("Ç".into())];
        encode(&ModelParts {
            meta: &meta,
            provenance: &prov,
            keys: &keys,
            titles: Some(&titles),
            authors: None,
            indptr: &[0, 2, 3, 4],
            indices: &[1, 2, 0, 0],
            scores: &[0.9, 0.1, 0.9, 0.1],
            popular: &[(0, 3), (2, 1)],
        })
    }

    #[test]
    fn round_trip_int_and_string_keys() {
        let m = Model::from_bytes(&sample(Keys::Int(vec![-5, 7, 100])), "t").unwrap();
        assert_eq!(m.n_items(), 3);
        assert_eq!(m.find(Key::Int(7)), Some(1));
        assert_eq!(m.find(Key::Int(8)), None);
        assert_eq!(m.neighbours(0), (&[1u32, 2][..], &[0.9f32, 0.1][..]));
        assert_eq!(m.title(0), Some("A, \"quoted\""));
        assert_eq!(m.title(1), None);
        assert_eq!(m.author(0), None);
        let s = Model::from_bytes(
            &sample(Keys::Str(vec!["a".into(), "b b".into(), "c".into()])),
            "t",
        )
        .unwrap();
        assert_eq!(s.find(Key::Str("b b")), Some(1));
        assert_eq!(s.key(2), Key::Str("c"));
    }

    #[test]
    fn every_truncation_and_bit_flip_is_refused() {
        let bytes = sample(Keys::Int(vec![1, 2, 3]));
        for cut in 0..bytes.len() {
            assert!(
                Model::from_bytes(&bytes[..cut], "t").is_err(),
                "cut at {cut}"
            );
        }
        for at in 0..bytes.len() {
            let mut b = bytes.clone();
            b[at] ^= 0x10;
            assert!(Model::from_bytes(&b, "t").is_err(), "flip at {at}");
        }
    }

    #[test]
    fn unsorted_keys_are_invalid_even_with_a_good_checksum() {
        let bytes = sample(Keys::Int(vec![3, 2, 1]));
        let err = Model::from_bytes(&bytes, "m.cooc").unwrap_err().to_string();
        assert!(err.contains("m.cooc") && err.contains("ascending"), "{err}");
    }

    #[test]
    fn wrong_version_is_named() {
        let mut b = sample(Keys::Int(vec![1, 2, 3]));
        b[8] = 9;
        let err = Model::from_bytes(&b, "x").unwrap_err();
        assert!(
            matches!(err, ArtifactError::Version { found: 9, .. }),
            "{err}"
        );
    }

    #[test]
    fn identity_ignores_provenance_only() {
        let a = sample(Keys::Int(vec![1, 2, 3]));
        let mut b = a.clone();
        let at = b.windows(4).position(|w| w == b"2026").unwrap();
        b[at..at + 4].copy_from_slice(b"2027");
        // Re-seal so only the provenance differs.
        let crc = crc32fast::hash(&b[HEADER_LEN..]);
        b[24..28].copy_from_slice(&crc.to_le_bytes());
        let (ma, mb) = (
            Model::from_bytes(&a, "a").unwrap(),
            Model::from_bytes(&b, "b").unwrap(),
        );
        assert_ne!(a, b);
        assert_eq!(ma.identity_bytes(), mb.identity_bytes());
        assert_eq!(ma.identity_digest(), mb.identity_digest());
        let c = Model::from_bytes(&sample(Keys::Int(vec![1, 2, 4])), "c").unwrap();
        assert_ne!(ma.identity_digest(), c.identity_digest());
    }
}
