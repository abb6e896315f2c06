//! The gang runtime's layers so far: who each rank is and who its peers are (JobSet
//! naming), the schedules of the collectives (pure), and authenticated QUIC links between
//! ranks. The collectives over those links and the rank driver build on these.

pub mod comm;
pub mod jobset;
pub mod link;
pub mod schedule;
