//! The compute and communication backends a run asks for, and what this build can do.
//!
//! This build computes on CPUs (rayon) and combines ranks over QUIC. `--backend cuda` and
//! `--comm nccl` name the GPU path; a build without it refuses them with
//! [`BackendUnavailable`] (exit code 2) before any work starts, and `--backend auto` picks
//! the CPU.

/// Where the co-occurrence counts are computed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Backend {
    /// CUDA when this build has it and a device is present, else CPU.
    Auto,
    Cpu,
    Cuda,
}

/// How the ranks of a gang combine their partial results.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Comm {
    Quic,
    Nccl,
}

/// A backend this build does not have.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{flag}: this cooc build has no {what} support; use {instead}")]
pub struct BackendUnavailable {
    pub flag: &'static str,
    pub what: &'static str,
    pub instead: &'static str,
}

/// Checks a request against this build; the backend that will run.
pub fn resolve(backend: Backend, comm: Comm) -> Result<Backend, BackendUnavailable> {
    if comm == Comm::Nccl {
        return Err(BackendUnavailable {
            flag: "--comm nccl",
            what: "NCCL",
            instead: "--comm quic",
        });
    }
    match backend {
        Backend::Auto | Backend::Cpu => Ok(Backend::Cpu),
        Backend::Cuda => Err(BackendUnavailable {
            flag: "--backend cuda",
            what: "CUDA",
            instead: "--backend cpu (or auto)",
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_build_runs_on_cpu_and_refuses_the_gpu_path_by_name() {
        assert_eq!(resolve(Backend::Auto, Comm::Quic), Ok(Backend::Cpu));
        assert_eq!(resolve(Backend::Cpu, Comm::Quic), Ok(Backend::Cpu));
        let e = resolve(Backend::Cuda, Comm::Quic).unwrap_err();
        assert!(e
            .to_string()
            .starts_with("--backend cuda: this cooc build has no CUDA"));
        let e = resolve(Backend::Cpu, Comm::Nccl).unwrap_err();
        assert!(e.to_string().contains("no NCCL support"));
    }
}
