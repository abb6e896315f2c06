//! The integration tests of `cooc`, as one test binary (one link, not one per area), one
//! module per area. The container tests, which need Docker and a built image, are the
//! separate `containers` binary.

mod common;

mod basket;
mod cli;
mod decay;
mod gang;
mod gpu;
mod hardening;
mod kernel_props;
mod layers;
mod manifests;
mod newcomer;
mod postgres;
mod s3;
mod submit;
mod tune;
