//! The `Communicator` the training pipeline talks to: blocking collectives, picked once at
//! start, with the errors every implementation reports and the traffic it counts.
//! [`Solo`] is the one-rank gang (no network); [`super::quic::QuicComm`] and (feature
//! `nccl`) `super::nccl::NcclComm` implement it over the network.
//!
//! Knows bytes and ranks only: never books, orders or models.

use super::link::LinkError;

/// Why a collective (or joining the gang) failed.
#[derive(Debug, thiserror::Error)]
pub enum CommError {
    /// Ranks that did not arrive before the rendezvous deadline.
    #[error("rendezvous: rank(s) {missing:?} did not arrive within {secs} s")]
    Missing {
        /// The ranks that never arrived.
        missing: Vec<u32>,
        /// The rendezvous timeout, in seconds.
        secs: u64,
    },
    /// A peer was lost during a collective.
    #[error("lost rank {rank} during {phase}: {detail}")]
    Lost {
        /// The rank.
        rank: u32,
        /// The step, e.g. "routing rows".
        phase: &'static str,
        /// What went wrong.
        detail: String,
    },
    /// A peer sent a message this rank cannot use (a bug, or ranks of different builds).
    #[error("rank {rank} sent a malformed message during {phase}: {detail}")]
    Malformed {
        /// The rank.
        rank: u32,
        /// The step, e.g. "routing rows".
        phase: &'static str,
        /// What is wrong with it.
        detail: String,
    },
    /// A link failed to form (authentication, another job).
    #[error(transparent)]
    Link(#[from] LinkError),
    /// A collective on the NCCL communicator failed (`--comm nccl`).
    #[error("NCCL during {phase}: {detail}")]
    Nccl {
        /// The step, e.g. "routing rows".
        phase: &'static str,
        /// What went wrong.
        detail: String,
        /// A lost peer or a transport failure, rather than a misuse or a bad setup.
        retriable: bool,
    },
}

impl CommError {
    /// Whether restarting the gang may help (a lost or late peer) rather than not (a peer
    /// of another job, bad configuration).
    pub fn retriable(&self) -> bool {
        match self {
            CommError::Missing { .. } | CommError::Lost { .. } => true,
            CommError::Nccl { retriable, .. } => *retriable,
            CommError::Link(_) | CommError::Malformed { .. } => false,
        }
    }
}

/// Payload bytes moved by one rank.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Traffic {
    /// Bytes sent.
    pub sent: u64,
    /// Bytes received.
    pub received: u64,
}

/// Collectives over a gang of `world()` ranks. Every rank calls the same collectives in
/// the same order; `phase` names the step in errors ("lost rank 2 during routing rows").
pub trait Communicator {
    /// This rank.
    fn rank(&self) -> u32;
    /// Ranks in the gang.
    fn world(&self) -> u32;
    /// Returns once every rank has called it.
    fn barrier(&self, phase: &'static str) -> Result<(), CommError> {
        self.all_gather(phase, &[]).map(|_| ())
    }
    /// Every rank's `mine`, in rank order.
    fn all_gather(&self, phase: &'static str, mine: &[u8]) -> Result<Vec<Vec<u8>>, CommError>;
    /// `out[q]` to rank `q`; what each rank sent here, in rank order.
    fn all_to_all(&self, phase: &'static str, out: Vec<Vec<u8>>)
        -> Result<Vec<Vec<u8>>, CommError>;
    /// Element-wise sum over ranks, in place.
    fn all_reduce_sum(&self, phase: &'static str, v: &mut [u64]) -> Result<(), CommError>;
    /// Rank 0 gets every rank's `mine` in rank order; the others `None`.
    fn gather(&self, phase: &'static str, mine: Vec<u8>)
        -> Result<Option<Vec<Vec<u8>>>, CommError>;
    /// `root`'s `data` on every rank.
    fn broadcast(
        &self,
        phase: &'static str,
        root: u32,
        data: Vec<u8>,
    ) -> Result<Vec<u8>, CommError>;
    /// Payload bytes moved so far.
    fn traffic(&self) -> Traffic;
    /// Refuses, from now on, any incoming message of more than `max` bytes (reported as
    /// [`CommError::Malformed`] before it is held), so that a peer cannot make this rank
    /// allocate without limit. A gang of one receives nothing and ignores it.
    fn bound_messages(&self, max: usize) {
        let _ = max;
    }
}

/// A gang of one: every collective is the identity.
pub struct Solo;

impl Communicator for Solo {
    fn rank(&self) -> u32 {
        0
    }
    fn world(&self) -> u32 {
        1
    }
    fn all_gather(&self, _: &'static str, mine: &[u8]) -> Result<Vec<Vec<u8>>, CommError> {
        Ok(vec![mine.to_vec()])
    }
    fn all_to_all(&self, _: &'static str, out: Vec<Vec<u8>>) -> Result<Vec<Vec<u8>>, CommError> {
        Ok(out)
    }
    fn all_reduce_sum(&self, _: &'static str, _: &mut [u64]) -> Result<(), CommError> {
        Ok(())
    }
    fn gather(&self, _: &'static str, mine: Vec<u8>) -> Result<Option<Vec<Vec<u8>>>, CommError> {
        Ok(Some(vec![mine]))
    }
    fn broadcast(&self, _: &'static str, _: u32, data: Vec<u8>) -> Result<Vec<u8>, CommError> {
        Ok(data)
    }
    fn traffic(&self) -> Traffic {
        Traffic::default()
    }
}
