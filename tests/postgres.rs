//! Training from PostgreSQL against a real server: the model from a table equals the model
//! from the CSV of the same rows on 1, 2 and 3 ranks; the guide's schema without
//! `customer_id` (baskets by time window); `--orders-query` over another schema; one
//! snapshot for the whole gang while a writer keeps inserting; and the faults (a refused
//! login, a missing table, a wrong column type, a connection lost mid-read) with their exit
//! codes, registering nothing.
//!
//! The server is named by `COOC_TEST_POSTGRES` (a URL whose user may create databases and
//! roles); `tests/postgres/server.sh start DIR` starts a throwaway one, and `.ci/run` does.
//! Without it these tests are ignored; run with `--ignored` and no server, they fail.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::{cooc, ok, p, stderr};

/// The test server's URL without a database (`postgresql://user@host:port`).
fn server() -> String {
    let url = std::env::var("COOC_TEST_POSTGRES").unwrap_or_else(|_| {
        panic!("COOC_TEST_POSTGRES is not set: start a server with tests/postgres/server.sh start DIR and export the URL it prints")
    });
    match url.rfind('/') {
        Some(i) if url[..i].contains("://") && i > url.find("://").unwrap() + 2 => {
            url[..i].to_owned()
        }
        _ => url,
    }
}

/// Runs SQL with psql on `db`, failing the test on any error; the output, unaligned.
fn psql(db: &str, sql: &str) -> String {
    let out = Command::new("psql")
        .args([
            &format!("{}/{db}", server()),
            "-qAtX",
            "-v",
            "ON_ERROR_STOP=1",
        ])
        .args(["-c", sql])
        .output()
        .expect("running psql");
    assert!(
        out.status.success(),
        "psql {sql}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

/// A scratch database, dropped at the end.
struct Db {
    name: String,
}

impl Db {
    fn new(tag: &str) -> Db {
        let name = format!("cooc_{tag}_{}", std::process::id());
        psql(
            "postgres",
            &format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"),
        );
        psql("postgres", &format!("CREATE DATABASE {name}"));
        Db { name }
    }

    /// The database loaded by `cooc gen --size s --seed 7 --postgres`.
    fn bookstore(tag: &str) -> Db {
        let db = Db::new(tag);
        ok(&["gen", "--size", "s", "--seed", "7", "--postgres", &db.url()]);
        db
    }

    fn url(&self) -> String {
        format!("{}/{}", server(), self.name)
    }

    fn sql(&self, sql: &str) -> String {
        psql(&self.name, sql)
    }

    /// Writes the result of `select` as CSV with a header to `path` (psql's `\copy`).
    fn to_csv(&self, select: &str, path: &Path) {
        self.sql(&format!(
            "\\copy ({select}) TO '{}' (FORMAT csv, HEADER)",
            p(path)
        ));
    }
}

impl Drop for Db {
    fn drop(&mut self) {
        let _ = Command::new("psql")
            .args([&format!("{}/postgres", server()), "-qAtX"])
            .args([
                "-c",
                &format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name),
            ])
            .output();
    }
}

/// The neighbour list of a model, as `cooc export` prints it.
fn export(model: &Path) -> String {
    ok(&["export", p(model)])
}

/// Trains from `args` into `out` and returns the export.
fn train(out: &Path, args: &[&str]) -> String {
    let mut all = vec!["train", "--threads", "2", "--out", p(out)];
    all.extend_from_slice(args);
    ok(&all);
    export(out)
}

#[test]
#[ignore = "needs a PostgreSQL server: COOC_TEST_POSTGRES (.ci/run starts one)"]
fn a_table_trains_the_model_its_csv_trains_on_any_number_of_ranks() {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::bookstore("same");
    let data = dir.path().join("data");
    ok(&["gen", "--size", "s", "--seed", "7", "--out", p(&data)]);
    let csv = data.join("orders.csv");
    for extra in [
        &[][..],
        &["--holdout", "last"],
        &["--similarity", "llr", "--decay-half-life", "30d"],
    ] {
        let mut args = vec!["--orders", p(&csv)];
        args.extend_from_slice(extra);
        let want = train(&dir.path().join("csv.cooc"), &args);
        assert!(want.lines().count() > 1000, "{want}");
        for world in ["1", "2", "3"] {
            let url = db.url();
            let mut args = vec!["--postgres", &url, "--local-ranks", world];
            args.extend_from_slice(extra);
            let got = train(&dir.path().join(format!("pg{world}.cooc")), &args);
            assert!(
                got == want,
                "{extra:?} on {world} rank(s): the model differs from the CSV's"
            );
        }
    }
    // Titles from the books table, as from books.csv.
    let want = train(
        &dir.path().join("books.cooc"),
        &["--orders", p(&csv), "--books", p(&data.join("books.csv"))],
    );
    let got = train(
        &dir.path().join("pgbooks.cooc"),
        &["--postgres", &db.url(), "--books-table", "books"],
    );
    assert_eq!(got, want);
    assert!(got.contains(','), "{got}");
}

#[test]
#[ignore = "needs a PostgreSQL server: COOC_TEST_POSTGRES (.ci/run starts one)"]
fn the_guides_schema_without_customer_id_groups_baskets_by_time() {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::bookstore("window");
    db.sql(
        "CREATE TABLE guide_orders (id SERIAL PRIMARY KEY, book_id INT, qty INT, created_at TIMESTAMPTZ); \
         INSERT INTO guide_orders SELECT id, book_id, qty, created_at FROM orders ORDER BY id",
    );
    let csv = dir.path().join("guide.csv");
    db.to_csv(
        "SELECT id, book_id, qty, created_at FROM guide_orders ORDER BY id",
        &csv,
    );
    let want = train(
        &dir.path().join("csv.cooc"),
        &["--orders", p(&csv), "--basket-window", "1h"],
    );
    let url = db.url();
    for world in ["1", "2"] {
        let got = train(
            &dir.path().join("pg.cooc"),
            &[
                "--postgres",
                &url,
                "--orders-table",
                "guide_orders",
                "--basket-window",
                "1h",
                "--local-ranks",
                world,
            ],
        );
        assert!(
            got == want,
            "{world} rank(s): the model differs from the CSV's"
        );
    }
    // Without --basket-window the table has no basket: exit 2, naming the table and the flag.
    let out = cooc(&[
        "train",
        "--postgres",
        &url,
        "--orders-table",
        "guide_orders",
        "--out",
        p(&dir.path().join("x.cooc")),
    ]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains("guide_orders") && err.contains("--basket-window"),
        "{err}"
    );
}

#[test]
#[ignore = "needs a PostgreSQL server: COOC_TEST_POSTGRES (.ci/run starts one)"]
fn an_orders_query_reads_another_schema() {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::bookstore("query");
    db.sql(
        "CREATE TABLE sales (line BIGINT, isbn BIGINT, buyer TEXT, sold_at TIMESTAMP); \
         INSERT INTO sales SELECT id, book_id, 'c' || customer_id, created_at FROM orders",
    );
    let csv = dir.path().join("sales.csv");
    db.to_csv(
        "SELECT isbn AS book_id, buyer AS customer_id, sold_at AS created_at FROM sales ORDER BY line",
        &csv,
    );
    let want = train(
        &dir.path().join("csv.cooc"),
        &["--orders", p(&csv), "--holdout", "last"],
    );
    let url = db.url();
    let query = "SELECT isbn AS book_id, buyer AS customer_id, sold_at AS created_at FROM sales";
    for world in ["1", "2", "3"] {
        let got = train(
            &dir.path().join("pg.cooc"),
            &[
                "--postgres",
                &url,
                "--orders-query",
                query,
                "--holdout",
                "last",
                "--local-ranks",
                world,
            ],
        );
        assert!(
            got == want,
            "{world} rank(s): the model differs from the CSV's"
        );
    }
}

#[test]
#[ignore = "needs a PostgreSQL server: COOC_TEST_POSTGRES (.ci/run starts one)"]
fn a_gang_trains_on_one_snapshot_while_the_shop_keeps_inserting() {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::bookstore("snapshot");
    let before: u64 = db.sql("SELECT count(*) FROM orders").parse().unwrap();
    // A writer committing one order at a time, as long as the test runs.
    let writer = Command::new("psql")
        .args([&db.url(), "-qX", "-c"])
        .arg(
            "DO $$ BEGIN LOOP \
               INSERT INTO orders (book_id, qty, created_at, customer_id) \
                 SELECT 1 + (random() * 199)::int, 1, now(), 1 + (random() * 799)::int \
                 FROM generate_series(1, 5); \
               COMMIT; \
             END LOOP; END $$",
        )
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let writer = KillOnDrop(writer);
    let deadline = Instant::now() + Duration::from_secs(30);
    while db
        .sql("SELECT count(*) FROM orders")
        .parse::<u64>()
        .unwrap()
        < before + 500
    {
        assert!(Instant::now() < deadline, "the writer inserts nothing");
        std::thread::sleep(Duration::from_millis(20));
    }
    let model = dir.path().join("gang.cooc");
    let url = db.url();
    let got = train(
        &model,
        &[
            "--postgres",
            &url,
            "--local-ranks",
            "2",
            "--holdout",
            "last",
        ],
    );
    let during: u64 = db.sql("SELECT count(*) FROM orders").parse().unwrap();
    drop(writer);
    // The snapshot the gang read, from the model's provenance.
    let info = ok(&["inspect", p(&model)]);
    let snapshot = info
        .lines()
        .find_map(|l| l.strip_prefix("dataset"))
        .and_then(|l| l.trim().rsplit_once('@'))
        .map(|(_, s)| s.to_owned())
        .unwrap_or_else(|| panic!("no snapshot in {info}"));
    // Exactly the rows that snapshot holds (the inserting transaction visible in it).
    let visible = format!(
        "SELECT id, book_id, qty, created_at, customer_id FROM orders \
         WHERE pg_visible_in_snapshot(xmin::text::xid8, '{snapshot}'::pg_snapshot) ORDER BY id"
    );
    let n: u64 = db
        .sql(&format!("SELECT count(*) FROM ({visible}) v"))
        .parse()
        .unwrap();
    assert!(
        n > before + 500 && n < during,
        "snapshot rows {n}, before {before}, after {during}"
    );
    let csv = dir.path().join("snapshot.csv");
    db.to_csv(&visible, &csv);
    let want = train(
        &dir.path().join("csv.cooc"),
        &["--orders", p(&csv), "--holdout", "last"],
    );
    assert!(
        got == want,
        "the gang's model is not the model of its snapshot's rows"
    );
    assert!(info.contains(&format!("input rows   {n} ")), "{info}");
}

struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
#[ignore = "needs a PostgreSQL server: COOC_TEST_POSTGRES (.ci/run starts one)"]
fn bad_credentials_tables_and_columns_are_exit_2_and_register_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::bookstore("faults");
    let store = dir.path().join("store");
    let run = |args: &[&str], env: &[(&str, &str)]| {
        let mut all = vec!["train", "--model-dir", p(&store)];
        all.extend_from_slice(args);
        Command::new(env!("CARGO_BIN_EXE_cooc"))
            .args(&all)
            .env_remove("PGPASSWORD")
            .envs(env.iter().copied())
            .env("RUST_LOG", "warn")
            .output()
            .unwrap()
    };
    // A reader with SELECT on the two tables and nothing else, behind a password.
    db.sql(
        "DO $$ BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'cooc_secret') THEN \
           CREATE ROLE cooc_secret LOGIN; END IF; END $$; \
         ALTER ROLE cooc_secret PASSWORD 'right-horse'; \
         GRANT SELECT ON orders, books TO cooc_secret",
    );
    let as_reader = server().replace("://postgres@", "://cooc_secret@") + "/" + &db.name;
    let wrong = dir.path().join("wrong");
    std::fs::write(&wrong, "battery-staple\n").unwrap();
    let out = run(
        &[
            "--postgres",
            &as_reader,
            "--postgres-password-file",
            p(&wrong),
        ],
        &[],
    );
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("cooc_secret@") && err.contains(&db.name),
        "{err}"
    );
    assert!(!err.contains("battery-staple"), "{err}");
    let out = run(
        &["--postgres", &as_reader],
        &[("PGPASSWORD", "battery-staple")],
    );
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    // The right password, in a password file: SELECT on the tables is all it needs.
    let right = dir.path().join("right");
    std::fs::write(&right, "right-horse\n").unwrap();
    let out = run(
        &[
            "--postgres",
            &as_reader,
            "--postgres-password-file",
            p(&right),
            "--books-table",
            "books",
            "--no-promote",
        ],
        &[],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    // A password in the URL is refused before connecting, and never echoed.
    let leaky = as_reader.replace("cooc_secret@", "cooc_secret:right-horse@");
    let out = run(&["--postgres", &leaky], &[]);
    assert_eq!(out.status.code(), Some(2));
    assert!(!stderr(&out).contains("right-horse"), "{}", stderr(&out));

    let url = db.url();
    let out = run(&["--postgres", &url, "--orders-table", "ordrs"], &[]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("ordrs"), "{}", stderr(&out));
    db.sql("CREATE TABLE text_orders AS SELECT id, book_id::text AS book_id, customer_id, created_at FROM orders");
    let out = run(&["--postgres", &url, "--orders-table", "text_orders"], &[]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("text_orders") && err.contains("book_id"),
        "{err}"
    );
    let out = run(
        &[
            "--postgres",
            &url,
            "--orders-query",
            "SELECT book_id, custmer_id FROM orders",
        ],
        &[],
    );
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    // The only successful run above did not promote: nothing is live.
    assert!(!store.join("CURRENT").exists());
}

#[test]
#[ignore = "needs a PostgreSQL server: COOC_TEST_POSTGRES (.ci/run starts one)"]
fn a_connection_lost_mid_read_is_retriable_and_registers_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::bookstore("lost");
    let store = dir.path().join("store");
    // A read that takes seconds (a pause per row), cut by terminating the reading backends.
    let slow = "SELECT book_id, customer_id, pg_sleep(0.002)::text AS pause FROM orders";
    let child = Command::new(env!("CARGO_BIN_EXE_cooc"))
        .args([
            "train",
            "--postgres",
            &db.url(),
            "--orders-query",
            slow,
            "--local-ranks",
            "2",
        ])
        .args(["--model-dir", p(&store)])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let active = format!(
        "SELECT count(*) FROM pg_stat_activity WHERE datname = '{}' AND application_name = 'cooc' AND query LIKE 'COPY%'",
        db.name
    );
    while db.sql(&active) != "2" {
        assert!(Instant::now() < deadline, "the ranks never started reading");
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(300));
    db.sql(&format!(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{}' AND application_name = 'cooc'",
        db.name
    ));
    let out = child.wait_with_output().unwrap();
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(75), "{err}");
    assert!(err.contains(&db.name), "{err}");
    assert!(
        !store.join("CURRENT").exists(),
        "a failed run registered a model"
    );
}
