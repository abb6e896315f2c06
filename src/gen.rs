//! `cooc gen`: the synthetic Bookstore dataset, seeded and byte-reproducible.
//!
//! Shape: Zipf-like book popularity, books grouped in series by one author, a heavy-tailed
//! (Pareto, alpha = 2, capped) number of order lines per customer, and planted "bought
//! together" affinity: a customer often continues a series or returns to an author they
//! bought before. Orders are checkouts of 1..5 lines sharing one `created_at`.
//!
//! Every customer draws from its own ChaCha8 stream and its rows and order ids follow from
//! integer prefix sums, so any subset of customers can be generated alone (a rank generates
//! only its baskets) and the bytes never depend on the thread count. Output is streamed:
//! memory does not grow with the number of rows.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use anyhow::Context;
use rand_chacha::ChaCha8Rng;
use rand_core::{RngCore, SeedableRng};
use rayon::prelude::*;

/// Preset sizes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Size {
    /// 200 books, 800 customers, 5,000 order lines (the reference guide's defaults).
    S,
    /// 10,000 books, 100,000 customers, 1,000,000 order lines.
    M,
    /// 100,000 books, 2,000,000 customers, 20,000,000 order lines.
    L,
    /// 1,000,000 books, 20,000,000 customers, 200,000,000 order lines (about 9.5 GB of
    /// orders.csv, streamed to disk).
    Xl,
}

/// What to generate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GenSpec {
    /// Books in the catalogue.
    pub books: u64,
    /// Customers (baskets).
    pub customers: u64,
    /// Order lines (rows of orders.csv).
    pub orders: u64,
    /// The generator's seed.
    pub seed: u64,
}

impl GenSpec {
    /// The preset of `size` with `seed`.
    pub fn preset(size: Size, seed: u64) -> GenSpec {
        let (books, customers, orders) = match size {
            Size::S => (200, 800, 5_000),
            Size::M => (10_000, 100_000, 1_000_000),
            Size::L => (100_000, 2_000_000, 20_000_000),
            Size::Xl => (1_000_000, 20_000_000, 200_000_000),
        };
        GenSpec {
            books,
            customers,
            orders,
            seed,
        }
    }

    /// Identifies the generated data: equal specs give equal bytes.
    pub fn fingerprint(&self) -> String {
        format!(
            "gen:v1:books={}:customers={}:orders={}:seed={}",
            self.books, self.customers, self.orders, self.seed
        )
    }
}

const T0: i64 = 1_704_067_200; // 2024-01-01T00:00:00Z
const SPAN_DAYS: i64 = 731; // through 2025-12-31
const P_SERIES: f64 = 0.30;
const P_AUTHOR: f64 = 0.20;

#[inline]
fn unit(rng: &mut impl RngCore) -> f64 {
    (rng.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
}

#[inline]
fn below(rng: &mut impl RngCore, n: u64) -> u64 {
    ((rng.next_u64() as u128 * n as u128) >> 64) as u64
}

/// SplitMix64: a customer's weight from (seed, customer) without a stream.
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Where a book stands in the catalogue: its series and author, read together (one cache
/// line per draw from a customer's history instead of one per array).
#[derive(Clone, Copy)]
struct Shelf {
    /// First book of the series.
    series_start: u32,
    author: u32,
    /// Books in the series.
    series_len: u8,
}

/// The book catalogue: series, authors and popularity.
pub struct Catalogue {
    shelf: Vec<Shelf>,
    /// Books of each author.
    author_offsets: Vec<u32>,
    author_books: Vec<u32>,
    /// Cumulative popularity, for sampling by binary search.
    cdf: Vec<f64>,
    /// Guide table over `cdf` (see [`Catalogue::find`]): `guide[g]` counts the entries `c`
    /// with `c * guide_scale < g`.
    guide: Vec<u32>,
    /// Slices per unit of cumulative popularity.
    guide_scale: f64,
    n_authors: u32,
}

impl Catalogue {
    /// The catalogue `spec` generates.
    pub fn new(spec: &GenSpec) -> Catalogue {
        let n = spec.books as usize;
        let mut rng = ChaCha8Rng::seed_from_u64(spec.seed);
        rng.set_stream(u64::MAX);
        let n_authors = (n as u32 / 8).max(1);
        let mut shelf = vec![
            Shelf {
                series_start: 0,
                author: 0,
                series_len: 1,
            };
            n
        ];
        let mut b = 0usize;
        while b < n {
            let len = if unit(&mut rng) < 0.5 {
                1
            } else {
                2 + below(&mut rng, 5) as usize
            }
            .min(n - b);
            let a = below(&mut rng, n_authors as u64) as u32;
            shelf[b..b + len].fill(Shelf {
                series_start: b as u32,
                author: a,
                series_len: len as u8,
            });
            b += len;
        }
        let mut author_offsets = vec![0u32; n_authors as usize + 1];
        for a in shelf.iter().map(|b| b.author) {
            author_offsets[a as usize + 1] += 1;
        }
        for a in 0..n_authors as usize {
            author_offsets[a + 1] += author_offsets[a];
        }
        let mut cursor = author_offsets.clone();
        let mut author_books = vec![0u32; n];
        for (i, a) in shelf.iter().map(|b| b.author).enumerate() {
            author_books[cursor[a as usize] as usize] = i as u32;
            cursor[a as usize] += 1;
        }
        // Popularity rank: a random permutation (Fisher-Yates), weight 1/(rank+20)^1.05.
        let mut rank: Vec<u32> = (0..n as u32).collect();
        for i in (1..n).rev() {
            rank.swap(i, below(&mut rng, i as u64 + 1) as usize);
        }
        let mut cdf = Vec::with_capacity(n);
        let mut acc = 0.0;
        for &r in &rank {
            acc += 1.0 / (r as f64 + 20.0).powf(1.05);
            cdf.push(acc);
        }
        let slices = (n / 4).next_power_of_two();
        let guide_scale = slices as f64 / acc;
        let guide = (0..=slices + 1)
            .map(|g| cdf.partition_point(|&c| c * guide_scale < g as f64) as u32)
            .collect();
        Catalogue {
            shelf,
            author_offsets,
            author_books,
            cdf,
            guide,
            guide_scale,
            n_authors,
        }
    }

    fn popular(&self, rng: &mut impl RngCore) -> u32 {
        let x = unit(rng) * self.cdf.last().copied().unwrap_or(0.0);
        (self.find(x)).min(self.cdf.len() - 1) as u32
    }

    /// `cdf.partition_point(|&c| c <= x)` for `0 <= x`, exactly (so every generated byte is
    /// the plain binary search's), without searching the whole cache-missing table.
    ///
    /// With `f(v) = v * guide_scale` rounded, as it is here and in the table, `f` is monotone
    /// and `g = trunc(f(x))` has `g <= f(x) < g + 1` (unless clamped to the last slice,
    /// whose upper bound is the table's length). An entry with `f(c) < g` is below `x`, one
    /// with `f(c) >= g + 2 > f(x)` is above it, so the answer lies in `guide[g]..=guide[g + 2]`
    /// and, for the draws that land inside one popular book's share, that range is empty:
    /// the answer without touching `cdf` at all.
    #[inline]
    fn find(&self, x: f64) -> usize {
        let slices = self.guide.len() - 2;
        let g = ((x * self.guide_scale) as usize).min(slices - 1);
        let (lo, hi) = (self.guide[g] as usize, self.guide[g + 2] as usize);
        lo + self.cdf[lo..hi].partition_point(|&c| c <= x)
    }

    fn pick(&self, rng: &mut impl RngCore, history: &[u32]) -> u32 {
        let r = unit(rng);
        if !history.is_empty() && r < P_SERIES + P_AUTHOR {
            let h = history[below(rng, history.len() as u64) as usize] as usize;
            if r < P_SERIES {
                let Shelf {
                    series_start: s,
                    series_len: len,
                    ..
                } = self.shelf[h];
                let (s, len) = (s as usize, len as usize);
                if len > 1 {
                    return if h + 1 < s + len {
                        h as u32 + 1
                    } else {
                        (s + below(rng, len as u64 - 1) as usize) as u32
                    };
                }
            } else {
                let a = self.shelf[h].author as usize;
                let (lo, hi) = (self.author_offsets[a], self.author_offsets[a + 1]);
                return self.author_books[(lo + below(rng, (hi - lo) as u64) as u32) as usize];
            }
        }
        self.popular(rng)
    }

    /// Books in the same series as `book` (including it).
    pub fn series_of(&self, book: u32) -> std::ops::Range<u32> {
        let Shelf {
            series_start: s,
            series_len: len,
            ..
        } = self.shelf[book as usize];
        s..s + len as u32
    }
}

/// Order lines per customer from heavy-tailed integer weights; `starts[c]` is the number of
/// lines before customer `c` (and `starts[customers]` the total).
pub fn line_starts(spec: &GenSpec) -> Vec<u64> {
    let weights: Vec<u64> = (0..spec.customers)
        .into_par_iter()
        .map(|c| {
            let u = ((mix(spec.seed ^ mix(c)) >> 11) as f64 + 1.0) / (1u64 << 53) as f64;
            (1000.0 / u.sqrt()).min(50_000.0) as u64
        })
        .collect();
    let total: u128 = weights.iter().map(|&w| w as u128).sum();
    let mut starts = Vec::with_capacity(weights.len() + 1);
    let mut cum: u128 = 0;
    starts.push(0);
    for w in weights {
        cum += w as u128;
        starts.push((spec.orders as u128 * cum / total.max(1)) as u64);
    }
    starts
}

/// `YYYY-MM-DD` of every day in range, formatted once.
fn day_strings() -> Vec<[u8; 10]> {
    let epoch = chrono::NaiveDate::from_ymd_opt(2024, 1, 1).expect("valid date");
    (0..SPAN_DAYS as u64 + 400)
        .map(|d| {
            let s = (epoch + chrono::Days::new(d))
                .format("%Y-%m-%d")
                .to_string();
            s.as_bytes().try_into().expect("10 bytes")
        })
        .collect()
}

/// One CSV line assembled in place with fixed-size writes and copied out whole: a line is
/// nine small fields, and a copy call per field cost more than drawing the line.
struct Line {
    buf: [u8; 96],
    len: usize,
}

impl Line {
    fn new() -> Line {
        Line {
            buf: [0; 96],
            len: 0,
        }
    }

    #[inline]
    fn bytes<const N: usize>(&mut self, b: &[u8; N]) {
        self.buf[self.len..self.len + N].copy_from_slice(b);
        self.len += N;
    }

    /// `v` in decimal.
    #[inline]
    fn num(&mut self, mut v: u64) {
        let digits = v.checked_ilog10().unwrap_or(0) as usize + 1;
        for d in self.buf[self.len..self.len + digits].iter_mut().rev() {
            *d = b'0' + (v % 10) as u8;
            v /= 10;
        }
        self.len += digits;
    }
}

/// `YYYY-MM-DDTHH:MM:SSZ,` for `t` seconds after [`T0`].
fn stamp(days: &[[u8; 10]], t: i64) -> [u8; 21] {
    let day = ((t - T0) / 86_400).min(days.len() as i64 - 1);
    let tod = (t - T0) % 86_400;
    let mut s = [0u8; 21];
    s[..10].copy_from_slice(&days[day as usize]);
    s[10] = b'T';
    for (i, v) in [tod / 3600, tod / 60 % 60, tod % 60]
        .into_iter()
        .enumerate()
    {
        s[11 + 3 * i] = b'0' + (v / 10) as u8;
        s[12 + 3 * i] = b'0' + (v % 10) as u8;
        s[13 + 3 * i] = b':';
    }
    s[19] = b'Z';
    s[20] = b',';
    s
}

/// Appends customer `c`'s lines (`ids`: its order ids) to `out`;
/// `history` is scratch.
fn customer_lines(
    spec: &GenSpec,
    cat: &Catalogue,
    days: &[[u8; 10]],
    c: u64,
    ids: std::ops::Range<u64>,
    history: &mut Vec<u32>,
    out: &mut Vec<u8>,
) {
    let (first, end) = (ids.start, ids.end);
    let mut rng = ChaCha8Rng::seed_from_u64(spec.seed);
    rng.set_stream(c);
    history.clear();
    let lines = end - first;
    let orders_expected = (lines as f64 / 1.8).max(1.0);
    let mean_gap = (SPAN_DAYS as f64 * 86_400.0 * 0.8 / orders_expected).min(40.0 * 86_400.0);
    let mut t = T0 + below(&mut rng, (SPAN_DAYS * 86_400 / 5) as u64) as i64;
    let cust = c + 1;
    let mut line = Line::new();
    let mut id = first;
    while id < end {
        let mut size = 1;
        while size < 5 && unit(&mut rng) < 0.45 {
            size += 1;
        }
        let size = size.min(end - id);
        let stamp = stamp(days, t);
        for _ in 0..size {
            let book = cat.pick(&mut rng, history);
            history.push(book);
            let qty = if unit(&mut rng) < 0.9 {
                1
            } else {
                2 + below(&mut rng, 2)
            };
            id += 1;
            line.len = 0;
            line.num(id);
            line.bytes(b",");
            line.num(book as u64 + 1);
            line.bytes(b",");
            line.num(qty);
            line.bytes(b",");
            line.bytes(&stamp);
            line.num(cust);
            line.bytes(b"\n");
            // The whole fixed-size buffer (inline moves, no copy call), then the tail dropped.
            let end = out.len() + line.len;
            out.extend_from_slice(&line.buf);
            out.truncate(end);
        }
        let gap = -mean_gap * (1.0 - unit(&mut rng)).ln();
        t += 3_600 + gap as i64;
    }
}

const ADJ: [&str; 40] = [
    "Silent",
    "Crimson",
    "Hidden",
    "Broken",
    "Golden",
    "Last",
    "Distant",
    "Wild",
    "Quiet",
    "Burning",
    "Frozen",
    "Lost",
    "Secret",
    "Endless",
    "Shattered",
    "Midnight",
    "Hollow",
    "Iron",
    "Velvet",
    "Bitter",
    "Gentle",
    "Scarlet",
    "Wandering",
    "Silver",
    "Forgotten",
    "Restless",
    "Northern",
    "Painted",
    "Sleeping",
    "Rising",
    "Sunken",
    "Emerald",
    "Fallen",
    "Bright",
    "Dark",
    "Salt",
    "Paper",
    "Glass",
    "Winter",
    "Summer",
];
const NOUN: [&str; 40] = [
    "River",
    "Garden",
    "Kingdom",
    "Harbor",
    "Letter",
    "Mountain",
    "Orchard",
    "Crown",
    "Voyage",
    "Lantern",
    "Forest",
    "Tide",
    "Archive",
    "Engine",
    "Meadow",
    "Signal",
    "Bridge",
    "Compass",
    "Island",
    "Library",
    "Storm",
    "Mirror",
    "Valley",
    "Empire",
    "Song",
    "Shore",
    "Citadel",
    "Map",
    "Feather",
    "Tower",
    "Road",
    "Circus",
    "Orbit",
    "Atlas",
    "Ember",
    "Chapel",
    "Market",
    "Station",
    "Canyon",
    "Clockwork",
];
const PLACE: [&str; 8] = [
    "",
    " of Ash",
    " of Stars",
    " in Spring",
    " of the North",
    " at Dawn",
    " of Glass",
    " Below",
];
const FIRST: [&str; 32] = [
    "Ada", "Ben", "Clara", "Dmitri", "Elena", "Farid", "Grace", "Hiro", "Ines", "Jonas", "Keiko",
    "Liam", "Maya", "Nadia", "Omar", "Priya", "Quinn", "Rosa", "Sven", "Tara", "Umar", "Vera",
    "Wen", "Ximena", "Yusuf", "Zoe", "Aiko", "Bruno", "Chloe", "Diego", "Esme", "Felix",
];
const LAST: [&str; 32] = [
    "Abbott",
    "Baptiste",
    "Castillo",
    "Dubois",
    "Eriksen",
    "Fontaine",
    "Gallagher",
    "Haddad",
    "Ivanova",
    "Jensen",
    "Kowalski",
    "Lindqvist",
    "Moreau",
    "Nakamura",
    "Okafor",
    "Petrov",
    "Quaid",
    "Rossi",
    "Sato",
    "Tanaka",
    "Ueda",
    "Varga",
    "Weber",
    "Xu",
    "Yilmaz",
    "Zhang",
    "Almeida",
    "Brennan",
    "Chandra",
    "Delacroix",
    "Eze",
    "Fischer",
];

fn title(series: u32) -> String {
    // Scatter consecutive series over the name space (odd multiplier: a bijection mod 2^32).
    let s =
        series.wrapping_mul(2_654_435_761) as usize % (ADJ.len() * NOUN.len() * PLACE.len() * 4);
    let (a, n) = (ADJ[s % ADJ.len()], NOUN[(s / ADJ.len()) % NOUN.len()]);
    let place = PLACE[(s / (ADJ.len() * NOUN.len())) % PLACE.len()];
    let more = s / (ADJ.len() * NOUN.len() * PLACE.len());
    if more == 0 {
        format!("The {a} {n}{place}")
    } else {
        format!("The {a} {n}{place} {}", more + 1)
    }
}

fn author_name(a: u32) -> String {
    let a = a.wrapping_mul(2_246_822_519) as usize % (FIRST.len() * LAST.len() * 26);
    let initial = (b'A' + ((a / (FIRST.len() * LAST.len())) % 26) as u8) as char;
    format!(
        "{} {initial}. {}",
        FIRST[a % FIRST.len()],
        LAST[(a / FIRST.len()) % LAST.len()]
    )
}

/// Files written by [`generate`].
#[derive(Debug)]
pub struct GenReport {
    /// `books.csv`.
    pub books: PathBuf,
    /// `orders.csv`.
    pub orders: PathBuf,
    /// Order lines written.
    pub rows: u64,
}

/// Writes `books.csv` and `orders.csv` into `out`.
pub fn generate(spec: &GenSpec, out: &Path) -> anyhow::Result<GenReport> {
    check(spec)?;
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let cat = Catalogue::new(spec);
    let books_path = out.join("books.csv");
    write_books(spec, &cat, &books_path)?;

    let orders_path = out.join("orders.csv");
    let tmp = out.join(".orders.csv.tmp");
    let file = File::create(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
    let bar = crate::progress::bar(spec.orders, "orders.csv");
    // A writer thread takes each group of blocks while the pool draws the next one. No
    // fsync: the data is reproducible from its seed, and the rename alone keeps an
    // interrupted run from leaving a partial orders.csv under its real name.
    let (tx, rx) = std::sync::mpsc::sync_channel::<(Vec<Vec<u8>>, u64)>(1);
    let written = std::thread::scope(|scope| {
        let writer = scope.spawn(|| -> std::io::Result<()> {
            let mut w = BufWriter::with_capacity(1 << 20, file);
            w.write_all(b"id,book_id,qty,created_at,customer_id\n")?;
            for (bufs, done) in rx {
                for b in bufs {
                    w.write_all(&b)?;
                }
                bar.set_position(done);
            }
            w.flush()
        });
        for group in order_blocks(spec) {
            if tx.send(group).is_err() {
                break; // the writer failed: its error is reported below
            }
        }
        drop(tx);
        writer.join().expect("the orders.csv writer panicked")
    });
    written.with_context(|| format!("writing {}", tmp.display()))?;
    bar.finish_and_clear();
    std::fs::rename(&tmp, &orders_path)
        .with_context(|| format!("renaming {} to orders.csv", tmp.display()))?;
    Ok(GenReport {
        books: books_path,
        orders: orders_path,
        rows: spec.orders,
    })
}

/// Every customer's order lines (`id,book_id,qty,created_at,customer_id`, no header), in
/// order, generated a group of blocks at a time in parallel (never the whole dataset at
/// once), with the order lines done after each group.
pub fn order_blocks(spec: &GenSpec) -> impl Iterator<Item = (Vec<Vec<u8>>, u64)> + '_ {
    let cat = Catalogue::new(spec);
    let starts = line_starts(spec);
    let days = day_strings();
    let blocks: Vec<u64> = (0..spec.customers.div_ceil(BLOCK)).collect();
    let batch = rayon::current_num_threads() * 8;
    let groups: Vec<Vec<u64>> = blocks.chunks(batch).map(<[u64]>::to_vec).collect();
    groups.into_iter().map(move |group| {
        let bufs: Vec<Vec<u8>> = group
            .par_iter()
            .map(|&b| {
                block_lines(
                    spec,
                    &cat,
                    &starts,
                    &days,
                    b * BLOCK..(b + 1) * BLOCK,
                    |_| true,
                )
            })
            .collect();
        let done = starts[((group[group.len() - 1] + 1) * BLOCK).min(spec.customers) as usize];
        (bufs, done)
    })
}

/// Refuses sizes the generator cannot number.
pub fn check(spec: &GenSpec) -> anyhow::Result<()> {
    anyhow::ensure!(spec.books >= 1, "--books must be at least 1");
    anyhow::ensure!(
        spec.books <= u32::MAX as u64 / 2 && spec.customers <= u32::MAX as u64,
        "--books and --customers must fit in 32 bits"
    );
    Ok(())
}

/// Customers are generated in blocks of this many, one block per parallel task.
const BLOCK: u64 = 2048;

/// The lines of the customers in `range` (clipped to the catalogue's) that `keep` selects.
fn block_lines(
    spec: &GenSpec,
    cat: &Catalogue,
    starts: &[u64],
    days: &[[u8; 10]],
    range: std::ops::Range<u64>,
    keep: impl Fn(u64) -> bool,
) -> Vec<u8> {
    let (lo, hi) = (range.start, range.end.min(spec.customers));
    let lines: u64 = (lo..hi)
        .filter(|&c| keep(c))
        .map(|c| starts[c as usize + 1] - starts[c as usize])
        .sum();
    let mut buf = Vec::with_capacity((lines * 52) as usize);
    let mut history = Vec::new();
    for c in (lo..hi).filter(|&c| keep(c)) {
        customer_lines(
            spec,
            cat,
            days,
            c,
            starts[c as usize]..starts[c as usize + 1],
            &mut history,
            &mut buf,
        );
    }
    buf
}

/// The order lines (no header) of the customers `keep` selects, exactly as `cooc gen`
/// writes them, in blocks of consecutive customers: a rank generates only its own baskets.
pub fn customer_csv(spec: &GenSpec, keep: impl Fn(u64) -> bool + Sync) -> Vec<Vec<u8>> {
    let cat = Catalogue::new(spec);
    let starts = line_starts(spec);
    let days = day_strings();
    (0..spec.customers.div_ceil(BLOCK))
        .into_par_iter()
        .map(|b| {
            block_lines(
                spec,
                &cat,
                &starts,
                &days,
                b * BLOCK..(b + 1) * BLOCK,
                &keep,
            )
        })
        .collect()
}

/// `books.csv` as `cooc gen` writes it.
pub fn books_csv(spec: &GenSpec) -> anyhow::Result<Vec<u8>> {
    let mut out = Vec::new();
    write_books_to(spec, &Catalogue::new(spec), &mut out)?;
    Ok(out)
}

fn write_books(spec: &GenSpec, cat: &Catalogue, path: &Path) -> anyhow::Result<()> {
    let file = File::create(path).with_context(|| format!("creating {}", path.display()))?;
    write_books_to(spec, cat, BufWriter::new(file))
}

fn write_books_to(spec: &GenSpec, cat: &Catalogue, out: impl Write) -> anyhow::Result<()> {
    let mut rng = ChaCha8Rng::seed_from_u64(spec.seed);
    rng.set_stream(u64::MAX - 1);
    let mut w = csv::Writer::from_writer(out);
    w.write_record(["id", "title", "author", "price"])?;
    let mut series_no = 0u32;
    for b in 0..spec.books as u32 {
        let Shelf {
            series_start: s,
            series_len: len,
            author,
        } = cat.shelf[b as usize];
        if s == b {
            series_no += 1;
        }
        let name = title(series_no - 1);
        let t = if len > 1 {
            format!("{name}, Book {}", b - s + 1)
        } else {
            name
        };
        let cents = 499 + below(&mut rng, 3500);
        w.write_record([
            (b + 1).to_string(),
            t,
            author_name(author % cat.n_authors),
            format!("{}.{:02}", cents / 100, cents % 100),
        ])?;
    }
    w.flush()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_starts_add_up_exactly() {
        let spec = GenSpec::preset(Size::S, 7);
        let s = line_starts(&spec);
        assert_eq!(s.len(), 801);
        assert_eq!(*s.last().unwrap(), 5_000);
        assert!(s.windows(2).all(|w| w[0] <= w[1]));
        let max = s.windows(2).map(|w| w[1] - w[0]).max().unwrap();
        assert!(
            max > 20,
            "heavy tail expected, max lines per customer {max}"
        );
    }

    #[test]
    fn same_seed_same_bytes_other_seed_other_bytes() {
        let d = tempfile::tempdir().unwrap();
        let spec = GenSpec::preset(Size::S, 1);
        generate(&spec, &d.path().join("a")).unwrap();
        generate(&spec, &d.path().join("b")).unwrap();
        generate(&GenSpec { seed: 2, ..spec }, &d.path().join("c")).unwrap();
        let read = |p: &str| std::fs::read(d.path().join(p)).unwrap();
        assert_eq!(read("a/orders.csv"), read("b/orders.csv"));
        assert_eq!(read("a/books.csv"), read("b/books.csv"));
        assert_ne!(read("a/orders.csv"), read("c/orders.csv"));
        let text = String::from_utf8(read("a/orders.csv")).unwrap();
        assert_eq!(text.lines().count(), 5_001);
        assert!(text.starts_with("id,book_id,qty,created_at,customer_id\n1,"));
    }

    #[test]
    fn guided_search_is_the_binary_search() {
        for size in [Size::S, Size::M] {
            let cat = Catalogue::new(&GenSpec::preset(size, 3));
            let total = *cat.cdf.last().unwrap();
            let plain = |x: f64| cat.cdf.partition_point(|&c| c <= x);
            // Every entry and its floating-point neighbours (the boundaries rounding could
            // misplace), the ends, and a dense sweep of draws.
            let mut xs = vec![0.0, total, total.next_down(), f64::MIN_POSITIVE];
            for &c in &cat.cdf {
                xs.extend([c.next_down(), c, c.next_up()]);
            }
            let mut rng = ChaCha8Rng::seed_from_u64(9);
            xs.extend((0..200_000).map(|_| unit(&mut rng) * total));
            for x in xs.into_iter().filter(|&x| x <= total) {
                assert_eq!(cat.find(x), plain(x), "x = {x:e}");
            }
        }
    }

    #[test]
    fn titles_and_authors_vary() {
        assert_ne!(title(0), title(1));
        assert_ne!(title(0), title(1600));
        assert_ne!(author_name(0), author_name(1024));
    }
}
