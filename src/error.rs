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
        if cause.is::<InputError>() || cause.is::<ConfigError>() || cause.is::<GateError>() {
            return Exit::Bad;
        }
    }
    Exit::Failure
}
