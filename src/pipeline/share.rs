//! Steps 1-3 of the pipeline: this rank's share of the input, whole baskets with global
//! item ids.
//!
//! 1. Read a share: a contiguous run of the orders file's chunks (or, for generated data,
//!    only the customers this rank owns; a basket file is read whole by every rank, which
//!    keeps every W-th basket). Ranks agree on how keys parse and on failures.
//! 2. Item keys: all-gather each rank's distinct keys and merge them into the global key
//!    order, so every rank numbers items as one process would.
//! 3. Basket owners: a basket belongs to the lowest rank that read rows of it, and its rows
//!    read elsewhere travel there, so a basket is never split and each customer's hold-out
//!    is local. Shares are contiguous, so in a file grouped by customer (or generated per
//!    rank) almost nothing moves but the key lists.
//!
//! With one rank, steps 2 and 3 are the identity and are skipped.

use rayon::prelude::*;

use super::agree::{agree, parse_agreed};
use super::codec::{self, phase, BasketKey, ChunkCrc, RowsIn, RowsOut};
use super::keys::{basket_owners, keep_every, merge_keys, translate};
use crate::gang::communicator::Communicator;
use crate::gang::schedule::{basket_owner, hash_int_key};
use crate::gang::wire::{self, WireError};
use crate::input::{self, assign_ids, Col, Interactions, OrdersFile, OrdersOptions, RawChunks};
use crate::plan::{Source, TrainPlan};
use cooc_model::Keys;

/// Where the input's fingerprint comes from.
pub(crate) enum Fingerprint {
    /// A file read in shares: its header's crc, and chunk crcs gathered from every rank.
    Shared {
        /// `(crc32, length)` of the header line.
        header: (u32, u64),
    },
    /// Known to every rank already.
    Known(String),
}

/// This rank's share.
pub(crate) struct Share {
    /// Whole baskets, densely numbered, with global item ids.
    pub(crate) data: Interactions,
    /// The input chunks this rank read.
    pub(crate) crcs: Vec<ChunkCrc>,
    pub(crate) fingerprint: Fingerprint,
}

/// Logs (at debug) how long the step since `t` took, and restarts `t`.
pub(crate) fn step(name: &str, t: &mut std::time::Instant) {
    tracing::debug!(
        step = name,
        seconds = t.elapsed().as_secs_f64(),
        peak_rss_mib = crate::progress::peak_rss().map_or(0, |b| b >> 20),
        "step done"
    );
    *t = std::time::Instant::now();
}

/// Step 1 from PostgreSQL: rank 0 opens a read-only snapshot, exports it and plans the
/// read; every other rank imports that snapshot (rank 0's transaction stays open until all
/// have); then each rank streams its share. Every rank sees exactly the rows committed
/// when rank 0 took the snapshot, whatever the shop writes meanwhile. The input's
/// fingerprint names the server, the relation and the snapshot (`xmin:xmax:xip`).
fn read_postgres(
    plan: &TrainPlan,
    comm: &dyn Communicator,
    db: &crate::postgres::PgSource,
    basket_by: input::BasketBy,
) -> anyhow::Result<(RawChunks, String)> {
    let rank = comm.rank();
    let session = agree(
        comm,
        "connecting to PostgreSQL",
        crate::postgres::Session::connect(db).map_err(anyhow::Error::from),
    )?;
    let need_time = plan.holdout || plan.decay.is_some();
    let exported = if rank == 0 {
        session
            .export(
                db,
                basket_by,
                need_time,
                plan.keys == input::KeyKind::String,
            )
            .map(Some)
            .map_err(anyhow::Error::from)
    } else {
        Ok(None)
    };
    let exported = agree(comm, "opening the snapshot", exported)?;
    let all = comm.all_gather(phase::SNAPSHOT, &wire::encode(&exported))?;
    let read: crate::postgres::ReadPlan =
        wire::decode_from::<Option<crate::postgres::ReadPlan>>(&all[0], 0, phase::SNAPSHOT)?
            .ok_or_else(|| WireError {
                rank: 0,
                phase: phase::SNAPSHOT,
                detail: "no snapshot from rank 0".into(),
            })?;
    drop(all);
    let imported = if rank == 0 {
        Ok(())
    } else {
        session.import(&read).map_err(anyhow::Error::from)
    };
    // Every rank holds the snapshot once this returns.
    agree(comm, "importing the snapshot", imported)?;
    let sql = read.share_sql(rank, comm.world());
    let lay = read.layout(basket_by, need_time);
    let initial = read.key_mode();
    let what = match &db.query {
        Some(_) => "--orders-query".to_owned(),
        None => db.table.clone(),
    };
    let name = format!("PostgreSQL {} ({what})", session.server());
    let raw = parse_agreed(comm, plan.keys, &name, |mode| {
        session.read(&sql, &lay, mode.union(initial), &name)
    })?;
    let fingerprint = format!("postgres:{}:{what}@{}", session.server(), read.visible);
    session.finish();
    Ok((raw, fingerprint))
}

/// Steps 1-3: this rank's baskets, whole, with global item ids.
pub(crate) fn read_share(plan: &TrainPlan, comm: &dyn Communicator) -> anyhow::Result<Share> {
    let (rank, world) = (comm.rank(), comm.world());
    let mut t = std::time::Instant::now();
    let opts = |basket_by| OrdersOptions {
        basket_by,
        need_time: plan.holdout || plan.decay.is_some(),
    };
    let (raw, fingerprint) = match &plan.source {
        Source::Baskets { path } => {
            // Basket files are small and have no customer column: every rank reads the file
            // and keeps every W-th basket.
            let data =
                input::read_baskets(path, plan.keys, plan.holdout).map_err(anyhow::Error::from);
            let data = agree(comm, "reading the input", data)?;
            let fingerprint = Fingerprint::Known(data.fingerprint.clone());
            let data = if world == 1 {
                data
            } else {
                keep_every(data, rank, world)
            };
            return Ok(Share {
                data,
                crcs: Vec::new(),
                fingerprint,
            });
        }
        Source::Orders { path, basket_by } => {
            let file = OrdersFile::open(path, opts(*basket_by), plan.chunk_bytes_for(path, world))
                .map_err(anyhow::Error::from);
            let file = agree(comm, "opening the input", file)?;
            let n = file.n_chunks();
            let name = path.display().to_string();
            let raw = parse_agreed(comm, plan.keys, &name, |mode| {
                file.parse(|c| c * world as usize / n == rank as usize, mode)
            })?;
            let header = file.header_crc();
            (raw, Fingerprint::Shared { header })
        }
        Source::Postgres { db, basket_by } => {
            let (raw, fingerprint) = read_postgres(plan, comm, db, *basket_by)?;
            (raw, Fingerprint::Known(fingerprint))
        }
        Source::Synthetic { spec, basket_by } => {
            let blocks = crate::gen::customer_csv(spec, |c| {
                basket_owner(hash_int_key(c as i64 + 1), world) == rank
            });
            let raw = parse_agreed(comm, plan.keys, "<generated>", |mode| {
                input::parse_generated(&blocks, opts(*basket_by), mode)
            })?;
            (raw, Fingerprint::Known(spec.fingerprint()))
        }
    };
    step("parse", &mut t);
    // Chunk crcs make a shared file's fingerprint; other sources know theirs.
    let crcs = match &fingerprint {
        Fingerprint::Shared { .. } => ChunkCrc::of(&raw),
        Fingerprint::Known(_) => Vec::new(),
    };
    if world == 1 {
        let data = raw.into_interactions(plan.needs_time(), String::new());
        step("ids", &mut t);
        return Ok(Share {
            data,
            crcs,
            fingerprint,
        });
    }
    let RawChunks {
        basket, item, time, ..
    } = raw;
    let time = if plan.needs_time() { time } else { Vec::new() };

    // Step 2: the global item key order.
    let (local_ids, local_keys) = assign_ids(item);
    let all = comm.all_gather(phase::KEYS, &codec::encode_keys(&local_keys))?;
    let parts = all
        .iter()
        .enumerate()
        .map(|(q, bytes)| codec::decode_keys(bytes, q as u32, phase::KEYS))
        .collect::<Result<Vec<_>, _>>()?;
    let global = merge_keys(parts);
    let to_global = translate(&local_keys, &global);
    let items: Vec<Vec<u32>> = local_ids
        .into_par_iter()
        .map(|ids| ids.iter().map(|&l| to_global[l as usize]).collect())
        .collect();
    step("item keys", &mut t);

    // Step 3: basket owners. Only higher ranks need this rank's keys: a basket belongs to
    // the lowest rank holding it.
    let (local_bids, bkeys) = assign_ids(basket);
    let mine = codec::encode_keys(&bkeys);
    let msgs = (0..world)
        .map(|q| if q > rank { mine.clone() } else { Vec::new() })
        .collect();
    let all = comm.all_to_all(phase::OWNERS, msgs)?;
    drop(mine);
    let others = all
        .iter()
        .enumerate()
        .take(rank as usize)
        .map(|(q, bytes)| codec::decode_keys(bytes, q as u32, phase::OWNERS))
        .collect::<Result<Vec<_>, _>>()?;
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
    let cap = local_bids.len() + world as usize;
    let mut b_cols: Vec<Vec<u32>> = Vec::with_capacity(cap);
    let mut i_cols: Vec<Vec<u32>> = Vec::with_capacity(cap);
    let mut t_cols: Vec<Vec<i64>> = Vec::with_capacity(cap);
    for (c, (bids, its)) in local_bids.into_iter().zip(items).enumerate() {
        let ts = time.get(c);
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
    let need_time = plan.needs_time();
    drop(time);
    let str_basket = matches!(bkeys, Keys::Str(_));
    let msgs = out.into_iter().map(|o| o.encode(str_basket)).collect();
    let got = comm.all_to_all(phase::ROWS, msgs)?;
    step("route rows", &mut t);
    for (q, bytes) in got.iter().enumerate() {
        let RowsIn {
            baskets,
            items,
            time,
        } = RowsOut::decode(bytes, q as u32)?;
        let bad = || WireError {
            rank: q as u32,
            phase: phase::ROWS,
            detail: "rows of a basket this rank does not own".into(),
        };
        let bids: Vec<usize> = match (&baskets, &bkeys) {
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
            _ if items.is_empty() => Vec::new(),
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
        i_cols.push(items);
        t_cols.push(time);
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
    Ok(Share {
        data,
        crcs,
        fingerprint,
    })
}
