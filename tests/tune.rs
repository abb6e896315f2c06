//! `cooc tune`: every row is what `cooc train` with that setting reports, a gang tunes to
//! the same table, basket files get their own hold-out, and the printed command trains the
//! winner.

use crate::common::{cooc, ok, p, stderr};

/// `cooc tune ... --json`, one parsed object per line.
fn tune_json(args: &[&str]) -> Vec<serde_json::Value> {
    let mut a = vec!["tune", "--json"];
    a.extend_from_slice(args);
    ok(&a)
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON object per line"))
        .collect()
}

/// The hold-out evaluation `cooc train ARGS --out F` stores in its model.
fn trained_evaluation(args: &[&str], dir: &std::path::Path, name: &str) -> serde_json::Value {
    let model = dir.join(name);
    let mut a = vec!["train"];
    a.extend_from_slice(args);
    a.extend(["--out", p(&model)]);
    ok(&a);
    let meta: serde_json::Value =
        serde_json::from_str(&ok(&["inspect", p(&model), "--json"])).unwrap();
    meta["meta"]["evaluation"].clone()
}

const METRICS: [&str; 9] = [
    "users",
    "hit_rate",
    "recall",
    "ndcg",
    "coverage",
    "baseline_hit_rate",
    "baseline_recall",
    "baseline_ndcg",
    "baseline_coverage",
];

fn generated(dir: &std::path::Path) -> std::path::PathBuf {
    let data = dir.join("data");
    ok(&["gen", "--size", "s", "--seed", "7", "--out", p(&data)]);
    data.join("orders.csv")
}

#[test]
fn every_row_is_what_train_reports_for_that_setting() {
    let dir = tempfile::tempdir().unwrap();
    let orders = generated(dir.path());
    let rows = tune_json(&[
        "--orders",
        p(&orders),
        "--measures",
        "cosine,lift,llr,count",
        "--min-support",
        "1,2",
        "--k",
        "5",
    ]);
    assert_eq!(rows.len(), 8);
    let ndcg: Vec<f64> = rows.iter().map(|r| r["ndcg"].as_f64().unwrap()).collect();
    assert!(
        ndcg.windows(2).all(|w| w[0] >= w[1]),
        "best first: {ndcg:?}"
    );
    for (n, row) in rows.iter().enumerate() {
        let (measure, support) = (
            row["measure"].as_str().unwrap(),
            row["min_support"].to_string(),
        );
        let e = trained_evaluation(
            &[
                "--orders",
                p(&orders),
                "--similarity",
                measure,
                "--min-support",
                &support,
                "--k",
                "5",
                "--holdout",
                "last",
            ],
            dir.path(),
            &format!("{n}.cooc"),
        );
        for m in METRICS {
            assert_eq!(row[m], e[m], "{measure} support {support}: {m}");
        }
        assert_eq!(row["decay_half_life"], serde_json::Value::Null);
    }
}

#[test]
fn a_gang_tunes_to_the_same_table() {
    let dir = tempfile::tempdir().unwrap();
    let orders = generated(dir.path());
    let args = [
        "--orders",
        p(&orders),
        "--min-support",
        "1,3",
        "--threads",
        "1",
    ];
    let solo = tune_json(&args);
    let mut gang = args.to_vec();
    gang.extend(["--local-ranks", "2"]);
    assert_eq!(tune_json(&gang), solo);
    assert_eq!(solo.len(), 10);
}

#[test]
fn basket_files_hold_out_one_item_and_the_printed_command_trains_the_winner() {
    let dir = tempfile::tempdir().unwrap();
    // 600 baskets over 30 items, two loose groups, from a fixed LCG.
    let mut x = 11u64;
    let mut next = |m: u64| {
        x = x
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (x >> 33) % m
    };
    let mut text = String::new();
    for _ in 0..600 {
        let group = next(2) * 15;
        let mut items: Vec<u64> = (0..2 + next(4)).map(|_| group + next(15)).collect();
        items.sort_unstable();
        items.dedup();
        let line: Vec<String> = items.iter().map(|i| format!("item{i}")).collect();
        text.push_str(&line.join(","));
        text.push('\n');
    }
    let baskets = dir.path().join("baskets.txt");
    std::fs::write(&baskets, text).unwrap();
    let args = ["--orders", p(&baskets), "--format", "baskets"];

    let out = cooc(&[&["tune"][..], &args].concat());
    assert!(out.status.success(), "{}", stderr(&out));
    let table = String::from_utf8(out.stdout.clone()).unwrap();
    assert!(
        table.lines().any(|l| l.starts_with("popularity")),
        "{table}"
    );
    let err = stderr(&out);
    let command = err
        .lines()
        .find_map(|l| l.trim().strip_prefix("cooc train "))
        .unwrap_or_else(|| panic!("no train command in:\n{err}"));
    assert!(command.contains("--holdout item"), "{command}");
    let words: Vec<&str> = command.split_whitespace().collect();
    let from_command = trained_evaluation(&words, dir.path(), "best.cooc");

    let rows = tune_json(&args);
    assert_eq!(rows.len(), 5);
    for m in METRICS {
        assert_eq!(rows[0][m], from_command[m], "{m}");
    }
    // Every basket of two or more items holds one out.
    assert!(rows[0]["users"].as_u64().unwrap() > 500, "{:?}", rows[0]);

    // Each hold-out is refused on the format it does not suit, saying which to use.
    let bad = cooc(&[&["train"][..], &args, &["--holdout", "last"]].concat());
    assert_eq!(bad.status.code(), Some(2));
    assert!(stderr(&bad).contains("--holdout item"), "{}", stderr(&bad));
    let orders = generated(dir.path());
    let bad = cooc(&["train", "--orders", p(&orders), "--holdout", "item"]);
    assert_eq!(bad.status.code(), Some(2));
    assert!(stderr(&bad).contains("--holdout last"), "{}", stderr(&bad));
}

#[test]
fn bad_settings_are_refused_naming_the_flag() {
    let dir = tempfile::tempdir().unwrap();
    let orders = generated(dir.path());
    for (flag, value) in [
        ("--measures", "cosine,hamming"),
        ("--min-support", "1,0"),
        ("--k", "0"),
    ] {
        let out = cooc(&["tune", "--orders", p(&orders), flag, value]);
        assert_eq!(out.status.code(), Some(2), "{flag} {value}");
        assert!(stderr(&out).contains(flag), "{flag}: {}", stderr(&out));
    }
}
