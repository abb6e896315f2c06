//! The `cooc` binary: parses arguments into validated plans and calls the library.
//!
//! Exit codes (see `cooc::error`): 0 ok, 1 internal failure, 2 bad input, configuration or
//! failed quality gate, 75 retriable (lost peer).

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Parser, Subcommand, ValueEnum};
use cooc::artifact::Similarity;
use cooc::error::{exit_code, ConfigError};
use cooc::gang::communicator::QuicComm;
use cooc::gang::launch::{self, GangOptions, Launch};
use cooc::gen::{GenSpec, Size};
use cooc::input::BasketBy;
use cooc::train::{Gates, Output, Source, TrainPlan, MAX_TOP_K};
use cooc_serve::server::ServeArgs;
use cooc_serve::store::ModelStore;

/// Item co-occurrence recommenders: generate data, train top-K neighbours, serve them.
#[derive(Parser, Debug)]
#[command(name = "cooc", version, about, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Generate the synthetic Bookstore dataset (books.csv, orders.csv).
    Gen(GenArgs),
    /// Train a top-K model and register it in a model store.
    Train(TrainArgs),
    /// List, promote or roll back model versions.
    Models {
        /// Model store directory.
        #[arg(long, env = "MODEL_DIR", default_value = "model", global = true)]
        model_dir: PathBuf,
        #[command(subcommand)]
        cmd: ModelsCmd,
    },
    /// Summarise a model, or show one book's neighbours.
    Inspect {
        /// A model file, or a model store directory (its CURRENT version).
        model: PathBuf,
        /// Show this book's neighbours.
        #[arg(long)]
        book: Option<String>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Export a model's neighbour lists.
    Export {
        /// A model file, or a model store directory (its CURRENT version).
        model: PathBuf,
        /// Output format: book_id,rank,neighbour_id,score.
        #[arg(long, value_enum, default_value = "csv")]
        format: ExportFormat,
        /// Write here instead of standard output.
        #[arg(long, short)]
        out: Option<PathBuf>,
    },
    /// Serve the live model over HTTP (same as the cooc-serve binary).
    Serve(ServeArgs),
    /// Generate, train, evaluate, register and serve in one go.
    Demo(DemoArgs),
    /// Print a new shared secret for a gang's ranks (32 random bytes, hex).
    Secret,
}

#[derive(Args, Debug)]
struct GenArgs {
    /// Preset size: s (200 books / 800 customers / 5k lines), m (10k / 100k / 1M), l (100k / 2M / 20M).
    #[arg(long, value_enum, default_value = "s")]
    size: Size,
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Output directory.
    #[arg(long)]
    out: PathBuf,
    /// Override the number of books.
    #[arg(long)]
    books: Option<u64>,
    /// Override the number of customers.
    #[arg(long)]
    customers: Option<u64>,
    /// Override the number of order lines.
    #[arg(long)]
    orders: Option<u64>,
    /// Worker threads (default: all cores).
    #[arg(long, env = "COOC_THREADS")]
    threads: Option<usize>,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum Format {
    /// Bookstore orders CSV with a header (book_id, customer_id, created_at, ...).
    Orders,
    /// One basket per line, items separated by commas (or whitespace).
    Baskets,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum Holdout {
    None,
    /// Hold out each customer's last order (by created_at) and evaluate on it.
    Last,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum ExportFormat {
    Csv,
}

#[derive(Args, Debug)]
#[command(group(clap::ArgGroup::new("input").required(true).args(["orders", "generate"])))]
struct TrainArgs {
    /// Input file.
    #[arg(long, env = "COOC_ORDERS")]
    orders: Option<PathBuf>,
    /// Train on the Bookstore dataset of this size, generated in memory (each rank of a
    /// gang generates only its own customers; no input volume needed).
    #[arg(long, value_enum, env = "COOC_GENERATE", conflicts_with_all = ["orders", "format"])]
    generate: Option<Size>,
    /// Seed of --generate.
    #[arg(long, default_value_t = 42, env = "COOC_SEED", requires = "generate")]
    seed: u64,
    #[command(flatten)]
    gang: GangArgs,
    #[arg(long, value_enum, default_value = "orders", env = "COOC_FORMAT")]
    format: Format,
    /// books.csv (id,title,author,...) to store titles and authors in the model.
    #[arg(long, env = "COOC_BOOKS")]
    books: Option<PathBuf>,
    /// Group orders into baskets by created_at windows (e.g. 30m, 1h, 1day) instead of customer_id.
    #[arg(long, env = "COOC_BASKET_WINDOW", value_parser = humantime::parse_duration)]
    basket_window: Option<Duration>,
    #[arg(long, value_enum, default_value = "cosine", env = "COOC_SIMILARITY")]
    similarity: SimilarityArg,
    /// Neighbours kept per book (1..=1000).
    #[arg(
        short,
        long = "k",
        alias = "top-k",
        default_value_t = 10,
        env = "COOC_K"
    )]
    k: usize,
    /// Compute threads (default: all cores).
    #[arg(long, env = "COOC_THREADS")]
    threads: Option<usize>,
    #[arg(long, value_enum, default_value = "none", env = "COOC_HOLDOUT")]
    holdout: Holdout,
    /// Fail (exit 2, register nothing) below this HitRate@K; needs --holdout last.
    #[arg(long, env = "COOC_MIN_HIT_RATE")]
    min_hit_rate: Option<f64>,
    /// Fail (exit 2, register nothing) below this mean first-neighbour score.
    #[arg(long, env = "COOC_MIN_AVG_TOP1_COSINE")]
    min_avg_top1_cosine: Option<f64>,
    /// Model store to publish into.
    #[arg(long, env = "MODEL_DIR", default_value = "model")]
    model_dir: PathBuf,
    /// Publish without making the new version live.
    #[arg(long)]
    no_promote: bool,
    /// Write a single artifact file here instead of publishing to the store.
    #[arg(long, conflicts_with = "no_promote")]
    out: Option<PathBuf>,
}

/// Gang options: how this process takes part in a multi-rank training.
#[derive(Args, Debug, Default)]
struct GangArgs {
    /// This process's rank in a static gang (0..world-size).
    #[arg(long, env = "COOC_RANK")]
    rank: Option<u32>,
    /// Ranks in a static gang.
    #[arg(long, env = "COOC_WORLD_SIZE")]
    world_size: Option<u32>,
    /// host:port of every rank, in rank order (this rank listens on its own entry's port).
    #[arg(long, env = "COOC_PEERS", value_delimiter = ',')]
    peers: Option<Vec<String>>,
    /// Read rank, world size and peers from a JobSet pod's environment (see jobset/README.md).
    #[arg(long, env = "COOC_JOBSET")]
    jobset: bool,
    /// UDP port of the rank endpoint in --jobset mode.
    #[arg(long, env = "COOC_PORT", default_value_t = 7077)]
    port: u16,
    /// Start this many rank processes on loopback and wait for them.
    #[arg(long, env = "COOC_LOCAL_RANKS")]
    local_ranks: Option<u32>,
    /// File holding the ranks' shared secret (`cooc secret` makes one).
    #[arg(long, env = "COOC_SECRET_FILE")]
    secret_file: Option<PathBuf>,
    /// Identity of this run outside Kubernetes: ranks of other runs are refused.
    #[arg(long, env = "COOC_RUN_ID")]
    run_id: Option<String>,
    /// How long to wait for every rank to arrive (e.g. 3m, 90s).
    #[arg(long, env = "COOC_RENDEZVOUS_TIMEOUT", default_value = "3m", value_parser = humantime::parse_duration)]
    rendezvous_timeout: Duration,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum SimilarityArg {
    Cosine,
    Jaccard,
}

#[derive(Subcommand, Debug)]
enum ModelsCmd {
    /// List versions, marking the live one.
    List,
    /// Make a version live.
    Promote { version: String },
    /// Make the previous version live.
    Rollback,
}

#[derive(Args, Debug)]
struct DemoArgs {
    #[arg(long, value_enum, default_value = "m")]
    size: Size,
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Working directory for data and models.
    #[arg(long, default_value = "cooc-demo")]
    dir: PathBuf,
    #[arg(long, default_value = "0.0.0.0:8080")]
    listen: String,
    /// Stop after training instead of serving.
    #[arg(long)]
    no_serve: bool,
    #[arg(long, env = "COOC_THREADS")]
    threads: Option<usize>,
}

fn init_pool(threads: Option<usize>) -> anyhow::Result<usize> {
    let n = match threads {
        Some(0) => return Err(ConfigError("--threads must be at least 1".into()).into()),
        Some(n) => n,
        None => std::thread::available_parallelism().map_or(1, |n| n.get()),
    };
    rayon::ThreadPoolBuilder::new()
        .num_threads(n)
        .build_global()
        .context("starting the compute pool")?;
    Ok(n)
}

fn train_plan(a: TrainArgs, threads: Option<usize>) -> anyhow::Result<TrainPlan> {
    let bad = |m: String| -> anyhow::Error { ConfigError(m).into() };
    if !(1..=MAX_TOP_K).contains(&a.k) {
        return Err(bad(format!("--k {} is outside 1..={MAX_TOP_K}", a.k)));
    }
    let holdout = matches!(a.holdout, Holdout::Last);
    if a.min_hit_rate.is_some() && !holdout {
        return Err(bad("--min-hit-rate needs --holdout last".into()));
    }
    let basket_by = match a.basket_window {
        None => BasketBy::Customer,
        Some(d) if d.as_micros() == 0 => {
            return Err(bad("--basket-window must be positive".into()))
        }
        Some(d) => BasketBy::Window(d.as_micros().min(i64::MAX as u128) as i64),
    };
    let source = match (a.format, a.orders) {
        (_, None) => Source::Synthetic {
            spec: GenSpec::preset(a.generate.expect("clap requires an input"), a.seed),
            basket_by,
        },
        (Format::Orders, Some(path)) => Source::Orders { path, basket_by },
        (Format::Baskets, Some(path)) => {
            if a.basket_window.is_some() {
                return Err(bad("--basket-window applies to --format orders only".into()));
            }
            if holdout {
                return Err(bad(
                    "--holdout last needs created_at: use --format orders".into()
                ));
            }
            Source::Baskets { path }
        }
    };
    let threads = init_pool(threads)?;
    Ok(TrainPlan {
        source,
        books: a.books,
        similarity: match a.similarity {
            SimilarityArg::Cosine => Similarity::Cosine,
            SimilarityArg::Jaccard => Similarity::Jaccard,
        },
        k: a.k,
        holdout,
        gates: Gates {
            min_hit_rate: a.min_hit_rate,
            min_avg_top1: a.min_avg_top1_cosine,
        },
        output: match a.out {
            Some(p) => Output::File(p),
            None => Output::Store {
                dir: a.model_dir,
                promote: !a.no_promote,
            },
        },
        threads,
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

fn serve(a: ServeArgs) -> anyhow::Result<()> {
    let cfg = a.config().map_err(ConfigError)?;
    tokio::runtime::Runtime::new()?.block_on(a.serve(cfg))
}

/// Runs a command; the exit code on success (a local gang passes its ranks' code on).
fn run(cli: Cli) -> anyhow::Result<u8> {
    match cli.cmd {
        Cmd::Gen(a) => {
            init_pool(a.threads)?;
            let mut spec = GenSpec::preset(a.size, a.seed);
            spec.books = a.books.unwrap_or(spec.books);
            spec.customers = a.customers.unwrap_or(spec.customers);
            spec.orders = a.orders.unwrap_or(spec.orders);
            let t = std::time::Instant::now();
            let r = cooc::gen::generate(&spec, &a.out)?;
            eprintln!(
                "wrote {} and {} ({} order lines) in {:.2}s",
                r.books.display(),
                r.orders.display(),
                r.rows,
                t.elapsed().as_secs_f64()
            );
        }
        Cmd::Train(mut a) => {
            let g = std::mem::take(&mut a.gang);
            let opts = GangOptions {
                rank: g.rank,
                world_size: g.world_size,
                peers: g.peers,
                jobset: g.jobset,
                port: g.port,
                local_ranks: g.local_ranks,
                secret_file: g.secret_file,
                run_id: g.run_id,
                rendezvous_timeout: g.rendezvous_timeout,
            };
            if let Some(n) = opts.local_ranks {
                // The launcher only validates and spawns: each rank builds its own plan.
                let per_rank = a.threads.unwrap_or_else(|| {
                    (std::thread::available_parallelism().map_or(1, |c| c.get())
                        / n.max(1) as usize)
                        .max(1)
                });
                opts.clone()
                    .launch(String::new(), |k| std::env::var(k).ok())?;
                let code = launch::run_local(n, &child_args(), per_rank)?;
                return Ok(code as u8);
            }
            let threads = a.threads;
            let plan = train_plan(a, threads)?;
            let t = std::time::Instant::now();
            let launch = opts.launch(plan.fingerprint(), |k| std::env::var(k).ok())?;
            let r = match launch {
                Launch::Single | Launch::Local(_) => cooc::train::run(&plan)?,
                Launch::Member(setup) => {
                    let rank = setup.hello.rank;
                    let world = setup.hello.world;
                    let comm = QuicComm::join(setup)
                        .with_context(|| format!("rank {rank} of {world}: joining the gang"))?;
                    let out = cooc::gang::train::run(&plan, &comm);
                    // Peers that are still waiting learn why this rank left.
                    let reason = match &out {
                        Ok(_) => "done".to_owned(),
                        Err(e) => format!("rank {rank} failed: {e:#}")
                            .chars()
                            .take(400)
                            .collect(),
                    };
                    comm.close(&reason);
                    let out = out.with_context(|| format!("rank {rank} of {world}"))?;
                    eprintln!(
                        "rank {rank}/{world}: sent {} B, received {} B; {}",
                        out.traffic.sent,
                        out.traffic.received,
                        if rank == 0 {
                            "wrote the model"
                        } else {
                            "rank 0 confirmed the write"
                        }
                    );
                    match out.into_report() {
                        Some(r) => r,
                        None => return Ok(0),
                    }
                }
            };
            let phases: Vec<String> = r
                .timings
                .iter()
                .map(|(p, s)| format!("{p} {s:.3}s"))
                .collect();
            eprintln!(
                "trained {} items, {} neighbours in {:.2}s ({}); wrote {} ({})",
                r.meta.n_items,
                r.meta.nnz,
                t.elapsed().as_secs_f64(),
                phases.join(", "),
                r.written,
                r.path.display()
            );
        }
        Cmd::Models { model_dir, cmd } => {
            let store = ModelStore::new(&model_dir);
            match cmd {
                ModelsCmd::List => {
                    let current = store.current()?;
                    for v in store.versions()? {
                        let live = if current.as_deref() == Some(v.as_str()) {
                            "*"
                        } else {
                            " "
                        };
                        println!("{live} {v}");
                    }
                }
                ModelsCmd::Promote { version } => {
                    store
                        .promote(&version)
                        .map_err(|e| ConfigError(e.to_string()))?;
                    println!("{version} is live");
                }
                ModelsCmd::Rollback => {
                    let v = store.rollback().map_err(|e| ConfigError(e.to_string()))?;
                    println!("rolled back: {v} is live");
                }
            }
        }
        Cmd::Inspect { model, book, json } => {
            cooc::inspect::inspect(&model, book.as_deref(), json)?
        }
        Cmd::Export {
            model,
            format: ExportFormat::Csv,
            out,
        } => cooc::inspect::export_csv(&model, out.as_ref())?,
        Cmd::Serve(a) => serve(a)?,
        Cmd::Secret => println!("{}", launch::new_secret()?),
        Cmd::Demo(a) => {
            let threads = init_pool(a.threads)?;
            cooc::demo::run(&cooc::demo::DemoPlan {
                spec: GenSpec::preset(a.size, a.seed),
                dir: a.dir,
                listen: (!a.no_serve).then_some(a.listen),
                threads,
            })?;
        }
    }
    Ok(0)
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            let code = exit_code(&e);
            eprintln!("cooc: error: {e:#}");
            ExitCode::from(code as u8)
        }
    }
}
