//! The gang runtime end to end, with real rank processes talking QUIC on loopback:
//! byte-identical artifacts for any world size and thread count, and the documented exit
//! codes when a rank is lost, never arrives, has bad input, or a stranger knocks.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use cooc_model::Model;

use crate::common::gang::{finish, free_ports, gen, identity, loopback_peers, secret, spawn_rank};
use crate::common::{cooc, ok, p, stderr};

#[test]
fn artifacts_are_identical_for_any_world_size_and_thread_count() {
    let dir = tempfile::tempdir().unwrap();
    let data = gen(dir.path(), "s");
    let orders = data.join("orders.csv");
    let one = dir.path().join("one.cooc");
    ok(&[
        "train",
        "--orders",
        p(&orders),
        "--holdout",
        "last",
        "--threads",
        "2",
        "--out",
        p(&one),
    ]);
    let want = identity(&one);
    for (world, threads) in [(1, "1"), (2, "1"), (3, "2"), (4, "1")] {
        let out = dir.path().join(format!("w{world}.cooc"));
        let run = Command::new(env!("CARGO_BIN_EXE_cooc"))
            .args([
                "train",
                "--orders",
                p(&orders),
                "--holdout",
                "last",
                "--out",
                p(&out),
            ])
            .args(["--threads", threads, "--local-ranks", &world.to_string()])
            // Small chunks, so that every rank reads a share of the file.
            .env("COOC_CHUNK_BYTES", "9000")
            .env("RUST_LOG", "warn")
            .output()
            .unwrap();
        assert!(run.status.success(), "W={world}: {}", stderr(&run));
        assert_eq!(identity(&out), want, "W={world} threads={threads}");
    }

    // Generated input: every rank generates only its own customers.
    let gen_one = dir.path().join("g1.cooc");
    ok(&[
        "train",
        "--generate",
        "s",
        "--seed",
        "3",
        "--holdout",
        "last",
        "--out",
        p(&gen_one),
    ]);
    let gen_three = dir.path().join("g3.cooc");
    ok(&[
        "train",
        "--generate",
        "s",
        "--seed",
        "3",
        "--holdout",
        "last",
        "--local-ranks",
        "3",
        "--out",
        p(&gen_three),
    ]);
    assert_eq!(identity(&gen_one), identity(&gen_three));
    assert_ne!(identity(&gen_one), want, "another seed is another model");
}

#[test]
fn string_keys_quoted_csv_and_basket_files_match_one_process() {
    let dir = tempfile::tempdir().unwrap();
    // String customers and books, quotes (read as one chunk by rank 0), Jaccard.
    let mut csv = String::from("customer_id,book_id,created_at\n");
    for c in 0..60 {
        for b in 0..(c % 7 + 2) {
            let book = if b % 3 == 0 {
                format!("\"bk,{}\"", (c * 5 + b) % 23)
            } else {
                format!("bk{}", (c + b * 3) % 17)
            };
            csv += &format!("cust-{c},{book},2025-01-0{} 10:00:00\n", 1 + b % 3);
        }
    }
    let orders = dir.path().join("orders.csv");
    std::fs::write(&orders, csv).unwrap();
    let mut baskets = String::new();
    for c in 0..80 {
        let items: Vec<String> = (0..(c % 5 + 1))
            .map(|i| format!("item{}", (c * 3 + i * 7) % 19))
            .collect();
        baskets += &items.join(", ");
        baskets += "\n";
    }
    let bfile = dir.path().join("baskets.txt");
    std::fs::write(&bfile, baskets).unwrap();
    for (input, extra) in [
        (
            &orders,
            vec!["--similarity", "jaccard", "--holdout", "last"],
        ),
        (&bfile, vec!["--format", "baskets"]),
    ] {
        let mut base = vec!["train", "--orders", p(input), "--k", "5"];
        base.extend(&extra);
        let one = dir.path().join("one.cooc");
        let mut a = base.clone();
        a.extend(["--out", p(&one)]);
        ok(&a);
        let three = dir.path().join("three.cooc");
        let mut a = base.clone();
        a.extend(["--local-ranks", "3", "--out", p(&three)]);
        ok(&a);
        assert_eq!(identity(&one), identity(&three), "{}", input.display());
    }
}

#[test]
fn a_bad_row_on_any_rank_stops_every_rank_with_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let data = gen(dir.path(), "s");
    let orders = data.join("orders.csv");
    let mut text = std::fs::read_to_string(&orders).unwrap();
    let lines = text.lines().count();
    text.push_str("9999999,not-a-book-but-a-very-long-string-key,1,yesterday,5\n");
    std::fs::write(&orders, text).unwrap();
    let store = dir.path().join("model");
    let peers = loopback_peers(3);
    let s = secret(dir.path(), "secret");
    let args = [
        "train",
        "--orders",
        p(&orders),
        "--holdout",
        "last",
        "--model-dir",
        p(&store),
    ];
    let ranks: Vec<Child> = (0..3)
        .map(|r| spawn_rank(&args, r, &peers, &s, &[("COOC_CHUNK_BYTES", "9000")]))
        .collect();
    let want = format!("orders.csv:{}: created_at \"yesterday\"", lines + 1);
    for (r, c) in ranks.into_iter().enumerate() {
        let (code, err) = finish(c, Duration::from_secs(60));
        assert_eq!(code, Some(2), "rank {r}:\n{err}");
        assert!(err.contains(&want), "rank {r} must name file:line:\n{err}");
    }
    assert!(!store.join("CURRENT").exists(), "nothing may be registered");
}

#[test]
fn a_rank_that_never_arrives_is_named_at_the_deadline() {
    let dir = tempfile::tempdir().unwrap();
    let peers = loopback_peers(3);
    let s = secret(dir.path(), "secret");
    let out = dir.path().join("m.cooc");
    let args = [
        "train",
        "--generate",
        "s",
        "--out",
        p(&out),
        "--rendezvous-timeout",
        "2s",
    ];
    let ranks: Vec<Child> = (0..2)
        .map(|r| spawn_rank(&args, r, &peers, &s, &[]))
        .collect();
    for (r, c) in ranks.into_iter().enumerate() {
        let (code, err) = finish(c, Duration::from_secs(30));
        assert_eq!(code, Some(75), "rank {r}:\n{err}");
        assert!(
            err.contains("rank(s) [2] did not arrive within 2 s"),
            "rank {r}:\n{err}"
        );
    }
    assert!(!out.exists());
}

#[test]
fn a_rank_killed_mid_run_fails_the_gang_retriably_and_keeps_the_live_model() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("model");
    ok(&["train", "--generate", "s", "--model-dir", p(&store)]);
    let live = std::fs::read_to_string(store.join("CURRENT")).unwrap();

    let peers = loopback_peers(3);
    let s = secret(dir.path(), "secret");
    let args = [
        "train",
        "--generate",
        "m",
        "--holdout",
        "last",
        "--threads",
        "1",
        "--model-dir",
        p(&store),
    ];
    let mut ranks: Vec<Child> = (0..3)
        .map(|r| spawn_rank(&args, r, &peers, &s, &[]))
        .collect();
    // Kill rank 1 once it holds its baskets: its peers are then in, or about to enter, the
    // next collectives with it.
    let mut victim = ranks.remove(1);
    let mut log = BufReader::new(victim.stderr.take().unwrap());
    let mut line = String::new();
    let mut seen = String::new();
    loop {
        line.clear();
        assert!(
            log.read_line(&mut line).unwrap() > 0,
            "rank 1 ended early:\n{seen}"
        );
        seen += &line;
        if line.contains("own baskets") {
            break;
        }
    }
    victim.kill().unwrap();
    let killed_at = Instant::now();
    victim.wait().unwrap();
    for (r, c) in [(0, ranks.remove(0)), (2, ranks.remove(0))] {
        let (code, err) = finish(c, Duration::from_secs(30));
        assert!(
            killed_at.elapsed() < Duration::from_secs(20),
            "rank {r} took too long"
        );
        assert_eq!(code, Some(75), "rank {r}:\n{err}");
        assert!(
            err.contains("lost rank 1 during"),
            "rank {r} must name the lost rank and phase:\n{err}"
        );
    }
    assert!(
        killed_at.elapsed() < Duration::from_secs(16),
        "survivors exit within 15 s"
    );
    assert_eq!(
        std::fs::read_to_string(store.join("CURRENT")).unwrap(),
        live
    );
}

#[test]
fn a_peer_without_the_secret_is_refused_and_the_gang_completes() {
    let dir = tempfile::tempdir().unwrap();
    let ports = free_ports(3);
    let peers: Vec<String> = ports[..2]
        .iter()
        .map(|p| format!("127.0.0.1:{p}"))
        .collect();
    // The impostor knows rank 0's address and listens elsewhere.
    let fake = vec![peers[0].clone(), format!("127.0.0.1:{}", ports[2])];
    let good = secret(dir.path(), "good");
    let bad = secret(dir.path(), "bad");
    let out = dir.path().join("m.cooc");
    let args = [
        "train",
        "--generate",
        "s",
        "--out",
        p(&out),
        "--rendezvous-timeout",
        "20s",
    ];
    // The impostor claims rank 1 and knocks first.
    let other = dir.path().join("other.cooc");
    let impostor = spawn_rank(
        &[
            "train",
            "--generate",
            "s",
            "--out",
            p(&other),
            "--rendezvous-timeout",
            "3s",
        ],
        1,
        &fake,
        &bad,
        &[],
    );
    let mut rank0 = spawn_rank(&args, 0, &peers, &good, &[]);
    // Rank 1 starts only once rank 0 has refused the impostor.
    let mut log = BufReader::new(rank0.stderr.take().unwrap());
    let mut e0 = String::new();
    while !e0.contains("failed authentication") {
        assert!(log.read_line(&mut e0).unwrap() > 0, "rank 0 ended:\n{e0}");
    }
    let rank1 = spawn_rank(&args, 1, &peers, &good, &[]);
    std::io::Read::read_to_string(&mut log, &mut e0).unwrap();
    let (c0, _) = finish(rank0, Duration::from_secs(60));
    let (c1, e1) = finish(rank1, Duration::from_secs(60));
    assert_eq!(c0, Some(0), "rank 0:\n{e0}");
    assert_eq!(c1, Some(0), "rank 1:\n{e1}");
    let (ci, ei) = finish(impostor, Duration::from_secs(30));
    assert_ne!(ci, Some(0), "the impostor must not complete:\n{ei}");
    assert!(Model::open(&out).is_ok());
}

#[test]
fn a_peer_of_another_run_is_a_named_fatal_mismatch() {
    let dir = tempfile::tempdir().unwrap();
    let peers = loopback_peers(2);
    let s = secret(dir.path(), "secret");
    let out = dir.path().join("m.cooc");
    let r0 = spawn_rank(
        &["train", "--generate", "s", "--out", p(&out)],
        0,
        &peers,
        &s,
        &[],
    );
    // Same secret, other parameters: the fingerprints differ.
    let r1 = spawn_rank(
        &["train", "--generate", "s", "--k", "7", "--out", p(&out)],
        1,
        &peers,
        &s,
        &[],
    );
    let (c1, e1) = finish(r1, Duration::from_secs(60));
    assert_eq!(c1, Some(2), "{e1}");
    assert!(e1.contains("fingerprint"), "{e1}");
    let (c0, e0) = finish(r0, Duration::from_secs(60));
    assert_eq!(c0, Some(2), "{e0}");
    let _ = cooc(&["--version"]);
}

/// Every measure, with and without a support floor, is the same model on any gang: N (the
/// training baskets of lift and LLR) is summed over the ranks like the degrees.
#[test]
fn every_measure_is_identical_for_any_world_size() {
    let dir = tempfile::tempdir().unwrap();
    let data = gen(dir.path(), "s");
    let orders = data.join("orders.csv");
    for sim in ["count", "lift", "inclusion", "llr"] {
        for support in ["1", "2"] {
            let train = |name: &str, extra: &[&str]| {
                let out = dir.path().join(format!("{sim}-{support}-{name}.cooc"));
                let mut args = vec![
                    "train",
                    "--orders",
                    p(&orders),
                    "--holdout",
                    "last",
                    "--similarity",
                    sim,
                    "--min-support",
                    support,
                    "--out",
                    p(&out),
                ];
                args.extend(extra);
                let run = Command::new(env!("CARGO_BIN_EXE_cooc"))
                    .args(&args)
                    .env("COOC_CHUNK_BYTES", "9000")
                    .env("RUST_LOG", "warn")
                    .output()
                    .unwrap();
                assert!(run.status.success(), "{sim} {name}: {}", stderr(&run));
                let m = Model::open(&out).unwrap();
                assert_eq!(m.meta().similarity.as_str(), sim);
                identity(&out)
            };
            let one = train("one", &[]);
            assert_eq!(
                one,
                train("three", &["--local-ranks", "3"]),
                "{sim} s={support}"
            );
        }
    }
}
