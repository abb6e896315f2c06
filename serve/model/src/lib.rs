//! cooc-model: what a trained cooc model is, on disk and in memory.
//!
//! The contract between the trainer (`cooc`) and the server (`cooc-serve`): both depend on
//! this crate and neither on the other. It is kept small on purpose: serde, bytemuck,
//! crc32fast and tempfile, no async runtime, no HTTP, no thread pool, no network
//! (`cargo tree -p cooc-model -e normal`). The `object-store` feature, which both binaries
//! turn on, adds the store's object-storage backend (the `object_store` client and a
//! one-thread runtime of its own, behind the same blocking API).
//!
//! - [`keys`]: item keys as a model stores them.
//! - [`meta`]: the similarity measure, the metadata that defines a model, its evaluation
//!   and provenance.
//! - [`artifact`]: the binary model file, its writer and its validating reader
//!   (layout in `serve/ARTIFACT.md`).
//! - [`basket`]: recommendations for a set of seed items, with exclusions and popularity
//!   backfill (the server's `:recommend` and `cooc recommend`).
//! - [`store`]: `MODEL_DIR/<version>/model.cooc` plus the atomic `CURRENT` pointer and the
//!   optional `CANARY` pointer, in a directory or on object storage (`s3://`, `gs://`,
//!   `az://`).

pub mod artifact;
pub mod basket;
pub mod keys;
pub mod meta;
pub mod store;

pub use artifact::{ArtifactError, Model, ModelParts};
pub use keys::{Key, Keys};
pub use meta::{Evaluation, ModelMeta, Provenance, Similarity};
pub use store::{Canary, ModelStore, StoreError};
