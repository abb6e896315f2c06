//! The serving contract, checked against the real `cooc-serve` binary on a free port:
//! every endpoint, status code and JSON shape the reference predictor's clients rely on,
//! hot reload of good and corrupt models, metrics, and draining on SIGTERM.

use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use cooc_model::artifact::encode;
use cooc_model::{Keys, ModelMeta, ModelParts, ModelStore, Provenance, Similarity};
use serde_json::{json, Value};

/// Three books; book 10's neighbours are 20 then 30.
fn model_bytes(top_k: u32, first_score: f32) -> Vec<u8> {
    let meta = ModelMeta {
        top_k,
        n_baskets: 5,
        n_pairs: 9,
        nnz: 5,
        ..ModelMeta::example()
    };
    let prov = Provenance::example();
    let titles = vec![Some("Ten".to_string()), Some("Twenty".into()), None];
    let authors = vec![Some("A".to_string()), None, Some("C".into())];
    encode(&ModelParts {
        meta: &meta,
        provenance: &prov,
        keys: &Keys::Int(vec![10, 20, 30]),
        titles: Some(&titles),
        authors: Some(&authors),
        indptr: &[0, 2, 4, 5],
        indices: &[1, 2, 0, 2, 0],
        scores: &[first_score, 0.3, first_score, 0.1, 0.3],
        popular: &[(1, 4), (0, 3), (2, 2)],
    })
}

struct Server {
    child: Child,
    base: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start(model_dir: &Path) -> Server {
    start_with(model_dir, &[])
}

/// `cooc-serve` with extra settings in its environment.
fn start_with(model_dir: &Path, env: &[(&str, &str)]) -> Server {
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = Command::new(env!("CARGO_BIN_EXE_cooc-serve"))
        .env("MODEL_DIR", model_dir)
        .env("LISTEN", format!("127.0.0.1:{port}"))
        .env("DEFAULT_K", "1")
        .env("RELOAD_INTERVAL_MS", "100")
        .env("RUST_LOG", "warn")
        .envs(env.iter().copied())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("starting cooc-serve");
    let base = format!("http://127.0.0.1:{port}");
    let deadline = Instant::now() + Duration::from_secs(10);
    while ureq::get(&format!("{base}/healthz")).call().is_err() {
        assert!(Instant::now() < deadline, "cooc-serve did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    Server { child, base }
}

/// (status, X-Model-Version, body) for any status.
fn get(url: &str) -> (u16, Option<String>, Value) {
    let resp = match ureq::get(url).call() {
        Ok(r) => r,
        Err(ureq::Error::Status(_, r)) => r,
        Err(e) => panic!("GET {url}: {e}"),
    };
    let status = resp.status();
    let version = resp.header("x-model-version").map(str::to_owned);
    (status, version, resp.into_json().unwrap_or(Value::Null))
}

fn post(url: &str, body: &str) -> (u16, Value) {
    let resp = match ureq::post(url)
        .set("content-type", "application/json")
        .send_string(body)
    {
        Ok(r) => r,
        Err(ureq::Error::Status(_, r)) => r,
        Err(e) => panic!("POST {url}: {e}"),
    };
    (resp.status(), resp.into_json().unwrap_or(Value::Null))
}

fn wait_for(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn the_whole_contract() {
    let dir = tempfile::tempdir().unwrap();
    let store = ModelStore::new(dir.path());
    let srv = start(dir.path());
    let b = &srv.base;

    // No model yet: alive but not ready, and model routes answer 503.
    assert_eq!(
        get(&format!("{b}/healthz")),
        (200, None, json!({"status": "ok"}))
    );
    let (s, _, body) = get(&format!("{b}/ready"));
    assert_eq!((s, &body["status"]), (503, &json!("not ready")));
    assert_eq!(get(&format!("{b}/recommend?book_id=10")).0, 503);

    store.publish("v1", &model_bytes(2, 0.7)).unwrap();
    store.promote("v1").unwrap();
    wait_for("v1 to load", || get(&format!("{b}/ready")).0 == 200);
    assert_eq!(
        get(&format!("{b}/ready")),
        (200, Some("v1".into()), json!({"status": "ready"}))
    );

    // Model metadata.
    let (s, v, body) = get(&format!("{b}/v1/models/recommender"));
    assert_eq!((s, v.as_deref()), (200, Some("v1")));
    assert_eq!(
        body,
        json!({"name": "recommender", "kind": "item-item-cosine", "version": "v1", "n_books": 3, "top_k": 2})
    );
    assert_eq!(get(&format!("{b}/v1/models/other")).0, 404);

    // /recommend: default k (DEFAULT_K=1), explicit k, titles and nulls, order.
    let (s, v, body) = get(&format!("{b}/recommend?book_id=10"));
    assert_eq!((s, v.as_deref()), (200, Some("v1")));
    assert_eq!(
        body,
        json!({"book_id": 10, "k": 1, "recommendations": [
            {"book_id": 20, "score": 0.7, "title": "Twenty", "author": null}
        ]})
    );
    let (_, _, body) = get(&format!("{b}/recommend?book_id=10&k=100"));
    assert_eq!(body["k"], 100);
    let recs = body["recommendations"].as_array().unwrap();
    assert_eq!(recs.len(), 2, "never more than the model holds");
    assert_eq!(
        recs[1],
        json!({"book_id": 30, "score": 0.3, "title": null, "author": "C"})
    );

    // Errors: unknown book 404 with detail; bad parameters 422 in FastAPI's shape.
    let (s, _, body) = get(&format!("{b}/recommend?book_id=99"));
    assert_eq!(s, 404);
    assert!(body["detail"].as_str().unwrap().contains("99"));
    for (q, field) in [
        ("book_id=abc", "book_id"),
        ("", "book_id"),
        ("book_id=10&k=0", "k"),
        ("book_id=10&k=101", "k"),
        ("book_id=10&k=two", "k"),
    ] {
        let (s, _, body) = get(&format!("{b}/recommend?{q}"));
        assert_eq!(s, 422, "{q}");
        assert_eq!(body["detail"][0]["loc"], json!(["query", field]), "{q}");
    }

    // Scores are the stored f32s in shortest form ("0.7", not "0.699999988079071"), and
    // fields come in the contract's order, on both routes.
    let raw = ureq::get(&format!("{b}/recommend?book_id=10&k=2"))
        .call()
        .unwrap()
        .into_string()
        .unwrap();
    assert_eq!(
        raw,
        r#"{"book_id":10,"k":2,"recommendations":[{"book_id":20,"score":0.7,"title":"Twenty","author":null},{"book_id":30,"score":0.3,"title":null,"author":"C"}]}"#
    );
    let raw = ureq::post(&format!("{b}/v1/models/recommender:predict"))
        .send_string(r#"{"instances":[{"book_id":10,"k":2}]}"#)
        .unwrap()
        .into_string()
        .unwrap();
    assert_eq!(
        raw,
        r#"{"predictions":[{"book_id":10,"k":2,"recommendations":[{"book_id":20,"score":0.7,"title":"Twenty","author":null},{"book_id":30,"score":0.3,"title":null,"author":"C"}]}]}"#
    );

    // :predict renders every answer; /recommend at DEFAULT_K serves a cached body: same bytes.
    let url = format!("{b}/v1/models/recommender:predict");
    for book in [10, 20, 30] {
        let (_, _, cached) = get(&format!("{b}/recommend?book_id={book}"));
        let (_, _, again) = get(&format!("{b}/recommend?book_id={book}&k=1"));
        let (_, fresh) = post(
            &url,
            &format!(r#"{{"instances":[{{"book_id":{book},"k":1}}]}}"#),
        );
        assert_eq!(cached, again);
        assert_eq!(cached, fresh["predictions"][0], "book {book}");
    }
    let (s, body) = post(
        &url,
        r#"{"instances":[{"book_id":10,"k":2},{"book_id":99},{"book_id":30}]}"#,
    );
    assert_eq!(s, 200);
    let p = body["predictions"].as_array().unwrap();
    assert_eq!(p.len(), 3);
    assert_eq!(p[0]["recommendations"].as_array().unwrap().len(), 2);
    assert_eq!(
        p[1],
        json!({"book_id": 99, "k": 1, "recommendations": []}),
        "unknown id: empty list"
    );
    assert_eq!(p[2]["recommendations"][0]["book_id"], 10);
    for bad in [
        "not json",
        r#"{"no_instances": []}"#,
        r#"{"instances":[{"k":2}]}"#,
        r#"{"instances":[{"book_id":"ten"}]}"#,
        r#"{"instances":[{"book_id":10,"k":0}]}"#,
    ] {
        assert_eq!(post(&url, bad).0, 422, "{bad}");
    }
    assert_eq!(post(&format!("{b}/v1/models/other:predict"), "{}").0, 404);

    // Hot reload: a good new version is picked up.
    store.publish("v2", &model_bytes(2, 0.9)).unwrap();
    store.promote("v2").unwrap();
    wait_for("v2 to load", || {
        get(&format!("{b}/recommend?book_id=10")).1.as_deref() == Some("v2")
    });
    assert_eq!(
        get(&format!("{b}/recommend?book_id=10")).2["recommendations"][0]["score"],
        0.9
    );

    // A corrupt CURRENT is refused and counted; v2 keeps serving.
    let mut bytes = model_bytes(2, 0.6);
    let last = bytes.len() - 1;
    bytes[last] ^= 0xff;
    let v3 = dir.path().join("v3");
    std::fs::create_dir(&v3).unwrap();
    std::fs::write(v3.join("model.cooc"), bytes).unwrap();
    std::fs::write(dir.path().join("CURRENT"), "v3\n").unwrap();
    let metrics = || {
        ureq::get(&format!("{b}/metrics"))
            .call()
            .unwrap()
            .into_string()
            .unwrap()
    };
    wait_for("the refusal to be counted", || {
        metrics().contains("cooc_model_reload_failures_total 1")
    });
    assert_eq!(get(&format!("{b}/ready")).0, 200);
    assert_eq!(
        get(&format!("{b}/recommend?book_id=10")).1.as_deref(),
        Some("v2")
    );

    let m = metrics();
    for needle in [
        "cooc_http_requests_total{route=\"recommend\",status=\"200\"}",
        "cooc_http_requests_total{route=\"recommend\",status=\"422\"}",
        "cooc_http_requests_total{route=\"predict\",status=\"200\"}",
        "cooc_http_request_duration_seconds_bucket{le=",
        "cooc_model_info{version=\"v2\"} 1",
        "cooc_model_reloads_total 1",
        "cooc_model_quality{metric=\"avg_top1_score\"} 0.5",
        "cooc_model_load_seconds",
        "cooc_model_trained_timestamp_seconds 1767225600.0",
        "cooc_model_training_world_size 1",
        "cooc_model_trained_order_lines 9",
        "cooc_model_trained_baskets 5",
        "cooc_model_neighbours 5",
    ] {
        assert!(m.contains(needle), "metrics lack {needle}:\n{m}");
    }
    assert!(
        !m.contains("version=\"v1\""),
        "the old version is no longer reported"
    );
}

#[test]
fn string_keyed_models_take_string_ids() {
    let dir = tempfile::tempdir().unwrap();
    let meta = ModelMeta {
        similarity: Similarity::Jaccard,
        top_k: 1,
        n_items: 2,
        n_baskets: 1,
        n_rows: 2,
        n_pairs: 2,
        nnz: 2,
        avg_top1_score: 1.0,
        ..ModelMeta::example()
    };
    let prov = Provenance::example();
    let bytes = encode(&ModelParts {
        meta: &meta,
        provenance: &prov,
        keys: &Keys::Str(vec!["beer".into(), "whole milk".into()]),
        titles: None,
        authors: None,
        indptr: &[0, 1, 2],
        indices: &[1, 0],
        scores: &[1.0, 1.0],
        popular: &[(0, 1), (1, 1)],
    });
    let store = ModelStore::new(dir.path());
    store.publish("s1", &bytes).unwrap();
    store.promote("s1").unwrap();
    let srv = start(dir.path());
    let (s, _, body) = get(&format!("{}/recommend?book_id=whole%20milk", srv.base));
    assert_eq!(s, 200);
    assert_eq!(body["recommendations"][0]["book_id"], "beer");
    let (s, body) = post(
        &format!("{}/v1/models/recommender:recommend", srv.base),
        r#"{"book_ids": ["whole milk", "rum"], "k": 2}"#,
    );
    assert_eq!(s, 200, "{body}");
    assert_eq!(body["unknown"], json!(["rum"]));
    assert_eq!(body["recommendations"][0]["book_id"], "beer");
    assert_eq!(body["recommendations"][0]["because"], json!(["whole milk"]));
    let (s, body) = post(
        &format!("{}/v1/models/recommender:recommend", srv.base),
        r#"{"book_ids": [7]}"#,
    );
    assert_eq!(
        (s, &body["detail"][0]["type"]),
        (422, &json!("string_type"))
    );
    let (s, body) = post(
        &format!("{}/v1/models/recommender:predict", srv.base),
        r#"{"instances":[{"book_id":"beer"}]}"#,
    );
    assert_eq!(
        (s, &body["predictions"][0]["recommendations"][0]["book_id"]),
        (200, &json!("whole milk"))
    );
}

#[test]
fn sigterm_drains_and_exits_zero() {
    let dir = tempfile::tempdir().unwrap();
    let mut srv = start(dir.path());
    // SAFETY: sending a signal to our own child process.
    let rc = unsafe { libc::kill(srv.child.id() as i32, libc::SIGTERM) };
    assert_eq!(rc, 0);
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(s) = srv.child.try_wait().unwrap() {
            break s;
        }
        assert!(Instant::now() < deadline, "cooc-serve ignored SIGTERM");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(status.code(), Some(0));
    assert!(ureq::get(&format!("{}/healthz", srv.base)).call().is_err());
}

#[test]
fn bad_configuration_exits_2() {
    let out = Command::new(env!("CARGO_BIN_EXE_cooc-serve"))
        .env("DEFAULT_K", "0")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("DEFAULT_K"));
}

#[test]
fn a_live_model_truncated_or_rewritten_on_disk_never_crashes_the_server() {
    let dir = tempfile::tempdir().unwrap();
    let store = ModelStore::new(dir.path());
    store.publish("v1", &model_bytes(2, 0.7)).unwrap();
    store.promote("v1").unwrap();
    let mut srv = start(dir.path());
    let b = &srv.base;
    wait_for("v1 to load", || get(&format!("{b}/ready")).0 == 200);
    let file = store.model_path("v1").unwrap();
    // An operator's mistakes: the file cut short, then overwritten in place with garbage.
    let f = std::fs::OpenOptions::new().write(true).open(&file).unwrap();
    f.set_len(40).unwrap();
    drop(f);
    for _ in 0..20 {
        let (s, v, body) = get(&format!("{b}/recommend?book_id=10&k=2"));
        assert_eq!((s, v.as_deref()), (200, Some("v1")), "{body}");
        assert_eq!(body["recommendations"][0]["book_id"], 20);
    }
    std::fs::write(&file, vec![0xa5u8; 4096]).unwrap();
    for _ in 0..20 {
        assert_eq!(get(&format!("{b}/recommend?book_id=10")).0, 200);
    }
    assert!(
        srv.child.try_wait().unwrap().is_none(),
        "cooc-serve died with the file changed under it"
    );
}

#[test]
fn a_version_not_readable_yet_is_retried_until_it_loads() {
    let dir = tempfile::tempdir().unwrap();
    let store = ModelStore::new(dir.path());
    // CURRENT names a version whose files are not there yet (a slow network volume, a
    // copy in progress): an I/O error, not a bad model.
    std::fs::create_dir_all(dir.path()).unwrap();
    cooc_model::store::write_atomic(&dir.path().join("CURRENT"), b"v2\n").unwrap();
    let srv = start(dir.path());
    let b = &srv.base;
    std::thread::sleep(Duration::from_millis(400));
    assert_eq!(get(&format!("{b}/ready")).0, 503);
    store.publish("v2", &model_bytes(2, 0.7)).unwrap();
    wait_for("v2 to load once its file exists", || {
        get(&format!("{b}/ready")).1.as_deref() == Some("v2")
    });
    // A model that does not validate is refused for good, and the live one keeps serving.
    std::fs::create_dir_all(dir.path().join("bad")).unwrap();
    std::fs::write(store.model_path("bad").unwrap(), b"not a model").unwrap();
    cooc_model::store::write_atomic(&dir.path().join("CURRENT"), b"bad\n").unwrap();
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(get(&format!("{b}/ready")).1.as_deref(), Some("v2"));
}

/// A live v1 (book 10's neighbours: 20, 30) in a fresh store.
fn live_store() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let store = ModelStore::new(dir.path());
    store.publish("v1", &model_bytes(2, 0.7)).unwrap();
    store.promote("v1").unwrap();
    dir
}

/// `cooc-serve` on a store whose live version `v1` is loaded (keep the directory alive).
fn serving_v1() -> (tempfile::TempDir, Server) {
    let dir = live_store();
    let srv = start(dir.path());
    let b = srv.base.clone();
    wait_for("v1", || get(&format!("{b}/ready")).0 == 200);
    (dir, srv)
}

/// Opens a connection and sends half a request head.
fn half_sent(base: &str) -> std::net::TcpStream {
    use std::io::Write;
    let addr = base.trim_start_matches("http://");
    let mut c = std::net::TcpStream::connect(addr).unwrap();
    c.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        .unwrap();
    c
}

#[test]
fn predict_bounds_its_body_and_instances_in_fastapi_shape() {
    let (_dir, srv) = serving_v1();
    let b = &srv.base;
    let url = format!("{b}/v1/models/recommender:predict");
    let many = format!(
        "{{\"instances\": [{}]}}",
        vec!["{\"book_id\": 10}"; 1001].join(",")
    );
    let (s, body) = post(&url, &many);
    assert_eq!(s, 422, "{body}");
    assert_eq!(body["detail"][0]["loc"], json!(["body", "instances"]));
    assert_eq!(body["detail"][0]["type"], "too_long");
    let at_cap = format!(
        "{{\"instances\": [{}]}}",
        vec!["{\"book_id\": 10, \"k\": 2}"; 1000].join(",")
    );
    let (s, body) = post(&url, &at_cap);
    assert_eq!(s, 200);
    assert_eq!(body["predictions"].as_array().unwrap().len(), 1000);
    // A body over the limit is refused from its Content-Length, before it is read (so the
    // client here sends only the head: the server may close before a body arrives).
    use std::io::{Read, Write};
    let mut c = std::net::TcpStream::connect(b.trim_start_matches("http://")).unwrap();
    write!(
        c,
        "POST /v1/models/recommender:predict HTTP/1.1\r\nHost: x\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        300 * 1024
    )
    .unwrap();
    c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut answer = String::new();
    let _ = c.read_to_string(&mut answer);
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert!(
        answer.contains("\"detail\"") && answer.contains("262144"),
        "{answer}"
    );
}

#[test]
fn a_half_sent_request_is_cut_off_and_never_holds_the_drain() {
    use std::io::Read;
    let dir = live_store();
    let srv = start_with(dir.path(), &[("HEADER_READ_TIMEOUT_MS", "300")]);
    let mut c = half_sent(&srv.base);
    c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let t = Instant::now();
    let mut buf = [0u8; 512];
    // The server answers 408 or just closes: either way the connection ends, soon.
    loop {
        match c.read(&mut buf) {
            Ok(0) => break,
            Ok(_) => continue,
            Err(e) => panic!("the half-sent connection stayed open: {e}"),
        }
    }
    assert!(t.elapsed() < Duration::from_secs(3), "{:?}", t.elapsed());

    // SIGTERM with a half-sent request open: the drain ends at its deadline.
    let mut srv = start_with(
        dir.path(),
        &[
            ("HEADER_READ_TIMEOUT_MS", "60000"),
            ("DRAIN_TIMEOUT_MS", "500"),
        ],
    );
    let _held = half_sent(&srv.base);
    std::thread::sleep(Duration::from_millis(200));
    let t = Instant::now();
    unsafe { libc::kill(srv.child.id() as i32, libc::SIGTERM) };
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(s) = srv.child.try_wait().unwrap() {
            break s;
        }
        assert!(Instant::now() < deadline, "the drain waited for the client");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success(), "{status}");
    assert!(t.elapsed() < Duration::from_secs(3), "{:?}", t.elapsed());
}

#[test]
fn connections_beyond_the_cap_wait_and_are_served_when_a_slot_frees() {
    let dir = live_store();
    let srv = start_with(
        dir.path(),
        &[("MAX_CONNECTIONS", "2"), ("HEADER_READ_TIMEOUT_MS", "400")],
    );
    // `start` used one slot for its probe; it is free again once that connection closed.
    std::thread::sleep(Duration::from_millis(100));
    let _a = half_sent(&srv.base);
    let _b = half_sent(&srv.base);
    std::thread::sleep(Duration::from_millis(50));
    let t = Instant::now();
    // Both slots are held until the header timeout cuts them; then this one is served.
    assert_eq!(get(&format!("{}/healthz", srv.base)).0, 200);
    assert!(
        t.elapsed() >= Duration::from_millis(200),
        "{:?}",
        t.elapsed()
    );
}

/// `:recommend` answers in its documented shape: summed scores, the contributing seeds,
/// exactly k (or every book that qualifies) with popularity backfill, seeds and excluded
/// books never returned, unknown seeds listed, and FastAPI-shaped 422s beyond the bounds.
#[test]
fn basket_recommendations_sum_exclude_and_backfill() {
    let (_dir, srv) = serving_v1();
    let b = &srv.base;
    let url = format!("{b}/v1/models/recommender:recommend");
    let ask = |body: Value| post(&url, &body.to_string());
    let books = |body: &Value| -> Vec<(i64, String)> {
        body["recommendations"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| {
                (
                    r["book_id"].as_i64().unwrap(),
                    r["source"].as_str().unwrap().into(),
                )
            })
            .collect()
    };
    let sim = |j: i64| (j, "similar".to_string());
    let pop = |j: i64| (j, "popular".to_string());

    // Book 10 ~ 20 (0.7), 30 (0.3); 20 ~ 10 (0.7), 30 (0.1); most bought: 20, 10, 30.
    let (s, body) = ask(json!({"book_ids": [10], "k": 2}));
    assert_eq!(s, 200, "{body}");
    assert_eq!(body["k"], 2);
    assert_eq!(body["version"], "v1");
    assert_eq!(body["unknown"], json!([]));
    assert_eq!(books(&body), vec![sim(20), sim(30)]);
    let first = &body["recommendations"][0];
    assert_eq!(first["title"], "Twenty");
    assert_eq!(first["because"], json!([10]));
    assert!((first["score"].as_f64().unwrap() - 0.7).abs() < 1e-6);

    // Two seeds: 30 scores 0.3 + 0.1 and names both, the bigger contribution first; only
    // one book qualifies, so the answer has one entry, not k.
    let (_, body) = ask(json!({"book_ids": [20, 10], "k": 3}));
    assert_eq!(books(&body), vec![sim(30)]);
    assert!((body["recommendations"][0]["score"].as_f64().unwrap() - 0.4).abs() < 1e-6);
    assert_eq!(body["recommendations"][0]["because"], json!([10, 20]));
    // Weights scale each seed's contribution.
    let (_, body) = ask(json!({"book_ids": [10, 20], "weights": [1, 4], "k": 1}));
    assert!((body["recommendations"][0]["score"].as_f64().unwrap() - 0.7).abs() < 1e-6);
    assert_eq!(body["recommendations"][0]["because"], json!([20, 10]));

    // Excluded books never come back; backfill skips seeds, excluded and listed books.
    let (_, body) = ask(json!({"book_ids": [30], "exclude": [20], "k": 3}));
    assert_eq!(books(&body), vec![sim(10)]);
    let (_, body) = ask(json!({"book_ids": [30], "k": 3}));
    assert_eq!(books(&body), vec![sim(10), pop(20)]);
    assert_eq!(body["recommendations"][1]["because"], json!([]));
    assert_eq!(body["recommendations"][1]["score"], 0.0);

    // Unknown seeds are listed once; none known is a popularity answer, never a 404.
    let (s, body) = ask(json!({"book_ids": [99, 98, 99], "k": 2, "user": "c-1"}));
    assert_eq!(s, 200, "{body}");
    assert_eq!(body["unknown"], json!([99, 98]));
    assert_eq!(books(&body), vec![pop(20), pop(10)]);
    let (_, body) = ask(json!({"book_ids": [], "exclude": [20]}));
    assert_eq!(books(&body), vec![pop(10)], "k defaults to DEFAULT_K=1");

    // Bounds and types: 422 in FastAPI's shape, naming the field.
    let seeds = |n: usize| json!(vec![10; n]);
    for (req, loc, kind) in [
        (json!({"k": 2}), json!(["body", "book_ids"]), "missing"),
        (
            json!({"book_ids": seeds(101)}),
            json!(["body", "book_ids"]),
            "too_long",
        ),
        (
            json!({"book_ids": [10], "exclude": vec![1; 1001]}),
            json!(["body", "exclude"]),
            "too_long",
        ),
        (
            json!({"book_ids": [10], "k": 0}),
            json!(["body", "k"]),
            "greater_than_equal",
        ),
        (
            json!({"book_ids": [10], "k": 101}),
            json!(["body", "k"]),
            "less_than_equal",
        ),
        (
            json!({"book_ids": ["ten"]}),
            json!(["body", "book_ids", "0"]),
            "int_type",
        ),
        (
            json!({"book_ids": [10], "exclude": [1.5]}),
            json!(["body", "exclude", "0"]),
            "int_type",
        ),
        (
            json!({"book_ids": [10, 20], "weights": [1]}),
            json!(["body", "weights"]),
            "value_error",
        ),
        (
            json!({"book_ids": [10], "weights": [-1]}),
            json!(["body", "weights", "0"]),
            "value_error",
        ),
        (
            json!({"book_ids": [10], "user": 7}),
            json!(["body", "user"]),
            "string_type",
        ),
        (json!([10]), json!(["body"]), "model_attributes_type"),
        (json!([[10]]), json!(["body"]), "model_attributes_type"),
        (
            json!({"book_ids": [10], "k": 2.0}),
            json!(["body", "k"]),
            "int_type",
        ),
        (
            json!({"book_ids": [1.0]}),
            json!(["body", "book_ids", "0"]),
            "int_type",
        ),
    ] {
        let (s, body) = ask(req.clone());
        assert_eq!(s, 422, "{req}: {body}");
        assert_eq!(body["detail"][0]["loc"], loc, "{req}: {body}");
        assert_eq!(body["detail"][0]["type"], kind, "{req}: {body}");
    }
    assert_eq!(post(&url, "{not json").0, 422);
    assert_eq!(
        ask(json!({"book_ids": seeds(100), "exclude": vec![1; 1000]})).0,
        200
    );
    let other = format!("{b}/v1/models/other:recommend");
    assert_eq!(post(&other, "{\"book_ids\": [10]}").0, 404);

    let metrics = ureq::get(&format!("{b}/metrics"))
        .call()
        .unwrap()
        .into_string()
        .unwrap();
    assert!(
        metrics.contains("cooc_http_requests_total{route=\"basket\",status=\"200\"} 8"),
        "{metrics}"
    );
    assert!(
        metrics.contains("cooc_backfill_recommendations_total 4"),
        "{metrics}"
    );
}

/// A model written by an older cooc (format version 1, no popularity list, kept in
/// `serve/tests/data/`) is still served on every route; its basket answers have no
/// backfill, and a metric says so.
#[test]
fn a_format_1_model_is_served_without_backfill() {
    let dir = tempfile::tempdir().unwrap();
    let store = ModelStore::new(dir.path());
    let bytes = include_bytes!("data/format-v1.cooc");
    store.publish("old", bytes).unwrap();
    store.promote("old").unwrap();
    let srv = start(dir.path());
    let b = &srv.base;
    wait_for("the old model", || get(&format!("{b}/ready")).0 == 200);
    let (s, _, body) = get(&format!("{b}/recommend?book_id=10&k=2"));
    assert_eq!(s, 200, "{body}");
    assert_eq!(body["recommendations"][0]["book_id"], 20);
    let (s, body) = post(
        &format!("{b}/v1/models/recommender:recommend"),
        "{\"book_ids\": [10], \"k\": 3}",
    );
    assert_eq!(s, 200, "{body}");
    let got: Vec<&str> = body["recommendations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["source"].as_str().unwrap())
        .collect();
    assert_eq!(got, vec!["similar", "similar"], "{body}");
    let metrics = ureq::get(&format!("{b}/metrics"))
        .call()
        .unwrap()
        .into_string()
        .unwrap();
    assert!(
        metrics.contains("cooc_basket_answers_without_popularity_total 1"),
        "{metrics}"
    );
}

/// GET `url` as `user` (the `X-User-Id` header): (status, X-Model-Version).
fn get_as(url: &str, user: Option<&str>) -> (u16, String) {
    let mut req = ureq::get(url);
    if let Some(u) = user {
        req = req.set("x-user-id", u);
    }
    let resp = match req.call() {
        Ok(r) => r,
        Err(ureq::Error::Status(_, r)) => r,
        Err(e) => panic!("GET {url}: {e}"),
    };
    let v = resp.header("x-model-version").unwrap_or("").to_owned();
    (resp.status(), v)
}

/// A canary serves its share of 1,000 distinct users, each user always the same version
/// (by header on every route, or by `user` in a `:recommend` body), requests without a
/// user in about the same proportion; the per-version metrics tell the two apart.
#[test]
fn a_canary_serves_its_share_and_each_user_sticks_to_one_version() {
    use cooc_model::store::user_bucket;
    let dir = live_store();
    let store = ModelStore::new(dir.path());
    store.publish("v2", &model_bytes(2, 0.9)).unwrap();
    store.set_canary("v2", 30).unwrap();
    let srv = start(dir.path());
    let b = &srv.base;
    let users: Vec<String> = (0..1000).map(|i| format!("customer-{i}")).collect();
    let want = |u: &str| {
        if user_bucket(u.as_bytes()) < 30 {
            "v2"
        } else {
            "v1"
        }
    };
    wait_for("the canary", || {
        get_as(&format!("{b}/recommend?book_id=10"), Some(&users[0])).1 == want(&users[0])
            && get_as(&format!("{b}/ready"), Some(&users[0])).0 == 200
    });
    let mut on_canary = 0;
    for round in 0..2 {
        for u in &users {
            let (s, v) = get_as(&format!("{b}/recommend?book_id=10"), Some(u));
            assert_eq!((s, v.as_str()), (200, want(u)), "{u}, round {round}");
            on_canary += usize::from(v == "v2");
        }
    }
    let share = on_canary as f64 / 2000.0;
    assert!((0.25..=0.35).contains(&share), "canary share {share}");
    // Every route follows the same assignment; a body's user goes before the header.
    for u in users.iter().take(50) {
        assert_eq!(
            get_as(&format!("{b}/v1/models/recommender"), Some(u)).1,
            want(u)
        );
        let resp = ureq::post(&format!("{b}/v1/models/recommender:predict"))
            .set("x-user-id", u)
            .send_string(r#"{"instances": [{"book_id": 10}]}"#)
            .unwrap();
        assert_eq!(resp.header("x-model-version"), Some(want(u)));
        let body = json!({"book_ids": [10], "user": u}).to_string();
        let resp = ureq::post(&format!("{b}/v1/models/recommender:recommend"))
            .set("x-user-id", "someone else")
            .send_string(&body)
            .unwrap();
        assert_eq!(resp.header("x-model-version"), Some(want(u)), "{u}");
        let answer: Value = resp.into_json().unwrap();
        assert_eq!(answer["version"], want(u));
    }
    // Without a user: drawn at random in the same proportion.
    let anonymous = (0..1000)
        .filter(|_| get_as(&format!("{b}/recommend?book_id=10"), None).1 == "v2")
        .count();
    assert!((220..=380).contains(&anonymous), "{anonymous} of 1000");
    let metrics = ureq::get(&format!("{b}/metrics"))
        .call()
        .unwrap()
        .into_string()
        .unwrap();
    assert!(metrics.contains("cooc_canary_percent 30"), "{metrics}");
    assert!(
        metrics.contains("cooc_canary_info{version=\"v2\"} 1"),
        "{metrics}"
    );
    // The canary's own count: every answer it gave (and the few of the wait above).
    let prefix =
        "cooc_version_http_requests_total{version=\"v2\",route=\"recommend\",status=\"200\"} ";
    let counted: usize = metrics
        .lines()
        .find_map(|l| l.strip_prefix(prefix))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no {prefix}\n{metrics}"));
    let answered = on_canary + anonymous;
    assert!(
        (answered..answered + 50).contains(&counted),
        "{counted} vs {answered}"
    );
    assert!(
        metrics.contains("cooc_version_http_requests_total{version=\"v1\",route=\"recommend\""),
        "{metrics}"
    );
}

/// A canary that does not validate is refused, logged and counted, and everyone stays on
/// the live version; a good canary set afterwards is served.
#[test]
fn a_corrupt_canary_is_refused_and_everyone_stays_on_the_live_version() {
    let dir = live_store();
    let store = ModelStore::new(dir.path());
    let mut bad = model_bytes(2, 0.9);
    let at = bad.len() - 3;
    bad[at] ^= 0xff;
    store.publish("broken", &bad).unwrap();
    // Written by hand: `cooc models canary` would refuse it before the server saw it.
    std::fs::write(dir.path().join("CANARY"), "broken 50\n").unwrap();
    let srv = start(dir.path());
    let b = &srv.base;
    wait_for("the live model", || get(&format!("{b}/ready")).0 == 200);
    std::thread::sleep(Duration::from_millis(300));
    for i in 0..300 {
        let (s, v) = get_as(&format!("{b}/recommend?book_id=10"), Some(&format!("u{i}")));
        assert_eq!((s, v.as_str()), (200, "v1"));
    }
    let metrics = ureq::get(&format!("{b}/metrics"))
        .call()
        .unwrap()
        .into_string()
        .unwrap();
    assert!(
        metrics.contains("cooc_model_reload_failures_total 1"),
        "{metrics}"
    );
    assert!(metrics.contains("cooc_canary_percent 0"), "{metrics}");
    store.publish("v2", &model_bytes(2, 0.9)).unwrap();
    store.set_canary("v2", 50).unwrap();
    wait_for("the good canary", || {
        (0..40)
            .any(|i| get_as(&format!("{b}/recommend?book_id=10"), Some(&format!("u{i}"))).1 == "v2")
    });
}

/// Starting, promoting and ending canaries while clients keep asking: not one request
/// fails, and each step reaches every client.
#[test]
fn canary_promote_and_off_under_load_fail_no_request() {
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::Relaxed};
    use std::sync::Arc;
    let dir = live_store();
    let store = ModelStore::new(dir.path());
    store.publish("v2", &model_bytes(2, 0.9)).unwrap();
    let srv = start(dir.path());
    let b = srv.base.clone();
    wait_for("v1", || get(&format!("{b}/ready")).0 == 200);
    let stop = Arc::new(AtomicBool::new(false));
    let (done, failed) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let clients: Vec<_> = (0..4)
        .map(|t| {
            let (b, stop, done, failed) = (b.clone(), stop.clone(), done.clone(), failed.clone());
            std::thread::spawn(move || {
                let mut i = 0u64;
                while !stop.load(Relaxed) {
                    i += 1;
                    let user = format!("client{t}-{}", i % 97);
                    let ok = if i.is_multiple_of(2) {
                        get_as(&format!("{b}/recommend?book_id=20"), Some(&user)).0 == 200
                    } else {
                        ureq::post(&format!("{b}/v1/models/recommender:recommend"))
                            .send_string(&json!({"book_ids": [10], "user": user}).to_string())
                            .is_ok_and(|r| r.status() == 200)
                    };
                    done.fetch_add(1, Relaxed);
                    failed.fetch_add(usize::from(!ok), Relaxed);
                }
            })
        })
        .collect();
    let versions = |n: usize| -> std::collections::BTreeSet<String> {
        (0..n)
            .map(|i| {
                get_as(
                    &format!("{b}/recommend?book_id=10"),
                    Some(&format!("probe{i}")),
                )
                .1
            })
            .collect()
    };
    let only = |v: &str| std::collections::BTreeSet::from([v.to_string()]);
    store.set_canary("v2", 50).unwrap();
    wait_for("the canary", || versions(60).len() == 2);
    store.promote("v2").unwrap();
    assert_eq!(
        store.canary().unwrap(),
        None,
        "promoting the canary ends it"
    );
    wait_for("v2 for everyone", || versions(60) == only("v2"));
    store.set_canary("v1", 40).unwrap();
    wait_for("v1 as the canary", || versions(60).len() == 2);
    store.end_canary().unwrap();
    wait_for("the canary to end", || versions(60) == only("v2"));
    stop.store(true, Relaxed);
    for c in clients {
        c.join().unwrap();
    }
    assert!(done.load(Relaxed) > 100, "{} requests", done.load(Relaxed));
    assert_eq!(failed.load(Relaxed), 0, "of {}", done.load(Relaxed));
}
