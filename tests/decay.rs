//! Time decay (`--decay-half-life`): the same model on any gang, recorded in the model,
//! refused where rows have no time, and compared by `cooc tune` exactly as `train` makes it.

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
