//! Benchmarks of the hot parts, in-process, median of several runs each: CSV reading,
//! basket building, transpose, similarity + top-K, artifact encoding and loading.
//!
//! `cargo bench --bench hot -- [ORDERS.csv] [RUNS]`; without a file it generates size m
//! into a temporary directory. Not a test: nothing here asserts a time.

use std::time::Instant;

use cooc::csr::Csr;
use cooc::gen::{GenSpec, Size};
use cooc::input::{read_orders, BasketBy, OrdersOptions};
use cooc::kernel::{CoocIndex, Scoring};
use cooc_model::{Model, ModelMeta, Provenance, Similarity};

fn median(mut v: Vec<f64>) -> (f64, f64, f64) {
    v.sort_by(f64::total_cmp);
    (v[v.len() / 2], v[0], v[v.len() - 1])
}

fn time<T>(runs: usize, what: &str, mut f: impl FnMut() -> T) -> T {
    let mut secs = Vec::with_capacity(runs);
    let mut last = None;
    for _ in 0..runs {
        let t = Instant::now();
        last = Some(std::hint::black_box(f()));
        secs.push(t.elapsed().as_secs_f64());
    }
    let (m, lo, hi) = median(secs);
    println!(
        "{what:<28} {:>9.1} ms  (min {:.1}, max {:.1}, {runs} runs)",
        m * 1e3,
        lo * 1e3,
        hi * 1e3
    );
    last.expect("at least one run")
}

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let runs: usize = args.get(1).and_then(|r| r.parse().ok()).unwrap_or(5);
    let tmp = tempfile::tempdir().expect("temp dir");
    let orders = match args.first() {
        Some(p) => std::path::PathBuf::from(p),
        None => {
            cooc::gen::generate(&GenSpec::preset(Size::M, 42), tmp.path()).expect("gen");
            tmp.path().join("orders.csv")
        }
    };
    println!(
        "input {} on {} thread(s)",
        orders.display(),
        rayon::current_num_threads()
    );
    let opts = OrdersOptions {
        basket_by: BasketBy::Customer,
        need_time: false,
    };
    let data = time(runs, "read orders CSV", || {
        read_orders(&orders, opts).expect("read")
    });
    let n_items = data.item_keys.len();
    let baskets = time(runs, "build baskets (from_pairs)", || {
        Csr::from_pairs(data.n_baskets, &data.basket, &data.item, None)
    });
    time(runs, "transpose", || baskets.transpose(n_items));
    let index = time(runs, "index (pack + transpose)", || {
        CoocIndex::build(&baskets, n_items)
    });
    let n_baskets = (0..baskets.n_rows())
        .filter(|&b| baskets.row_len(b) > 0)
        .count() as u64;
    let topk = time(runs, "similarity + top-K (K=10)", || {
        index.top_k(Scoring::new(Similarity::Cosine, n_baskets), 10, 0..n_items)
    });
    // The other measures' top-K pass, against cosine's above.
    for sim in Similarity::ALL.into_iter().skip(1) {
        time(runs, &format!("  {} top-K", sim.as_str()), || {
            index.top_k(Scoring::new(sim, n_baskets), 10, 0..n_items)
        });
    }
    let nnz = topk.indices.len() as u64;
    let trained = cooc::pipeline::Trained {
        keys: data.item_keys.clone(),
        topk,
        meta: ModelMeta {
            top_k: 10,
            n_items: n_items as u64,
            n_baskets: data.n_baskets as u64,
            n_rows: data.n_rows,
            n_pairs: baskets.nnz() as u64,
            nnz,
            dataset_fingerprint: data.fingerprint.clone(),
            avg_top1_score: 0.0,
            ..ModelMeta::example()
        },
        popular: cooc_model::artifact::popular(
            index.degree(),
            cooc_model::artifact::POPULAR_LISTED,
        ),
    };
    let prov = Provenance::example();
    let bytes = time(runs, "encode artifact", || {
        cooc::pipeline::publish::encode(&trained, None, &prov)
    });
    let path = tmp.path().join("bench.cooc");
    std::fs::write(&path, &bytes).expect("write");
    time(runs, "load + validate artifact", || {
        Model::open(&path).expect("load").n_items()
    });
}
