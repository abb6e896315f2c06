//! The Kubernetes manifests (kueue/, jobset/, jobset/nightly/, the kind demo's database
//! jobset/bookstore-db/, the jobset/gpu/, jobset/s3/ and jobset/postgres/ overlays,
//! serve/k8s/, and the JobSet `cooc submit` renders for the nightly CronJob) as users apply
//! them: every
//! document parses; built-in kinds deserialize into `k8s-openapi` types with nothing dropped;
//! JobSet and Kueue objects validate against the upstream CRD schemas pinned in tests/crds
//! (and carry no field those schemas would prune); every pod template passes the Pod
//! Security "restricted" rules (and deliberately broken copies fail them); and the objects
//! refer to each other consistently. No cluster runs here: these checks are what one would
//! reject or silently drop.

mod crd;
mod pod_security;

use std::path::{Path, PathBuf};

use crd::{crd_schemas, pruned};

mod cel;
use pod_security::{pod_templates, restricted_violations};

use serde_json::{json, Value};

const NAMESPACE: &str = "bookstore-ml";
/// The shop's namespace, where the kind demo's database runs.
const SHOP_NAMESPACE: &str = "bookstore";

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// Directories of plain manifests, each with a kustomization listing them.
const MANIFEST_DIRS: [&str; 5] = [
    "kueue",
    "jobset/base",
    "jobset/bookstore-db",
    "jobset/nightly",
    "serve/k8s/base",
];

/// Overlays of patches only: what each makes of its base is checked like the base.
const OVERLAYS: [&str; 4] = ["jobset/gpu", "jobset/s3", "jobset/postgres", "serve/k8s/s3"];

/// Every object of every manifest (kustomization files aside), with its file; then what
/// the overlays make of their bases, and the JobSet the nightly CronJob submits.
fn objects() -> Vec<(PathBuf, Value)> {
    let mut out = files();
    for dir in OVERLAYS {
        for v in overlay(dir, &out) {
            out.push((PathBuf::from(format!("{dir} (overlay)")), v));
        }
    }
    out.push((
        PathBuf::from("jobset/nightly/cronjob.yaml (cooc submit --dry-run)"),
        nightly_submission(&out),
    ));
    out
}

/// What the patches-only overlay in `dir` makes of its base's objects, as kustomize would
/// (the ignored `kubectl_kustomize_builds_every_directory` compares the two): JSON 6902
/// patches on their target, and a strategic-merge `$patch: delete` of a whole object.
fn overlay(dir: &str, all: &[(PathBuf, Value)]) -> Vec<Value> {
    let k: Value = serde_yaml_ng::from_str(
        &std::fs::read_to_string(repo().join(dir).join("kustomization.yaml")).unwrap(),
    )
    .unwrap();
    assert_eq!(
        k["resources"],
        json!(["../base"]),
        "{dir} builds on the base beside it"
    );
    let base_dir = repo().join(dir).join("../base");
    let base_dir = base_dir.canonicalize().unwrap();
    let mut out: Vec<Value> = all
        .iter()
        .filter(|(f, _)| f.parent().and_then(|p| p.canonicalize().ok()) == Some(base_dir.clone()))
        .map(|(_, v)| v.clone())
        .collect();
    assert!(!out.is_empty(), "{dir}: no objects in its base");
    for patch in k["patches"].as_array().unwrap() {
        let body: Value = serde_yaml_ng::from_str(patch["patch"].as_str().unwrap()).unwrap();
        if body["$patch"] == "delete" {
            let before = out.len();
            out.retain(|v| {
                !(v["kind"] == body["kind"] && v["metadata"]["name"] == body["metadata"]["name"])
            });
            assert_eq!(out.len(), before - 1, "{dir}: deletes what its base has");
            continue;
        }
        let target = &patch["target"];
        let obj = out
            .iter_mut()
            .find(|v| v["kind"] == target["kind"] && v["metadata"]["name"] == target["name"])
            .unwrap_or_else(|| panic!("{dir}: no target {target}"));
        let group = target["group"].as_str().unwrap_or("");
        let version = target["version"].as_str().unwrap();
        let api = match group {
            "" => version.to_owned(),
            g => format!("{g}/{version}"),
        };
        assert_eq!(obj["apiVersion"], api, "{dir}");
        let ops: json_patch::Patch = serde_json::from_value(body).unwrap();
        json_patch::patch(obj, &ops)
            .unwrap_or_else(|e| panic!("{dir}: the patches do not apply to the base: {e}"));
    }
    out
}

/// The JobSet of jobset/ with the GPU overlay's patches applied, as kustomize would.
fn gpu_overlay(all: &[(PathBuf, Value)]) -> Value {
    overlay("jobset/gpu", all)
        .into_iter()
        .find(|v| kind(v) == "JobSet")
        .expect("the GPU overlay has the JobSet")
}

/// Runs `cooc` (the binary under test) and returns its standard output.
fn cooc(args: &[&str]) -> String {
    let out = crate::common::cooc(args);
    assert!(
        out.status.success(),
        "cooc {args:?}: {}",
        crate::common::stderr(&out)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// The JobSet of the jobset/postgres/ overlay, as kustomize would make it.
fn postgres_overlay(all: &[(PathBuf, Value)]) -> Value {
    overlay("jobset/postgres", all)
        .into_iter()
        .find(|v| kind(v) == "JobSet")
        .expect("the postgres overlay has the JobSet")
}

/// The strings of a container's `args`.
fn args_of(c: &Value) -> Vec<&str> {
    c["args"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect()
}

/// The value after `flag` in `args`.
fn flag<'a>(args: &[&'a str], flag: &str) -> &'a str {
    let at = args.iter().position(|a| *a == flag).unwrap_or_else(|| {
        panic!("{flag} is not among {args:?}");
    });
    args[at + 1]
}

/// What the nightly CronJob's `cooc submit` sends, rendered with `--dry-run`, with the
/// database URL Kubernetes would take from the Secret being the one jobset/postgres/ names.
fn nightly_submission(base: &[(PathBuf, Value)]) -> Value {
    let cj = named(base, "CronJob", "recommender-nightly");
    let args = args_of(&cj["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]);
    assert_eq!(args[0], "submit");
    let pg = postgres_overlay(base);
    let url = flag(
        &args_of(
            &pg["spec"]["replicatedJobs"][0]["template"]["spec"]["template"]["spec"]["containers"]
                [0],
        ),
        "--postgres",
    )
    .to_owned();
    let mut dry: Vec<&str> = args
        .iter()
        .map(|a| match *a {
            "$(BOOKSTORE_DB_URL)" => url.as_str(),
            a => a,
        })
        .collect();
    dry.push("--dry-run");
    serde_yaml_ng::from_str(&cooc(&dry)).unwrap()
}

fn files() -> Vec<(PathBuf, Value)> {
    let mut out = Vec::new();
    for dir in MANIFEST_DIRS {
        let mut files: Vec<PathBuf> = std::fs::read_dir(repo().join(dir))
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
            .filter(|p| p.file_name().is_some_and(|n| n != "kustomization.yaml"))
            .collect();
        files.sort();
        for f in files {
            let text = std::fs::read_to_string(&f).unwrap();
            for doc in serde_yaml_ng::Deserializer::from_str(&text) {
                let v: Value = serde::Deserialize::deserialize(doc)
                    .unwrap_or_else(|e| panic!("{}: {e}", f.display()));
                if !v.is_null() {
                    out.push((f.clone(), v));
                }
            }
        }
    }
    out
}

fn kind(v: &Value) -> &str {
    v["kind"].as_str().unwrap_or("")
}

fn named<'a>(all: &'a [(PathBuf, Value)], k: &str, name: &str) -> &'a Value {
    all.iter()
        .map(|(_, v)| v)
        .find(|v| kind(v) == k && v["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("no {k} named {name}"))
}

fn of_kind<'a>(all: &'a [(PathBuf, Value)], k: &str) -> Vec<&'a Value> {
    all.iter()
        .map(|(_, v)| v)
        .filter(|v| kind(v) == k)
        .collect()
}

#[test]
fn every_kustomization_lists_exactly_its_directory() {
    for dir in OVERLAYS {
        let files: Vec<String> = std::fs::read_dir(repo().join(dir))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(files, ["kustomization.yaml"], "{dir} is patches only");
    }
    for dir in MANIFEST_DIRS {
        let k: Value = serde_yaml_ng::from_str(
            &std::fs::read_to_string(repo().join(dir).join("kustomization.yaml")).unwrap(),
        )
        .unwrap();
        let mut listed: Vec<String> = k["resources"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r.as_str().unwrap().to_owned())
            .collect();
        listed.sort();
        let mut present: Vec<String> = std::fs::read_dir(repo().join(dir))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".yaml") && n != "kustomization.yaml")
            .collect();
        present.sort();
        assert_eq!(listed, present, "{dir}/kustomization.yaml");
    }
}

/// Deserializes into `T` and back; the result must equal the input (nothing dropped).
fn round_trip<T: serde::de::DeserializeOwned + serde::Serialize>(file: &Path, v: &Value) {
    let typed: T = serde_json::from_value(v.clone())
        .unwrap_or_else(|e| panic!("{}: {} does not parse: {e}", file.display(), kind(v)));
    let back = serde_json::to_value(&typed).unwrap();
    assert_eq!(
        &back,
        v,
        "{}: {} lost or changed fields",
        file.display(),
        kind(v)
    );
}

#[test]
fn built_in_kinds_round_trip_through_k8s_openapi() {
    use k8s_openapi::api::{apps, autoscaling, batch, core, networking, policy, rbac};
    let all = objects();
    let mut crd = 0;
    for (f, v) in &all {
        match (v["apiVersion"].as_str().unwrap_or(""), kind(v)) {
            ("v1", "Namespace") => round_trip::<core::v1::Namespace>(f, v),
            ("v1", "PersistentVolumeClaim") => round_trip::<core::v1::PersistentVolumeClaim>(f, v),
            ("v1", "Service") => round_trip::<core::v1::Service>(f, v),
            ("apps/v1", "Deployment") => round_trip::<apps::v1::Deployment>(f, v),
            ("autoscaling/v2", "HorizontalPodAutoscaler") => {
                round_trip::<autoscaling::v2::HorizontalPodAutoscaler>(f, v)
            }
            ("policy/v1", "PodDisruptionBudget") => {
                round_trip::<policy::v1::PodDisruptionBudget>(f, v)
            }
            ("networking.k8s.io/v1", "NetworkPolicy") => {
                round_trip::<networking::v1::NetworkPolicy>(f, v)
            }
            ("v1", "ServiceAccount") => round_trip::<core::v1::ServiceAccount>(f, v),
            ("rbac.authorization.k8s.io/v1", "Role") => round_trip::<rbac::v1::Role>(f, v),
            ("rbac.authorization.k8s.io/v1", "RoleBinding") => {
                round_trip::<rbac::v1::RoleBinding>(f, v)
            }
            ("batch/v1", "CronJob") => round_trip::<batch::v1::CronJob>(f, v),
            ("batch/v1", "Job") => round_trip::<batch::v1::Job>(f, v),
            ("apps/v1", "StatefulSet") => round_trip::<apps::v1::StatefulSet>(f, v),
            ("v1", "ConfigMap") => round_trip::<core::v1::ConfigMap>(f, v),
            (api, _)
                if api.starts_with("jobset.x-k8s.io/") || api.starts_with("kueue.x-k8s.io/") =>
            {
                crd += 1
            }
            (api, k) => panic!("{}: {api} {k} is not checked by any test", f.display()),
        }
    }
    assert!(
        crd >= 6,
        "JobSet and Kueue objects are checked by the schema test"
    );
    // Every JobSet's Job template is a built-in type too (the overlays' and the submitted
    // one's included).
    let jobsets: Vec<_> = all.iter().filter(|(_, v)| kind(v) == "JobSet").collect();
    assert_eq!(jobsets.len(), 5);
    for (f, js) in jobsets {
        for rj in js["spec"]["replicatedJobs"].as_array().unwrap() {
            round_trip::<k8s_openapi::api::batch::v1::JobTemplateSpec>(f, &rj["template"]);
        }
    }
}

#[test]
fn jobset_and_kueue_objects_validate_against_the_upstream_schemas() {
    let schemas = crd_schemas();
    let all = objects();
    let mut checked = 0;
    for (f, v) in &all {
        let api = v["apiVersion"].as_str().unwrap();
        if !(api.starts_with("jobset.x-k8s.io/") || api.starts_with("kueue.x-k8s.io/")) {
            continue;
        }
        assert!(
            !api.ends_with("v1beta1"),
            "{}: use kueue.x-k8s.io/v1beta2",
            f.display()
        );
        let (_, _, schema) = schemas
            .iter()
            .find(|(a, k, _)| a == api && k == kind(v))
            .unwrap_or_else(|| panic!("{}: no upstream schema for {api} {}", f.display(), kind(v)));
        let validator = jsonschema::validator_for(schema).unwrap();
        let errors: Vec<String> = validator
            .iter_errors(v)
            .map(|e| format!("{} at {}", e, e.instance_path()))
            .collect();
        assert!(
            errors.is_empty(),
            "{}: {}: {errors:#?}",
            f.display(),
            kind(v)
        );
        let mut extra = Vec::new();
        pruned(v, schema, "", &mut extra);
        assert!(
            extra.is_empty(),
            "{}: fields the schema would prune: {extra:?}",
            f.display()
        );
        checked += 1;
    }
    assert!(checked >= 6);
    // The checks can fail: a misspelt field and a wrong type are caught.
    let js = named(&all, "JobSet", "recommender-train").clone();
    let (_, _, schema) = schemas.iter().find(|(_, k, _)| k == "JobSet").unwrap();
    let mut typo = js.clone();
    typo["spec"]["failurePolicy"]["maxRestart"] = json!(3);
    let mut extra = Vec::new();
    pruned(&typo, schema, "", &mut extra);
    assert_eq!(extra, vec![".spec.failurePolicy.maxRestart"]);
    let mut wrong = js;
    wrong["spec"]["failurePolicy"]["rules"][0]["action"] = json!("Explode");
    assert!(!jsonschema::validator_for(schema).unwrap().is_valid(&wrong));
}

/// The CRDs' CEL rules hold on every JobSet and Kueue object we ship or submit; the check
/// can fail: a ClusterQueue flavor that does not quote every covered resource, and a
/// flavor taint with an effect Kubernetes does not know, are caught.
#[test]
fn jobset_and_kueue_objects_keep_the_crds_cel_rules() {
    let schemas = crd_schemas();
    let all = objects();
    let schema_of = |v: &serde_json::Value| {
        let api = v["apiVersion"].as_str().unwrap_or_default();
        schemas
            .iter()
            .find(|(a, k, _)| a == api && k == kind(v))
            .map(|(_, _, s)| s)
    };
    let mut checked = 0;
    let mut objects_checked = 0;
    for (f, v) in &all {
        let Some(schema) = schema_of(v) else { continue };
        let mut out = Vec::new();
        cel::violations(v, schema, "", &mut checked, &mut out);
        assert!(
            out.is_empty(),
            "{}: {}:\n{}",
            f.display(),
            kind(v),
            cel::describe(&out)
        );
        objects_checked += 1;
    }
    assert!(objects_checked >= 6, "{objects_checked} objects");
    assert!(
        checked >= 5,
        "only {checked} CEL rules applied to our objects"
    );

    let cq = all
        .iter()
        .map(|(_, v)| v)
        .find(|v| kind(v) == "ClusterQueue")
        .expect("a ClusterQueue")
        .clone();
    let mut short = cq.clone();
    short["spec"]["resourceGroups"][0]["flavors"][0]["resources"]
        .as_array_mut()
        .unwrap()
        .pop();
    let mut out = Vec::new();
    cel::violations(&short, schema_of(&cq).unwrap(), "", &mut 0, &mut out);
    assert!(
        out.iter().any(|v| v.rule.contains("coveredResources")),
        "{out:#?}"
    );

    let flavor = all
        .iter()
        .map(|(_, v)| v)
        .find(|v| kind(v) == "ResourceFlavor" && v["spec"]["nodeTaints"].is_array())
        .expect("the GPU flavor taints its nodes")
        .clone();
    let mut bad = flavor.clone();
    bad["spec"]["nodeTaints"][0]["effect"] = json!("Sometimes");
    let mut out = Vec::new();
    cel::violations(&bad, schema_of(&flavor).unwrap(), "", &mut 0, &mut out);
    assert!(out.iter().any(|v| v.path == ".spec.nodeTaints"), "{out:#?}");
}

/// Every pod template: Deployments, Jobs, CronJobs and JobSet replicatedJobs.
#[test]
fn every_pod_template_meets_pod_security_restricted() {
    let all = objects();
    let templates = pod_templates(&all);
    assert!(
        templates.len() >= 2,
        "the serving Deployment and the training ranks"
    );
    for (name, t) in &templates {
        assert_eq!(restricted_violations(t), Vec::<String>::new(), "{name}");
        // Expected here though not required by the profile.
        for c in t["spec"]["containers"].as_array().unwrap() {
            assert_eq!(
                c["securityContext"]["readOnlyRootFilesystem"], true,
                "{name}"
            );
        }
    }
    // Broken copies fail, each for its own reason.
    let (_, good) = &templates[0];
    type Break = fn(&mut Value);
    let breaks: Vec<(&str, Break)> = vec![
        ("runAsNonRoot", |t| {
            t["spec"]["securityContext"]["runAsNonRoot"] = json!(false);
        }),
        ("runAsUser 0", |t| {
            t["spec"]["containers"][0]["securityContext"]["runAsUser"] = json!(0)
        }),
        ("seccompProfile", |t| {
            t["spec"]["securityContext"]["seccompProfile"]["type"] = json!("Unconfined")
        }),
        ("allowPrivilegeEscalation", |t| {
            t["spec"]["containers"][0]["securityContext"]
                .as_object_mut()
                .unwrap()
                .remove("allowPrivilegeEscalation");
        }),
        ("privileged", |t| {
            t["spec"]["containers"][0]["securityContext"]["privileged"] = json!(true)
        }),
        ("drop lacks ALL", |t| {
            t["spec"]["containers"][0]["securityContext"]["capabilities"]["drop"] =
                json!(["NET_RAW"])
        }),
        ("adds capability", |t| {
            t["spec"]["containers"][0]["securityContext"]["capabilities"]["add"] =
                json!(["SYS_ADMIN"])
        }),
        ("hostNetwork", |t| t["spec"]["hostNetwork"] = json!(true)),
        ("hostPath", |t| {
            t["spec"]["volumes"]
                .as_array_mut()
                .unwrap()
                .push(json!({"name": "h", "hostPath": {"path": "/"}}))
        }),
        ("hostPort", |t| {
            t["spec"]["containers"][0]["ports"][0]["hostPort"] = json!(80)
        }),
        ("sets host", |t| {
            t["spec"]["containers"][0]["livenessProbe"] =
                json!({"httpGet": {"host": "10.0.0.1", "port": 1}})
        }),
        ("unsafe sysctl", |t| {
            t["spec"]["securityContext"]["sysctls"] =
                json!([{"name": "kernel.msgmax", "value": "1"}])
        }),
        ("procMount", |t| {
            t["spec"]["containers"][0]["securityContext"]["procMount"] = json!("Unmasked")
        }),
    ];
    for (why, f) in breaks {
        let mut t = good.clone();
        f(&mut t);
        let v = restricted_violations(&t);
        assert!(
            v.iter().any(|m| m.contains(why)),
            "breaking {why} went unnoticed: {v:?}"
        );
    }
}

/// cpu in millicores, memory in bytes, counts as is.
fn quantity(q: &Value) -> u64 {
    let s = q
        .as_str()
        .map(str::to_owned)
        .unwrap_or_else(|| q.to_string());
    let (num, mult): (&str, u64) = if let Some(n) = s.strip_suffix("m") {
        return n.parse().unwrap();
    } else if let Some(n) = s.strip_suffix("Ki") {
        (n, 1 << 10)
    } else if let Some(n) = s.strip_suffix("Mi") {
        (n, 1 << 20)
    } else if let Some(n) = s.strip_suffix("Gi") {
        (n, 1 << 30)
    } else {
        (s.as_str(), 1)
    };
    num.parse::<u64>()
        .unwrap_or_else(|_| panic!("quantity {s}"))
        * mult
}

fn millicpu(q: &Value) -> u64 {
    let s = q
        .as_str()
        .map(str::to_owned)
        .unwrap_or_else(|| q.to_string());
    match s.strip_suffix('m') {
        Some(m) => m.parse().unwrap(),
        None => s.parse::<u64>().unwrap() * 1000,
    }
}

fn env_value<'a>(c: &'a Value, name: &str) -> Option<&'a Value> {
    c["env"]
        .as_array()?
        .iter()
        .find(|e| e["name"] == name)
        .map(|e| &e["value"])
}

/// The checked-in JobSet's replicated jobs: (replicated job, pods in it, pod spec).
fn rank_jobs(js: &Value) -> Vec<(&Value, u64, &Value)> {
    js["spec"]["replicatedJobs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|rj| {
            let job = &rj["template"]["spec"];
            let pods = rj["replicas"].as_u64().unwrap_or(1) * job["parallelism"].as_u64().unwrap();
            (rj, pods, &job["template"]["spec"])
        })
        .collect()
}

#[test]
fn objects_live_in_the_namespace_unless_cluster_scoped() {
    let all = objects();
    for (f, v) in &all {
        let ns = &v["metadata"]["namespace"];
        let cluster_scoped = matches!(
            kind(v),
            "Namespace" | "ResourceFlavor" | "ClusterQueue" | "WorkloadPriorityClass"
        );
        if cluster_scoped {
            assert!(
                ns.is_null(),
                "{}: {} is cluster-scoped",
                f.display(),
                kind(v)
            );
        } else if f.starts_with(repo().join("jobset/bookstore-db")) {
            assert_eq!(ns, SHOP_NAMESPACE, "{}: {}", f.display(), kind(v));
        } else {
            assert_eq!(ns, NAMESPACE, "{}: {}", f.display(), kind(v));
        }
    }
    named(&all, "Namespace", NAMESPACE);
    named(&all, "Namespace", SHOP_NAMESPACE);
}

#[test]
fn the_gang_is_queued_on_a_cluster_queue_that_admits_it_whole() {
    let all = objects();
    let js = named(&all, "JobSet", "recommender-train");
    // Queue label -> LocalQueue -> ClusterQueue.
    let lq = named(
        &all,
        "LocalQueue",
        js["metadata"]["labels"]["kueue.x-k8s.io/queue-name"]
            .as_str()
            .unwrap(),
    );
    let cq = named(
        &all,
        "ClusterQueue",
        lq["spec"]["clusterQueue"].as_str().unwrap(),
    );
    for g in cq["spec"]["resourceGroups"].as_array().unwrap() {
        for fl in g["flavors"].as_array().unwrap() {
            named(&all, "ResourceFlavor", fl["name"].as_str().unwrap());
        }
    }
    // The ClusterQueue covers every resource the gang asks for, and admits the whole gang.
    let covered: Vec<&str> = cq["spec"]["resourceGroups"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|g| {
            g["coveredResources"]
                .as_array()
                .unwrap()
                .iter()
                .map(|r| r.as_str().unwrap())
        })
        .collect();
    let cpu_flavor = &cq["spec"]["resourceGroups"][0]["flavors"][0];
    assert_eq!(cpu_flavor["name"], "bookstore-ml-flavor");
    let quota = |res: &str| {
        cpu_flavor["resources"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["name"] == res)
            .map(|r| &r["nominalQuota"])
            .unwrap_or_else(|| panic!("no {res} quota"))
            .clone()
    };
    for (rj, pods, pod) in rank_jobs(js) {
        let job = &rj["template"]["spec"];
        assert_eq!(job["parallelism"], job["completions"]);
        assert_eq!(job["completionMode"], "Indexed");
        assert_eq!(
            job["backoffLimit"], 0,
            "a lost rank must fail its Job at once"
        );
        for c in pod["containers"].as_array().unwrap() {
            let req = &c["resources"]["requests"];
            for res in req.as_object().unwrap().keys() {
                assert!(
                    covered.contains(&res.as_str()),
                    "{res} is not covered by the ClusterQueue"
                );
            }
            assert!(
                pods * millicpu(&req["cpu"]) <= millicpu(&quota("cpu")),
                "cpu quota"
            );
            assert!(
                pods * quantity(&req["memory"]) <= quantity(&quota("memory")),
                "memory quota"
            );
        }
    }
}

#[test]
fn rank_pods_carry_the_identity_and_secret_the_runtime_reads() {
    let all = objects();
    let js = named(&all, "JobSet", "recommender-train");
    for (rj, pods, pod) in rank_jobs(js) {
        for c in pod["containers"].as_array().unwrap() {
            let world = env_value(c, "WORLD_SIZE").and_then(|w| w.as_str()).unwrap();
            assert_eq!(
                world.parse::<u64>().unwrap(),
                pods,
                "WORLD_SIZE is the gang size"
            );
            // The names the runtime derives are the ones JobSet creates, and valid.
            let host = cooc::gang::jobset::pod_hostname(
                js["metadata"]["name"].as_str().unwrap(),
                rj["name"].as_str().unwrap(),
                0,
                (pods - 1) as u32,
            );
            assert!(
                host.len() <= 63 - 6,
                "{host}: leaves room for a generated name suffix"
            );
        }
        // The env the runtime reads, resolved the way the downward API would.
        let c = &pod["containers"][0];
        let annotations = |key: &str| -> Option<String> {
            c["env"]
                .as_array()?
                .iter()
                .find(|e| e["name"] == key)
                .and_then(|e| {
                    let path = e["valueFrom"]["fieldRef"]["fieldPath"].as_str()?;
                    let ann = path
                        .strip_prefix("metadata.annotations['")?
                        .strip_suffix("']")?;
                    Some(match ann {
                        "jobset.sigs.k8s.io/jobset-name" => {
                            js["metadata"]["name"].as_str()?.to_owned()
                        }
                        "jobset.sigs.k8s.io/jobset-uid" => "uid".to_owned(),
                        "jobset.sigs.k8s.io/replicatedjob-name" => rj["name"].as_str()?.to_owned(),
                        "jobset.sigs.k8s.io/global-replicas" => rj["replicas"].to_string(),
                        "jobset.sigs.k8s.io/job-index" | "jobset.sigs.k8s.io/job-global-index" => {
                            "0".into()
                        }
                        "jobset.sigs.k8s.io/restart-attempt" => "0".into(),
                        other => panic!("unexpected annotation {other}"),
                    })
                })
        };
        let id = cooc::gang::jobset::JobSetIdentity::from_env(|k| match k {
            "JOB_COMPLETION_INDEX" => Some("1".into()),
            "WORLD_SIZE" => env_value(c, k).and_then(|v| v.as_str()).map(str::to_owned),
            _ => annotations(k),
        })
        .expect("the manifest's environment is what the runtime reads");
        assert_eq!(id.world as u64, pods);
        assert_eq!(
            id.peers(7077).unwrap()[0],
            "recommender-train-rank-0-0.recommender-train:7077"
        );
        // Secret and volume names agree with the objects.
        let vols = pod["volumes"].as_array().unwrap();
        let claim = vols
            .iter()
            .find_map(|v| v["persistentVolumeClaim"]["claimName"].as_str())
            .unwrap();
        named(&all, "PersistentVolumeClaim", claim);
        assert!(vols
            .iter()
            .any(|v| v["secret"]["secretName"] == "cooc-rank-secret"));
        assert_eq!(
            env_value(c, "COOC_SECRET_FILE").unwrap(),
            "/var/run/cooc/secret",
            "the secret is mounted where the runtime reads it"
        );
    }
}

#[test]
fn failure_policies_key_on_the_documented_exit_codes() {
    let all = objects();
    let js = named(&all, "JobSet", "recommender-train");
    let rules = js["spec"]["failurePolicy"]["rules"].as_array().unwrap();
    assert!(rules
        .iter()
        .any(|r| r["action"] == "FailJobSet" && r["onJobFailureReasons"][0] == "PodFailurePolicy"));
    assert!(rules.iter().any(|r| r["action"] == "RestartJobSet"));
    let pfp = &js["spec"]["replicatedJobs"][0]["template"]["spec"]["podFailurePolicy"]["rules"][0];
    assert_eq!(pfp["action"], "FailJob");
    assert_eq!(
        pfp["onExitCodes"]["values"],
        json!([cooc::error::Exit::Bad as i32])
    );
}

#[test]
fn serving_objects_select_the_serving_pods() {
    let all = objects();
    let dep = named(&all, "Deployment", "recommender");
    let pod_labels = dep["spec"]["template"]["metadata"]["labels"]
        .as_object()
        .unwrap();
    let matches = |sel: &Value| {
        sel.as_object()
            .unwrap()
            .iter()
            .all(|(k, v)| pod_labels.get(k) == Some(v))
    };
    assert!(matches(
        &named(&all, "Service", "recommender")["spec"]["selector"]
    ));
    assert!(matches(
        &named(&all, "PodDisruptionBudget", "recommender")["spec"]["selector"]["matchLabels"]
    ));
    assert!(matches(
        &named(&all, "NetworkPolicy", "recommender")["spec"]["podSelector"]["matchLabels"]
    ));
    assert!(matches(&dep["spec"]["selector"]["matchLabels"]));
    let hpa = named(&all, "HorizontalPodAutoscaler", "recommender");
    assert_eq!(hpa["spec"]["scaleTargetRef"]["kind"], "Deployment");
    assert_eq!(hpa["spec"]["scaleTargetRef"]["name"], "recommender");
    let svc = named(&all, "Service", "recommender");
    assert_eq!(svc["spec"]["ports"][0]["port"], 8080);
    let claim = dep["spec"]["template"]["spec"]["volumes"][0]["persistentVolumeClaim"]["claimName"]
        .as_str()
        .unwrap();
    named(&all, "PersistentVolumeClaim", claim);
}

#[test]
fn the_rank_network_policy_admits_only_rank_pods_of_every_run() {
    let all = objects();
    let js = named(&all, "JobSet", "recommender-train");
    // The training NetworkPolicy admits the rank port only from rank pods, and selects the
    // rank pods of every run: the checked-in JobSet's and those `cooc submit` renders.
    let np = named(&all, "NetworkPolicy", "recommender-train-ranks");
    let sel = &np["spec"]["podSelector"]["matchLabels"];
    let submitted = cooc::k8s::render::RunSpec::default().render().unwrap();
    for j in [js, &submitted] {
        let labels =
            &j["spec"]["replicatedJobs"][0]["template"]["spec"]["template"]["metadata"]["labels"];
        for (k, v) in sel.as_object().unwrap() {
            assert_eq!(&labels[k], v, "rank pods carry {k}");
        }
    }
    let serving = named(&all, "Deployment", "recommender")["spec"]["template"]["metadata"]
        ["labels"]
        .as_object()
        .unwrap();
    assert!(
        sel.as_object()
            .unwrap()
            .iter()
            .any(|(k, v)| serving.get(k) != Some(v)),
        "the serving pods are not admitted to the rank port"
    );
    assert_eq!(
        np["spec"]["ingress"][0]["from"][0]["podSelector"]["matchLabels"],
        *sel
    );
    assert_eq!(np["spec"]["ingress"][0]["ports"][0]["port"], 7077);
    assert_eq!(np["spec"]["ingress"][0]["ports"][0]["protocol"], "UDP");
}

#[test]
fn every_image_is_pinned() {
    let all = objects();
    let js = named(&all, "JobSet", "recommender-train");
    let ranks = rank_jobs(js).into_iter().map(|(_, _, pod)| pod);
    let serving = ["Deployment", "StatefulSet", "Job"]
        .into_iter()
        .flat_map(|k| of_kind(&all, k))
        .map(|d| &d["spec"]["template"]["spec"]);
    for pod in ranks.chain(serving) {
        for c in pod["containers"].as_array().unwrap() {
            let image = c["image"].as_str().unwrap();
            assert!(
                image.contains(':') && !image.ends_with(":latest"),
                "{image}"
            );
        }
    }
}

#[test]
fn the_grafana_dashboard_queries_only_metrics_cooc_serve_exports() {
    let dash: Value = serde_json::from_str(
        &std::fs::read_to_string(repo().join("serve/grafana/recommender.json")).unwrap(),
    )
    .unwrap();
    // Series names as Prometheus scrapes them, from the families cooc-serve registers.
    let text = cooc_serve::metrics::Metrics::default().encode();
    let mut exported = Vec::new();
    for line in text.lines().filter(|l| l.starts_with("# TYPE ")) {
        let f: Vec<&str> = line.split_whitespace().collect();
        let (name, kind) = (f[2], f[3]);
        match kind {
            "counter" => exported.push(format!("{name}_total")),
            "histogram" => {
                for s in ["_bucket", "_sum", "_count"] {
                    exported.push(format!("{name}{s}"));
                }
            }
            _ => exported.push(name.to_owned()),
        }
    }
    let mut queried = 0;
    for panel in dash["panels"].as_array().unwrap() {
        for t in panel["targets"].as_array().unwrap() {
            let expr = t["expr"].as_str().unwrap();
            let names: Vec<&str> = expr
                .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .filter(|w| w.starts_with("cooc_"))
                .collect();
            assert!(!names.is_empty(), "{}: {expr}", panel["title"]);
            for n in names {
                assert!(
                    exported.iter().any(|e| e == n),
                    "{n} is not exported: {exported:?}"
                );
                queried += 1;
            }
        }
    }
    assert!(queried >= 14);
}

#[test]
fn the_nightly_cronjob_submits_the_same_gang_under_its_own_service_account() {
    let all = objects();
    let cj = named(&all, "CronJob", "recommender-nightly");
    let job = &cj["spec"]["jobTemplate"]["spec"];
    assert_eq!(
        job["backoffLimit"], 0,
        "a retried submit would start a second gang"
    );
    assert_eq!(cj["spec"]["concurrencyPolicy"], "Forbid");
    let pod = &job["template"]["spec"];
    let sa = pod["serviceAccountName"].as_str().unwrap();
    named(&all, "ServiceAccount", sa);
    let rb = of_kind(&all, "RoleBinding")
        .into_iter()
        .find(|rb| {
            rb["subjects"]
                .as_array()
                .unwrap()
                .iter()
                .any(|s| s["kind"] == "ServiceAccount" && s["name"] == sa)
        })
        .expect("a RoleBinding for the submitter");
    assert_eq!(rb["roleRef"]["kind"], "Role");
    let role = named(&all, "Role", rb["roleRef"]["name"].as_str().unwrap());
    // Create and follow JobSets, read Workloads; nothing that deletes, and no other resource.
    let mut grants: Vec<String> = Vec::new();
    for r in role["rules"].as_array().unwrap() {
        for g in r["apiGroups"].as_array().unwrap() {
            for res in r["resources"].as_array().unwrap() {
                for v in r["verbs"].as_array().unwrap() {
                    grants.push(format!(
                        "{}/{} {}",
                        g.as_str().unwrap(),
                        res.as_str().unwrap(),
                        v.as_str().unwrap()
                    ));
                }
            }
        }
    }
    grants.sort();
    assert_eq!(
        grants,
        [
            "jobset.x-k8s.io/jobsets create",
            "jobset.x-k8s.io/jobsets get",
            "jobset.x-k8s.io/jobsets list",
            "jobset.x-k8s.io/jobsets watch",
            "kueue.x-k8s.io/workloads get",
            "kueue.x-k8s.io/workloads list",
            "kueue.x-k8s.io/workloads watch",
        ]
    );
    // What it submits: the checked-in gang under a generated name, with its priority class.
    let sent = all
        .iter()
        .find(|(f, _)| f.to_string_lossy().contains("cooc submit --dry-run"))
        .map(|(_, v)| v)
        .unwrap();
    assert_eq!(sent["metadata"]["generateName"], "recommender-train-");
    let pc = sent["metadata"]["labels"]["kueue.x-k8s.io/priority-class"]
        .as_str()
        .unwrap();
    named(&all, "WorkloadPriorityClass", pc);
    let lq = sent["metadata"]["labels"]["kueue.x-k8s.io/queue-name"]
        .as_str()
        .unwrap();
    named(&all, "LocalQueue", lq);
    assert_eq!(
        sent["spec"],
        postgres_overlay(&all)["spec"],
        "the nightly run trains exactly what jobset/postgres/ describes"
    );
    // The database URL comes from the Secret the ranks' password comes from.
    let submit = &pod["containers"][0];
    assert!(args_of(submit).contains(&"$(BOOKSTORE_DB_URL)"));
    let from = submit["env"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["name"] == "BOOKSTORE_DB_URL")
        .map(|e| &e["valueFrom"]["secretKeyRef"])
        .expect("BOOKSTORE_DB_URL from a Secret");
    assert_eq!(from["name"], "bookstore-db");
    assert_eq!(from["key"], "url");
    let image = pod["containers"][0]["image"].as_str().unwrap();
    assert!(image.contains(':') && !image.ends_with(":latest"));
}

#[test]
fn the_gpu_overlay_asks_for_one_gpu_per_rank_on_the_gpu_flavor() {
    let all = objects();
    let gpu = all
        .iter()
        .find(|(f, v)| f.ends_with("jobset/gpu (overlay)") && kind(v) == "JobSet")
        .map(|(_, v)| v)
        .unwrap();
    let rj = &gpu["spec"]["replicatedJobs"][0];
    let pods =
        rj["replicas"].as_u64().unwrap() * rj["template"]["spec"]["parallelism"].as_u64().unwrap();
    let pod = &rj["template"]["spec"]["template"]["spec"];
    let c = &pod["containers"][0];
    let image = c["image"].as_str().unwrap();
    assert!(
        image.starts_with("cooc-gpu:") && !image.ends_with(":latest"),
        "{image}"
    );
    let args: Vec<&str> = c["args"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    let has = |flag: &str, value: &str| args.windows(2).any(|w| w == [flag, value]);
    assert!(
        has("--backend", "cuda") && has("--comm", "nccl"),
        "{args:?}"
    );
    // The ranks' arguments parse: `cooc submit` checks them with the train parser.
    let after_input = args.iter().position(|a| *a == "--holdout").unwrap();
    let mut dry = vec!["submit", "--dry-run", "--"];
    dry.extend(
        args[after_input..]
            .iter()
            .filter(|a| !a.starts_with("--model-dir") && **a != "/workspace/model"),
    );
    cooc(&dry);
    let req = &c["resources"]["requests"];
    assert_eq!(req["nvidia.com/gpu"], "1");
    assert_eq!(c["resources"]["limits"]["nvidia.com/gpu"], "1");

    // Kueue can only place it on the GPU flavor, and that flavor admits the whole gang.
    let cq = named(&all, "ClusterQueue", "bookstore-ml-cq");
    let flavors = cq["spec"]["resourceGroups"][0]["flavors"]
        .as_array()
        .unwrap();
    let quota = nominal_quota;
    let cpu_flavor = &flavors[0];
    assert_eq!(quantity(&quota(cpu_flavor, "nvidia.com/gpu")), 0);
    let gpu_flavor = flavors
        .iter()
        .find(|f| quantity(&quota(f, "nvidia.com/gpu")) > 0)
        .unwrap();
    assert!(
        pods * quantity(&req["nvidia.com/gpu"]) <= quantity(&quota(gpu_flavor, "nvidia.com/gpu"))
    );
    assert!(pods * millicpu(&req["cpu"]) <= millicpu(&quota(gpu_flavor, "cpu")));
    assert!(pods * quantity(&req["memory"]) <= quantity(&quota(gpu_flavor, "memory")));
    // The pods require the nodes the flavor selects.
    let rf = named(&all, "ResourceFlavor", gpu_flavor["name"].as_str().unwrap());
    let term = &pod["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
        ["nodeSelectorTerms"][0]["matchExpressions"][0];
    let (label, value) = rf["spec"]["nodeLabels"]
        .as_object()
        .unwrap()
        .iter()
        .next()
        .unwrap();
    assert_eq!(term["key"], *label);
    assert_eq!(term["operator"], "In");
    assert_eq!(term["values"], json!([value]));
    // Everything else is the CPU gang's.
    let base = named(&all, "JobSet", "recommender-train");
    assert_eq!(gpu["spec"]["failurePolicy"], base["spec"]["failurePolicy"]);
    assert_eq!(gpu["metadata"], base["metadata"]);
}

/// Issue: a ReadWriteOnce model volume cannot follow a gang spread over nodes or serving
/// replicas on several nodes. The object-store overlays mount no model volume anywhere, make
/// no claim, and point the trainer and the server at the same store.
#[test]
fn the_object_store_overlays_mount_no_model_volume_and_share_one_store() {
    let all = files();
    let train = overlay("jobset/s3", &all);
    let serve = overlay("serve/k8s/s3", &all);
    for (dir, objs) in [("jobset/s3", &train), ("serve/k8s/s3", &serve)] {
        assert!(
            objs.iter().all(|v| kind(v) != "PersistentVolumeClaim"),
            "{dir} makes a claim"
        );
        let text = serde_json::to_string(objs).unwrap();
        assert!(
            !text.contains("persistentVolumeClaim"),
            "{dir} mounts a claim"
        );
        assert!(
            !text.contains("/workspace/model"),
            "{dir} still names the volume path"
        );
    }
    let js = train.iter().find(|v| kind(v) == "JobSet").unwrap();
    let rank =
        &js["spec"]["replicatedJobs"][0]["template"]["spec"]["template"]["spec"]["containers"][0];
    let args: Vec<&str> = rank["args"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    let at = args.iter().position(|a| *a == "--model-dir").unwrap();
    let trained_into = args[at + 1];
    assert!(trained_into.starts_with("s3://"), "{trained_into}");
    let dep = serve.iter().find(|v| kind(v) == "Deployment").unwrap();
    let server = &dep["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(
        env_value(server, "MODEL_DIR"),
        Some(&json!(trained_into)),
        "the server reads where rank 0 writes"
    );
    for c in [rank, server] {
        assert_eq!(
            c["envFrom"],
            json!([{"secretRef": {"name": "cooc-model-store", "optional": true}}]),
            "credentials from the optional Secret, else the pod's identity"
        );
    }
}

#[test]
fn cooc_submit_gpu_sends_what_the_gpu_overlay_makes() {
    let mut want = gpu_overlay(&files());
    let meta = want["metadata"].as_object_mut().unwrap();
    meta.remove("name");
    meta.insert("generateName".into(), json!("recommender-train-"));
    let got: Value = serde_yaml_ng::from_str(&cooc(&["submit", "--dry-run", "--gpu"])).unwrap();
    assert_eq!(
        got, want,
        "cooc submit --gpu and kubectl apply -k jobset/gpu/ differ"
    );
    // An explicit image wins over the overlay's.
    let own: Value = serde_yaml_ng::from_str(&cooc(&[
        "submit",
        "--dry-run",
        "--gpu",
        "--image",
        "registry.local/cooc-gpu:dev",
    ]))
    .unwrap();
    assert_eq!(
        own["spec"]["replicatedJobs"][0]["template"]["spec"]["template"]["spec"]["containers"][0]
            ["image"],
        "registry.local/cooc-gpu:dev"
    );
}

#[test]
fn cooc_submit_model_dir_sends_what_the_s3_overlay_makes() {
    let mut want = overlay("jobset/s3", &files())
        .into_iter()
        .find(|v| kind(v) == "JobSet")
        .unwrap();
    let meta = want["metadata"].as_object_mut().unwrap();
    meta.remove("name");
    meta.insert("generateName".into(), json!("recommender-train-"));
    let got: Value = serde_yaml_ng::from_str(&cooc(&[
        "submit",
        "--dry-run",
        "--model-dir",
        "s3://bookstore-models/recommender",
    ]))
    .unwrap();
    assert_eq!(
        got, want,
        "cooc submit --model-dir s3://... and kubectl apply -k jobset/s3/ differ"
    );
    // A path is not a store a submitted run can reach; a URL of no store is refused too.
    for bad in ["/elsewhere", "ftp://host/x"] {
        let out = crate::common::cooc(&["submit", "--dry-run", "--model-dir", bad]);
        assert_eq!(out.status.code(), Some(2), "{bad}");
        assert!(
            crate::common::stderr(&out).contains(bad),
            "{}",
            crate::common::stderr(&out)
        );
    }
}

#[test]
fn cooc_submit_postgres_sends_what_the_postgres_overlay_makes() {
    let mut want = postgres_overlay(&files());
    let meta = want["metadata"].as_object_mut().unwrap();
    meta.remove("name");
    meta.insert("generateName".into(), json!("recommender-train-"));
    let rank =
        &want["spec"]["replicatedJobs"][0]["template"]["spec"]["template"]["spec"]["containers"][0];
    let url = flag(&args_of(rank), "--postgres").to_owned();
    let got: Value = serde_yaml_ng::from_str(&cooc(&[
        "submit",
        "--dry-run",
        "--postgres",
        &url,
        "--books-table",
        "books",
    ]))
    .unwrap();
    assert_eq!(
        got, want,
        "cooc submit --postgres and kubectl apply -k jobset/postgres/ differ"
    );
    // Another Secret and table are the ranks' to read.
    let other: Value = serde_yaml_ng::from_str(&cooc(&[
        "submit",
        "--dry-run",
        "--postgres",
        "host=db.internal dbname=shop user=ml sslmode=require",
        "--postgres-secret",
        "shop-db",
        "--orders-table",
        "sales.orders",
    ]))
    .unwrap();
    let pod = &other["spec"]["replicatedJobs"][0]["template"]["spec"]["template"]["spec"];
    let args = args_of(&pod["containers"][0]);
    assert_eq!(flag(&args, "--orders-table"), "sales.orders");
    assert!(!args.contains(&"--books-table"));
    let vol = pod["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["name"] == "bookstore-db")
        .unwrap();
    assert_eq!(vol["secret"]["secretName"], "shop-db");
    // Refused before anything is sent: a password in the URL (it would be in the JobSet,
    // and is not echoed), a variable Kubernetes left unexpanded, a second input.
    for (bad, why) in [
        ("postgresql://ml:hunter22@db/shop", "holds a password"),
        ("$(BOOKSTORE_DB_URL)", "Secret bookstore-db"),
    ] {
        let out = crate::common::cooc(&["submit", "--dry-run", "--postgres", bad]);
        let err = crate::common::stderr(&out);
        assert_eq!(out.status.code(), Some(2), "{bad}: {err}");
        assert!(err.contains(why), "{bad}: {err}");
        assert!(!err.contains("hunter22"), "{err}");
    }
    let out = crate::common::cooc(&[
        "submit",
        "--dry-run",
        "--postgres",
        "host=db",
        "--orders",
        "orders.csv",
    ]);
    assert_eq!(out.status.code(), Some(2));
}

/// Issue: ranks holding the database password reach the database, the DNS and each other,
/// and nothing else; ranks of other inputs are not restricted by it.
#[test]
fn database_reading_ranks_may_reach_only_dns_their_peers_and_the_database() {
    let all = objects();
    let np = named(&all, "NetworkPolicy", "bookstore-db-egress");
    assert_eq!(np["spec"]["policyTypes"], json!(["Egress"]));
    let sel = np["spec"]["podSelector"]["matchLabels"]
        .as_object()
        .unwrap();
    let selected = |js: &Value| {
        let labels =
            &js["spec"]["replicatedJobs"][0]["template"]["spec"]["template"]["metadata"]["labels"];
        sel.iter().all(|(k, v)| &labels[k] == v)
    };
    let pg = postgres_overlay(&all);
    let submitted = nightly_submission(&all);
    assert!(selected(&pg) && selected(&submitted));
    for other in [
        named(&all, "JobSet", "recommender-train").clone(),
        gpu_overlay(&all),
    ] {
        assert!(!selected(&other), "ranks of other inputs keep their egress");
    }
    let egress = np["spec"]["egress"].as_array().unwrap();
    assert_eq!(egress.len(), 3, "DNS, peers, database: nothing else");
    // DNS: kube-dns in kube-system, port 53 over UDP and TCP.
    let dns = &egress[0];
    assert_eq!(
        dns["to"][0]["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"],
        "kube-system"
    );
    assert_eq!(
        dns["to"][0]["podSelector"]["matchLabels"]["k8s-app"],
        "kube-dns"
    );
    let mut ports: Vec<String> = dns["ports"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| format!("{}/{}", p["protocol"].as_str().unwrap(), p["port"]))
        .collect();
    ports.sort();
    assert_eq!(ports, ["TCP/53", "UDP/53"]);
    // Peers: the rank port of rank pods, as the ingress policy admits.
    let ranks = named(&all, "NetworkPolicy", "recommender-train-ranks");
    assert_eq!(
        egress[1]["to"][0]["podSelector"],
        ranks["spec"]["podSelector"]
    );
    assert_eq!(egress[1]["ports"], ranks["spec"]["ingress"][0]["ports"]);
    // The database: the pods behind the Service the overlay's URL names, on its port.
    let rank = &pg["spec"]["replicatedJobs"][0]["template"]["spec"]["template"]["spec"];
    let args = args_of(&rank["containers"][0]);
    let url = flag(&args, "--postgres");
    let host = url
        .split('@')
        .nth(1)
        .and_then(|h| h.split(':').next())
        .unwrap();
    let (svc_name, svc_ns) = host.split_once('.').unwrap();
    let svc_ns = svc_ns.split('.').next().unwrap();
    let svc = named(&all, "Service", svc_name);
    assert_eq!(svc["metadata"]["namespace"], svc_ns);
    let sts = named(&all, "StatefulSet", svc_name);
    let db_labels = &sts["spec"]["template"]["metadata"]["labels"];
    for (k, v) in svc["spec"]["selector"].as_object().unwrap() {
        assert_eq!(&db_labels[k], v, "the Service selects the database pods");
    }
    let db = &egress[2];
    assert_eq!(
        db["to"][0]["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"],
        svc_ns
    );
    for (k, v) in db["to"][0]["podSelector"]["matchLabels"]
        .as_object()
        .unwrap()
    {
        assert_eq!(&db_labels[k], v, "the policy selects the database pods");
    }
    assert!(url.contains(":5432/"));
    assert_eq!(db["ports"], json!([{"protocol": "TCP", "port": 5432}]));
    assert_eq!(svc["spec"]["ports"][0]["port"], 5432);
    // The password: the Secret's key `password`, mounted read-only where the flag points.
    let file = flag(&args, "--postgres-password-file");
    let mount = rank["containers"][0]["volumeMounts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["name"] == "bookstore-db")
        .unwrap();
    assert_eq!(mount["readOnly"], true);
    let vol = rank["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["name"] == "bookstore-db")
        .unwrap();
    let item = &vol["secret"]["items"][0];
    assert_eq!(
        file,
        format!(
            "{}/{}",
            mount["mountPath"].as_str().unwrap(),
            item["path"].as_str().unwrap()
        )
    );
    assert_eq!(item["key"], "password");
    assert_eq!(vol["secret"]["secretName"], "bookstore-db");
    assert_eq!(vol["secret"]["defaultMode"], 0o440);
}

/// The kind demo's database: seeded by `cooc gen --postgres` as the owner, read by the ranks
/// as a role the init script limits to SELECT.
#[test]
fn the_demo_database_is_seeded_by_cooc_gen_and_read_by_a_select_only_role() {
    let all = files();
    let seed = named(&all, "Job", "bookstore-db-seed");
    let c = &seed["spec"]["template"]["spec"]["containers"][0];
    let args = args_of(c);
    assert_eq!(args[0], "gen");
    let owner_url = flag(&args, "--postgres");
    let sts = named(&all, "StatefulSet", "bookstore-db");
    let db = &sts["spec"]["template"]["spec"]["containers"][0];
    let owner = env_value(db, "POSTGRES_USER").unwrap().as_str().unwrap();
    let dbname = env_value(db, "POSTGRES_DB").unwrap().as_str().unwrap();
    assert!(owner_url.starts_with(&format!("postgresql://{owner}@")));
    assert!(owner_url.ends_with(&format!("/{dbname}")));
    let image = db["image"].as_str().unwrap();
    assert!(image.starts_with("postgres:15."), "{image}");
    let init = named(&all, "ConfigMap", "bookstore-db-initdb");
    let script = init["data"]["10-cooc-role.sh"].as_str().unwrap();
    assert!(script.contains(&format!(
        "ALTER DEFAULT PRIVILEGES FOR ROLE {owner} IN SCHEMA public GRANT SELECT ON TABLES TO cooc"
    )));
    assert!(!script.contains("GRANT ALL"));
    // The ranks log in as that role.
    let pg = postgres_overlay(&all);
    let rank =
        &pg["spec"]["replicatedJobs"][0]["template"]["spec"]["template"]["spec"]["containers"][0];
    let url = flag(&args_of(rank), "--postgres");
    assert!(url.starts_with("postgresql://cooc@"), "{url}");
    assert!(url.ends_with(&format!("/{dbname}")));
}

/// Kueue's flavor assignment for a pod set of `pods` pods like `pod` (the rules the
/// ResourceFlavor and ClusterQueue CRDs in tests/crds document): a flavor is eligible when
/// the pods tolerate each of its NoSchedule/NoExecute `nodeTaints` (unless the flavor's own
/// `tolerations` match the taint, which makes Kueue skip it), its `nodeLabels` agree with the
/// pods' node selector and required node affinity, and its quota holds the whole pod set.
/// The names of the eligible flavors, in the ClusterQueue's order.
fn admissible_flavors(all: &[(PathBuf, Value)], pod: &Value, pods: u64) -> Vec<String> {
    let tolerates = |t: &Value, taint: &Value| {
        let key_ok = t["key"] == taint["key"] || (t["key"].is_null() && t["operator"] == "Exists");
        let value_ok = t["operator"] == "Exists" || t["value"] == taint["value"];
        let effect_ok = t["effect"].is_null() || t["effect"] == taint["effect"];
        key_ok && value_ok && effect_ok
    };
    let empty = vec![];
    let cq = named(all, "ClusterQueue", "bookstore-ml-cq");
    let req = &pod["containers"][0]["resources"]["requests"];
    let mut out = Vec::new();
    for group in cq["spec"]["resourceGroups"].as_array().unwrap() {
        for fl in group["flavors"].as_array().unwrap() {
            let name = fl["name"].as_str().unwrap();
            let rf = named(all, "ResourceFlavor", name);
            let own = rf["spec"]["tolerations"].as_array().unwrap_or(&empty);
            let taints_ok = rf["spec"]["nodeTaints"]
                .as_array()
                .unwrap_or(&empty)
                .iter()
                .filter(|t| t["effect"] == "NoSchedule" || t["effect"] == "NoExecute")
                .filter(|t| !own.iter().any(|o| tolerates(o, t)))
                .all(|t| {
                    pod["tolerations"]
                        .as_array()
                        .unwrap_or(&empty)
                        .iter()
                        .any(|p| tolerates(p, t))
                });
            let labels = rf["spec"]["nodeLabels"].as_object();
            let labels_ok = labels.is_none_or(|labels| {
                labels.iter().all(|(k, v)| {
                    let selector_ok =
                        pod["nodeSelector"][k].is_null() || pod["nodeSelector"][k] == *v;
                    let terms = pod["affinity"]["nodeAffinity"]
                        ["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"]
                        .as_array()
                        .unwrap_or(&empty);
                    let affinity_ok = terms.is_empty()
                        || terms.iter().any(|term| {
                            term["matchExpressions"]
                                .as_array()
                                .unwrap_or(&empty)
                                .iter()
                                .filter(|e| e["key"] == *k)
                                .all(|e| {
                                    e["operator"] == "In"
                                        && e["values"].as_array().unwrap().contains(v)
                                })
                        });
                    selector_ok && affinity_ok
                })
            });
            let quota = |res: &str| nominal_quota(fl, res);
            let fits = req
                .as_object()
                .unwrap()
                .iter()
                .all(|(res, q)| match res.as_str() {
                    "cpu" => pods * millicpu(q) <= millicpu(&quota("cpu")),
                    _ => pods * quantity(q) <= quantity(&quota(res)),
                });
            if taints_ok && labels_ok && fits {
                out.push(name.to_owned());
            }
        }
    }
    out
}

#[test]
fn a_cpu_gang_is_admissible_on_cpu_nodes_only_and_a_gpu_gang_on_gpu_nodes_only() {
    let all = objects();
    let gang = |file: &str| {
        let js = all
            .iter()
            .find(|(f, v)| f.ends_with(file) && kind(v) == "JobSet")
            .map(|(_, v)| v)
            .unwrap_or_else(|| panic!("no JobSet in {file}"));
        let rj = &js["spec"]["replicatedJobs"][0];
        let pods = rj["replicas"].as_u64().unwrap()
            * rj["template"]["spec"]["parallelism"].as_u64().unwrap();
        (rj["template"]["spec"]["template"]["spec"].clone(), pods)
    };
    let (cpu, cpu_pods) = gang("jobset/base/recommender-train.yaml");
    let (gpu, gpu_pods) = gang("jobset/gpu (overlay)");
    assert_eq!(
        admissible_flavors(&all, &cpu, cpu_pods),
        ["bookstore-ml-flavor"],
        "the CPU gang must never be admitted on the GPU flavor, even with the CPU quota used up"
    );
    assert_eq!(
        admissible_flavors(&all, &gpu, gpu_pods),
        ["bookstore-ml-gpu-flavor"]
    );

    // The rule is what keeps them apart: a GPU flavor that tolerates its own taint (as
    // the manifests once had it) would take the CPU gang once the CPU quota is used up.
    let mut loose = all.clone();
    for (_, v) in loose.iter_mut() {
        if kind(v) == "ResourceFlavor" && v["metadata"]["name"] == "bookstore-ml-gpu-flavor" {
            v["spec"]["tolerations"] =
                json!([{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]);
        }
    }
    assert_eq!(
        admissible_flavors(&loose, &cpu, cpu_pods),
        ["bookstore-ml-flavor", "bookstore-ml-gpu-flavor"]
    );
}

/// Every kustomization directory builds with the real kustomize (`kubectl kustomize`), and
/// the GPU overlay's JobSet is exactly what the other manifest tests (and `cooc submit
/// --gpu`, compared with that in `cooc_submit_gpu_sends_what_the_gpu_overlay_makes`) check.
#[test]
#[ignore = "needs kubectl (kustomize); .ci/run runs it"]
fn kubectl_kustomize_builds_every_directory() {
    let build = |dir: &str| -> Vec<Value> {
        let out = std::process::Command::new("kubectl")
            .args(["kustomize", dir])
            .current_dir(repo())
            .output()
            .expect("running kubectl (install it to run this test)");
        assert!(
            out.status.success(),
            "kubectl kustomize {dir}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let text = String::from_utf8(out.stdout).unwrap();
        serde_yaml_ng::Deserializer::from_str(&text)
            .map(|d| serde::Deserialize::deserialize(d).unwrap())
            .filter(|v: &Value| !v.is_null())
            .collect()
    };
    let sorted = |mut v: Vec<Value>| {
        v.sort_by_key(|v| v.to_string());
        v
    };
    for dir in [
        "kueue",
        "jobset",
        "jobset/base",
        "jobset/nightly",
        "jobset/bookstore-db",
        "serve/k8s",
        "serve/k8s/base",
    ] {
        assert!(!build(dir).is_empty(), "{dir} builds nothing");
    }
    // Each overlay makes exactly what the offline tests check.
    let all = files();
    for dir in OVERLAYS {
        assert_eq!(
            sorted(build(dir)),
            sorted(overlay(dir, &all)),
            "kustomize's {dir}"
        );
    }
    // jobset/ and serve/k8s/ are their bases, unchanged.
    assert_eq!(sorted(build("jobset/base")), sorted(build("jobset")));
    assert_eq!(sorted(build("serve/k8s/base")), sorted(build("serve/k8s")));
}

/// A ClusterQueue flavor's nominal quota of `res` ("0" when it lists none).
fn nominal_quota(fl: &Value, res: &str) -> Value {
    fl["resources"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == res)
        .map(|r| r["nominalQuota"].clone())
        .unwrap_or(json!("0"))
}
