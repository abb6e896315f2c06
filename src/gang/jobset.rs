//! Who am I and who are my peers, from the environment a JobSet pod gets.
//!
//! JobSet injects no environment variables of its own: the manifests pass its pod labels and
//! annotations (`jobset.sigs.k8s.io/*`) through the downward API, the Job controller sets
//! `JOB_COMPLETION_INDEX` in Indexed Jobs, and `WORLD_SIZE` is set explicitly (no label
//! carries parallelism). From those, one pure function derives this pod's rank and every
//! peer's DNS name, `<jobset>-<replicatedJob>-<jobIndex>-<podIndex>.<subdomain>`.
//!
//! Owns no I/O beyond reading variables through the caller's lookup function; knows nothing
//! of the transport.

use std::fmt;

/// Environment variables the JobSet manifests set (documented in `jobset/`).
pub mod env {
    /// Set by the Job controller in Indexed Jobs: the pod's index within its Job.
    pub const COMPLETION_INDEX: &str = "JOB_COMPLETION_INDEX";
    /// The gang size: pods in the replicated Job x Jobs.
    pub const WORLD_SIZE: &str = "WORLD_SIZE";
    /// Downward API: `jobset.sigs.k8s.io/jobset-name`.
    pub const JOBSET_NAME: &str = "JOBSET_NAME";
    /// Downward API: `jobset.sigs.k8s.io/jobset-uid` (the job identity in the handshake).
    pub const JOBSET_UID: &str = "JOBSET_UID";
    /// Downward API: `jobset.sigs.k8s.io/replicatedjob-name`.
    pub const REPLICATED_JOB: &str = "JOBSET_REPLICATED_JOB";
    /// Downward API: `jobset.sigs.k8s.io/job-index` (index of this Job in its replicatedJob).
    pub const JOB_INDEX: &str = "JOBSET_JOB_INDEX";
    /// Downward API: `jobset.sigs.k8s.io/job-global-index`.
    pub const JOB_GLOBAL_INDEX: &str = "JOBSET_JOB_GLOBAL_INDEX";
    /// Downward API: `jobset.sigs.k8s.io/global-replicas` (Jobs in the whole JobSet).
    pub const GLOBAL_REPLICAS: &str = "JOBSET_GLOBAL_REPLICAS";
    /// Downward API: `jobset.sigs.k8s.io/restart-attempt`.
    pub const RESTART_ATTEMPT: &str = "JOBSET_RESTART_ATTEMPT";
    /// Optional: the headless Service name, when `spec.network.subdomain` is set.
    pub const SUBDOMAIN: &str = "JOBSET_SUBDOMAIN";
}

/// Kubernetes limits a DNS label (and a pod hostname) to 63 characters.
pub const MAX_LABEL: usize = 63;

/// This pod's place in the gang.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobSetIdentity {
    /// The JobSet's name.
    pub jobset: String,
    /// The JobSet's UID: the job every rank must share.
    pub uid: String,
    /// The replicated job this pod belongs to.
    pub replicated_job: String,
    /// Headless Service name; defaults to the JobSet name.
    pub subdomain: String,
    /// Pods per Job (parallelism = completions): `world / jobs`.
    pub pods_per_job: u32,
    /// Jobs in the JobSet (`global-replicas`).
    pub jobs: u32,
    /// Ranks in the gang.
    pub world: u32,
    /// This pod's rank.
    pub rank: u32,
    /// How often the JobSet restarted the gang.
    pub restart_attempt: u32,
}

/// A missing or inconsistent variable, named.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdentityError(pub String);

impl fmt::Display for IdentityError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for IdentityError {}

impl JobSetIdentity {
    /// Reads the identity through `var` (e.g. `|k| std::env::var(k).ok()`).
    pub fn from_env(var: impl Fn(&str) -> Option<String>) -> Result<JobSetIdentity, IdentityError> {
        let text = |k: &str| -> Result<String, IdentityError> {
            var(k)
                .map(|v| v.trim().to_owned())
                .filter(|v| !v.is_empty())
                .ok_or_else(|| {
                    IdentityError(format!("{k} is not set (see jobset/ for the pod template)"))
                })
        };
        let num = |k: &str| -> Result<u32, IdentityError> {
            let v = text(k)?;
            v.parse()
                .map_err(|_| IdentityError(format!("{k}={v:?} is not a non-negative integer")))
        };
        let jobset = text(env::JOBSET_NAME)?;
        let world = num(env::WORLD_SIZE)?;
        let jobs = num(env::GLOBAL_REPLICAS)?;
        let completion = num(env::COMPLETION_INDEX)?;
        let global_job = num(env::JOB_GLOBAL_INDEX)?;
        if world == 0 || jobs == 0 {
            return Err(IdentityError(format!(
                "{}={world} and {}={jobs} must be at least 1",
                env::WORLD_SIZE,
                env::GLOBAL_REPLICAS
            )));
        }
        if world % jobs != 0 {
            return Err(IdentityError(format!(
                "{}={world} is not a multiple of {}={jobs}: every Job must run the same number of pods",
                env::WORLD_SIZE,
                env::GLOBAL_REPLICAS
            )));
        }
        let pods_per_job = world / jobs;
        if completion >= pods_per_job || global_job >= jobs {
            return Err(IdentityError(format!(
                "{}={completion}, {}={global_job} fall outside {jobs} Job(s) of {pods_per_job} pod(s)",
                env::COMPLETION_INDEX,
                env::JOB_GLOBAL_INDEX
            )));
        }
        let id = JobSetIdentity {
            uid: text(env::JOBSET_UID)?,
            replicated_job: text(env::REPLICATED_JOB)?,
            subdomain: var(env::SUBDOMAIN)
                .map(|s| s.trim().to_owned())
                .filter(|s| !s.is_empty())
                .unwrap_or_else(|| jobset.clone()),
            jobset,
            pods_per_job,
            jobs,
            world,
            rank: global_job * pods_per_job + completion,
            restart_attempt: match var(env::RESTART_ATTEMPT) {
                None => 0,
                Some(_) => num(env::RESTART_ATTEMPT)?,
            },
        };
        // Every name this gang will use must be a valid hostname.
        for r in [0, id.world - 1] {
            id.hostname(r)?;
        }
        Ok(id)
    }

    /// The pod hostname of `rank` (one replicatedJob: rank = jobIndex * P + podIndex).
    pub fn hostname(&self, rank: u32) -> Result<String, IdentityError> {
        let name = pod_hostname(
            &self.jobset,
            &self.replicated_job,
            rank / self.pods_per_job,
            rank % self.pods_per_job,
        );
        if name.len() > MAX_LABEL {
            return Err(IdentityError(format!(
                "pod hostname {name:?} is {} characters, over Kubernetes' {MAX_LABEL}: shorten the JobSet or replicatedJob name",
                name.len()
            )));
        }
        Ok(name)
    }

    /// `host:port` of every rank, in rank order.
    pub fn peers(&self, port: u16) -> Result<Vec<String>, IdentityError> {
        (0..self.world)
            .map(|r| Ok(format!("{}.{}:{port}", self.hostname(r)?, self.subdomain)))
            .collect()
    }
}

/// `<jobset>-<replicatedJob>-<jobIndex>-<podIndex>`: the hostname JobSet gives a pod.
pub fn pod_hostname(jobset: &str, replicated_job: &str, job_index: u32, pod_index: u32) -> String {
    format!("{jobset}-{replicated_job}-{job_index}-{pod_index}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn vars(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let m: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k| m.get(k).cloned()
    }

    fn base(
        completion: &str,
        global_job: &str,
        world: &str,
        jobs: &str,
    ) -> Vec<(&'static str, String)> {
        vec![
            (env::JOBSET_NAME, "recommender-train".into()),
            (env::JOBSET_UID, "uid-1".into()),
            (env::REPLICATED_JOB, "rank".into()),
            (env::COMPLETION_INDEX, completion.into()),
            (env::JOB_GLOBAL_INDEX, global_job.into()),
            (env::WORLD_SIZE, world.into()),
            (env::GLOBAL_REPLICAS, jobs.into()),
            (env::RESTART_ATTEMPT, "2".into()),
        ]
    }

    fn id(pairs: Vec<(&'static str, String)>) -> Result<JobSetIdentity, IdentityError> {
        let p: Vec<(&str, &str)> = pairs.iter().map(|(k, v)| (*k, v.as_str())).collect();
        JobSetIdentity::from_env(vars(&p))
    }

    #[test]
    fn one_job_of_w_pods() {
        let me = id(base("1", "0", "2", "1")).unwrap();
        assert_eq!((me.rank, me.world, me.restart_attempt), (1, 2, 2));
        assert_eq!(
            me.peers(7077).unwrap(),
            vec![
                "recommender-train-rank-0-0.recommender-train:7077",
                "recommender-train-rank-0-1.recommender-train:7077"
            ]
        );
    }

    #[test]
    fn several_jobs_of_p_pods() {
        // 3 Jobs of 2 pods: rank = jobGlobalIndex * 2 + completionIndex.
        for (job, pod, rank) in [(0, 0, 0), (0, 1, 1), (1, 0, 2), (2, 1, 5)] {
            let me = id(base(&pod.to_string(), &job.to_string(), "6", "3")).unwrap();
            assert_eq!(me.rank, rank);
            assert_eq!(
                me.hostname(rank).unwrap(),
                format!("recommender-train-rank-{job}-{pod}")
            );
        }
        let me = id(base("0", "0", "6", "3")).unwrap();
        assert_eq!(
            me.peers(1).unwrap()[5],
            "recommender-train-rank-2-1.recommender-train:1"
        );
    }

    #[test]
    fn a_subdomain_override_is_used() {
        let mut v = base("0", "0", "1", "1");
        v.push((env::SUBDOMAIN, "gang".into()));
        assert_eq!(
            id(v).unwrap().peers(9).unwrap(),
            vec!["recommender-train-rank-0-0.gang:9"]
        );
    }

    #[test]
    fn bad_environments_name_the_variable() {
        let missing: Vec<_> = base("0", "0", "2", "1")
            .into_iter()
            .filter(|(k, _)| *k != env::WORLD_SIZE)
            .collect();
        assert!(id(missing).unwrap_err().0.contains("WORLD_SIZE is not set"));
        assert!(id(base("0", "0", "3", "2"))
            .unwrap_err()
            .0
            .contains("not a multiple"));
        assert!(id(base("2", "0", "2", "1"))
            .unwrap_err()
            .0
            .contains("fall outside"));
        assert!(id(base("x", "0", "2", "1"))
            .unwrap_err()
            .0
            .contains("JOB_COMPLETION_INDEX=\"x\""));
        let mut bad_restart = base("0", "0", "2", "1");
        bad_restart[7].1 = "-1".into();
        assert!(id(bad_restart)
            .unwrap_err()
            .0
            .contains("JOBSET_RESTART_ATTEMPT"));
        let mut long = base("0", "0", "2", "1");
        long[0].1 = "a".repeat(60);
        assert!(id(long).unwrap_err().0.contains("over Kubernetes' 63"));
    }
}
