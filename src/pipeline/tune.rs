//! `cooc tune` on the pipeline: one count of the baskets, every candidate setting's top-K
//! from it, each evaluated on the hold-out exactly as `cooc train` evaluates its model, and
//! the table on rank 0. Nothing is written.

use cooc_model::Evaluation;

use super::codec::phase;
use super::{count, gather_model, Counted};
use crate::eval::{self, EvalPartial};
use crate::gang::communicator::Communicator;
use crate::gang::wire;
use crate::kernel::Scoring;
use crate::plan::{Candidate, Decay, TrainPlan};
use crate::progress::{Phase, Timings};

/// One candidate's hold-out metrics.
#[derive(Debug, Clone, PartialEq)]
pub struct TuneRow {
    /// The setting.
    pub candidate: Candidate,
    /// Its metrics at the plan's K, with the popularity baseline's.
    pub evaluation: Evaluation,
}

/// What a tuning run found, on rank 0.
#[derive(Debug, Clone)]
pub struct TuneReport {
    /// One row per candidate, in the plan's order.
    pub rows: Vec<TuneRow>,
    /// Books in the catalogue.
    pub n_items: usize,
    /// How long each phase took.
    pub timings: Timings,
}

/// Runs this rank's part of a tuning run; rank 0 (or a gang of one) gets the report.
pub fn tune(plan: &TrainPlan, comm: &dyn Communicator) -> anyhow::Result<Option<TuneReport>> {
    let candidates = plan.output.candidates();
    anyhow::ensure!(
        !candidates.is_empty() && plan.holdout,
        "a tuning run needs candidates and a hold-out (a bug in its plan)"
    );
    // One count per decay setting; every candidate of that setting scored from it. The
    // partials line up with `candidates`.
    let mut decays: Vec<Option<Decay>> = Vec::new();
    for c in candidates {
        if !decays.contains(&c.decay) {
            decays.push(c.decay);
        }
    }
    let mut partials: Vec<Option<EvalPartial>> = vec![None; candidates.len()];
    let mut timings = Timings::default();
    let mut n_items = 0;
    for decay in decays {
        let mine: Vec<usize> = (0..candidates.len())
            .filter(|&c| candidates[c].decay == decay)
            .collect();
        let plan = TrainPlan {
            decay,
            ..plan.clone()
        };
        let Counted {
            engine,
            index,
            rows,
            n_train,
            train_baskets,
            test,
            item_keys,
            timings: counted,
            ..
        } = count(&plan, comm)?;
        timings.extend(counted);
        n_items = item_keys.len();
        let (Some(test), Some(train_baskets)) = (test, train_baskets) else {
            anyhow::bail!("a hold-out run holds nothing out (a bug)");
        };

        let topk = Phase::start("similarity/top-K");
        let sims: Vec<Scoring> = mine
            .iter()
            .map(|&c| Scoring {
                sim: candidates[c].similarity,
                n_baskets: n_train,
                min_support: candidates[c].min_support,
            })
            .collect();
        let blocks = engine.top_k_many(&index, &sims, plan.k, rows)?;
        let degree = index.degree().to_vec();
        drop(index);
        timings.finish(topk);

        comm.bound_messages(plan.max_model_message_bytes(n_items));
        let evaluate = Phase::start("gather/evaluate");
        let holdout = eval::HoldOut::new(train_baskets, test, &degree, plan.k);
        for (block, &c) in blocks.into_iter().zip(&mine) {
            let model = gather_model(comm, block, true, &mut Timings::default())?
                .ok_or_else(|| anyhow::anyhow!("the model was not all-gathered (a bug)"))?;
            partials[c] = Some(eval::evaluate_partial(&model, &holdout));
        }
        timings.finish(evaluate);
    }
    let partials: Vec<EvalPartial> = partials
        .into_iter()
        .map(|p| p.ok_or_else(|| anyhow::anyhow!("a setting was not evaluated (a bug)")))
        .collect::<anyhow::Result<_>>()?;
    let all = comm.gather(phase::EVALUATIONS, wire::encode(&partials))?;
    let Some(all) = all else {
        return Ok(None);
    };
    let mut merged: Option<Vec<EvalPartial>> = None;
    for (q, bytes) in all.iter().enumerate() {
        let theirs: Vec<EvalPartial> = wire::decode_from(bytes, q as u32, phase::EVALUATIONS)?;
        anyhow::ensure!(
            theirs.len() == candidates.len(),
            "rank {q} evaluated {} settings, not {}",
            theirs.len(),
            candidates.len()
        );
        match &mut merged {
            None => merged = Some(theirs),
            Some(m) => m.iter_mut().zip(&theirs).for_each(|(a, b)| a.merge(b)),
        }
    }
    let rows = candidates
        .iter()
        .zip(merged.unwrap_or_default())
        .map(|(&candidate, p)| TuneRow {
            candidate,
            evaluation: p.finish(plan.k),
        })
        .collect();
    Ok(Some(TuneReport {
        rows,
        n_items,
        timings,
    }))
}
