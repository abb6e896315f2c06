//! Defects a careless or hostile environment finds, kept fixed: empty inputs, keys that are
//! not UTF-8, byte-order marks, a catalogue smaller than the gang, and the exit codes of
//! every command for a missing path or the wrong kind of file.

use std::fs;
use std::path::Path;

use crate::common::gang::identity;
use crate::common::{cooc, ok, p, stderr};

fn write(dir: &Path, name: &str, body: &[u8]) -> std::path::PathBuf {
    let f = dir.join(name);
    fs::write(&f, body).unwrap();
    f
}

#[test]
fn an_input_without_rows_or_neighbours_registers_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("model");
    let cases: [(&str, &[u8], &str); 3] = [
        ("header.csv", b"customer_id,book_id,created_at\n", "no rows"),
        ("empty.txt", b"", "no rows"),
        (
            "alone.csv",
            b"customer_id,book_id\nc1,1\nc2,2\n",
            "no two items share a basket",
        ),
    ];
    for (name, body, why) in cases {
        let f = write(dir.path(), name, body);
        let format = if name.ends_with(".txt") {
            "baskets"
        } else {
            "orders"
        };
        let out = cooc(&[
            "train",
            "--orders",
            p(&f),
            "--format",
            format,
            "--model-dir",
            p(&store),
        ]);
        assert_eq!(out.status.code(), Some(2), "{name}: {}", stderr(&out));
        assert!(
            stderr(&out).contains(name) && stderr(&out).contains(why),
            "{name}: {}",
            stderr(&out)
        );
        assert!(!store.join("CURRENT").exists(), "{name}: a model went live");
    }
}

#[test]
fn keys_that_are_not_utf8_are_bad_rows_named_by_line() {
    let dir = tempfile::tempdir().unwrap();
    let f = write(
        dir.path(),
        "orders.csv",
        b"customer_id,book_id\nc1,abc\nc1,x\xff\xfey\nc2,abc\n",
    );
    let out = cooc(&[
        "train",
        "--orders",
        p(&f),
        "--out",
        p(&dir.path().join("m")),
    ]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("orders.csv:3:") && stderr(&out).contains("UTF-8"),
        "{}",
        stderr(&out)
    );
    let g = write(
        dir.path(),
        "gang.csv",
        b"customer_id,book_id\n\xff,1\n2,1\n",
    );
    let out = cooc(&[
        "train",
        "--orders",
        p(&g),
        "--local-ranks",
        "2",
        "--out",
        p(&dir.path().join("g")),
    ]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("gang.csv:2:"), "{}", stderr(&out));
}

#[test]
fn a_byte_order_mark_never_becomes_part_of_a_key() {
    let dir = tempfile::tempdir().unwrap();
    let plain = write(dir.path(), "plain.txt", b"a,b\na,c\n");
    let marked = write(dir.path(), "marked.txt", b"\xEF\xBB\xBFa,b\na,c\n");
    let (m1, m2) = (dir.path().join("1.cooc"), dir.path().join("2.cooc"));
    for (f, m) in [(&plain, &m1), (&marked, &m2)] {
        ok(&[
            "train",
            "--orders",
            p(f),
            "--format",
            "baskets",
            "--out",
            p(m),
        ]);
    }
    // The same neighbours (the dataset fingerprint differs: it hashes the file's bytes).
    let csv = ok(&["export", p(&m2)]);
    assert_eq!(ok(&["export", p(&m1)]), csv);
    assert!(!csv.contains('\u{feff}'), "{csv}");
    let orders = write(
        dir.path(),
        "orders.csv",
        b"\xEF\xBB\xBFcustomer_id,book_id\n1,2\n1,3\n",
    );
    ok(&["train", "--orders", p(&orders), "--out", p(&m1)]);
}

#[test]
fn a_catalogue_smaller_than_the_gang_trains_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let f = write(
        dir.path(),
        "small.csv",
        b"customer_id,book_id\nc1,1\nc1,2\nc2,1\nc2,3\nc3,2\nc3,3\n",
    );
    let one = dir.path().join("one.cooc");
    ok(&["train", "--orders", p(&f), "--out", p(&one)]);
    for ranks in ["3", "4"] {
        let gang = dir.path().join(format!("gang{ranks}.cooc"));
        ok(&[
            "train",
            "--orders",
            p(&f),
            "--local-ranks",
            ranks,
            "--out",
            p(&gang),
        ]);
        assert_eq!(identity(&one), identity(&gang), "{ranks} ranks");
    }
    // One book: no neighbours, a named bad input (not a lost rank).
    let single = write(
        dir.path(),
        "single.csv",
        b"customer_id,book_id\nc1,1\nc2,1\n",
    );
    let out = cooc(&[
        "train",
        "--orders",
        p(&single),
        "--local-ranks",
        "3",
        "--out",
        p(&dir.path().join("s.cooc")),
    ]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("single.csv"), "{}", stderr(&out));
}

#[test]
fn every_command_exits_2_for_a_missing_path_or_the_wrong_kind_of_file() {
    let dir = tempfile::tempdir().unwrap();
    let nosuch = dir.path().join("nosuch");
    let orders = write(dir.path(), "orders.csv", b"customer_id,book_id\n1,2\n1,3\n");
    let cases: Vec<Vec<&str>> = vec![
        vec!["export", p(&nosuch)],
        vec!["export", p(&orders)],
        vec!["inspect", p(&nosuch)],
        vec!["inspect", p(&orders)],
        vec!["models", "list", "--model-dir", p(&nosuch)],
        vec!["models", "promote", "v1", "--model-dir", p(&nosuch)],
        vec!["models", "rollback", "--model-dir", p(&nosuch)],
        vec!["train", "--orders", p(&nosuch)],
        vec!["train", "--orders", p(&orders), "--books", p(&nosuch)],
    ];
    for args in cases {
        let out = cooc(&args);
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(
            err.contains("nosuch") || err.contains("orders.csv"),
            "{args:?}: {err}"
        );
        // The OS error is said once, not twice.
        assert!(
            err.matches("os error").count() <= 1,
            "{args:?} repeats the OS error: {err}"
        );
    }
}

/// Sends SIGTERM to a child.
fn sigterm(c: &std::process::Child) {
    // SAFETY: kill(2) with a child's pid and a valid signal number.
    unsafe { libc::kill(c.id() as i32, libc::SIGTERM) };
}

#[test]
fn sigterm_stops_a_run_at_once_registers_nothing_and_exits_75() {
    use crate::common::gang::{finish, loopback_peers, secret, spawn_rank};
    use std::time::{Duration, Instant};
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("model");
    // One process.
    let c = std::process::Command::new(env!("CARGO_BIN_EXE_cooc"))
        .args(["train", "--generate", "l", "--model-dir", p(&store)])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    sigterm(&c);
    let t = Instant::now();
    let (code, err) = finish(c, Duration::from_secs(20));
    assert_eq!(code, Some(75), "{err}");
    assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
    assert!(err.contains("SIGTERM"), "{err}");
    assert!(!store.join("CURRENT").exists());

    // A gang: the stopped rank exits 75, and its peer learns why at once and exits 75 too.
    let peers = loopback_peers(2);
    let s = secret(dir.path(), "secret");
    let args = ["train", "--generate", "l", "--model-dir", p(&store)];
    let r0 = spawn_rank(&args, 0, &peers, &s, &[("RUST_LOG", "warn")]);
    let r1 = spawn_rank(&args, 1, &peers, &s, &[("RUST_LOG", "warn")]);
    std::thread::sleep(Duration::from_millis(2500));
    sigterm(&r1);
    let t = Instant::now();
    let (c1, e1) = finish(r1, Duration::from_secs(20));
    let (c0, e0) = finish(r0, Duration::from_secs(20));
    assert_eq!(c1, Some(75), "{e1}");
    assert_eq!(c0, Some(75), "{e0}");
    assert!(e0.contains("rank 1 stopped by SIGTERM"), "{e0}");
    assert!(t.elapsed() < Duration::from_secs(6), "{:?}", t.elapsed());
    assert!(!store.join("CURRENT").exists());
}

#[test]
fn isbns_and_ids_with_leading_zeros_stay_distinct_keys() {
    let dir = tempfile::tempdir().unwrap();
    // Real ISBN-10s, two of which differ only by leading zeros; customers 007 and 7.
    let f = write(
        dir.path(),
        "orders.csv",
        b"customer_id,book_id\n\
          007,0553092626\n007,0007136587\n007,0451524934\n\
          7,7136587\n7,0553092626\n\
          8,0451524934\n8,0007136587\n",
    );
    let m = dir.path().join("m.cooc");
    ok(&["train", "--orders", p(&f), "--out", p(&m)]);
    let info: serde_json::Value = serde_json::from_str(&ok(&["inspect", p(&m), "--json"])).unwrap();
    assert_eq!(info["meta"]["n_items"], 4, "{info}");
    assert_eq!(info["meta"]["n_baskets"], 3, "{info}");
    let csv = ok(&["export", p(&m)]);
    assert!(
        csv.contains("\n0007136587,") && csv.contains("\n7136587,"),
        "{csv}"
    );
    let one = ok(&["inspect", p(&m), "--book", "0007136587", "--json"]);
    assert!(one.contains("0451524934"), "{one}");
    // Forced: --keys string keeps canonical integers as strings (ordered bytewise).
    let ints = write(
        dir.path(),
        "ints.csv",
        b"customer_id,book_id\n1,9\n1,10\n2,9\n2,10\n",
    );
    ok(&[
        "train",
        "--orders",
        p(&ints),
        "--keys",
        "string",
        "--out",
        p(&m),
    ]);
    let csv = ok(&["export", p(&m)]);
    assert!(
        csv.starts_with("book_id,rank,neighbour_id,score\n10,"),
        "{csv}"
    );
    // --keys int refuses an ISBN, naming the file.
    let out = cooc(&["train", "--orders", p(&f), "--keys", "int", "--out", p(&m)]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("orders.csv") && stderr(&out).contains("--keys int"));
}

/// One huge basket (a company account) among ordinary ones: without a cap the run warns of
/// it; `--max-basket` samples it down, the same for any gang (byte-identical models), and
/// another `--sample-seed` draws another sample.
#[test]
fn max_basket_samples_huge_baskets_alike_on_any_gang_and_warns_without_it() {
    let dir = tempfile::tempdir().unwrap();
    let mut body = String::new();
    for c in 0..200u32 {
        let items: Vec<String> = (0..(c % 4 + 2))
            .map(|i| format!("b{}", (c * 7 + i * 13) % 300))
            .collect();
        body += &items.join(",");
        body += "\n";
        if c == 100 {
            let huge: Vec<String> = (0..1500).map(|i| format!("b{i}")).collect();
            body += &huge.join(",");
            body += "\n";
        }
    }
    let baskets = write(dir.path(), "baskets.txt", body.as_bytes());
    let base = ["train", "--orders", p(&baskets), "--format", "baskets"];

    let uncapped = dir.path().join("uncapped.cooc");
    let run = cooc(&[&base[..], &["--out", p(&uncapped)]].concat());
    assert!(run.status.success(), "{}", stderr(&run));
    let warn = stderr(&run);
    assert!(
        warn.contains("1 basket(s) have more than 1000 distinct books (the largest 1500)")
            && warn.contains("--max-basket"),
        "{warn}"
    );

    let capped = |name: &str, extra: &[&str]| {
        let out = dir.path().join(name);
        let run = cooc(&[&base[..], &["--max-basket", "50", "--out", p(&out)], extra].concat());
        assert!(run.status.success(), "{extra:?}: {}", stderr(&run));
        assert!(!stderr(&run).contains("have more than"), "{}", stderr(&run));
        identity(&out)
    };
    let one = capped("one.cooc", &[]);
    assert_ne!(one, identity(&uncapped), "the cap changes the model");
    assert_eq!(one, capped("three.cooc", &["--local-ranks", "3"]));
    assert_eq!(one, capped("threads.cooc", &["--threads", "1"]));
    assert_ne!(one, capped("seed.cooc", &["--sample-seed", "9"]));

    // The huge basket keeps 50 of its 1500 (basket, book) pairs; no other basket changes.
    let pairs = |f: &str| {
        cooc_model::Model::open(&dir.path().join(f))
            .unwrap()
            .meta()
            .n_pairs
    };
    assert_eq!(pairs("uncapped.cooc") - pairs("one.cooc"), 1500 - 50);
    let bad = cooc(
        &[
            &base[..],
            &["--max-basket", "1", "--out", p(&dir.path().join("x.cooc"))],
        ]
        .concat(),
    );
    assert_eq!(bad.status.code(), Some(2), "{}", stderr(&bad));
}
