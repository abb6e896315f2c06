//! The GPU path against the CPU path: `--backend cuda` must write the CPU backend's artifact
//! byte for byte (every section but provenance), for both similarities, several K, tiles
//! that split the catalogue, string keys, and a gang combining over NCCL.
//!
//! The parity tests need a build with `--features cuda` (NCCL: `--features nccl`) and a
//! visible GPU (NCCL: two): they are ignored by default and fail, saying what is missing,
//! when run without them (`cargo test --release --features nccl -- --ignored gpu::`). What
//! every build checks: a GPU flag this build or machine cannot honour is refused with exit
//! code 2 naming it, and one it can honour trains.

use crate::common::gang::identity_bytes;
use crate::common::{cooc, ok, p, stderr};

/// `cooc train --generate s FLAG VALUE` exits 2 naming the flag, before writing anything.
fn assert_refused(flag: &str, value: &str) {
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("m.cooc");
    let out = cooc(&["train", "--generate", "s", flag, value, "--out", p(&model)]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains(&format!("{flag} {value}")),
        "{}",
        stderr(&out)
    );
    assert!(!model.exists(), "a refused run wrote a model");
}

/// `Some(reason)` when the CUDA parity cannot run here.
fn cuda_skip() -> Option<String> {
    if !cooc::backend::HAS_CUDA {
        return Some("this build has no CUDA (cargo test --features cuda)".into());
    }
    if !cooc::backend::gpu_present() {
        return Some("no CUDA device is visible".into());
    }
    None
}

#[test]
fn gpu_flags_are_refused_by_name_where_they_cannot_run_and_train_where_they_can() {
    for (flag, value, unavailable) in [
        ("--backend", "cuda", cuda_skip()),
        (
            "--comm",
            "nccl",
            (!cooc::backend::HAS_NCCL).then(|| "this build has no NCCL".to_owned()),
        ),
    ] {
        if unavailable.is_some() {
            assert_refused(flag, value);
        } else if flag == "--backend" {
            let dir = tempfile::tempdir().unwrap();
            let m = dir.path().join("m.cooc");
            ok(&["train", "--generate", "s", flag, value, "--out", p(&m)]);
            assert!(m.exists());
        }
    }
}

#[test]
#[ignore = "needs --features cuda and a CUDA GPU"]
fn cuda_artifacts_equal_the_cpu_artifacts_byte_for_byte() {
    if let Some(why) = cuda_skip() {
        panic!("CUDA parity cannot run here: {why}");
    }
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    ok(&[
        "gen",
        "--size",
        "m",
        "--seed",
        "11",
        "--out",
        p(&d.join("m")),
    ]);
    let orders = d.join("m/orders.csv");
    let mut cases: Vec<(String, Vec<String>)> = Vec::new();
    for sim in ["cosine", "jaccard"] {
        for k in ["1", "10", "200"] {
            cases.push((
                format!("m {sim} k={k}"),
                ["--orders", p(&orders), "--similarity", sim, "-k", k]
                    .map(String::from)
                    .to_vec(),
            ));
        }
    }
    cases.push((
        "generated s, hold-out".into(),
        ["--generate", "s", "--seed", "3", "--holdout", "last"]
            .map(String::from)
            .to_vec(),
    ));
    if let Some(baskets) = crate::common::shared_dataset("groceries/groceries.csv") {
        cases.push((
            "groceries (string keys)".into(),
            vec![
                "--orders".into(),
                p(&baskets).to_owned(),
                "--format".into(),
                "baskets".into(),
            ],
        ));
    }
    for (name, args) in &cases {
        let cpu = d.join("cpu.cooc");
        let mut a: Vec<&str> = vec!["train"];
        a.extend(args.iter().map(String::as_str));
        let mut c = a.clone();
        c.extend(["--backend", "cpu", "--out", p(&cpu)]);
        ok(&c);
        let want = identity_bytes(&cpu);
        for tile in [None, Some("7"), Some("1000")] {
            let gpu = d.join("gpu.cooc");
            let mut g = a.clone();
            g.extend(["--backend", "cuda", "--out", p(&gpu)]);
            let out = std::process::Command::new(env!("CARGO_BIN_EXE_cooc"))
                .args(&g)
                .env("RUST_LOG", "warn")
                .envs(tile.map(|t| ("COOC_GPU_TILE_ROWS", t)))
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "{name} tile={tile:?}: {}",
                stderr(&out)
            );
            assert!(
                identity_bytes(&gpu) == want,
                "{name} tile={tile:?}: the CUDA artifact differs from the CPU one"
            );
        }
    }
}

#[test]
#[ignore = "needs --features nccl and two CUDA GPUs"]
fn a_gang_over_nccl_writes_the_single_process_artifact() {
    let why = if !cooc::backend::HAS_NCCL {
        Some("this build has no NCCL (cargo test --features nccl)".to_owned())
    } else {
        cuda_skip()
    };
    if let Some(why) = why {
        panic!("the NCCL gang cannot run here: {why}");
    }
    // NCCL wants one GPU per rank.
    let gpus = std::process::Command::new("nvidia-smi")
        .args(["--query-gpu=name", "--format=csv,noheader"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).lines().count())
        .unwrap_or(0);
    assert!(
        gpus >= 2,
        "{gpus} GPU(s) visible, NCCL needs one per rank (2)"
    );
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let one = d.join("one.cooc");
    let two = d.join("two.cooc");
    ok(&[
        "train",
        "--generate",
        "m",
        "--seed",
        "5",
        "--backend",
        "cpu",
        "--out",
        p(&one),
    ]);
    ok(&[
        "train",
        "--generate",
        "m",
        "--seed",
        "5",
        "--backend",
        "cuda",
        "--comm",
        "nccl",
        "--local-ranks",
        "2",
        "--out",
        p(&two),
    ]);
    assert!(
        identity_bytes(&one) == identity_bytes(&two),
        "the NCCL gang's artifact differs"
    );
}
