//! Kubernetes: `cooc submit` and `cooc status`.
//!
//! - [`render`]: the training JobSet of one run, from the checked-in manifest.
//! - [`state`]: the run's phase from its JobSet and Kueue Workload (pure).
//! - [`cluster`]: the apiserver calls (the kube crate): create or apply, observe, follow.

pub mod cluster;
pub mod render;
pub mod state;
