//! The compute kernel: co-occurrence counts, similarity and top-K neighbours per item.
//!
//! For item `i`, `C_i· = Σ_{b ∋ i} X_b·` is accumulated into a dense per-thread counter
//! (one pass over the baskets that contain `i`), scored in f64, and reduced to the best K.
//! Rows are independent, so any split of rows over threads or ranks gives the same bytes.
//! The kernel never sees files, keys or the transport.

use std::cell::RefCell;
use std::cmp::Ordering;
use std::ops::Range;

use cooc_model::meta::{llr_cells, llr_from_parts, llr_margin, llr_positive, xlnx};
use cooc_model::Similarity;
use rayon::prelude::*;

use crate::csr::Csr;

/// Top-K neighbour lists for a contiguous range of items, as CSR.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct TopK {
    /// Row `r` (item `rows.start + r`) is `indices[indptr[r]..indptr[r+1]]`.
    pub indptr: Vec<u64>,
    /// Neighbour ids, row by row.
    pub indices: Vec<u32>,
    /// Neighbour scores, aligned with `indices`.
    pub scores: Vec<f32>,
}

impl TopK {
    /// Rows (items) held.
    pub fn n_rows(&self) -> usize {
        self.indptr.len().saturating_sub(1)
    }

    /// Row `r`: neighbour ids and scores, best first.
    pub fn row(&self, r: usize) -> (&[u32], &[f32]) {
        let (a, b) = (self.indptr[r] as usize, self.indptr[r + 1] as usize);
        (&self.indices[a..b], &self.scores[a..b])
    }

    /// One row per list of `(score, item)`, best first; scores stored as f32.
    pub fn from_lists(lists: Vec<Vec<(f64, u32)>>) -> TopK {
        let mut out = TopK {
            indptr: Vec::with_capacity(lists.len() + 1),
            indices: Vec::new(),
            scores: Vec::new(),
        };
        out.indptr.push(0);
        for l in lists {
            for (s, j) in l {
                out.indices.push(j);
                out.scores.push(s as f32);
            }
            out.indptr.push(out.indices.len() as u64);
        }
        out
    }

    /// Appends another block of rows after this one.
    pub fn append(&mut self, other: TopK) {
        if self.indptr.is_empty() {
            self.indptr.push(0);
        }
        let base = *self.indptr.last().expect("non-empty");
        self.indptr
            .extend(other.indptr.iter().skip(1).map(|p| p + base));
        self.indices.extend(other.indices);
        self.scores.extend(other.scores);
    }

    /// Mean first-neighbour score over all items, counting 0 for items without neighbours
    /// (the reference guide's `avg_top1_cosine`).
    pub fn avg_top1(&self) -> f64 {
        let n = self.n_rows();
        if n == 0 {
            return 0.0;
        }
        let sum: f64 = (0..n)
            .map(|r| self.row(r).1.first().map_or(0.0, |&s| s as f64))
            .sum();
        sum / n as f64
    }
}

/// How a row's candidates are scored and which are kept: the measure, the training
/// baskets N it may need (lift, LLR), and the least baskets a pair must share
/// (`--min-support`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Scoring {
    /// The measure.
    pub sim: Similarity,
    /// Training baskets with at least one item, over the whole gang.
    pub n_baskets: u64,
    /// Pairs shared by fewer baskets are never neighbours (1: every pair).
    pub min_support: u32,
}

impl Scoring {
    /// `sim` over `n_baskets`, every pair eligible.
    pub fn new(sim: Similarity, n_baskets: u64) -> Scoring {
        Scoring {
            sim,
            n_baskets,
            min_support: 1,
        }
    }

    /// The score of items with `c_ij` shared baskets and `c_ii`, `c_jj` baskets each.
    #[inline]
    pub fn score(&self, c_ij: u32, c_ii: u32, c_jj: u32) -> f64 {
        self.sim
            .score(c_ij as f64, c_ii as f64, c_jj as f64, self.n_baskets as f64)
    }
}

/// A [`Scoring`] made ready for one pass of the kernel. For LLR it holds the parts of G²
/// that take a logarithm ([`cooc_model::meta`]'s `llr_*`): `x ln x` at every count up to
/// the largest degree, at `N - m` for `m` up to twice that, and each degree's margin term.
/// A candidate then costs five table reads and no logarithm, and since the tables hold
/// exactly the values [`Similarity::score`] computes, in the same sums, the scores are the
/// same bytes.
pub struct Scorer {
    /// The scoring.
    pub scoring: Scoring,
    /// LLR's tables, when every degree fits them.
    llr: Option<LlrTables>,
}

struct LlrTables {
    /// `x ln x` for `x` in `0..=max degree`.
    small: Vec<f64>,
    /// `(N - m) ln (N - m)` for `m` in `0..=min(2 max degree, N)`.
    big: Vec<f64>,
    /// `llr_margin(c, N)` for `c` in `0..=max degree`.
    margin: Vec<f64>,
    /// `N ln N`.
    xlnx_n: f64,
}

/// The largest degree LLR's tables cover (2^21 entries: 16 MiB per table); above it, each
/// candidate's terms are computed.
const LLR_TABLE_MAX: usize = 1 << 21;

impl Scorer {
    /// `scoring` over items of these catalogue-wide degrees.
    pub fn new(scoring: Scoring, degree: &[u32]) -> Scorer {
        let max = degree.iter().copied().max().unwrap_or(0) as usize;
        let llr = (scoring.sim == Similarity::Llr && max <= LLR_TABLE_MAX).then(|| {
            let n = scoring.n_baskets;
            let nf = n as f64;
            LlrTables {
                small: (0..=max).map(|x| xlnx(x as f64)).collect(),
                big: (0..=(2 * max as u64).min(n))
                    .map(|m| xlnx((n - m) as f64))
                    .collect(),
                margin: (0..=max).map(|c| llr_margin(c as f64, nf)).collect(),
                xlnx_n: xlnx(nf),
            }
        });
        Scorer { scoring, llr }
    }

    /// The score of items with `c_ij` shared baskets and `c_ii`, `c_jj` baskets each.
    #[inline]
    pub fn score(&self, c_ij: u32, c_ii: u32, c_jj: u32) -> f64 {
        match &self.llr {
            Some(t) => {
                let n = self.scoring.n_baskets as f64;
                if !llr_positive(c_ij as f64, c_ii as f64, c_jj as f64, n) {
                    return 0.0;
                }
                let (c, a, b) = (c_ij as usize, c_ii as usize, c_jj as usize);
                llr_from_parts(
                    llr_cells(t.small[c], t.small[a - c], t.small[b - c], t.big[a + b - c]),
                    t.margin[a],
                    t.margin[b],
                    t.xlnx_n,
                )
            }
            None => self.scoring.score(c_ij, c_ii, c_jj),
        }
    }
}

/// Best first: score descending, then item id (= key order) ascending.
#[inline]
fn better(a: &(f64, u32), b: &(f64, u32)) -> Ordering {
    b.0.total_cmp(&a.0).then(a.1.cmp(&b.1))
}

/// Per-thread scratch of a decayed index: weighted sums per item, and a row's candidates
/// `(item, shared baskets, weighted sum in baskets)`.
///
/// A weighted sum is kept as `carry[j] * 2^31 + wsum[j]`: the sums of a popular row need
/// more than 32 bits, but a carry comes once per 2^31 added (128 baskets of full weight),
/// so the array updated for every shared basket is half the size of 64-bit sums, and the
/// carries are a rarely taken branch. On a carry the low part keeps 2^31 of the overflow
/// (see [`add_weight`]), so a sum that is not 0 never shows a low part of 0: an item's
/// first touch is still told by a low part of 0.
struct WeightedScratch {
    wsum: Vec<u32>,
    carry: Vec<u32>,
    cands: Vec<(u32, u32, f64)>,
}

/// A row's shared-basket counter, `u16` or `u32`. A pair's count is at most the row item's
/// degree, so where that fits in 16 bits every counter of the row does: half the scratch to
/// keep in the closest cache (the rows of all but the few most popular items), and the
/// same integers.
trait RowCount: Copy + Default + PartialEq + std::ops::AddAssign + From<u8> + Into<u32> {}

impl<T: Copy + Default + PartialEq + std::ops::AddAssign + From<u8> + Into<u32>> RowCount for T {}

/// Per-thread scratch: dense counters and the list of touched items.
struct Scratch {
    counts: Vec<u32>,
    /// The same in 16 bits, for the rows whose degree fits (see [`RowCount`]).
    counts16: Vec<u16>,
    touched: Vec<u32>,
    heap: std::collections::BinaryHeap<Worst>,
}

/// Everything the kernel reads, laid out for it.
pub struct CoocIndex {
    /// Every basket as `[len, item, item, ...]`, back to back: visiting a basket is one
    /// random access (a separate offsets array would make it two).
    packed: Vec<u32>,
    /// Per item, the positions in `packed` of the baskets that hold it, ascending.
    item_baskets: Csr,
    /// Baskets per item: the diagonal `C_jj`.
    degree: Vec<u32>,
    /// Under time decay: each basket's weight sits after its length in `packed`, and
    /// scores use the weighted sums.
    weighted: Option<Weighted>,
}

/// Weight of a basket that counts fully, in the fixed point of decayed sums: weights are
/// integers in `0..=WEIGHT_ONE`, sums are exact integer additions (the same on any gang
/// and thread count), and dividing by this power of two is exact in f64.
pub const WEIGHT_ONE: u32 = 1 << 24;

/// A weighted sum in units of one basket. Sums stay below 2^56 (2^32 baskets of weight at
/// most 2^24), so they convert as signed integers: one instruction, where an unsigned
/// 64-bit conversion takes several on x86-64, and the same value.
#[inline(always)]
fn in_baskets(sum: u64) -> f64 {
    debug_assert!(sum < 1 << 63);
    sum as i64 as f64 / WEIGHT_ONE as f64
}

/// The weighted diagonal and basket count of a decayed index, in units of [`WEIGHT_ONE`].
#[derive(Debug, Clone)]
pub struct Weighted {
    /// Σ weight of the baskets holding each item (over the whole gang).
    pub degree: Vec<u64>,
    /// Σ weight of the training baskets with at least one item: N.
    pub n: u64,
}

impl CoocIndex {
    /// Lays out `baskets` (rows of sorted distinct items) for the kernel.
    pub fn build(baskets: &Csr, n_items: usize) -> CoocIndex {
        Self::build_with_degree(baskets, n_items, None, 0..n_items)
    }

    /// As [`CoocIndex::build_with_degree`], each basket weighing `weights[b]` (in units of
    /// [`WEIGHT_ONE`]), with the weighted diagonal and N (`None`: counted from `baskets`).
    pub fn build_weighted(
        baskets: &Csr,
        n_items: usize,
        degree: Option<Vec<u32>>,
        rows: Range<usize>,
        weights: &[u32],
        weighted: Option<Weighted>,
    ) -> CoocIndex {
        assert_eq!(weights.len(), baskets.n_rows(), "one weight per basket");
        let weighted = weighted.unwrap_or_else(|| {
            let mut degree = vec![0u64; n_items];
            let mut n = 0;
            for (b, &w) in weights.iter().enumerate() {
                for &i in baskets.row(b) {
                    degree[i as usize] += w as u64;
                }
                n += if baskets.row_len(b) > 0 { w as u64 } else { 0 };
            }
            Weighted { degree, n }
        });
        assert_eq!(
            weighted.degree.len(),
            n_items,
            "one weighted degree per item"
        );
        Self::pack(baskets, n_items, degree, rows, Some((weights, weighted)))
    }

    /// As [`CoocIndex::build`], with the diagonal `C_jj` given (`Some`) rather than counted
    /// from `baskets`, for the items in `rows` only: a rank holds only the baskets that
    /// touch its own rows, so the catalogue-wide degrees come from the gang.
    pub fn build_with_degree(
        baskets: &Csr,
        n_items: usize,
        degree: Option<Vec<u32>>,
        rows: Range<usize>,
    ) -> CoocIndex {
        Self::pack(baskets, n_items, degree, rows, None)
    }

    /// An unweighted index over baskets already laid out as `[len, item, item, ...]`
    /// (`packed`, as the gang's messages carry them), basket `b` starting at `starts[b]`
    /// (`starts` ends with `packed.len()`), for the items in `rows` with the gang's `degree`.
    /// No copy of the baskets is made: a rank holds them once.
    pub fn from_packed(
        packed: Vec<u32>,
        starts: Vec<u64>,
        degree: Vec<u32>,
        rows: Range<usize>,
    ) -> CoocIndex {
        assert!(
            packed.len() < u32::MAX as usize,
            "more than 4 billion basket entries: positions no longer fit 32 bits"
        );
        assert_eq!(starts.last().copied(), Some(packed.len() as u64));
        let n_items = degree.len();
        let item_baskets =
            crate::csr::transpose_rows_in(&starts, &packed, 1, n_items, rows, |b| starts[b] as u32);
        CoocIndex {
            packed,
            item_baskets,
            degree,
            weighted: None,
        }
    }

    fn pack(
        baskets: &Csr,
        n_items: usize,
        degree: Option<Vec<u32>>,
        rows: Range<usize>,
        weights: Option<(&[u32], Weighted)>,
    ) -> CoocIndex {
        let n = baskets.n_rows();
        // A basket's header: its length, then (decayed) its weight.
        let header = 1 + weights.is_some() as usize;
        assert!(
            baskets.nnz() + header * n < u32::MAX as usize,
            "more than 4 billion basket entries: positions no longer fit 32 bits"
        );
        // Basket `b` starts at `offsets[b] + header * b`: its items plus one header per
        // earlier basket. Blocks of baskets are packed in parallel into disjoint ranges.
        let mut packed = crate::csr::zeroed_huge::<u32>(baskets.nnz() + header * n);
        let at = |b: usize| baskets.offsets[b] as usize + header * b;
        let basket_weights = weights.as_ref().map(|w| w.0);
        const BLOCK: usize = 8192;
        let mut parts: Vec<(usize, &mut [u32])> = Vec::with_capacity(n.div_ceil(BLOCK));
        let mut rest = &mut packed[..];
        for b0 in (0..n).step_by(BLOCK) {
            let b1 = (b0 + BLOCK).min(n);
            let (head, tail) = rest.split_at_mut(at(b1) - at(b0));
            parts.push((b0, head));
            rest = tail;
        }
        parts.into_par_iter().for_each(|(b0, out)| {
            let mut w = 0;
            for b in b0..(b0 + BLOCK).min(n) {
                let row = baskets.row(b);
                out[w] = row.len() as u32;
                if let Some(ws) = basket_weights {
                    out[w + 1] = ws[b];
                }
                out[w + header..w + header + row.len()].copy_from_slice(row);
                w += header + row.len();
            }
        });
        let item_baskets = baskets.transpose_labelled_in(n_items, rows, |b| at(b) as u32);
        let degree = degree.unwrap_or_else(|| {
            (0..n_items)
                .map(|i| item_baskets.row_len(i) as u32)
                .collect()
        });
        assert_eq!(degree.len(), n_items, "one degree per item");
        CoocIndex {
            packed,
            item_baskets,
            degree,
            weighted: weights.map(|w| w.1),
        }
    }

    /// The packed baskets, the item -> basket-position lists and the degrees, for a
    /// backend that counts elsewhere (the GPU).
    #[cfg_attr(not(feature = "cuda"), allow(dead_code))]
    pub(crate) fn parts(&self) -> (&[u32], &Csr, &[u32]) {
        (&self.packed, &self.item_baskets, &self.degree)
    }

    /// Baskets per item (the diagonal).
    pub fn degree(&self) -> &[u32] {
        &self.degree
    }

    /// The weighted sums of a decayed index; `None` without decay.
    pub fn weighted(&self) -> Option<&Weighted> {
        self.weighted.as_ref()
    }

    /// Items in the catalogue.
    pub fn n_items(&self) -> usize {
        self.degree.len()
    }

    /// Top-`k` neighbours of the items in `rows`.
    pub fn top_k(&self, sim: Scoring, k: usize, rows: Range<usize>) -> TopK {
        if self.weighted.is_some() {
            return self
                .top_k_many(&[sim], k, rows)
                .pop()
                .expect("one scoring, one table");
        }
        let n_items = self.n_items();
        let scorer = Scorer::new(sim, &self.degree);
        // One scratch per worker thread (not per rayon split: a fresh 4*n-byte counter per
        // split costs more in page zeroing than the counting itself).
        let scratch = thread_local::ThreadLocal::new();
        let lists: Vec<Vec<(f64, u32)>> = rows
            .into_par_iter()
            .with_max_len(64)
            .map(|i| {
                let s = scratch.get_or(|| {
                    RefCell::new(Scratch {
                        counts: vec![0; n_items],
                        counts16: vec![0; n_items],
                        touched: vec![0; n_items + 1],
                        heap: std::collections::BinaryHeap::with_capacity(k + 1),
                    })
                });
                row_top_k(self, &scorer, k, i, &mut s.borrow_mut())
            })
            .collect();
        TopK::from_lists(lists)
    }

    /// Top-`k` neighbours of the items in `rows` under every scoring of `sims`, in that
    /// order, from one count of each row: what `cooc tune` compares. Each table equals
    /// [`CoocIndex::top_k`] with that scoring.
    pub fn top_k_many(&self, sims: &[Scoring], k: usize, rows: Range<usize>) -> Vec<TopK> {
        let n_items = self.n_items();
        let scorers: Vec<Scorer> = sims.iter().map(|&s| Scorer::new(s, &self.degree)).collect();
        let weighted_items = if self.weighted.is_some() { n_items } else { 0 };
        let scratch = thread_local::ThreadLocal::new();
        let per_row: Vec<Vec<Vec<(f64, u32)>>> = rows
            .into_par_iter()
            .with_max_len(64)
            .map(|i| {
                let s = scratch.get_or(|| {
                    RefCell::new((
                        Scratch {
                            counts: vec![0; n_items],
                            counts16: vec![0; n_items],
                            touched: vec![0; n_items + 1],
                            heap: std::collections::BinaryHeap::with_capacity(k + 1),
                        },
                        CountGroups::new(),
                        WeightedScratch {
                            wsum: vec![0; weighted_items],
                            carry: vec![0; weighted_items],
                            cands: Vec::new(),
                        },
                    ))
                });
                let (s, groups, ws) = &mut *s.borrow_mut();
                match &self.weighted {
                    None => row_top_k_many(self, &scorers, k, i, s, groups),
                    Some(w) => row_top_k_weighted(self, w, sims, k, i, s, ws),
                }
            })
            .collect();
        let mut lists: Vec<Vec<Vec<(f64, u32)>>> = sims
            .iter()
            .map(|_| Vec::with_capacity(per_row.len()))
            .collect();
        for row in per_row {
            for (table, l) in lists.iter_mut().zip(row) {
                table.push(l);
            }
        }
        lists.into_iter().map(TopK::from_lists).collect()
    }
}

fn row_top_k(
    idx: &CoocIndex,
    sim: &Scorer,
    k: usize,
    i: usize,
    s: &mut Scratch,
) -> Vec<(f64, u32)> {
    fn select<T: RowCount>(
        idx: &CoocIndex,
        sim: &Scorer,
        k: usize,
        i: usize,
        counts: &mut [T],
        touched: &mut [u32],
        heap: &mut std::collections::BinaryHeap<Worst>,
    ) -> Vec<(f64, u32)> {
        let n_touched = count_row(idx, i, counts, touched);
        let cands = touched[..n_touched]
            .iter()
            .map(|&j| (j, std::mem::take(&mut counts[j as usize]).into()));
        select_top_k(sim, k, i, &idx.degree, heap, cands)
    }
    if idx.degree[i] <= u16::MAX as u32 {
        select(idx, sim, k, i, &mut s.counts16, &mut s.touched, &mut s.heap)
    } else {
        select(idx, sim, k, i, &mut s.counts, &mut s.touched, &mut s.heap)
    }
}

/// Row `i` under every scoring of `sims`, from one count of the row.
fn row_top_k_many(
    idx: &CoocIndex,
    sims: &[Scorer],
    k: usize,
    i: usize,
    s: &mut Scratch,
    groups: &mut CountGroups,
) -> Vec<Vec<(f64, u32)>> {
    if idx.degree[i] <= u16::MAX as u32 {
        let n_touched = count_row(idx, i, &mut s.counts16, &mut s.touched);
        groups.fill(&s.touched[..n_touched], &mut s.counts16);
    } else {
        let n_touched = count_row(idx, i, &mut s.counts, &mut s.touched);
        groups.fill(&s.touched[..n_touched], &mut s.counts);
    }
    sims.iter()
        .map(|sim| select_top_k_grouped(sim, k, i, &idx.degree, &mut s.heap, groups))
        .collect()
}

/// Adds `weight` (at most [`WEIGHT_ONE`]) to the low part `low` of a weighted sum kept as
/// `carry * 2^31 + low` (see [`WeightedScratch`]); true when the caller must add 1 to
/// `carry`. On a carry `low` keeps 2^31 more than the wrapped 32-bit sum (the carry stands
/// for 2^32 - 2^31 = 2^31), so `low` is then at least 2^31, never 0.
#[inline(always)]
fn add_weight(low: &mut u32, weight: u32) -> bool {
    let (sum, over) = low.overflowing_add(weight);
    *low = if over { sum + (1 << 31) } else { sum };
    over
}

/// Row `i` of a decayed index under every scoring of `sims`: shared baskets counted (for
/// `--min-support`) and weighted (for the score) in one pass, into `ws`'s sums (all zero,
/// and left so). Scores take the weighted sums in units of one basket: the integer sums
/// divided by [`WEIGHT_ONE`], exact in f64.
fn row_top_k_weighted(
    idx: &CoocIndex,
    w: &Weighted,
    sims: &[Scoring],
    k: usize,
    i: usize,
    s: &mut Scratch,
    ws: &mut WeightedScratch,
) -> Vec<Vec<(f64, u32)>> {
    let data = &idx.packed[..];
    let counts = &mut s.counts[..];
    let touched = &mut s.touched[..];
    let (wsum, carry) = (&mut ws.wsum[..], &mut ws.carry[..]);
    let mut n_touched = 0usize;
    // Whether any sum of the row carried (see [`WeightedScratch`]): without, `carry` is
    // left unread.
    let mut carried = false;
    // Prefetched as in `count_row`: each basket visit is a cache miss otherwise.
    let ps = idx.item_baskets.row(i);
    // Shared baskets are counted only for a `--min-support` above 1. Without them an item
    // is a candidate once its weighted sum leaves 0: one whose shared baskets all weigh 0
    // would score 0 under every measure, and only a positive score is a neighbour.
    let support_needed = sims.iter().any(|s| s.min_support > 1);
    for (t, &p) in ps.iter().enumerate() {
        prefetch_basket(data, ps, t);
        let p = p as usize;
        let (len, weight) = (data[p] as usize, data[p + 1]);
        let items = &data[p + 2..p + 2 + len];
        let mut add = |x: &mut u32, j: u32| {
            if add_weight(x, weight) {
                carry[j as usize] += 1;
                carried = true;
            }
        };
        if support_needed {
            for &j in items {
                let c = &mut counts[j as usize];
                touched[n_touched] = j;
                n_touched += (*c == 0) as usize;
                *c += 1;
                add(&mut wsum[j as usize], j);
            }
        } else {
            for &j in items {
                let x = &mut wsum[j as usize];
                touched[n_touched] = j;
                n_touched += (*x == 0 && weight != 0) as usize;
                add(x, j);
            }
        }
    }
    let (w_i, n) = (in_baskets(w.degree[i]), in_baskets(w.n));
    // A candidate `(j, shared baskets, weighted sum in baskets)`, its counters reset.
    let mut take = |j: u32| {
        // Without counts, each candidate stands for at least the one basket it was seen in.
        let c = if support_needed {
            std::mem::take(&mut counts[j as usize])
        } else {
            1
        };
        let low = std::mem::take(&mut wsum[j as usize]) as u64;
        let wc = if carried {
            ((std::mem::take(&mut carry[j as usize]) as u64) << 31) + low
        } else {
            low
        };
        (j as usize != i).then_some((j, c, in_baskets(wc)))
    };
    let heap = &mut s.heap;
    if let [sim] = sims {
        // One scoring (`cooc train`): straight from the touched list.
        let cands = touched[..n_touched].iter().filter_map(|&j| take(j));
        return vec![select_weighted(sim, k, w, w_i, n, heap, cands)];
    }
    let cands = &mut ws.cands;
    cands.clear();
    cands.extend(touched[..n_touched].iter().filter_map(|&j| take(j)));
    sims.iter()
        .map(|sim| select_weighted(sim, k, w, w_i, n, heap, cands.iter().copied()))
        .collect()
}

/// The best `k` of a decayed row (weighted degree `w_i`, N = `n`) under `sim` among its
/// candidates `(j, shared baskets, weighted sum)`, best first.
fn select_weighted(
    sim: &Scoring,
    k: usize,
    w: &Weighted,
    w_i: f64,
    n: f64,
    heap: &mut std::collections::BinaryHeap<Worst>,
    cands: impl Iterator<Item = (u32, u32, f64)>,
) -> Vec<(f64, u32)> {
    heap.clear();
    let support = sim.min_support.max(1);
    // As `select_top_k`'s `c_min`: while the heap holds k, a candidate's weighted sum must
    // reach this floor to possibly qualify (one compare, no load of w_j).
    let mut w_min = 0.0f64;
    let mut cands = cands.filter(|&(_, c, _)| c >= support);
    let w_of = |j: u32| in_baskets(w.degree[j as usize]);
    // Offers one candidate: scored, kept if positive and among the best k.
    let offer = |heap: &mut std::collections::BinaryHeap<Worst>, j: u32, wc: f64| {
        let score = sim.sim.score(wc, w_i, w_of(j), n);
        // Baskets of weight 0 can leave 0/0: only a positive score is a neighbour.
        if score.is_nan() || score <= 0.0 {
            return;
        }
        let cand = (score, j);
        if heap.len() < k {
            heap.push(Worst(cand));
        } else if let Some(mut worst) = heap.peek_mut() {
            if better(&cand, &worst.0) == Ordering::Less {
                *worst = Worst(cand);
            }
        }
    };
    while heap.len() < k {
        let Some((j, _, wc)) = cands.next() else {
            break;
        };
        offer(heap, j, wc);
    }
    // The heap is full (or the candidates ran out): as in `Selector::scan`, the ones
    // certainly below the worst kept are passed over by a tight test per measure, its
    // constants set once per threshold (each score's comparison without a square root or
    // division, with `SLACK` for rounding).
    while heap.len() == k {
        let tau = heap.peek().map_or(0.0, |w| w.0 .0);
        w_min = w_min.max(floor_weighted(sim, tau, w_i));
        let t = tau * SLACK;
        let next = match sim.sim {
            Similarity::Cosine => {
                let t = t * tau * w_i;
                cands.find(|&(j, _, wc)| wc >= w_min && wc * wc >= t * w_of(j))
            }
            Similarity::Jaccard => {
                cands.find(|&(j, _, wc)| wc >= w_min && wc >= t * (w_i + w_of(j) - wc))
            }
            Similarity::Count => cands.find(|&(_, _, wc)| wc >= w_min),
            Similarity::Lift => {
                let t = t * w_i;
                cands.find(|&(j, _, wc)| wc * n >= t * w_of(j))
            }
            Similarity::Inclusion => cands.find(|&(j, _, wc)| wc >= t * w_i.min(w_of(j))),
            Similarity::Llr => cands.next(),
        };
        let Some((j, _, wc)) = next else {
            break;
        };
        offer(heap, j, wc);
    }
    std::mem::take(heap)
        .into_sorted_vec()
        .into_iter()
        .map(|w| w.0)
        .collect()
}

/// The least weighted sum `c` shared with row item `i` (weighted degree `a`) at which a
/// candidate's score can reach `tau`: every item `j` has `w_j >= c` (the baskets they
/// share are among `j`'s), and cosine, Jaccard and count only fall as `w_j` grows, so
/// `w_j = c` bounds them. The measures whose score can be high at any `c` have no floor.
#[inline]
fn floor_weighted(sim: &Scoring, tau: f64, a: f64) -> f64 {
    match sim.sim {
        Similarity::Cosine => tau * tau * a * SLACK,
        Similarity::Jaccard => tau * a * SLACK,
        Similarity::Count => tau * SLACK,
        Similarity::Lift | Similarity::Inclusion | Similarity::Llr => 0.0,
    }
}

/// Counts row `i` into `counts`; the touched items are `touched[..n]`, the returned `n`.
#[inline]
fn count_row<T: RowCount>(
    idx: &CoocIndex,
    i: usize,
    counts: &mut [T],
    touched: &mut [u32],
) -> usize {
    // Baskets are scattered over ~100 MB, so each visit is a cache (and TLB) miss:
    // prefetched ahead, many misses are in flight at once instead of one at a time.
    let ps = idx.item_baskets.row(i);
    let data = &idx.packed[..];
    // `touched` has room for every item; a slot is written for every update but only kept
    // (len advances) on an item's first touch: no data-dependent branch to mispredict.
    let mut n_touched = 0usize;
    for (t, &p) in ps.iter().enumerate() {
        prefetch_basket(data, ps, t);
        let p = p as usize;
        let len = data[p] as usize;
        for &j in &data[p + 1..p + 1 + len] {
            let c = &mut counts[j as usize];
            touched[n_touched] = j;
            n_touched += (*c == T::default()) as usize;
            *c += T::from(1);
        }
    }
    n_touched
}

/// The best `k` of row `i` among its candidates `(j, C_ij)`, best first. The result is the
/// same for any order of the candidates (the order is total: score, then item), which lets
/// every backend that produces the counts share this one selection.
pub fn select_top_k(
    sim: &Scorer,
    k: usize,
    i: usize,
    degree: &[u32],
    heap: &mut std::collections::BinaryHeap<Worst>,
    candidates: impl Iterator<Item = (u32, u32)>,
) -> Vec<(f64, u32)> {
    let mut sel = Selector::new(sim, k, i, degree, heap);
    sel.scan(candidates);
    sel.finish()
}

/// [`select_top_k`] over a row's candidates grouped by shared count, highest counts first:
/// once the floor on the count passes a group's largest count, that group and every later
/// one are skipped unread. Most candidates share one or two baskets with the row, and for
/// the measures with a floor (cosine, Jaccard, count, LLR) a popular row's floor passes
/// those counts early: the long tail is never scanned.
fn select_top_k_grouped(
    sim: &Scorer,
    k: usize,
    i: usize,
    degree: &[u32],
    heap: &mut std::collections::BinaryHeap<Worst>,
    groups: &CountGroups,
) -> Vec<(f64, u32)> {
    let mut sel = Selector::new(sim, k, i, degree, heap);
    for (max_c, group) in groups.iter() {
        if max_c < sel.c_min {
            break;
        }
        sel.scan(group.iter().copied());
    }
    sel.finish()
}

/// A row's candidates `(j, C_ij)` by shared count: group 0 holds the counts of at least
/// [`COUNT_GROUPS`], group `g > 0` exactly `COUNT_GROUPS - g`.
struct CountGroups {
    groups: [Vec<(u32, u32)>; COUNT_GROUPS as usize],
}

/// Groups of [`CountGroups`]: counts 1, 2, 3 each alone, the rest together.
const COUNT_GROUPS: u32 = 4;

impl CountGroups {
    fn new() -> CountGroups {
        CountGroups {
            groups: std::array::from_fn(|_| Vec::new()),
        }
    }

    /// Takes the counts of the `touched` items (each at least 1), leaving them 0.
    fn fill<T: RowCount>(&mut self, touched: &[u32], counts: &mut [T]) {
        for g in &mut self.groups {
            g.clear();
        }
        for &j in touched {
            let c: u32 = std::mem::take(&mut counts[j as usize]).into();
            self.groups[COUNT_GROUPS.saturating_sub(c) as usize].push((j, c));
        }
    }

    /// Each group with its largest count, highest counts first.
    fn iter(&self) -> impl Iterator<Item = (u32, &[(u32, u32)])> {
        self.groups.iter().enumerate().map(|(g, v)| {
            let max_c = if g == 0 {
                u32::MAX
            } else {
                COUNT_GROUPS - g as u32
            };
            (max_c, v.as_slice())
        })
    }
}

/// One row's selection in progress: the best `k` offered so far in a bounded heap, and the
/// least count a candidate needs to possibly join them.
struct Selector<'a> {
    sim: &'a Scorer,
    k: usize,
    i: usize,
    c_ii: u32,
    degree: &'a [u32],
    heap: &'a mut std::collections::BinaryHeap<Worst>,
    /// `--min-support`, at least 1.
    support: u32,
    /// While the heap holds k, a candidate needs `c >= c_min` to possibly qualify: as
    /// `C_jj >= c`, a score at partner degree c bounds it, and that bound is below the bar
    /// exactly for `c < t`, `t` as in [`Selector::floor`]; for an integer c that is
    /// `c < ceil(t)`. One integer compare rejects most candidates. Below `--min-support` a pair is never a neighbour:
    /// the floor starts there.
    c_min: u32,
    /// LLR's absolute slack for "clearly below tau": far above the rounding of nine terms
    /// of magnitude up to N ln N.
    llr_slack: f64,
    is_llr: bool,
    /// LLR: per small count c, the least partner degree C_jj seen scoring clearly below the
    /// threshold. G² falls as C_jj grows from c to independence (as `floor` uses), and past
    /// independence a pair scores 0, so a later candidate with the same c and a degree at
    /// least that one is below the (only rising) threshold too: one compare, not a score.
    /// "Clearly": by `llr_slack`, far above rounding, so a score rounded up never makes a
    /// rejected degree qualify.
    llr_below: [u32; LLR_MEMO],
}

impl<'a> Selector<'a> {
    fn new(
        sim: &'a Scorer,
        k: usize,
        i: usize,
        degree: &'a [u32],
        heap: &'a mut std::collections::BinaryHeap<Worst>,
    ) -> Selector<'a> {
        heap.clear();
        let support = sim.scoring.min_support.max(1);
        Selector {
            sim,
            k,
            i,
            c_ii: degree[i],
            degree,
            heap,
            support,
            c_min: support,
            llr_slack: 1e-11 * (xlnx(sim.scoring.n_baskets as f64) + 1.0),
            is_llr: sim.scoring.sim == Similarity::Llr,
            llr_below: [u32::MAX; LLR_MEMO],
        }
    }

    /// The least count at which a candidate can reach `tau` (see `c_min`). Lift and
    /// inclusion can be high for any c (a pair of rare items), so only the measures that
    /// grow with c given c_jj >= c have a floor above the support.
    fn floor(&self, tau: f64) -> u32 {
        let (sim, c_ii, support) = (self.sim, self.c_ii, self.support);
        let t = match sim.scoring.sim {
            Similarity::Cosine => tau * tau * c_ii as f64 * SLACK,
            Similarity::Jaccard => tau * c_ii as f64 * SLACK,
            Similarity::Count => tau * SLACK,
            Similarity::Lift | Similarity::Inclusion => 0.0,
            // G² of (c, c_ii, c_jj) falls as c_jj grows from c (the table moves towards
            // independence, and G² is convex along that line with its minimum there), so
            // U(c) = G²(c, c_ii, c) bounds every candidate with count c; U grows with c.
            // The floor is the least c with U(c) within rounding of tau: it only rises, so
            // the scan is paid once per row (within `llr_slack` of tau).
            Similarity::Llr => {
                let mut c = self.c_min;
                while c < c_ii && sim.score(c, c_ii, c) < tau - self.llr_slack {
                    c += 1;
                }
                return c.max(support);
            }
        };
        (t.ceil().min(u32::MAX as f64) as u32).max(support)
    }

    /// Offers candidate `j` with `c` shared baskets.
    #[inline(always)]
    fn offer(&mut self, j: u32, c: u32) {
        if c < self.c_min || j as usize == self.i {
            return;
        }
        let (sim, c_ii, k) = (self.sim, self.c_ii, self.k);
        let c_jj = self.degree[j as usize];
        if self.heap.len() == k {
            let tau = self.heap.peek().map_or(0.0, |w| w.0 .0);
            let score = if self.is_llr {
                let memo = self.llr_below.get_mut(c as usize);
                if memo.as_ref().is_some_and(|m| c_jj >= **m) {
                    return;
                }
                let score = sim.score(c, c_ii, c_jj);
                if score < tau - self.llr_slack {
                    if let Some(m) = memo {
                        *m = (*m).min(c_jj);
                    }
                    return;
                }
                score
            } else {
                // Past `scan`'s test: possibly at or above the bar; the full order decides.
                sim.score(c, c_ii, c_jj)
            };
            let cand = (score, j);
            if let Some(mut worst) = self.heap.peek_mut() {
                if better(&cand, &worst.0) == Ordering::Less {
                    *worst = Worst(cand);
                }
            }
        } else {
            let s = sim.score(c, c_ii, c_jj);
            // Only LLR scores a shared pair 0 (bought together less than chance).
            if s > 0.0 {
                self.heap.push(Worst((s, j)));
            }
        }
        if self.heap.len() == k {
            self.c_min = self.floor(self.heap.peek().map_or(0.0, |w| w.0 .0));
        }
    }

    /// Offers every candidate of `cands`. Once the heap is full, the candidates certainly
    /// below its worst are skipped by a tight test made for the measure (its constants
    /// worked out once per change of the threshold, not per candidate); only the others
    /// are offered. Each test is its score's comparison without a square root or division
    /// (cosine `c / sqrt(ab) < tau` as `c² < tau² a b`, all exact in f64 below 2^26
    /// baskets), with [`SLACK`]: 1e-9 relative dwarfs f64 rounding (~1e-16), so a
    /// candidate that could equal or beat the bar after rounding is never skipped and the
    /// result is exact.
    fn scan(&mut self, mut cands: impl Iterator<Item = (u32, u32)>) {
        while self.heap.len() < self.k || self.is_llr {
            let Some((j, c)) = cands.next() else {
                return;
            };
            self.offer(j, c);
        }
        let degree = self.degree;
        let a = self.c_ii as f64;
        let n = self.sim.scoring.n_baskets as f64;
        loop {
            let tau = self.heap.peek().map_or(0.0, |w| w.0 .0);
            let c_min = self.c_min;
            let b = |j: u32| degree[j as usize] as f64;
            let next = match self.sim.scoring.sim {
                Similarity::Cosine => {
                    let t = tau * tau * a * SLACK;
                    cands.find(|&(j, c)| c >= c_min && (c as f64) * (c as f64) >= t * b(j))
                }
                Similarity::Jaccard => {
                    let t = tau * SLACK;
                    cands.find(|&(j, c)| {
                        let c = c as f64;
                        c >= c_min as f64 && c >= t * (a + b(j) - c)
                    })
                }
                Similarity::Count | Similarity::Llr => cands.find(|&(_, c)| c >= c_min),
                Similarity::Lift => {
                    let t = tau * a * SLACK;
                    cands.find(|&(j, c)| c >= c_min && (c as f64) * n >= t * b(j))
                }
                Similarity::Inclusion => {
                    let t = tau * SLACK;
                    cands.find(|&(j, c)| c >= c_min && c as f64 >= t * a.min(b(j)))
                }
            };
            let Some((j, c)) = next else {
                return;
            };
            self.offer(j, c);
        }
    }

    /// The kept candidates, best first.
    fn finish(self) -> Vec<(f64, u32)> {
        // Ascending in `Worst` order is best first.
        std::mem::take(self.heap)
            .into_sorted_vec()
            .into_iter()
            .map(|w| w.0)
            .collect()
    }
}

/// The shared counts below which LLR's selection remembers rejected partner degrees (most
/// candidates share few baskets).
const LLR_MEMO: usize = 64;

/// Margin of the pruning tests: 1e-9 relative dwarfs f64 rounding (~1e-16).
const SLACK: f64 = 1.0 - 1e-9;

/// A candidate in the bounded heap, ordered so that the heap's top is the worst kept.
#[derive(Debug, Clone, Copy)]
pub struct Worst((f64, u32));

impl PartialEq for Worst {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}
impl Eq for Worst {}
impl PartialOrd for Worst {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Worst {
    fn cmp(&self, other: &Self) -> Ordering {
        better(&self.0, &other.0)
    }
}

/// Prefetches the basket visited [`AHEAD`] visits after visit `t` of the positions `ps`
/// into `data`: its first cache line and the next one. A basket (a length, maybe a weight,
/// about ten items) spans two lines more often than not; asking for the second line
/// without reading the length first keeps a dependent load (itself a miss) off the path.
/// Measured against prefetching the last line by its length (bench/RESULTS.md): top-K at
/// size l 1.22 -> 1.12 s (medians of 6 interleaved runs).
#[inline(always)]
fn prefetch_basket(data: &[u32], ps: &[u32], t: usize) {
    if let Some(&n) = ps.get(t + AHEAD) {
        let at = data.as_ptr().wrapping_add(n as usize);
        prefetch(at);
        prefetch(at.wrapping_add(64 / std::mem::size_of::<u32>()));
    }
}

/// How many basket visits ahead [`prefetch_basket`] asks for memory.
const AHEAD: usize = 8;

/// Hints the CPU to fetch the cache line holding `p`; never faults, whatever `p` is.
#[inline(always)]
pub(crate) fn prefetch<T>(p: *const T) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: prefetch is a hint; it does not dereference `p` architecturally and cannot fault.
    unsafe {
        std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(p as *const i8)
    };
    #[cfg(not(target_arch = "x86_64"))]
    let _ = p;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn csr(rows: &[&[u32]]) -> Csr {
        Csr::from_rows(rows)
    }

    #[test]
    fn cosine_on_a_small_example() {
        // baskets: {0,1}, {0,1,2}, {2}
        let b = csr(&[&[0, 1], &[0, 1, 2], &[2]]);
        let idx = CoocIndex::build(&b, 3);
        assert_eq!(idx.degree(), &[2, 2, 2]);
        let m = idx.top_k(Scoring::new(Similarity::Cosine, 3), 10, 0..3);
        assert_eq!(m.row(0).0, &[1, 2]);
        assert_eq!(m.row(0).1, &[1.0, 0.5]);
        assert_eq!(m.row(2).0, &[0, 1]); // tie at 0.5: lower id first
        let j = idx.top_k(Scoring::new(Similarity::Jaccard, 3), 1, 0..3);
        assert_eq!(j.row(2), (&[0u32][..], &[(1.0f64 / 3.0) as f32][..]));
    }

    #[test]
    fn split_rows_append_to_the_whole() {
        let b = csr(&[&[0, 1, 3], &[1, 2], &[0, 2, 3], &[3]]);
        let idx = CoocIndex::build(&b, 4);
        let whole = idx.top_k(Scoring::new(Similarity::Cosine, 4), 2, 0..4);
        let mut parts = idx.top_k(Scoring::new(Similarity::Cosine, 4), 2, 0..1);
        parts.append(idx.top_k(Scoring::new(Similarity::Cosine, 4), 2, 1..4));
        assert_eq!(whole, parts);
        assert!(whole.avg_top1() > 0.0);
    }

    #[test]
    fn many_scorings_from_one_count_equal_each_alone() {
        let b = csr(&[
            &[0, 1, 3],
            &[1, 2],
            &[0, 2, 3],
            &[3],
            &[0, 1, 2, 3],
            &[1, 3],
        ]);
        let idx = CoocIndex::build(&b, 4);
        let sims: Vec<Scoring> = Similarity::ALL
            .into_iter()
            .flat_map(|sim| {
                [1, 2].map(|min_support| Scoring {
                    sim,
                    n_baskets: 6,
                    min_support,
                })
            })
            .collect();
        for rows in [0..4, 1..3] {
            let many = idx.top_k_many(&sims, 2, rows.clone());
            assert_eq!(many.len(), sims.len());
            for (sim, table) in sims.iter().zip(&many) {
                assert_eq!(table, &idx.top_k(*sim, 2, rows.clone()), "{sim:?}");
            }
        }
    }

    /// Random baskets over `n_items`, from a fixed LCG.
    fn random_rows(n: usize, n_items: u64, seed: u64) -> Vec<Vec<u32>> {
        let mut x = seed;
        let mut next = |m: u64| {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (x >> 33) % m
        };
        (0..n)
            .map(|_| {
                let mut r: Vec<u32> = (0..1 + next(6)).map(|_| next(n_items) as u32).collect();
                r.sort_unstable();
                r.dedup();
                r
            })
            .collect()
    }

    fn all_scorings(n_baskets: u64) -> Vec<Scoring> {
        Similarity::ALL
            .into_iter()
            .flat_map(|sim| {
                [1, 3].map(|min_support| Scoring {
                    sim,
                    n_baskets,
                    min_support,
                })
            })
            .collect()
    }

    #[test]
    fn a_weighted_sum_in_two_parts_is_the_64_bit_sum_and_its_low_part_is_0_only_at_0() {
        // Weights that carry often, land the 32-bit sum on exactly 2^32 (where a plain
        // wrapping low part would read 0), and run the total far past 32 bits.
        let mut weights = vec![1u32 << 24; 256]; // 256 full weights: exactly 2^32
        weights.extend([1, (1 << 24) - 1, 12_345, 1 << 24]);
        weights.extend((0..100_000u32).map(|x| x.wrapping_mul(2_654_435_761) >> 8));
        let (mut low, mut carry, mut total) = (0u32, 0u64, 0u64);
        for w in weights {
            assert!(w <= WEIGHT_ONE);
            if add_weight(&mut low, w) {
                carry += 1;
            }
            total += w as u64;
            assert_eq!((carry << 31) + low as u64, total);
            assert_eq!(low == 0, total == 0);
        }
        assert!(carry > 100, "the test must exercise many carries");
    }

    #[test]
    fn weights_of_one_reproduce_the_unweighted_kernel_bit_for_bit() {
        let rows = random_rows(300, 40, 3);
        let b = csr(&rows.iter().map(Vec::as_slice).collect::<Vec<_>>());
        let plain = CoocIndex::build(&b, 40);
        let ones = vec![WEIGHT_ONE; rows.len()];
        let weighted = CoocIndex::build_weighted(&b, 40, None, 0..40, &ones, None);
        for sim in all_scorings(rows.iter().filter(|r| !r.is_empty()).count() as u64) {
            for k in [1, 5, 50] {
                assert_eq!(
                    weighted.top_k(sim, k, 0..40),
                    plain.top_k(sim, k, 0..40),
                    "{sim:?}"
                );
            }
        }
    }

    #[test]
    fn decayed_scores_are_the_measures_of_the_weighted_sums() {
        // Independent: weighted sums in f64 straight from the baskets, then the formula.
        // Every seventh basket weighs 0 (one older than 24 half-lives): items reached
        // through such baskets must be counted once and, where all they share weighs 0,
        // never be neighbours, with support counts (min_support 3) or without (1).
        let rows = random_rows(400, 30, 5);
        let weights: Vec<u32> = (0..rows.len())
            .map(|b| match b % 7 {
                3 => 0,
                _ => (WEIGHT_ONE as f64 * 0.5f64.powf(b as f64 / 97.0)).round() as u32,
            })
            .collect();
        let b = csr(&rows.iter().map(Vec::as_slice).collect::<Vec<_>>());
        let idx = CoocIndex::build_weighted(&b, 30, None, 0..30, &weights, None);
        let one = WEIGHT_ONE as f64;
        let w = |b: usize| weights[b] as f64 / one;
        let n: f64 = (0..rows.len())
            .filter(|&b| !rows[b].is_empty())
            .map(w)
            .sum();
        let deg = |i: u32| -> f64 {
            (0..rows.len())
                .filter(|&b| rows[b].contains(&i))
                .map(w)
                .sum()
        };
        for sim in all_scorings(0) {
            let table = idx.top_k(sim, 50, 0..30);
            for i in 0..30u32 {
                let mut want: Vec<(f64, u32)> = (0..30u32)
                    .filter(|&j| j != i)
                    .filter_map(|j| {
                        let shared: Vec<usize> = (0..rows.len())
                            .filter(|&b| rows[b].contains(&i) && rows[b].contains(&j))
                            .collect();
                        let wc: f64 = shared.iter().map(|&b| w(b)).sum();
                        let s = sim.sim.score(wc, deg(i), deg(j), n);
                        (shared.len() as u32 >= sim.min_support && s > 0.0).then_some((s, j))
                    })
                    .collect();
                want.sort_by(better);
                let (ids, scores) = table.row(i as usize);
                assert_eq!(ids.len(), want.len(), "{sim:?} row {i}");
                for (r, (&j, &s)) in ids.iter().zip(scores).enumerate() {
                    let (ws, wj) = want[r];
                    assert!(
                        (s as f64 - ws).abs() <= 1e-6 * ws.abs().max(1.0),
                        "{sim:?} row {i} rank {r}: {s} vs {ws}"
                    );
                    // Ids agree except between near-ties.
                    let tie = want.iter().any(|&(x, y)| y != wj && (x - ws).abs() < 1e-9);
                    assert!(j == wj || tie, "{sim:?} row {i} rank {r}: {j} vs {wj}");
                }
            }
        }
    }

    #[test]
    fn selection_from_candidates_in_any_order_matches_the_kernel() {
        // What a backend that only produces counts relies on: any candidate order, zero
        // counts and the diagonal among them, gives the CPU kernel's rows.
        let mut x = 7u64;
        let mut next = |m: u64| {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((x >> 33) % m) as u32
        };
        let n_items = 40;
        let rows: Vec<Vec<u32>> = (0..300)
            .map(|_| {
                let mut r: Vec<u32> = (0..1 + next(6)).map(|_| next(n_items)).collect();
                r.sort_unstable();
                r.dedup();
                r
            })
            .collect();
        let b = csr(&rows.iter().map(Vec::as_slice).collect::<Vec<_>>());
        let idx = CoocIndex::build(&b, n_items as usize);
        let measures = Similarity::ALL.into_iter().flat_map(|m| {
            [1, 3].map(|min_support| Scoring {
                sim: m,
                n_baskets: rows.len() as u64,
                min_support,
            })
        });
        for sim in measures {
            for k in [1, 3, 10, 50] {
                let want = idx.top_k(sim, k, 0..n_items as usize);
                let mut heap = std::collections::BinaryHeap::new();
                let lists = (0..n_items as usize)
                    .map(|i| {
                        let mut c = vec![0u32; n_items as usize];
                        for r in rows.iter().filter(|r| r.contains(&(i as u32))) {
                            for &j in r {
                                c[j as usize] += 1;
                            }
                        }
                        let mut cands: Vec<(u32, u32)> =
                            c.iter().enumerate().map(|(j, &c)| (j as u32, c)).collect();
                        for t in (1..cands.len()).rev() {
                            cands.swap(t, next(t as u64 + 1) as usize);
                        }
                        let scorer = Scorer::new(sim, idx.degree());
                        select_top_k(&scorer, k, i, idx.degree(), &mut heap, cands.into_iter())
                    })
                    .collect();
                assert_eq!(TopK::from_lists(lists), want, "{sim:?} k={k}");
                // Brute force: every pair with c_ij >= min_support and a positive score.
                for i in 0..n_items as usize {
                    let (got, _) = want.row(i);
                    let mut all: Vec<(f64, u32)> = (0..n_items as u32)
                        .filter(|&j| j as usize != i)
                        .filter_map(|j| {
                            let c = rows
                                .iter()
                                .filter(|r| r.contains(&(i as u32)) && r.contains(&j))
                                .count() as u32;
                            let s = sim.score(c, idx.degree()[i], idx.degree()[j as usize]);
                            (c >= sim.min_support && c > 0 && s > 0.0).then_some((s, j))
                        })
                        .collect();
                    all.sort_by(better);
                    all.truncate(k);
                    let ids: Vec<u32> = all.iter().map(|x| x.1).collect();
                    assert_eq!(got, &ids[..], "{sim:?} k={k} row {i}");
                }
            }
        }
    }
}
