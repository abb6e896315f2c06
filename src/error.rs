//! Typed errors of the trainer and the exit codes they map to.
//!
//! Exit codes are an API: the JobSet failurePolicy keys on them.
//!
//! | code | meaning |
//! |------|---------|
//! | 0    | success |
//! | 1    | internal or unexpected failure (I/O on the output, a bug) |
//! | 2    | bad input, bad configuration, or a failed quality gate: retrying will not help |
//! | 75   | retriable: a peer was lost or never arrived (EX_TEMPFAIL) |
//!
//! `cooc submit` and `cooc status` use the same table: 0 the run succeeded, 1 it failed (or
//! was deleted), 2 bad arguments or the apiserver refused (forbidden, invalid), 75 the
//! apiserver was unreachable or `--timeout` passed while the run goes on.

use std::path::PathBuf;

/// Process exit codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    Ok = 0,
    Failure = 1,
    Bad = 2,
    Retriable = 75,
}

/// Bad training input: always names the file, and the line where there is one.
#[derive(Debug, thiserror::Error)]
pub enum InputError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}:{line}: {msg}")]
    Row {
        path: PathBuf,
        line: u64,
        msg: String,
    },
    #[error("{path}: {msg}")]
    File { path: PathBuf, msg: String },
    /// Already formatted as `file:line: reason` (by another rank, say).
    #[error("{0}")]
    Parsed(String),
}

/// Another rank of the gang failed and said why; this rank stops with the same class of
/// exit code.
#[derive(Debug, thiserror::Error)]
#[error("rank {rank} failed: {message}")]
pub struct PeerFailed {
    pub rank: u32,
    pub message: String,
    /// The exit code that rank reported (2 for bad input, 1 for an internal failure).
    pub code: u8,
}

/// A configuration that cannot run.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(pub String);

/// The trained model did not pass a quality gate; nothing was registered.
#[derive(Debug, thiserror::Error)]
#[error(
    "quality gate failed: {metric} = {value:.6} is below the required {min}; no model registered"
)]
pub struct GateError {
    pub metric: &'static str,
    pub value: f64,
    pub min: f64,
}

/// Maps an error chain to its exit code.
pub fn exit_code(err: &anyhow::Error) -> Exit {
    for cause in err.chain() {
        if cause.is::<InputError>()
            || cause.is::<ConfigError>()
            || cause.is::<GateError>()
            || cause.is::<crate::backend::BackendUnavailable>()
        {
            return Exit::Bad;
        }
        if let Some(p) = cause.downcast_ref::<PeerFailed>() {
            return match p.code {
                2 => Exit::Bad,
                75 => Exit::Retriable,
                _ => Exit::Failure,
            };
        }
        if let Some(e) = cause.downcast_ref::<crate::gang::comm::CommError>() {
            return if e.retriable() {
                Exit::Retriable
            } else {
                Exit::Bad
            };
        }
        if let Some(e) = cause.downcast_ref::<crate::k8s::cluster::K8sError>() {
            return e.exit();
        }
        if cause.is::<crate::k8s::render::RenderError>() {
            return Exit::Bad;
        }
        if cause.is::<crate::gang::link::LinkError>()
            || cause.is::<crate::gang::jobset::IdentityError>()
        {
            return Exit::Bad;
        }
    }
    Exit::Failure
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gang::comm::CommError;
    use anyhow::Context;

    #[test]
    fn exit_codes_follow_the_documented_table() {
        let code = |e: anyhow::Error| exit_code(&e);
        let lost = CommError::Lost {
            rank: 2,
            phase: "counting",
            detail: "timed out".into(),
        };
        assert_eq!(
            code(anyhow::Error::from(lost).context("training")),
            Exit::Retriable
        );
        let late = CommError::Missing {
            missing: vec![1],
            secs: 120,
        };
        assert_eq!(code(late.into()), Exit::Retriable);
        let other_job = CommError::Link(crate::gang::link::LinkError::Mismatch {
            peer: "127.0.0.1:1".parse().unwrap(),
            detail: "job".into(),
        });
        assert_eq!(code(other_job.into()), Exit::Bad);
        let gate = GateError {
            metric: "hit_rate",
            value: 0.1,
            min: 0.2,
        };
        assert_eq!(
            code(Err::<(), _>(gate).context("gate").unwrap_err()),
            Exit::Bad
        );
        assert_eq!(code(anyhow::anyhow!("disk full")), Exit::Failure);
    }
}
