//! What a model is and how it was judged: the similarity measure, the metadata that
//! defines a model, its offline evaluation, and its provenance. Serialised as JSON inside
//! the artifact; shared by the trainer, the server and the tools.

use serde::{Deserialize, Serialize};

/// Similarity measure a model was trained with. With N training baskets, c_i baskets
/// holding item i and c_ij holding both i and j, each is one formula of [`Similarity::score`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Similarity {
    /// c_ij / sqrt(c_i c_j).
    Cosine,
    /// c_ij / (c_i + c_j - c_ij).
    Jaccard,
    /// c_ij: baskets shared.
    Count,
    /// c_ij N / (c_i c_j): how many times more often than chance.
    Lift,
    /// c_ij / min(c_i, c_j): the inclusion index.
    Inclusion,
    /// Dunning's log-likelihood ratio G² of the 2x2 table of i and j, for positively
    /// associated pairs only (c_ij N > c_i c_j); 0 otherwise.
    Llr,
}

impl Similarity {
    /// Every measure, in the order the documentation lists them.
    pub const ALL: [Similarity; 6] = [
        Similarity::Cosine,
        Similarity::Jaccard,
        Similarity::Count,
        Similarity::Lift,
        Similarity::Inclusion,
        Similarity::Llr,
    ];

    /// The name used on the command line and in JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            Similarity::Cosine => "cosine",
            Similarity::Jaccard => "jaccard",
            Similarity::Count => "count",
            Similarity::Lift => "lift",
            Similarity::Inclusion => "inclusion",
            Similarity::Llr => "llr",
        }
    }

    /// Whether scores lie in 0..=1 (so a gate on the mean first score is a fraction).
    pub fn bounded(self) -> bool {
        matches!(
            self,
            Similarity::Cosine | Similarity::Jaccard | Similarity::Inclusion
        )
    }

    /// The score of items i and j sharing `c_ij` of `n` baskets, with `c_i` and `c_j`
    /// baskets each (`c_ij >= 1`, `c_i, c_j >= c_ij`, `n >= c_i + c_j - c_ij`). The one
    /// definition: the trainer, its reference tests and the documentation use it. A score
    /// of 0 or below is never a neighbour.
    #[inline]
    pub fn score(self, c_ij: f64, c_i: f64, c_j: f64, n: f64) -> f64 {
        match self {
            Similarity::Cosine => c_ij / (c_i * c_j).sqrt(),
            Similarity::Jaccard => c_ij / (c_i + c_j - c_ij),
            Similarity::Count => c_ij,
            Similarity::Lift => c_ij * n / (c_i * c_j),
            Similarity::Inclusion => c_ij / c_i.min(c_j),
            Similarity::Llr => {
                if !llr_positive(c_ij, c_i, c_j, n) {
                    return 0.0;
                }
                let (k11, k12, k21) = (c_ij, c_i - c_ij, c_j - c_ij);
                let k22 = n - c_i - c_j + c_ij;
                llr_from_parts(
                    llr_cells(xlnx(k11), xlnx(k12), xlnx(k21), xlnx(k22)),
                    llr_margin(c_i, n),
                    llr_margin(c_j, n),
                    xlnx(n),
                )
            }
        }
    }
}

// LLR in parts, so that a trainer can take each part from a table of exactly these values
// and get the same bytes as `Similarity::score`:
// G² = 2 (Σ_cells xlnx(k) - margin(c_i) - margin(c_j) + xlnx(n)), where margin(c) =
// xlnx(c) + xlnx(n - c) covers both row (or column) sums of the 2x2 table.

/// Whether i and j are bought together more often than chance (`c_ij n > c_i c_j`): LLR
/// scores only such pairs (others score 0, never neighbours).
#[inline(always)]
pub fn llr_positive(c_ij: f64, c_i: f64, c_j: f64, n: f64) -> bool {
    c_ij * n > c_i * c_j
}

/// The cells' part of G²: `xlnx(k11) + xlnx(k12) + xlnx(k21) + xlnx(k22)`, given those.
#[inline(always)]
pub fn llr_cells(x11: f64, x12: f64, x21: f64, x22: f64) -> f64 {
    x11 + x12 + x21 + x22
}

/// One item's margins' part of G²: `xlnx(c) + xlnx(n - c)`.
#[inline(always)]
pub fn llr_margin(c: f64, n: f64) -> f64 {
    xlnx(c) + xlnx(n - c)
}

/// G² from its parts.
#[inline(always)]
pub fn llr_from_parts(cells: f64, margin_i: f64, margin_j: f64, xlnx_n: f64) -> f64 {
    2.0 * (cells - margin_i - margin_j + xlnx_n)
}

fn one() -> u32 {
    1
}

fn is_one(v: &u32) -> bool {
    *v == 1
}

/// x ln x, with 0 ln 0 = 0: the terms of LLR.
#[inline]
pub fn xlnx(x: f64) -> f64 {
    if x <= 0.0 {
        0.0
    } else {
        x * x.ln()
    }
}

impl std::str::FromStr for Similarity {
    type Err = String;
    fn from_str(s: &str) -> Result<Similarity, String> {
        Similarity::ALL
            .into_iter()
            .find(|m| m.as_str() == s)
            .ok_or_else(|| {
                let names: Vec<_> = Similarity::ALL.iter().map(|m| m.as_str()).collect();
                format!("unknown similarity {s:?}: one of {}", names.join(", "))
            })
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
    /// `--min-support`: pairs shared by fewer training baskets were dropped (absent from
    /// the JSON when 1, so models trained without it keep their bytes).
    #[serde(default = "one", skip_serializing_if = "is_one")]
    pub min_support: u32,
    /// `--max-basket`: larger baskets were sampled down to this many items.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_basket: Option<u64>,
    /// `--decay-half-life`: baskets weighed by their age (absent without decay).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decay: Option<Decay>,
}

/// The time decay a model was trained with: basket b weighs 2^(-(reference - t_b) /
/// half_life), t_b its latest order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Decay {
    /// The half-life in seconds.
    pub half_life_s: u64,
    /// The reference time (RFC 3339, UTC): the latest order, or `--decay-reference`.
    pub reference: String,
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
            min_support: 1,
            max_basket: None,
            decay: None,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_measure_is_its_documented_formula() {
        let (c, a, b, n) = (2.0, 4.0, 8.0, 20.0);
        let s = |m: Similarity| m.score(c, a, b, n);
        assert_eq!(s(Similarity::Cosine), 2.0 / 32f64.sqrt());
        assert_eq!(s(Similarity::Jaccard), 2.0 / 10.0);
        assert_eq!(s(Similarity::Count), 2.0);
        assert_eq!(s(Similarity::Lift), 40.0 / 32.0);
        assert_eq!(s(Similarity::Inclusion), 0.5);
        // Mahout's LogLikelihoodTest values for (k11, k12, k21, k22) = (1,0,0,1), (10,0,0,10).
        assert!((Similarity::Llr.score(1.0, 1.0, 1.0, 2.0) - 2.772588722239781).abs() < 1e-12);
        assert!((Similarity::Llr.score(10.0, 10.0, 10.0, 20.0) - 27.725887222397812).abs() < 1e-12);
        // (5, 1729, 1500, 100000) is bought together less than chance: Mahout scores it
        // 70.9, cooc never recommends it.
        assert_eq!(Similarity::Llr.score(5.0, 1734.0, 1505.0, 103_234.0), 0.0);
    }

    #[test]
    fn names_round_trip_on_the_command_line_and_in_json() {
        for m in Similarity::ALL {
            assert_eq!(m.as_str().parse::<Similarity>().unwrap(), m);
            let json = serde_json::to_string(&m).unwrap();
            assert_eq!(json, format!("\"{}\"", m.as_str()));
            assert_eq!(serde_json::from_str::<Similarity>(&json).unwrap(), m);
        }
        assert!("pearson".parse::<Similarity>().unwrap_err().contains("llr"));
    }
}
