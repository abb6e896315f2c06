//! The exit-code classifier: every error type of every layer is visible here. A training
//! run's errors are classified by the pipeline (which tells peers the class of a failure);
//! this adds the errors of the commands above it: reading models and stores (`inspect`,
//! `export`, `models`) and Kubernetes (`submit`, `status`).

use cooc_model::{ArtifactError, StoreError};

use crate::error::Exit;
use crate::k8s::cluster::K8sError;
use crate::k8s::render::RenderError;
use crate::pipeline::agree::run_exit;

/// Maps an error chain to its documented exit code.
pub fn exit_code(err: &anyhow::Error) -> Exit {
    for cause in err.chain() {
        if let Some(e) = cause.downcast_ref::<K8sError>() {
            return e.exit();
        }
        if cause.is::<RenderError>() || cause.is::<ArtifactError>() {
            return Exit::Bad;
        }
        if let Some(e) = cause.downcast_ref::<StoreError>() {
            // An I/O error writing the store is the machine's failure; anything else (no
            // such version, nothing to roll back to, a model that does not validate) is
            // the caller's input.
            return match e {
                StoreError::Io { .. } | StoreError::Remote { .. } => Exit::Failure,
                _ => Exit::Bad,
            };
        }
    }
    run_exit(err)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::GateError;
    use crate::gang::communicator::CommError;

    #[test]
    fn commands_and_runs_share_one_table() {
        let render = RenderError("bad overlay".into());
        assert_eq!(exit_code(&render.into()), Exit::Bad);
        let lost = CommError::Lost {
            rank: 1,
            phase: "counting",
            detail: "gone".into(),
        };
        assert_eq!(exit_code(&lost.into()), Exit::Retriable);
        let gate = GateError {
            failed: vec![crate::error::GateMiss {
                metric: "hit_rate",
                value: 0.1,
                min: 0.2,
            }],
        };
        assert_eq!(exit_code(&gate.into()), Exit::Bad);
        assert_eq!(exit_code(&anyhow::anyhow!("disk full")), Exit::Failure);
    }
}
