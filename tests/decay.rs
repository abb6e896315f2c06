//! Time decay (`--decay-half-life`): the same model on any gang, recorded in the model,
//! refused where rows have no time, compared by `cooc tune` exactly as `train` makes it, and
//! its scores checked against the weighted counts computed independently.

use crate::common::{cooc, ok, p, stderr};

fn generated(dir: &std::path::Path) -> std::path::PathBuf {
    let data = dir.join("data");
    ok(&["gen", "--size", "s", "--seed", "3", "--out", p(&data)]);
    data.join("orders.csv")
}

fn meta(model: &std::path::Path) -> serde_json::Value {
    serde_json::from_str::<serde_json::Value>(&ok(&["inspect", p(model), "--json"])).unwrap()
        ["meta"]
        .clone()
}

#[test]
fn a_decayed_model_is_the_same_on_any_gang_and_records_its_decay() {
    let dir = tempfile::tempdir().unwrap();
    let orders = generated(dir.path());
    let train = |name: &str, extra: &[&str]| {
        let model = dir.path().join(name);
        let mut a = vec![
            "train",
            "--orders",
            p(&orders),
            "--decay-half-life",
            "60d",
            "--similarity",
            "llr",
            "--threads",
            "1",
            "--out",
            p(&model),
        ];
        a.extend_from_slice(extra);
        ok(&a);
        model
    };
    let solo = train("solo.cooc", &[]);
    let export = |m: &std::path::Path| ok(&["export", p(m)]);
    let want = export(&solo);
    for world in ["2", "3"] {
        let gang = train(&format!("w{world}.cooc"), &["--local-ranks", world]);
        assert_eq!(export(&gang), want, "{world} ranks");
    }
    // Decay changes the model: it is not the undecayed one.
    let plain = dir.path().join("plain.cooc");
    ok(&[
        "train",
        "--orders",
        p(&orders),
        "--similarity",
        "llr",
        "--out",
        p(&plain),
    ]);
    assert_ne!(export(&plain), want);

    // The reference is the latest order of the data (no hold-out: every row trains).
    let text = std::fs::read_to_string(&orders).unwrap();
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().unwrap().split(',').collect();
    let at = header.iter().position(|h| *h == "created_at").unwrap();
    let latest = lines.map(|l| l.split(',').nth(at).unwrap()).max().unwrap();
    let decay = &meta(&solo)["decay"];
    assert_eq!(decay["half_life_s"], 60 * 86_400, "{decay}");
    assert_eq!(decay["reference"], latest, "{decay}");
    assert!(meta(&plain).get("decay").is_none());
}

#[test]
fn decay_needs_created_at() {
    let dir = tempfile::tempdir().unwrap();
    let baskets = dir.path().join("baskets.txt");
    std::fs::write(&baskets, "a,b\nb,c\n").unwrap();
    let out = cooc(&[
        "train",
        "--orders",
        p(&baskets),
        "--format",
        "baskets",
        "--decay-half-life",
        "30d",
    ]);
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert!(
        err.contains("--decay-half-life") && err.contains("baskets.txt"),
        "{err}"
    );
}

#[test]
fn tune_compares_half_lives_as_train_makes_them() {
    let dir = tempfile::tempdir().unwrap();
    let orders = generated(dir.path());
    let rows: Vec<serde_json::Value> = ok(&[
        "tune",
        "--json",
        "--orders",
        p(&orders),
        "--measures",
        "cosine",
        "--decay-half-life",
        "none,60d",
    ])
    .lines()
    .map(|l| serde_json::from_str(l).unwrap())
    .collect();
    assert_eq!(rows.len(), 2);
    let decayed = rows
        .iter()
        .find(|r| r["decay_half_life"] == "60d")
        .unwrap_or_else(|| panic!("no 60d row: {rows:?}"));
    let model = dir.path().join("d.cooc");
    ok(&[
        "train",
        "--orders",
        p(&orders),
        "--decay-half-life",
        "60d",
        "--holdout",
        "last",
        "--out",
        p(&model),
    ]);
    let e = &meta(&model)["evaluation"];
    for m in ["users", "hit_rate", "recall", "ndcg", "coverage"] {
        assert_eq!(decayed[m], e[m], "{m}");
    }
    assert!(rows.iter().any(|r| r["decay_half_life"].is_null()));
}

/// A decayed cosine model against an independent computation from the orders file: each
/// customer's basket weighs round(2^(-(t_ref - t_b) / half-life) x 2^24), t_b its latest
/// order and t_ref the latest of all; c_ij and c_i are the weighted sums; every exported
/// neighbour is a true top-10 entry (up to exact ties) with its score within 1e-6.
#[test]
fn decayed_scores_are_the_weighted_counts_computed_independently() {
    use std::collections::{BTreeMap, BTreeSet};
    let dir = tempfile::tempdir().unwrap();
    let orders = generated(dir.path());
    let model = dir.path().join("d.cooc");
    ok(&[
        "train",
        "--orders",
        p(&orders),
        "--decay-half-life",
        "60d",
        "--out",
        p(&model),
    ]);
    // Baskets (customers): their books and their latest order, in microseconds.
    let text = std::fs::read_to_string(&orders).unwrap();
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().unwrap().split(',').collect();
    let col = |name: &str| header.iter().position(|h| *h == name).unwrap();
    let (book, customer, created) = (col("book_id"), col("customer_id"), col("created_at"));
    let mut baskets: BTreeMap<i64, (BTreeSet<i64>, i64)> = BTreeMap::new();
    for l in lines {
        let f: Vec<&str> = l.split(',').collect();
        let t = chrono::DateTime::parse_from_rfc3339(f[created])
            .unwrap()
            .timestamp_micros();
        let b = baskets
            .entry(f[customer].parse().unwrap())
            .or_insert((BTreeSet::new(), i64::MIN));
        b.0.insert(f[book].parse().unwrap());
        b.1 = b.1.max(t);
    }
    let t_ref = baskets.values().map(|b| b.1).max().unwrap();
    let half_life = 60.0 * 86_400e6;
    let mut c: BTreeMap<(i64, i64), u64> = BTreeMap::new();
    let mut ci: BTreeMap<i64, u64> = BTreeMap::new();
    for (items, t) in baskets.values() {
        let w = ((-((t_ref - t) as f64) / half_life).exp2() * (1u64 << 24) as f64).round() as u64;
        for &i in items {
            *ci.entry(i).or_default() += w;
            for &j in items {
                if i != j {
                    *c.entry((i, j)).or_default() += w;
                }
            }
        }
    }
    let score = |i: i64, j: i64| {
        let cij = c.get(&(i, j)).copied().unwrap_or(0) as f64;
        cij / ((ci[&i] as f64) * (ci[&j] as f64)).sqrt()
    };
    // Each book's true top 10: score descending, then id.
    let mut best: BTreeMap<i64, Vec<f64>> = BTreeMap::new();
    for (&(i, j), _) in c.iter() {
        best.entry(i).or_default().push(score(i, j));
    }
    for v in best.values_mut() {
        v.sort_by(|a, b| b.total_cmp(a));
        v.truncate(10);
    }
    let mut rows = 0;
    let mut seen: BTreeMap<i64, BTreeSet<i64>> = BTreeMap::new();
    for line in ok(&["export", p(&model)]).lines().skip(1) {
        let f: Vec<&str> = line.split(',').collect();
        let (i, rank, j): (i64, usize, i64) = (
            f[0].parse().unwrap(),
            f[1].parse().unwrap(),
            f[2].parse().unwrap(),
        );
        let got: f64 = f[3].parse().unwrap();
        let want = score(i, j);
        assert!(j != i && seen.entry(i).or_default().insert(j), "{line}");
        assert!(
            (got - want).abs() < 1e-6,
            "{line}: independent score {want}"
        );
        // The neighbour at this rank scores what the true rank-th neighbour scores: the
        // same list up to the order of exact ties.
        let truth = best[&i][rank - 1];
        assert!(
            (want - truth).abs() < 1e-12,
            "{line}: rank {rank} should score {truth}"
        );
        rows += 1;
    }
    let listed: usize = best.values().map(Vec::len).sum();
    assert_eq!(
        rows, listed,
        "every book lists its true top 10 (or all it has)"
    );
}
