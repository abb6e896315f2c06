//! The gang runtime, layered: who each rank is and who its peers are (JobSet naming), the
//! schedules of the collectives (pure), authenticated QUIC links, the collectives over
//! them, the blocking `Communicator` the pipeline sees (QUIC, or NCCL with the `nccl` feature), and the rank's training pipeline.

pub mod comm;
pub mod communicator;
pub mod jobset;
pub mod launch;
pub mod link;
#[cfg(feature = "nccl")]
pub mod nccl;
pub mod schedule;
pub mod train;
pub mod wire;
