//! Single-process training: read -> count -> similarity/top-K -> evaluate -> gate -> write.
//!
//! Takes a validated [`TrainPlan`] (built once from the command line) and never re-checks
//! it. A failed gate or bad input registers nothing: the store is only written after every
//! check passed, and `CURRENT` moves last.

use std::path::PathBuf;

use anyhow::Context;
use cooc_serve::artifact::{self, Evaluation, Keys, ModelMeta, ModelParts, Provenance, Similarity};
use cooc_serve::store::ModelStore;

use crate::backend::Engine;
use crate::csr::Csr;
use crate::error::GateError;
use crate::eval;
use crate::gen::GenSpec;
use crate::input::{self, BasketBy, Books, Interactions, OrdersOptions};
use crate::kernel::{self, TopK};
use crate::progress::Phase;

/// Largest K a model may keep.
pub const MAX_TOP_K: usize = 1000;

/// Where training pairs come from.
#[derive(Debug, Clone)]
pub enum Source {
    Orders {
        path: PathBuf,
        basket_by: BasketBy,
    },
    Baskets {
        path: PathBuf,
    },
    /// The Bookstore dataset generated in memory (each rank generates only its customers).
    Synthetic {
        spec: GenSpec,
        basket_by: BasketBy,
    },
}

impl Source {
    /// What every rank of a gang must agree on about the input, cheaply: the handshake
    /// compares it before any data flows.
    pub fn describe(&self) -> String {
        let file = |p: &PathBuf| {
            let len = std::fs::metadata(p).map_or(0, |m| m.len());
            let name = p
                .file_name()
                .map_or_else(String::new, |n| n.to_string_lossy().into_owned());
            format!("{name}:len={len}")
        };
        match self {
            Source::Orders { path, basket_by } => format!("orders:{}:{basket_by:?}", file(path)),
            Source::Baskets { path } => format!("baskets:{}", file(path)),
            Source::Synthetic { spec, basket_by } => {
                format!("{}:{basket_by:?}", spec.fingerprint())
            }
        }
    }
}

/// Where the artifact goes.
#[derive(Debug, Clone)]
pub enum Output {
    /// Publish as a new version of a model store; promote it to `CURRENT` unless told not to.
    Store { dir: PathBuf, promote: bool },
    /// Write one artifact file.
    File(PathBuf),
}

/// Quality gates; a model below any of them is not registered (exit code 2).
#[derive(Debug, Clone, Copy, Default)]
pub struct Gates {
    pub min_hit_rate: Option<f64>,
    pub min_avg_top1: Option<f64>,
}

/// A training run, validated.
#[derive(Debug, Clone)]
pub struct TrainPlan {
    pub source: Source,
    pub books: Option<PathBuf>,
    pub similarity: Similarity,
    /// 1..=MAX_TOP_K.
    pub k: usize,
    /// Hold out each customer's last order and evaluate at `k`.
    pub holdout: bool,
    pub gates: Gates,
    pub output: Output,
    /// Threads of the compute pool (the caller builds the pool).
    pub threads: usize,
    /// Where counts are computed, as resolved against this build (`Cpu` or `Cuda`).
    pub backend: crate::backend::Backend,
}

/// What a run produced.
#[derive(Debug)]
pub struct TrainReport {
    pub meta: ModelMeta,
    /// The version published (store output) or the file written.
    pub written: String,
    pub path: PathBuf,
    pub timings: Vec<(&'static str, f64)>,
}

impl TrainPlan {
    /// The parameters and input every rank of a gang must share, for the handshake.
    pub fn fingerprint(&self) -> String {
        format!(
            "{}|{:?}|k={}|holdout={}|gates={:?}|books={}",
            self.source.describe(),
            self.similarity,
            self.k,
            self.holdout,
            self.gates,
            self.books.is_some()
        )
    }
}

/// A trained model in memory, before it is written.
pub struct Trained {
    pub keys: Keys,
    pub topk: TopK,
    pub meta: ModelMeta,
}

/// Counts, scores and evaluates: everything but I/O of the artifact.
pub fn fit(
    data: Interactions,
    engine: &Engine,
    sim: Similarity,
    k: usize,
    holdout: bool,
    timings: &mut Vec<(&'static str, f64)>,
) -> anyhow::Result<Trained> {
    let phase = Phase::start("count");
    let n_items = data.item_keys.len();
    let (baskets, test) = split_holdout(&data, holdout);
    let index = kernel::CoocIndex::build(&baskets, n_items);
    timings.push(("count", phase.finish()));
    let work: u64 = (0..baskets.n_rows())
        .map(|b| (baskets.row_len(b) as u64).pow(2))
        .sum();
    let widest = (0..baskets.n_rows())
        .map(|b| baskets.row_len(b))
        .max()
        .unwrap_or(0);
    tracing::info!(
        pairs = baskets.nnz(),
        pair_updates = work,
        widest_basket = widest,
        "baskets built"
    );

    let phase = Phase::start("similarity/top-K");
    let topk = engine.top_k(&index, sim, k, 0..n_items)?;
    timings.push(("similarity/top-K", phase.finish()));

    let evaluation: Option<Evaluation> = test.map(|test| {
        let phase = Phase::start("evaluate");
        let e = eval::evaluate(&topk, &baskets, &test, index.degree(), k);
        timings.push(("evaluate", phase.finish()));
        e
    });
    let meta = ModelMeta {
        similarity: sim,
        top_k: k as u32,
        n_items: n_items as u64,
        n_baskets: data.n_baskets as u64,
        n_rows: data.n_rows,
        n_pairs: baskets.nnz() as u64,
        nnz: topk.indices.len() as u64,
        dataset_fingerprint: data.fingerprint.clone(),
        avg_top1_score: topk.avg_top1(),
        evaluation,
    };
    Ok(Trained {
        keys: data.item_keys,
        topk,
        meta,
    })
}

/// Training baskets and, with `holdout`, each basket's held-out last order.
pub fn split_holdout(data: &Interactions, holdout: bool) -> (Csr, Option<Csr>) {
    let keep = holdout.then(|| eval::holdout_last(data));
    let train = Csr::from_pairs(data.n_baskets, &data.basket, &data.item, keep.as_deref());
    let test = keep.as_ref().map(|keep| {
        let flipped: Vec<Vec<bool>> = keep
            .iter()
            .map(|v| v.iter().map(|b| !b).collect())
            .collect();
        Csr::from_pairs(data.n_baskets, &data.basket, &data.item, Some(&flipped))
    });
    (train, test)
}

/// Checks the gates; `Err` means nothing may be registered.
pub fn check_gates(meta: &ModelMeta, gates: &Gates) -> Result<(), GateError> {
    if let Some(min) = gates.min_avg_top1 {
        if meta.avg_top1_score < min {
            return Err(GateError {
                metric: "avg_top1_cosine",
                value: meta.avg_top1_score,
                min,
            });
        }
    }
    if let (Some(min), Some(e)) = (gates.min_hit_rate, &meta.evaluation) {
        if e.hit_rate < min {
            return Err(GateError {
                metric: "hit_rate",
                value: e.hit_rate,
                min,
            });
        }
    }
    Ok(())
}

/// A version name that sorts chronologically: `YYYYMMDDTHHMMSSmmmZ-<digest>`.
fn version_name(now: chrono::DateTime<chrono::Utc>, digest: u32) -> String {
    format!("{}-{digest:08x}", now.format("%Y%m%dT%H%M%S%3fZ"))
}

/// Serialises a trained model with its provenance.
pub fn encode(trained: &Trained, books: Option<&Books>, prov: &Provenance) -> Vec<u8> {
    let (titles, authors) = match books {
        Some(b) => {
            let (t, a) = b.align(&trained.keys);
            (Some(t), Some(a))
        }
        None => (None, None),
    };
    artifact::encode(&ModelParts {
        meta: &trained.meta,
        provenance: prov,
        keys: &trained.keys,
        titles: titles.as_deref(),
        authors: authors.as_deref(),
        indptr: &trained.topk.indptr,
        indices: &trained.topk.indices,
        scores: &trained.topk.scores,
    })
}

/// Runs a whole single-process training.
pub fn run(plan: &TrainPlan) -> anyhow::Result<TrainReport> {
    let mut timings = Vec::new();
    let engine = Engine::open(plan.backend, 0)?;
    let phase = Phase::start("read");
    let data = match &plan.source {
        Source::Orders { path, basket_by } => input::read_orders(
            path,
            OrdersOptions {
                basket_by: *basket_by,
                need_time: plan.holdout,
            },
        )?,
        Source::Baskets { path } => {
            if plan.holdout {
                return Err(crate::error::ConfigError(
                    "--holdout last needs created_at: use the orders format".into(),
                )
                .into());
            }
            input::read_baskets(path)?
        }
        // Generated input takes the gang's path: each rank makes only its own customers.
        Source::Synthetic { .. } => {
            return crate::gang::train::run(plan, &crate::gang::communicator::Solo)
                .map(|r| r.into_report().expect("rank 0 of one writes the model"))
        }
    };
    let books = read_books(plan)?;
    timings.push(("read", phase.finish()));
    tracing::info!(
        rows = data.n_rows,
        baskets = data.n_baskets,
        items = data.item_keys.len(),
        "input read"
    );
    let trained = fit(
        data,
        &engine,
        plan.similarity,
        plan.k,
        plan.holdout,
        &mut timings,
    )?;
    publish(plan, trained, books.as_ref(), 1, timings)
}

/// The titles and authors to store: `--books`, or the generated catalogue's.
pub fn read_books(plan: &TrainPlan) -> anyhow::Result<Option<Books>> {
    match (&plan.books, &plan.source) {
        (Some(p), _) => Ok(Some(Books::read(p)?)),
        (None, Source::Synthetic { spec, .. }) => {
            let csv = crate::gen::books_csv(spec)?;
            Ok(Some(Books::from_reader(
                std::path::Path::new("<generated books>"),
                &csv[..],
            )?))
        }
        (None, _) => Ok(None),
    }
}

/// Logs the model's quality, checks the gates, then writes the artifact (a store version,
/// promoted unless told not to, or one file). Nothing is written when a gate fails.
pub fn publish(
    plan: &TrainPlan,
    trained: Trained,
    books: Option<&Books>,
    world_size: u32,
    mut timings: Vec<(&'static str, f64)>,
) -> anyhow::Result<TrainReport> {
    if let Some(e) = &trained.meta.evaluation {
        tracing::info!(
            k = e.k,
            users = e.users,
            hit_rate = e.hit_rate,
            recall = e.recall,
            ndcg = e.ndcg,
            coverage = e.coverage,
            baseline_hit_rate = e.baseline_hit_rate,
            baseline_recall = e.baseline_recall,
            baseline_ndcg = e.baseline_ndcg,
            baseline_coverage = e.baseline_coverage,
            "evaluation (hold-out: last order per customer)"
        );
    }
    tracing::info!(
        avg_top1_cosine = trained.meta.avg_top1_score,
        "model quality"
    );
    check_gates(&trained.meta, &plan.gates)?;

    let phase = Phase::start("write");
    let now = chrono::Utc::now();
    let prov = Provenance {
        created_at: now.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        tool_version: env!("CARGO_PKG_VERSION").to_owned(),
        world_size,
        threads: plan.threads as u32,
    };
    let bytes = encode(&trained, books, &prov);
    // Validate what we are about to publish with the reader the server uses.
    let check = artifact::Model::from_bytes(&bytes, "<new model>")
        .context("the model just built does not validate (a bug)")?;
    let (written, path) = match &plan.output {
        Output::File(path) => {
            cooc_serve::store::write_atomic(path, &bytes)
                .with_context(|| format!("writing {}", path.display()))?;
            (path.display().to_string(), path.clone())
        }
        Output::Store { dir, promote } => {
            let store = ModelStore::new(dir);
            let version = version_name(now, check.identity_digest());
            let path = store
                .publish(&version, &bytes)
                .with_context(|| format!("publishing version {version}"))?;
            if *promote {
                store
                    .promote(&version)
                    .with_context(|| format!("promoting version {version}"))?;
            }
            (version, path)
        }
    };
    timings.push(("write", phase.finish()));
    Ok(TrainReport {
        meta: trained.meta,
        written,
        path,
        timings,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_sort_by_time() {
        use chrono::TimeZone;
        let a = version_name(
            chrono::Utc.with_ymd_and_hms(2026, 1, 2, 3, 4, 5).unwrap(),
            0xff,
        );
        let b = version_name(
            chrono::Utc.with_ymd_and_hms(2026, 1, 10, 0, 0, 0).unwrap(),
            0,
        );
        assert_eq!(a, "20260102T030405000Z-000000ff");
        assert!(a < b);
    }

    #[test]
    fn gates_compare_against_minimums() {
        let mut meta = ModelMeta {
            similarity: Similarity::Cosine,
            top_k: 10,
            n_items: 1,
            n_baskets: 1,
            n_rows: 1,
            n_pairs: 1,
            nnz: 0,
            dataset_fingerprint: String::new(),
            avg_top1_score: 0.04,
            evaluation: None,
        };
        let gates = Gates {
            min_avg_top1: Some(0.05),
            min_hit_rate: None,
        };
        let e = check_gates(&meta, &gates).unwrap_err();
        assert_eq!(e.metric, "avg_top1_cosine");
        meta.avg_top1_score = 0.05;
        assert!(check_gates(&meta, &gates).is_ok());
    }
}
