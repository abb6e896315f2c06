//! The compute and communication backends a run asks for, what this build can do, and the
//! [`Engine`] that counts and ranks on the chosen one.
//!
//! CPUs (rayon) and QUIC are always built. `--backend cuda` needs the `cuda` feature and
//! `--comm nccl` the `nccl` feature; a build without them refuses these flags with
//! [`BackendUnavailable`] (exit code 2) before any work starts. `--backend auto` picks CUDA
//! when the build has it and a device is visible, else the CPU. Every backend produces the
//! same artifact bytes: the GPU counts, the host scores and selects with the CPU kernel's
//! code ([`crate::kernel::select_top_k`]).

use std::ops::Range;

use crate::kernel::{CoocIndex, Scoring, TopK};

/// Where the co-occurrence counts should be computed, as asked (`--backend`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum BackendRequest {
    /// CUDA when this build has it and a device is present, else CPU.
    Auto,
    /// The CPU kernel (rayon).
    Cpu,
    /// The CUDA kernel (feature `cuda`).
    Cuda,
}

/// Where the co-occurrence counts are computed, resolved against this build and machine
/// by [`resolve`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// The CPU kernel (rayon).
    Cpu,
    /// The CUDA kernel (feature `cuda`).
    Cuda,
}

/// How the ranks of a gang combine their partial results.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Comm {
    /// Authenticated QUIC links (always built).
    Quic,
    /// NCCL between GPUs (feature `nccl`).
    Nccl,
}

/// A backend this build does not have.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{flag}: this cooc build has no {what} support; use {instead}")]
pub struct BackendUnavailable {
    /// The flag as given, e.g. `--backend cuda`.
    pub flag: &'static str,
    /// What the build lacks.
    pub what: &'static str,
    /// What to ask for instead.
    pub instead: &'static str,
}

/// Decayed counts have no GPU kernel: a typed refusal (exit 2) naming the flags.
#[cfg(feature = "cuda")]
fn decay_on_cpu() -> anyhow::Error {
    crate::error::ConfigError(
        "--decay-half-life counts on the CPU only: run it with --backend cpu".into(),
    )
    .into()
}

/// Whether this build has the CUDA backend (`--features cuda`).
pub const HAS_CUDA: bool = cfg!(feature = "cuda");
/// Whether this build has the NCCL communicator (`--features nccl`).
pub const HAS_NCCL: bool = cfg!(feature = "nccl");

/// The refusal of `--comm nccl` by a build without the `nccl` feature.
pub const NCCL_UNAVAILABLE: BackendUnavailable = BackendUnavailable {
    flag: "--comm nccl",
    what: "NCCL",
    instead: "--comm quic",
};

/// The refusal of `--backend cuda` by a build without the `cuda` feature.
pub const CUDA_UNAVAILABLE: BackendUnavailable = BackendUnavailable {
    flag: "--backend cuda",
    what: "CUDA",
    instead: "--backend cpu (or auto)",
};

/// Checks a request against this build; the backend that will run. `Auto` asks the driver
/// whether a device is visible.
pub fn resolve(backend: BackendRequest, comm: Comm) -> Result<Backend, BackendUnavailable> {
    resolve_with(backend, comm, gpu_present)
}

/// [`resolve`] with the device probe given (tests).
pub fn resolve_with(
    backend: BackendRequest,
    comm: Comm,
    gpu_present: impl FnOnce() -> bool,
) -> Result<Backend, BackendUnavailable> {
    if comm == Comm::Nccl && !HAS_NCCL {
        return Err(NCCL_UNAVAILABLE);
    }
    match backend {
        BackendRequest::Cpu => Ok(Backend::Cpu),
        BackendRequest::Cuda if HAS_CUDA => Ok(Backend::Cuda),
        BackendRequest::Cuda => Err(CUDA_UNAVAILABLE),
        BackendRequest::Auto if HAS_CUDA && gpu_present() => Ok(Backend::Cuda),
        BackendRequest::Auto => Ok(Backend::Cpu),
    }
}

/// Whether a CUDA device is usable here (always false without the `cuda` feature).
pub fn gpu_present() -> bool {
    #[cfg(feature = "cuda")]
    return crate::gpu::present();
    #[cfg(not(feature = "cuda"))]
    false
}

/// Counts and ranks item rows on one backend.
pub enum Engine {
    /// The CPU kernel.
    Cpu,
    /// A CUDA device.
    #[cfg(feature = "cuda")]
    Cuda(crate::gpu::Device),
}

impl Engine {
    /// Opens the backend [`resolve`] chose; `ordinal` picks the GPU (modulo the visible ones).
    pub fn open(backend: Backend, ordinal: usize) -> anyhow::Result<Engine> {
        match backend {
            #[cfg(feature = "cuda")]
            Backend::Cuda => {
                let dev = crate::gpu::Device::open(ordinal).map_err(|e| {
                    if e.is_setup() {
                        anyhow::Error::new(crate::error::ConfigError(format!(
                            "--backend cuda: {e}"
                        )))
                    } else {
                        anyhow::Error::new(e)
                    }
                })?;
                tracing::info!(device = dev.name(), "counting on CUDA");
                Ok(Engine::Cuda(dev))
            }
            #[cfg(not(feature = "cuda"))]
            Backend::Cuda => Err(CUDA_UNAVAILABLE.into()),
            Backend::Cpu => {
                let _ = ordinal;
                Ok(Engine::Cpu)
            }
        }
    }

    /// Top-`k` neighbours of the items in `rows`: the same bytes on every backend.
    pub fn top_k(
        &self,
        index: &CoocIndex,
        sim: Scoring,
        k: usize,
        rows: Range<usize>,
    ) -> anyhow::Result<TopK> {
        match self {
            Engine::Cpu => Ok(index.top_k(sim, k, rows)),
            #[cfg(feature = "cuda")]
            Engine::Cuda(_) if index.weighted().is_some() => Err(decay_on_cpu()),
            #[cfg(feature = "cuda")]
            Engine::Cuda(dev) => Ok(dev.top_k(index, sim, k, rows)?),
        }
    }

    /// [`Engine::top_k`] under every scoring of `sims`, in that order. The CPU counts each
    /// row once for all of them; the GPU counts once per scoring (the same bytes).
    pub fn top_k_many(
        &self,
        index: &CoocIndex,
        sims: &[Scoring],
        k: usize,
        rows: Range<usize>,
    ) -> anyhow::Result<Vec<TopK>> {
        match self {
            Engine::Cpu => Ok(index.top_k_many(sims, k, rows)),
            #[cfg(feature = "cuda")]
            Engine::Cuda(_) if index.weighted().is_some() => Err(decay_on_cpu()),
            #[cfg(feature = "cuda")]
            Engine::Cuda(_) => sims
                .iter()
                .map(|&sim| self.top_k(index, sim, k, rows.clone()))
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_resolve_against_this_build() {
        assert_eq!(
            resolve_with(BackendRequest::Cpu, Comm::Quic, || true),
            Ok(Backend::Cpu)
        );
        assert_eq!(
            resolve_with(BackendRequest::Auto, Comm::Quic, || false),
            Ok(Backend::Cpu)
        );
        let auto_with_gpu = resolve_with(BackendRequest::Auto, Comm::Quic, || true);
        let cuda = resolve_with(BackendRequest::Cuda, Comm::Quic, || false);
        let nccl = resolve_with(BackendRequest::Cpu, Comm::Nccl, || false);
        if HAS_CUDA {
            assert_eq!(auto_with_gpu, Ok(Backend::Cuda));
            assert_eq!(cuda, Ok(Backend::Cuda));
        } else {
            assert_eq!(auto_with_gpu, Ok(Backend::Cpu));
            let e = cuda.unwrap_err();
            assert!(e
                .to_string()
                .starts_with("--backend cuda: this cooc build has no CUDA"));
        }
        if HAS_NCCL {
            assert_eq!(nccl, Ok(Backend::Cpu));
        } else {
            assert!(nccl.unwrap_err().to_string().contains("no NCCL support"));
        }
    }

    #[test]
    fn the_cpu_engine_is_the_kernel() {
        let b = crate::csr::Csr {
            offsets: vec![0, 2, 5, 6],
            values: vec![0, 1, 0, 1, 2, 2],
        };
        let idx = CoocIndex::build(&b, 3);
        let e = Engine::open(Backend::Cpu, 0).unwrap();
        let cosine = Scoring::new(cooc_model::Similarity::Cosine, 3);
        assert_eq!(
            e.top_k(&idx, cosine, 2, 0..3).unwrap(),
            idx.top_k(cosine, 2, 0..3)
        );
    }
}
