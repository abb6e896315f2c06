//! `cooc tune`: the plan of a comparison (every measure x support asked for, on the
//! hold-out that suits the input), its launch like `cooc train`'s, and the table, best
//! first, with the `cooc train` command that reproduces the winner.

use super::train::{decay, launch_run, similarity, source, Ran};
use super::{Format, HalfLife, Holdout, TuneArgs};
use crate::backend::Backend;
use crate::error::ConfigError;
use crate::pipeline::tune::{tune as run_tune, TuneReport, TuneRow};
use crate::plan::{Candidate, Gates, Output, TrainPlan, MAX_TOP_K};

/// The hold-out `cooc tune` uses: each customer's last order, or one item per basket of a
/// basket file (which has no time).
fn holdout_for(a: &TuneArgs) -> Holdout {
    match (a.input.format, &a.input.orders) {
        (Format::Baskets, Some(_)) => Holdout::Item,
        _ => Holdout::Last,
    }
}

/// Validates `cooc tune`'s arguments into a plan whose output is the comparison.
pub(super) fn tune_plan(
    a: &TuneArgs,
    threads: usize,
    backend: Backend,
) -> anyhow::Result<TrainPlan> {
    let bad = |m: String| -> anyhow::Error { ConfigError(m).into() };
    if !(1..=MAX_TOP_K).contains(&a.k) {
        return Err(bad(format!("--k {} is outside 1..={MAX_TOP_K}", a.k)));
    }
    if a.measures.is_empty() || a.min_support.is_empty() {
        return Err(bad(
            "--measures and --min-support need at least one value each".into(),
        ));
    }
    if a.decay_half_life.is_empty() {
        return Err(bad(
            "--decay-half-life needs at least one value (none for no decay)".into(),
        ));
    }
    let mut candidates: Vec<Candidate> = Vec::new();
    for &HalfLife(h) in &a.decay_half_life {
        let decay = decay(&a.input, h, a.decay_reference)?;
        for &m in &a.measures {
            for &min_support in &a.min_support {
                let c = Candidate {
                    similarity: similarity(m),
                    min_support,
                    decay,
                };
                if !candidates.contains(&c) {
                    candidates.push(c);
                }
            }
        }
    }
    let source = source(&a.input, holdout_for(a))?;
    Ok(TrainPlan {
        source,
        books: None,
        similarity: candidates[0].similarity,
        k: a.k,
        holdout: true,
        gates: Gates::default(),
        output: Output::Compare(candidates.clone()),
        threads,
        backend,
        chunk_bytes: a.input.chunk_bytes,
        min_support: candidates[0].min_support,
        max_basket: a.input.max_basket,
        sample_seed: a.input.sample_seed,
        decay: None,
        keys: a.input.keys,
    })
}

/// Runs `cooc tune`; the exit code on success.
pub(super) fn tune(a: TuneArgs) -> anyhow::Result<u8> {
    let (ran, _) = launch_run(
        &a.run,
        (
            "printed the comparison",
            "rank 0 received this rank's evaluations",
        ),
        |threads, backend| tune_plan(&a, threads, backend),
        run_tune,
    )?;
    let (report, secs) = match ran {
        Ran::Here(r, secs) => (r, secs),
        Ran::Done(code) => return Ok(code),
    };
    let rows = ranked(&report);
    if a.json {
        for r in &rows {
            println!("{}", serde_json::to_string(&json_row(r))?);
        }
    } else {
        print_table(&report, &rows, a.k);
    }
    eprintln!(
        "compared {} settings on {} books in {secs:.2}s ({})",
        rows.len(),
        report.n_items,
        report.timings.summary()
    );
    if let Some(best) = rows.first() {
        eprintln!(
            "best: {} --min-support {}{}; train it with:\n  {}",
            best.candidate.similarity.as_str(),
            best.candidate.min_support,
            best.candidate.decay.map_or(String::new(), |d| format!(
                " --decay-half-life {}",
                half_life_text(d.half_life_us)
            )),
            train_command(&best.candidate, holdout_for(&a))
        );
    }
    Ok(0)
}

/// The rows best first: NDCG, then HitRate, descending; ties keep the order asked for.
fn ranked(report: &TuneReport) -> Vec<TuneRow> {
    let mut rows = report.rows.clone();
    rows.sort_by(|a, b| {
        let (x, y) = (&a.evaluation, &b.evaluation);
        y.ndcg
            .total_cmp(&x.ndcg)
            .then(y.hit_rate.total_cmp(&x.hit_rate))
    });
    rows
}

fn json_row(r: &TuneRow) -> serde_json::Value {
    let e = &r.evaluation;
    serde_json::json!({
        "measure": r.candidate.similarity.as_str(),
        "min_support": r.candidate.min_support,
        "decay_half_life": r.candidate.decay.map(|d| half_life_text(d.half_life_us)),
        "k": e.k,
        "users": e.users,
        "hit_rate": e.hit_rate,
        "recall": e.recall,
        "ndcg": e.ndcg,
        "coverage": e.coverage,
        "baseline_hit_rate": e.baseline_hit_rate,
        "baseline_recall": e.baseline_recall,
        "baseline_ndcg": e.baseline_ndcg,
        "baseline_coverage": e.baseline_coverage,
    })
}

/// A half-life as `--decay-half-life` takes it, in its largest whole unit (30d, 12h ...).
fn half_life_text(us: i64) -> String {
    let s = us / 1_000_000;
    match s {
        _ if us % 1_000_000 != 0 => format!("{us}us"),
        _ if s % 86_400 == 0 => format!("{}d", s / 86_400),
        _ if s % 3_600 == 0 => format!("{}h", s / 3_600),
        _ if s % 60 == 0 => format!("{}m", s / 60),
        _ => format!("{s}s"),
    }
}

fn print_table(report: &TuneReport, rows: &[TuneRow], k: usize) {
    let users = report.rows.first().map_or(0, |r| r.evaluation.users);
    println!("hold-out: {users} customers, K = {k}; best first (NDCG, then HitRate)");
    println!(
        "{:<10} {:>11} {:>10} {:>10} {:>10} {:>10} {:>9}",
        "measure",
        "min_support",
        "half-life",
        format!("HitRate@{k}"),
        format!("Recall@{k}"),
        format!("NDCG@{k}"),
        "coverage"
    );
    for r in rows {
        let e = &r.evaluation;
        println!(
            "{:<10} {:>11} {:>10} {:>10.4} {:>10.4} {:>10.4} {:>9.4}",
            r.candidate.similarity.as_str(),
            r.candidate.min_support,
            r.candidate
                .decay
                .map_or("none".to_owned(), |d| half_life_text(d.half_life_us)),
            e.hit_rate,
            e.recall,
            e.ndcg,
            e.coverage
        );
    }
    if let Some(e) = report.rows.first().map(|r| &r.evaluation) {
        println!(
            "{:<10} {:>11} {:>10} {:>10.4} {:>10.4} {:>10.4} {:>9.4}",
            "popularity",
            "-",
            "-",
            e.baseline_hit_rate,
            e.baseline_recall,
            e.baseline_ndcg,
            e.baseline_coverage
        );
    }
}

/// This command line as the `cooc train` that trains `best`: the input and run flags as
/// given, tune's own flags replaced by the winner's, the hold-out kept for its metrics.
fn train_command(best: &Candidate, holdout: Holdout) -> String {
    const OWN: [&str; 4] = ["--measures", "--min-support", "--decay-half-life", "--json"];
    let own =
        |name: &str| OWN.contains(&name) || (best.decay.is_none() && name == "--decay-reference");
    let mut out = vec!["cooc".to_owned(), "train".to_owned()];
    let mut args = std::env::args().skip(1).skip_while(|a| a != "tune").skip(1);
    while let Some(a) = args.next() {
        let name = a.split('=').next().unwrap_or_default();
        if own(name) {
            if !a.contains('=') && name != "--json" {
                args.next();
            }
            continue;
        }
        out.push(shell_quote(&a));
    }
    let holdout = match holdout {
        Holdout::Item => "item",
        _ => "last",
    };
    out.extend([
        format!("--similarity {}", best.similarity.as_str()),
        format!("--min-support {}", best.min_support),
        format!("--holdout {holdout}"),
    ]);
    if let Some(d) = best.decay {
        out.push(format!(
            "--decay-half-life {}",
            half_life_text(d.half_life_us)
        ));
    }
    out.join(" ")
}

/// `s` as one shell word.
fn shell_quote(s: &str) -> String {
    let plain = |c: char| c.is_ascii_alphanumeric() || "-_./=:,@%+".contains(c);
    if !s.is_empty() && s.chars().all(plain) {
        s.to_owned()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}
