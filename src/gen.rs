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

/// The book catalogue: series, authors and popularity.
pub struct Catalogue {
    /// First book of each book's series, and the series length.
    series_start: Vec<u32>,
    series_len: Vec<u8>,
    author: Vec<u32>,
    /// Books of each author.
    author_offsets: Vec<u32>,
    author_books: Vec<u32>,
    /// Cumulative popularity, for sampling by binary search.
    cdf: Vec<f64>,
    n_authors: u32,
}

impl Catalogue {
    /// The catalogue `spec` generates.
    pub fn new(spec: &GenSpec) -> Catalogue {
        let n = spec.books as usize;
        let mut rng = ChaCha8Rng::seed_from_u64(spec.seed);
        rng.set_stream(u64::MAX);
        let n_authors = (n as u32 / 8).max(1);
        let (mut series_start, mut series_len, mut author) =
            (vec![0u32; n], vec![1u8; n], vec![0u32; n]);
        let mut b = 0usize;
        while b < n {
            let len = if unit(&mut rng) < 0.5 {
                1
            } else {
                2 + below(&mut rng, 5) as usize
            }
            .min(n - b);
            let a = below(&mut rng, n_authors as u64) as u32;
            for i in b..b + len {
                series_start[i] = b as u32;
                series_len[i] = len as u8;
                author[i] = a;
            }
            b += len;
        }
        let mut author_offsets = vec![0u32; n_authors as usize + 1];
        for &a in &author {
            author_offsets[a as usize + 1] += 1;
        }
        for a in 0..n_authors as usize {
            author_offsets[a + 1] += author_offsets[a];
        }
        let mut cursor = author_offsets.clone();
        let mut author_books = vec![0u32; n];
        for (i, &a) in author.iter().enumerate() {
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
        Catalogue {
            series_start,
            series_len,
            author,
            author_offsets,
            author_books,
            cdf,
            n_authors,
        }
    }

    fn popular(&self, rng: &mut impl RngCore) -> u32 {
        let x = unit(rng) * self.cdf.last().copied().unwrap_or(0.0);
        (self.cdf.partition_point(|&c| c <= x)).min(self.cdf.len() - 1) as u32
    }

    fn pick(&self, rng: &mut impl RngCore, history: &[u32]) -> u32 {
        let r = unit(rng);
        if !history.is_empty() && r < P_SERIES + P_AUTHOR {
            let h = history[below(rng, history.len() as u64) as usize] as usize;
            if r < P_SERIES {
                let (s, len) = (self.series_start[h] as usize, self.series_len[h] as usize);
                if len > 1 {
                    return if h + 1 < s + len {
                        h as u32 + 1
                    } else {
                        (s + below(rng, len as u64 - 1) as usize) as u32
                    };
                }
            } else {
                let a = self.author[h] as usize;
                let (lo, hi) = (self.author_offsets[a], self.author_offsets[a + 1]);
                return self.author_books[(lo + below(rng, (hi - lo) as u64) as u32) as usize];
            }
        }
        self.popular(rng)
    }

    /// Books in the same series as `book` (including it).
    pub fn series_of(&self, book: u32) -> std::ops::Range<u32> {
        let s = self.series_start[book as usize];
        s..s + self.series_len[book as usize] as u32
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

fn two(out: &mut Vec<u8>, v: i64) {
    out.push(b'0' + (v / 10) as u8);
    out.push(b'0' + (v % 10) as u8);
}

/// Appends customer `c`'s lines (`first..end` are its order ids) to `out`.
fn customer_lines(
    spec: &GenSpec,
    cat: &Catalogue,
    days: &[[u8; 10]],
    c: u64,
    first: u64,
    end: u64,
    out: &mut Vec<u8>,
) {
    let mut rng = ChaCha8Rng::seed_from_u64(spec.seed);
    rng.set_stream(c);
    let mut history: Vec<u32> = Vec::new();
    let lines = end - first;
    let orders_expected = (lines as f64 / 1.8).max(1.0);
    let mean_gap = (SPAN_DAYS as f64 * 86_400.0 * 0.8 / orders_expected).min(40.0 * 86_400.0);
    let mut t = T0 + below(&mut rng, (SPAN_DAYS * 86_400 / 5) as u64) as i64;
    let mut ib = itoa::Buffer::new();
    let cust = c + 1;
    let mut id = first;
    while id < end {
        let mut size = 1;
        while size < 5 && unit(&mut rng) < 0.45 {
            size += 1;
        }
        let size = size.min(end - id);
        let day = ((t - T0) / 86_400).min(days.len() as i64 - 1);
        let tod = (t - T0) % 86_400;
        for _ in 0..size {
            let book = cat.pick(&mut rng, &history);
            history.push(book);
            let qty = if unit(&mut rng) < 0.9 {
                1
            } else {
                2 + below(&mut rng, 2)
            };
            id += 1;
            out.extend_from_slice(ib.format(id).as_bytes());
            out.push(b',');
            out.extend_from_slice(ib.format(book + 1).as_bytes());
            out.push(b',');
            out.extend_from_slice(ib.format(qty).as_bytes());
            out.push(b',');
            out.extend_from_slice(&days[day as usize]);
            out.push(b'T');
            two(out, tod / 3600);
            out.push(b':');
            two(out, tod / 60 % 60);
            out.push(b':');
            two(out, tod % 60);
            out.extend_from_slice(b"Z,");
            out.extend_from_slice(ib.format(cust).as_bytes());
            out.push(b'\n');
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
    let mut w = BufWriter::with_capacity(1 << 20, file);
    w.write_all(b"id,book_id,qty,created_at,customer_id\n")?;
    let bar = crate::progress::bar(spec.orders, "orders.csv");
    for (bufs, done) in order_blocks(spec) {
        for b in bufs {
            w.write_all(&b)?;
        }
        bar.set_position(done);
    }
    bar.finish_and_clear();
    let file = w.into_inner().map_err(|e| e.into_error())?;
    file.sync_all()?;
    std::fs::rename(&tmp, &orders_path)?;
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
    let mut buf = Vec::with_capacity((lines * 48) as usize);
    for c in (lo..hi).filter(|&c| keep(c)) {
        customer_lines(
            spec,
            cat,
            days,
            c,
            starts[c as usize],
            starts[c as usize + 1],
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
        let s = cat.series_start[b as usize];
        if s == b {
            series_no += 1;
        }
        let len = cat.series_len[b as usize];
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
            author_name(cat.author[b as usize] % cat.n_authors),
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
    fn titles_and_authors_vary() {
        assert_ne!(title(0), title(1));
        assert_ne!(title(0), title(1600));
        assert_ne!(author_name(0), author_name(1024));
    }
}
