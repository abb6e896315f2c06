//! What a model is and how it was judged: the similarity measure, the metadata that
//! defines a model, its offline evaluation, and its provenance. Serialised as JSON inside
//! the artifact; shared by the trainer, the server and the tools.

use serde::{Deserialize, Serialize};

/// Similarity measure a model was trained with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Similarity {
    /// C_ij / sqrt(C_ii C_jj).
    Cosine,
    /// C_ij / (C_ii + C_jj - C_ij).
    Jaccard,
}

impl Similarity {
    /// The name used on the command line and in JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            Similarity::Cosine => "cosine",
            Similarity::Jaccard => "jaccard",
        }
    }
}

/// Offline evaluation on a held-out last order per customer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Evaluation {
    /// The cut-off K of every @K metric.
    pub k: u32,
    /// Customers with a held-out order and at least one training item.
    pub users: u64,
    /// Share of customers with at least one held-out item in their top K.
    pub hit_rate: f64,
    /// Mean share of a customer's held-out items found in their top K.
    pub recall: f64,
    /// Mean normalised discounted cumulative gain at K.
    pub ndcg: f64,
    /// Share of the catalogue recommended to anyone.
    pub coverage: f64,
    /// HitRate@K of the most-popular baseline.
    pub baseline_hit_rate: f64,
    /// Recall@K of the most-popular baseline.
    pub baseline_recall: f64,
    /// NDCG@K of the most-popular baseline.
    pub baseline_ndcg: f64,
    /// Catalogue coverage of the most-popular baseline.
    pub baseline_coverage: f64,
}

/// What defines a model: identical inputs and parameters give identical metadata.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelMeta {
    /// The similarity measure.
    pub similarity: Similarity,
    /// Neighbours kept per item (at most).
    pub top_k: u32,
    /// Items in the catalogue.
    pub n_items: u64,
    /// Baskets (customers, or time windows) trained on.
    pub n_baskets: u64,
    /// Input rows (order lines or basket entries) read.
    pub n_rows: u64,
    /// Distinct (basket, item) pairs after de-duplication.
    pub n_pairs: u64,
    /// Stored neighbour entries.
    pub nnz: u64,
    /// Identifies the training input, e.g. `crc32:1a2b3c4d:len=123`.
    pub dataset_fingerprint: String,
    /// Mean score of each item's first neighbour (the guide's `avg_top1_cosine`).
    pub avg_top1_score: f64,
    /// Present when trained with a hold-out.
    pub evaluation: Option<Evaluation>,
}

/// How and when a model was built; not part of the model's identity.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Provenance {
    /// RFC 3339 UTC.
    pub created_at: String,
    /// The cooc version that built it.
    pub tool_version: String,
    /// Ranks in the gang that built it.
    pub world_size: u32,
    /// Compute threads per rank.
    pub threads: u32,
}

impl ModelMeta {
    /// A small, fixed metadata value (three items, cosine, K = 2, no evaluation): the one
    /// fixture the tests, examples and benchmarks of every crate share.
    pub fn example() -> ModelMeta {
        ModelMeta {
            similarity: Similarity::Cosine,
            top_k: 2,
            n_items: 3,
            n_baskets: 4,
            n_rows: 9,
            n_pairs: 8,
            nnz: 4,
            dataset_fingerprint: "test".into(),
            avg_top1_score: 0.5,
            evaluation: None,
        }
    }
}

impl Provenance {
    /// A fixed provenance (2026-01-01, one rank, one thread): the shared test fixture.
    pub fn example() -> Provenance {
        Provenance {
            created_at: "2026-01-01T00:00:00Z".into(),
            tool_version: "test".into(),
            world_size: 1,
            threads: 1,
        }
    }
}
