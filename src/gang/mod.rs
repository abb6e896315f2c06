//! The gang runtime's pure layers: who each rank is and who its peers are (JobSet naming),
//! and the schedules of the collectives. The transport (QUIC) and the rank driver build on
//! these; nothing here opens a socket.

pub mod jobset;
pub mod schedule;
