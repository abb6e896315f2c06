//! How a gang stops as one: every rank says whether its step failed and why, and a rank
//! whose peer failed stops with that peer's reason and class of exit code. Also the
//! classification of a run's errors into exit codes, which these messages carry.

use super::codec::Failure;
use crate::backend::BackendUnavailable;
use crate::error::{ConfigError, Exit, GateError, InputError, SourceError};
use crate::gang::communicator::{CommError, Communicator};
use crate::gang::jobset::IdentityError;
use crate::gang::link::LinkError;
use crate::gang::wire::{self, WireError};
use crate::input::{KeyKind, KeyMode, ParseStop, RawChunks};
use crate::postgres::PgError;

/// Another rank of the gang failed and said why; this rank stops with the same class of
/// exit code.
#[derive(Debug, thiserror::Error)]
#[error("rank {rank} failed: {message}")]
pub struct PeerFailed {
    /// The rank that failed.
    pub rank: u32,
    /// Its error, as it printed it.
    pub message: String,
    /// The exit code that rank reported (2 for bad input, 1 for an internal failure).
    pub code: u8,
}

impl Failure {
    /// The failure `err` is.
    pub(crate) fn of(err: &anyhow::Error) -> Failure {
        Failure {
            code: run_exit(err) as u8,
            message: format!("{err:#}"),
        }
    }

    /// The error a rank raises when rank `rank` reported this failure.
    pub(crate) fn into_peer_failed(self, rank: u32) -> PeerFailed {
        PeerFailed {
            rank,
            message: self.message,
            code: self.code,
        }
    }
}

/// The exit code of an error a training run can raise (input, configuration, gates,
/// backends, peers, links); [`Exit::Failure`] for anything else. The binary's classifier
/// adds the errors of the commands above the pipeline.
pub fn run_exit(err: &anyhow::Error) -> Exit {
    for cause in err.chain() {
        if cause.is::<InputError>()
            || cause.is::<ConfigError>()
            || cause.is::<GateError>()
            || cause.is::<BackendUnavailable>()
            || cause.is::<LinkError>()
            || cause.is::<IdentityError>()
        {
            return Exit::Bad;
        }
        if let Some(e) = cause.downcast_ref::<PgError>() {
            return if e.retriable {
                Exit::Retriable
            } else {
                Exit::Bad
            };
        }
        if let Some(e) = cause.downcast_ref::<SourceError>() {
            return if e.retriable {
                Exit::Retriable
            } else {
                Exit::Bad
            };
        }
        // Credentials the model store refuses: a rerun with the same ones fails the same way.
        if let Some(cooc_model::StoreError::Denied { .. }) = cause.downcast_ref() {
            return Exit::Bad;
        }
        if let Some(p) = cause.downcast_ref::<PeerFailed>() {
            return match p.code {
                2 => Exit::Bad,
                75 => Exit::Retriable,
                _ => Exit::Failure,
            };
        }
        if let Some(e) = cause.downcast_ref::<CommError>() {
            return if e.retriable() {
                Exit::Retriable
            } else {
                Exit::Bad
            };
        }
    }
    Exit::Failure
}

/// Stops every rank when any rank failed: this rank's own error first, else the first
/// failed peer's, so that all ranks exit with the same class of code.
pub(crate) fn agree<T>(
    comm: &dyn Communicator,
    phase: &'static str,
    local: anyhow::Result<T>,
) -> anyhow::Result<T> {
    let status: Option<Failure> = local.as_ref().err().map(Failure::of);
    let all = comm.all_gather(phase, &wire::encode(&status))?;
    let value = local?;
    for (q, bytes) in all.iter().enumerate() {
        let status: Option<Failure> = wire::decode_from(bytes, q as u32, phase)?;
        if let Some(f) = status {
            return Err(f.into_peer_failed(q as u32).into());
        }
    }
    Ok(value)
}

/// Parses a share until every rank's share parses under the same key mode (a rank that
/// meets quotes or non-integer keys makes every rank reparse), or some rank's input is bad.
pub(crate) fn parse_agreed(
    comm: &dyn Communicator,
    keys: KeyKind,
    input: &str,
    parse: impl Fn(KeyMode) -> Result<RawChunks, ParseStop>,
) -> anyhow::Result<RawChunks> {
    const PHASE: &str = "reading the input";
    let mut mode = KeyMode {
        str_item: keys == KeyKind::String,
        ..KeyMode::default()
    };
    loop {
        let result = parse(mode);
        let stop = result.as_ref().err().cloned();
        let all = comm.all_gather(PHASE, &wire::encode(&stop))?;
        let stops = all
            .iter()
            .enumerate()
            .map(|(q, bytes)| wire::decode_from::<Option<ParseStop>>(bytes, q as u32, PHASE))
            .collect::<Result<Vec<_>, WireError>>()?;
        match &stop {
            Some(ParseStop::Bad(msg)) => return Err(InputError::Parsed(msg.clone()).into()),
            Some(ParseStop::Source { message, retriable }) => {
                return Err(SourceError {
                    message: message.clone(),
                    retriable: *retriable,
                }
                .into())
            }
            _ => {}
        }
        if let Some((q, msg)) = stops.iter().enumerate().find_map(|(q, s)| match s {
            Some(ParseStop::Bad(m)) => Some((q, (m.clone(), Exit::Bad))),
            Some(ParseStop::Source { message, retriable }) => {
                let code = if *retriable {
                    Exit::Retriable
                } else {
                    Exit::Bad
                };
                Some((q, (message.clone(), code)))
            }
            _ => None,
        }) {
            let (message, code) = msg;
            return Err(PeerFailed {
                rank: q as u32,
                message,
                code: code as u8,
            }
            .into());
        }
        if keys == KeyKind::Int
            && stops
                .iter()
                .flatten()
                .any(|s| *s == ParseStop::NotInt { basket: false })
        {
            return Err(InputError::File {
                path: input.into(),
                msg: "--keys int: a book_id is not a canonical integer (digits, no sign, no leading zero); use --keys string or auto".into(),
            }
            .into());
        }
        let before = mode;
        for s in stops.iter().flatten() {
            mode.learn(s);
        }
        if mode == before {
            return result.map_err(|s| anyhow::anyhow!("reading the input: {s:?}"));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use anyhow::Context;

    #[test]
    fn run_errors_follow_the_documented_table() {
        let code = |e: anyhow::Error| run_exit(&e);
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
        let other_job = CommError::Link(LinkError::Mismatch {
            peer: "127.0.0.1:1".parse().unwrap(),
            detail: "job".into(),
        });
        assert_eq!(code(other_job.into()), Exit::Bad);
        let gate = GateError {
            failed: vec![crate::error::GateMiss {
                metric: "hit_rate",
                value: 0.1,
                min: 0.2,
            }],
        };
        assert_eq!(
            code(Err::<(), _>(gate).context("gate").unwrap_err()),
            Exit::Bad
        );
        for (peer_code, exit) in [(2, Exit::Bad), (75, Exit::Retriable), (1, Exit::Failure)] {
            let p = Failure {
                code: peer_code,
                message: "x".into(),
            }
            .into_peer_failed(1);
            assert_eq!(code(p.into()), exit);
        }
        assert_eq!(code(anyhow::anyhow!("disk full")), Exit::Failure);
    }
}
