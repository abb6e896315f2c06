//! Property tests: the kernel against a naive dense implementation, and thread-count and
//! chunking invariance of the whole pipeline (the payload must not depend on how work is
//! split).

use cooc::backend::Backend;
use cooc::csr::Csr;
use cooc::input::BasketBy;
use cooc::kernel::{CoocIndex, Scoring};
use cooc::plan::{Gates, Output, Source, TrainPlan};
use cooc_model::{Model, Similarity};
use proptest::prelude::*;

/// Dense C = XᵀX over distinct (basket, item) pairs, scores in f64 by the documented
/// formulas (`Similarity::score`, N = non-empty baskets), pairs below `support` dropped,
/// full sort by (score desc, id asc), first k with score > 0.
fn naive(
    baskets: &[Vec<u32>],
    n: usize,
    sim: Similarity,
    support: u32,
    k: usize,
) -> Vec<Vec<(u32, f32)>> {
    let n_baskets = baskets.iter().filter(|b| !b.is_empty()).count() as f64;
    let mut c = vec![vec![0u32; n]; n];
    for b in baskets {
        let mut items = b.clone();
        items.sort_unstable();
        items.dedup();
        for &i in &items {
            for &j in &items {
                c[i as usize][j as usize] += 1;
            }
        }
    }
    (0..n)
        .map(|i| {
            let mut row: Vec<(f64, u32)> = (0..n)
                .filter(|&j| j != i && c[i][j] > 0 && c[i][j] >= support)
                .map(|j| {
                    let (cij, a, b) = (c[i][j] as f64, c[i][i] as f64, c[j][j] as f64);
                    (sim.score(cij, a, b, n_baskets), j as u32)
                })
                .filter(|&(s, _)| s > 0.0)
                .collect();
            row.sort_by(|x, y| y.0.partial_cmp(&x.0).unwrap().then(x.1.cmp(&y.1)));
            row.truncate(k);
            row.into_iter().map(|(s, j)| (j, s as f32)).collect()
        })
        .collect()
}

/// (basket, item) pairs of nested baskets, as parallel columns.
fn flatten(baskets: &[Vec<u32>]) -> (Vec<u32>, Vec<u32>) {
    let rows = baskets
        .iter()
        .enumerate()
        .flat_map(|(b, items)| std::iter::repeat_n(b as u32, items.len()))
        .collect();
    (rows, baskets.iter().flatten().copied().collect())
}

fn to_csr(baskets: &[Vec<u32>]) -> Csr {
    let (rows, vals) = flatten(baskets);
    Csr::from_pairs(baskets.len(), &[rows], &[vals], None)
}

fn baskets_strategy() -> impl Strategy<Value = (usize, Vec<Vec<u32>>)> {
    // Few items and small baskets make ties (equal scores) common.
    (2usize..24).prop_flat_map(|n| {
        (
            Just(n),
            prop::collection::vec(prop::collection::vec(0..n as u32, 0..7), 0..60),
        )
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn kernel_matches_naive(
        (n, baskets) in baskets_strategy(),
        k in 1usize..12,
        measure in 0usize..Similarity::ALL.len(),
        support in 1u32..4,
    ) {
        let sim = Similarity::ALL[measure];
        let csr = to_csr(&baskets);
        let n_baskets = baskets.iter().filter(|b| !b.is_empty()).count() as u64;
        let scoring = Scoring { sim, n_baskets, min_support: support };
        let got = CoocIndex::build(&csr, n).top_k(scoring, k, 0..n);
        let want = naive(&baskets, n, sim, support, k);
        for (i, w) in want.iter().enumerate() {
            let (ids, scores) = got.row(i);
            let g: Vec<(u32, f32)> = ids.iter().copied().zip(scores.iter().copied()).collect();
            prop_assert_eq!(&g, w, "item {}", i);
        }
    }
}

/// The baskets as a Bookstore orders CSV: customer = basket, created_at in two orders per
/// basket (so the hold-out has a last order to take).
fn orders_csv(baskets: &[Vec<u32>]) -> String {
    let mut out = String::from("customer_id,book_id,created_at\n");
    for (b, items) in baskets.iter().enumerate() {
        for (t, i) in items.iter().enumerate() {
            out += &format!("{b},{i},2026-01-01 00:00:{:02}\n", t / 2);
        }
    }
    out
}

#[test]
fn fit_is_identical_for_any_thread_count() {
    // A deterministic pseudo-random workload large enough to be split many ways.
    let n = 300usize;
    let mut x = 12345u64;
    let mut next = || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let baskets: Vec<Vec<u32>> = (0..4000)
        .map(|_| {
            let len = 1 + (next() % 9) as usize;
            (0..len)
                .map(|_| ((next() % n as u64) as f64).sqrt() as u32 * 17 % n as u32)
                .collect()
        })
        .collect();
    let dir = tempfile::tempdir().unwrap();
    let orders = dir.path().join("orders.csv");
    std::fs::write(&orders, orders_csv(&baskets)).unwrap();
    let run = |threads: usize, chunk_bytes: Option<u64>| {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap();
        let out = dir.path().join(format!("t{threads}-{chunk_bytes:?}.cooc"));
        let plan = TrainPlan {
            source: Source::Orders {
                path: orders.clone(),
                basket_by: BasketBy::Customer,
            },
            books: None,
            similarity: Similarity::Cosine,
            k: 10,
            holdout: true,
            gates: Gates::default(),
            output: Output::File(out.clone()),
            threads,
            backend: Backend::Cpu,
            chunk_bytes,
            keys: cooc::input::KeyKind::Auto,
            min_support: 1,
            max_basket: None,
            sample_seed: cooc::plan::DEFAULT_SAMPLE_SEED,
            decay: None,
        };
        pool.install(|| cooc::pipeline::train(&plan)).unwrap();
        let m = Model::open(&out).unwrap();
        (m.identity_bytes(), m.meta().clone())
    };
    let one = run(1, None);
    assert!(one.1.evaluation.as_ref().unwrap().users > 0);
    for (threads, chunk) in [(2, None), (3, Some(512)), (7, Some(97))] {
        assert_eq!(
            run(threads, chunk),
            one,
            "{threads} threads, chunks {chunk:?}: differ from 1 thread"
        );
    }
}
