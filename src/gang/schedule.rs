//! Pure schedules of the gang's collectives: who owns what, and who sends which block to
//! whom at each step. No networking here; the transport only moves the bytes these name.
//!
//! - Generated customers are dealt to ranks by a stable hash of the customer key
//!   ([`basket_owner`]), so each rank generates only its own. (Baskets read from a file
//!   belong to the lowest rank that read rows of them: see `pipeline::share`.)
//! - Items are split into contiguous blocks balanced by non-zeros (not by item count: a few
//!   popular books carry most of the entries).
//! - Reduce-scatter and all-gather use shifted exchanges: at step `s` (1..W) rank `r` sends
//!   to `r + s` and receives from `r - s` (mod W). Every step is a permutation, so no rank
//!   receives from two peers at once, and each partial block travels exactly once, straight
//!   to its owner (a ring would forward sparse blocks through W-1 hops as they grow).
//! - Broadcast from a root follows a binomial tree: ceil(log2 W) rounds.

use std::ops::Range;

/// A rank in a gang of `world` ranks.
pub type Rank = u32;

/// Stable hash of an integer customer key (SplitMix64 finaliser): every rank and every
/// build computes the same owner.
pub fn hash_int_key(k: i64) -> u64 {
    let mut z = (k as u64).wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Stable hash of a string customer key.
pub fn hash_str_key(k: &[u8]) -> u64 {
    hash_int_key(crc32fast::hash(k) as i64 ^ ((k.len() as i64) << 32))
}

/// The rank that generates the customer with this key hash (multiply-shift: uniform, no
/// modulo bias).
pub fn basket_owner(hash: u64, world: u32) -> Rank {
    ((hash as u128 * world as u128) >> 64) as Rank
}

/// Splits items `0..weights.len()` into `world` contiguous blocks of about equal total
/// weight (a block may be empty when there are fewer items than ranks).
pub fn balanced_blocks(weights: &[u64], world: u32) -> Vec<Range<usize>> {
    let w = world.max(1) as u128;
    let total: u128 = weights.iter().map(|&x| x as u128).sum();
    let mut blocks = Vec::with_capacity(world as usize);
    let (mut start, mut acc) = (0usize, 0u128);
    let mut it = weights.iter().enumerate().peekable();
    for b in 1..=w {
        let target = total * b / w;
        let mut end = start;
        while let Some(&(i, &x)) = it.peek() {
            // Take the next item if that brings the cumulative weight closer to the target.
            let with = acc + x as u128;
            if b < w && with > target && with - target > target.saturating_sub(acc) {
                break;
            }
            acc = with;
            end = i + 1;
            it.next();
        }
        if b == w {
            end = weights.len();
        }
        blocks.push(start..end);
        start = end;
    }
    blocks
}

/// One step of a shifted exchange for one rank.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Exchange {
    /// The rank to send to in this step.
    pub send_to: Rank,
    /// The rank to receive from in this step.
    pub recv_from: Rank,
}

/// `schedule[s][r]`: rank `r`'s exchange at step `s` (W-1 steps).
///
/// Reduce-scatter: rank `r` sends its partial of block `send_to` and adds the partial of its
/// own block `r` that arrives from `recv_from`. All-gather: rank `r` sends its own block to
/// `send_to` and stores block `recv_from` that arrives from `recv_from`.
pub fn shifted_exchange(world: u32) -> Vec<Vec<Exchange>> {
    (1..world)
        .map(|s| {
            (0..world)
                .map(|r| Exchange {
                    send_to: (r + s) % world,
                    recv_from: (r + world - s) % world,
                })
                .collect()
        })
        .collect()
}

/// Binomial-tree broadcast from `root`: `rounds[k]` lists the (sender, receiver) pairs of
/// round `k`; a sender always received in an earlier round (or is the root).
pub fn broadcast_tree(world: u32, root: Rank) -> Vec<Vec<(Rank, Rank)>> {
    let mut rounds = Vec::new();
    let mut have = 1u32; // ranks root..root+have (relative) hold the data
    while have < world {
        let round = (0..have)
            .filter(|&rel| rel + have < world)
            .map(|rel| ((root + rel) % world, (root + rel + have) % world))
            .collect();
        rounds.push(round);
        have *= 2;
    }
    rounds
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A deterministic pseudo-random sequence for test data.
    fn lcg(seed: u64) -> impl FnMut() -> u64 {
        let mut x = seed;
        move || {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            x >> 33
        }
    }

    #[test]
    fn owners_cover_every_rank_evenly() {
        for world in 1..=8u32 {
            let mut counts = vec![0u32; world as usize];
            for k in 0..80_000i64 {
                let o = basket_owner(hash_int_key(k), world);
                assert!(o < world);
                counts[o as usize] += 1;
            }
            let expected = 80_000 / world;
            for c in counts {
                assert!(
                    c.abs_diff(expected) < expected / 20,
                    "world {world}: {c} vs {expected}"
                );
            }
        }
        assert_eq!(hash_str_key(b"alice"), hash_str_key(b"alice"));
        assert_ne!(hash_str_key(b"alice"), hash_str_key(b"bob"));
    }

    #[test]
    fn blocks_are_contiguous_complete_and_balanced() {
        let mut next = lcg(7);
        for world in 1..=8u32 {
            for n in [0usize, 1, 3, 7, 100, 1000] {
                // Heavy-tailed weights, like books' non-zeros.
                let weights: Vec<u64> = (0..n).map(|_| 1 + (next() % 100).pow(3) / 1000).collect();
                let blocks = balanced_blocks(&weights, world);
                assert_eq!(blocks.len(), world as usize);
                assert_eq!(blocks[0].start, 0);
                assert_eq!(blocks.last().unwrap().end, n);
                for w in blocks.windows(2) {
                    assert_eq!(w[0].end, w[1].start);
                }
                let total: u64 = weights.iter().sum();
                let heaviest = weights.iter().copied().max().unwrap_or(0);
                for b in &blocks {
                    let sum: u64 = weights[b.clone()].iter().sum();
                    assert!(
                        sum <= total / world as u64 + heaviest + 1,
                        "world {world} n {n}: block {b:?} weighs {sum} of {total}"
                    );
                }
            }
        }
    }

    #[test]
    fn shifted_exchange_reduce_scatters_and_all_gathers() {
        let mut next = lcg(11);
        for world in 1..=8u32 {
            let n_items = 50 + world as usize * 13;
            let weights: Vec<u64> = (0..n_items).map(|_| 1 + next() % 20).collect();
            let blocks = balanced_blocks(&weights, world);
            // Each rank's partial vector; the reduction is the element-wise sum.
            let partial: Vec<Vec<u64>> = (0..world)
                .map(|_| (0..n_items).map(|_| next() % 1000).collect())
                .collect();
            let sum: Vec<u64> = (0..n_items)
                .map(|i| partial.iter().map(|p| p[i]).sum())
                .collect();
            let schedule = shifted_exchange(world);
            assert_eq!(schedule.len(), world as usize - 1);
            // Reduce-scatter.
            let mut owned: Vec<Vec<u64>> = (0..world as usize)
                .map(|r| partial[r][blocks[r].clone()].to_vec())
                .collect();
            for step in &schedule {
                // A permutation: every rank sends once and receives once.
                let mut to: Vec<Rank> = step.iter().map(|e| e.send_to).collect();
                to.sort_unstable();
                assert_eq!(to, (0..world).collect::<Vec<_>>());
                for (r, e) in step.iter().enumerate() {
                    assert_eq!(
                        step[e.send_to as usize].recv_from, r as Rank,
                        "sends meet receives"
                    );
                    let msg = &partial[r][blocks[e.send_to as usize].clone()];
                    for (acc, x) in owned[e.send_to as usize].iter_mut().zip(msg) {
                        *acc += x;
                    }
                }
            }
            for r in 0..world as usize {
                assert_eq!(owned[r], sum[blocks[r].clone()], "world {world}: block {r}");
            }
            // All-gather.
            let mut full: Vec<Vec<Option<u64>>> = vec![vec![None; n_items]; world as usize];
            for r in 0..world as usize {
                for (i, v) in blocks[r].clone().zip(&owned[r]) {
                    full[r][i] = Some(*v);
                }
            }
            for step in &schedule {
                for (r, e) in step.iter().enumerate() {
                    for i in blocks[r].clone() {
                        full[e.send_to as usize][i] = Some(owned[r][i - blocks[r].start]);
                    }
                }
            }
            for f in &full {
                assert_eq!(f.iter().map(|x| x.unwrap()).collect::<Vec<_>>(), sum);
            }
        }
    }

    #[test]
    fn broadcast_reaches_everyone_once_from_holders() {
        for world in 1..=8u32 {
            for root in 0..world {
                let mut has = vec![false; world as usize];
                has[root as usize] = true;
                let rounds = broadcast_tree(world, root);
                assert_eq!(rounds.len(), (world as f64).log2().ceil() as usize);
                for round in &rounds {
                    let before = has.clone();
                    for &(from, to) in round {
                        assert!(before[from as usize], "{from} sends before it has the data");
                        assert!(!has[to as usize], "{to} receives twice");
                        has[to as usize] = true;
                    }
                }
                assert!(has.iter().all(|&h| h), "world {world} root {root}");
            }
        }
    }
}
