//! cooc-serve: the model artifact format, the model store and the thin HTTP server.
//!
//! This crate is the contract between training and serving, kept free of anything heavy:
//! no rayon, no QUIC, no CUDA, no Kubernetes client (`cargo tree -p cooc-serve`).
//!
//! - [`artifact`]: the binary model file, its writer and its validating mmap reader.
//! - [`store`]: `MODEL_DIR/<version>/model.cooc` plus the atomic `CURRENT` pointer.
//! - [`server`]: the HTTP API (the reference predictor's contract), hot reload, drain.
//! - [`metrics`]: the Prometheus registry the server exports.

pub mod artifact;
pub mod metrics;
pub mod server;
pub mod store;
