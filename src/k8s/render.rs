//! Renders the training JobSet that `cooc submit` sends: the checked-in
//! `jobset/base/recommender-train.yaml`, with the world size, queue, image, input and name of
//! this run filled in.
//!
//! The manifest in the repository is the single source: rendering the defaults gives it
//! back (with `generateName` in place of `name`), which a test checks, so `kubectl apply -k
//! jobset/` and `cooc submit` can never drift apart. `--gpu` applies the JSON patches of the
//! `jobset/gpu/` overlay itself, so `kubectl apply -k jobset/gpu/` and `cooc submit --gpu`
//! cannot drift apart either.

use serde_json::{json, Value};

use crate::gang::jobset::{pod_hostname, MAX_LABEL};

/// The manifest `cooc submit` starts from.
pub const BASE_MANIFEST: &str = include_str!("../../jobset/base/recommender-train.yaml");

/// The GPU overlay, whose patches `--gpu` applies.
pub const GPU_OVERLAY: &str = include_str!("../../jobset/gpu/kustomization.yaml");

/// Characters the apiserver appends to a `generateName` prefix.
pub const GENERATED_SUFFIX_LEN: usize = 5;

/// The `cooc train` arguments after the input ones when none are given: evaluate on the
/// held-out last orders and refuse a model whose neighbours are meaningless.
pub const DEFAULT_GATE_ARGS: [&str; 4] = ["--holdout", "last", "--min-avg-top1-cosine", "0.05"];

/// Where rank 0 writes the model (the model PVC's mount in the manifest).
const MODEL_MOUNT: &str = "/workspace/model";
/// Where an input PVC is mounted, read-only.
const INPUT_MOUNT: &str = "/input";
/// Where the database Secret is mounted, read-only.
pub const DB_SECRET_MOUNT: &str = "/var/run/bookstore-db";
/// The Secret of the Bookstore database: `url` (for the nightly CronJob) and `password`
/// (mounted into every rank).
pub const DB_SECRET: &str = "bookstore-db";
/// The label that puts a rank pod under the egress NetworkPolicy of database readers
/// (`bookstore-db-egress` in jobset/base/).
pub const DB_CLIENT_LABEL: &str = "bookstore-db-client";

/// How the run is named.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Naming {
    /// `metadata.generateName`: the apiserver appends a random suffix, so runs never collide.
    Generate(String),
    /// A fixed name, applied with server-side apply (re-submitting is idempotent).
    Fixed(String),
}

/// The training input of the ranks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Input {
    /// Each rank generates its own baskets of the synthetic Bookstore data.
    Generate {
        /// The preset size (s, m, l, xl).
        size: String,
        /// The seed (the preset's when absent).
        seed: Option<u64>,
    },
    /// Files on a PersistentVolumeClaim mounted read-only at `/input` (paths relative to it),
    /// or absolute paths already present in the image.
    Files {
        /// The orders file as the ranks see it.
        orders: String,
        /// `books.csv` as the ranks see it.
        books: Option<String>,
        /// The PersistentVolumeClaim holding the files.
        claim: Option<String>,
    },
    /// The Bookstore's PostgreSQL, read by every rank in one snapshot; the password comes
    /// from a Secret mounted at [`DB_SECRET_MOUNT`], never from the manifest.
    Postgres {
        /// The connection string (libpq URI or key=value), without a password.
        url: String,
        /// The Secret holding the password under the key `password`.
        secret: String,
        /// `--orders-table`, when not the default.
        orders_table: Option<String>,
        /// `--books-table`, if titles come from the database.
        books_table: Option<String>,
    },
}

/// Everything that varies between runs.
#[derive(Debug, Clone, PartialEq)]
pub struct RunSpec {
    /// How the JobSet is named.
    pub naming: Naming,
    /// The namespace.
    pub namespace: String,
    /// Ranks in the gang.
    pub world_size: u32,
    /// The Kueue LocalQueue.
    pub queue: String,
    /// The rank image.
    pub image: String,
    /// What the ranks train on.
    pub input: Input,
    /// `kueue.x-k8s.io/priority-class` (a WorkloadPriorityClass), if any.
    pub priority_class: Option<String>,
    /// Arguments of `cooc train` after the input ones; `None` means [`DEFAULT_GATE_ARGS`].
    pub train_args: Option<Vec<String>>,
    /// The GPU node pool: the `jobset/gpu/` overlay's patches (one GPU per rank, CUDA and
    /// NCCL, the pool's toleration and affinity), with [`RunSpec::image`] kept.
    pub gpu: bool,
    /// An object-store URL (`s3://bucket/prefix`) rank 0 publishes to instead of the model
    /// volume: as in the `jobset/s3/` overlay, no rank mounts the volume, and credentials
    /// come from the pod's identity or the optional Secret `cooc-model-store`.
    pub model_store: Option<String>,
}

/// The optional Secret of object-store credentials the ranks read (jobset/s3/).
pub const MODEL_STORE_SECRET: &str = "cooc-model-store";

impl Default for RunSpec {
    /// The run the checked-in manifest describes.
    fn default() -> Self {
        RunSpec {
            naming: Naming::Generate("recommender-train-".into()),
            namespace: "bookstore-ml".into(),
            world_size: 2,
            queue: "bookstore-ml-lq".into(),
            image: "cooc:0.1.0".into(),
            input: Input::Generate {
                size: "m".into(),
                seed: None,
            },
            priority_class: None,
            train_args: None,
            gpu: false,
            model_store: None,
        }
    }
}

/// A run that cannot be rendered.
#[derive(Debug, thiserror::Error)]
#[error("cannot render the JobSet: {0}")]
pub struct RenderError(pub String);

impl RunSpec {
    /// The arguments each rank's container runs `cooc` with.
    pub fn rank_args(&self) -> Vec<String> {
        let mut args: Vec<String> = vec!["train".into(), "--jobset".into()];
        match &self.input {
            Input::Generate { size, seed } => {
                args.extend(["--generate".into(), size.clone()]);
                if let Some(s) = seed {
                    args.extend(["--seed".into(), s.to_string()]);
                }
            }
            Input::Files {
                orders,
                books,
                claim,
            } => {
                let at = |p: &str| match claim {
                    Some(_) if !p.starts_with('/') => format!("{INPUT_MOUNT}/{p}"),
                    _ => p.to_owned(),
                };
                args.extend(["--orders".into(), at(orders)]);
                if let Some(b) = books {
                    args.extend(["--books".into(), at(b)]);
                }
            }
            Input::Postgres {
                url,
                orders_table,
                books_table,
                ..
            } => {
                args.extend([
                    "--postgres".into(),
                    url.clone(),
                    "--postgres-password-file".into(),
                    format!("{DB_SECRET_MOUNT}/password"),
                ]);
                if let Some(t) = orders_table {
                    args.extend(["--orders-table".into(), t.clone()]);
                }
                if let Some(t) = books_table {
                    args.extend(["--books-table".into(), t.clone()]);
                }
            }
        }
        match &self.train_args {
            Some(extra) => args.extend(extra.iter().cloned()),
            None => args.extend(DEFAULT_GATE_ARGS.iter().map(|s| s.to_string())),
        }
        let store = self.model_store.as_deref().unwrap_or(MODEL_MOUNT);
        args.extend(["--model-dir".into(), store.into()]);
        args
    }

    /// The longest pod hostname this run can get; JobSet's DNS names must fit a label.
    fn check_names(&self, rjob: &str) -> Result<(), RenderError> {
        let (name, what) = match &self.naming {
            Naming::Generate(prefix) => (
                format!("{prefix}{}", "x".repeat(GENERATED_SUFFIX_LEN)),
                "the generateName prefix",
            ),
            Naming::Fixed(n) => (n.clone(), "the name"),
        };
        let valid = |s: &str| {
            !s.is_empty()
                && s.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                && !s.starts_with('-')
                && !s.ends_with('-')
        };
        if !valid(&name) {
            return Err(RenderError(format!(
                "{what} {name:?} is not a DNS label (lowercase letters, digits and '-', starting and ending with a letter or digit)"
            )));
        }
        let longest = pod_hostname(&name, rjob, 0, self.world_size - 1);
        if longest.len() > MAX_LABEL {
            return Err(RenderError(format!(
                "{what} makes pod hostnames like {longest:?} ({} characters), over Kubernetes' {MAX_LABEL}: shorten it",
                longest.len()
            )));
        }
        Ok(())
    }

    /// The JobSet object to send.
    pub fn render(&self) -> Result<Value, RenderError> {
        if self.world_size == 0 {
            return Err(RenderError("the world size must be at least 1".into()));
        }
        let mut js: Value = serde_yaml_ng::from_str(BASE_MANIFEST)
            .map_err(|e| RenderError(format!("jobset/base/recommender-train.yaml: {e}")))?;
        let meta = js["metadata"]
            .as_object_mut()
            .ok_or_else(|| RenderError("the base manifest has no metadata".into()))?;
        meta.remove("name");
        match &self.naming {
            Naming::Generate(prefix) => meta.insert("generateName".into(), json!(prefix)),
            Naming::Fixed(name) => meta.insert("name".into(), json!(name)),
        };
        meta.insert("namespace".into(), json!(self.namespace));
        let labels = meta
            .entry("labels")
            .or_insert_with(|| json!({}))
            .as_object_mut()
            .ok_or_else(|| RenderError("metadata.labels is not a map".into()))?;
        labels.insert("kueue.x-k8s.io/queue-name".into(), json!(self.queue));
        if let Some(p) = &self.priority_class {
            labels.insert("kueue.x-k8s.io/priority-class".into(), json!(p));
        }

        let rjobs = js["spec"]["replicatedJobs"]
            .as_array_mut()
            .filter(|r| r.len() == 1)
            .ok_or_else(|| RenderError("the base manifest must have one replicatedJob".into()))?;
        let rjob = &mut rjobs[0];
        let rjob_name = rjob["name"].as_str().unwrap_or_default().to_owned();
        self.check_names(&rjob_name)?;
        let job = &mut rjob["template"]["spec"];
        job["parallelism"] = json!(self.world_size);
        job["completions"] = json!(self.world_size);
        let pod = &mut job["template"]["spec"];
        let container = pod["containers"]
            .as_array_mut()
            .and_then(|c| c.iter_mut().find(|c| c["name"] == "rank"))
            .ok_or_else(|| RenderError("the base manifest has no container \"rank\"".into()))?;
        container["image"] = json!(self.image);
        container["args"] = json!(self.rank_args());
        let env = container["env"]
            .as_array_mut()
            .ok_or_else(|| RenderError("the rank container has no env".into()))?;
        match env.iter_mut().find(|e| e["name"] == "WORLD_SIZE") {
            Some(e) => e["value"] = json!(self.world_size.to_string()),
            None => env.push(json!({"name": "WORLD_SIZE", "value": self.world_size.to_string()})),
        }
        // An input on a claim, or the database Secret, mounted read-only.
        let input_volume = match &self.input {
            Input::Files {
                claim: Some(claim), ..
            } => Some((
                json!({"name": "input", "mountPath": INPUT_MOUNT, "readOnly": true}),
                json!({
                    "name": "input",
                    "persistentVolumeClaim": {"claimName": claim, "readOnly": true}
                }),
            )),
            // Optional: without the Secret a rank fails at once naming the missing file
            // (exit 2), where a required one would leave the gang's pods pending.
            Input::Postgres { secret, .. } => Some((
                json!({"name": "bookstore-db", "mountPath": DB_SECRET_MOUNT, "readOnly": true}),
                json!({
                    "name": "bookstore-db",
                    "secret": {
                        "secretName": secret,
                        "optional": true,
                        "defaultMode": 288,
                        "items": [{"key": "password", "path": "password"}]
                    }
                }),
            )),
            _ => None,
        };
        if let Some((mount, volume)) = input_volume {
            container["volumeMounts"]
                .as_array_mut()
                .ok_or_else(|| RenderError("the rank container has no volumeMounts".into()))?
                .push(mount);
            pod["volumes"]
                .as_array_mut()
                .ok_or_else(|| RenderError("the pod has no volumes".into()))?
                .push(volume);
        }
        if let Input::Postgres { .. } = &self.input {
            job["template"]["metadata"]["labels"]
                .as_object_mut()
                .ok_or_else(|| RenderError("the pod template has no labels".into()))?
                .insert(DB_CLIENT_LABEL.into(), json!("true"));
        }
        if let Some(url) = &self.model_store {
            if !url.contains("://") {
                return Err(RenderError(format!(
                    "--model-dir {url:?}: a submitted run publishes to the model volume, or to an object store named by URL (s3://bucket/prefix, gs://, az://)"
                )));
            }
            let pod = &mut js["spec"]["replicatedJobs"][0]["template"]["spec"]["template"]["spec"];
            let container = pod["containers"]
                .as_array_mut()
                .and_then(|c| c.iter_mut().find(|c| c["name"] == "rank"))
                .ok_or_else(|| RenderError("the base manifest has no container \"rank\"".into()))?;
            container
                .as_object_mut()
                .ok_or_else(|| RenderError("the rank container is not a map".into()))?
                .insert(
                    "envFrom".into(),
                    json!([{"secretRef": {"name": MODEL_STORE_SECRET, "optional": true}}]),
                );
            let unmount = |list: &mut Value, what: &str| -> Result<(), RenderError> {
                let list = list
                    .as_array_mut()
                    .ok_or_else(|| RenderError(format!("the base manifest has no {what}")))?;
                let before = list.len();
                list.retain(|v| v["name"] != "model");
                match list.len() < before {
                    true => Ok(()),
                    false => Err(RenderError(format!(
                        "the base manifest's {what} have no \"model\""
                    ))),
                }
            };
            unmount(&mut container["volumeMounts"], "volumeMounts")?;
            let pod = &mut js["spec"]["replicatedJobs"][0]["template"]["spec"]["template"]["spec"];
            unmount(&mut pod["volumes"], "volumes")?;
        }
        if self.gpu {
            apply_gpu_overlay(&mut js)?;
            js["spec"]["replicatedJobs"][0]["template"]["spec"]["template"]["spec"]["containers"]
                [0]["image"] = json!(self.image);
        }
        Ok(js)
    }
}

/// The arguments of the rank container of a rendered JobSet (what the ranks will parse).
pub fn container_args(jobset: &Value) -> Vec<String> {
    jobset["spec"]["replicatedJobs"][0]["template"]["spec"]["template"]["spec"]["containers"][0]
        ["args"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// Applies the `jobset/gpu/` overlay's JSON patches, as kustomize would.
fn apply_gpu_overlay(js: &mut Value) -> Result<(), RenderError> {
    let bad = |why: String| RenderError(format!("jobset/gpu/kustomization.yaml: {why}"));
    let k: Value = serde_yaml_ng::from_str(GPU_OVERLAY).map_err(|e| bad(e.to_string()))?;
    let patch = k["patches"]
        .as_array()
        .filter(|p| p.len() == 1)
        .and_then(|p| p[0]["patch"].as_str())
        .ok_or_else(|| bad("expected one patch of the JobSet".into()))?;
    let ops: json_patch::Patch = serde_yaml_ng::from_str::<Value>(patch)
        .map_err(|e| bad(e.to_string()))
        .and_then(|v| serde_json::from_value(v).map_err(|e| bad(e.to_string())))?;
    json_patch::patch(js, &ops).map_err(|e| bad(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_defaults_render_the_checked_in_manifest() {
        let mut base: Value = serde_yaml_ng::from_str(BASE_MANIFEST).unwrap();
        let meta = base["metadata"].as_object_mut().unwrap();
        meta.remove("name");
        meta.insert("generateName".into(), json!("recommender-train-"));
        assert_eq!(RunSpec::default().render().unwrap(), base);
    }

    #[test]
    fn world_size_queue_image_and_name_are_filled_in_everywhere() {
        let spec = RunSpec {
            naming: Naming::Fixed("nightly-1".into()),
            world_size: 4,
            queue: "other-lq".into(),
            image: "registry.example/cooc:1.2.3".into(),
            priority_class: Some("recommender-nightly".into()),
            input: Input::Generate {
                size: "l".into(),
                seed: Some(7),
            },
            ..RunSpec::default()
        };
        let js = spec.render().unwrap();
        assert_eq!(js["metadata"]["name"], "nightly-1");
        assert!(js["metadata"].get("generateName").is_none());
        let labels = &js["metadata"]["labels"];
        assert_eq!(labels["kueue.x-k8s.io/queue-name"], "other-lq");
        assert_eq!(
            labels["kueue.x-k8s.io/priority-class"],
            "recommender-nightly"
        );
        let job = &js["spec"]["replicatedJobs"][0]["template"]["spec"];
        assert_eq!(job["parallelism"], 4);
        assert_eq!(job["completions"], 4);
        let c = &job["template"]["spec"]["containers"][0];
        assert_eq!(c["image"], "registry.example/cooc:1.2.3");
        let ws = c["env"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["name"] == "WORLD_SIZE")
            .unwrap();
        assert_eq!(ws["value"], "4");
        let args: Vec<&str> = c["args"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a.as_str().unwrap())
            .collect();
        assert_eq!(
            args,
            [
                "train",
                "--jobset",
                "--generate",
                "l",
                "--seed",
                "7",
                "--holdout",
                "last",
                "--min-avg-top1-cosine",
                "0.05",
                "--model-dir",
                "/workspace/model"
            ]
        );
    }

    #[test]
    fn a_file_input_on_a_claim_is_mounted_read_only() {
        let spec = RunSpec {
            input: Input::Files {
                orders: "orders.csv".into(),
                books: Some("/opt/books.csv".into()),
                claim: Some("bookstore-data".into()),
            },
            train_args: Some(vec!["--top-k".into(), "20".into()]),
            ..RunSpec::default()
        };
        assert_eq!(
            spec.rank_args(),
            [
                "train",
                "--jobset",
                "--orders",
                "/input/orders.csv",
                "--books",
                "/opt/books.csv",
                "--top-k",
                "20",
                "--model-dir",
                "/workspace/model"
            ]
        );
        let js = spec.render().unwrap();
        let pod = &js["spec"]["replicatedJobs"][0]["template"]["spec"]["template"]["spec"];
        let vol = pod["volumes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|v| v["name"] == "input")
            .unwrap();
        assert_eq!(vol["persistentVolumeClaim"]["claimName"], "bookstore-data");
        assert_eq!(vol["persistentVolumeClaim"]["readOnly"], true);
        let mount = pod["containers"][0]["volumeMounts"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["name"] == "input")
            .unwrap();
        assert_eq!(mount["mountPath"], "/input");
        assert_eq!(mount["readOnly"], true);
    }

    #[test]
    fn a_database_input_mounts_the_password_and_labels_the_ranks() {
        let spec = RunSpec {
            input: Input::Postgres {
                url: "host=db dbname=shop".into(),
                secret: "shop-db".into(),
                orders_table: Some("sales.orders".into()),
                books_table: None,
            },
            ..RunSpec::default()
        };
        let args = spec.rank_args();
        assert_eq!(
            args[..8],
            [
                "train",
                "--jobset",
                "--postgres",
                "host=db dbname=shop",
                "--postgres-password-file",
                "/var/run/bookstore-db/password",
                "--orders-table",
                "sales.orders"
            ]
        );
        let js = spec.render().unwrap();
        let tpl = &js["spec"]["replicatedJobs"][0]["template"]["spec"]["template"];
        assert_eq!(tpl["metadata"]["labels"][DB_CLIENT_LABEL], "true");
        let vol = tpl["spec"]["volumes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|v| v["name"] == "bookstore-db")
            .unwrap();
        assert_eq!(vol["secret"]["secretName"], "shop-db");
        assert_eq!(vol["secret"]["items"][0]["key"], "password");
        // Other inputs are not under the database egress policy.
        let plain = RunSpec::default().render().unwrap();
        let tpl = &plain["spec"]["replicatedJobs"][0]["template"]["spec"]["template"];
        assert!(tpl["metadata"]["labels"].get(DB_CLIENT_LABEL).is_none());
    }

    #[test]
    fn names_that_make_hostnames_too_long_or_invalid_are_refused() {
        let named = |n: Naming, world| RunSpec {
            naming: n,
            world_size: world,
            ..RunSpec::default()
        };
        // 52 + 5 + "-rank-0-9" (9) = 66 > 63.
        let long = "a".repeat(51) + "-";
        let e = named(Naming::Generate(long), 10).render().unwrap_err();
        assert!(e.0.contains("over Kubernetes' 63"), "{e}");
        // Just fits: 49 + "-rank-0-1" = 58.
        assert!(named(Naming::Fixed("b".repeat(49)), 2).render().is_ok());
        let e = named(Naming::Fixed("Nightly".into()), 2)
            .render()
            .unwrap_err();
        assert!(e.0.contains("not a DNS label"), "{e}");
        let e = named(Naming::Fixed("x".into()), 0).render().unwrap_err();
        assert!(e.0.contains("at least 1"), "{e}");
    }
}
