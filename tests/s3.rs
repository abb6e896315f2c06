//! The model store on object storage, against a real S3 API server: `s3s-fs` (crates.io),
//! started by each test on a loopback port over a scratch directory. `cooc train`, `cooc
//! models` and `cooc serve` are run with `--model-dir s3://models/...` and the standard AWS
//! environment, as a pod would run them; the store's rules are also checked in process.
//!
//! The tests that need the server are ignored without it (`cargo install s3s-fs@0.14.1
//! --features binary --locked`, or `COOC_S3S_FS=/path/to/s3s-fs`); `.ci/run` installs it
//! and runs them (`cargo test --release --test tests -- --ignored s3::`).

use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cooc_model::store::user_bucket;
use cooc_model::{ModelStore, StoreError};

use crate::common::stderr;

const BUCKET: &str = "models";
const ACCESS_KEY: &str = "cooc-test";
const SECRET_KEY: &str = "cooc-test-secret";

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// An s3s-fs server over a scratch directory; killed on drop.
struct S3 {
    child: Child,
    root: tempfile::TempDir,
    endpoint: String,
}

impl Drop for S3 {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl S3 {
    fn start() -> S3 {
        let bin = std::env::var("COOC_S3S_FS").unwrap_or_else(|_| "s3s-fs".into());
        let root = tempfile::tempdir().unwrap();
        // s3s-fs keeps a bucket as a directory of its root.
        std::fs::create_dir(root.path().join(BUCKET)).unwrap();
        let port = free_port();
        let child = Command::new(&bin)
            .args(["--host", "127.0.0.1", "--port", &port.to_string()])
            .args(["--access-key", ACCESS_KEY, "--secret-key", SECRET_KEY])
            .arg(root.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "starting {bin}: {e} (cargo install s3s-fs@0.14.1 --features binary --locked, or set COOC_S3S_FS)"
                )
            });
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "{bin} did not start listening");
            std::thread::sleep(Duration::from_millis(20));
        }
        S3 {
            child,
            root,
            endpoint: format!("http://127.0.0.1:{port}"),
        }
    }

    /// The standard environment a pod would get (here for a loopback, plain-HTTP server).
    fn env(&self) -> [(&'static str, String); 5] {
        [
            ("AWS_ACCESS_KEY_ID", ACCESS_KEY.into()),
            ("AWS_SECRET_ACCESS_KEY", SECRET_KEY.into()),
            ("AWS_ENDPOINT", self.endpoint.clone()),
            ("AWS_ALLOW_HTTP", "true".into()),
            ("AWS_REGION", "us-east-1".into()),
        ]
    }

    /// `cooc ARGS` with the S3 environment.
    fn cooc(&self, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_cooc"))
            .args(args)
            .envs(self.env())
            .env("RUST_LOG", "warn")
            .output()
            .expect("running cooc")
    }

    fn ok(&self, args: &[&str]) -> String {
        let out = self.cooc(args);
        assert!(
            out.status.success(),
            "cooc {args:?} failed ({:?}):\n{}",
            out.status.code(),
            stderr(&out)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// `cooc models --model-dir URL ARGS`, which must succeed.
    fn models(&self, url: &str, args: &[&str]) -> String {
        let mut all = vec!["models", "--model-dir", url];
        all.extend(args);
        self.ok(&all)
    }

    /// The store in process, configured by options rather than the environment.
    fn store(&self, prefix: &str) -> ModelStore {
        ModelStore::open_with(
            &format!("s3://{BUCKET}/{prefix}"),
            &[
                ("aws_endpoint", &self.endpoint),
                ("aws_access_key_id", ACCESS_KEY),
                ("aws_secret_access_key", SECRET_KEY),
                ("aws_allow_http", "true"),
                ("aws_region", "us-east-1"),
            ],
        )
        .unwrap()
    }

    /// Where s3s-fs keeps an object's bytes: to damage one behind the API's back.
    fn object_file(&self, key: &str) -> PathBuf {
        self.root.path().join(BUCKET).join(key)
    }
}

/// Trains a small model into `url` and returns the version `cooc models list` shows last.
fn train(s3: &S3, url: &str, seed: &str, promote: bool) -> String {
    let mut args = vec![
        "train",
        "--generate",
        "s",
        "--seed",
        seed,
        "--model-dir",
        url,
    ];
    if !promote {
        args.push("--no-promote");
    }
    s3.ok(&args);
    list(s3, url).last().unwrap().1.clone()
}

/// `cooc models list`: (marker, version) per line.
fn list(s3: &S3, url: &str) -> Vec<(char, String)> {
    s3.models(url, &["list"])
        .lines()
        .map(|l| {
            let mark = l.chars().next().unwrap();
            let v = l[2..].split_whitespace().next().unwrap().to_owned();
            (mark, v)
        })
        .collect()
}

#[test]
#[ignore = "needs s3s-fs (cargo install s3s-fs@0.14.1 --features binary --locked); .ci/run runs it"]
fn publish_promote_rollback_and_canary_on_s3() {
    let s3 = S3::start();
    let url = format!("s3://{BUCKET}/recommender");
    let v1 = train(&s3, &url, "1", true);
    let v2 = train(&s3, &url, "2", false);
    let v3 = train(&s3, &url, "3", false);
    let store = s3.store("recommender");
    assert_eq!(
        store.versions().unwrap(),
        [v1.clone(), v2.clone(), v3.clone()]
    );
    assert_eq!(store.current().unwrap().as_deref(), Some(v1.as_str()));
    let marks: Vec<char> = list(&s3, &url).iter().map(|(m, _)| *m).collect();
    assert_eq!(marks, ['*', ' ', ' ']);
    // The trainer's model is what the store serves back, byte for byte in content.
    let (live, model) = store.load_current().unwrap();
    assert_eq!(live, v1);
    assert_eq!(model.n_items(), 200);

    // A taken name is never overwritten; publish_new takes the next suffix.
    let junk = b"not a model".as_slice();
    assert!(matches!(
        store.publish(&v2, junk),
        Err(StoreError::Exists { .. })
    ));
    assert_eq!(store.open_model(&v2).unwrap().n_items(), 200);
    let (bad, at) = store.publish_new(&v2, junk).unwrap();
    assert_eq!(bad, format!("{v2}.1"));
    assert_eq!(at, format!("{url}/{bad}/model.cooc"));

    // A corrupt object never goes live, through the API or the CLI (exit 2).
    assert!(matches!(store.promote(&bad), Err(StoreError::Artifact(_))));
    let out = s3.cooc(&["models", "--model-dir", &url, "promote", &bad]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains(&format!("{url}/{bad}/model.cooc")),
        "{}",
        stderr(&out)
    );
    let out = s3.cooc(&[
        "models",
        "--model-dir",
        &url,
        "canary",
        &bad,
        "--percent",
        "10",
    ]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert_eq!(store.current().unwrap().as_deref(), Some(v1.as_str()));
    assert_eq!(store.canary().unwrap(), None);
    // Bit rot in a stored object: refused by its checksum when read back through S3.
    let file = s3.object_file(&format!("recommender/{v3}/model.cooc"));
    let mut bytes = std::fs::read(&file).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x40;
    std::fs::write(&file, &bytes).unwrap();
    let e = store.promote(&v3).unwrap_err();
    assert!(matches!(e, StoreError::Artifact(_)), "{e}");
    bytes[mid] ^= 0x40;
    std::fs::write(&file, &bytes).unwrap();

    // Promote, roll back in publication order, canary, and the canary's promotion.
    s3.models(&url, &["promote", &v3]);
    assert_eq!(store.current().unwrap().as_deref(), Some(v3.as_str()));
    let said = s3.models(&url, &["rollback"]);
    assert!(said.contains(&v2), "{said}");
    assert_eq!(store.current().unwrap().as_deref(), Some(v2.as_str()));
    s3.models(&url, &["canary", &v3, "--percent", "30"]);
    let c = store.canary().unwrap().unwrap();
    assert_eq!((c.version.as_str(), c.percent), (v3.as_str(), 30));
    assert!(list(&s3, &url).contains(&('~', v3.clone())));
    s3.models(&url, &["canary", "--off"]);
    assert_eq!(store.canary().unwrap(), None);
    store.set_canary(&v3, 50).unwrap();
    store.promote(&v3).unwrap();
    assert_eq!(store.canary().unwrap(), None);
    assert_eq!(store.current().unwrap().as_deref(), Some(v3.as_str()));

    // `cooc inspect` reads the live model straight from the bucket.
    let shown = s3.ok(&["inspect", &url]);
    assert!(shown.contains(&v3), "{shown}");
}

/// (status, X-Model-Version) of one GET, any status.
fn get(url: &str, user: Option<&str>) -> (u16, Option<String>) {
    let mut req = ureq::get(url).timeout(Duration::from_secs(10));
    if let Some(u) = user {
        req = req.set("x-user-id", u);
    }
    match req.call() {
        Ok(r) | Err(ureq::Error::Status(_, r)) => {
            (r.status(), r.header("x-model-version").map(str::to_owned))
        }
        Err(e) => panic!("GET {url}: {e}"),
    }
}

fn wait_for(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn metric(base: &str, name: &str) -> f64 {
    let text = ureq::get(&format!("{base}/metrics"))
        .call()
        .unwrap()
        .into_string()
        .unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
        .unwrap_or_else(|| panic!("{name} not in /metrics"))
}

#[test]
#[ignore = "needs s3s-fs (cargo install s3s-fs@0.14.1 --features binary --locked); .ci/run runs it"]
fn the_server_follows_s3_under_load_and_refuses_a_corrupt_version() {
    let s3 = S3::start();
    let url = format!("s3://{BUCKET}/live");
    let v1 = train(&s3, &url, "1", true);
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let mut server = Command::new(env!("CARGO_BIN_EXE_cooc"))
        .args(["serve", "--model-dir", &url])
        .envs(s3.env())
        .env("LISTEN", format!("127.0.0.1:{port}"))
        .env("RELOAD_INTERVAL_MS", "100")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    struct Kill<'a>(&'a mut Child);
    impl Drop for Kill<'_> {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let _server = Kill(&mut server);
    let ask = format!("{base}/recommend?book_id=1&k=5");
    wait_for("the server to serve v1", || {
        TcpStream::connect(("127.0.0.1", port)).is_ok() && get(&ask, None).1.as_deref() == Some(&v1)
    });

    // Load: four clients asking without pause; every answer must be a 200.
    let stop = Arc::new(AtomicBool::new(false));
    let seen = Arc::new(Mutex::new((0u64, Vec::<String>::new())));
    let clients: Vec<_> = (0..4)
        .map(|_| {
            let (stop, seen, ask) = (stop.clone(), seen.clone(), ask.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    let (status, version) = get(&ask, None);
                    let mut s = seen.lock().unwrap();
                    s.0 += 1;
                    if status != 200 {
                        s.1.push(format!("status {status}"));
                    } else if let Some(v) = version {
                        if !s.1.contains(&v) {
                            s.1.push(v);
                        }
                    }
                }
            })
        })
        .collect();

    // A new version, promoted: the server switches within a few polls.
    let v2 = train(&s3, &url, "2", false);
    s3.models(&url, &["promote", &v2]);
    wait_for("the server to serve v2", || {
        get(&ask, None).1.as_deref() == Some(&v2)
    });

    // CURRENT rewritten behind the store's back to name a corrupt version: refused, v2
    // keeps serving, the failure is counted.
    let store = s3.store("live");
    store.publish("broken", b"not a model").unwrap();
    let failures = metric(&base, "cooc_model_reload_failures_total");
    std::fs::write(s3.object_file("live/CURRENT"), b"broken\n").unwrap();
    wait_for("the refusal to be counted", || {
        metric(&base, "cooc_model_reload_failures_total") > failures
    });
    assert_eq!(get(&ask, None).1.as_deref(), Some(v2.as_str()));
    s3.models(&url, &["promote", &v2]);

    // A canary: each user gets the version of its bucket, on every request.
    let v3 = train(&s3, &url, "3", false);
    s3.models(&url, &["canary", &v3, "--percent", "50"]);
    let users: Vec<String> = (0..20).map(|u| format!("user-{u}")).collect();
    let want = |u: &str| {
        if user_bucket(u.as_bytes()) < 50 {
            &v3
        } else {
            &v2
        }
    };
    wait_for("the canary to serve its users", || {
        users
            .iter()
            .all(|u| get(&ask, Some(u)).1.as_deref() == Some(want(u).as_str()))
    });
    assert!(users.iter().any(|u| want(u) == &v3) && users.iter().any(|u| want(u) == &v2));

    stop.store(true, Ordering::Relaxed);
    for c in clients {
        c.join().unwrap();
    }
    let (requests, seen) = std::mem::take(&mut *seen.lock().unwrap());
    assert!(requests > 100, "only {requests} requests under load");
    for s in &seen {
        assert!(
            *s == v1 || *s == v2 || *s == v3,
            "a client got {s} ({requests} requests)"
        );
    }
}

#[test]
#[ignore = "needs s3s-fs (cargo install s3s-fs@0.14.1 --features binary --locked); .ci/run runs it"]
fn refused_credentials_are_exit_2_and_register_nothing() {
    let s3 = S3::start();
    let url = format!("s3://{BUCKET}/denied");
    for args in [
        vec!["train", "--generate", "s", "--model-dir", &url],
        vec!["models", "--model-dir", &url, "list"],
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_cooc"))
            .args(&args)
            .envs(s3.env())
            .env("AWS_SECRET_ACCESS_KEY", "not-the-secret")
            .env("RUST_LOG", "warn")
            .output()
            .unwrap();
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains("access denied") && err.contains(&url), "{err}");
        assert!(!err.contains("not-the-secret"), "the secret leaked: {err}");
    }
    assert!(s3.store("denied").versions().unwrap().is_empty());
}

#[test]
fn a_store_that_cannot_be_opened_is_a_configuration_error_before_training() {
    for (dir, says) in [
        ("ftp://host/models", "ftp:// is not a model store"),
        ("s3://", "model store s3://"),
    ] {
        let out = crate::common::cooc(&["train", "--generate", "s", "--model-dir", dir]);
        assert_eq!(out.status.code(), Some(2), "{dir}: {}", stderr(&out));
        assert!(stderr(&out).contains(says), "{dir}: {}", stderr(&out));
        assert!(!stderr(&out).contains("trained"), "{}", stderr(&out));
    }
}

#[test]
fn an_unreachable_store_fails_the_run_naming_the_url_and_registers_nothing() {
    // Nothing listens on this port: the publish fails after the client's few retries.
    let port = free_port();
    let out = Command::new(env!("CARGO_BIN_EXE_cooc"))
        .args(["train", "--generate", "s", "--model-dir", "s3://models/x"])
        .env("AWS_ACCESS_KEY_ID", ACCESS_KEY)
        .env("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
        .env("AWS_ENDPOINT", format!("http://127.0.0.1:{port}"))
        .env("AWS_ALLOW_HTTP", "true")
        .env("AWS_REGION", "us-east-1")
        .env("RUST_LOG", "warn")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains("s3://models/x/"), "{}", stderr(&out));
}
