//! The `cooc` command line: clap's types, the plan builder, each command's run and
//! printing, and the exit-code classifier. The binary (`src/main.rs`) parses, adds the
//! commands that serve (`serve`, `demo`: the only parts that reach the server crate) and
//! maps errors to exit codes with [`exit_code`]; everything else happens here.
//!
//! Exit codes: 0 ok, 1 internal failure, 2 bad input, configuration or failed quality
//! gate, 75 retriable (lost peer); see [`crate::error::Exit`].

mod exit;
mod k8s;
mod train;
mod tune;

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Parser, Subcommand, ValueEnum};
use cooc_model::ModelStore;

use crate::backend::{BackendRequest, Comm};
use crate::error::ConfigError;
use crate::gen::{GenSpec, Size};
use crate::input::KeyKind;
use crate::launch::GangOptions;
use crate::plan::DEFAULT_SAMPLE_SEED;

pub use exit::exit_code;
pub use train::train_plan;

/// Item co-occurrence recommenders: generate data, train top-K neighbours, serve them.
#[derive(Parser, Debug)]
#[command(name = "cooc", version, about, propagate_version = true)]
pub struct Cli {
    /// The command.
    #[command(subcommand)]
    pub cmd: Cmd,
}

/// The commands of `cooc` that need no server (the binary adds `serve` and `demo`).
#[derive(Subcommand, Debug)]
pub enum Cmd {
    /// Generate the synthetic Bookstore dataset (books.csv, orders.csv).
    Gen(GenArgs),
    /// Train a top-K model and register it in a model store.
    Train(TrainArgs),
    /// Compare similarity measures and supports on a hold-out, from one count; print them
    /// best first with the `cooc train` command of the winner. Writes no model.
    Tune(TuneArgs),
    /// List, promote or roll back model versions.
    Models {
        /// Model store: a directory, or s3://bucket/prefix (gs://, az:// alike).
        #[arg(long, env = "MODEL_DIR", default_value = "model", global = true)]
        model_dir: String,
        /// What to do.
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
    /// Recommend books for a basket of books, as the server's `:recommend` answers:
    /// summed similarity to the seeds, excluded books never returned, the rest of k filled
    /// with the most-bought books.
    Recommend {
        /// A model file, or a model store directory (its CURRENT version).
        model: PathBuf,
        /// The seed books (comma-separated, or the flag repeated); none gives the
        /// most-bought books.
        #[arg(long, value_delimiter = ',', num_args = 1..)]
        books: Vec<String>,
        /// A weight per seed book, in the same order (default 1 each).
        #[arg(long, value_delimiter = ',', num_args = 1..)]
        weights: Vec<f32>,
        /// Books never to recommend (already owned, out of stock).
        #[arg(long, value_delimiter = ',', num_args = 1..)]
        exclude: Vec<String>,
        /// How many books to recommend (1..=100).
        #[arg(long, default_value_t = 10)]
        k: u32,
        /// Print the server's JSON answer.
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
    /// Print a new shared secret for a gang's ranks (32 random bytes, hex).
    Secret,
    /// Submit a training gang to Kubernetes (a JobSet under a Kueue LocalQueue) and follow
    /// it until it ends.
    Submit(SubmitArgs),
    /// Show the training runs in a namespace, or one run (and follow it with --watch).
    Status(StatusArgs),
}

/// `cooc submit`.
#[derive(Args, Debug)]
#[command(group(clap::ArgGroup::new("naming").args(["name", "generate_name"])))]
pub struct SubmitArgs {
    /// Ranks in the gang (pods admitted together).
    #[arg(long, default_value_t = 2)]
    pub world_size: u32,
    /// The Kueue LocalQueue to submit to.
    #[arg(long, default_value = "bookstore-ml-lq")]
    pub queue: String,
    /// The rank image [default: cooc:VERSION, or cooc-gpu:VERSION with --gpu].
    #[arg(long)]
    pub image: Option<String>,
    /// Run on the GPU node pool: one GPU per rank, CUDA counting, NCCL between ranks (the
    /// patches of jobset/gpu/).
    #[arg(long)]
    pub gpu: bool,
    /// The namespace of the queue and the run.
    #[arg(short, long, default_value = "bookstore-ml", env = "COOC_NAMESPACE")]
    pub namespace: String,
    /// Train on the synthetic Bookstore data of this size, generated by each rank.
    #[arg(long, value_enum, default_value = "m", conflicts_with_all = ["orders", "postgres"])]
    pub generate: Size,
    /// Seed of --generate.
    #[arg(long, conflicts_with = "orders")]
    pub seed: Option<u64>,
    /// Orders file as the ranks see it (relative paths are on --input-claim).
    #[arg(long)]
    pub orders: Option<String>,
    /// books.csv as the ranks see it.
    #[arg(long, requires = "orders")]
    pub books: Option<String>,
    /// A PersistentVolumeClaim holding the input, mounted read-only at /input.
    #[arg(long, requires = "orders")]
    pub input_claim: Option<String>,
    /// Train from the Bookstore's PostgreSQL (a libpq URI or key=value string, without a
    /// password): every rank reads its share of one snapshot; the password comes from the
    /// Secret --postgres-secret, mounted into each rank.
    #[arg(long, value_name = "URL", conflicts_with_all = ["orders", "seed"])]
    pub postgres: Option<String>,
    /// The Secret holding the database password under the key `password`.
    #[arg(long, default_value = "bookstore-db", requires = "postgres")]
    pub postgres_secret: String,
    /// The orders table the ranks read [default: orders].
    #[arg(long, requires = "postgres")]
    pub orders_table: Option<String>,
    /// The books table the ranks take titles and authors from.
    #[arg(long, requires = "postgres")]
    pub books_table: Option<String>,
    /// Prefix of the generated name (the apiserver appends 5 characters).
    #[arg(long, default_value = "recommender-train-")]
    pub generate_name: String,
    /// A fixed name instead, applied with server-side apply (re-submitting is a no-op).
    #[arg(long)]
    pub name: Option<String>,
    /// A Kueue WorkloadPriorityClass for the run.
    #[arg(long)]
    pub priority_class: Option<String>,
    /// Publish to object storage instead of the model volume: s3://bucket/prefix (gs://,
    /// az://). No rank mounts the volume (as in jobset/s3/); credentials come from the
    /// pods' identity or the optional Secret cooc-model-store.
    #[arg(long, value_name = "URL")]
    pub model_dir: Option<String>,
    /// Print the JobSet as YAML and contact no cluster.
    #[arg(long)]
    pub dry_run: bool,
    /// Exit once the JobSet is created; print its name.
    #[arg(long)]
    pub no_wait: bool,
    /// Give up following after this long (exit 75; the run goes on).
    #[arg(long, value_parser = humantime::parse_duration)]
    pub timeout: Option<Duration>,
    /// How often to look at the run.
    #[arg(long, default_value = "2s", value_parser = humantime::parse_duration)]
    pub poll: Duration,
    /// Arguments for `cooc train` after the input ones, in place of the default
    /// `--holdout last --min-avg-top1-cosine 0.05` (e.g. `-- --top-k 20 --holdout last`).
    #[arg(last = true)]
    pub train_args: Vec<String>,
}

/// `cooc status`.
#[derive(Args, Debug)]
pub struct StatusArgs {
    /// A run's JobSet name; without it, every cooc training run in the namespace.
    pub name: Option<String>,
    /// The namespace of the runs.
    #[arg(short, long, default_value = "bookstore-ml", env = "COOC_NAMESPACE")]
    pub namespace: String,
    /// Follow the run until it ends; the exit code is its outcome.
    #[arg(long, short, requires = "name")]
    pub watch: bool,
    /// Give up following after this long (exit 75).
    #[arg(long, value_parser = humantime::parse_duration, requires = "watch")]
    pub timeout: Option<Duration>,
    /// How often to look at the run.
    #[arg(long, default_value = "2s", value_parser = humantime::parse_duration)]
    pub poll: Duration,
}

/// `cooc gen`.
#[derive(Args, Debug)]
pub struct GenArgs {
    /// Preset size: s (200 books / 800 customers / 5k lines), m (10k / 100k / 1M), l (100k / 2M / 20M).
    #[arg(long, value_enum, default_value = "s")]
    pub size: Size,
    /// Seed of the generator: the same seed and size give the same bytes.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Output directory (books.csv, orders.csv).
    #[arg(long, required_unless_present = "postgres")]
    pub out: Option<PathBuf>,
    /// Load into this PostgreSQL database instead (a libpq URI or key=value string, the
    /// password from PGPASSWORD, a PGPASSFILE or --postgres-password-file): creates the
    /// Bookstore's books and orders (with customer_id) tables, which must be empty.
    #[arg(
        long,
        value_name = "URL",
        env = "COOC_POSTGRES",
        conflicts_with = "out"
    )]
    pub postgres: Option<String>,
    /// A file whose first line is the database password.
    #[arg(
        long,
        value_name = "FILE",
        env = "COOC_POSTGRES_PASSWORD_FILE",
        requires = "postgres"
    )]
    pub postgres_password_file: Option<PathBuf>,
    /// Override the number of books.
    #[arg(long)]
    pub books: Option<u64>,
    /// Override the number of customers.
    #[arg(long)]
    pub customers: Option<u64>,
    /// Override the number of order lines.
    #[arg(long)]
    pub orders: Option<u64>,
    /// Worker threads (default: all cores).
    #[arg(long, env = "COOC_THREADS")]
    pub threads: Option<usize>,
}

/// `--format`.
#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum Format {
    /// Bookstore orders CSV with a header (book_id, customer_id, created_at, ...).
    Orders,
    /// One basket per line, items separated by commas (or whitespace).
    Baskets,
}

/// `--holdout`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Holdout {
    /// Train on everything; no evaluation.
    None,
    /// Orders: hold out each customer's last order (by created_at) and evaluate on it.
    Last,
    /// Basket files (no time): hold out one item of each basket of two or more, picked by
    /// a hash of its line and position, and evaluate on it.
    Item,
}

/// `cooc export --format`.
#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum ExportFormat {
    /// `book_id,rank,neighbour_id,score`.
    Csv,
}

/// What to read and how it becomes baskets: the same for `cooc train` and `cooc tune`.
#[derive(Args, Debug, Clone)]
#[command(group(clap::ArgGroup::new("input").required(true).args(["orders", "generate", "postgres"])))]
pub struct InputArgs {
    /// Input file.
    #[arg(long, env = "COOC_ORDERS")]
    pub orders: Option<PathBuf>,
    /// Train on the Bookstore dataset of this size, generated in memory (each rank of a
    /// gang generates only its own customers; no input volume needed).
    #[arg(long, value_enum, env = "COOC_GENERATE", conflicts_with_all = ["orders", "format"])]
    pub generate: Option<Size>,
    /// Seed of --generate.
    #[arg(long, default_value_t = 42, env = "COOC_SEED", requires = "generate")]
    pub seed: u64,
    /// Read the orders from PostgreSQL, in one snapshot for the whole gang: a libpq URI
    /// (postgresql://user@host:5432/bookstore?sslmode=require) or key=value string. No
    /// password here: PGPASSWORD, a PGPASSFILE or --postgres-password-file; PGHOST, PGPORT,
    /// PGUSER, PGDATABASE and PGSSLMODE fill what it leaves out.
    #[arg(long, env = "COOC_POSTGRES", value_name = "URL", conflicts_with_all = ["orders", "generate", "format"])]
    pub postgres: Option<String>,
    /// A file whose first line is the database password (a mounted Secret).
    #[arg(
        long,
        env = "COOC_POSTGRES_PASSWORD_FILE",
        value_name = "FILE",
        requires = "postgres"
    )]
    pub postgres_password_file: Option<PathBuf>,
    /// The orders table (book_id, customer_id, created_at; schema-qualified if needed).
    #[arg(long, env = "COOC_ORDERS_TABLE", default_value = "orders")]
    pub orders_table: String,
    /// Read the orders with this query instead (it must return book_id and customer_id
    /// and/or created_at columns); every rank runs it and keeps its share of baskets.
    #[arg(
        long,
        env = "COOC_ORDERS_QUERY",
        value_name = "SQL",
        requires = "postgres"
    )]
    pub orders_query: Option<String>,
    /// The books table (id, title, author) to store titles and authors from.
    #[arg(long, env = "COOC_BOOKS_TABLE", requires = "postgres")]
    pub books_table: Option<String>,
    /// Input format: orders (CSV with a header) or baskets (one basket per line).
    #[arg(long, value_enum, default_value = "orders", env = "COOC_FORMAT")]
    pub format: Format,
    /// Group orders into baskets by created_at windows (e.g. 30m, 1h, 1day) instead of customer_id.
    #[arg(long, env = "COOC_BASKET_WINDOW", value_parser = humantime::parse_duration)]
    pub basket_window: Option<Duration>,
    /// Bytes per chunk of an orders file, the unit of parallel parsing [default: a few
    /// chunks per thread alone, 8 MiB in a gang; every rank must use the same value].
    #[arg(long, env = "COOC_CHUNK_BYTES", value_parser = clap::value_parser!(u64).range(1..))]
    pub chunk_bytes: Option<u64>,
    /// How book ids are read: auto (integers when every id is a canonical integer, digits
    /// with no sign or leading zero; else strings), int, or string (ISBNs, SKUs).
    #[arg(long, value_enum, default_value = "auto", env = "COOC_KEYS")]
    pub keys: KeyKind,
    /// Reduce every basket of more than N distinct books to N of them, a seeded uniform
    /// sample (the same on any gang): bounds the cost of a few huge baskets (a company
    /// account, a bot), which grows with the square of their size [default: no cap; a
    /// warning names how many baskets exceed 1000 books].
    #[arg(long, env = "COOC_MAX_BASKET", value_name = "N", value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(2..))]
    pub max_basket: Option<usize>,
    /// Seed of --max-basket's samples.
    #[arg(long, env = "COOC_SAMPLE_SEED", default_value_t = DEFAULT_SAMPLE_SEED, requires = "max_basket")]
    pub sample_seed: u64,
}

/// Where the work runs: alone, as local ranks, or as a member of a gang; on which backend.
#[derive(Args, Debug, Clone)]
pub struct RunArgs {
    /// How this process takes part in a gang.
    #[command(flatten)]
    pub gang: GangOptions,
    /// Compute backend: auto (CUDA when built with it and a GPU is present, else CPU), cpu, cuda.
    #[arg(long, value_enum, default_value = "auto", env = "COOC_BACKEND")]
    pub backend: BackendRequest,
    /// How ranks combine partial results: quic, or nccl (GPUs).
    #[arg(long, value_enum, default_value = "quic", env = "COOC_COMM")]
    pub comm: Comm,
    /// Compute threads (default: all cores).
    #[arg(long, env = "COOC_THREADS")]
    pub threads: Option<usize>,
}

/// `cooc train`.
#[derive(Args, Debug)]
pub struct TrainArgs {
    /// The input.
    #[command(flatten)]
    pub input: InputArgs,
    /// Where it runs.
    #[command(flatten)]
    pub run: RunArgs,
    /// books.csv (id,title,author,...) to store titles and authors in the model.
    #[arg(long, env = "COOC_BOOKS")]
    pub books: Option<PathBuf>,
    /// Similarity measure: cosine, jaccard, count, lift, inclusion or llr (README: "Choosing
    /// a measure"; `cooc tune` compares them on a hold-out).
    #[arg(long, value_enum, default_value = "cosine", env = "COOC_SIMILARITY")]
    pub similarity: SimilarityArg,
    /// Neighbours kept per book (1..=1000).
    #[arg(
        short,
        long = "k",
        visible_alias = "top-k",
        default_value_t = 10,
        env = "COOC_K"
    )]
    pub k: usize,
    /// Pairs of books shared by fewer than N training baskets are never neighbours (rare
    /// pairs make lift and LLR noisy).
    #[arg(long, env = "COOC_MIN_SUPPORT", value_name = "N", default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..))]
    pub min_support: u32,
    /// Weigh each basket by its age, 2^(-age / half-life) (e.g. 30d): its age is from its
    /// latest order to the latest order of the training data (or --decay-reference).
    /// Needs created_at.
    #[arg(long, env = "COOC_DECAY_HALF_LIFE", value_name = "DURATION", value_parser = humantime::parse_duration)]
    pub decay_half_life: Option<Duration>,
    /// The time ages are counted to under --decay-half-life, RFC 3339 (e.g.
    /// 2026-11-30T00:00:00Z) [default: the latest order of the training data].
    #[arg(long, env = "COOC_DECAY_REFERENCE", value_name = "TIME", requires = "decay_half_life", value_parser = train::parse_reference)]
    pub decay_reference: Option<i64>,
    /// Hold-out evaluation: none; last (orders: each customer's last order, by
    /// created_at); or item (basket files: one item of each basket of two or more).
    #[arg(long, value_enum, default_value = "none", env = "COOC_HOLDOUT")]
    pub holdout: Holdout,
    /// Fail (exit 2, register nothing) below this HitRate@K, a fraction in 0..=1; needs
    /// a hold-out.
    #[arg(long, env = "COOC_MIN_HIT_RATE")]
    pub min_hit_rate: Option<f64>,
    /// Fail (exit 2, register nothing) below this mean first-neighbour score, in 0..=1.
    #[arg(long, env = "COOC_MIN_AVG_TOP1_COSINE")]
    min_avg_top1_cosine: Option<f64>,
    /// Model store to publish into: a directory (relative to the working directory; pods
    /// pass /workspace/model, where cooc-serve looks by default), or the same layout on
    /// object storage, s3://bucket/prefix (gs://, az:// alike; credentials from the
    /// standard environment: AWS_*, GOOGLE_*, AZURE_*).
    #[arg(long, env = "MODEL_DIR", default_value = "model")]
    pub model_dir: String,
    /// Publish without making the new version live.
    #[arg(long, env = "COOC_NO_PROMOTE")]
    pub no_promote: bool,
    /// Write a single artifact file here instead of publishing to the store.
    #[arg(long, env = "COOC_OUT", conflicts_with = "no_promote")]
    pub out: Option<PathBuf>,
}

/// `cooc tune`.
#[derive(Args, Debug)]
pub struct TuneArgs {
    /// The input.
    #[command(flatten)]
    pub input: InputArgs,
    /// Where it runs.
    #[command(flatten)]
    pub run: RunArgs,
    /// The measures to compare, comma separated.
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "cosine,jaccard,lift,inclusion,llr",
        env = "COOC_MEASURES"
    )]
    pub measures: Vec<SimilarityArg>,
    /// The least supports to compare, comma separated (each at least 1).
    #[arg(long, value_delimiter = ',', value_name = "N,...", default_value = "1", env = "COOC_MIN_SUPPORT", value_parser = clap::value_parser!(u32).range(1..))]
    pub min_support: Vec<u32>,
    /// Neighbours kept per book, and the cut-off K of the hold-out metrics (1..=1000).
    #[arg(
        short,
        long = "k",
        visible_alias = "top-k",
        default_value_t = 10,
        env = "COOC_K"
    )]
    pub k: usize,
    /// The half-lives to compare, comma separated: none (no decay) or a duration (30d).
    #[arg(long, value_delimiter = ',', value_name = "none|DURATION,...", default_value = "none", env = "COOC_DECAY_HALF_LIFE", value_parser = parse_half_life)]
    pub decay_half_life: Vec<HalfLife>,
    /// The time ages are counted to under a half-life, RFC 3339 [default: the latest order
    /// of the training data].
    #[arg(long, env = "COOC_DECAY_REFERENCE", value_name = "TIME", value_parser = train::parse_reference)]
    pub decay_reference: Option<i64>,
    /// Print one JSON object per line and setting, best first, instead of the table.
    #[arg(long, env = "COOC_JSON")]
    pub json: bool,
}

/// One value of `cooc tune --decay-half-life`: none, or a half-life.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HalfLife(pub Option<Duration>);

fn parse_half_life(s: &str) -> Result<HalfLife, String> {
    if s == "none" {
        return Ok(HalfLife(None));
    }
    humantime::parse_duration(s)
        .map(|d| HalfLife(Some(d)))
        .map_err(|e| format!("{s:?}: {e} (a duration such as 30d, or none)"))
}

/// `--similarity` (the formulas: `cooc_model::Similarity::score`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum SimilarityArg {
    /// c_ij / sqrt(c_i c_j).
    Cosine,
    /// c_ij / (c_i + c_j - c_ij).
    Jaccard,
    /// c_ij, the baskets a pair shares.
    Count,
    /// c_ij N / (c_i c_j), N training baskets: how many times more often than chance.
    Lift,
    /// c_ij / min(c_i, c_j), the inclusion index.
    Inclusion,
    /// Dunning's log-likelihood ratio G², for pairs bought together more often than chance.
    Llr,
}

/// `cooc models`.
#[derive(Subcommand, Debug)]
pub enum ModelsCmd {
    /// List versions, marking the live one (`*`) and a canary (`~`, with its share).
    List,
    /// Make a version live (promoting the canary's version ends the canary).
    Promote {
        /// The version's name, as `cooc models list` prints it.
        version: String,
    },
    /// Make the previous version live.
    Rollback,
    /// Serve a version to a share of users while the live one serves the rest (a user
    /// always sees the same version); `--off` ends it, `promote` makes it live for all.
    Canary {
        /// The version to try.
        #[arg(required_unless_present = "off", conflicts_with = "off")]
        version: Option<String>,
        /// Its share of users, 1..=100 percent.
        #[arg(long, required_unless_present = "off", conflicts_with = "off")]
        percent: Option<u8>,
        /// End the canary: everyone gets the live version.
        #[arg(long)]
        off: bool,
    },
}

/// `cooc demo`.
#[derive(Args, Debug)]
pub struct DemoArgs {
    /// Preset size of the generated data.
    #[arg(long, value_enum, default_value = "m")]
    pub size: Size,
    /// Seed of the generator.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Working directory for data and models.
    #[arg(long, default_value = "cooc-demo")]
    pub dir: PathBuf,
    /// Address to serve on.
    #[arg(long, default_value = "0.0.0.0:8080")]
    pub listen: String,
    /// Stop after training instead of serving.
    #[arg(long)]
    pub no_serve: bool,
    /// Compute threads (default: all cores).
    #[arg(long, env = "COOC_THREADS")]
    pub threads: Option<usize>,
}

/// Builds the global compute pool with `threads` (default: all cores); the count.
pub fn init_pool(threads: Option<usize>) -> anyhow::Result<usize> {
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

/// Runs a command; the exit code on success (a local gang passes its ranks' code on).
pub fn run(cli: Cli) -> anyhow::Result<u8> {
    match cli.cmd {
        Cmd::Gen(a) => {
            init_pool(a.threads)?;
            let mut spec = GenSpec::preset(a.size, a.seed);
            spec.books = a.books.unwrap_or(spec.books);
            spec.customers = a.customers.unwrap_or(spec.customers);
            spec.orders = a.orders.unwrap_or(spec.orders);
            let t = std::time::Instant::now();
            if let Some(conn) = a.postgres {
                let db = crate::postgres::PgSource {
                    conn,
                    password_file: a.postgres_password_file,
                    table: "orders".into(),
                    query: None,
                    books_table: None,
                };
                let rows = crate::postgres::load_bookstore(&spec, &db)?;
                eprintln!(
                    "loaded {} books and {rows} order lines into {} in {:.2}s",
                    spec.books,
                    db.describe()
                        .trim_start_matches("postgres:")
                        .trim_end_matches(":orders"),
                    t.elapsed().as_secs_f64()
                );
                return Ok(0);
            }
            let out = a.out.expect("clap requires --out or --postgres");
            let r = crate::gen::generate(&spec, &out)?;
            eprintln!(
                "wrote {} and {} ({} order lines) in {:.2}s",
                r.books.display(),
                r.orders.display(),
                r.rows,
                t.elapsed().as_secs_f64()
            );
        }
        Cmd::Train(a) => return train::train(a),
        Cmd::Tune(a) => return tune::tune(a),
        Cmd::Models { model_dir, cmd } => {
            let store = ModelStore::open(&model_dir)
                .map_err(|e| ConfigError(format!("--model-dir: {e}")))?;
            if store.local_dir().is_some_and(|d| !d.is_dir()) {
                return Err(ConfigError(format!(
                    "--model-dir {model_dir}: no such model store (a directory that `cooc train` publishes into)"
                ))
                .into());
            }
            match cmd {
                ModelsCmd::List => {
                    let current = store.current()?;
                    // A CANARY that does not parse is no canary (the server serves none
                    // either): say so, and still list the versions.
                    let canary = store.canary().unwrap_or_else(|e| {
                        eprintln!("cooc: warning: {e}");
                        None
                    });
                    for v in store.versions()? {
                        match &canary {
                            _ if current.as_deref() == Some(v.as_str()) => println!("* {v}"),
                            Some(c) if c.version == v => {
                                println!("~ {v}  (canary: {}% of users)", c.percent)
                            }
                            _ => println!("  {v}"),
                        }
                    }
                }
                ModelsCmd::Canary {
                    off: true,
                    version: None,
                    percent: None,
                } => match store.end_canary()? {
                    Some(c) => {
                        println!("canary {} ended: everyone gets the live version", c.version)
                    }
                    None => println!("no canary to end"),
                },
                ModelsCmd::Canary {
                    version: Some(version),
                    percent: Some(percent),
                    off: false,
                } => {
                    store
                        .set_canary(&version, percent)
                        .map_err(|e| ConfigError(e.to_string()))?;
                    println!("{version} serves {percent}% of users (canary)");
                }
                ModelsCmd::Canary { .. } => {
                    unreachable!("clap requires a version and --percent, or --off")
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
            crate::inspect::inspect(&model, book.as_deref(), json)?
        }
        Cmd::Recommend {
            model,
            books,
            weights,
            exclude,
            k,
            json,
        } => crate::inspect::recommend(
            &model,
            &crate::inspect::BasketArgs {
                books: &books,
                weights: &weights,
                exclude: &exclude,
                k,
            },
            json,
        )?,
        Cmd::Export {
            model,
            format: ExportFormat::Csv,
            out,
        } => crate::inspect::export_csv(&model, out.as_ref())?,
        Cmd::Secret => println!("{}", crate::launch::new_secret()?),
        Cmd::Submit(a) => return k8s::submit(a),
        Cmd::Status(a) => return k8s::status(a),
    }
    Ok(0)
}

/// `cooc demo` up to serving: generates, trains, registers and prints; the model store
/// and an example book for the binary to serve.
pub fn run_demo(a: DemoArgs) -> anyhow::Result<crate::demo::DemoOutcome> {
    let threads = init_pool(a.threads)?;
    crate::demo::run(&crate::demo::DemoPlan {
        spec: GenSpec::preset(a.size, a.seed),
        dir: a.dir,
        threads,
    })
}

/// The reader of our output went away (`cooc export m | head`): stop quietly, like other
/// command-line tools.
pub fn broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}
