//! Where a submitted run stands: the JobSet's status and its Kueue Workload's conditions
//! folded into one [`Phase`] (pending -> admitted -> running -> finished). Pure code; the
//! apiserver calls are in [`super::cluster`].

use std::fmt;

use serde::Deserialize;

/// A status condition, as JobSet and Kueue write them.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Condition {
    /// The condition's type.
    #[serde(rename = "type")]
    pub type_: String,
    /// `True`, `False` or `Unknown`.
    pub status: String,
    /// A machine-readable reason.
    #[serde(default)]
    pub reason: String,
    /// A human-readable message.
    #[serde(default)]
    pub message: String,
}

fn find<'a>(conditions: &'a [Condition], type_: &str) -> Option<&'a Condition> {
    conditions.iter().find(|c| c.type_ == type_)
}

fn is_true<'a>(conditions: &'a [Condition], type_: &str) -> Option<&'a Condition> {
    find(conditions, type_).filter(|c| c.status == "True")
}

/// The pods of one replicatedJob, as `JobSet.status.replicatedJobsStatus` counts Jobs.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", default)]
pub struct ReplicatedJobStatus {
    /// The name.
    pub name: String,
    /// Ready pods.
    pub ready: u32,
    /// Succeeded pods.
    pub succeeded: u32,
    /// Failed pods.
    pub failed: u32,
    /// Active pods.
    pub active: u32,
    /// Suspended pods.
    pub suspended: u32,
}

/// The parts of a JobSet that say how the run goes.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct JobSetView {
    /// The name.
    pub name: String,
    /// The UID.
    pub uid: String,
    /// `spec.suspend`: Kueue keeps the JobSet suspended until the gang is admitted.
    pub suspended: bool,
    /// Pods in the gang: replicas x parallelism, summed over the replicatedJobs.
    pub pods: u32,
    /// Its status conditions.
    pub conditions: Vec<Condition>,
    /// Restarts of the gang so far.
    pub restarts: u32,
    /// Per replicated job, its pods.
    pub jobs: Vec<ReplicatedJobStatus>,
}

/// The JobSet's status as the apiserver reports it.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", default)]
pub struct JobSetStatus {
    /// Its status conditions.
    pub conditions: Vec<Condition>,
    /// Restarts of the gang so far.
    pub restarts: u32,
    /// Per replicated job, its pods.
    pub replicated_jobs_status: Vec<ReplicatedJobStatus>,
}

impl JobSetView {
    /// Reads a JobSet object (any apiVersion that has these fields).
    pub fn from_object(v: &serde_json::Value) -> Self {
        let status: JobSetStatus = serde_json::from_value(v["status"].clone()).unwrap_or_default();
        JobSetView {
            name: v["metadata"]["name"].as_str().unwrap_or_default().into(),
            uid: v["metadata"]["uid"].as_str().unwrap_or_default().into(),
            suspended: v["spec"]["suspend"].as_bool().unwrap_or(false),
            pods: v["spec"]["replicatedJobs"]
                .as_array()
                .map(|rjs| {
                    rjs.iter()
                        .map(|rj| {
                            let n = |x: &serde_json::Value| x.as_u64().unwrap_or(1) as u32;
                            n(&rj["replicas"]) * n(&rj["template"]["spec"]["parallelism"])
                        })
                        .sum()
                })
                .unwrap_or(0),
            conditions: status.conditions,
            restarts: status.restarts,
            jobs: status.replicated_jobs_status,
        }
    }
}

/// The parts of a Kueue Workload that say whether the gang is admitted.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct WorkloadView {
    /// The name.
    pub name: String,
    /// Its status conditions.
    pub conditions: Vec<Condition>,
    /// `status.admission.clusterQueue` once quota is reserved.
    pub cluster_queue: Option<String>,
}

impl WorkloadView {
    /// The view of a Workload object.
    pub fn from_object(v: &serde_json::Value) -> Self {
        WorkloadView {
            name: v["metadata"]["name"].as_str().unwrap_or_default().into(),
            conditions: serde_json::from_value(v["status"]["conditions"].clone())
                .unwrap_or_default(),
            cluster_queue: v["status"]["admission"]["clusterQueue"]
                .as_str()
                .map(str::to_owned),
        }
    }
}

/// One look at a run.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Observed {
    /// The run's JobSet.
    pub jobset: JobSetView,
    /// `None` until Kueue has created the Workload (or when it may not be read).
    pub workload: Option<WorkloadView>,
}

/// Where a run stands.
#[derive(Debug, Clone, PartialEq)]
pub enum Phase {
    /// Created; Kueue has not made a Workload of it yet.
    Created,
    /// Queued: no quota reserved yet (Kueue's reason, e.g. insufficient quota).
    Pending {
        /// The reason given.
        reason: String,
    },
    /// Quota reserved, admission checks outstanding.
    QuotaReserved {
        /// The ClusterQueue that reserved the quota.
        cluster_queue: String,
    },
    /// The whole gang is admitted; its pods are being created or started.
    Admitted {
        /// The ClusterQueue that reserved the quota.
        cluster_queue: String,
        /// Ready pods.
        ready: u32,
        /// Pods in the gang.
        total: u32,
    },
    /// Every rank's pod is ready.
    Running {
        /// Ready pods.
        ready: u32,
        /// Restarts of the gang so far.
        restarts: u32,
    },
    /// Evicted (preempted, pods not ready in time); Kueue requeues it.
    Evicted {
        /// The reason given.
        reason: String,
        /// The message given.
        message: String,
    },
    /// Every rank finished and the model was written.
    Succeeded,
    /// The run failed.
    Failed {
        /// The reason given.
        reason: String,
        /// The message given.
        message: String,
    },
}

impl Phase {
    /// Whether the run has ended.
    pub fn is_terminal(&self) -> bool {
        matches!(self, Phase::Succeeded | Phase::Failed { .. })
    }

    /// A short name, as `cooc status` lists it.
    pub fn name(&self) -> &'static str {
        match self {
            Phase::Created => "Created",
            Phase::Pending { .. } => "Pending",
            Phase::QuotaReserved { .. } => "QuotaReserved",
            Phase::Admitted { .. } => "Admitted",
            Phase::Running { .. } => "Running",
            Phase::Evicted { .. } => "Evicted",
            Phase::Succeeded => "Succeeded",
            Phase::Failed { .. } => "Failed",
        }
    }
}

impl fmt::Display for Phase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Phase::Created => write!(f, "Created: waiting for Kueue to create the Workload"),
            Phase::Pending { reason } if reason.is_empty() => write!(f, "Pending in the queue"),
            Phase::Pending { reason } => write!(f, "Pending: {reason}"),
            Phase::QuotaReserved { cluster_queue } => write!(
                f,
                "QuotaReserved in {cluster_queue}: waiting for admission checks"
            ),
            Phase::Admitted {
                cluster_queue,
                ready,
                total,
            } => write!(
                f,
                "Admitted by {cluster_queue}: the whole gang, {ready}/{total} pods ready"
            ),
            Phase::Running { ready, restarts: 0 } => write!(f, "Running: {ready} ranks"),
            Phase::Running { ready, restarts } => {
                write!(f, "Running: {ready} ranks (gang restarted {restarts}x)")
            }
            Phase::Evicted { reason, message } => {
                write!(f, "Evicted ({reason}): {message}; Kueue requeues it")
            }
            Phase::Succeeded => write!(f, "Succeeded: rank 0 wrote the model"),
            Phase::Failed { reason, message } => write!(f, "Failed ({reason}): {message}"),
        }
    }
}

/// Folds one observation into a phase. The JobSet's own terminal conditions win; before
/// that, the Workload says whether the gang is queued or admitted, and the JobSet's pod
/// counts whether it runs.
pub fn phase(o: &Observed) -> Phase {
    let js = &o.jobset;
    let world_size = js.pods;
    if is_true(&js.conditions, "Completed").is_some() {
        return Phase::Succeeded;
    }
    if let Some(c) = is_true(&js.conditions, "Failed") {
        return Phase::Failed {
            reason: c.reason.clone(),
            message: c.message.clone(),
        };
    }
    let ready: u32 = js.jobs.iter().map(|j| j.ready).sum();
    let Some(wl) = &o.workload else {
        // Without a Workload (not yet created, or not readable) the JobSet still tells:
        // Kueue unsuspends it exactly when the gang is admitted.
        return if js.suspended {
            Phase::Created
        } else if ready >= world_size {
            Phase::Running {
                ready,
                restarts: js.restarts,
            }
        } else {
            Phase::Admitted {
                cluster_queue: "the ClusterQueue".into(),
                ready,
                total: world_size,
            }
        };
    };
    if let Some(c) = is_true(&wl.conditions, "Finished") {
        // The JobSet's condition follows shortly; report the Workload's verdict meanwhile
        // where it states one (other reasons wait for the JobSet).
        match c.reason.as_str() {
            "Succeeded" => return Phase::Succeeded,
            "Failed" => {
                return Phase::Failed {
                    reason: c.reason.clone(),
                    message: c.message.clone(),
                }
            }
            _ => {}
        }
    }
    let admitted = is_true(&wl.conditions, "Admitted").is_some();
    if !admitted {
        if let Some(c) = is_true(&wl.conditions, "Evicted") {
            return Phase::Evicted {
                reason: c.reason.clone(),
                message: c.message.clone(),
            };
        }
    }
    let cq = wl
        .cluster_queue
        .clone()
        .unwrap_or_else(|| "the ClusterQueue".into());
    if admitted {
        if !js.suspended && ready >= world_size {
            return Phase::Running {
                ready,
                restarts: js.restarts,
            };
        }
        return Phase::Admitted {
            cluster_queue: cq,
            ready,
            total: world_size,
        };
    }
    if is_true(&wl.conditions, "QuotaReserved").is_some() {
        return Phase::QuotaReserved { cluster_queue: cq };
    }
    let reason = find(&wl.conditions, "QuotaReserved")
        .map(|c| c.message.clone())
        .unwrap_or_default();
    Phase::Pending { reason }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cond(type_: &str, status: bool, reason: &str, message: &str) -> Condition {
        Condition {
            type_: type_.into(),
            status: if status { "True" } else { "False" }.into(),
            reason: reason.into(),
            message: message.into(),
        }
    }

    fn observed(
        suspended: bool,
        ready: u32,
        js: Vec<Condition>,
        wl: Option<Vec<Condition>>,
    ) -> Observed {
        Observed {
            jobset: JobSetView {
                name: "recommender-train-x7k2p".into(),
                suspended,
                pods: 2,
                conditions: js,
                jobs: vec![ReplicatedJobStatus {
                    name: "rank".into(),
                    ready,
                    ..Default::default()
                }],
                ..Default::default()
            },
            workload: wl.map(|conditions| WorkloadView {
                name: "jobset-recommender-train-x7k2p-1a2b3".into(),
                conditions,
                cluster_queue: Some("bookstore-ml-cq".into()),
            }),
        }
    }

    #[test]
    fn a_run_goes_through_the_phases_in_order() {
        let steps = [
            observed(true, 0, vec![], None),
            observed(
                true,
                0,
                vec![],
                Some(vec![cond(
                    "QuotaReserved",
                    false,
                    "Pending",
                    "couldn't assign flavors to pod set rank: insufficient quota for cpu",
                )]),
            ),
            observed(
                true,
                0,
                vec![],
                Some(vec![cond("QuotaReserved", true, "QuotaReserved", "")]),
            ),
            observed(
                false,
                1,
                vec![],
                Some(vec![
                    cond("QuotaReserved", true, "QuotaReserved", ""),
                    cond("Admitted", true, "Admitted", ""),
                ]),
            ),
            observed(
                false,
                2,
                vec![],
                Some(vec![cond("Admitted", true, "Admitted", "")]),
            ),
            observed(
                false,
                0,
                vec![cond(
                    "Completed",
                    true,
                    "AllJobsCompleted",
                    "jobset completed successfully",
                )],
                Some(vec![cond("Finished", true, "Succeeded", "")]),
            ),
        ];
        let names: Vec<&str> = steps.iter().map(|o| phase(o).name()).collect();
        assert_eq!(
            names,
            [
                "Created",
                "Pending",
                "QuotaReserved",
                "Admitted",
                "Running",
                "Succeeded"
            ]
        );
        assert_eq!(
            phase(&steps[1]).to_string(),
            "Pending: couldn't assign flavors to pod set rank: insufficient quota for cpu"
        );
        assert_eq!(
            phase(&steps[3]).to_string(),
            "Admitted by bookstore-ml-cq: the whole gang, 1/2 pods ready"
        );
        assert!(phase(&steps[5]).is_terminal());
        assert!(!phase(&steps[4]).is_terminal());
    }

    #[test]
    fn failures_carry_the_jobset_reason() {
        let o = observed(
            false,
            0,
            vec![cond(
                "Failed",
                true,
                "FailedJobs",
                "jobset failed due to failure policy rule bad-input-fails-at-once",
            )],
            Some(vec![cond("Admitted", true, "", "")]),
        );
        let p = phase(&o);
        assert!(p.is_terminal());
        assert_eq!(
            p.to_string(),
            "Failed (FailedJobs): jobset failed due to failure policy rule bad-input-fails-at-once"
        );
        // A Workload that finished badly before the JobSet says so is a failure too.
        let o = observed(
            false,
            0,
            vec![],
            Some(vec![cond("Finished", true, "Failed", "the JobSet failed")]),
        );
        assert_eq!(phase(&o).name(), "Failed");
    }

    #[test]
    fn eviction_is_reported_and_not_terminal() {
        let o = observed(
            true,
            0,
            vec![],
            Some(vec![
                cond("QuotaReserved", false, "Pending", ""),
                cond(
                    "Evicted",
                    true,
                    "PodsReadyTimeout",
                    "Exceeded the PodsReady timeout",
                ),
            ]),
        );
        let p = phase(&o);
        assert_eq!(p.name(), "Evicted");
        assert!(!p.is_terminal());
        assert!(p.to_string().contains("PodsReadyTimeout"));
    }

    #[test]
    fn without_a_readable_workload_the_suspend_flag_tells_admission() {
        assert_eq!(phase(&observed(true, 0, vec![], None)), Phase::Created);
        assert_eq!(phase(&observed(false, 1, vec![], None)).name(), "Admitted");
        assert_eq!(
            phase(&observed(false, 2, vec![], None)),
            Phase::Running {
                ready: 2,
                restarts: 0
            }
        );
    }

    #[test]
    fn objects_are_read_from_the_api_shapes() {
        let js = serde_json::json!({
            "metadata": {"name": "recommender-train-x7k2p", "uid": "u-1"},
            "spec": {"suspend": false, "replicatedJobs": [
                {"name": "rank", "replicas": 1, "template": {"spec": {"parallelism": 3}}}]},
            "status": {
                "restarts": 1,
                "conditions": [{"type": "Completed", "status": "True", "reason": "AllJobsCompleted",
                                 "message": "done", "lastTransitionTime": "2026-11-29T00:00:00Z"}],
                "replicatedJobsStatus": [{"name": "rank", "ready": 0, "succeeded": 1, "failed": 0,
                                          "active": 0, "suspended": 0}]
            }
        });
        let v = JobSetView::from_object(&js);
        assert_eq!(v.uid, "u-1");
        assert_eq!(v.restarts, 1);
        assert_eq!(v.pods, 3);
        assert_eq!(v.jobs[0].succeeded, 1);
        let wl = serde_json::json!({
            "metadata": {"name": "w"},
            "status": {"admission": {"clusterQueue": "bookstore-ml-cq"},
                       "conditions": [{"type": "Admitted", "status": "True", "reason": "Admitted",
                                       "message": "The workload is admitted"}]}
        });
        let w = WorkloadView::from_object(&wl);
        assert_eq!(w.cluster_queue.as_deref(), Some("bookstore-ml-cq"));
        let o = Observed {
            jobset: v,
            workload: Some(w),
        };
        assert_eq!(phase(&o), Phase::Succeeded);
    }
}
