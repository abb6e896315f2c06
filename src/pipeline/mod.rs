//! The training pipeline: the one place that decides read -> split -> count -> top-K ->
//! evaluate -> gate -> publish, for one process ([`Solo`]) and for every rank of a gang
//! alike. It produces exactly the artifact one process produces from the same input, for
//! any world size and thread count.
//!
//! Data plan, per rank:
//! 1-3. [`share`]: this rank's whole baskets with global item ids (a basket belongs to the
//!    lowest rank that read rows of it).
//! 4. Degrees (the diagonal `C_ii`) and per-item work (`Σ_b∋i |b|`) are all-reduced; items
//!    are split into contiguous blocks of equal work.
//! 5. Each training basket goes to the owners of the blocks its items fall in (at most
//!    min(|b|, W) copies). Rank q then holds every basket that touches its rows, so it
//!    counts and ranks its rows with the single-process kernel and the global degrees:
//!    exact. This moves the baskets (~4 bytes per entry) instead of partial co-occurrence
//!    rows (~8 bytes per co-occurring pair, ~20x more at size l).
//! 6. Top-K blocks are gathered (all-gathered when evaluating: every rank scores its own
//!    customers against the whole model); evaluation sums are exact fixed point.
//! 7. Rank 0 builds the metadata, checks the gates, writes the artifact ([`publish`]), and
//!    broadcasts the outcome; every other rank exits only after that confirmation.
//!
//! With one rank, steps 4-5 are the identity and are skipped; nothing else differs.
//!
//! Modules: [`share`] (steps 1-3), [`keys`] (pure key functions), [`codec`] (messages),
//! [`agree`] (stopping as one, exit classes), [`publish`] (metadata, gates, write),
//! [`tune`] (steps 1-6 for many settings from one count, for `cooc tune`).

pub mod agree;
pub mod caps;
pub(crate) mod codec;
pub(crate) mod keys;
pub mod publish;
pub(crate) mod share;
pub mod tune;

use crate::backend::Engine;
use crate::csr::Csr;
use crate::eval;
use crate::gang::communicator::{Communicator, Solo, Traffic};
use crate::gang::schedule::balanced_blocks;
use crate::gang::wire;
use crate::input::Interactions;
use crate::kernel::{self, CoocIndex, Scoring, TopK, Weighted};
use crate::plan::{Decay, TrainPlan};
use crate::progress::{Phase, Timings};
use codec::{phase, BasketsOut, Failure, Summary, WriteOutcome};
pub use publish::{TrainReport, Trained};

/// What one rank did.
#[derive(Debug)]
pub struct RankReport {
    /// This rank.
    pub rank: u32,
    /// Ranks in the gang.
    pub world: u32,
    /// The version (or file) rank 0 wrote; on other ranks, as rank 0 confirmed it.
    pub written: String,
    /// Where the artifact went: its path, or its object's URL.
    pub path: String,
    /// Rank 0's report of the write; `None` on other ranks.
    pub report: Option<TrainReport>,
    /// How long each phase took on this rank.
    pub timings: Timings,
    /// Payload bytes this rank sent and received.
    pub traffic: Traffic,
}

/// Trains in this process alone: the pipeline with a gang of one.
pub fn train(plan: &TrainPlan) -> anyhow::Result<TrainReport> {
    let r = run(plan, &Solo)?;
    r.report
        .ok_or_else(|| anyhow::anyhow!("a gang of one wrote no report (a bug)"))
}

/// Steps 1-5 on one rank: what the top-K step needs, and what comes after it needs.
struct Counted {
    engine: Engine,
    index: CoocIndex,
    /// The items this rank ranks.
    rows: std::ops::Range<usize>,
    /// N: training baskets with at least one item, over the gang.
    n_train: u64,
    /// The training baskets, kept for the evaluation only (`None` without a hold-out).
    train_baskets: Option<Csr>,
    /// Training (basket, item) entries.
    n_pairs: u64,
    test: Option<Csr>,
    item_keys: cooc_model::Keys,
    n_rows: u64,
    n_baskets: usize,
    crcs: Vec<codec::ChunkCrc>,
    fingerprint: share::Fingerprint,
    /// Under decay, the reference time the weights were computed to.
    decay_reference_us: Option<i64>,
    timings: Timings,
}

/// Reads this rank's share, splits the hold-out, applies the caps and builds the index of
/// the baskets this rank's rows need (steps 1-5).
fn count(plan: &TrainPlan, comm: &dyn Communicator) -> anyhow::Result<Counted> {
    let mut timings = Timings::default();
    let (rank, world) = (comm.rank(), comm.world());
    let engine = Engine::open(plan.backend, rank as usize)?;
    comm.bound_messages(plan.max_message_bytes());

    let read = Phase::start("read");
    let share::Share {
        data,
        crcs,
        fingerprint,
    } = share::read_share(plan, comm)?;
    timings.finish(read);
    tracing::info!(
        rows = data.n_rows,
        baskets = data.n_baskets,
        items = data.item_keys.len(),
        "rank {rank}/{world}: own baskets"
    );

    let count = Phase::start("count");
    let mut t = std::time::Instant::now();
    let n_items = data.item_keys.len();
    let keep = plan.holdout.then(|| eval::holdout_last(&data));
    let (train_baskets, test) = split_holdout(&data, keep.as_deref());
    let train_baskets = caps::apply(train_baskets, plan.max_basket, plan.sample_seed, rank);
    let decayed: Option<Decayed> = match plan.decay {
        Some(d) => Some(decay_weights(&data, keep.as_deref(), d, comm)?),
        None => None,
    };
    drop(keep);
    share::step("baskets", &mut t);
    // The row columns go now, not when `data` leaves scope (which is where the fields a
    // partial move leaves behind are dropped): from here on the baskets are all there is.
    let Interactions {
        basket,
        item,
        time,
        item_keys,
        n_rows,
        n_baskets,
        ..
    } = data;
    drop((basket, item, time));
    release_free_memory();
    log_baskets(&train_baskets);
    // N of lift and LLR: training baskets with at least one item (a basket whose only
    // order was held out does not count).
    let non_empty = (0..train_baskets.n_rows())
        .filter(|&b| train_baskets.row_len(b) > 0)
        .count() as u64;
    let n_pairs = train_baskets.nnz() as u64;
    // Only the evaluation reads the baskets after the index is built: without it they go
    // as soon as they have been routed (or, alone, packed).
    let mut train_baskets = Some(train_baskets);
    fn held(t: &Option<Csr>) -> &Csr {
        t.as_ref().expect("held until the index is built")
    }
    let (index, rows, n_train) = if world == 1 {
        let train = held(&train_baskets);
        let index = match &decayed {
            None => CoocIndex::build(train, n_items),
            Some(d) => {
                CoocIndex::build_weighted(train, n_items, None, 0..n_items, &d.weights, None)
            }
        };
        (index, 0..n_items, non_empty)
    } else {
        // Degrees, per-item work, (decayed) weighted degrees, then the basket count and
        // (decayed) its weighted sum, summed over the gang.
        let wd = if decayed.is_some() { n_items } else { 0 };
        let mut dw = vec![0u64; 2 * n_items + wd + 2];
        let (at_n, at_wn) = (2 * n_items + wd, 2 * n_items + wd + 1);
        dw[at_n] = non_empty;
        let train = held(&train_baskets);
        for b in 0..train.n_rows() {
            let row = train.row(b);
            let w = decayed.as_ref().map(|d| d.weights[b] as u64);
            for &i in row {
                dw[i as usize] += 1;
                dw[n_items + i as usize] += row.len() as u64;
                if let Some(w) = w {
                    dw[2 * n_items + i as usize] += w;
                }
            }
            if let Some(w) = w.filter(|_| !row.is_empty()) {
                dw[at_wn] += w;
            }
        }
        comm.all_reduce_sum("summing degrees", &mut dw)?;
        share::step("degrees", &mut t);
        let degree: Vec<u32> = dw[..n_items].iter().map(|&d| d as u32).collect();
        let n_train = dw[at_n];
        let blocks = balanced_blocks(&dw[n_items..2 * n_items], world);
        let weighted = decayed.as_ref().map(|_| Weighted {
            degree: dw[2 * n_items..2 * n_items + n_items].to_vec(),
            n: dw[at_wn],
        });
        drop(dw);
        let mine = blocks[rank as usize].clone();
        let index = match (&decayed, weighted) {
            (Some(d), Some(w)) => {
                let (local, lw) = route_weighted(
                    comm,
                    train,
                    &d.weights,
                    &blocks,
                    n_items,
                    plan.max_message_bytes(),
                )?;
                if test.is_none() {
                    train_baskets = None;
                }
                share::step("route baskets", &mut t);
                CoocIndex::build_weighted(&local, n_items, Some(degree), mine.clone(), &lw, Some(w))
            }
            _ => {
                let (packed, starts) = route_packed(
                    comm,
                    &mut train_baskets,
                    test.is_none(),
                    &blocks,
                    n_items,
                    plan.max_message_bytes(),
                )?;
                share::step("route baskets", &mut t);
                CoocIndex::from_packed(packed, starts, degree, mine.clone())
            }
        };
        (index, mine, n_train)
    };
    share::step("index", &mut t);
    timings.finish(count);
    Ok(Counted {
        engine,
        index,
        rows,
        n_train,
        train_baskets: train_baskets.filter(|_| test.is_some()),
        n_pairs,
        test,
        item_keys,
        n_rows,
        n_baskets,
        crcs,
        fingerprint,
        decay_reference_us: decayed.map(|d| d.reference_us),
        timings,
    })
}

/// Runs this rank's part of a training; every rank of the gang calls it with the same plan.
pub fn run(plan: &TrainPlan, comm: &dyn Communicator) -> anyhow::Result<RankReport> {
    let (rank, world) = (comm.rank(), comm.world());
    let Counted {
        engine,
        index,
        rows,
        n_train,
        train_baskets,
        n_pairs,
        test,
        item_keys,
        n_rows,
        n_baskets,
        crcs,
        fingerprint,
        decay_reference_us,
        mut timings,
    } = count(plan, comm)?;
    let n_items = item_keys.len();

    let topk = Phase::start("similarity/top-K");
    let scoring = Scoring {
        sim: plan.similarity,
        n_baskets: n_train,
        min_support: plan.min_support,
    };
    let block = engine.top_k(&index, scoring, plan.k, rows)?;
    let degree = index.degree().to_vec();
    drop(index);
    timings.finish(topk);

    comm.bound_messages(plan.max_model_message_bytes(n_items));
    let model = gather_model(comm, block, plan.holdout, &mut timings)?;
    let evaluation = match (test, &model, train_baskets) {
        (Some(test), Some(model), Some(train_baskets)) => Some(timings.time("evaluate", || {
            let holdout = eval::HoldOut::new(train_baskets, test, &degree, plan.k);
            eval::evaluate_partial(model, &holdout)
        })),
        _ => None,
    };
    let summary = Summary {
        n_rows,
        n_baskets: n_baskets as u64,
        n_pairs,
        crcs,
        evaluation,
    };
    let summaries = comm.gather(phase::SUMMARIES, summary.encode())?;

    let Some(all) = summaries else {
        // Not rank 0: wait for its word on the write.
        let bytes = comm.broadcast(phase::WRITE, 0, Vec::new())?;
        return match WriteOutcome::decode(&bytes)? {
            WriteOutcome::Written { written, path } => Ok(RankReport {
                rank,
                world,
                written,
                path,
                report: None,
                timings,
                traffic: comm.traffic(),
            }),
            WriteOutcome::Failed(f) => Err(f.into_peer_failed(0).into()),
        };
    };
    // Rank 0: build the model's metadata, check the gates, write, and say how it went.
    let result = (|| {
        let all = all
            .iter()
            .enumerate()
            .map(|(q, b)| Summary::decode(b, q as u32))
            .collect::<Result<Vec<_>, _>>()?;
        let model = model.ok_or_else(|| anyhow::anyhow!("rank 0 holds no model (a bug)"))?;
        let trained = publish::assemble(
            plan,
            item_keys,
            model,
            &all,
            &fingerprint,
            decay_reference_us,
            &degree,
        );
        publish::publish(plan, trained, world, timings.clone())
    })();
    let said = match &result {
        Ok(r) => WriteOutcome::Written {
            written: r.written.clone(),
            path: r.path.clone(),
        },
        Err(e) => WriteOutcome::Failed(Failure::of(e)),
    };
    comm.broadcast(phase::WRITE, 0, said.encode())?;
    let report = result?;
    Ok(RankReport {
        rank,
        world,
        written: report.written.clone(),
        path: report.path.clone(),
        timings: report.timings.clone(),
        report: Some(report),
        traffic: comm.traffic(),
    })
}

/// This rank's baskets' weights under time decay, and the reference time used.
struct Decayed {
    /// Per basket, in units of [`kernel::WEIGHT_ONE`]; 0 for a basket with no training row.
    weights: Vec<u32>,
    /// t_ref, microseconds since the epoch.
    reference_us: i64,
}

/// Each basket's weight 2^(-(t_ref - t_b) / half-life) in fixed point, t_b its latest
/// training row (`keep`: the training rows; all without a hold-out), t_ref the plan's
/// reference or the latest training row of the whole gang. A basket later than t_ref
/// weighs 1.
fn decay_weights(
    data: &Interactions,
    keep: Option<&[Vec<bool>]>,
    decay: Decay,
    comm: &dyn Communicator,
) -> anyhow::Result<Decayed> {
    anyhow::ensure!(
        data.n_rows == 0 || data.time.iter().map(Vec::len).sum::<usize>() == data.n_rows as usize,
        "time decay without a created_at per row (a bug: the plan must keep them)"
    );
    let mut latest = vec![i64::MIN; data.n_baskets];
    for (c, (bs, ts)) in data.basket.iter().zip(&data.time).enumerate() {
        for (r, (&b, &t)) in bs.iter().zip(ts).enumerate() {
            if keep.is_none_or(|k| k[c][r]) {
                let l = &mut latest[b as usize];
                *l = (*l).max(t);
            }
        }
    }
    let reference_us = match decay.reference_us {
        Some(r) => r,
        None => {
            let mine = latest.iter().copied().max().unwrap_or(i64::MIN);
            let all = comm.all_gather(phase::REFERENCE, &mine.to_le_bytes())?;
            all.iter()
                .enumerate()
                .map(|(q, b)| {
                    <[u8; 8]>::try_from(&b[..])
                        .map(i64::from_le_bytes)
                        .map_err(|_| {
                            anyhow::anyhow!(
                                "rank {q} sent {} bytes for its latest order, not 8",
                                b.len()
                            )
                        })
                })
                .try_fold(i64::MIN, |m, t| t.map(|t| m.max(t)))?
        }
    };
    let h = decay.half_life_us as f64;
    let one = kernel::WEIGHT_ONE as f64;
    let weights = latest
        .iter()
        .map(|&t| {
            if t == i64::MIN {
                return 0;
            }
            let age = reference_us.saturating_sub(t).max(0) as f64;
            ((-age / h).exp2() * one).round() as u32
        })
        .collect();
    Ok(Decayed {
        weights,
        reference_us,
    })
}

/// Training baskets and, with a hold-out (`keep`: the training rows), each basket's
/// held-out last order.
pub fn split_holdout(data: &Interactions, keep: Option<&[Vec<bool>]>) -> (Csr, Option<Csr>) {
    let train = Csr::from_pairs(data.n_baskets, &data.basket, &data.item, keep);
    let test = keep.map(|keep| {
        let flipped: Vec<Vec<bool>> = keep
            .iter()
            .map(|v| v.iter().map(|b| !b).collect())
            .collect();
        Csr::from_pairs(data.n_baskets, &data.basket, &data.item, Some(&flipped))
    });
    (train, test)
}

fn log_baskets(baskets: &Csr) {
    let sizes = (0..baskets.n_rows()).map(|b| baskets.row_len(b));
    let work: u64 = sizes.clone().map(|n| (n as u64).pow(2)).sum();
    let widest = sizes.max().unwrap_or(0);
    tracing::info!(
        pairs = baskets.nnz(),
        pair_updates = work,
        widest_basket = widest,
        "baskets built"
    );
}

/// Step 6: every rank's top-K block, in item order, on rank 0 (on every rank when `all`,
/// for the evaluation); `None` where not gathered.
fn gather_model(
    comm: &dyn Communicator,
    block: TopK,
    all: bool,
    timings: &mut Timings,
) -> anyhow::Result<Option<TopK>> {
    if comm.world() == 1 {
        return Ok(Some(block));
    }
    let phase = Phase::start("gather");
    let msg = codec::encode_topk(&block);
    drop(block);
    let blocks_in = if all {
        Some(comm.all_gather(phase::MODEL, &msg)?)
    } else {
        comm.gather(phase::MODEL, msg)?
    };
    let model = blocks_in
        .map(|blocks| -> anyhow::Result<TopK> {
            let mut model = TopK::default();
            for (q, bytes) in blocks.iter().enumerate() {
                model.append(codec::decode_topk(bytes, q as u32)?);
            }
            Ok(model)
        })
        .transpose()?;
    timings.finish(phase);
    Ok(model)
}

/// Hands the heap's free pages back to the system: the read phase's many mid-sized
/// buffers leave the allocator holding freed memory a rank would otherwise carry, unused,
/// through the count (glibc only; elsewhere the allocator decides).
fn release_free_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only returns free heap memory to the system.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// The rank owning each item's block.
fn item_owners(blocks: &[std::ops::Range<usize>], n_items: usize) -> Vec<u32> {
    let mut owner = vec![0u32; n_items];
    for (q, b) in blocks.iter().enumerate() {
        owner[b.clone()].fill(q as u32);
    }
    owner
}

/// Step 5's routes: `f(q, b, row)` for each training basket `b` of two or more items and
/// every rank `q` whose item block it touches, once each, ranks ascending. (A one-item
/// basket adds only to a degree, which is already global.)
fn for_each_route(baskets: &Csr, owner: &[u32], mut f: impl FnMut(usize, usize, &[u32])) {
    for b in 0..baskets.n_rows() {
        let row = baskets.row(b);
        if row.len() < 2 {
            continue;
        }
        // Items ascend and blocks are contiguous, so owners ascend too.
        let mut last = u32::MAX;
        for &i in row {
            let q = owner[i as usize];
            if q != last {
                f(q as usize, b, row);
                last = q;
            }
        }
    }
}

/// Step 5 without decay: the baskets this rank's rows need, laid out for the index
/// (`[len, items]` back to back) in one allocation sized beforehand: this rank's own first,
/// then each other rank's, decoded there from its bit-packed message ([`BasketsOut`]), each
/// message freed once decoded. `train` is released (`release`) as soon as the messages are built.
/// Returns the packed baskets and where each starts (ending with the total).
///
/// The order of the baskets changes no count, so the model is the one process's.
fn route_packed(
    comm: &dyn Communicator,
    train: &mut Option<Csr>,
    release: bool,
    blocks: &[std::ops::Range<usize>],
    n_items: usize,
    max_message: usize,
) -> anyhow::Result<(Vec<u32>, Vec<u64>)> {
    let (me, world) = (comm.rank() as usize, comm.world() as usize);
    let owner = item_owners(blocks, n_items);
    let baskets = train.as_ref().expect("the training baskets, until routed");
    let mut words = vec![0usize; world];
    for_each_route(baskets, &owner, |q, _, row| words[q] += 1 + row.len());
    // Sizes first, so that the baskets land in one allocation of the right size.
    let sizes = comm.all_to_all(
        phase::BASKET_SIZES,
        words
            .iter()
            .map(|&w| (w as u64).to_le_bytes().to_vec())
            .collect(),
    )?;
    let mut coming = vec![0usize; world];
    for (q, bytes) in sizes.iter().enumerate().filter(|&(q, _)| q != me) {
        let n = <[u8; 8]>::try_from(&bytes[..])
            .map(u64::from_le_bytes)
            .ok()
            .filter(|&n| n <= (max_message / 4) as u64);
        coming[q] = n.ok_or_else(|| crate::gang::wire::WireError {
            rank: q as u32,
            phase: phase::BASKET_SIZES,
            detail: format!(
                "{} bytes announcing the baskets, not one size within this run's bound",
                bytes.len()
            ),
        })? as usize;
    }
    let total = words[me] + coming.iter().sum::<usize>();
    tracing::debug!(
        own_words = words[me],
        sent_words = words.iter().sum::<usize>() - words[me],
        total_words = total,
        "routing baskets"
    );
    // A peer's last block is decoded whole (128 words) before the padding is cut off.
    let mut packed = crate::csr::with_capacity_huge::<u32>(total + 128);
    let mut out: Vec<BasketsOut> = (0..world)
        .map(|q| BasketsOut::with_capacity(if q == me { 0 } else { words[q] }))
        .collect();
    for_each_route(baskets, &owner, |q, _, row| {
        if q == me {
            packed.push(row.len() as u32);
            packed.extend_from_slice(row);
        } else {
            out[q].push(row);
        }
    });
    if release {
        *train = None;
    }
    let mut starts = Vec::new();
    codec::basket_starts(&packed, me as u32, n_items, 0, &mut starts)?;
    let got = comm.all_to_all(
        phase::BASKETS,
        out.into_iter().map(BasketsOut::encode).collect(),
    )?;
    for (q, bytes) in got.into_iter().enumerate().filter(|&(q, _)| q != me) {
        let n = codec::decode_baskets(
            &bytes,
            q as u32,
            n_items,
            coming[q],
            &mut packed,
            &mut starts,
        )?;
        if n != coming[q] {
            return Err(crate::gang::wire::WireError {
                rank: q as u32,
                phase: phase::BASKETS,
                detail: format!("{n} words of baskets after announcing {}", coming[q]),
            }
            .into());
        }
    }
    starts.push(packed.len() as u64);
    Ok((packed, starts))
}

/// Step 5 under decay: sends each training basket of two or more items to every rank
/// whose item block it touches, then the baskets' weights; returns the baskets this rank
/// received and their weights. `max_message` bounds the words a message may decode to.
fn route_weighted(
    comm: &dyn Communicator,
    baskets: &Csr,
    weights: &[u32],
    blocks: &[std::ops::Range<usize>],
    n_items: usize,
    max_message: usize,
) -> anyhow::Result<(Csr, Vec<u32>)> {
    let world = comm.world() as usize;
    let owner = item_owners(blocks, n_items);
    let mut out: Vec<BasketsOut> = (0..world).map(|_| BasketsOut::default()).collect();
    // Each destination's basket weights in the order its baskets go.
    let mut w_out: Vec<Vec<u32>> = vec![Vec::new(); world];
    for_each_route(baskets, &owner, |q, b, row| {
        out[q].push(row);
        w_out[q].push(weights[b]);
    });
    // This rank's own share is decoded like the others' (the decayed route is the rarer one;
    // one path keeps the baskets' order, which the weights follow, plain).
    let me = comm.rank() as usize;
    let own = std::mem::take(&mut out[me]).encode();
    let msgs = out.into_iter().map(BasketsOut::encode).collect();
    let got = comm.all_to_all(phase::BASKETS, msgs)?;
    let mut csr = Csr {
        offsets: vec![0],
        values: Vec::new(),
    };
    let mut per_rank = Vec::with_capacity(world);
    for (q, bytes) in got.iter().enumerate() {
        let before = csr.n_rows();
        let bytes = if q == me { &own } else { bytes };
        codec::append_baskets(&mut csr, bytes, q as u32, n_items, max_message / 4)?;
        per_rank.push(csr.n_rows() - before);
    }
    // The weights travel after the baskets, in the same order: as many from each rank as
    // baskets came from it.
    let own_weights = std::mem::take(&mut w_out[me]);
    let got = comm.all_to_all(phase::WEIGHTS, w_out.iter().map(wire::encode).collect())?;
    let mut all = Vec::with_capacity(csr.n_rows());
    for (q, bytes) in got.iter().enumerate() {
        let theirs: Vec<u32> = if q == me {
            own_weights.clone()
        } else {
            wire::decode_from(bytes, q as u32, phase::WEIGHTS)?
        };
        let n = per_rank[q];
        if theirs.len() != n {
            return Err(crate::gang::wire::WireError {
                rank: q as u32,
                phase: phase::WEIGHTS,
                detail: format!("{} weights for {n} baskets", theirs.len()),
            }
            .into());
        }
        all.extend(theirs);
    }
    Ok((csr, all))
}
