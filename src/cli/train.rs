//! `cooc train`: the plan from the arguments, the launch (one process, local ranks, or a
//! gang member), and the summary line.

use super::{init_pool, Format, Holdout, InputArgs, RunArgs, SimilarityArg, TrainArgs};
use crate::backend::{self, Backend};
use crate::error::ConfigError;
use crate::gen::GenSpec;
use crate::input::BasketBy;
use crate::launch::{self, Launch};
use crate::pipeline::{self, TrainReport};
use crate::plan::{Decay, Gates, Output, Source, TrainPlan, MAX_TOP_K};
use crate::postgres::PgSource;
use cooc_model::Similarity;

/// The measure of a `--similarity` or `--measures` value.
pub(super) fn similarity(a: SimilarityArg) -> Similarity {
    match a {
        SimilarityArg::Cosine => Similarity::Cosine,
        SimilarityArg::Jaccard => Similarity::Jaccard,
        SimilarityArg::Count => Similarity::Count,
        SimilarityArg::Lift => Similarity::Lift,
        SimilarityArg::Inclusion => Similarity::Inclusion,
        SimilarityArg::Llr => Similarity::Llr,
    }
}

/// The checked input of `cooc train` and `cooc tune`, with the hold-out asked for (whose
/// kind must suit the format).
pub(super) fn source(a: &InputArgs, holdout: Holdout) -> anyhow::Result<Source> {
    let bad = |m: &str| -> anyhow::Error { ConfigError(m.into()).into() };
    let basket_by = match a.basket_window {
        None => BasketBy::Customer,
        Some(d) if d.as_micros() == 0 => return Err(bad("--basket-window must be positive")),
        Some(d) => BasketBy::Window(d.as_micros().min(i64::MAX as u128) as i64),
    };
    if a.chunk_bytes == Some(0) {
        return Err(bad("--chunk-bytes must be positive"));
    }
    if let Some(conn) = &a.postgres {
        if holdout == Holdout::Item {
            return Err(bad(
                "--holdout item is for basket files; orders from PostgreSQL hold out each customer's last order: --holdout last",
            ));
        }
        return Ok(Source::Postgres {
            db: PgSource {
                conn: conn.clone(),
                password_file: a.postgres_password_file.clone(),
                table: a.orders_table.clone(),
                query: a.orders_query.clone(),
                books_table: a.books_table.clone(),
            },
            basket_by,
        });
    }
    Ok(match (a.format, a.orders.clone()) {
        (Format::Baskets, Some(path)) => {
            if a.basket_window.is_some() {
                return Err(bad("--basket-window applies to --format orders only"));
            }
            if holdout == Holdout::Last {
                return Err(bad(
                    "--holdout last needs created_at, which basket files lack: use --holdout item (one item of each basket held out)",
                ));
            }
            Source::Baskets { path }
        }
        _ if holdout == Holdout::Item => {
            return Err(bad(
                "--holdout item is for basket files (--format baskets); orders hold out each customer's last order: --holdout last",
            ))
        }
        (_, None) => Source::Synthetic {
            spec: GenSpec::preset(a.generate.expect("clap requires an input"), a.seed),
            basket_by,
        },
        (Format::Orders, Some(path)) => Source::Orders { path, basket_by },
    })
}

/// The checked `--decay-half-life` and `--decay-reference`: positive, and only where rows
/// have a `created_at`.
pub(super) fn decay(
    a: &InputArgs,
    half_life: Option<std::time::Duration>,
    reference_us: Option<i64>,
) -> anyhow::Result<Option<Decay>> {
    let Some(h) = half_life else {
        return Ok(None);
    };
    let bad = |m: String| -> anyhow::Error { ConfigError(m).into() };
    if let (Format::Baskets, Some(path)) = (a.format, &a.orders) {
        return Err(bad(format!(
            "--decay-half-life needs created_at, which {} lacks (a basket file has no time)",
            path.display()
        )));
    }
    let half_life_us = i64::try_from(h.as_micros()).unwrap_or(i64::MAX);
    if half_life_us <= 0 {
        return Err(bad("--decay-half-life must be positive".into()));
    }
    Ok(Some(Decay {
        half_life_us,
        reference_us,
    }))
}

/// `--decay-reference`: an RFC 3339 time, as microseconds since the epoch.
pub(super) fn parse_reference(s: &str) -> Result<i64, String> {
    crate::input::parse_time(s.as_bytes())
        .ok_or_else(|| format!("{s:?} is not an RFC 3339 time (e.g. 2026-11-30T00:00:00Z)"))
}

/// Validates `cooc train`'s arguments into a plan (`threads`: the compute pool's size, as
/// built). The one place that checks them: the pipeline trusts the plan.
pub fn train_plan(a: &TrainArgs, threads: usize, backend: Backend) -> anyhow::Result<TrainPlan> {
    let bad = |m: String| -> anyhow::Error { ConfigError(m).into() };
    if !(1..=MAX_TOP_K).contains(&a.k) {
        return Err(bad(format!("--k {} is outside 1..={MAX_TOP_K}", a.k)));
    }
    let holdout = a.holdout != Holdout::None;
    let similarity = similarity(a.similarity);
    // HitRate is a fraction; so is the mean first score of a bounded measure (count, lift
    // and LLR scores grow without bound, so their gate needs only be non-negative).
    for (flag, gate, fraction) in [
        ("--min-hit-rate", a.min_hit_rate, true),
        (
            "--min-avg-top1-cosine",
            a.min_avg_top1_cosine,
            similarity.bounded(),
        ),
    ] {
        let ok = |g: f64| g >= 0.0 && (!fraction || g <= 1.0);
        if let Some(g) = gate.filter(|&g| !ok(g)) {
            let range = if fraction { "0..=1" } else { "0 or more" };
            return Err(bad(format!(
                "{flag} {g} is outside {range} for --similarity {}",
                similarity.as_str()
            )));
        }
    }
    if a.min_hit_rate.is_some() && !holdout {
        return Err(bad(
            "--min-hit-rate needs a hold-out (--holdout last, or item for basket files)".into(),
        ));
    }
    if a.books.is_some() && a.input.books_table.is_some() {
        return Err(bad(
            "--books and --books-table both name the titles: give one".into(),
        ));
    }
    let source = source(&a.input, a.holdout)?;
    Ok(TrainPlan {
        source,
        books: a.books.clone(),
        similarity,
        k: a.k,
        holdout,
        gates: Gates {
            min_hit_rate: a.min_hit_rate,
            min_avg_top1: a.min_avg_top1_cosine,
        },
        output: match &a.out {
            Some(p) => Output::File(p.clone()),
            None => Output::Store {
                // A store this build cannot open is a configuration error, found before
                // any training (opening touches neither the disk nor the network).
                store: cooc_model::ModelStore::open(&a.model_dir)
                    .map_err(|e| ConfigError(format!("--model-dir: {e}")))?
                    .location(),
                promote: !a.no_promote,
            },
        },
        threads,
        backend,
        chunk_bytes: a.input.chunk_bytes,
        min_support: a.min_support,
        max_basket: a.input.max_basket,
        sample_seed: a.input.sample_seed,
        decay: decay(&a.input, a.decay_half_life, a.decay_reference)?,
        keys: a.input.keys,
    })
}

/// This command line without `--local-ranks` (and its value): what each local rank runs.
fn child_args() -> Vec<std::ffi::OsString> {
    let mut out = Vec::new();
    let mut args = std::env::args_os().skip(1);
    while let Some(a) = args.next() {
        if a == "--local-ranks" {
            args.next();
        } else if !a.to_string_lossy().starts_with("--local-ranks=") {
            out.push(a);
        }
    }
    out
}

/// How a command that runs the pipeline went in this process.
pub(super) enum Ran<T> {
    /// This process did the work (alone, or as rank 0 of a gang): its result, and the
    /// whole run's seconds.
    Here(T, f64),
    /// It was another rank of a gang, or launched local ranks: the exit code.
    Done(u8),
}

/// Builds the plan (`plan(threads)`) and runs `body` with it: in this process, as local
/// ranks (`--local-ranks`: this command line once per rank), or as a member of a gang.
/// `body` returns `Some` on the rank that reports (rank 0 or a gang of one). A gang
/// member's last line ends with `done.0` on rank 0 and `done.1` on the others.
pub(super) fn launch_run<T>(
    run: &RunArgs,
    done: (&str, &str),
    plan: impl Fn(usize, Backend) -> anyhow::Result<TrainPlan>,
    body: impl Fn(&TrainPlan, &dyn crate::gang::communicator::Communicator) -> anyhow::Result<Option<T>>,
) -> anyhow::Result<(Ran<T>, TrainPlan)> {
    let backend = backend::resolve(run.backend, run.comm)?;
    launch::exit_on_stop_signals()?;
    if let Some(n) = run.gang.local_ranks {
        // The launcher validates and spawns: each rank builds its own plan and pool.
        let per_rank = run.threads.unwrap_or_else(|| {
            (std::thread::available_parallelism().map_or(1, |c| c.get()) / n.max(1) as usize).max(1)
        });
        let checked = plan(per_rank, backend)?;
        run.gang
            .clone()
            .launch(String::new(), |k| std::env::var(k).ok())?;
        let code = launch::run_local(n, &child_args(), per_rank)?;
        return Ok((Ran::Done(code as u8), checked));
    }
    let threads = init_pool(run.threads)?;
    let plan = plan(threads, backend)?;
    let t = std::time::Instant::now();
    let out = match run
        .gang
        .clone()
        .launch(plan.fingerprint(), |k| std::env::var(k).ok())?
    {
        Launch::Single | Launch::Local(_) => body(&plan, &crate::gang::communicator::Solo)?,
        Launch::Member(setup) => {
            let (out, traffic, rank, world) = launch::run_member(&plan, setup, run.comm, &body)?;
            let rss = crate::progress::peak_rss()
                .map(|b| format!(", peak RSS {} MiB", b >> 20))
                .unwrap_or_default();
            eprintln!(
                "rank {rank}/{world}: sent {} B, received {} B{rss}; {}",
                traffic.sent,
                traffic.received,
                if rank == 0 { done.0 } else { done.1 }
            );
            out
        }
    };
    Ok(match out {
        Some(r) => (Ran::Here(r, t.elapsed().as_secs_f64()), plan),
        None => (Ran::Done(0), plan),
    })
}

/// Runs `cooc train`; the exit code on success.
pub(super) fn train(a: TrainArgs) -> anyhow::Result<u8> {
    let (ran, plan) = launch_run(
        &a.run,
        ("wrote the model", "rank 0 confirmed the write"),
        |threads, backend| train_plan(&a, threads, backend),
        |plan, comm| Ok(pipeline::run(plan, comm)?.report),
    )?;
    match ran {
        Ran::Here(r, secs) => {
            summary(&r, &plan, secs);
            Ok(0)
        }
        Ran::Done(code) => Ok(code),
    }
}

/// What the run did, for a person: what was trained, its hold-out quality beside the
/// popularity baseline, and where it went (live or not). The benchmark scripts read the
/// phase timings in the first line's parentheses.
fn summary(r: &TrainReport, plan: &TrainPlan, secs: f64) {
    eprintln!(
        "trained {} books, {} neighbours, in {secs:.2}s ({})",
        r.meta.n_items,
        r.meta.nnz,
        r.timings.summary()
    );
    if let Some(e) = &r.meta.evaluation {
        let k = e.k;
        eprintln!(
            "hold-out (last order of {} customers): HitRate@{k} {:.3} (popularity {:.3}), \
             Recall@{k} {:.3}, NDCG@{k} {:.3}, coverage {:.3}",
            e.users, e.hit_rate, e.baseline_hit_rate, e.recall, e.ndcg, e.coverage
        );
    }
    match &plan.output {
        Output::File(_) => eprintln!("wrote {}", r.path),
        Output::Store {
            store,
            promote: true,
        } => {
            eprintln!("version {} is live in {store}", r.written)
        }
        Output::Compare(_) => {}
        Output::Store {
            store,
            promote: false,
        } => eprintln!(
            "version {} published in {store}, not live (--no-promote): `cooc models promote {}` makes it live",
            r.written, r.written
        ),
    }
}
