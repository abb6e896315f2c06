//! Offline evaluation: hold out each customer's last order, recommend from the rest.
//!
//! A customer's candidates are scored by summing the similarity of every neighbour list of
//! the items they bought before (items already bought are excluded), and the top K are
//! compared with the held-out items. The same customers get a most-popular baseline.
//! Per-customer results are summed in fixed point (exact integer addition), so the metrics
//! depend neither on the number of threads nor on how customers are split among ranks:
//! [`EvalPartial`]s of disjoint customer sets merge to the same bytes in any order.

use cooc_model::Evaluation;
use rayon::prelude::*;

use crate::csr::Csr;
use crate::input::Interactions;
use crate::kernel::{prefetch, TopK};

/// Splits rows into training rows and, per basket, the held-out last order: the rows at the
/// basket's latest `created_at`, for baskets that also have earlier rows.
/// Returns the keep-mask of training rows.
pub fn holdout_last(data: &Interactions) -> Vec<Vec<bool>> {
    let n = data.n_baskets;
    let mut first = vec![i64::MAX; n];
    let mut last = vec![i64::MIN; n];
    for (bs, ts) in data.basket.iter().zip(&data.time) {
        for (&b, &t) in bs.iter().zip(ts) {
            first[b as usize] = first[b as usize].min(t);
            last[b as usize] = last[b as usize].max(t);
        }
    }
    data.basket
        .par_iter()
        .zip(&data.time)
        .map(|(bs, ts)| {
            bs.iter()
                .zip(ts)
                .map(|(&b, &t)| !(t == last[b as usize] && first[b as usize] < t))
                .collect()
        })
        .collect()
}

/// Per-thread scratch of the evaluation: the score accumulator and the per-customer lists.
struct Scratch {
    acc: Vec<f64>,
    /// Items a model's neighbour lists reached for this customer: `touched[..n_touched]`,
    /// sized to the catalogue (each item enters once) so an item is appended without a
    /// branch on whether it is new.
    touched: Vec<u32>,
    /// The best K so far, best first (K slots, filled from the front).
    cand: Vec<(f64, u32)>,
}

/// The NDCG discounts up to K, computed once per evaluation: `gain[r]` is the gain of a hit
/// at rank r (from 0), `ideal[n]` the DCG of n hits at the top, summed in rank order (the
/// same bits as summing them per customer).
struct Discounts {
    gain: Vec<f64>,
    ideal: Vec<f64>,
}

impl Discounts {
    fn new(k: usize) -> Discounts {
        let gain: Vec<f64> = (0..k).map(|r| 1.0 / ((r + 2) as f64).log2()).collect();
        let mut ideal = vec![0.0; k + 1];
        for r in 0..k {
            ideal[r + 1] = ideal[r] + gain[r];
        }
        Discounts { gain, ideal }
    }

    /// The cut-off K.
    fn k(&self) -> usize {
        self.gain.len()
    }
}

/// HitRate, recall and NDCG of one customer's recommendations (at most K of them).
fn metrics(
    recs: impl ExactSizeIterator<Item = u32>,
    test: &[u32],
    d: &Discounts,
) -> (f64, f64, f64) {
    let n_recs = recs.len();
    let mut hits = 0usize;
    let mut dcg = 0.0;
    for (r, j) in recs.enumerate() {
        if test.binary_search(&j).is_ok() {
            hits += 1;
            dcg += d.gain[r];
        }
    }
    let ideal = d.ideal[test.len().min(n_recs.max(1))];
    (
        (hits > 0) as u8 as f64,
        hits as f64 / test.len() as f64,
        if ideal > 0.0 { dcg / ideal } else { 0.0 },
    )
}

/// One metric value in [0, 1] as a 2^-64 fixed-point integer: sums of these are exact.
fn fixed(x: f64) -> u128 {
    let y = (x * FIXED_ONE).round();
    // Below 2^64 (every x below 1) through u64: the same integer, converted in a few
    // instructions where f64 to u128 is a library call (three per customer and model).
    if y < FIXED_ONE {
        y as u64 as u128
    } else {
        y as u128
    }
}

const FIXED_ONE: f64 = 18_446_744_073_709_551_616.0; // 2^64

/// Evaluation sums over a set of customers; merge partials of disjoint sets, then finish.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct EvalPartial {
    /// Customers evaluated.
    pub users: u64,
    /// hit, recall, ndcg, then the baseline's, in 2^-64 fixed point.
    pub sums: [u128; 6],
    /// Items recommended to someone, by the model and by the baseline.
    pub seen: Vec<bool>,
    /// Items the baseline recommended to anyone.
    pub seen_base: Vec<bool>,
}

impl EvalPartial {
    /// The sums of no customers over `n_items` items.
    pub fn empty(n_items: usize) -> EvalPartial {
        EvalPartial {
            users: 0,
            sums: [0; 6],
            seen: vec![false; n_items],
            seen_base: vec![false; n_items],
        }
    }

    /// Adds the sums of a disjoint set of customers.
    pub fn merge(&mut self, other: &EvalPartial) {
        self.users += other.users;
        for (a, b) in self.sums.iter_mut().zip(other.sums) {
            *a += b;
        }
        for (a, b) in self.seen.iter_mut().zip(&other.seen) {
            *a |= b;
        }
        for (a, b) in self.seen_base.iter_mut().zip(&other.seen_base) {
            *a |= b;
        }
    }

    /// The metrics at cut-off `k`.
    pub fn finish(&self, k: usize) -> Evaluation {
        let users = self.users;
        let per = |x: u128| {
            if users == 0 {
                0.0
            } else {
                x as f64 / FIXED_ONE / users as f64
            }
        };
        let n_items = self.seen.len();
        let cov = |s: &[bool]| {
            if n_items == 0 {
                0.0
            } else {
                s.iter().filter(|&&b| b).count() as f64 / n_items as f64
            }
        };
        Evaluation {
            k: k as u32,
            users,
            hit_rate: per(self.sums[0]),
            recall: per(self.sums[1]),
            ndcg: per(self.sums[2]),
            coverage: cov(&self.seen),
            baseline_hit_rate: per(self.sums[3]),
            baseline_recall: per(self.sums[4]),
            baseline_ndcg: per(self.sums[5]),
            baseline_coverage: cov(&self.seen_base),
        }
    }
}

/// The hold-out customers, their items renumbered by popularity (training degree
/// descending, then id ascending) for the evaluation: the popular items, which most
/// baskets and neighbour lists name, then sit together in the accumulator and the model,
/// so the random reads of a customer's scoring mostly hit the closer caches; and the
/// popularity baseline's ranking is the labels' own order. Built once, it serves every
/// model evaluated on the same split (`cooc tune` evaluates several): what does not depend
/// on the model (who is evaluated, against which items, and the baseline's metrics) is
/// worked out here, once.
pub struct HoldOut {
    /// The cut-off K.
    k: usize,
    /// The training items per customer (row), relabelled, in their original order (so a
    /// customer's scores are summed in the same order as without relabelling).
    train: Csr,
    /// The customers evaluated, ascending: those with a training item and a held-out item
    /// they had not bought before.
    users: Vec<u32>,
    /// Per evaluated customer (aligned with `users`), those held-out items, relabelled and
    /// sorted.
    held: Csr,
    /// The popularity baseline over `users` (with `seen_base` by label); the model's sums
    /// and `seen` are left to [`evaluate_partial`].
    baseline: EvalPartial,
    /// Label to item id.
    item_of: Vec<u32>,
    /// Item id to label.
    label_of: Vec<u32>,
}

/// One block of consecutive customers of [`HoldOut::new`]: whom it evaluates, their
/// held-out items (`held`, `held_len` per customer) and the baseline's sums over them.
struct UserBlock {
    users: Vec<u32>,
    held_len: Vec<u64>,
    held: Vec<u32>,
    baseline: EvalPartial,
}

impl HoldOut {
    /// The split of `train` and `test` (customers as rows, the same rows in both), ranked by
    /// the catalogue-wide training `degree` (which ranks the popularity baseline), for
    /// evaluations at cut-off `k`.
    pub fn new(mut train: Csr, mut test: Csr, degree: &[u32], k: usize) -> HoldOut {
        let n_items = degree.len();
        let mut item_of: Vec<u32> = (0..n_items as u32).collect();
        item_of.par_sort_unstable_by(|&a, &b| {
            degree[b as usize].cmp(&degree[a as usize]).then(a.cmp(&b))
        });
        let mut label_of = vec![0u32; n_items];
        for (l, &i) in item_of.iter().enumerate() {
            label_of[i as usize] = l as u32;
        }
        train
            .values
            .par_iter_mut()
            .with_min_len(1 << 16)
            .for_each(|v| *v = label_of[*v as usize]);
        test.values
            .par_iter_mut()
            .with_min_len(1 << 16)
            .for_each(|v| *v = label_of[*v as usize]);
        test.sort_rows();

        // Blocks of consecutive customers, gathered in order.
        const BLOCK: usize = 1 << 16;
        let n_users = test.n_rows();
        let discounts = Discounts::new(k);
        let blocks: Vec<UserBlock> = (0..n_users.div_ceil(BLOCK))
            .into_par_iter()
            .map_init(
                || vec![false; n_items],
                |bought_now, b| {
                    let users = b * BLOCK..((b + 1) * BLOCK).min(n_users);
                    user_block(&train, &test, users, &discounts, bought_now)
                },
            )
            .collect();
        let mut users = Vec::new();
        let mut held = Csr {
            offsets: vec![0],
            values: Vec::new(),
        };
        let mut baseline = EvalPartial::empty(n_items);
        for block in blocks {
            users.extend(block.users);
            let mut end = *held.offsets.last().expect("offsets start at 0");
            held.offsets.extend(block.held_len.iter().map(|&n| {
                end += n;
                end
            }));
            held.values.extend(block.held);
            baseline.merge(&block.baseline);
        }
        HoldOut {
            k,
            train,
            users,
            held,
            baseline,
            item_of,
            label_of,
        }
    }

    /// `model` (rows = all items) as [`Lists`] in label order; each list keeps its order.
    fn relabel(&self, model: &TopK) -> Lists {
        let n = self.item_of.len();
        assert_eq!(model.n_rows(), n, "the model does not cover the catalogue");
        let mut out = Lists {
            start: Vec::with_capacity(n + 1),
            entries: Vec::with_capacity(model.indices.len()),
        };
        out.start.push(0);
        for &i in &self.item_of {
            let (ids, scores) = model.row(i as usize);
            out.entries.extend(
                ids.iter()
                    .zip(scores)
                    .map(|(&j, &sc)| (self.label_of[j as usize], sc)),
            );
            out.start.push(out.entries.len() as u64);
        }
        out
    }
}

/// A model's neighbour lists by label, each entry `(neighbour, score)` side by side: a list
/// is one region of memory to fetch, not two.
struct Lists {
    /// List `l` is `entries[start[l]..start[l + 1]]`.
    start: Vec<u64>,
    entries: Vec<(u32, f32)>,
}

impl Lists {
    fn row(&self, l: u32) -> &[(u32, f32)] {
        let l = l as usize;
        &self.entries[self.start[l] as usize..self.start[l + 1] as usize]
    }

    /// Hints the CPU to fetch where list `l` starts.
    #[inline(always)]
    fn prefetch_start(&self, l: u32) {
        prefetch(self.start.as_ptr().wrapping_add(l as usize));
    }

    /// Hints the CPU to fetch list `l` (its first two cache lines: ten entries span at
    /// most two).
    #[inline(always)]
    fn prefetch_row(&self, l: u32) {
        if let Some(&a) = self.start.get(l as usize) {
            let p = self.entries.as_ptr().wrapping_add(a as usize);
            prefetch(p);
            prefetch(p.wrapping_add(8));
        }
    }
}

/// Goes through customers `users` of a split (labels; `test` rows sorted): who is evaluated,
/// against which held-out items, and the popularity baseline's metrics for them.
/// `bought_now` (one flag per label, all false) is scratch, left all false.
fn user_block(
    train: &Csr,
    test: &Csr,
    users: std::ops::Range<usize>,
    discounts: &Discounts,
    bought_now: &mut [bool],
) -> UserBlock {
    let k = discounts.k();
    let mut out = UserBlock {
        users: Vec::new(),
        held_len: Vec::new(),
        held: Vec::new(),
        baseline: EvalPartial::empty(bought_now.len()),
    };
    let mut base = Vec::with_capacity(k);
    for u in users {
        let bought = train.row(u);
        if bought.is_empty() || k == 0 {
            continue;
        }
        for &i in bought {
            bought_now[i as usize] = true;
        }
        let start = out.held.len();
        out.held.extend(
            test.row(u)
                .iter()
                .copied()
                .filter(|&j| !bought_now[j as usize]),
        );
        if out.held.len() > start {
            // Labels are in popularity order: the baseline is the first K not bought.
            base.clear();
            base.extend(
                (0..(k + bought.len()).min(bought_now.len()) as u32)
                    .filter(|&j| !bought_now[j as usize])
                    .take(k),
            );
            let (hit, recall, ndcg) = metrics(base.iter().copied(), &out.held[start..], discounts);
            let b = &mut out.baseline;
            b.users += 1;
            for (sum, v) in b.sums[3..].iter_mut().zip([hit, recall, ndcg]) {
                *sum += fixed(v);
            }
            for &j in &base {
                b.seen_base[j as usize] = true;
            }
            out.users.push(u as u32);
            out.held_len.push((out.held.len() - start) as u64);
        }
        for &i in bought {
            bought_now[i as usize] = false;
        }
    }
    out
}

/// Evaluates `model` (rows = all items) at the hold-out's cut-off.
pub fn evaluate(model: &TopK, holdout: &HoldOut) -> Evaluation {
    evaluate_partial(model, holdout).finish(holdout.k)
}

/// The sums of [`evaluate`] over the customers of `holdout`.
///
/// Models are evaluated one at a time, each in its own pass (`cooc tune` too): one model's
/// neighbour lists stay in the last-level cache through the pass, where several interleaved
/// per customer evict each other (measured: five models in one pass took longer than five
/// passes).
pub fn evaluate_partial(model: &TopK, holdout: &HoldOut) -> EvalPartial {
    let n_items = holdout.item_of.len();
    let k = holdout.k;
    let model = holdout.relabel(model);
    let model = &model;
    let (train, held, users) = (&holdout.train, &holdout.held, &holdout.users[..]);
    let discounts = Discounts::new(k);
    let item_of = holdout.item_of.as_slice();

    // Customers fold into partial sums per split; sums are exact integers and `seen` is an
    // OR, so the result does not depend on how rayon splits them.
    let n_users = users.len();
    let mut out = (0..n_users)
        .into_par_iter()
        .with_min_len(1024)
        .fold(
            || {
                (
                    Scratch {
                        acc: vec![0.0; n_items],
                        touched: vec![0; n_items],
                        cand: vec![(0.0, 0); k],
                    },
                    EvalPartial::empty(n_items),
                )
            },
            |(mut s, mut out), e| {
                // The neighbour lists of the customers just ahead, asked for early: where
                // the next but one customer's lists start, and the next one's lists.
                if let Some(&u) = users.get(e + 2) {
                    train
                        .row(u as usize)
                        .iter()
                        .for_each(|&i| model.prefetch_start(i));
                }
                if let Some(&u) = users.get(e + 1) {
                    train
                        .row(u as usize)
                        .iter()
                        .for_each(|&i| model.prefetch_row(i));
                }
                evaluate_one(
                    model,
                    train.row(users[e] as usize),
                    held.row(e),
                    item_of,
                    &discounts,
                    &mut s,
                    &mut out,
                );
                (s, out)
            },
        )
        .map(|(_, out)| out)
        .reduce(
            || EvalPartial::empty(n_items),
            |mut a, b| {
                a.merge(&b);
                a
            },
        );
    out.merge(&holdout.baseline);
    // Back from labels to item ids.
    let by_item = |seen: &[bool]| -> Vec<bool> {
        holdout.label_of.iter().map(|&l| seen[l as usize]).collect()
    };
    EvalPartial {
        seen: by_item(&out.seen),
        seen_base: by_item(&out.seen_base),
        ..out
    }
}

/// Adds the model's metrics for one customer (`bought` in training, `held` the held-out
/// items not bought before, both as labels) to `out`; `item_of` maps labels back to item
/// ids, which break ties between equal scores.
fn evaluate_one(
    model: &Lists,
    bought: &[u32],
    held: &[u32],
    item_of: &[u32],
    discounts: &Discounts,
    s: &mut Scratch,
    out: &mut EvalPartial,
) {
    let k = discounts.k();
    // Items already bought are marked -inf while this customer is scored: they are never
    // candidates (they stay -inf, and a first touch of any other item sees 0, scores being
    // positive).
    for &i in bought {
        s.acc[i as usize] = f64::NEG_INFINITY;
    }
    let mut n_touched = 0;
    for &i in bought {
        for &(j, sc) in model.row(i) {
            let a = &mut s.acc[j as usize];
            s.touched[n_touched] = j;
            n_touched += (*a == 0.0) as usize;
            *a += sc as f64;
        }
    }
    for &i in bought {
        s.acc[i as usize] = 0.0;
    }
    // The best k, kept sorted best first (score descending, then item id ascending) by
    // insertion into a fixed array: a customer has tens of candidates, and most fail the
    // first compare. (Shifting in place, not `Vec::insert` and `pop`, which call memmove.)
    let better = |a: &(f64, u32), b: &(f64, u32)| {
        a.0 > b.0 || (a.0 == b.0 && item_of[a.1 as usize] < item_of[b.1 as usize])
    };
    let cand = &mut s.cand[..k];
    let mut n_cand = 0;
    for &j in &s.touched[..n_touched] {
        let c = (std::mem::take(&mut s.acc[j as usize]), j);
        // Where `c` goes if it is better than what is there: the last place once k are
        // kept (its holder drops out), else the next free one.
        let mut at = if n_cand == k {
            if !better(&c, &cand[k - 1]) {
                continue;
            }
            k - 1
        } else {
            n_cand += 1;
            n_cand - 1
        };
        while at > 0 && better(&c, &cand[at - 1]) {
            cand[at] = cand[at - 1];
            at -= 1;
        }
        cand[at] = c;
    }
    let recs = cand[..n_cand].iter().map(|c| c.1);
    let (hit, recall, ndcg) = metrics(recs.clone(), held, discounts);
    for (sum, v) in out.sums.iter_mut().zip([hit, recall, ndcg]) {
        *sum += fixed(v);
    }
    for j in recs {
        out.seen[j as usize] = true;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The evaluation written plainly, in item ids: every candidate sorted, the baseline
    /// from a popularity list.
    fn reference(model: &TopK, train: &Csr, test: &Csr, degree: &[u32], k: usize) -> EvalPartial {
        let n = degree.len();
        let mut popular: Vec<u32> = (0..n as u32).collect();
        popular.sort_by(|&a, &b| degree[b as usize].cmp(&degree[a as usize]).then(a.cmp(&b)));
        let d = Discounts::new(k);
        let mut out = EvalPartial::empty(n);
        for u in 0..test.n_rows() {
            let bought = train.row(u);
            if bought.is_empty() {
                continue;
            }
            let mut held: Vec<u32> = test
                .row(u)
                .iter()
                .copied()
                .filter(|j| !bought.contains(j))
                .collect();
            held.sort_unstable();
            if held.is_empty() {
                continue;
            }
            let base: Vec<u32> = popular
                .iter()
                .copied()
                .filter(|j| !bought.contains(j))
                .take(k)
                .collect();
            let mut acc = vec![0.0f64; n];
            let mut seen = vec![false; n];
            for &i in bought {
                let (ids, scores) = model.row(i as usize);
                for (&j, &sc) in ids.iter().zip(scores) {
                    acc[j as usize] += sc as f64;
                    seen[j as usize] = true;
                }
            }
            let mut cand: Vec<(f64, u32)> = (0..n as u32)
                .filter(|&j| seen[j as usize] && !bought.contains(&j))
                .map(|j| (acc[j as usize], j))
                .collect();
            cand.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
            cand.truncate(k);
            let (hit, recall, ndcg) = metrics(cand.iter().map(|c| c.1), &held, &d);
            let (bh, br, bn) = metrics(base.iter().copied(), &held, &d);
            out.users += 1;
            for (sum, v) in out.sums.iter_mut().zip([hit, recall, ndcg, bh, br, bn]) {
                *sum += fixed(v);
            }
            cand.iter().for_each(|c| out.seen[c.1 as usize] = true);
            base.iter().for_each(|&j| out.seen_base[j as usize] = true);
        }
        out
    }

    #[test]
    fn relabelled_evaluation_matches_the_plain_one_with_ties() {
        use rand_chacha::rand_core::{RngCore, SeedableRng};
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
        let mut below = |m: u32| rng.next_u32() % m;
        for case in 0..20 {
            let n = 5 + below(60) as usize;
            let k = 1 + below(12) as usize;
            // Few distinct scores: sums tie often, and ties go by item id.
            let lists: Vec<Vec<(f64, u32)>> = (0..n)
                .map(|_| {
                    let mut l: Vec<(f64, u32)> = (0..below(8))
                        .map(|_| ((1 + below(3)) as f64 * 0.25, below(n as u32)))
                        .collect();
                    l.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
                    l.dedup_by_key(|x| x.1);
                    l
                })
                .collect();
            let model = TopK::from_lists(lists);
            let rows = |below: &mut dyn FnMut(u32) -> u32, most: u32| -> Vec<Vec<u32>> {
                (0..40)
                    .map(|_| {
                        let mut r: Vec<u32> = (0..below(most)).map(|_| below(n as u32)).collect();
                        r.sort_unstable();
                        r.dedup();
                        r
                    })
                    .collect()
            };
            let train = Csr::from_rows(&rows(&mut below, 9));
            let test = Csr::from_rows(&rows(&mut below, 4));
            // Degrees with ties too, so the baseline's order leans on item ids.
            let degree: Vec<u32> = (0..n).map(|_| below(5)).collect();
            let expected = reference(&model, &train, &test, &degree, k);
            let holdout = HoldOut::new(train, test, &degree, k);
            assert_eq!(evaluate_partial(&model, &holdout), expected, "case {case}");
        }
    }

    #[test]
    fn discounts_match_the_per_customer_sums() {
        let d = Discounts::new(10);
        assert_eq!(d.ideal[0], 0.0);
        for n in 1..=10 {
            let direct: f64 = (0..n).map(|r| 1.0 / ((r + 2) as f64).log2()).sum();
            assert_eq!(d.ideal[n].to_bits(), direct.to_bits(), "{n}");
        }
    }

    #[test]
    fn ndcg_and_recall_by_hand() {
        let d = Discounts::new(3);
        let (hit, recall, ndcg) = metrics([5, 7, 9].into_iter(), &[7, 8], &d);
        assert_eq!(hit, 1.0);
        assert_eq!(recall, 0.5);
        let expected = (1.0 / 3f64.log2()) / (1.0 + 1.0 / 3f64.log2());
        assert!((ndcg - expected).abs() < 1e-12);
        assert_eq!(metrics([1].into_iter(), &[2], &d), (0.0, 0.0, 0.0));
    }

    #[test]
    fn the_last_order_is_held_out_only_with_history() {
        let data = Interactions {
            basket: vec![vec![0, 0, 0, 1, 1]],
            item: vec![vec![0, 1, 2, 0, 1]],
            time: vec![vec![1, 2, 2, 5, 5]],
            n_baskets: 2,
            item_keys: cooc_model::Keys::Int(vec![1, 2, 3]),
            n_rows: 5,
            fingerprint: String::new(),
        };
        assert_eq!(
            holdout_last(&data),
            vec![vec![true, false, false, true, true]]
        );
    }
}
