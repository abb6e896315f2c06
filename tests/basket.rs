//! Basket recommendations (`cooc recommend`, the server's `:recommend`) against an
//! independent computation: the sum of the exported neighbour scores over the seeds, and
//! the most-bought books counted straight from the orders file.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use crate::common::{cooc, ok, p, stderr};

/// `book -> [(neighbour, score)]` from `cooc export`.
fn exported(model: &str) -> HashMap<i64, Vec<(i64, f64)>> {
    let mut out: HashMap<i64, Vec<(i64, f64)>> = HashMap::new();
    for line in ok(&["export", model]).lines().skip(1) {
        let f: Vec<&str> = line.split(',').collect();
        out.entry(f[0].parse().unwrap())
            .or_default()
            .push((f[2].parse().unwrap(), f[3].parse().unwrap()));
    }
    out
}

/// Books by the number of distinct customers who bought them, most first, ties by id.
fn most_bought(orders: &std::path::Path) -> Vec<i64> {
    let text = std::fs::read_to_string(orders).unwrap();
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().unwrap().split(',').collect();
    let col = |name: &str| header.iter().position(|h| *h == name).unwrap();
    let (book, customer) = (col("book_id"), col("customer_id"));
    let mut pairs = BTreeSet::new();
    for l in lines {
        let f: Vec<&str> = l.split(',').collect();
        pairs.insert((
            f[book].parse::<i64>().unwrap(),
            f[customer].parse::<i64>().unwrap(),
        ));
    }
    let mut counts: BTreeMap<i64, u64> = BTreeMap::new();
    for (b, _) in pairs {
        *counts.entry(b).or_default() += 1;
    }
    let mut v: Vec<(i64, u64)> = counts.into_iter().collect();
    v.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    v.into_iter().map(|(b, _)| b).collect()
}

/// What the answer must be: similar books by summed score (f64 here), then popular ones.
fn expected(
    nb: &HashMap<i64, Vec<(i64, f64)>>,
    popular: &[i64],
    seeds: &[i64],
    exclude: &[i64],
    k: usize,
) -> Vec<(i64, f64, &'static str)> {
    let mut score: BTreeMap<i64, f64> = BTreeMap::new();
    for s in seeds {
        for &(j, x) in nb.get(s).map(Vec::as_slice).unwrap_or_default() {
            if !seeds.contains(&j) && !exclude.contains(&j) {
                *score.entry(j).or_default() += x;
            }
        }
    }
    let mut similar: Vec<(i64, f64)> = score.into_iter().collect();
    similar.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    let mut out: Vec<(i64, f64, &str)> = similar
        .into_iter()
        .take(k)
        .map(|(j, x)| (j, x, "similar"))
        .collect();
    for &j in popular {
        if out.len() == k {
            break;
        }
        if !seeds.contains(&j) && !exclude.contains(&j) && !out.iter().any(|o| o.0 == j) {
            out.push((j, 0.0, "popular"));
        }
    }
    out
}

fn answer(model: &str, seeds: &[i64], exclude: &[i64], k: usize) -> serde_json::Value {
    let list = |v: &[i64]| {
        v.iter()
            .map(|x| x.to_string())
            .collect::<Vec<_>>()
            .join(",")
    };
    let (books, excl, k) = (list(seeds), list(exclude), k.to_string());
    let mut args = vec!["recommend", model, "--k", &k, "--json"];
    if !seeds.is_empty() {
        args.extend(["--books", &books]);
    }
    if !exclude.is_empty() {
        args.extend(["--exclude", &excl]);
    }
    serde_json::from_str(&ok(&args)).unwrap()
}

#[test]
fn basket_answers_are_the_summed_neighbour_scores_then_the_most_bought_books() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    ok(&["gen", "--size", "s", "--seed", "11", "--out", p(&data)]);
    let orders = data.join("orders.csv");
    let model = dir.path().join("m.cooc");
    ok(&[
        "train",
        "--orders",
        p(&orders),
        "--k",
        "8",
        "--out",
        p(&model),
    ]);
    let model = p(&model);
    let nb = exported(model);
    let popular = most_bought(&orders);
    let cases: [(&[i64], &[i64], usize); 6] = [
        (&[12, 40, 7], &[], 10),
        (&[12, 40, 7], &[99, 5], 10),
        (&[1, 2, 3, 4, 5], &[], 50),
        (&[150], &[], 100),
        (&[1, 1, 2], &[], 5),
        (&[], &[], 7),
    ];
    let mut backfilled = 0;
    for (seeds, exclude, k) in cases {
        let got = answer(model, seeds, exclude, k);
        let want = expected(&nb, &popular, seeds, exclude, k);
        let recs = got["recommendations"].as_array().unwrap();
        assert_eq!(recs.len(), want.len(), "{seeds:?} {exclude:?}: {got}");
        assert_eq!(recs.len(), k, "{seeds:?}: exactly k (200 books qualify)");
        for (r, (j, x, source)) in recs.iter().zip(&want) {
            assert_eq!(r["book_id"], *j, "{seeds:?} {exclude:?}: {got}");
            assert_eq!(r["source"], *source, "{seeds:?}: {got}");
            let score = r["score"].as_f64().unwrap();
            assert!((score - x).abs() < 1e-6, "{seeds:?}: {score} vs {x}");
            if *source == "similar" {
                let because: Vec<i64> = r["because"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|b| b.as_i64().unwrap())
                    .collect();
                assert!(!because.is_empty() && because.iter().all(|b| seeds.contains(b)));
            }
        }
        backfilled += want.iter().filter(|w| w.2 == "popular").count();
    }
    assert!(backfilled > 0, "the cases exercise backfill");
}

#[test]
fn unknown_seeds_are_listed_and_bad_flags_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    ok(&["gen", "--size", "s", "--seed", "3", "--out", p(&data)]);
    let model = dir.path().join("m.cooc");
    let orders = data.join("orders.csv");
    ok(&["train", "--orders", p(&orders), "--out", p(&model)]);
    let m = p(&model);
    let got = answer(m, &[12, 123456, 123456], &[], 3);
    assert_eq!(got["unknown"], serde_json::json!([123456]));
    assert_eq!(got["recommendations"].as_array().unwrap().len(), 3);
    for (args, needle) in [
        (vec!["--books", "x"], "integer keys"),
        (vec!["--books", "1", "--k", "0"], "--k 0"),
        (vec!["--books", "1,2", "--weights", "1"], "--weights"),
        (vec!["--books", "1", "--weights", "0"], "positive"),
    ] {
        let mut a = vec!["recommend", m];
        a.extend(args);
        let out = cooc(&a);
        assert_eq!(out.status.code(), Some(2), "{a:?}: {}", stderr(&out));
        assert!(stderr(&out).contains(needle), "{a:?}: {}", stderr(&out));
    }
}
