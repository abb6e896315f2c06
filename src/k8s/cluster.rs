//! The apiserver calls of `cooc submit` and `cooc status`: create (or server-side apply) a
//! JobSet, read it and its Kueue Workload, and follow both until the run ends.
//!
//! Following polls (a GET of the JobSet and a labelled LIST of Workloads per interval)
//! rather than holding watches: two small requests a few seconds apart cost the apiserver
//! nothing, survive apiserver restarts and connection drops without resume logic, and need
//! only `get`/`list` beyond `create`.

use std::time::{Duration, Instant};

use kube::api::{
    Api, ApiResource, DynamicObject, GroupVersionKind, ListParams, Patch, PatchParams, PostParams,
};
use kube::Client;
use serde_json::Value;

use super::state::{phase, JobSetView, Observed, Phase, WorkloadView};

/// The field manager cooc's writes are recorded under.
pub const FIELD_MANAGER: &str = "cooc";
/// JobSet, as JobSet 0.12 serves it.
pub const JOBSET_GVK: (&str, &str, &str) = ("jobset.x-k8s.io", "v1alpha2", "JobSet");
/// Kueue's Workload, as Kueue 0.19 serves it.
pub const WORKLOAD_GVK: (&str, &str, &str) = ("kueue.x-k8s.io", "v1beta2", "Workload");
/// The label Kueue puts on a Workload: the UID of the job it stands for.
pub const JOB_UID_LABEL: &str = "kueue.x-k8s.io/job-uid";
/// The label every cooc training JobSet carries (`cooc status` lists by it).
pub const APP_LABEL: &str = "app.kubernetes.io/name=recommender-train";

fn resource((group, version, kind): (&str, &str, &str)) -> ApiResource {
    ApiResource::from_gvk(&GroupVersionKind::gvk(group, version, kind))
}

/// What went wrong talking to the cluster, with the exit code each case maps to.
#[derive(Debug, thiserror::Error)]
pub enum K8sError {
    /// No kubeconfig and not in a pod (exit 2).
    #[error(
        "no Kubernetes configuration: {0} (set KUBECONFIG, or run in a pod with a service account)"
    )]
    Config(String),
    /// The apiserver answered 4xx: forbidden, invalid, already exists (exit 2).
    #[error("the apiserver refused to {what}: {message} ({code} {reason})")]
    Refused {
        /// What cooc asked for.
        what: String,
        /// The HTTP status.
        code: u16,
        /// The reason given.
        reason: String,
        /// The message given.
        message: String,
    },
    /// No such JobSet (exit 2).
    #[error("JobSet {namespace}/{name} not found")]
    NotFound {
        /// The namespace.
        namespace: String,
        /// The name.
        name: String,
    },
    /// Connection failures, timeouts, 5xx and 429 (exit 75: try again).
    #[error("could not {what}: {detail}")]
    Unreachable {
        /// What cooc asked for.
        what: String,
        /// What went wrong.
        detail: String,
    },
    /// The run ended and failed (exit 1).
    #[error("JobSet {namespace}/{name} failed ({reason}): {message}")]
    RunFailed {
        /// The namespace.
        namespace: String,
        /// The name.
        name: String,
        /// The reason given.
        reason: String,
        /// The message given.
        message: String,
    },
    /// The JobSet disappeared while being followed (exit 1).
    #[error("JobSet {namespace}/{name} was deleted while cooc followed it")]
    Deleted {
        /// The namespace.
        namespace: String,
        /// The name.
        name: String,
    },
    /// `--timeout` passed before the run ended; it goes on in the cluster (exit 75).
    #[error("JobSet {namespace}/{name} is still {phase} after {after} (--timeout); it keeps going in the cluster: cooc status {name}")]
    TimedOut {
        /// The namespace.
        namespace: String,
        /// The name.
        name: String,
        /// The step, e.g. "routing rows".
        phase: &'static str,
        /// How long cooc followed it.
        after: String,
    },
}

impl K8sError {
    /// The documented exit code (see `cooc::error`).
    pub fn exit(&self) -> crate::error::Exit {
        use crate::error::Exit;
        match self {
            K8sError::Config(_) | K8sError::Refused { .. } | K8sError::NotFound { .. } => Exit::Bad,
            K8sError::Unreachable { .. } | K8sError::TimedOut { .. } => Exit::Retriable,
            K8sError::RunFailed { .. } | K8sError::Deleted { .. } => Exit::Failure,
        }
    }

    fn from_kube(what: impl Into<String>, e: kube::Error) -> Self {
        let what = what.into();
        match e {
            kube::Error::Api(s) if (400..500).contains(&s.code) && s.code != 429 => {
                K8sError::Refused {
                    what,
                    code: s.code,
                    reason: s.reason.clone(),
                    message: s.message.clone(),
                }
            }
            other => K8sError::Unreachable {
                what,
                detail: format!("{other}"),
            },
        }
    }
}

fn is_status(e: &kube::Error, code: u16) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == code)
}

/// One namespace of one cluster.
pub struct Cluster {
    client: Client,
    /// The namespace.
    namespace: String,
    /// Reading Workloads was forbidden once: stop asking, judge by the JobSet alone.
    workloads_forbidden: std::sync::atomic::AtomicBool,
}

impl Cluster {
    /// Connects with the kubeconfig (`KUBECONFIG`, `~/.kube/config`) or, inside a pod, the
    /// service account.
    pub async fn connect(namespace: &str) -> Result<Self, K8sError> {
        let config = kube::Config::infer()
            .await
            .map_err(|e| K8sError::Config(e.to_string()))?;
        let client = Client::try_from(config).map_err(|e| K8sError::Config(e.to_string()))?;
        Ok(Self::with_client(client, namespace))
    }

    /// Uses a client built elsewhere (tests give one that talks to a fake apiserver).
    pub fn with_client(client: Client, namespace: &str) -> Self {
        Cluster {
            client,
            namespace: namespace.to_owned(),
            workloads_forbidden: Default::default(),
        }
    }

    fn jobsets(&self) -> (Api<DynamicObject>, ApiResource) {
        let ar = resource(JOBSET_GVK);
        (
            Api::namespaced_with(self.client.clone(), &self.namespace, &ar),
            ar,
        )
    }

    /// Sends a rendered JobSet: `create` when it has a `generateName` (server-side apply
    /// needs a name, and a generated one is what keeps runs apart), server-side apply under
    /// the field manager "cooc" when it has a fixed name. Returns the JobSet as stored.
    pub async fn submit(&self, jobset: &Value) -> Result<JobSetView, K8sError> {
        let (api, ar) = self.jobsets();
        let mut obj: DynamicObject = serde_json::from_value(jobset.clone())
            .map_err(|e| K8sError::Config(format!("the rendered JobSet is not an object: {e}")))?;
        obj.types = Some(kube::api::TypeMeta {
            api_version: ar.api_version.clone(),
            kind: ar.kind.clone(),
        });
        let stored = match obj.metadata.name.clone() {
            None => {
                let pp = PostParams {
                    field_manager: Some(FIELD_MANAGER.into()),
                    ..Default::default()
                };
                api.create(&pp, &obj).await.map_err(|e| {
                    K8sError::from_kube(format!("create a JobSet in {}", self.namespace), e)
                })?
            }
            Some(name) => api
                .patch(
                    &name,
                    &PatchParams::apply(FIELD_MANAGER),
                    &Patch::Apply(&obj),
                )
                .await
                .map_err(|e| {
                    K8sError::from_kube(format!("apply JobSet {}/{name}", self.namespace), e)
                })?,
        };
        let v = serde_json::to_value(&stored).map_err(|e| K8sError::Unreachable {
            what: "read the created JobSet".into(),
            detail: e.to_string(),
        })?;
        Ok(JobSetView::from_object(&v))
    }

    /// One look at a run: its JobSet and, where Kueue made one, its Workload.
    pub async fn observe(&self, name: &str) -> Result<Observed, K8sError> {
        let (api, _) = self.jobsets();
        let js = match api.get(name).await {
            Ok(js) => js,
            Err(e) if is_status(&e, 404) => {
                return Err(K8sError::NotFound {
                    namespace: self.namespace.clone(),
                    name: name.to_owned(),
                })
            }
            Err(e) => {
                return Err(K8sError::from_kube(
                    format!("read JobSet {}/{name}", self.namespace),
                    e,
                ))
            }
        };
        let v = serde_json::to_value(&js).unwrap_or_default();
        let jobset = JobSetView::from_object(&v);
        let workload = self.workload_of(&jobset.uid).await?;
        Ok(Observed { jobset, workload })
    }

    async fn workload_of(&self, uid: &str) -> Result<Option<WorkloadView>, K8sError> {
        use std::sync::atomic::Ordering;
        if uid.is_empty() || self.workloads_forbidden.load(Ordering::Relaxed) {
            return Ok(None);
        }
        let ar = resource(WORKLOAD_GVK);
        let api: Api<DynamicObject> =
            Api::namespaced_with(self.client.clone(), &self.namespace, &ar);
        let lp = ListParams::default().labels(&format!("{JOB_UID_LABEL}={uid}"));
        match api.list(&lp).await {
            Ok(list) => Ok(list
                .items
                .first()
                .map(|w| WorkloadView::from_object(&serde_json::to_value(w).unwrap_or_default()))),
            Err(e) if is_status(&e, 403) || is_status(&e, 404) => {
                tracing::warn!(
                    "cannot read Kueue Workloads in {} ({e}); following the JobSet alone",
                    self.namespace
                );
                self.workloads_forbidden.store(true, Ordering::Relaxed);
                Ok(None)
            }
            Err(e) => Err(K8sError::from_kube(
                format!("list Workloads in {}", self.namespace),
                e,
            )),
        }
    }

    /// The cooc training JobSets of the namespace, oldest first.
    pub async fn runs(&self) -> Result<Vec<Observed>, K8sError> {
        let (api, _) = self.jobsets();
        let list = api
            .list(&ListParams::default().labels(APP_LABEL))
            .await
            .map_err(|e| K8sError::from_kube(format!("list JobSets in {}", self.namespace), e))?;
        let mut out = Vec::new();
        for js in list.items {
            let jobset = JobSetView::from_object(&serde_json::to_value(&js).unwrap_or_default());
            let workload = self.workload_of(&jobset.uid).await?;
            out.push(Observed { jobset, workload });
        }
        Ok(out)
    }

    /// Follows a run until it ends or `timeout` passes, calling `on_change` with every new
    /// phase. A transient apiserver failure is retried until the deadline.
    pub async fn follow(
        &self,
        name: &str,
        poll: Duration,
        timeout: Option<Duration>,
        mut on_change: impl FnMut(&Observed, &Phase),
    ) -> Result<Phase, K8sError> {
        let start = Instant::now();
        let mut last: Option<Phase> = None;
        loop {
            match self.observe(name).await {
                Ok(o) => {
                    let p = phase(&o);
                    if last.as_ref() != Some(&p) {
                        on_change(&o, &p);
                    }
                    if let Phase::Failed { reason, message } = &p {
                        return Err(K8sError::RunFailed {
                            namespace: self.namespace.clone(),
                            name: name.to_owned(),
                            reason: reason.clone(),
                            message: message.clone(),
                        });
                    }
                    if p.is_terminal() {
                        return Ok(p);
                    }
                    last = Some(p);
                }
                Err(K8sError::NotFound { namespace, name }) if last.is_some() => {
                    return Err(K8sError::Deleted { namespace, name })
                }
                Err(e @ K8sError::Unreachable { .. }) => {
                    tracing::warn!("{e}; retrying");
                }
                Err(e) => return Err(e),
            }
            if let Some(t) = timeout {
                if start.elapsed() >= t {
                    return Err(K8sError::TimedOut {
                        namespace: self.namespace.clone(),
                        name: name.to_owned(),
                        phase: last.as_ref().map_or("unobserved", Phase::name),
                        after: humantime::format_duration(t).to_string(),
                    });
                }
            }
            tokio::time::sleep(poll).await;
        }
    }
}
