//! Basket caps: `--max-basket N` reduces a basket of more than N distinct items to N of
//! them by a seeded uniform sample, and without a cap the run warns of baskets above
//! [`LARGE_BASKET`] items (a basket's cost grows with the square of its size).
//!
//! A basket's sample depends only on `--sample-seed` and the basket's own items (global
//! item ids, which every world size and thread count number alike), never on where or
//! in which order it is processed: a model is byte-identical for any gang.

use rand_chacha::ChaCha8Rng;
use rand_core::{RngCore, SeedableRng};
use rayon::prelude::*;
use sha2::{Digest, Sha256};

use crate::csr::Csr;

/// Without `--max-basket`, baskets with more distinct items than this are reported in a
/// warning: one such basket costs about a million pair updates.
pub const LARGE_BASKET: usize = 1000;

/// What capping did to this rank's baskets.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct CapReport {
    /// Baskets above the cap (or, with no cap, above [`LARGE_BASKET`]).
    pub baskets: u64,
    /// Distinct items in the largest of them.
    pub widest: usize,
}

/// `baskets` with every row of more than `max` items replaced by its sample; `None` when
/// no row is that long (nothing is copied then).
pub fn cap_baskets(baskets: &Csr, max: usize, seed: u64) -> Option<(Csr, CapReport)> {
    let report = over(baskets, max);
    if report.baskets == 0 {
        return None;
    }
    let rows: Vec<std::borrow::Cow<'_, [u32]>> = (0..baskets.n_rows())
        .into_par_iter()
        .map(|b| {
            let row = baskets.row(b);
            if row.len() > max {
                sample(row, max, seed).into()
            } else {
                row.into()
            }
        })
        .collect();
    Some((Csr::from_rows(&rows), report))
}

/// Rows of `baskets` longer than `max`, and the longest of them.
pub fn over(baskets: &Csr, max: usize) -> CapReport {
    (0..baskets.n_rows())
        .into_par_iter()
        .map(|b| baskets.row_len(b))
        .filter(|&n| n > max)
        .fold(CapReport::default, |r, n| CapReport {
            baskets: r.baskets + 1,
            widest: r.widest.max(n),
        })
        .reduce(CapReport::default, |a, b| CapReport {
            baskets: a.baskets + b.baskets,
            widest: a.widest.max(b.widest),
        })
}

/// `max` of `row`'s items (sorted, distinct), chosen uniformly by a ChaCha8 stream seeded
/// with SHA-256 of `seed` and the items: the same basket gives the same sample wherever
/// it is drawn. Returned sorted, as every basket row is.
pub fn sample(row: &[u32], max: usize, seed: u64) -> Vec<u32> {
    let mut h = Sha256::new();
    h.update(seed.to_le_bytes());
    for &i in row {
        h.update(i.to_le_bytes());
    }
    let mut rng = ChaCha8Rng::from_seed(h.finalize().into());
    let mut items = row.to_vec();
    // A partial Fisher-Yates shuffle: the first `max` places are a uniform sample. (The
    // modulo's bias is below n / 2^64, far under anything a basket's size can show.)
    for i in 0..max.min(items.len()) {
        let j = i + (rng.next_u64() % (items.len() - i) as u64) as usize;
        items.swap(i, j);
    }
    items.truncate(max);
    items.sort_unstable();
    items
}

/// `baskets` capped at `max` (logging how many were), or with no cap, as they are,
/// with a warning if any is above [`LARGE_BASKET`].
pub(crate) fn apply(baskets: Csr, max: Option<usize>, seed: u64, rank: u32) -> Csr {
    match max {
        Some(max) => match cap_baskets(&baskets, max, seed) {
            Some((capped, r)) => {
                tracing::info!(
                    capped = r.baskets,
                    widest = r.widest,
                    max_basket = max,
                    "rank {rank}: sampled {} basket(s) down to {max} books (--max-basket)",
                    r.baskets
                );
                capped
            }
            None => baskets,
        },
        None => {
            let r = over(&baskets, LARGE_BASKET);
            if r.baskets > 0 {
                tracing::warn!(
                    "rank {rank}: {} basket(s) have more than {LARGE_BASKET} distinct books (the largest {}); \
                     their cost grows with the square of their size: --max-basket 500 samples them down",
                    r.baskets,
                    r.widest
                );
            }
            baskets
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn csr(rows: &[&[u32]]) -> Csr {
        Csr::from_rows(rows)
    }

    #[test]
    fn a_sample_is_a_sorted_subset_of_the_cap_and_depends_on_seed_and_items_only() {
        let row: Vec<u32> = (0..500).map(|i| i * 3).collect();
        let a = sample(&row, 50, 7);
        assert_eq!(a.len(), 50);
        assert!(a.windows(2).all(|w| w[0] < w[1]));
        assert!(a.iter().all(|i| row.binary_search(i).is_ok()));
        assert_eq!(a, sample(&row, 50, 7), "the same basket, the same sample");
        assert_ne!(a, sample(&row, 50, 8), "another seed, another sample");
        // A row at or under the cap is itself.
        assert_eq!(sample(&row[..40], 50, 7), row[..40].to_vec());
    }

    #[test]
    fn samples_are_uniform_over_the_items() {
        // Every item of a 20-item basket lands in a 5-item sample about 1/4 of the time.
        let mut seen = [0u32; 20];
        let trials = 4000;
        for seed in 0..trials {
            let row: Vec<u32> = (0..20).collect();
            for i in sample(&row, 5, seed) {
                seen[i as usize] += 1;
            }
        }
        let expect = trials as f64 * 5.0 / 20.0;
        for (i, &n) in seen.iter().enumerate() {
            assert!(
                (n as f64 - expect).abs() < 0.1 * expect,
                "item {i}: {n} of {trials}"
            );
        }
    }

    #[test]
    fn only_baskets_above_the_cap_change_and_are_counted() {
        let big: Vec<u32> = (0..30).collect();
        let b = csr(&[&[1, 2], &big, &[3, 4, 5]]);
        assert!(cap_baskets(&b, 30, 1).is_none(), "nothing above the cap");
        let (capped, report) = cap_baskets(&b, 3, 1).unwrap();
        assert_eq!(
            report,
            CapReport {
                baskets: 1,
                widest: 30
            }
        );
        assert_eq!(capped.n_rows(), 3);
        assert_eq!(capped.row(0), &[1, 2]);
        assert_eq!(capped.row(1), sample(&big, 3, 1).as_slice());
        assert_eq!(capped.row(2), &[3, 4, 5]);
    }
}
