//! Basket recommendations: what else to suggest for a set of seed items (a cart, a
//! customer's history), with excluded items and popularity backfill.
//!
//! Owns the scoring rule and the answer's shape, shared by the server's `:recommend`
//! route and `cooc recommend`, so that both answer alike:
//! - a candidate's score is the sum, over the seeds, of the seed's weight times the
//!   candidate's stored similarity to that seed (SAR's item-based scoring; weight 1 each
//!   unless given). A seed listed twice counts twice.
//! - never a seed, an excluded item or a duplicate; ties by score descending, then item
//!   (key) ascending, as everywhere in cooc.
//! - fewer than `k` similar items are topped up with the most-bought items of the training
//!   data (the artifact's popularity list), after every similar one.

use serde::Serialize;

use crate::artifact::Model;
use crate::keys::Key;

/// Where a recommended item came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Source {
    /// Similar to at least one seed.
    Similar,
    /// Popularity backfill: among the most-bought items of the training data.
    Popular,
}

/// One recommended item.
#[derive(Debug, Clone, PartialEq)]
pub struct Pick {
    /// The item.
    pub item: u32,
    /// The summed weighted similarity to the seeds; 0 for popularity backfill.
    pub score: f32,
    /// Similar or popular.
    pub source: Source,
    /// The seeds that contributed, largest contribution first (ties: item ascending).
    pub because: Vec<u32>,
}

/// The recommendations for `seeds` (item, weight; weights positive and finite), never
/// returning a seed or an item of `exclude`: at most `k` similar items, then popular ones
/// up to `k` when the model lists popularity (a version 1 artifact does not).
pub fn recommend(model: &Model, seeds: &[(u32, f32)], exclude: &[u32], k: usize) -> Vec<Pick> {
    // Seeds in item order, a repeated seed's weights summed: the answer does not depend
    // on the order the seeds were given in, to the last bit.
    let mut seeds = seeds.to_vec();
    seeds.sort_by_key(|s| s.0);
    seeds.dedup_by(|later, first| {
        let same = later.0 == first.0;
        if same {
            first.1 += later.1;
        }
        same
    });
    let mut blocked: Vec<u32> = seeds
        .iter()
        .map(|s| s.0)
        .chain(exclude.iter().copied())
        .collect();
    blocked.sort_unstable();
    blocked.dedup();
    let is_blocked = |j: u32| blocked.binary_search(&j).is_ok();

    // (candidate, seed, contribution), grouped by candidate, each candidate's seeds in
    // item order: the order its score is summed in.
    let listed_len: usize = seeds
        .iter()
        .map(|&(seed, _)| model.neighbours(seed as usize).0.len())
        .sum();
    let mut parts: Vec<(u32, u32, f32)> = Vec::with_capacity(listed_len);
    for &(seed, weight) in &seeds {
        let (ids, scores) = model.neighbours(seed as usize);
        for (&j, &s) in ids.iter().zip(scores) {
            if !is_blocked(j) {
                parts.push((j, seed, weight * s));
            }
        }
    }
    parts.sort_unstable_by_key(|p| (p.0, p.1));
    let mut candidates: Vec<(f32, u32, std::ops::Range<usize>)> = Vec::new();
    let mut at = 0;
    while at < parts.len() {
        let j = parts[at].0;
        let end = at + parts[at..].iter().take_while(|p| p.0 == j).count();
        let score = parts[at..end].iter().fold(0f32, |acc, p| acc + p.2);
        candidates.push((score, j, at..end));
        at = end;
    }
    let order = |a: &(f32, u32, std::ops::Range<usize>), b: &(f32, u32, std::ops::Range<usize>)| {
        b.0.total_cmp(&a.0).then(a.1.cmp(&b.1))
    };
    if candidates.len() > k {
        candidates.select_nth_unstable_by(k, order);
        candidates.truncate(k);
    }
    candidates.sort_unstable_by(order);
    let mut picks: Vec<Pick> = Vec::with_capacity(k);
    for (score, item, range) in candidates {
        let by = &mut parts[range];
        by.sort_unstable_by(|a, b| b.2.total_cmp(&a.2).then(a.1.cmp(&b.1)));
        picks.push(Pick {
            item,
            score,
            source: Source::Similar,
            because: by.iter().map(|p| p.1).collect(),
        });
    }

    if picks.len() < k {
        if let Some((popular, _)) = model.popular() {
            let mut listed: Vec<u32> = picks.iter().map(|p| p.item).collect();
            listed.sort_unstable();
            for &j in popular {
                if picks.len() == k {
                    break;
                }
                if !is_blocked(j) && listed.binary_search(&j).is_err() {
                    picks.push(Pick {
                        item: j,
                        score: 0.0,
                        source: Source::Popular,
                        because: Vec::new(),
                    });
                }
            }
        }
    }
    picks
}

/// One recommendation as answered: the item's key, title and author with the pick.
#[derive(Debug, Serialize)]
pub struct Recommendation<'a> {
    /// The item's key.
    pub book_id: Key<'a>,
    /// See [`Pick::score`].
    pub score: f32,
    /// The title, when the model stores one.
    pub title: Option<&'a str>,
    /// The author, when the model stores one.
    pub author: Option<&'a str>,
    /// Similar or popular.
    pub source: Source,
    /// The seeds that contributed, by key, largest contribution first.
    pub because: Vec<Key<'a>>,
}

/// A whole answer, as `:recommend` and `cooc recommend --json` print it.
#[derive(Debug, Serialize)]
pub struct Answer<'a> {
    /// The `k` asked for.
    pub k: usize,
    /// The model version that answered.
    pub version: &'a str,
    /// Seeds the model does not know, as given, each once.
    pub unknown: Vec<Key<'a>>,
    /// Best first.
    pub recommendations: Vec<Recommendation<'a>>,
}

/// A request's keys resolved against a model.
#[derive(Debug)]
pub struct Resolved<'a> {
    /// The known seeds' items with their weights.
    pub seeds: Vec<(u32, f32)>,
    /// The known excluded items (unknown ones cannot be returned anyway).
    pub exclude: Vec<u32>,
    /// Seeds the model does not know, as given, each once.
    pub unknown: Vec<Key<'a>>,
}

/// Looks up `seeds` (keys with weights) and `exclude` in `model`.
pub fn resolve<'a>(model: &Model, seeds: &[(Key<'a>, f32)], exclude: &[Key<'_>]) -> Resolved<'a> {
    let mut known = Vec::with_capacity(seeds.len());
    let mut unknown: Vec<Key<'a>> = Vec::new();
    for &(key, w) in seeds {
        match model.find(key) {
            Some(i) => known.push((i as u32, w)),
            None if !unknown.contains(&key) => unknown.push(key),
            None => {}
        }
    }
    Resolved {
        seeds: known,
        exclude: exclude
            .iter()
            .filter_map(|&key| model.find(key).map(|i| i as u32))
            .collect(),
        unknown,
    }
}

impl<'a> Answer<'a> {
    /// The answer for `seeds` (keys with weights) and `exclude`, from `model`, named
    /// `version`.
    pub fn new(
        model: &'a Model,
        version: &'a str,
        seeds: &[(Key<'a>, f32)],
        exclude: &[Key<'_>],
        k: usize,
    ) -> Answer<'a> {
        let Resolved {
            seeds: known,
            exclude,
            unknown,
        } = resolve(model, seeds, exclude);
        let recommendations = recommend(model, &known, &exclude, k)
            .into_iter()
            .map(|p| Recommendation {
                book_id: model.key(p.item as usize),
                score: p.score,
                title: model.title(p.item as usize),
                author: model.author(p.item as usize),
                source: p.source,
                because: p.because.iter().map(|&s| model.key(s as usize)).collect(),
            })
            .collect();
        Answer {
            k,
            version,
            unknown,
            recommendations,
        }
    }

    /// How many recommendations came from popularity backfill.
    pub fn backfilled(&self) -> usize {
        self.recommendations
            .iter()
            .filter(|r| r.source == Source::Popular)
            .count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::artifact::{encode, ModelParts};
    use crate::keys::Keys;
    use crate::meta::{ModelMeta, Provenance};

    /// Items 10, 20, 30, 40, 50: 10 ~ 20 (0.9), 30 (0.5); 20 ~ 10 (0.9), 30 (0.8);
    /// 30 ~ 20 (0.8), 10 (0.5); 40 and 50 have no neighbours. Most bought: 40, 10, 50.
    fn model() -> Model {
        let mut meta = ModelMeta::example();
        meta.n_items = 5;
        let bytes = encode(&ModelParts {
            meta: &meta,
            provenance: &Provenance::example(),
            keys: &Keys::Int(vec![10, 20, 30, 40, 50]),
            titles: None,
            authors: None,
            indptr: &[0, 2, 4, 6, 6, 6],
            indices: &[1, 2, 0, 2, 1, 0],
            scores: &[0.9, 0.5, 0.9, 0.8, 0.8, 0.5],
            popular: &[(3, 9), (0, 5), (4, 5), (1, 2)],
        });
        Model::from_bytes(&bytes, "t").unwrap()
    }

    fn items(p: &[Pick]) -> Vec<(u32, Source)> {
        p.iter().map(|p| (p.item, p.source)).collect()
    }

    #[test]
    fn scores_sum_over_seeds_and_name_the_contributors() {
        let m = model();
        let p = recommend(&m, &[(0, 1.0), (1, 1.0)], &[], 1);
        // 30: 0.5 from 10, 0.8 from 20.
        assert_eq!(items(&p), vec![(2, Source::Similar)]);
        assert!((p[0].score - 1.3).abs() < 1e-6, "{}", p[0].score);
        assert_eq!(p[0].because, vec![1, 0]);
    }

    #[test]
    fn seeds_and_excluded_never_come_back_and_backfill_fills_k() {
        let m = model();
        let p = recommend(&m, &[(0, 1.0)], &[3], 4);
        // Similar: 20, 30; then popular, skipping 40 (excluded), 10 (a seed), 20 (listed).
        assert_eq!(
            items(&p),
            vec![
                (1, Source::Similar),
                (2, Source::Similar),
                (4, Source::Popular)
            ]
        );
    }

    #[test]
    fn weights_and_repeats_scale_contributions_and_order_is_irrelevant() {
        let m = model();
        let a = recommend(&m, &[(2, 1.0), (0, 3.0)], &[], 3);
        let b = recommend(&m, &[(0, 1.0), (2, 1.0), (0, 2.0)], &[], 3);
        assert_eq!(a, b);
        // 20: 3 x 0.9 + 0.8 = 3.5, from 10 first.
        assert_eq!(a[0].item, 1);
        assert!((a[0].score - 3.5).abs() < 1e-6);
        assert_eq!(a[0].because, vec![0, 2]);
    }

    #[test]
    fn no_known_seed_answers_by_popularity_alone() {
        let m = model();
        let p = recommend(&m, &[], &[], 10);
        assert_eq!(
            items(&p),
            vec![
                (3, Source::Popular),
                (0, Source::Popular),
                (4, Source::Popular),
                (1, Source::Popular)
            ]
        );
        let a = Answer::new(&m, "v", &[(Key::Int(99), 1.0), (Key::Int(99), 1.0)], &[], 2);
        assert_eq!(a.unknown, vec![Key::Int(99)]);
        assert_eq!(a.backfilled(), 2);
    }
}
