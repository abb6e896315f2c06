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
//! Knows nothing of similarity, models or the network (`crate::postgres` streams a
//! database's rows into this module's parser).

mod baskets;
mod books;
mod csv;
mod ids;
mod orders;
#[cfg(test)]
mod tests;

use std::path::Path;

use cooc_model::Keys;

use crate::error::InputError;

pub use baskets::read_baskets;
pub use books::Books;
pub use csv::parse_time;
pub(crate) use csv::{parse_chunk, ChunkErr, Layout};
pub(crate) use ids::{assign_ids, Col};
pub use orders::{file_fingerprint, read_orders, OrdersFile, OrdersOptions};
pub(crate) use orders::{parse_generated, KeyMode, ParseStop, RawChunks};

/// How item keys are read (`--keys`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum KeyKind {
    /// Integers when every key is a canonical integer (digits, no sign, no leading zero),
    /// else strings.
    #[default]
    Auto,
    /// Integers; a key that is not a canonical integer is an error.
    Int,
    /// Strings, always (ISBNs, SKUs).
    String,
}

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
    /// Baskets (dense ids `0..n_baskets`).
    pub n_baskets: usize,
    /// Item keys; item id `i` is `item_keys[i]`.
    pub item_keys: Keys,
    /// Rows read.
    pub n_rows: u64,
    /// `crc32:<hex>:len=<bytes>` of the input file.
    pub fingerprint: String,
}

/// `bytes` without a leading UTF-8 byte-order mark: the one place every reader drops it
/// (spreadsheet exports start with one; it must not become part of the first key).
pub(crate) fn strip_bom(bytes: &[u8]) -> &[u8] {
    bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes)
}

fn io_err(path: &Path) -> impl Fn(std::io::Error) -> InputError + '_ {
    move |error| InputError::Io {
        path: path.to_owned(),
        error,
    }
}
