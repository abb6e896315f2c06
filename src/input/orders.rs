//! An orders CSV planned as newline-aligned chunks (the unit of parallel parsing and of
//! sharing the reading among ranks), the vocabulary a gang uses to agree on how keys parse
//! ([`KeyMode`], [`ParseStop`]), and the file's fingerprint.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use rayon::prelude::*;

use super::csv::{parse_chunk, ChunkErr, ChunkOut, Layout, RowErr, DELIMITERS};
use super::ids::{assign_ids, Col};
use super::{io_err, strip_bom, BasketBy, Interactions};
use crate::error::InputError;

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
    /// How rows group into baskets.
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
    /// The source itself failed (a database), already named; `retriable` when a rerun
    /// may succeed.
    Source { message: String, retriable: bool },
}

/// How key columns are parsed; grows monotonically until every chunk parses.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct KeyMode {
    pub(crate) str_basket: bool,
    pub(crate) str_item: bool,
    pub(crate) quoted: bool,
}

impl KeyMode {
    /// Both modes' string and quote settings.
    pub(crate) fn union(self, other: KeyMode) -> KeyMode {
        KeyMode {
            str_basket: self.str_basket || other.str_basket,
            str_item: self.str_item || other.str_item,
            quoted: self.quoted || other.quoted,
        }
    }

    /// Takes a stop into account; `false` when it cannot be fixed by reparsing.
    pub(crate) fn learn(&mut self, stop: &ParseStop) -> bool {
        match stop {
            ParseStop::Quoted => self.quoted = true,
            ParseStop::NotInt { basket: true } => self.str_basket = true,
            ParseStop::NotInt { basket: false } => self.str_item = true,
            ParseStop::Bad(_) | ParseStop::Source { .. } => return false,
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
        let header_with = |delimiter: u8| -> Result<Vec<String>, InputError> {
            let header = csv::ReaderBuilder::new()
                .has_headers(false)
                .delimiter(delimiter)
                .from_reader(strip_bom(&head))
                .records()
                .next()
                .transpose()
                .map_err(|e| bad_file(format!("reading the header: {e}")))?
                .ok_or_else(|| bad_file("empty file: expected a header line".into()))?;
            Ok(header
                .iter()
                .map(|h| h.trim().to_ascii_lowercase())
                .collect())
        };
        // The separator is the first of DELIMITERS that makes book_id a column of its own.
        let mut found = None;
        for d in DELIMITERS {
            let names = header_with(d)?;
            if names.iter().any(|h| h == "book_id") {
                found = Some((d, names));
                break;
            }
        }
        let Some((delimiter, names)) = found else {
            let names = header_with(b',')?;
            return Err(InputError::Row {
                path: path.to_owned(),
                line: 1,
                msg: format!(
                    "no book_id column in the header (found: {}); the header must name book_id, \
                     and its columns may be separated by commas, tabs, semicolons or pipes",
                    names.join(",").escape_debug()
                ),
            });
        };
        let find = |n: &str| names.iter().position(|h| h == n);
        let book = find("book_id").expect("found above");
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
            delimiter,
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

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Its length in bytes.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether it is empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Whether rows keep their `created_at`.
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
        let chunks = result.map_err(|e| {
            ParseStop::of(e, |e| {
                InputError::Row {
                    path: self.path.clone(),
                    line: line_of(&self.file, e.offset),
                    msg: e.msg,
                }
                .to_string()
            })
        })?;
        Ok(RawChunks::from_chunks(chunks))
    }
}

/// Parses generated order lines (`id,book_id,qty,created_at,customer_id`, no header), one
/// chunk per block.
pub(crate) fn parse_generated(
    blocks: &[Vec<u8>],
    opts: OrdersOptions,
    mode: KeyMode,
) -> Result<RawChunks, ParseStop> {
    let lay = Layout {
        delimiter: b',',
        n_fields: 5,
        book: 1,
        customer: Some(4),
        created: Some(3),
        qty: Some(2),
        basket_by: opts.basket_by,
        need_time: opts.need_time || matches!(opts.basket_by, BasketBy::Window(_)),
    };
    let chunks: Vec<(u32, u64, ChunkOut)> = blocks
        .par_iter()
        .enumerate()
        .map(|(i, b)| {
            let out = parse_chunk(b, 0, &lay, mode.str_basket, mode.str_item, false)?;
            Ok((i as u32, b.len() as u64, out))
        })
        .collect::<Result<_, _>>()
        .map_err(|e| ParseStop::of(e, |e| format!("<generated>: {}", e.msg)))?;
    Ok(RawChunks::from_chunks(chunks))
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
                    let (ParseStop::Bad(msg) | ParseStop::Source { message: msg, .. }) = stop
                    else {
                        unreachable!("only Bad and Source are final")
                    };
                    return Err(InputError::Parsed(msg));
                }
            }
        }
    };
    let fingerprint = file_fingerprint(file.header_crc(), raw.crcs.iter().map(|&(_, c, l)| (c, l)));
    Ok(raw.into_interactions(file.need_time(), fingerprint))
}

impl ParseStop {
    /// The stop a chunk's error means; `bad` names a bad row (file and line, or source).
    pub(crate) fn of(e: ChunkErr, bad: impl FnOnce(RowErr) -> String) -> ParseStop {
        match e {
            ChunkErr::Quoted => ParseStop::Quoted,
            ChunkErr::NotInt { basket } => ParseStop::NotInt { basket },
            ChunkErr::Row(e) => ParseStop::Bad(bad(e)),
        }
    }
}

impl RawChunks {
    /// Parsed chunks, `(index, length, columns)` in order.
    pub(crate) fn from_chunks(chunks: Vec<(u32, u64, ChunkOut)>) -> RawChunks {
        let mut raw = RawChunks {
            basket: Vec::with_capacity(chunks.len()),
            item: Vec::with_capacity(chunks.len()),
            time: Vec::with_capacity(chunks.len()),
            crcs: Vec::with_capacity(chunks.len()),
        };
        for (c, len, out) in chunks {
            raw.crcs.push((c, out.crc.finalize(), len));
            raw.basket.push(out.basket);
            raw.item.push(out.item);
            raw.time.push(out.time);
        }
        raw
    }

    /// Every row of these chunks, numbered densely in key order: the input of one process
    /// (the times kept only when `need_time`).
    pub(crate) fn into_interactions(self, need_time: bool, fingerprint: String) -> Interactions {
        let n_rows = self.item.iter().map(Col::len).sum::<usize>() as u64;
        let time = if need_time { self.time } else { Vec::new() };
        let ((basket, basket_keys), (item, item_keys)) =
            rayon::join(|| assign_ids(self.basket), || assign_ids(self.item));
        Interactions {
            basket,
            item,
            time,
            n_baskets: basket_keys.len(),
            item_keys,
            n_rows,
            fingerprint,
        }
    }
}
