//! cooc: item co-occurrence recommenders ("customers who bought X also bought Y"), trained
//! fast on one machine or as a gang of ranks, served by `cooc-serve`.
//!
//! Module map, from input to artifact:
//! - [`gen`]: the seeded synthetic Bookstore dataset (`cooc gen`).
//! - [`input`]: orders CSV / basket files -> (basket, item) pairs with dense, key-ordered ids.
//! - [`csr`]: basket -> items rows and their transpose.
//! - [`kernel`]: co-occurrence counting, cosine/Jaccard, deterministic top-K.
//! - [`eval`]: hold-out of the last order, HitRate/Recall/NDCG/coverage vs. popularity.
//! - [`train`]: the validated plan and the single-process pipeline, quality gates, publish.
//! - [`inspect`]: summaries and CSV export of a model.
//! - [`demo`]: generate, train, register and serve in one command.
//! - [`gang`]: the multi-rank runtime's pure layers: JobSet identity and peer names,
//!   collective schedules.
//! - [`k8s`]: `cooc submit` / `cooc status`: render the JobSet, apply it, follow Kueue.
//! - [`backend`]: `--backend` / `--comm`: what this build computes and combines with, and
//!   the `Engine` that counts on the chosen backend.
//! - `gpu` (feature `cuda`): tiled CUDA counting; `gang::nccl` (feature `nccl`): the NCCL
//!   communicator.
//! - [`error`]: typed errors and the documented exit codes.
//!
//! The artifact format and the model store live in [`cooc_serve`], which the thin server
//! shares without pulling in anything of the trainer.

pub mod backend;
pub mod csr;
pub mod demo;
pub mod error;
pub mod eval;
pub mod gang;
pub mod gen;
#[cfg(feature = "cuda")]
pub mod gpu;
pub mod input;
pub mod inspect;
pub mod k8s;
pub mod kernel;
pub mod progress;
pub mod train;

pub use cooc_serve::{artifact, store};
