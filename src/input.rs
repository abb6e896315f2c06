//! Reading training input into (basket, item) pairs with dense ids.
//!
//! Two formats:
//! - `orders`: the Bookstore orders CSV (`id,book_id,qty,created_at,customer_id`, any column
//!   order, located by header name). The basket is `customer_id`, or a `created_at` window.
//! - `baskets`: one basket per line (arules/FIMI). Items are comma separated when the file
//!   has a comma anywhere, otherwise whitespace separated; surrounding spaces are trimmed.
//!
//! Item keys are integers when every key parses as one (ordered numerically), otherwise
//! strings (ordered bytewise). Item id `i` is the i-th key in that order, so ordering by id
//! is ordering by key. Large CSVs are read in newline-aligned chunks in parallel with
//! positional reads (memory stays bounded by the chunk size, not the file size); a file with
//! quotes is read as one chunk so that quoted newlines stay correct.
//!
//! Knows nothing of similarity, models or the network.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use cooc_serve::artifact::Keys;
use rayon::prelude::*;
use rustc_hash::FxHashMap;

use crate::error::InputError;

/// How order rows are grouped into baskets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BasketBy {
    /// One basket per `customer_id`.
    Customer,
    /// One basket per `created_at` window of this many microseconds.
    Window(i64),
}

/// Pairs read from the input, chunked as read (chunks are never concatenated, to keep the
/// peak memory at one copy).
#[derive(Debug)]
pub struct Interactions {
    /// Dense basket id per row.
    pub basket: Vec<Vec<u32>>,
    /// Dense item id per row.
    pub item: Vec<Vec<u32>>,
    /// `created_at` in microseconds since the epoch per row; empty unless asked for.
    pub time: Vec<Vec<i64>>,
    pub n_baskets: usize,
    pub item_keys: Keys,
    pub n_rows: u64,
    /// `crc32:<hex>:len=<bytes>` of the input file.
    pub fingerprint: String,
}

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
struct ColBuilder {
    as_str: bool,
    ints: Vec<i64>,
    ids: Vec<u32>,
    dict: FxHashMap<Box<[u8]>, u32>,
    keys: Vec<Box<[u8]>>,
}

/// A row-level error at a byte offset of the file; turned into file:line by the caller.
struct RowErr {
    offset: u64,
    msg: String,
}

/// Signals that a column must be re-read as strings.
struct NotInt;

impl ColBuilder {
    fn new(as_str: bool) -> Self {
        ColBuilder {
            as_str,
            ints: Vec::new(),
            ids: Vec::new(),
            dict: FxHashMap::default(),
            keys: Vec::new(),
        }
    }

    #[inline]
    fn push(&mut self, field: &[u8]) -> Result<(), NotInt> {
        if self.as_str {
            let next = self.keys.len() as u32;
            let id = *self.dict.entry(field.into()).or_insert_with(|| next);
            if id == next {
                self.keys.push(field.into());
            }
            self.ids.push(id);
            Ok(())
        } else {
            match parse_int(field) {
                Some(v) => {
                    self.ints.push(v);
                    Ok(())
                }
                None => Err(NotInt),
            }
        }
    }

    fn finish(self) -> Col {
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

#[inline]
fn parse_int(field: &[u8]) -> Option<i64> {
    let f = field.trim_ascii();
    match atoi::FromRadix10SignedChecked::from_radix_10_signed_checked(f) {
        (Some(v), used) if used == f.len() && used > 0 => Some(v),
        _ => None,
    }
}

/// Parses `created_at` (RFC 3339, or PostgreSQL's `YYYY-MM-DD HH:MM:SS[.f][+TZ]`) to µs.
pub fn parse_time(field: &[u8]) -> Option<i64> {
    let s = std::str::from_utf8(field).ok()?.trim();
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(s) {
        return Some(t.timestamp_micros());
    }
    for fmt in ["%Y-%m-%d %H:%M:%S%.f%#z", "%Y-%m-%dT%H:%M:%S%.f%#z"] {
        if let Ok(t) = chrono::DateTime::parse_from_str(s, fmt) {
            return Some(t.timestamp_micros());
        }
    }
    for fmt in ["%Y-%m-%d %H:%M:%S%.f", "%Y-%m-%dT%H:%M:%S%.f"] {
        if let Ok(t) = chrono::NaiveDateTime::parse_from_str(s, fmt) {
            return Some(t.and_utc().timestamp_micros());
        }
    }
    None
}

/// Where the needed fields sit in an orders row.
#[derive(Debug, Clone, Copy)]
struct Layout {
    n_fields: usize,
    book: usize,
    customer: Option<usize>,
    created: Option<usize>,
    qty: Option<usize>,
    basket_by: BasketBy,
    need_time: bool,
}

struct ChunkOut {
    basket: Col,
    item: Col,
    time: Vec<i64>,
    crc: crc32fast::Hasher,
}

enum ChunkErr {
    Row(RowErr),
    NotInt { basket: bool },
    Quoted,
}

/// Why one record was refused.
enum RecErr {
    Msg(String),
    NotInt { basket: bool },
}

/// Accumulates the needed columns of one chunk's records.
struct Rows<'l> {
    lay: &'l Layout,
    basket: ColBuilder,
    item: ColBuilder,
    time: Vec<i64>,
}

impl Rows<'_> {
    /// Takes one record's fields; blank lines are skipped.
    #[inline]
    fn record(&mut self, fields: &[&[u8]]) -> Result<(), RecErr> {
        let lay = self.lay;
        if fields.len() == 1 && fields[0].trim_ascii().is_empty() {
            return Ok(());
        }
        if fields.len() != lay.n_fields {
            return Err(RecErr::Msg(format!(
                "expected {} fields as in the header, found {}",
                lay.n_fields,
                fields.len()
            )));
        }
        let book = fields[lay.book];
        if book.trim_ascii().is_empty() {
            return Err(RecErr::Msg("empty book_id".into()));
        }
        if let Some(q) = lay.qty {
            let q = fields[q];
            if !q.is_empty() && parse_int(q).is_none() {
                return Err(RecErr::Msg(format!(
                    "qty {:?} is not an integer",
                    String::from_utf8_lossy(q)
                )));
            }
        }
        let t = match lay.created {
            Some(c) if lay.need_time => {
                let f = fields[c];
                let t = parse_time(f).ok_or_else(|| {
                    RecErr::Msg(format!(
                        "created_at {:?} is not a timestamp (RFC 3339 or YYYY-MM-DD HH:MM:SS)",
                        String::from_utf8_lossy(f)
                    ))
                })?;
                self.time.push(t);
                t
            }
            _ => 0,
        };
        match (lay.basket_by, lay.customer) {
            (BasketBy::Customer, Some(c)) => {
                let f = fields[c];
                if f.trim_ascii().is_empty() {
                    return Err(RecErr::Msg("empty customer_id".into()));
                }
                self.basket
                    .push(f)
                    .map_err(|_| RecErr::NotInt { basket: true })?;
            }
            (BasketBy::Window(w), _) => self.basket.ints.push(t.div_euclid(w)),
            (BasketBy::Customer, None) => unreachable!("checked when the header was read"),
        }
        self.item
            .push(book)
            .map_err(|_| RecErr::NotInt { basket: false })
    }
}

/// Parses one newline-aligned piece of the body. `base` is its offset in the file.
///
/// A chunk without any `"` is plain separator-delimited text (RFC 4180 quoting is the only
/// thing that makes commas or newlines mean anything else), so it is split on `,` and `\n`
/// with SIMD `memchr2`; that runs several times faster than a general CSV state machine.
/// Chunks with quotes go through `csv_core`, and a file with quotes is read as one chunk
/// (`allow_quotes`) so that a quoted newline never falls on a chunk boundary.
fn parse_chunk(
    buf: &[u8],
    base: u64,
    lay: &Layout,
    str_basket: bool,
    str_item: bool,
    allow_quotes: bool,
) -> Result<ChunkOut, ChunkErr> {
    let quoted = memchr::memchr(b'"', buf).is_some();
    if quoted && !allow_quotes {
        return Err(ChunkErr::Quoted);
    }
    let mut crc = crc32fast::Hasher::new();
    crc.update(buf);
    let est = buf.len() / 40 + 16;
    let mut rows = Rows {
        lay,
        basket: ColBuilder::new(str_basket),
        item: ColBuilder::new(str_item),
        time: Vec::with_capacity(if lay.need_time { est } else { 0 }),
    };
    rows.basket.ints.reserve(est);
    rows.item.ints.reserve(est);
    let fail = |start: usize, e: RecErr| match e {
        RecErr::Msg(msg) => ChunkErr::Row(RowErr {
            offset: base + start as u64,
            msg,
        }),
        RecErr::NotInt { basket } => ChunkErr::NotInt { basket },
    };
    let mut fields: Vec<&[u8]> = Vec::with_capacity(lay.n_fields + 1);
    if !quoted {
        let mut line_start = 0usize;
        let mut field_start = 0usize;
        for sep in memchr::memchr2_iter(b',', b'\n', buf) {
            fields.push(&buf[field_start..sep]);
            field_start = sep + 1;
            if buf[sep] == b'\n' {
                if let Some(last) = fields.last_mut() {
                    if let Some(stripped) = last.strip_suffix(b"\r") {
                        *last = stripped;
                    }
                }
                rows.record(&fields).map_err(|e| fail(line_start, e))?;
                fields.clear();
                line_start = field_start;
            }
        }
        if line_start < buf.len() {
            fields.push(&buf[field_start..]);
            if let Some(last) = fields.last_mut() {
                if let Some(stripped) = last.strip_suffix(b"\r") {
                    *last = stripped;
                }
            }
            rows.record(&fields).map_err(|e| fail(line_start, e))?;
        }
    } else {
        let mut rdr = csv_core::Reader::new();
        let mut out = vec![0u8; 1 << 16];
        let mut ends = vec![0usize; lay.n_fields + 1];
        let mut pos = 0usize;
        loop {
            let start = pos;
            let (res, nin, _nout, nend) = rdr.read_record(&buf[pos..], &mut out, &mut ends);
            pos += nin;
            let msg = |m: &str| fail(start, RecErr::Msg(m.into()));
            match res {
                csv_core::ReadRecordResult::Record => {}
                csv_core::ReadRecordResult::End => break,
                csv_core::ReadRecordResult::InputEmpty => continue,
                csv_core::ReadRecordResult::OutputFull => {
                    return Err(msg("a field is longer than 64 KiB"))
                }
                csv_core::ReadRecordResult::OutputEndsFull => {
                    return Err(msg("more fields than the header has"))
                }
            }
            let mut fields: Vec<&[u8]> = Vec::with_capacity(nend);
            let mut prev = 0;
            for &e in &ends[..nend] {
                fields.push(&out[prev..e]);
                prev = e;
            }
            rows.record(&fields).map_err(|e| fail(start, e))?;
        }
    }
    Ok(ChunkOut {
        basket: rows.basket.finish(),
        item: rows.item.finish(),
        time: rows.time,
        crc,
    })
}

fn io_err(path: &Path) -> impl Fn(std::io::Error) -> InputError + '_ {
    move |source| InputError::Io {
        path: path.to_owned(),
        source,
    }
}

/// Line number (1-based) of a byte offset.
fn line_of(file: &File, offset: u64) -> u64 {
    let mut line = 1u64;
    let mut buf = vec![0u8; 1 << 20];
    let mut at = 0u64;
    while at < offset {
        let want = ((offset - at) as usize).min(buf.len());
        match file.read_at(&mut buf[..want], at) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                line += memchr::memchr_iter(b'\n', &buf[..n]).count() as u64;
                at += n as u64;
            }
        }
    }
    line
}

/// Options for reading orders.
#[derive(Debug, Clone, Copy)]
pub struct OrdersOptions {
    pub basket_by: BasketBy,
    /// Parse `created_at` for every row (hold-out evaluation needs it).
    pub need_time: bool,
}

/// An orders CSV with its header read and its body split into newline-aligned chunks: the
/// unit of parallel parsing here, and of sharing the reading among ranks.
pub struct OrdersFile {
    path: PathBuf,
    file: File,
    len: u64,
    /// The header line, newline included (part of the fingerprint).
    header: Vec<u8>,
    lay: Layout,
    /// Chunk `c` is the byte range `bounds[c]..bounds[c + 1]`.
    bounds: Vec<u64>,
}

/// Raw columns of some chunks, keys not yet numbered.
pub(crate) struct RawChunks {
    pub basket: Vec<Col>,
    pub item: Vec<Col>,
    /// Per chunk; empty chunks' vectors when time is not needed.
    pub time: Vec<Vec<i64>>,
    /// `(chunk index, crc32, length)` of every chunk parsed, for the file's fingerprint.
    pub crcs: Vec<(u32, u32, u64)>,
}

/// Why parsing some chunks stopped, short of a result.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub(crate) enum ParseStop {
    /// The file has quotes: it must be read as one chunk.
    Quoted,
    /// A key column has a non-integer: read it as strings.
    NotInt { basket: bool },
    /// A bad row, already named `file:line: reason`.
    Bad(String),
}

/// How key columns are parsed; grows monotonically until every chunk parses.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct KeyMode {
    pub str_basket: bool,
    pub str_item: bool,
    pub quoted: bool,
}

impl KeyMode {
    /// Takes a stop into account; `false` when it cannot be fixed by reparsing.
    pub fn learn(&mut self, stop: &ParseStop) -> bool {
        match stop {
            ParseStop::Quoted => self.quoted = true,
            ParseStop::NotInt { basket: true } => self.str_basket = true,
            ParseStop::NotInt { basket: false } => self.str_item = true,
            ParseStop::Bad(_) => return false,
        }
        true
    }
}

impl OrdersFile {
    /// Opens `path`, reads and checks its header, and plans chunks of about `target` bytes.
    pub fn open(path: &Path, opts: OrdersOptions, target: u64) -> Result<OrdersFile, InputError> {
        let file = File::open(path).map_err(io_err(path))?;
        let len = file.metadata().map_err(io_err(path))?.len();
        let bad_file = |msg: String| InputError::File {
            path: path.to_owned(),
            msg,
        };
        // Header: the first line.
        let mut head = vec![0u8; (len as usize).min(64 * 1024)];
        file.read_exact_at(&mut head, 0).map_err(io_err(path))?;
        let header_end = match memchr::memchr(b'\n', &head) {
            Some(i) => i + 1,
            None if (head.len() as u64) == len => head.len(),
            None => return Err(bad_file("the header line is longer than 64 KiB".into())),
        };
        head.truncate(header_end);
        let header = csv::ReaderBuilder::new()
            .has_headers(false)
            .from_reader(&head[..])
            .records()
            .next()
            .transpose()
            .map_err(|e| bad_file(format!("reading the header: {e}")))?
            .ok_or_else(|| bad_file("empty file: expected a header line".into()))?;
        let names: Vec<String> = header
            .iter()
            .map(|h| h.trim().to_ascii_lowercase())
            .collect();
        let find = |n: &str| names.iter().position(|h| h == n);
        let book = find("book_id").ok_or_else(|| InputError::Row {
            path: path.to_owned(),
            line: 1,
            msg: format!(
                "no book_id column in the header (found: {})",
                names.join(",")
            ),
        })?;
        let customer = find("customer_id");
        let created = find("created_at");
        if opts.basket_by == BasketBy::Customer && customer.is_none() {
            return Err(InputError::Row {
                path: path.to_owned(),
                line: 1,
                msg: "no customer_id column: pass --basket-window to group orders by created_at"
                    .into(),
            });
        }
        let need_time = opts.need_time || matches!(opts.basket_by, BasketBy::Window(_));
        if need_time && created.is_none() {
            return Err(InputError::Row {
                path: path.to_owned(),
                line: 1,
                msg: "no created_at column, needed for --holdout last and --basket-window".into(),
            });
        }
        let lay = Layout {
            n_fields: names.len(),
            book,
            customer,
            created,
            qty: find("qty"),
            basket_by: opts.basket_by,
            need_time,
        };

        // Newline-aligned chunk boundaries.
        let body = header_end as u64;
        let mut bounds = vec![body];
        let mut probe = vec![0u8; 64 * 1024];
        let mut at = body + target.max(1);
        while at < len {
            let mut p = at;
            loop {
                let n = file.read_at(&mut probe, p).map_err(io_err(path))?;
                if n == 0 {
                    p = len;
                    break;
                }
                if let Some(i) = memchr::memchr(b'\n', &probe[..n]) {
                    p += i as u64 + 1;
                    break;
                }
                p += n as u64;
            }
            if p >= len {
                break;
            }
            bounds.push(p);
            at = p + target.max(1);
        }
        bounds.push(len);
        bounds.dedup();
        Ok(OrdersFile {
            path: path.to_owned(),
            file,
            len,
            header: head,
            lay,
            bounds,
        })
    }

    /// The chunk size [`read_orders`] uses: a few chunks per thread, 1 to 16 MiB.
    pub fn default_target(path: &Path) -> u64 {
        let len = std::fs::metadata(path).map_or(0, |m| m.len());
        let threads = rayon::current_num_threads() as u64;
        (len / (threads * 8)).clamp(1 << 20, 16 << 20)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn need_time(&self) -> bool {
        self.lay.need_time
    }

    /// Chunks of the body (at least one, possibly empty).
    pub fn n_chunks(&self) -> usize {
        self.bounds.len().saturating_sub(1).max(1)
    }

    /// crc32 of the header line, the start of the file's fingerprint.
    pub fn header_crc(&self) -> (u32, u64) {
        (crc32fast::hash(&self.header), self.header.len() as u64)
    }

    /// Parses the chunks `which` selects (all of the body as one chunk, index 0, when
    /// `mode.quoted`), in parallel, in chunk order.
    pub(crate) fn parse(
        &self,
        which: impl Fn(usize) -> bool,
        mode: KeyMode,
    ) -> Result<RawChunks, ParseStop> {
        let body = self.header.len() as u64;
        let ranges: Vec<(u32, u64, u64)> = if mode.quoted {
            vec![(0, body, self.len)]
        } else {
            self.bounds
                .windows(2)
                .enumerate()
                .map(|(c, w)| (c as u32, w[0], w[1]))
                .collect()
        };
        let ranges: Vec<_> = ranges.into_iter().filter(|r| which(r.0 as usize)).collect();
        // One read buffer per worker thread: a fresh zeroed buffer per chunk made the
        // kernel zero ~1 GB of pages for a 1 GB file.
        let buffers: thread_local::ThreadLocal<std::cell::RefCell<Vec<u8>>> =
            thread_local::ThreadLocal::new();
        let result: Result<Vec<(u32, u64, ChunkOut)>, ChunkErr> = ranges
            .par_iter()
            .map(|&(c, a, b)| {
                let mut buf = buffers.get_or_default().borrow_mut();
                buf.resize((b - a) as usize, 0);
                self.file.read_exact_at(&mut buf, a).map_err(|e| {
                    ChunkErr::Row(RowErr {
                        offset: a,
                        msg: format!("read failed: {e}"),
                    })
                })?;
                let out = parse_chunk(
                    &buf,
                    a,
                    &self.lay,
                    mode.str_basket,
                    mode.str_item,
                    mode.quoted,
                )?;
                Ok((c, b - a, out))
            })
            .collect();
        let chunks = result.map_err(|e| match e {
            ChunkErr::Quoted => ParseStop::Quoted,
            ChunkErr::NotInt { basket } => ParseStop::NotInt { basket },
            ChunkErr::Row(e) => ParseStop::Bad(
                InputError::Row {
                    path: self.path.clone(),
                    line: line_of(&self.file, e.offset),
                    msg: e.msg,
                }
                .to_string(),
            ),
        })?;
        let mut raw = RawChunks {
            basket: Vec::with_capacity(chunks.len()),
            item: Vec::with_capacity(chunks.len()),
            time: Vec::with_capacity(chunks.len()),
            crcs: Vec::with_capacity(chunks.len()),
        };
        for (c, len, out) in chunks {
            raw.crcs.push((c, out.crc.clone().finalize(), len));
            raw.basket.push(out.basket);
            raw.item.push(out.item);
            raw.time.push(out.time);
        }
        Ok(raw)
    }
}

/// Parses generated order lines (`id,book_id,qty,created_at,customer_id`, no header), one
/// chunk per block.
pub(crate) fn parse_generated(
    blocks: &[Vec<u8>],
    opts: OrdersOptions,
) -> Result<RawChunks, ParseStop> {
    let lay = Layout {
        n_fields: 5,
        book: 1,
        customer: Some(4),
        created: Some(3),
        qty: Some(2),
        basket_by: opts.basket_by,
        need_time: opts.need_time || matches!(opts.basket_by, BasketBy::Window(_)),
    };
    let chunks: Vec<ChunkOut> = blocks
        .par_iter()
        .map(|b| parse_chunk(b, 0, &lay, false, false, false))
        .collect::<Result<_, _>>()
        .map_err(|e| match e {
            ChunkErr::Row(e) => ParseStop::Bad(format!("<generated>: {}", e.msg)),
            ChunkErr::NotInt { basket } => ParseStop::NotInt { basket },
            ChunkErr::Quoted => ParseStop::Quoted,
        })?;
    let mut raw = RawChunks {
        basket: Vec::new(),
        item: Vec::new(),
        time: Vec::new(),
        crcs: Vec::new(),
    };
    for c in chunks {
        raw.basket.push(c.basket);
        raw.item.push(c.item);
        raw.time.push(c.time);
    }
    Ok(raw)
}

/// `crc32:<hex>:len=<bytes>` of a file from the crc of its header and of every body chunk
/// (`(crc, len)` in chunk order), as if hashed in one pass.
pub fn file_fingerprint(
    header: (u32, u64),
    chunks: impl IntoIterator<Item = (u32, u64)>,
) -> String {
    let mut crc = crc32fast::Hasher::new_with_initial_len(header.0, header.1);
    let mut len = header.1;
    for (c, l) in chunks {
        crc.combine(&crc32fast::Hasher::new_with_initial_len(c, l));
        len += l;
    }
    format!("crc32:{:08x}:len={len}", crc.finalize())
}

/// Reads a Bookstore orders CSV.
pub fn read_orders(path: &Path, opts: OrdersOptions) -> Result<Interactions, InputError> {
    let file = OrdersFile::open(path, opts, OrdersFile::default_target(path))?;
    let mut mode = KeyMode::default();
    let raw = loop {
        match file.parse(|_| true, mode) {
            Ok(raw) => break raw,
            Err(stop) => {
                if !mode.learn(&stop) {
                    let ParseStop::Bad(msg) = stop else {
                        unreachable!("only Bad is final")
                    };
                    return Err(InputError::Parsed(msg));
                }
            }
        }
    };
    let fingerprint = file_fingerprint(file.header_crc(), raw.crcs.iter().map(|&(_, c, l)| (c, l)));
    let n_rows = raw.item.iter().map(Col::len).sum::<usize>() as u64;
    let time = if file.need_time() {
        raw.time
    } else {
        Vec::new()
    };
    let (basket, basket_keys) = assign_ids(raw.basket);
    let (item, item_keys) = assign_ids(raw.item);
    Ok(Interactions {
        basket,
        item,
        time,
        n_baskets: basket_keys.len(),
        item_keys,
        n_rows,
        fingerprint,
    })
}

/// Reads a one-basket-per-line file.
pub fn read_baskets(path: &Path) -> Result<Interactions, InputError> {
    let data = std::fs::read(path).map_err(io_err(path))?;
    let text = std::str::from_utf8(&data).map_err(|e| {
        let line = 1 + memchr::memchr_iter(b'\n', &data[..e.valid_up_to()]).count() as u64;
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
    let mut item = ColBuilder::new(!all_int);
    let mut basket = Vec::new();
    let mut n_baskets = 0u32;
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        for t in tokens(line) {
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
        time: Vec::new(),
        n_baskets: n_baskets as usize,
        item_keys,
        n_rows,
        fingerprint: format!("crc32:{:08x}:len={}", crc32fast::hash(&data), data.len()),
    })
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
        let mut table = vec![u32::MAX; span as usize];
        for v in &ints {
            for &x in v {
                table[(x - min) as usize] = 0;
            }
        }
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

/// Title and author per book key, from `books.csv` (`id,title,author,...`).
pub struct Books {
    pub path: PathBuf,
    by_key: FxHashMap<String, (String, String)>,
}

impl Books {
    pub fn read(path: &Path) -> Result<Books, InputError> {
        let file = File::open(path).map_err(io_err(path))?;
        Books::from_reader(path, file)
    }

    /// Parses `books.csv` text from `rdr`; `path` names it in errors.
    pub fn from_reader(path: &Path, rdr: impl std::io::Read) -> Result<Books, InputError> {
        let mut rdr = csv::ReaderBuilder::new().from_reader(rdr);
        let headers: Vec<String> = rdr
            .headers()
            .map_err(|e| InputError::File {
                path: path.to_owned(),
                msg: e.to_string(),
            })?
            .iter()
            .map(|h| h.trim().to_ascii_lowercase())
            .collect();
        let col = |n: &str| headers.iter().position(|h| h == n);
        let id = col("id").ok_or_else(|| InputError::Row {
            path: path.to_owned(),
            line: 1,
            msg: format!("no id column (found: {})", headers.join(",")),
        })?;
        let (title, author) = (col("title"), col("author"));
        let mut by_key = FxHashMap::default();
        for rec in rdr.records() {
            let rec = rec.map_err(|e| InputError::Row {
                path: path.to_owned(),
                line: e.position().map(|p| p.line()).unwrap_or(0),
                msg: e.to_string(),
            })?;
            let get = |c: Option<usize>| c.and_then(|c| rec.get(c)).unwrap_or("").to_owned();
            let key = rec.get(id).unwrap_or("").trim();
            let key = match parse_int(key.as_bytes()) {
                Some(v) => v.to_string(),
                None => key.to_owned(),
            };
            by_key.insert(key, (get(title), get(author)));
        }
        Ok(Books {
            path: path.to_owned(),
            by_key,
        })
    }

    /// Titles and authors aligned with `keys`.
    pub fn align(&self, keys: &Keys) -> (Vec<Option<String>>, Vec<Option<String>>) {
        let lookup = |k: String| self.by_key.get(&k);
        let pairs: Vec<Option<&(String, String)>> = match keys {
            Keys::Int(v) => v.iter().map(|k| lookup(k.to_string())).collect(),
            Keys::Str(v) => v.iter().map(|k| lookup(k.clone())).collect(),
        };
        let nonempty = |s: &String| Some(s.clone()).filter(|s| !s.is_empty());
        (
            pairs
                .iter()
                .map(|p| p.and_then(|p| nonempty(&p.0)))
                .collect(),
            pairs
                .iter()
                .map(|p| p.and_then(|p| nonempty(&p.1)))
                .collect(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn write(dir: &Path, name: &str, body: &str) -> PathBuf {
        let p = dir.join(name);
        std::fs::File::create(&p)
            .unwrap()
            .write_all(body.as_bytes())
            .unwrap();
        p
    }

    fn opts() -> OrdersOptions {
        OrdersOptions {
            basket_by: BasketBy::Customer,
            need_time: false,
        }
    }

    #[test]
    fn columns_are_found_by_name_in_any_order() {
        let d = tempfile::tempdir().unwrap();
        let p = write(
            d.path(),
            "o.csv",
            "customer_id,qty,book_id\n7,1,30\n7,2,10\n9,1,30\n",
        );
        let r = read_orders(&p, opts()).unwrap();
        assert_eq!(r.item_keys, Keys::Int(vec![10, 30]));
        assert_eq!(r.n_baskets, 2);
        assert_eq!(r.item.concat(), vec![1, 0, 1]);
        assert_eq!(r.basket.concat(), vec![0, 0, 1]);
    }

    #[test]
    fn string_keys_fall_back_and_sort_bytewise() {
        let d = tempfile::tempdir().unwrap();
        let p = write(d.path(), "o.csv", "book_id,customer_id\n10,a\nb,a\n9,c\n");
        let r = read_orders(&p, opts()).unwrap();
        assert_eq!(
            r.item_keys,
            Keys::Str(vec!["10".into(), "9".into(), "b".into()])
        );
        assert_eq!(r.item.concat(), vec![0, 2, 1]);
    }

    #[test]
    fn bad_rows_name_file_and_line() {
        let d = tempfile::tempdir().unwrap();
        let p = write(
            d.path(),
            "orders.csv",
            "id,book_id,qty,created_at,customer_id\n1,5,1,2024-01-01T00:00:00Z,1\n2,6,x,2024-01-01T00:00:00Z,1\n",
        );
        let e = read_orders(&p, opts()).unwrap_err().to_string();
        assert!(e.contains("orders.csv:3:") && e.contains("qty"), "{e}");
        let p = write(d.path(), "short.csv", "book_id,customer_id\n1,2\n3\n");
        let e = read_orders(&p, opts()).unwrap_err().to_string();
        assert!(
            e.contains("short.csv:3:") && e.contains("expected 2 fields"),
            "{e}"
        );
        let p = write(d.path(), "nocust.csv", "book_id,qty\n1,2\n");
        let e = read_orders(&p, opts()).unwrap_err().to_string();
        assert!(
            e.contains("nocust.csv:1:") && e.contains("--basket-window"),
            "{e}"
        );
        let p = write(
            d.path(),
            "t.csv",
            "book_id,customer_id,created_at\n1,2,yesterday\n",
        );
        let e = read_orders(
            &p,
            OrdersOptions {
                basket_by: BasketBy::Customer,
                need_time: true,
            },
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("t.csv:2:") && e.contains("yesterday"), "{e}");
    }

    #[test]
    fn quoted_fields_and_windows() {
        let d = tempfile::tempdir().unwrap();
        let p = write(
            d.path(),
            "o.csv",
            "book_id,created_at\n\"1\",2024-01-01 10:00:00\n2,2024-01-01T10:59:59Z\n3,2024-01-01 11:00:00+00\n",
        );
        let r = read_orders(
            &p,
            OrdersOptions {
                basket_by: BasketBy::Window(3_600_000_000),
                need_time: false,
            },
        )
        .unwrap();
        assert_eq!(r.n_baskets, 2);
        assert_eq!(r.basket.concat(), vec![0, 0, 1]);
    }

    #[test]
    fn baskets_format_comma_and_space() {
        let d = tempfile::tempdir().unwrap();
        let p = write(d.path(), "g.csv", "whole milk,yogurt \n\nbeer\n");
        let r = read_baskets(&p).unwrap();
        assert_eq!(r.n_baskets, 2);
        assert_eq!(
            r.item_keys,
            Keys::Str(vec!["beer".into(), "whole milk".into(), "yogurt".into()])
        );
        let p = write(d.path(), "f.dat", "3 1 2\n2 2\n");
        let r = read_baskets(&p).unwrap();
        assert_eq!(r.item_keys, Keys::Int(vec![1, 2, 3]));
        assert_eq!(r.item.concat(), vec![2, 0, 1, 1, 1]);
        let p = write(d.path(), "bad.csv", "a,b\nc,,d\n");
        let e = read_baskets(&p).unwrap_err().to_string();
        assert!(e.contains("bad.csv:2:"), "{e}");
    }

    #[test]
    fn crlf_lines_and_many_chunks_keep_exact_line_numbers() {
        let d = tempfile::tempdir().unwrap();
        let p = write(
            d.path(),
            "crlf.csv",
            "book_id,customer_id\r\n5,1\r\n6,1\r\n",
        );
        let r = read_orders(&p, opts()).unwrap();
        assert_eq!(r.item_keys, Keys::Int(vec![5, 6]));
        assert_eq!(r.basket.concat(), vec![0, 0]);

        // ~6 MB: several 1 MiB+ chunks read in parallel; break line 150,001.
        let mut body = String::from("id,book_id,qty,created_at,customer_id\n");
        for i in 0..200_000u32 {
            if i == 150_000 {
                body.push_str("x,1,1,2024-01-01T00:00:00Z\n");
            } else {
                body.push_str(&format!(
                    "{i},{},1,2024-01-01T00:00:00Z,{}\n",
                    i % 97,
                    i % 1013
                ));
            }
        }
        let p = write(d.path(), "big.csv", &body);
        let e = read_orders(&p, opts()).unwrap_err().to_string();
        assert!(e.contains("big.csv:150002:"), "{e}");
        let fixed = body.replace(
            "x,1,1,2024-01-01T00:00:00Z\n",
            "x,1,1,2024-01-01T00:00:00Z,7\n",
        );
        std::fs::write(&p, fixed).unwrap();
        let r = read_orders(&p, opts()).unwrap();
        assert_eq!(r.n_rows, 200_000);
        assert!(r.basket.len() > 1, "expected several chunks");
        assert_eq!(r.item_keys.len(), 97);
        assert_eq!(r.n_baskets, 1013);
    }

    #[test]
    fn parses_timestamps() {
        assert_eq!(parse_time(b"1970-01-01T00:00:01Z"), Some(1_000_000));
        assert_eq!(
            parse_time(b"1970-01-01 00:00:01+01"),
            Some(1_000_000 - 3_600_000_000)
        );
        assert_eq!(parse_time(b"1970-01-01 00:00:01.5"), Some(1_500_000));
        assert_eq!(parse_time(b"soon"), None);
    }
}
