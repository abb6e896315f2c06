//! The training pipeline of one rank of a gang; with [`Solo`](super::communicator::Solo)
//! it is also the single-process path for generated input. It produces exactly the
//! artifact one process produces from the same input, for any world size.
//!
//! Data plan, per rank:
//! 1. Read a share of the input: every W-th chunk of the orders file (or, for generated
//!    data, only the customers this rank owns). Ranks agree on how keys parse (integers or
//!    strings, quoted CSV) and on failures: one rank's bad row stops every rank with exit 2.
//! 2. Item keys: all-gather each rank's distinct keys, merge into the global key order, so
//!    every rank numbers items as one process would.
//! 3. Rows to basket owners (`hash(customer) mod W`): a basket is never split, so the
//!    hold-out of each customer's last order is local.
//! 4. Degrees (the diagonal `C_ii`) and per-item work (`Σ_b∋i |b|`) are all-reduced; items
//!    are split into contiguous blocks of equal work.
//! 5. Each basket goes to the owners of the blocks its items fall in (at most min(|b|, W)
//!    copies). Rank q then holds every basket that touches its rows, so it counts and ranks
//!    its rows with the single-process kernel and the global degrees: exact. This moves the
//!    baskets (~4 bytes per entry) instead of partial co-occurrence rows (~8 bytes per
//!    co-occurring pair, ~20x more at size l).
//! 6. Top-K blocks are gathered (all-gathered when evaluating: every rank scores its own
//!    customers against the whole model); evaluation sums are exact fixed point.
//! 7. Rank 0 builds the metadata, checks the gates, writes the artifact, and broadcasts
//!    the outcome; every other rank exits only after that confirmation.

use std::path::PathBuf;

use cooc_serve::artifact::{Keys, ModelMeta};
use rayon::prelude::*;
use rustc_hash::FxHashMap;
use serde::{Deserialize, Serialize};

use super::comm::Traffic;
use super::communicator::Communicator;
use super::schedule::{balanced_blocks, basket_owner, hash_int_key};
use super::wire::{self, Reader, Writer};
use crate::backend::Engine;
use crate::csr::Csr;
use crate::error::{exit_code, InputError, PeerFailed};
use crate::eval::{self, EvalPartial};
use crate::input::{
    self, assign_ids, Col, Interactions, KeyMode, OrdersFile, OrdersOptions, ParseStop, RawChunks,
};
use crate::kernel::{CoocIndex, TopK};
use crate::progress::Phase;
use crate::train::{self, Source, TrainPlan, TrainReport, Trained};

/// Chunk size of a shared read: fixed, so every rank plans the same chunks whatever its
/// thread count. `COOC_CHUNK_BYTES` overrides it (every rank must use the same value).
const GANG_CHUNK: u64 = 8 << 20;

fn chunk_bytes() -> u64 {
    std::env::var("COOC_CHUNK_BYTES")
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|&v| v > 0)
        .unwrap_or(GANG_CHUNK)
}

/// Logs (at debug) how long the step since `t` took, and restarts `t`.
fn step(name: &str, t: &mut std::time::Instant) {
    tracing::debug!(
        step = name,
        seconds = t.elapsed().as_secs_f64(),
        "step done"
    );
    *t = std::time::Instant::now();
}

/// What one rank did.
#[derive(Debug)]
pub struct RankReport {
    pub rank: u32,
    pub world: u32,
    /// Rank 0's report of the write; on other ranks, the version rank 0 confirmed.
    pub written: String,
    pub path: PathBuf,
    /// Rank 0 only.
    pub report: Option<TrainReport>,
    pub timings: Vec<(&'static str, f64)>,
    pub traffic: Traffic,
}

impl RankReport {
    pub fn into_report(self) -> Option<TrainReport> {
        self.report
    }
}

/// Where the input's fingerprint comes from.
enum Fingerprint {
    /// A file read in shares: its header's crc, and chunk crcs gathered from every rank.
    Shared {
        header: (u32, u64),
    },
    Known(String),
}

/// Runs this rank's part of a training; every rank of the gang calls it with the same plan.
pub fn run(plan: &TrainPlan, comm: &dyn Communicator) -> anyhow::Result<RankReport> {
    let mut timings = Vec::new();
    let (rank, world) = (comm.rank(), comm.world());
    let engine = Engine::open(plan.backend, rank as usize)?;

    let phase = Phase::start("read");
    let (data, crcs, fingerprint) = read_share(plan, comm)?;
    timings.push(("read", phase.finish()));
    tracing::info!(
        rows = data.n_rows,
        baskets = data.n_baskets,
        items = data.item_keys.len(),
        "rank {rank}/{world}: own baskets"
    );

    let phase = Phase::start("count");
    let mut t = std::time::Instant::now();
    let n_items = data.item_keys.len();
    let (train_baskets, test) = train::split_holdout(&data, plan.holdout);
    step("baskets", &mut t);
    let Interactions {
        item_keys,
        n_rows,
        n_baskets,
        ..
    } = data;
    let mut dw = vec![0u64; 2 * n_items];
    for b in 0..train_baskets.n_rows() {
        let row = train_baskets.row(b);
        for &i in row {
            dw[i as usize] += 1;
            dw[n_items + i as usize] += row.len() as u64;
        }
    }
    comm.all_reduce_sum("summing degrees", &mut dw)?;
    step("degrees", &mut t);
    let degree: Vec<u32> = dw[..n_items].iter().map(|&d| d as u32).collect();
    let blocks = balanced_blocks(&dw[n_items..], world);
    drop(dw);
    let mine = blocks[rank as usize].clone();
    let local = route_baskets(comm, &train_baskets, &blocks, n_items)?;
    step("route baskets", &mut t);
    let index = CoocIndex::build_with_degree(&local, n_items, Some(degree.clone()), mine.clone());
    step("index", &mut t);
    drop(local);
    timings.push(("count", phase.finish()));

    let phase = Phase::start("similarity/top-K");
    let block = engine.top_k(&index, plan.similarity, plan.k, mine)?;
    drop(index);
    timings.push(("similarity/top-K", phase.finish()));

    let phase = Phase::start("gather");
    let msg = encode_topk(&block);
    let blocks_in: Option<Vec<Vec<u8>>> = if plan.holdout {
        Some(comm.all_gather("gathering the model", &msg)?)
    } else {
        comm.gather("gathering the model", msg)?
    };
    let model = blocks_in
        .map(|all| -> Result<TopK, wire::WireError> {
            let mut model = TopK::default();
            for (q, bytes) in all.iter().enumerate() {
                model.append(decode_topk(bytes, q as u32)?);
            }
            Ok(model)
        })
        .transpose()?;
    timings.push(("gather", phase.finish()));

    let evaluation = match (&test, &model) {
        (Some(test), Some(model)) => {
            let phase = Phase::start("evaluate");
            let e = eval::evaluate_partial(model, &train_baskets, test, &degree, plan.k);
            timings.push(("evaluate", phase.finish()));
            Some(e)
        }
        _ => None,
    };
    let summary = Summary {
        n_rows,
        n_baskets: n_baskets as u64,
        n_pairs: train_baskets.nnz() as u64,
        crcs,
        evaluation,
    };
    drop(train_baskets);
    drop(test);
    let summaries = comm.gather("gathering summaries", wire::encode(&summary))?;

    let outcome = match summaries {
        Some(all) => {
            // Rank 0: build the model's metadata, check the gates, write.
            let result = (|| {
                let all: Vec<Summary> = all
                    .iter()
                    .enumerate()
                    .map(|(q, b)| {
                        wire::decode(b).map_err(|detail| wire::WireError {
                            rank: q as u32,
                            phase: "gathering summaries",
                            detail,
                        })
                    })
                    .collect::<Result<_, _>>()?;
                let model = model.expect("rank 0 holds the model");
                let trained = assemble(plan, item_keys, model, &all, &fingerprint);
                let books = train::read_books(plan)?;
                train::publish(plan, trained, books.as_ref(), world, timings.clone())
            })();
            let said: Result<(String, String), (u8, String)> = match &result {
                Ok(r) => Ok((r.written.clone(), r.path.display().to_string())),
                Err(e) => Err((exit_code(e) as u8, format!("{e:#}"))),
            };
            comm.broadcast("confirming the write", 0, wire::encode(&said))?;
            let report = result?;
            RankReport {
                rank,
                world,
                written: report.written.clone(),
                path: report.path.clone(),
                timings: report.timings.clone(),
                report: Some(report),
                traffic: comm.traffic(),
            }
        }
        None => {
            let bytes = comm.broadcast("confirming the write", 0, Vec::new())?;
            let said: Result<(String, String), (u8, String)> =
                wire::decode(&bytes).map_err(|detail| wire::WireError {
                    rank: 0,
                    phase: "confirming the write",
                    detail,
                })?;
            match said {
                Ok((written, path)) => RankReport {
                    rank,
                    world,
                    written,
                    path: path.into(),
                    report: None,
                    timings,
                    traffic: comm.traffic(),
                },
                Err((code, message)) => {
                    return Err(PeerFailed {
                        rank: 0,
                        message,
                        code,
                    }
                    .into())
                }
            }
        }
    };
    Ok(outcome)
}

/// What rank 0 needs from every rank besides its top-K block.
#[derive(Debug, Serialize, Deserialize)]
struct Summary {
    n_rows: u64,
    n_baskets: u64,
    n_pairs: u64,
    /// `(chunk, crc32, len)` of the input chunks this rank read.
    crcs: Vec<(u32, u32, u64)>,
    evaluation: Option<EvalPartial>,
}

/// Rank 0: the model as one process would have built it.
fn assemble(
    plan: &TrainPlan,
    keys: Keys,
    model: TopK,
    all: &[Summary],
    fingerprint: &Fingerprint,
) -> Trained {
    let dataset_fingerprint = match fingerprint {
        Fingerprint::Known(f) => f.clone(),
        Fingerprint::Shared { header } => {
            let mut crcs: Vec<(u32, u32, u64)> =
                all.iter().flat_map(|s| s.crcs.iter().copied()).collect();
            crcs.sort_unstable();
            input::file_fingerprint(*header, crcs.iter().map(|&(_, c, l)| (c, l)))
        }
    };
    let evaluation = all
        .iter()
        .filter_map(|s| s.evaluation.as_ref())
        .fold(None::<EvalPartial>, |acc, e| match acc {
            None => Some(e.clone()),
            Some(mut a) => {
                a.merge(e);
                Some(a)
            }
        })
        .map(|e| e.finish(plan.k));
    let meta = ModelMeta {
        similarity: plan.similarity,
        top_k: plan.k as u32,
        n_items: keys.len() as u64,
        n_baskets: all.iter().map(|s| s.n_baskets).sum(),
        n_rows: all.iter().map(|s| s.n_rows).sum(),
        n_pairs: all.iter().map(|s| s.n_pairs).sum(),
        nnz: model.indices.len() as u64,
        dataset_fingerprint,
        avg_top1_score: model.avg_top1(),
        evaluation,
    };
    Trained {
        keys,
        topk: model,
        meta,
    }
}

/// Stops every rank when any rank failed: this rank's own error first, else the first
/// failed peer's, so that all ranks exit with the same class of code.
fn agree<T>(
    comm: &dyn Communicator,
    phase: &'static str,
    local: anyhow::Result<T>,
) -> anyhow::Result<T> {
    let status: Option<(u8, String)> = local
        .as_ref()
        .err()
        .map(|e| (exit_code(e) as u8, format!("{e:#}")));
    let all = comm.all_gather(phase, &wire::encode(&status))?;
    let value = local?;
    for (q, bytes) in all.iter().enumerate() {
        let status: Option<(u8, String)> =
            wire::decode(bytes).map_err(|detail| wire::WireError {
                rank: q as u32,
                phase,
                detail,
            })?;
        if let Some((code, message)) = status {
            return Err(PeerFailed {
                rank: q as u32,
                message,
                code,
            }
            .into());
        }
    }
    Ok(value)
}

type Share = (Interactions, Vec<(u32, u32, u64)>, Fingerprint);

/// Steps 1-3: this rank's baskets, whole, with global item ids.
fn read_share(plan: &TrainPlan, comm: &dyn Communicator) -> anyhow::Result<Share> {
    let (rank, world) = (comm.rank(), comm.world());
    let t0 = std::time::Instant::now();
    let (raw, fingerprint) = match &plan.source {
        Source::Baskets { path } => {
            // Basket files are small and have no customer column: every rank reads the file
            // and keeps every W-th basket.
            let data = agree(comm, "reading the input", Ok(input::read_baskets(path)?))?;
            let fp = data.fingerprint.clone();
            return Ok((
                keep_every(data, rank, world),
                Vec::new(),
                Fingerprint::Known(fp),
            ));
        }
        Source::Orders { path, basket_by } => {
            let opts = OrdersOptions {
                basket_by: *basket_by,
                need_time: plan.holdout,
            };
            let file = OrdersFile::open(path, opts, chunk_bytes()).map_err(anyhow::Error::from);
            let file = agree(comm, "opening the input", file)?;
            let raw = parse_agreed(comm, |mode| {
                file.parse(
                    |c| c * world as usize / file.n_chunks() == rank as usize,
                    mode,
                )
            })?;
            (
                raw,
                Fingerprint::Shared {
                    header: file.header_crc(),
                },
            )
        }
        Source::Synthetic { spec, basket_by } => {
            let opts = OrdersOptions {
                basket_by: *basket_by,
                need_time: plan.holdout,
            };
            let blocks = crate::gen::customer_csv(spec, |c| {
                basket_owner(hash_int_key(c as i64 + 1), world) == rank
            });
            let raw = parse_agreed(comm, |_| input::parse_generated(&blocks, opts))?;
            (raw, Fingerprint::Known(spec.fingerprint()))
        }
    };
    step("parse", &mut { t0 });
    let need_time = plan.holdout
        || matches!(
            plan.source,
            Source::Orders {
                basket_by: crate::input::BasketBy::Window(_),
                ..
            } | Source::Synthetic {
                basket_by: crate::input::BasketBy::Window(_),
                ..
            }
        );
    let mut t = std::time::Instant::now();
    let RawChunks {
        basket,
        item,
        time,
        crcs,
    } = raw;

    // Step 2: the global item key order.
    let (local_ids, local_keys) = assign_ids(item);
    let all = comm.all_gather("merging item keys", &encode_keys(&local_keys))?;
    let mut parts = Vec::with_capacity(all.len());
    for (q, bytes) in all.iter().enumerate() {
        parts.push(decode_keys(bytes, q as u32)?);
    }
    let global = merge_keys(parts);
    let to_global = translate(&local_keys, &global);
    let items: Vec<Vec<u32>> = local_ids
        .into_par_iter()
        .map(|ids| ids.iter().map(|&l| to_global[l as usize]).collect())
        .collect();
    step("item keys", &mut t);

    // Step 3: every basket gets one owner, the lowest rank that read rows of it, and rows
    // of a basket read elsewhere travel to it. Shares are contiguous, so in a file grouped
    // by customer (or generated per rank) almost nothing moves: only the key lists do.
    let (local_bids, bkeys) = assign_ids(basket);
    // Only higher ranks need this rank's keys: a basket belongs to the lowest rank holding it.
    let mine = encode_keys(&bkeys);
    let msgs = (0..world)
        .map(|q| if q > rank { mine.clone() } else { Vec::new() })
        .collect();
    let all = comm.all_to_all("agreeing on basket owners", msgs)?;
    drop(mine);
    let mut others = Vec::with_capacity(all.len());
    for (q, bytes) in all.iter().enumerate().take(rank as usize) {
        others.push(decode_keys(bytes, q as u32)?);
    }
    drop(all);
    let owner = basket_owners(&bkeys, &others, rank);
    drop(others);
    step("basket owners", &mut t);
    let mut out: Vec<RowsOut> = (0..world).map(|_| RowsOut::default()).collect();
    // Owned baskets, renumbered densely.
    let mut renum = vec![u32::MAX; owner.len()];
    let mut n_owned = 0u32;
    for (b, &o) in owner.iter().enumerate() {
        if o == rank {
            renum[b] = n_owned;
            n_owned += 1;
        }
    }
    let mut b_cols: Vec<Vec<u32>> = Vec::with_capacity(local_bids.len() + world as usize);
    let mut i_cols: Vec<Vec<u32>> = Vec::with_capacity(local_bids.len() + world as usize);
    let mut t_cols: Vec<Vec<i64>> = Vec::with_capacity(local_bids.len() + world as usize);
    for (c, (bids, its)) in local_bids.into_iter().zip(items).enumerate() {
        let ts = time.get(c).filter(|_| need_time);
        if bids.iter().all(|&b| owner[b as usize] == rank) {
            b_cols.push(bids.iter().map(|&b| renum[b as usize]).collect());
            i_cols.push(its);
            t_cols.push(ts.cloned().unwrap_or_default());
            continue;
        }
        let (mut kb, mut ki, mut kt) = (Vec::new(), Vec::new(), Vec::new());
        for (i, (&b, &item)) in bids.iter().zip(&its).enumerate() {
            let t = ts.map(|t| t[i]);
            let o = owner[b as usize];
            if o == rank {
                kb.push(renum[b as usize]);
                ki.push(item);
                kt.extend(t);
            } else {
                let key = match &bkeys {
                    Keys::Int(v) => BasketKey::Int(v[b as usize]),
                    Keys::Str(v) => BasketKey::Str(v[b as usize].as_bytes()),
                };
                out[o as usize].push(key, item, t);
            }
        }
        b_cols.push(kb);
        i_cols.push(ki);
        t_cols.push(kt);
    }
    drop(time);
    let msgs = out
        .into_iter()
        .map(|o| o.encode(matches!(bkeys, Keys::Str(_))))
        .collect();
    let got = comm.all_to_all("routing rows to basket owners", msgs)?;
    step("route rows", &mut t);
    for (q, bytes) in got.iter().enumerate() {
        let (col, its, ts) = RowsOut::decode(bytes, q as u32)?;
        let bad = || wire::WireError {
            rank: q as u32,
            phase: "routing rows to basket owners",
            detail: "rows of a basket this rank does not own".into(),
        };
        let bids: Vec<usize> = match (&col, &bkeys) {
            (Col::Int(v), Keys::Int(mine)) => v
                .iter()
                .map(|k| mine.binary_search(k).map_err(|_| bad()))
                .collect::<Result<Vec<_>, _>>()?,
            (Col::Str { ids, keys }, Keys::Str(mine)) => ids
                .iter()
                .map(|&i| {
                    let k = String::from_utf8_lossy(&keys[i as usize]);
                    mine.binary_search_by(|m| m.as_str().cmp(&k))
                        .map_err(|_| bad())
                })
                .collect::<Result<Vec<_>, _>>()?,
            _ if its.is_empty() => Vec::new(),
            _ => return Err(bad().into()),
        };
        let mut mapped = Vec::with_capacity(bids.len());
        for b in bids {
            match renum[b] {
                u32::MAX => return Err(bad().into()),
                r => mapped.push(r),
            }
        }
        b_cols.push(mapped);
        i_cols.push(its);
        t_cols.push(ts);
    }
    drop(got);
    let n_rows = i_cols.iter().map(Vec::len).sum::<usize>() as u64;
    let data = Interactions {
        basket: b_cols,
        item: i_cols,
        time: if need_time { t_cols } else { Vec::new() },
        n_baskets: n_owned as usize,
        item_keys: global,
        n_rows,
        fingerprint: String::new(),
    };
    Ok((data, crcs, fingerprint))
}

/// Parses a share until every rank's share parses under the same key mode (a rank that
/// meets quotes or non-integer keys makes every rank reparse), or some rank's input is bad.
fn parse_agreed(
    comm: &dyn Communicator,
    parse: impl Fn(KeyMode) -> Result<RawChunks, ParseStop>,
) -> anyhow::Result<RawChunks> {
    let mut mode = KeyMode::default();
    loop {
        let result = parse(mode);
        let stop = result.as_ref().err().cloned();
        let all = comm.all_gather("reading the input", &wire::encode(&stop))?;
        let mut stops = Vec::with_capacity(all.len());
        for (q, bytes) in all.iter().enumerate() {
            let s: Option<ParseStop> = wire::decode(bytes).map_err(|detail| wire::WireError {
                rank: q as u32,
                phase: "reading the input",
                detail,
            })?;
            stops.push(s);
        }
        if let Some(ParseStop::Bad(msg)) = &stop {
            return Err(InputError::Parsed(msg.clone()).into());
        }
        if let Some((q, msg)) = stops.iter().enumerate().find_map(|(q, s)| match s {
            Some(ParseStop::Bad(m)) => Some((q, m.clone())),
            _ => None,
        }) {
            return Err(PeerFailed {
                rank: q as u32,
                message: msg,
                code: 2,
            }
            .into());
        }
        let before = mode;
        for s in stops.iter().flatten() {
            mode.learn(s);
        }
        if mode == before {
            let raw = result.map_err(|s| anyhow::anyhow!("reading the input: {s:?}"))?;
            return Ok(raw);
        }
    }
}

/// The owner of each of this rank's baskets (`mine`, sorted): the lowest rank whose sorted
/// key list (`all[q]`, for every rank `q` below this one) holds it. Every rank computes the
/// same owner for a shared basket.
fn basket_owners(mine: &Keys, all: &[Keys], me: u32) -> Vec<u32> {
    fn mark<T: Ord>(mine: &[T], theirs: &[T], q: u32, owner: &mut [u32]) {
        let mut j = 0usize;
        for (i, k) in mine.iter().enumerate() {
            while j < theirs.len() && theirs[j] < *k {
                j += 1;
            }
            if j < theirs.len() && theirs[j] == *k && owner[i] > q {
                owner[i] = q;
            }
        }
    }
    let mut owner = vec![me; mine.len()];
    for (q, theirs) in all.iter().enumerate().take(me as usize) {
        match (mine, theirs) {
            (Keys::Int(m), Keys::Int(t)) => mark(m, t, q as u32, &mut owner),
            (Keys::Str(m), Keys::Str(t)) => mark(m, t, q as u32, &mut owner),
            // Ranks agreed on the key mode; an empty share may still say "integers".
            _ => {}
        }
    }
    owner
}

/// Keeps baskets `rank, rank + W, ...`, renumbered densely.
fn keep_every(data: Interactions, rank: u32, world: u32) -> Interactions {
    let (w, r) = (world as usize, rank as usize);
    let mut basket = Vec::new();
    let mut item = Vec::new();
    for (bs, is) in data.basket.iter().zip(&data.item) {
        let (mut b2, mut i2) = (Vec::new(), Vec::new());
        for (&b, &i) in bs.iter().zip(is) {
            if b as usize % w == r {
                b2.push((b as usize / w) as u32);
                i2.push(i);
            }
        }
        basket.push(b2);
        item.push(i2);
    }
    let n_rows = item.iter().map(Vec::len).sum::<usize>() as u64;
    Interactions {
        basket,
        item,
        time: Vec::new(),
        n_baskets: (data.n_baskets + w - 1 - r) / w,
        item_keys: data.item_keys,
        n_rows,
        fingerprint: data.fingerprint,
    }
}

enum BasketKey<'a> {
    Int(i64),
    Str(&'a [u8]),
}

/// Rows bound for one rank.
#[derive(Default)]
struct RowsOut {
    ints: Vec<i64>,
    dict: FxHashMap<Box<[u8]>, u32>,
    strs: Vec<Box<[u8]>>,
    str_ids: Vec<u32>,
    items: Vec<u32>,
    time: Vec<i64>,
}

impl RowsOut {
    fn push(&mut self, key: BasketKey, item: u32, time: Option<i64>) {
        match key {
            BasketKey::Int(k) => self.ints.push(k),
            BasketKey::Str(k) => {
                let next = self.strs.len() as u32;
                let id = *self.dict.entry(k.into()).or_insert(next);
                if id == next {
                    self.strs.push(k.into());
                }
                self.str_ids.push(id);
            }
        }
        self.items.push(item);
        if let Some(t) = time {
            self.time.push(t);
        }
    }

    fn encode(self, str_basket: bool) -> Vec<u8> {
        let mut w = Writer::new();
        w.value(&str_basket);
        if str_basket {
            // Keys of rows whose basket parsed as an integer (windows) travel as text too.
            let mut strs: Vec<Vec<u8>> = self.strs.into_iter().map(Into::into).collect();
            let mut ids = self.str_ids;
            if ids.is_empty() && !self.ints.is_empty() {
                let mut buf = itoa::Buffer::new();
                for (n, k) in self.ints.iter().enumerate() {
                    strs.push(buf.format(*k).as_bytes().to_vec());
                    ids.push(n as u32);
                }
            }
            w.value(&strs).slice(&ids);
        } else {
            w.slice(&self.ints);
        }
        w.slice(&self.items).slice(&self.time).finish()
    }

    fn decode(bytes: &[u8], from: u32) -> Result<(Col, Vec<u32>, Vec<i64>), wire::WireError> {
        let phase = "routing rows to basket owners";
        let mut r = Reader::new(bytes, from, phase);
        let is_str: bool = r.value()?;
        let col = if is_str {
            let keys: Vec<Vec<u8>> = r.value()?;
            let ids: Vec<u32> = r.slice()?;
            if ids.iter().any(|&i| i as usize >= keys.len()) {
                return Err(wire::WireError {
                    rank: from,
                    phase,
                    detail: "a basket key id out of range".into(),
                });
            }
            Col::Str {
                ids,
                keys: keys.into_iter().map(Into::into).collect(),
            }
        } else {
            Col::Int(r.slice()?)
        };
        let items: Vec<u32> = r.slice()?;
        let time: Vec<i64> = r.slice()?;
        if col.len() != items.len() || !(time.is_empty() || time.len() == items.len()) {
            return Err(wire::WireError {
                rank: from,
                phase,
                detail: "columns of different lengths".into(),
            });
        }
        Ok((col, items, time))
    }
}

fn encode_keys(keys: &Keys) -> Vec<u8> {
    match keys {
        Keys::Int(v) => Writer::new().value(&false).slice(v).finish(),
        Keys::Str(v) => Writer::new().value(&true).value(v).finish(),
    }
}

fn decode_keys(bytes: &[u8], from: u32) -> Result<Keys, wire::WireError> {
    let mut r = Reader::new(bytes, from, "merging item keys");
    Ok(if r.value::<bool>()? {
        Keys::Str(r.value()?)
    } else {
        Keys::Int(r.slice()?)
    })
}

/// The sorted union of every rank's sorted keys. Integer keys and string keys never mix:
/// ranks agreed on the key mode while reading.
fn merge_keys(parts: Vec<Keys>) -> Keys {
    if parts.iter().any(|k| matches!(k, Keys::Str(_))) {
        let mut all: Vec<String> = parts
            .into_iter()
            .flat_map(|k| match k {
                Keys::Str(v) => v,
                Keys::Int(v) => v.iter().map(|x| x.to_string()).collect(),
            })
            .collect();
        all.sort_unstable();
        all.dedup();
        Keys::Str(all)
    } else {
        let mut all: Vec<i64> = parts
            .into_iter()
            .flat_map(|k| match k {
                Keys::Int(v) => v,
                Keys::Str(_) => unreachable!("checked above"),
            })
            .collect();
        all.sort_unstable();
        all.dedup();
        Keys::Int(all)
    }
}

/// Position in `global` of each of `local`'s keys (both sorted, `local` ⊆ `global`).
fn translate(local: &Keys, global: &Keys) -> Vec<u32> {
    fn walk<T: Ord>(local: &[T], global: &[T]) -> Vec<u32> {
        let mut g = 0usize;
        local
            .iter()
            .map(|k| {
                while global[g] < *k {
                    g += 1;
                }
                g as u32
            })
            .collect()
    }
    match (local, global) {
        (Keys::Int(l), Keys::Int(g)) => walk(l, g),
        (Keys::Str(l), Keys::Str(g)) => walk(l, g),
        (Keys::Int(l), Keys::Str(g)) => {
            let mut l: Vec<(String, usize)> = l
                .iter()
                .enumerate()
                .map(|(n, x)| (x.to_string(), n))
                .collect();
            l.sort_unstable();
            let pos = walk(&l.iter().map(|p| p.0.clone()).collect::<Vec<_>>(), g);
            let mut out = vec![0u32; l.len()];
            for ((_, n), p) in l.iter().zip(pos) {
                out[*n] = p;
            }
            out
        }
        (Keys::Str(_), Keys::Int(_)) => unreachable!("string keys make the global keys strings"),
    }
}

/// Step 5: sends each training basket of two or more items to every rank whose item block
/// it touches; returns the baskets this rank received. (A one-item basket adds only to a
/// degree, which is already global.)
fn route_baskets(
    comm: &dyn Communicator,
    baskets: &Csr,
    blocks: &[std::ops::Range<usize>],
    n_items: usize,
) -> anyhow::Result<Csr> {
    let world = comm.world() as usize;
    let mut owner = vec![0u32; n_items];
    for (q, b) in blocks.iter().enumerate() {
        owner[b.clone()].fill(q as u32);
    }
    let mut out: Vec<Vec<u32>> = vec![Vec::new(); world];
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
                out[q as usize].push(row.len() as u32);
                out[q as usize].extend_from_slice(row);
                last = q;
            }
        }
    }
    // This rank's own share stays here; the others travel as raw little-endian words.
    let me = comm.rank() as usize;
    let own = std::mem::take(&mut out[me]);
    let msgs = out
        .into_iter()
        .map(|v| bytemuck::cast_slice::<u32, u8>(&v).to_vec())
        .collect();
    let got = comm.all_to_all("routing baskets to row owners", msgs)?;
    let phase = "routing baskets to row owners";
    let mut parts: Vec<(u32, std::borrow::Cow<[u32]>)> = Vec::with_capacity(world);
    for (q, bytes) in got.iter().enumerate() {
        if q == me {
            parts.push((q as u32, std::borrow::Cow::Borrowed(&own[..])));
            continue;
        }
        if bytes.len() % 4 != 0 {
            anyhow::bail!(wire::WireError {
                rank: q as u32,
                phase,
                detail: format!("{} bytes are not whole words", bytes.len()),
            });
        }
        // Zero-copy when the buffer is aligned for u32 (allocators give at least that).
        let words = match bytemuck::try_cast_slice::<u8, u32>(bytes) {
            Ok(w) => std::borrow::Cow::Borrowed(w),
            Err(_) => std::borrow::Cow::Owned(bytemuck::pod_collect_to_vec(bytes)),
        };
        parts.push((q as u32, words));
    }
    let total: usize = parts.iter().map(|p| p.1.len()).sum();
    let mut csr = Csr {
        offsets: vec![0],
        values: Vec::with_capacity(total),
    };
    for (q, packed) in &parts {
        let mut at = 0usize;
        while at < packed.len() {
            let len = packed[at] as usize;
            let row = packed.get(at + 1..at + 1 + len).filter(|r| {
                r.windows(2).all(|w| w[0] < w[1])
                    && r.last().is_none_or(|&x| (x as usize) < n_items)
            });
            let Some(row) = row else {
                anyhow::bail!(wire::WireError {
                    rank: *q,
                    phase,
                    detail: format!("a bad basket at word {at}"),
                });
            };
            csr.values.extend_from_slice(row);
            csr.offsets.push(csr.values.len() as u64);
            at += 1 + len;
        }
    }
    Ok(csr)
}

fn encode_topk(t: &TopK) -> Vec<u8> {
    Writer::new()
        .slice(&t.indptr)
        .slice(&t.indices)
        .slice(&t.scores)
        .finish()
}

fn decode_topk(bytes: &[u8], from: u32) -> Result<TopK, wire::WireError> {
    let phase = "gathering the model";
    let mut r = Reader::new(bytes, from, phase);
    let t = TopK {
        indptr: r.slice()?,
        indices: r.slice()?,
        scores: r.slice()?,
    };
    let ok = t.indptr.first().is_none_or(|&p| p == 0)
        && t.indptr.windows(2).all(|w| w[0] <= w[1])
        && t.indptr.last().map_or(0, |&p| p as usize) == t.indices.len()
        && t.indices.len() == t.scores.len();
    if !ok {
        return Err(wire::WireError {
            rank: from,
            phase,
            detail: "inconsistent top-K arrays".into(),
        });
    }
    Ok(t)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_merge_in_global_order_and_translate() {
        let a = Keys::Int(vec![3, 10, 42]);
        let b = Keys::Int(vec![1, 10, 99]);
        let g = merge_keys(vec![a.clone(), b.clone()]);
        assert_eq!(g, Keys::Int(vec![1, 3, 10, 42, 99]));
        assert_eq!(translate(&a, &g), vec![1, 2, 3]);
        assert_eq!(translate(&b, &g), vec![0, 2, 4]);
        let s = Keys::Str(vec!["10".into(), "x".into()]);
        let g = merge_keys(vec![Keys::Int(vec![2, 10]), s.clone()]);
        assert_eq!(g, Keys::Str(vec!["10".into(), "2".into(), "x".into()]));
        assert_eq!(translate(&Keys::Int(vec![2, 10]), &g), vec![1, 0]);
        assert_eq!(translate(&s, &g), vec![0, 2]);
    }

    #[test]
    fn every_wth_basket_is_kept_and_renumbered() {
        let data = Interactions {
            basket: vec![vec![0, 1, 2, 3, 4]],
            item: vec![vec![5, 6, 7, 8, 9]],
            time: Vec::new(),
            n_baskets: 5,
            item_keys: Keys::Int(vec![]),
            n_rows: 5,
            fingerprint: String::new(),
        };
        let r1 = keep_every(data, 1, 2);
        assert_eq!(r1.basket, vec![vec![0, 1]]);
        assert_eq!(r1.item, vec![vec![6, 8]]);
        assert_eq!(r1.n_baskets, 2);
    }
}
