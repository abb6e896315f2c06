//! cooc: item co-occurrence recommenders ("customers who bought X also bought Y"), trained
//! fast on one machine or as a gang of ranks, served by `cooc-serve`.
//!
//! Layers, each importing only from the layers below it (checked by `tests/layers.rs`):
//!
//! 1. Model ([`cooc_model`], its own crate): keys, metadata, the artifact, the store.
//! 2. Leaf errors ([`error`]) and the core, which never sees tokio, quinn, cudarc or kube:
//!    [`gen`] (the seeded Bookstore dataset), [`input`] (orders CSV and basket files into
//!    (basket, item) pairs with dense, key-ordered ids), [`csr`] (basket rows and their
//!    transpose), [`kernel`] (co-occurrence counting, similarity, deterministic top-K),
//!    [`eval`] (hold-out of the last order, HitRate/Recall/NDCG/coverage against
//!    popularity), [`progress`] (phase timings).
//! 3. Compute backends: [`backend`] (what this build counts with, the `Engine`) and `gpu`
//!    (feature `cuda`: tiled CUDA counting).
//! 4. The gang transport, which moves bytes and knows no books: [`gang`] (collective
//!    schedules, message framing, JobSet naming, authenticated QUIC links, the mesh, the
//!    `Communicator` trait with `Solo`, QUIC and NCCL implementations).
//! 5. The run: [`plan`] (a validated training run), [`pipeline`] (the one training
//!    pipeline, read -> split -> count -> top-K -> evaluate -> gate -> publish, for one
//!    process and every rank alike), [`launch`] (one process, local ranks, or a gang
//!    member).
//! 6. Tools and commands: [`inspect`] (summaries and CSV export), [`demo`], [`k8s`]
//!    (`cooc submit` / `cooc status`), [`cli`] (arguments, commands, printing, exit codes).
//!
//! The binary (`src/main.rs`) parses and adds the commands that serve HTTP, the only part
//! of the trainer that reaches `cooc-serve`.

pub mod backend;
pub mod cli;
pub mod csr;
pub mod demo;
pub mod error;
pub mod eval;
#[doc(hidden)]
pub mod fuzz;
pub mod gang;
pub mod gen;
#[cfg(feature = "cuda")]
pub mod gpu;
pub mod input;
pub mod inspect;
pub mod k8s;
pub mod kernel;
pub mod launch;
pub mod pipeline;
pub mod plan;
pub mod postgres;
pub mod progress;
