//! Pure functions on keys that let ranks number items and own baskets exactly as one
//! process would: the global key order, local-to-global ids, basket owners, and the
//! every-W-th split of a basket file.

use cooc_model::Keys;

use crate::input::Interactions;

/// The sorted union of every rank's sorted keys. Integer keys and string keys never mix:
/// ranks agreed on the key mode while reading.
pub(crate) fn merge_keys(parts: Vec<Keys>) -> Keys {
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
pub(crate) fn translate(local: &Keys, global: &Keys) -> Vec<u32> {
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

/// The owner of each of this rank's baskets (`mine`, sorted): the lowest rank whose sorted
/// key list (`all[q]`, for every rank `q` below this one) holds it. Every rank computes the
/// same owner for a shared basket.
pub(crate) fn basket_owners(mine: &Keys, all: &[Keys], me: u32) -> Vec<u32> {
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
pub(crate) fn keep_every(data: Interactions, rank: u32, world: u32) -> Interactions {
    let (w, r) = (world as usize, rank as usize);
    let mut basket = Vec::new();
    let mut item = Vec::new();
    let mut time = Vec::new();
    for (c, (bs, is)) in data.basket.iter().zip(&data.item).enumerate() {
        let (mut b2, mut i2, mut t2) = (Vec::new(), Vec::new(), Vec::new());
        let ts = data.time.get(c);
        for (n, (&b, &i)) in bs.iter().zip(is).enumerate() {
            if b as usize % w == r {
                b2.push((b as usize / w) as u32);
                i2.push(i);
                if let Some(ts) = ts {
                    t2.push(ts[n]);
                }
            }
        }
        basket.push(b2);
        item.push(i2);
        if ts.is_some() {
            time.push(t2);
        }
    }
    let n_rows = item.iter().map(Vec::len).sum::<usize>() as u64;
    Interactions {
        basket,
        item,
        time,
        n_baskets: (data.n_baskets + w - 1 - r) / w,
        item_keys: data.item_keys,
        n_rows,
        fingerprint: data.fingerprint,
    }
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
