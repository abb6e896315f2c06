//! The `cooc` command as a user runs it: exactness on real data, errors and exit codes,
//! gates that register nothing, the model store commands, export and the demo.

use std::fs;

use crate::common::{cooc, ok, p, required_dataset, stderr};

/// Compares `cooc export` output with an expected CSV: same rows, same order, scores
/// within 1e-6.
fn assert_same_neighbours(got: &str, want: &str) {
    let mut g = csv::Reader::from_reader(got.as_bytes());
    let mut w = csv::Reader::from_reader(want.as_bytes());
    let g: Vec<csv::StringRecord> = g.records().map(Result::unwrap).collect();
    let w: Vec<csv::StringRecord> = w.records().map(Result::unwrap).collect();
    assert_eq!(g.len(), w.len(), "row count");
    for (line, (a, b)) in g.iter().zip(&w).enumerate() {
        assert_eq!(
            (&a[0], &a[1], &a[2]),
            (&b[0], &b[1], &b[2]),
            "row {}",
            line + 2
        );
        let (x, y): (f64, f64) = (a[3].parse().unwrap(), b[3].parse().unwrap());
        assert!(
            (x - y).abs() <= 1e-6 * y.abs().max(1.0),
            "row {}: score {x} vs {y}",
            line + 2
        );
    }
}

/// Generates data with `gen_args` and trains a standalone model with titles from it;
/// returns (the temporary directory, the data directory, the model file).
fn trained_with_books(
    gen_args: &[&str],
    train_args: &[&str],
) -> (tempfile::TempDir, std::path::PathBuf, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let model = dir.path().join("m.cooc");
    let mut gen = vec!["gen", "--out", p(&data)];
    gen.extend_from_slice(gen_args);
    ok(&gen);
    let (orders, books) = (data.join("orders.csv"), data.join("books.csv"));
    let mut train = vec![
        "train",
        "--orders",
        p(&orders),
        "--books",
        p(&books),
        "--out",
        p(&model),
    ];
    train.extend_from_slice(train_args);
    ok(&train);
    (dir, data, model)
}

#[test]
#[ignore = "needs the groceries baskets (../shared/datasets or COOC_SHARED_DIR); .ci/run runs it"]
fn groceries_matches_the_scipy_reference_exactly() {
    let groceries = required_dataset("groceries/groceries.csv");
    let dir = tempfile::tempdir().unwrap();
    for (sim, support, expected) in [
        ("cosine", "1", include_str!("data/groceries_cosine_k10.csv")),
        (
            "jaccard",
            "1",
            include_str!("data/groceries_jaccard_k10.csv"),
        ),
        (
            "count",
            "1",
            include_str!("data/groceries_count_s1_k10.csv"),
        ),
        ("lift", "1", include_str!("data/groceries_lift_s1_k10.csv")),
        (
            "inclusion",
            "1",
            include_str!("data/groceries_inclusion_s1_k10.csv"),
        ),
        ("llr", "1", include_str!("data/groceries_llr_s1_k10.csv")),
        ("lift", "3", include_str!("data/groceries_lift_s3_k10.csv")),
        ("llr", "3", include_str!("data/groceries_llr_s3_k10.csv")),
    ] {
        let model = dir.path().join(format!("{sim}-{support}.cooc"));
        ok(&[
            "train",
            "--min-support",
            support,
            "--orders",
            p(&groceries),
            "--format",
            "baskets",
            "--similarity",
            sim,
            "--k",
            "10",
            "--out",
            p(&model),
        ]);
        let got = ok(&["export", p(&model), "--format", "csv"]);
        assert_same_neighbours(&got, expected);
    }
}

#[test]
fn bad_rows_exit_2_naming_file_and_line_and_register_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let orders = dir.path().join("orders.csv");
    fs::write(
        &orders,
        "id,book_id,qty,created_at,customer_id\n1,10,1,2024-01-01T00:00:00Z,1\n2,11,1,2024-01-01T00:00:00Z\n",
    )
    .unwrap();
    let store = dir.path().join("model");
    let out = cooc(&["train", "--orders", p(&orders), "--model-dir", p(&store)]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains("orders.csv:3:") && err.contains("expected 5 fields"),
        "{err}"
    );
    assert!(!store.exists(), "nothing may be written on bad input");

    let missing = cooc(&["train", "--orders", p(&dir.path().join("nope.csv"))]);
    assert_eq!(missing.status.code(), Some(2));
    assert!(stderr(&missing).contains("nope.csv"));

    let bad_k = cooc(&["train", "--orders", p(&orders), "--k", "0"]);
    assert_eq!(bad_k.status.code(), Some(2));
    assert!(stderr(&bad_k).contains("--k"));
}

#[test]
fn a_failed_gate_keeps_the_live_model() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    ok(&["gen", "--size", "s", "--seed", "3", "--out", p(&data)]);
    let orders = data.join("orders.csv");
    let store = dir.path().join("model");
    ok(&[
        "train",
        "--orders",
        p(&orders),
        "--model-dir",
        p(&store),
        "--holdout",
        "last",
    ]);
    let live = fs::read_to_string(store.join("CURRENT")).unwrap();

    for gate in [
        vec!["--min-avg-top1-cosine", "0.99"],
        vec!["--holdout", "last", "--min-hit-rate", "0.99"],
        // Both fail: both are named.
        vec![
            "--holdout",
            "last",
            "--min-hit-rate",
            "0.99",
            "--min-avg-top1-cosine",
            "0.99",
        ],
        // A gate is a fraction: outside 0..=1 it is bad configuration, before training.
        vec!["--min-avg-top1-cosine", "1.1"],
        vec!["--holdout", "last", "--min-hit-rate=-0.5"],
    ] {
        let mut args = vec!["train", "--orders", p(&orders), "--model-dir", p(&store)];
        args.extend(gate.iter().copied());
        let out = cooc(&args);
        assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
        let err = stderr(&out);
        if gate.contains(&"0.99") {
            assert!(err.contains("quality gate failed"), "{err}");
            for metric in ["hit_rate", "avg_top1_cosine"] {
                let flag = if metric == "hit_rate" {
                    "--min-hit-rate"
                } else {
                    "--min-avg-top1-cosine"
                };
                assert_eq!(
                    err.contains(&format!("{metric} = ")),
                    gate.contains(&flag),
                    "{metric}: {err}"
                );
            }
        } else {
            assert!(
                err.contains("is outside 0..=1 for --similarity cosine"),
                "{err}"
            );
        }

        assert_eq!(fs::read_to_string(store.join("CURRENT")).unwrap(), live);
    }
    let listed = ok(&["models", "list", "--model-dir", p(&store)]);
    assert_eq!(
        listed.lines().count(),
        1,
        "a failed gate must not publish: {listed}"
    );
}

#[test]
fn models_list_promote_rollback() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    ok(&["gen", "--size", "s", "--out", p(&data)]);
    let store = dir.path().join("model");
    let train = |k: &str| {
        ok(&[
            "train",
            "--orders",
            p(&data.join("orders.csv")),
            "--model-dir",
            p(&store),
            "--k",
            k,
        ]);
        fs::read_to_string(store.join("CURRENT"))
            .unwrap()
            .trim()
            .to_owned()
    };
    let v1 = train("5");
    let v2 = train("7");
    assert!(v1 < v2, "versions sort by creation: {v1} {v2}");
    let listed = ok(&["models", "list", "--model-dir", p(&store)]);
    assert_eq!(listed, format!("  {v1}\n* {v2}\n"));
    assert!(ok(&["models", "rollback", "--model-dir", p(&store)]).contains(&v1));
    assert_eq!(
        fs::read_to_string(store.join("CURRENT")).unwrap().trim(),
        v1
    );
    let none = cooc(&["models", "rollback", "--model-dir", p(&store)]);
    assert_eq!(none.status.code(), Some(2));
    assert!(stderr(&none).contains("nothing to roll back"));
    ok(&["models", "promote", &v2, "--model-dir", p(&store)]);
    assert_eq!(
        fs::read_to_string(store.join("CURRENT")).unwrap().trim(),
        v2
    );

    // A corrupt version cannot be promoted.
    let bad = store.join("zz-corrupt");
    fs::create_dir(&bad).unwrap();
    let mut bytes = fs::read(store.join(&v1).join("model.cooc")).unwrap();
    bytes.truncate(bytes.len() / 2);
    fs::write(bad.join("model.cooc"), bytes).unwrap();
    let out = cooc(&["models", "promote", "zz-corrupt", "--model-dir", p(&store)]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("truncated"), "{}", stderr(&out));
    assert_eq!(
        fs::read_to_string(store.join("CURRENT")).unwrap().trim(),
        v2
    );

    // A canary: listed with its share, refused for the live version, a corrupt version
    // or a share outside 1..=100; promoting it ends it, and --off ends one.
    let models = |args: &[&str]| {
        let mut a = vec!["models"];
        a.extend_from_slice(args);
        a.extend(["--model-dir", p(&store)]);
        cooc(&a)
    };
    for bad in [
        vec!["canary", &v2, "--percent", "10"],
        vec!["canary", "zz-corrupt", "--percent", "10"],
        vec!["canary", &v1, "--percent", "0"],
        vec!["canary", &v1, "--percent", "101"],
        vec!["canary", &v1],
    ] {
        let out = models(&bad);
        assert_eq!(out.status.code(), Some(2), "{bad:?}: {}", stderr(&out));
    }
    assert!(!store.join("CANARY").exists());
    assert!(models(&["canary", &v1, "--percent", "10"]).status.success());
    let listed = ok(&["models", "list", "--model-dir", p(&store)]);
    assert!(
        listed.contains(&format!("~ {v1}  (canary: 10% of users)"))
            && listed.contains(&format!("* {v2}")),
        "{listed}"
    );
    assert!(models(&["canary", "--off"]).status.success());
    assert!(!store.join("CANARY").exists());
    // A CANARY that does not parse is no canary: listed with a warning, not an error.
    fs::write(store.join("CANARY"), "../elsewhere 10\n").unwrap();
    let out = models(&["list"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stderr(&out).contains("CANARY holds"), "{}", stderr(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains(&format!("* {v2}")));
    fs::remove_file(store.join("CANARY")).unwrap();
    assert!(models(&["canary", &v1, "--percent", "20"]).status.success());
    ok(&["models", "promote", &v1, "--model-dir", p(&store)]);
    assert!(
        !store.join("CANARY").exists(),
        "promoting the canary ends it"
    );
    ok(&["models", "promote", &v2, "--model-dir", p(&store)]);

    let summary = ok(&["inspect", p(&store)]);
    assert!(
        summary.contains(&v2) && summary.contains("similarity   cosine (top 7)"),
        "{summary}"
    );
    let json: serde_json::Value =
        serde_json::from_str(&ok(&["inspect", p(&store), "--book", "1", "--json"])).unwrap();
    assert!(json["neighbours"].as_array().unwrap().len() <= 7);
    assert!(json["title"].is_null(), "trained without --books");
}

#[test]
fn export_is_ranked_and_titles_come_from_books() {
    let (_dir, _data, model) = trained_with_books(&["--size", "s"], &["--k", "3"]);
    let csv = ok(&["export", p(&model)]);
    let mut lines = csv.lines();
    assert_eq!(lines.next(), Some("book_id,rank,neighbour_id,score"));
    let mut last: Option<(i64, u32, f32)> = None;
    for l in lines {
        let f: Vec<&str> = l.split(',').collect();
        let (book, rank, score): (i64, u32, f32) = (
            f[0].parse().unwrap(),
            f[1].parse().unwrap(),
            f[3].parse().unwrap(),
        );
        assert!((1..=3).contains(&rank) && score > 0.0);
        if let Some((b, r, s)) = last {
            if b == book {
                assert_eq!(rank, r + 1);
                assert!(score <= s, "scores descend within a book");
            } else {
                assert!(book > b && rank == 1);
            }
        }
        last = Some((book, rank, score));
    }
    let shown: serde_json::Value =
        serde_json::from_str(&ok(&["inspect", p(&model), "--book", "2", "--json"])).unwrap();
    assert!(
        shown["title"].as_str().unwrap().starts_with("The "),
        "{shown}"
    );
}

#[test]
fn the_planted_series_affinity_is_learned() {
    // Series sequels are bought together by construction: the first neighbour of a
    // well-sold series book should usually be in its series (same title stem).
    let (_dir, data, model) = trained_with_books(
        &[
            "--books",
            "2000",
            "--customers",
            "20000",
            "--orders",
            "200000",
        ],
        &[],
    );
    let books = fs::read_to_string(data.join("books.csv")).unwrap();
    let mut rdr = csv::Reader::from_reader(books.as_bytes());
    let titles: Vec<String> = rdr.records().map(|r| r.unwrap()[1].to_owned()).collect();
    let stem = |t: &str| t.split(", Book").next().unwrap().to_owned();
    let (mut series, mut same) = (0, 0);
    for (i, t) in titles.iter().enumerate().take(400) {
        if !t.contains(", Book") {
            continue;
        }
        let v: serde_json::Value = serde_json::from_str(&ok(&[
            "inspect",
            p(&model),
            "--book",
            &(i + 1).to_string(),
            "--json",
        ]))
        .unwrap();
        if let Some(first) = v["neighbours"].as_array().and_then(|n| n.first()) {
            series += 1;
            same += (stem(first["title"].as_str().unwrap()) == stem(t)) as u32;
        }
    }
    assert!(series > 50, "too few series books checked: {series}");
    assert!(
        same * 2 > series,
        "only {same} of {series} series books have a series mate first"
    );
}

#[test]
fn demo_runs_end_to_end_without_serving() {
    let dir = tempfile::tempdir().unwrap();
    let out = ok(&["demo", "--size", "s", "--dir", p(dir.path()), "--no-serve"]);
    assert!(out.contains("Customers who bought"), "{out}");
    assert!(dir.path().join("model/CURRENT").is_file());
    // A second run reuses the data and publishes a second version.
    ok(&["demo", "--size", "s", "--dir", p(dir.path()), "--no-serve"]);
    let listed = ok(&[
        "models",
        "list",
        "--model-dir",
        p(&dir.path().join("model")),
    ]);
    assert_eq!(listed.lines().count(), 2);
}
