//! `cooc demo`: the whole loop on an embedded default, for a first run.
//!
//! Generates the Bookstore data (size m unless told), trains with a hold-out evaluation and
//! the reference guide's gate (avg_top1_cosine >= 0.05), registers the model and prints a
//! few recommendations with titles. The binary then serves the model on :8080 until
//! SIGINT/SIGTERM.

use std::path::PathBuf;

use anyhow::Context;
use cooc_model::Similarity;

use crate::backend::{BackendRequest, Comm};
use crate::gen::{self, GenSpec};
use crate::input::BasketBy;
use crate::inspect;
use crate::pipeline;
use crate::plan::{Gates, Output, Source, TrainPlan, DEFAULT_SAMPLE_SEED};

/// What the demo does.
#[derive(Debug, Clone)]
pub struct DemoPlan {
    /// The data to generate.
    pub spec: GenSpec,
    /// Working directory: `data/` and the model store `model/`.
    pub dir: PathBuf,
    /// Compute threads (the pool is built).
    pub threads: usize,
}

/// What the demo registered.
#[derive(Debug, Clone)]
pub struct DemoOutcome {
    /// The key of the book shown first, for an example request.
    pub example: String,
}

/// Generates (or reuses) the data, trains, registers and prints recommendations.
pub fn run(plan: &DemoPlan) -> anyhow::Result<DemoOutcome> {
    let data = plan.dir.join("data");
    let marker = data.join(".spec");
    let fingerprint = plan.spec.fingerprint();
    if std::fs::read_to_string(&marker).ok().as_deref() != Some(fingerprint.as_str()) {
        eprintln!("==> generating {} into {}", fingerprint, data.display());
        let t = std::time::Instant::now();
        gen::generate(&plan.spec, &data)?;
        std::fs::write(&marker, &fingerprint)?;
        eprintln!(
            "    {} order lines in {:.1}s",
            plan.spec.orders,
            t.elapsed().as_secs_f64()
        );
    } else {
        eprintln!("==> reusing {} ({})", data.display(), fingerprint);
    }
    let model_dir = plan.dir.join("model");
    let tp = TrainPlan {
        source: Source::Orders {
            path: data.join("orders.csv"),
            basket_by: BasketBy::Customer,
        },
        books: Some(data.join("books.csv")),
        similarity: Similarity::Cosine,
        k: 10,
        holdout: true,
        gates: Gates {
            min_avg_top1: Some(0.05),
            min_hit_rate: None,
        },
        output: Output::Store {
            store: model_dir.display().to_string(),
            promote: true,
        },
        threads: plan.threads,
        backend: crate::backend::resolve(BackendRequest::Auto, Comm::Quic)?,
        chunk_bytes: None,
        min_support: 1,
        max_basket: None,
        sample_seed: DEFAULT_SAMPLE_SEED,
        decay: None,
        keys: crate::input::KeyKind::Auto,
    };
    eprintln!("==> training (cosine, top 10, hold-out: last order per customer)");
    let report = pipeline::train(&tp).context("training the demo model")?;
    for p in report.timings.iter() {
        eprintln!("    {:<18} {:>7.3}s", p.name, p.seconds);
    }
    if let Some(e) = &report.meta.evaluation {
        eprintln!(
            "    HitRate@{k} {:.4} (most-popular baseline {:.4}), NDCG@{k} {:.4} ({:.4}), coverage {:.3} ({:.3})",
            e.hit_rate, e.baseline_hit_rate, e.ndcg, e.baseline_ndcg, e.coverage, e.baseline_coverage,
            k = e.k
        );
    }
    eprintln!(
        "    avg_top1_cosine {:.4} (gate >= 0.05): registered version {} in {}",
        report.meta.avg_top1_score,
        report.written,
        model_dir.display()
    );

    let (_, model) = inspect::open(&model_dir)?;
    // Show the books that appear most often as someone's neighbour.
    let mut seen = vec![0u32; model.n_items()];
    for i in 0..model.n_items() {
        for &j in model.neighbours(i).0 {
            seen[j as usize] += 1;
        }
    }
    let mut order: Vec<usize> = (0..model.n_items()).collect();
    order.sort_by_key(|&i| (std::cmp::Reverse(seen[i]), i));
    for &i in order.iter().take(3) {
        println!(
            "\nCustomers who bought \"{}\" ({}) also bought:",
            model.title(i).unwrap_or("?"),
            model.key(i)
        );
        let (ids, scores) = model.neighbours(i);
        for (&j, &s) in ids.iter().zip(scores).take(5) {
            let j = j as usize;
            println!(
                "  {:.3}  {:<48} {}",
                s,
                model.title(j).unwrap_or("?"),
                model.author(j).unwrap_or("")
            );
        }
    }
    let example = order
        .first()
        .map(|&i| model.key(i).to_string())
        .unwrap_or_default();
    Ok(DemoOutcome { example })
}
