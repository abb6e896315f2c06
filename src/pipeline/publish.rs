//! The end of the pipeline, on rank 0: the model's metadata as one process would compute
//! it, the quality gates, and the write (a store version, promoted unless told not to, or
//! one file). Nothing is written when a gate fails, and the bytes are validated with the
//! server's reader before they are published.

use std::path::PathBuf;

use anyhow::Context;
use cooc_model::artifact::{self, Model};
use cooc_model::store::{self, ModelStore};
use cooc_model::{Keys, ModelMeta, ModelParts, Provenance};

use super::codec::{ChunkCrc, Summary};
use super::share::Fingerprint;
use crate::error::{GateError, GateMiss, InputError};
use crate::eval::EvalPartial;
use crate::input::{self, Books};
use crate::kernel::TopK;
use crate::plan::{Gates, Output, Source, TrainPlan};
use crate::progress::{Phase, Timings};

/// A trained model in memory, before it is written.
pub struct Trained {
    /// Item keys; item `i` is `keys[i]`.
    pub keys: Keys,
    /// Every item's neighbours.
    pub topk: TopK,
    /// What defines the model.
    pub meta: ModelMeta,
    /// The most-bought items with their training basket counts, for popularity backfill.
    pub popular: Vec<(u32, u64)>,
}

/// What a run wrote.
#[derive(Debug)]
pub struct TrainReport {
    /// The model's metadata.
    pub meta: ModelMeta,
    /// The version published (store output) or the file written.
    pub written: String,
    /// Where the artifact went: its path, or its object's URL.
    pub path: String,
    /// How long each phase took on rank 0.
    pub timings: Timings,
}

/// Rank 0: the model's metadata from every rank's summary, as one process would have
/// computed it.
pub(crate) fn assemble(
    plan: &TrainPlan,
    keys: Keys,
    model: TopK,
    all: &[Summary],
    fingerprint: &Fingerprint,
    decay_reference_us: Option<i64>,
    degree: &[u32],
) -> Trained {
    let dataset_fingerprint = match fingerprint {
        Fingerprint::Known(f) => f.clone(),
        Fingerprint::Shared { header } => {
            let mut crcs: Vec<ChunkCrc> = all.iter().flat_map(|s| s.crcs.iter().copied()).collect();
            crcs.sort_unstable();
            input::file_fingerprint(*header, crcs.iter().map(|c| (c.crc, c.len)))
        }
    };
    let evaluation = all
        .iter()
        .filter_map(|s| s.evaluation.as_ref())
        .fold(None::<EvalPartial>, |acc, e| match acc {
            None => Some(e.clone()),
            Some(mut a) => {
                a.merge(e);
                Some(a)
            }
        })
        .map(|e| e.finish(plan.k));
    let meta = ModelMeta {
        similarity: plan.similarity,
        top_k: plan.k as u32,
        n_items: keys.len() as u64,
        n_baskets: all.iter().map(|s| s.n_baskets).sum(),
        n_rows: all.iter().map(|s| s.n_rows).sum(),
        n_pairs: all.iter().map(|s| s.n_pairs).sum(),
        nnz: model.indices.len() as u64,
        dataset_fingerprint,
        avg_top1_score: model.avg_top1(),
        min_support: plan.min_support,
        max_basket: plan.max_basket.map(|m| m as u64),
        decay: plan
            .decay
            .zip(decay_reference_us)
            .map(|(d, r)| cooc_model::meta::Decay {
                half_life_s: (d.half_life_us / 1_000_000) as u64,
                reference: chrono::DateTime::from_timestamp_micros(r).map_or_else(
                    || r.to_string(),
                    |t| t.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true),
                ),
            }),
        evaluation,
    };
    Trained {
        keys,
        topk: model,
        meta,
        popular: artifact::popular(degree, artifact::POPULAR_LISTED),
    }
}

/// An input with no rows, or whose baskets never share two items, would make a model that
/// answers nothing: bad input (exit 2), named by its file, and nothing is registered.
pub fn check_not_empty(plan: &TrainPlan, meta: &ModelMeta) -> Result<(), InputError> {
    let path = match &plan.source {
        Source::Orders { path, .. } | Source::Baskets { path } => path.clone(),
        Source::Synthetic { spec, .. } => {
            PathBuf::from(format!("<generated {}>", spec.fingerprint()))
        }
        Source::Postgres { db, .. } => PathBuf::from(format!("<{}>", db.describe())),
    };
    let msg = if meta.n_rows == 0 {
        "no rows to train on (only a header, or an empty file)"
    } else if meta.nnz == 0 {
        "no two items share a basket: the model would have no neighbours"
    } else {
        return Ok(());
    };
    Err(InputError::File {
        path,
        msg: msg.into(),
    })
}

/// Checks the gates; `Err` means nothing may be registered.
pub fn check_gates(meta: &ModelMeta, gates: &Gates) -> Result<(), GateError> {
    let hit_rate = meta.evaluation.as_ref().map(|e| e.hit_rate);
    let failed: Vec<GateMiss> = [
        ("hit_rate", gates.min_hit_rate, hit_rate),
        (
            "avg_top1_cosine",
            gates.min_avg_top1,
            Some(meta.avg_top1_score),
        ),
    ]
    .into_iter()
    .filter_map(|(metric, min, value)| match (min, value) {
        (Some(min), Some(value)) if value < min => Some(GateMiss { metric, value, min }),
        _ => None,
    })
    .collect();
    if failed.is_empty() {
        Ok(())
    } else {
        Err(GateError { failed })
    }
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
        popular: &trained.popular,
    })
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
        (None, Source::Postgres { db, .. }) => match &db.books_table {
            Some(table) => {
                let session = crate::postgres::Session::connect(db)?;
                let csv = session.books_csv(table)?;
                let name = format!("<PostgreSQL {} {table}>", session.server());
                Ok(Some(Books::from_reader(
                    std::path::Path::new(&name),
                    &csv[..],
                )?))
            }
            None => Ok(None),
        },
        (None, _) => Ok(None),
    }
}

/// Logs the model's quality, checks the gates, then writes the artifact. Nothing is
/// written when a gate fails.
pub(crate) fn publish(
    plan: &TrainPlan,
    trained: Trained,
    world_size: u32,
    mut timings: Timings,
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
    check_not_empty(plan, &trained.meta)?;
    check_gates(&trained.meta, &plan.gates)?;
    let books = read_books(plan)?;

    let phase = Phase::start("write");
    let now = chrono::Utc::now();
    let prov = Provenance {
        created_at: now.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        tool_version: env!("CARGO_PKG_VERSION").to_owned(),
        world_size,
        threads: plan.threads as u32,
    };
    let bytes = encode(&trained, books.as_ref(), &prov);
    // Validate what we are about to publish with the reader the server uses.
    let check = Model::from_bytes(&bytes, "<new model>")
        .context("the model just built does not validate (a bug)")?;
    let (written, path) = match &plan.output {
        Output::File(path) => {
            store::write_atomic(path, &bytes)
                .with_context(|| format!("writing {}", path.display()))?;
            (path.display().to_string(), path.display().to_string())
        }
        Output::Store { store, promote } => {
            let store = ModelStore::open(store)?;
            let base = version_name(now, check.identity_digest());
            let (version, path) = store
                .publish_new(&base, &bytes)
                .with_context(|| format!("publishing version {base}"))?;
            if *promote {
                store
                    .promote(&version)
                    .with_context(|| format!("promoting version {version}"))?;
            }
            (version, path)
        }
        Output::Compare(_) => anyhow::bail!("a tuning run writes no model (a bug: tune() runs it)"),
    };
    timings.finish(phase);
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
            avg_top1_score: 0.04,
            ..ModelMeta::example()
        };
        let gates = Gates {
            min_avg_top1: Some(0.05),
            min_hit_rate: None,
        };
        let e = check_gates(&meta, &gates).unwrap_err();
        assert_eq!(e.failed.len(), 1);
        assert_eq!(e.failed[0].metric, "avg_top1_cosine");
        meta.avg_top1_score = 0.05;
        assert!(check_gates(&meta, &gates).is_ok());
        // Every failing gate is reported, not only the first.
        meta.avg_top1_score = 0.01;
        meta.evaluation = Some(cooc_model::Evaluation {
            k: 10,
            users: 100,
            hit_rate: 0.1,
            recall: 0.1,
            ndcg: 0.05,
            coverage: 0.5,
            baseline_hit_rate: 0.05,
            baseline_recall: 0.05,
            baseline_ndcg: 0.02,
            baseline_coverage: 0.01,
        });
        let both = Gates {
            min_hit_rate: Some(0.3),
            ..gates
        };
        let e = check_gates(&meta, &both).unwrap_err();
        let names: Vec<_> = e.failed.iter().map(|m| m.metric).collect();
        assert_eq!(names, ["hit_rate", "avg_top1_cosine"]);
        let msg = e.to_string();
        assert!(
            msg.contains("hit_rate = 0.100000 is below the required 0.3")
                && msg.contains("avg_top1_cosine = 0.010000 is below the required 0.05"),
            "{msg}"
        );
    }
}
