//! `cooc submit` and `cooc status` against a fake apiserver: no cluster runs here, so an
//! in-process HTTP server plays the apiserver's part with recorded shapes of JobSet
//! (jobset.x-k8s.io/v1alpha2) and Kueue Workload (kueue.x-k8s.io/v1beta2) objects, scripted
//! through a run's life. The binary under test reaches it through an ordinary kubeconfig;
//! every request it makes is recorded, checked, and held against the nightly Role.

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Output};
use std::sync::{Arc, Mutex};

use axum::body::{to_bytes, Body};
use axum::http::{Request, Response, StatusCode};
use serde_json::{json, Value};

const NS: &str = "bookstore-ml";
const NAME: &str = "recommender-train-x7k2p";
const UID: &str = "0b6f4d1e-5c2a-4e8b-9d3f-7a1c2b3d4e5f";

/// One request as the fake apiserver saw it.
#[derive(Debug, Clone)]
struct Seen {
    method: String,
    path: String,
    query: String,
    auth: String,
    body: Value,
}

/// How the fake apiserver answers.
#[derive(Default)]
struct Script {
    /// (JobSet status, spec.suspend, Workload conditions or None) per GET of the JobSet; the
    /// last one repeats.
    steps: Vec<(Value, bool, Option<Value>)>,
    /// Answer the create with this status code and Status body instead.
    refuse_create: Option<(u16, &'static str, &'static str)>,
    /// Workload lists are forbidden.
    workloads_forbidden: bool,
}

struct Fake {
    script: Script,
    seen: Mutex<Vec<Seen>>,
    gets: Mutex<usize>,
}

fn status(code: u16, reason: &str, message: &str) -> Response<Body> {
    json_response(
        code,
        json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
               "message": message, "reason": reason, "code": code}),
    )
}

fn json_response(code: u16, v: Value) -> Response<Body> {
    Response::builder()
        .status(StatusCode::from_u16(code).unwrap())
        .header("content-type", "application/json")
        .body(Body::from(v.to_string()))
        .unwrap()
}

/// The stored JobSet: what was sent, with the name and UID the apiserver gives it.
fn stored(sent: &Value, status: &Value, suspend: bool) -> Value {
    let mut js = sent.clone();
    js["metadata"]["name"] = json!(NAME);
    js["metadata"]["uid"] = json!(UID);
    js["metadata"]["creationTimestamp"] = json!("2026-11-29T03:00:00Z");
    js["spec"]["suspend"] = json!(suspend);
    js["status"] = status.clone();
    js
}

async fn answer(fake: Arc<Fake>, req: Request<Body>) -> Response<Body> {
    let method = req.method().to_string();
    let path = req.uri().path().to_owned();
    let query = req.uri().query().unwrap_or_default().to_owned();
    let auth = req
        .headers()
        .get("authorization")
        .and_then(|h| h.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let bytes = to_bytes(req.into_body(), 1 << 20).await.unwrap();
    let body: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    fake.seen.lock().unwrap().push(Seen {
        method: method.clone(),
        path: path.clone(),
        query: query.clone(),
        auth,
        body: body.clone(),
    });
    let jobsets = format!("/apis/jobset.x-k8s.io/v1alpha2/namespaces/{NS}/jobsets");
    let workloads = format!("/apis/kueue.x-k8s.io/v1beta2/namespaces/{NS}/workloads");
    let sent = fake
        .seen
        .lock()
        .unwrap()
        .iter()
        .find(|s| s.method == "POST")
        .map(|s| s.body.clone())
        .unwrap_or_else(|| cooc::k8s::render::RunSpec::default().render().unwrap());
    let step = |i: usize| {
        let steps = &fake.script.steps;
        steps[i.min(steps.len() - 1)].clone()
    };
    match (method.as_str(), path.as_str()) {
        ("POST", p) if p == jobsets => match fake.script.refuse_create {
            Some((code, reason, message)) => status(code, reason, message),
            None => json_response(201, stored(&body, &json!({}), true)),
        },
        ("GET", p) if p == format!("{jobsets}/{NAME}") => {
            let n = {
                let mut g = fake.gets.lock().unwrap();
                *g += 1;
                *g - 1
            };
            let (st, suspend, _) = step(n);
            json_response(200, stored(&sent, &st, suspend))
        }
        ("GET", p) if p.starts_with(&format!("{jobsets}/")) => status(
            404,
            "NotFound",
            &format!(
                "jobsets.jobset.x-k8s.io \"{}\" not found",
                p.rsplit('/').next().unwrap()
            ),
        ),
        ("GET", p) if p == jobsets => {
            let (st, suspend, _) = step(*fake.gets.lock().unwrap());
            json_response(
                200,
                json!({"apiVersion": "jobset.x-k8s.io/v1alpha2", "kind": "JobSetList",
                       "metadata": {"resourceVersion": "7"},
                       "items": [stored(&sent, &st, suspend)]}),
            )
        }
        ("GET", p) if p == workloads => {
            if fake.script.workloads_forbidden {
                return status(
                    403,
                    "Forbidden",
                    "workloads.kueue.x-k8s.io is forbidden: User \"system:serviceaccount:bookstore-ml:recommender-submitter\" cannot list resource \"workloads\"",
                );
            }
            let g = fake.gets.lock().unwrap().saturating_sub(1);
            let items = match step(g).2 {
                Some(conditions) => vec![json!({
                    "apiVersion": "kueue.x-k8s.io/v1beta2", "kind": "Workload",
                    "metadata": {"name": format!("jobset-{NAME}-3f1a2"), "namespace": NS,
                                 "labels": {"kueue.x-k8s.io/job-uid": UID}},
                    "spec": {"queueName": "bookstore-ml-lq"},
                    "status": {"conditions": conditions,
                               "admission": {"clusterQueue": "bookstore-ml-cq"}}
                })],
                None => vec![],
            };
            json_response(
                200,
                json!({"apiVersion": "kueue.x-k8s.io/v1beta2", "kind": "WorkloadList",
                       "metadata": {"resourceVersion": "9"}, "items": items}),
            )
        }
        _ => status(404, "NotFound", "the fake apiserver has no such route"),
    }
}

/// A fake apiserver on a loopback port, with a kubeconfig pointing at it.
struct Api {
    fake: Arc<Fake>,
    kubeconfig: tempfile::NamedTempFile,
    _rt: tokio::runtime::Runtime,
}

fn serve(script: Script) -> Api {
    let fake = Arc::new(Fake {
        script,
        seen: Mutex::default(),
        gets: Mutex::default(),
    });
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let listener = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let addr: SocketAddr = listener.local_addr().unwrap();
    let f = fake.clone();
    let app = axum::Router::new().fallback(move |req: Request<Body>| answer(f.clone(), req));
    rt.spawn(async move { axum::serve(listener, app).await.unwrap() });
    let kubeconfig = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(
        kubeconfig.path(),
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: fake\n  cluster:\n    server: http://{addr}\n\
             users:\n- name: submitter\n  user:\n    token: recorded-token\n\
             contexts:\n- name: fake\n  context:\n    cluster: fake\n    user: submitter\n    namespace: {NS}\n\
             current-context: fake\n"
        ),
    )
    .unwrap();
    Api {
        fake,
        kubeconfig,
        _rt: rt,
    }
}

impl Api {
    fn cooc(&self, args: &[&str]) -> Output {
        run_with(self.kubeconfig.path(), args)
    }

    fn seen(&self) -> Vec<Seen> {
        self.fake.seen.lock().unwrap().clone()
    }
}

fn run_with(kubeconfig: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_cooc"))
        .args(args)
        .env("KUBECONFIG", kubeconfig)
        .env_remove("KUBERNETES_SERVICE_HOST")
        .env("RUST_LOG", "warn")
        .output()
        .unwrap()
}

fn cond(type_: &str, status: bool, reason: &str, message: &str) -> Value {
    json!({"type": type_, "status": if status { "True" } else { "False" }, "reason": reason,
           "message": message, "lastTransitionTime": "2026-11-29T03:00:00Z"})
}

fn ranks(ready: u32, succeeded: u32) -> Value {
    json!([{"name": "rank", "ready": ready, "succeeded": succeeded, "failed": 0, "active": ready,
            "suspended": 0}])
}

/// A run's life: created, queued for quota, reserved, admitted, running, then `end`.
fn life(end: Value) -> Vec<(Value, bool, Option<Value>)> {
    let pending = cond(
        "QuotaReserved",
        false,
        "Pending",
        "couldn't assign flavors to pod set rank: insufficient unused quota for cpu in flavor bookstore-ml-flavor, 2 more needed",
    );
    let reserved = cond(
        "QuotaReserved",
        true,
        "QuotaReserved",
        "Quota reserved in ClusterQueue bookstore-ml-cq",
    );
    let admitted = cond("Admitted", true, "Admitted", "The workload is admitted");
    vec![
        (json!({}), true, None),
        (json!({}), true, Some(json!([pending]))),
        (json!({}), true, Some(json!([reserved.clone()]))),
        (
            json!({"replicatedJobsStatus": ranks(1, 0)}),
            false,
            Some(json!([reserved.clone(), admitted.clone()])),
        ),
        (
            json!({"replicatedJobsStatus": ranks(2, 0)}),
            false,
            Some(json!([reserved.clone(), admitted.clone()])),
        ),
        (end, false, Some(json!([reserved, admitted]))),
    ]
}

fn stderr(o: &Output) -> String {
    crate::common::stderr(o)
}

#[test]
fn submit_creates_a_generated_name_and_follows_the_run_to_success() {
    let api = serve(Script {
        steps: life(json!({
            "conditions": [cond("Completed", true, "AllJobsCompleted", "jobset completed successfully")],
            "replicatedJobsStatus": ranks(0, 1)
        })),
        ..Script::default()
    });
    let out = api.cooc(&["submit", "--poll", "10ms", "--seed", "7"]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), NAME);
    // Every phase, in order, once.
    let order = [
        "submitted to bookstore-ml/bookstore-ml-lq (2 ranks)",
        "Created: waiting for Kueue",
        "Pending: couldn't assign flavors to pod set rank: insufficient unused quota for cpu",
        "QuotaReserved in bookstore-ml-cq",
        "Admitted by bookstore-ml-cq: the whole gang, 1/2 pods ready",
        "Running: 2 ranks",
        "Succeeded: rank 0 wrote the model",
    ];
    let mut at = 0;
    for want in order {
        let i = err[at..]
            .find(want)
            .unwrap_or_else(|| panic!("{want:?} missing or out of order in:\n{err}"));
        at += i + want.len();
    }
    assert_eq!(err.matches("Running").count(), 1, "{err}");

    let seen = api.seen();
    let post = &seen[0];
    assert_eq!(post.method, "POST");
    assert!(post.query.contains("fieldManager=cooc"), "{}", post.query);
    assert_eq!(post.auth, "Bearer recorded-token");
    assert_eq!(post.body["kind"], "JobSet");
    assert_eq!(post.body["metadata"]["generateName"], "recommender-train-");
    assert!(post.body["metadata"].get("name").is_none());
    let args = &post.body["spec"]["replicatedJobs"][0]["template"]["spec"]["template"]["spec"]
        ["containers"][0]["args"];
    assert_eq!(args[2], "--generate");
    assert_eq!(args[4], "--seed");
    assert_eq!(args[5], "7");
    // Workloads are found by the JobSet's UID, as Kueue labels them.
    let wl = seen
        .iter()
        .find(|s| s.path.ends_with("/workloads"))
        .unwrap();
    assert!(
        wl.query
            .contains(&format!("labelSelector=kueue.x-k8s.io%2Fjob-uid%3D{UID}")),
        "{}",
        wl.query
    );
}

#[test]
fn the_nightly_role_allows_every_request_submit_makes() {
    let api = serve(Script {
        steps: life(json!({"conditions": [cond("Completed", true, "AllJobsCompleted", "")]})),
        ..Script::default()
    });
    let out = api.cooc(&["submit", "--poll", "10ms"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let rbac = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("jobset/nightly/rbac.yaml"),
    )
    .unwrap();
    let role: Value = serde_yaml_ng::Deserializer::from_str(&rbac)
        .map(|d| <Value as serde::Deserialize>::deserialize(d).unwrap())
        .find(|v| v["kind"] == "Role")
        .unwrap();
    let allowed = |group: &str, resource: &str, verb: &str| {
        role["rules"].as_array().unwrap().iter().any(|r| {
            let has = |k: &str, x: &str| r[k].as_array().unwrap().iter().any(|v| v == x);
            has("apiGroups", group) && has("resources", resource) && has("verbs", verb)
        })
    };
    let seen = api.seen();
    assert!(seen.len() >= 10);
    for s in &seen {
        // /apis/<group>/<version>/namespaces/<ns>/<resource>[/<name>]
        let parts: Vec<&str> = s.path.trim_start_matches('/').split('/').collect();
        assert_eq!(parts[0], "apis", "{s:?}");
        assert_eq!(parts[3], "namespaces");
        assert_eq!(parts[4], NS);
        let (group, resource, named) = (parts[1], parts[5], parts.len() > 6);
        let verb = match (s.method.as_str(), named) {
            ("POST", false) => "create",
            ("GET", true) => "get",
            ("GET", false) => "list",
            ("PATCH", true) => "patch",
            (m, _) => panic!("unexpected {m} {}", s.path),
        };
        assert!(
            allowed(group, resource, verb),
            "the Role does not allow {verb} {group}/{resource}"
        );
    }
}

#[test]
fn a_failed_run_exits_1_with_the_jobset_reason() {
    let api = serve(Script {
        steps: life(json!({
            "conditions": [cond("Failed", true, "FailedJobs",
                "jobset failed due to failure policy rule bad-input-fails-at-once")],
        })),
        ..Script::default()
    });
    let out = api.cooc(&["submit", "--poll", "10ms"]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains(&format!(
            "JobSet {NS}/{NAME} failed (FailedJobs): jobset failed due to failure policy rule bad-input-fails-at-once"
        )),
        "{err}"
    );
}

#[test]
fn a_refused_create_exits_2_naming_the_reason_and_follows_nothing() {
    let api = serve(Script {
        steps: life(json!({})),
        refuse_create: Some((
            403,
            "Forbidden",
            "jobsets.jobset.x-k8s.io is forbidden: User \"alice\" cannot create resource \"jobsets\" in API group \"jobset.x-k8s.io\" in the namespace \"bookstore-ml\"",
        )),
        ..Script::default()
    });
    let out = api.cooc(&["submit", "--poll", "10ms"]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("the apiserver refused to create a JobSet in bookstore-ml")
            && err.contains("cannot create resource \"jobsets\"")
            && err.contains("403 Forbidden"),
        "{err}"
    );
    assert_eq!(api.seen().len(), 1, "nothing after the refusal");
}

#[test]
fn without_workload_access_submit_follows_the_jobset_alone() {
    let api = serve(Script {
        steps: life(json!({"conditions": [cond("Completed", true, "AllJobsCompleted", "")]})),
        workloads_forbidden: true,
        ..Script::default()
    });
    let out = api.cooc(&["submit", "--poll", "10ms"]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(err.contains("cannot read Kueue Workloads"), "{err}");
    assert!(err.contains("Succeeded"), "{err}");
    let lists = api
        .seen()
        .iter()
        .filter(|s| s.path.ends_with("/workloads"))
        .count();
    assert_eq!(lists, 1, "a forbidden list is not asked again");
}

#[test]
fn a_run_still_going_at_the_timeout_exits_75_and_is_left_running() {
    let api = serve(Script {
        // Pending forever.
        steps: life(json!({}))[..2].to_vec(),
        ..Script::default()
    });
    let out = api.cooc(&["submit", "--poll", "10ms", "--timeout", "300ms"]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(75), "{err}");
    assert!(
        err.contains(&format!(
            "JobSet {NS}/{NAME} is still Pending after 300ms (--timeout); it keeps going"
        )),
        "{err}"
    );
    assert!(api.seen().iter().all(|s| s.method != "DELETE"));
}

#[test]
fn an_unreachable_apiserver_exits_75() {
    let dir = tempfile::tempdir().unwrap();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let kc = dir.path().join("config");
    std::fs::write(
        &kc,
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: gone\n  cluster:\n    server: http://{addr}\n\
             users:\n- name: u\n  user:\n    token: t\ncontexts:\n- name: gone\n  context:\n    cluster: gone\n    user: u\n\
             current-context: gone\n"
        ),
    )
    .unwrap();
    let out = run_with(&kc, &["submit"]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(75), "{err}");
    assert!(
        err.contains("could not create a JobSet in bookstore-ml"),
        "{err}"
    );
}

#[test]
fn status_lists_runs_and_shows_one() {
    let api = serve(Script {
        steps: life(json!({}))[4..5].to_vec(),
        ..Script::default()
    });
    let out = api.cooc(&["status"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let row = text.lines().nth(1).unwrap_or_default();
    let cols: Vec<&str> = row.split_whitespace().collect();
    assert_eq!(cols[..4], [NAME, "Running", "2/2", "0"], "{text}");
    let list = api
        .seen()
        .into_iter()
        .find(|s| s.path.ends_with("/jobsets"))
        .unwrap();
    assert!(
        list.query
            .contains("labelSelector=app.kubernetes.io%2Fname%3Drecommender-train"),
        "{}",
        list.query
    );

    let out = api.cooc(&["status", NAME]);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(text.contains("Phase:     Running: 2 ranks"), "{text}");
    assert!(
        text.contains(&format!("Workload:  jobset-{NAME}-3f1a2 (bookstore-ml-cq)")),
        "{text}"
    );
    let out = api.cooc(&["status", "recommender-train-nope1"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("JobSet bookstore-ml/recommender-train-nope1 not found"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn a_fixed_name_is_applied_server_side() {
    let api = serve(Script {
        steps: life(json!({})),
        ..Script::default()
    });
    // The fake answers any PATCH with 404: what matters is the request.
    let out = api.cooc(&["submit", "--name", "nightly-2026-11-29", "--no-wait"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let seen = api.seen();
    let patch = &seen[0];
    assert_eq!(patch.method, "PATCH");
    assert!(patch
        .path
        .ends_with("/namespaces/bookstore-ml/jobsets/nightly-2026-11-29"));
    assert!(patch.query.contains("fieldManager=cooc"), "{}", patch.query);
    assert_eq!(patch.body["metadata"]["name"], "nightly-2026-11-29");
}
