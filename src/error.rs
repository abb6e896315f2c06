//! The leaf error types of the trainer and the exit codes they stand for. Every layer may
//! use them; they use nothing of the crate. Which error maps to which code is decided
//! above: a training run's errors by [`crate::pipeline::agree::run_exit`], every command's
//! by [`crate::cli::exit_code`].
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
    /// Success.
    Ok = 0,
    /// An internal or unexpected failure.
    Failure = 1,
    /// Bad input, bad configuration or a failed gate: retrying will not help.
    Bad = 2,
    /// A lost or late peer: restarting the gang may help (EX_TEMPFAIL).
    Retriable = 75,
}

/// Bad training input: always names the file, and the line where there is one.
#[derive(Debug, thiserror::Error)]
pub enum InputError {
    /// The file could not be read.
    #[error("{path}: {error}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        error: std::io::Error,
    },
    /// A bad row.
    #[error("{path}:{line}: {msg}")]
    Row {
        /// The file.
        path: PathBuf,
        /// 1-based line number.
        line: u64,
        /// What is wrong with the row.
        msg: String,
    },
    /// A bad file (no header, wrong kind of file).
    #[error("{path}: {msg}")]
    File {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        msg: String,
    },
    /// Already formatted as `file:line: reason` (by another rank, say).
    #[error("{0}")]
    Parsed(String),
}

/// A data source (a database) failed, as already said by [`crate::input::PgError`] (here
/// or on another rank).
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct SourceError {
    /// What failed, naming the server.
    pub message: String,
    /// A rerun may succeed (exit 75); else the input or credentials are wrong (exit 2).
    pub retriable: bool,
}

/// A configuration that cannot run.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(pub String);

/// The trained model did not pass its quality gates (every failing one is named);
/// nothing was registered.
#[derive(Debug, thiserror::Error)]
#[error("quality gate failed: {}; no model registered", list(.failed))]
pub struct GateError {
    /// Each gate the model missed, in the order the flags are documented.
    pub failed: Vec<GateMiss>,
}

/// One quality gate a model missed.
#[derive(Debug, Clone, PartialEq)]
pub struct GateMiss {
    /// The metric's name, as in the gate's flag.
    pub metric: &'static str,
    /// The model's value.
    pub value: f64,
    /// The gate.
    pub min: f64,
}

fn list(failed: &[GateMiss]) -> String {
    failed
        .iter()
        .map(|m| {
            format!(
                "{} = {:.6} is below the required {}",
                m.metric, m.value, m.min
            )
        })
        .collect::<Vec<_>>()
        .join(", and ")
}
