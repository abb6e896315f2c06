//! The orders CSV's records: one newline-aligned chunk at a time, into raw key columns,
//! with a fast path for chunks without quotes and `csv_core` for the rest.

use super::ids::{Col, ColBuilder, KeyErr};
use super::BasketBy;

/// A row-level error at a byte offset of the file; turned into file:line by the caller.
pub(crate) struct RowErr {
    pub(crate) offset: u64,
    pub(crate) msg: String,
}

#[inline]
/// A key in canonical integer form: ASCII digits, no sign, no spaces, no leading zero
/// (so `0553092626`, an ISBN, is a string key, never the integer 553092626).
pub(crate) fn parse_int(field: &[u8]) -> Option<i64> {
    // Up to 18 digits cannot overflow i64: one pass checks and converts.
    if field.len() <= 18 {
        if field.is_empty() || (field.len() > 1 && field[0] == b'0') {
            return None;
        }
        let mut v = 0i64;
        for &b in field {
            let d = b.wrapping_sub(b'0');
            if d > 9 {
                return None;
            }
            v = v * 10 + d as i64;
        }
        return Some(v);
    }
    let canonical = !field.is_empty()
        && field.iter().all(u8::is_ascii_digit)
        && (field.len() == 1 || field[0] != b'0');
    if !canonical {
        return None;
    }
    match atoi::FromRadix10Checked::from_radix_10_checked(field) {
        (Some(v), used) if used == field.len() => Some(v),
        _ => None,
    }
}

/// Any integer (a `qty`): surrounding spaces, a sign and leading zeros are fine.
fn parse_any_int(field: &[u8]) -> Option<i64> {
    let f = field.trim_ascii();
    match atoi::FromRadix10SignedChecked::from_radix_10_signed_checked(f) {
        (Some(v), used) if used == f.len() && used > 0 => Some(v),
        _ => None,
    }
}

/// Parses `created_at` (RFC 3339, or PostgreSQL's `YYYY-MM-DD HH:MM:SS[.f][+TZ]`) to µs.
pub fn parse_time(field: &[u8]) -> Option<i64> {
    parse_time_plain(field, None).or_else(|| parse_time_general(field))
}

/// [`parse_time`], remembering each date's midnight in `days`.
fn parse_time_with(field: &[u8], days: &mut Days) -> Option<i64> {
    parse_time_plain(field, Some(days)).or_else(|| parse_time_general(field))
}

/// Midnight (UTC, µs) of dates already seen, direct-mapped by `YYYYMMDD`: a chunk's rows
/// span a few hundred dates, so chrono checks and converts each date about once per chunk
/// rather than once per row. And the last timestamp read, with its value: the lines of one
/// order usually share it, and comparing three words replaces reading the digits.
pub(crate) struct Days {
    slots: Vec<(u32, i64)>,
    /// The last field of the plain shape, as [`parse_time_plain`] reads it in words (no
    /// field is all zeros), and its value.
    last: ([u64; 3], i64),
}

impl Days {
    const SLOTS: usize = 1024;
    /// No date: `YYYYMMDD` is at most 99,991,231.
    const EMPTY: u32 = u32::MAX;

    pub(crate) fn new() -> Days {
        Days {
            slots: vec![(Self::EMPTY, 0); Self::SLOTS],
            last: ([0; 3], 0),
        }
    }
}

/// [`parse_time`] by chrono's parsers alone.
pub(crate) fn parse_time_general(field: &[u8]) -> Option<i64> {
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

/// The shape nearly every row has, `YYYY-MM-DDTHH:MM:SSZ` (or a space for `T`, or no `Z`:
/// UTC either way), with its digits read in place; chrono checks the date and time. Anything
/// else, or anything chrono refuses here (a leap second), is left to the general parsers of
/// [`parse_time`], which give the same answer for this shape.
fn parse_time_plain(f: &[u8], days: Option<&mut Days>) -> Option<i64> {
    if !(f.len() == 19 || (f.len() == 20 && f[19] == b'Z'))
        || f[4] != b'-'
        || f[7] != b'-'
        || !(f[10] == b'T' || f[10] == b' ')
        || f[13] != b':'
        || f[16] != b':'
    {
        return None;
    }
    // Bytes 0..19 (all but an optional `Z`, which changes nothing) as three words read in
    // place: compared without first copying the field.
    let word = |a: usize| u64::from_le_bytes(f[a..a + 8].try_into().expect("eight bytes"));
    let field = [word(0), word(8), word(11)];
    if let Some(days) = &days {
        // Word by word in registers: comparing the arrays whole loads `field` back from
        // the stack in one wide read of three narrow writes, which stalls (measured: 40%
        // of this function's time).
        let l = &days.last.0;
        if (l[0] ^ field[0]) | (l[1] ^ field[1]) | (l[2] ^ field[2]) == 0 {
            return Some(days.last.1);
        }
    }
    // The digits' values, a byte each, from the same words (`YYYY-MM-`, `DDTHH:MM`,
    // `HH:MM:SS`), all fourteen checked at once.
    let (v0, v1, v2) = (
        digit_values(field[0], 0x00FF_FF00_FFFF_FFFF)?,
        digit_values(field[1], 0xFFFF_00FF_FF00_FFFF)?,
        digit_values(field[2], 0xFFFF_00FF_FF00_FFFF)?,
    );
    // Each byte with the next as two decimal digits, all at once (at most 99: no carry).
    let pairs = |v: u64| v * 10 + (v >> 8);
    let (p0, p1, p2) = (pairs(v0), pairs(v1), pairs(v2));
    let two = |p: u64, i: u32| (p >> (8 * i)) as u32 & 0xFF;
    let (y, mo, d) = (two(p0, 0) * 100 + two(p0, 2), two(p0, 5), two(p1, 0));
    let (h, mi, sec) = (two(p1, 3), two(p1, 6), two(p2, 6));
    // chrono's `and_hms_opt` bounds (a leap second goes to the general parsers).
    if h >= 24 || mi >= 60 || sec >= 60 {
        return None;
    }
    let midnight = |y: u32, mo: u32, d: u32| -> Option<i64> {
        let date = chrono::NaiveDate::from_ymd_opt(y as i32, mo, d)?;
        Some(date.and_hms_opt(0, 0, 0)?.and_utc().timestamp_micros())
    };
    let since_midnight = i64::from(h * 3600 + mi * 60 + sec) * 1_000_000;
    Some(match days {
        Some(days) => {
            let key = y * 10_000 + mo * 100 + d;
            let slot = &mut days.slots[key as usize % Days::SLOTS];
            if slot.0 != key {
                *slot = (key, midnight(y, mo, d)?);
            }
            let t = slot.1 + since_midnight;
            days.last = (field, t);
            t
        }
        None => midnight(y, mo, d)? + since_midnight,
    })
}

/// The bytes of `word` under `mask` (0xFF where a digit belongs), each as its digit's value
/// (0 elsewhere), or `None` if one of them is not an ASCII digit.
#[inline(always)]
fn digit_values(word: u64, mask: u64) -> Option<u64> {
    const ZEROS: u64 = 0x3030_3030_3030_3030;
    const HIGH: u64 = 0xF0F0_F0F0_F0F0_F0F0;
    const SIX: u64 = 0x0606_0606_0606_0606;
    // '0' where no digit belongs; then a digit is a byte 0x30..=0x39: high nibble 3, and
    // still 3 after adding 6 (no byte carries: each is at most 0x3F by then).
    let x = (word & mask) | (ZEROS & !mask);
    (x & HIGH == ZEROS && x.wrapping_add(SIX) & HIGH == ZEROS).then(|| x - ZEROS)
}

/// The separators an orders header may use, in the order they are tried: comma (CSV),
/// tab (a spreadsheet's or `psql`'s export), semicolon (CSV where the decimal mark is a
/// comma), pipe.
pub(crate) const DELIMITERS: [u8; 4] = [b',', b'\t', b';', b'|'];

/// Where the needed fields sit in an orders row.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Layout {
    /// The field separator, found from the header (see [`DELIMITERS`]).
    pub(crate) delimiter: u8,
    pub(crate) n_fields: usize,
    pub(crate) book: usize,
    pub(crate) customer: Option<usize>,
    pub(crate) created: Option<usize>,
    pub(crate) qty: Option<usize>,
    pub(crate) basket_by: BasketBy,
    pub(crate) need_time: bool,
}

pub(crate) struct ChunkOut {
    pub(crate) basket: Col,
    pub(crate) item: Col,
    pub(crate) time: Vec<i64>,
    pub(crate) crc: crc32fast::Hasher,
}

pub(crate) enum ChunkErr {
    Row(RowErr),
    NotInt { basket: bool },
    Quoted,
}

/// Why one record was refused.
enum RecErr {
    Msg(String),
    NotInt { basket: bool },
}

impl RecErr {
    fn key(e: KeyErr, column: &str, basket: bool) -> RecErr {
        match e {
            KeyErr::NotInt => RecErr::NotInt { basket },
            KeyErr::NotUtf8 => RecErr::Msg(format!("{column} is not valid UTF-8")),
        }
    }
}

/// Accumulates the needed columns of one chunk's records.
struct Rows<'l> {
    lay: &'l Layout,
    basket: ColBuilder,
    item: ColBuilder,
    time: Vec<i64>,
    days: Days,
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
            if !q.is_empty() && parse_any_int(q).is_none() {
                return Err(RecErr::Msg(format!(
                    "qty {:?} is not an integer",
                    String::from_utf8_lossy(q)
                )));
            }
        }
        let t = match lay.created {
            Some(c) if lay.need_time => {
                let f = fields[c];
                let t = parse_time_with(f, &mut self.days).ok_or_else(|| {
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
                    .map_err(|e| RecErr::key(e, "customer_id", true))?;
            }
            (BasketBy::Window(w), _) => self.basket.ints.push(t.div_euclid(w)),
            (BasketBy::Customer, None) => unreachable!("checked when the header was read"),
        }
        self.item
            .push(book)
            .map_err(|e| RecErr::key(e, "book_id", false))
    }
}

/// The positions of `delim` and `\n` in `buf`, ascending: eight bytes per step, each
/// step's matches found with exact SWAR byte compares and taken lowest bit first. Fields
/// are a few bytes long, so a vector search restarted at each one (`memchr2_iter`) spends
/// more on starting than on searching.
struct Separators<'b> {
    buf: &'b [u8],
    /// `delim` and `\n` in every byte.
    delims: u64,
    newlines: u64,
    /// Start of the word `mask` came from.
    at: usize,
    /// The word's matches not yet taken: the high bit of each matching byte.
    mask: u64,
}

impl<'b> Separators<'b> {
    const LO7: u64 = 0x7f7f_7f7f_7f7f_7f7f;

    fn new(buf: &'b [u8], delim: u8) -> Self {
        let mut s = Separators {
            buf,
            delims: u64::from_le_bytes([delim; 8]),
            newlines: u64::from_le_bytes([b'\n'; 8]),
            at: 0,
            mask: 0,
        };
        if !buf.is_empty() {
            s.mask = s.matches(0);
        }
        s
    }

    /// The high bit of every byte of the word at `at` that is `delim` or `\n`; the last
    /// word is padded with bytes that match neither.
    #[inline]
    fn matches(&self, at: usize) -> u64 {
        let word = match self.buf.get(at..at + 8) {
            Some(w) => u64::from_le_bytes(w.try_into().expect("eight bytes")),
            None => {
                let rest = &self.buf[at..];
                let mut w = [0u8; 8];
                w[..rest.len()].copy_from_slice(rest);
                let valid = (1u64 << (8 * rest.len())) - 1;
                let word = u64::from_le_bytes(w);
                return (Self::zero_bytes(word ^ self.delims)
                    | Self::zero_bytes(word ^ self.newlines))
                    & valid;
            }
        };
        Self::zero_bytes(word ^ self.delims) | Self::zero_bytes(word ^ self.newlines)
    }

    /// The high bit of each byte of `v` that is zero, exactly (no carries between bytes).
    #[inline]
    fn zero_bytes(v: u64) -> u64 {
        !(((v & Self::LO7).wrapping_add(Self::LO7)) | v | Self::LO7)
    }
}

impl Iterator for Separators<'_> {
    type Item = usize;

    #[inline]
    fn next(&mut self) -> Option<usize> {
        while self.mask == 0 {
            self.at += 8;
            if self.at >= self.buf.len() {
                return None;
            }
            self.mask = self.matches(self.at);
        }
        let bit = self.mask.trailing_zeros() as usize;
        self.mask &= self.mask - 1;
        Some(self.at + bit / 8)
    }
}

/// Parses one newline-aligned piece of the body. `base` is its offset in the file.
///
/// A chunk without any `"` is plain separator-delimited text (RFC 4180 quoting is the only
/// thing that makes separators or newlines mean anything else), so it is split on the
/// separator and `\n` found eight bytes at a time ([`Separators`]); that runs several times
/// faster than a general CSV state machine.
/// Chunks with quotes go through `csv_core`, and a file with quotes is read as one chunk
/// (`allow_quotes`) so that a quoted newline never falls on a chunk boundary.
pub(crate) fn parse_chunk(
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
        days: Days::new(),
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
        for sep in Separators::new(buf, lay.delimiter) {
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
        let mut rdr = csv_core::ReaderBuilder::new()
            .delimiter(lay.delimiter)
            .build();
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

#[cfg(test)]
mod unit {
    use super::*;

    #[test]
    fn separators_are_memchr2s_positions() {
        // Every length up to 40 (each tail case), separators at every offset, bytes that
        // differ from a separator in one bit (0x2d, 0x0b, 0xac, 0x8a) and high bytes.
        let alphabet = [
            b',',
            b'\n',
            b'a',
            b'-',
            0x0b,
            0xac,
            0x8a,
            0x2c ^ 0x80,
            b';',
            0,
        ];
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        for len in 0..40 {
            for _ in 0..200 {
                let buf: Vec<u8> = (0..len)
                    .map(|_| {
                        state ^= state << 13;
                        state ^= state >> 7;
                        state ^= state << 17;
                        alphabet[(state % alphabet.len() as u64) as usize]
                    })
                    .collect();
                for delim in [b',', b';'] {
                    let want: Vec<usize> = memchr::memchr2_iter(delim, b'\n', &buf).collect();
                    let got: Vec<usize> = Separators::new(&buf, delim).collect();
                    assert_eq!(got, want, "{buf:?} with {:?}", delim as char);
                }
            }
        }
    }

    #[test]
    fn a_non_digit_anywhere_in_the_plain_shape_is_left_to_the_general_parsers() {
        let good = b"2024-02-29T10:20:30Z";
        assert_eq!(parse_time_plain(good, None), parse_time_general(good));
        for at in (0..19).filter(|p| ![4, 7, 10, 13, 16].contains(p)) {
            for b in [
                b'/', b':', b' ', b'+', b'a', b'A', 0x00, 0x3F, 0x40, 0x80, 0xB0, 0xFF,
            ] {
                let mut f = *good;
                f[at] = b;
                assert_eq!(parse_time_plain(&f, None), None, "{at} {b:#x}");
                assert_eq!(parse_time_plain(&f, Some(&mut Days::new())), None);
                assert_eq!(parse_time(&f), parse_time_general(&f), "{at} {b:#x}");
            }
        }
    }

    #[test]
    fn remembered_dates_parse_as_the_general_parsers_do() {
        // Four years of dates, invalid ones among them (month 0 and 13, day 0 and 32, 30
        // February), each twice, so the second pass reads the memo, over colliding slots.
        // Each field is read twice in a row (the second from the last-field memory), then
        // once more without its `Z`, one byte from the last field.
        let mut days = Days::new();
        for pass in 0..2 {
            for y in 1999..2003 {
                for mo in 0..14 {
                    for d in 0..33 {
                        let (h, mi, s) = ((d * 7 + pass) % 25, (mo * 11) % 61, (d + mo) % 61);
                        let text = format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}Z");
                        for text in [&text[..], &text[..], &text[..19]] {
                            assert_eq!(
                                parse_time_with(text.as_bytes(), &mut days),
                                parse_time_general(text.as_bytes()),
                                "{text}"
                            );
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn parse_int_takes_canonical_integers_only() {
        assert_eq!(parse_int(b"0"), Some(0));
        assert_eq!(parse_int(b"7"), Some(7));
        assert_eq!(parse_int(b"64351"), Some(64351));
        assert_eq!(
            parse_int(b"999999999999999999"),
            Some(999_999_999_999_999_999)
        );
        assert_eq!(parse_int(b"9223372036854775807"), Some(i64::MAX));
        for bad in [
            &b""[..],
            b"00",
            b"0553092626",
            b"-1",
            b"+1",
            b" 1",
            b"1 ",
            b"1a",
            b"1.0",
            b"9223372036854775808",
            b"99999999999999999999",
        ] {
            assert_eq!(parse_int(bad), None, "{:?}", String::from_utf8_lossy(bad));
        }
    }
}
