//! A training run, validated: what to read, how to score, where to write, on which
//! backend. Built once by [`crate::cli`] (or a caller such as the demo) and never re-checked
//! by the pipeline; every rank of a gang builds the same plan, and [`TrainPlan::fingerprint`]
//! is what their handshake compares.

use std::path::{Path, PathBuf};

use cooc_model::Similarity;

use crate::backend::Backend;
use crate::gen::GenSpec;
use crate::input::{BasketBy, KeyKind, OrdersFile};
use crate::postgres::PgSource;

/// Largest K a model may keep.
pub const MAX_TOP_K: usize = 1000;

/// Chunk size of an orders file read by a gang: fixed, so every rank plans the same chunks
/// whatever its thread count.
pub const GANG_CHUNK_BYTES: u64 = 8 << 20;

/// Where training pairs come from.
#[derive(Debug, Clone)]
pub enum Source {
    /// A Bookstore orders CSV.
    Orders {
        /// The file.
        path: PathBuf,
        /// How its rows group into baskets.
        basket_by: BasketBy,
    },
    /// One basket per line.
    Baskets {
        /// The file.
        path: PathBuf,
    },
    /// The Bookstore's PostgreSQL, read in one snapshot by every rank.
    Postgres {
        /// Server, table or query.
        db: PgSource,
        /// How its rows group into baskets.
        basket_by: BasketBy,
    },
    /// The Bookstore dataset generated in memory (each rank generates only its customers).
    Synthetic {
        /// What to generate.
        spec: GenSpec,
        /// How its rows group into baskets.
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
            Source::Postgres { db, basket_by } => format!("{}:{basket_by:?}", db.describe()),
        }
    }

    /// An upper bound on the input's size in bytes: the file's length, or for generated
    /// data its order lines at the longest a generated CSV row can be.
    pub fn input_bytes(&self) -> u64 {
        match self {
            Source::Orders { path, .. } | Source::Baskets { path } => {
                std::fs::metadata(path).map_or(0, |m| m.len())
            }
            Source::Synthetic { spec, .. } => spec.orders.saturating_mul(SYNTHETIC_ROW_BYTES),
            // Unknown before the snapshot is taken: bound it as a large table would be.
            Source::Postgres { .. } => POSTGRES_INPUT_BYTES,
        }
    }

    /// Whether rows carry a time that grouping needs (`--basket-window`).
    pub fn windowed(&self) -> bool {
        matches!(
            self,
            Source::Orders {
                basket_by: BasketBy::Window(_),
                ..
            } | Source::Synthetic {
                basket_by: BasketBy::Window(_),
                ..
            } | Source::Postgres {
                basket_by: BasketBy::Window(_),
                ..
            }
        )
    }
}

/// Where the artifact goes.
#[derive(Debug, Clone)]
pub enum Output {
    /// Publish as a new version of a model store; promote it to `CURRENT` unless told not to.
    Store {
        /// The store: a directory, or an object-store URL (`s3://bucket/prefix`).
        store: String,
        /// Make the new version live.
        promote: bool,
    },
    /// Write one artifact file.
    File(PathBuf),
    /// Write nothing: evaluate every candidate on the hold-out (`cooc tune`).
    Compare(Vec<Candidate>),
}

impl Output {
    /// The candidates of a tuning run; empty when the run trains a model.
    pub fn candidates(&self) -> &[Candidate] {
        match self {
            Output::Compare(c) => c,
            _ => &[],
        }
    }
}

/// Time decay of the co-occurrence: basket b weighs 2^(-(t_ref - t_b) / half_life), t_b
/// its latest training order, t_ref `reference` or the latest training order of the data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decay {
    /// The half-life, in microseconds (positive).
    pub half_life_us: i64,
    /// `--decay-reference`, microseconds since the epoch.
    pub reference_us: Option<i64>,
}

/// One setting `cooc tune` compares: a measure, a least support and a decay.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Candidate {
    /// The measure.
    pub similarity: Similarity,
    /// `--min-support`.
    pub min_support: u32,
    /// `--decay-half-life` (with the plan's reference), or none.
    pub decay: Option<Decay>,
}

/// Quality gates; a model below any of them is not registered (exit code 2).
#[derive(Debug, Clone, Copy, Default)]
pub struct Gates {
    /// Least HitRate@K on the hold-out.
    pub min_hit_rate: Option<f64>,
    /// Least mean first-neighbour score (the guide's `avg_top1_cosine`).
    pub min_avg_top1: Option<f64>,
}

/// A training run, validated.
#[derive(Debug, Clone)]
pub struct TrainPlan {
    /// The input.
    pub source: Source,
    /// `books.csv` with titles and authors to store.
    pub books: Option<PathBuf>,
    /// The similarity measure.
    pub similarity: Similarity,
    /// Neighbours kept per item, 1..=[`MAX_TOP_K`].
    pub k: usize,
    /// Hold out each customer's last order and evaluate at `k` (orders input only).
    pub holdout: bool,
    /// Quality gates checked before anything is written.
    pub gates: Gates,
    /// Where the model goes.
    pub output: Output,
    /// Threads of the compute pool (the caller builds the pool).
    pub threads: usize,
    /// Where counts are computed, resolved against this build and machine.
    pub backend: Backend,
    /// How item keys are read: integers or strings.
    pub keys: KeyKind,
    /// Bytes per chunk of an orders file; `None` picks them: a few chunks per thread for
    /// one process, [`GANG_CHUNK_BYTES`] for a gang (where every rank must plan alike).
    pub chunk_bytes: Option<u64>,
    /// `--min-support`: pairs shared by fewer training baskets are never neighbours.
    pub min_support: u32,
    /// `--max-basket`: baskets of more distinct items are sampled down to this many.
    pub max_basket: Option<usize>,
    /// `--sample-seed`: the seed of those samples.
    pub sample_seed: u64,
    /// `--decay-half-life`: weigh baskets by their age.
    pub decay: Option<Decay>,
}

/// Message bytes per input byte: a row as short as `1,2\n` (4 bytes) travels as at most
/// two u32 ids plus a key's share of its length-prefixed text, and a model holds at most
/// `k` 8-byte neighbours per key read, so 16 is above every phase's ratio at `k` below 2.
/// The absolute [`MESSAGE_SLACK`] covers control messages and small inputs.
const MESSAGE_PER_INPUT_BYTE: u64 = 16;
const MESSAGE_SLACK: u64 = 64 << 20;

/// `--sample-seed` when not given.
pub const DEFAULT_SAMPLE_SEED: u64 = 42;

/// What a table read from PostgreSQL is assumed to weigh as CSV when bounding messages
/// (its size is known only inside the snapshot).
const POSTGRES_INPUT_BYTES: u64 = 16 << 30;

/// The longest row `cooc gen` writes, bounding a generated dataset's size.
const SYNTHETIC_ROW_BYTES: u64 = 64;

impl TrainPlan {
    /// The most bytes one message between ranks may hold in this run: no message of the
    /// pipeline is larger than a few times the input (keys, rows and baskets are the
    /// input re-encoded; the model is at most `k` neighbours of every key), so a peer that
    /// sends more is refused before this rank holds it.
    pub fn max_message_bytes(&self) -> usize {
        let input = self.source.input_bytes();
        let bound = input
            .saturating_mul(MESSAGE_PER_INPUT_BYTE)
            .saturating_add(MESSAGE_SLACK);
        usize::try_from(bound).unwrap_or(usize::MAX)
    }

    /// The message bound once `n_items` are known, for gathering the model: at most `k`
    /// neighbours (a u32 id and an f32 score) and one u64 offset per item, or the input's
    /// bound if that is larger.
    pub fn max_model_message_bytes(&self, n_items: usize) -> usize {
        let n = n_items as u64;
        let per_item = 8 + 8 * (self.k as u64).min(n);
        let model = n.saturating_mul(per_item).saturating_add(MESSAGE_SLACK);
        usize::try_from(model)
            .unwrap_or(usize::MAX)
            .max(self.max_message_bytes())
    }

    /// The parameters and input every rank of a gang must share, for the handshake.
    pub fn fingerprint(&self) -> String {
        format!(
            "{}|{:?}|k={}|holdout={}|gates={:?}|books={}|chunk={:?}|keys={:?}|max_basket={:?}/{}|min_support={}|tune={:?}|decay={:?}",
            self.source.describe(),
            self.similarity,
            self.k,
            self.holdout,
            self.gates,
            self.books.is_some(),
            self.chunk_bytes,
            self.keys,
            self.max_basket,
            self.sample_seed,
            self.min_support,
            self.output.candidates(),
            self.decay,
        )
    }

    /// The chunk size for reading `path` with `world` ranks.
    pub fn chunk_bytes_for(&self, path: &Path, world: u32) -> u64 {
        match self.chunk_bytes {
            Some(b) => b,
            None if world == 1 => OrdersFile::default_target(path),
            None => GANG_CHUNK_BYTES,
        }
    }

    /// Whether rows must keep their `created_at` (hold-out or time windows).
    pub fn needs_time(&self) -> bool {
        self.holdout || self.source.windowed() || self.decay.is_some()
    }
}
