//! The gang transport: moves bytes between ranks and knows no books, orders or models.
//!
//! - [`schedule`]: the collectives' schedules and the balanced split of work (pure).
//! - [`wire`]: message framing (raw arrays, bincode values) with named decode errors.
//! - [`jobset`]: a rank's identity and its peers' names in a JobSet pod.
//! - [`link`]: authenticated QUIC links (TLS 1.3, then an HMAC bound to the session).
//! - [`mesh`]: rendezvous into a full mesh of links, and the collectives over it (async).
//! - [`communicator`]: the blocking `Communicator` trait the pipeline sees, its errors, and
//!   `Solo`, the gang of one.
//! - [`quic`]: `QuicComm`, the communicator over the mesh.
//! - `nccl` (feature `nccl`): `NcclComm`, collectives over NCCL joined through QUIC.

pub mod communicator;
pub mod jobset;
pub mod link;
pub mod mesh;
#[cfg(feature = "nccl")]
pub mod nccl;
pub mod quic;
pub mod schedule;
pub mod wire;
