//! cooc-serve: the thin HTTP server for cooc models.
//!
//! Reads models through [`cooc_model`] (the artifact's validating reader and the model
//! store) and knows nothing of how they were trained: no rayon, no QUIC, no CUDA, no
//! Kubernetes client, and not the trainer crate (`cargo tree -p cooc-serve`).
//!
//! - [`server`]: the HTTP API (the reference predictor's contract), hot reload, drain.
//! - [`metrics`]: the Prometheus registry the server exports.

#[doc(hidden)]
pub mod fuzz;
pub mod metrics;
pub mod server;
