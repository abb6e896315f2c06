//! [`QuicComm`]: the [`Communicator`] over a QUIC [`Mesh`]. It drives the mesh on its own
//! small tokio runtime, so the pipeline's compute (rayon) never runs on an async worker and
//! the links keep answering keep-alives while a rank counts.

use std::time::Duration;

use super::communicator::{CommError, Communicator, Traffic};
use super::link::{Hello, Node};
use super::mesh::{self, Mesh};

/// Where a QUIC gang member listens and who its peers are.
#[derive(Debug, Clone)]
pub struct QuicSetup {
    /// Where this rank listens.
    pub bind: std::net::SocketAddr,
    /// `host:port` of every rank, in rank order (this rank's own entry included).
    pub peers: Vec<String>,
    /// The gang's shared secret.
    pub secret: Vec<u8>,
    /// What this rank says about itself in the handshake.
    pub hello: Hello,
    /// How long to wait for every rank.
    pub rendezvous_timeout: Duration,
}

/// Closes a rank's links from outside the pipeline (see [`QuicComm::abort_handle`]).
#[derive(Clone)]
pub struct AbortLinks(Vec<quinn::Connection>);

impl AbortLinks {
    /// Closes every link, telling the peer `reason`; the frames leave on the network
    /// thread, which keeps running.
    pub fn close(&self, reason: &str) {
        for c in &self.0 {
            c.close(5u32.into(), reason.as_bytes());
        }
    }
}

/// A QUIC gang member.
pub struct QuicComm {
    rt: tokio::runtime::Runtime,
    mesh: Mesh,
}

impl QuicComm {
    /// Binds, then joins the gang (bounded by the rendezvous timeout).
    pub fn join(setup: QuicSetup) -> anyhow::Result<QuicComm> {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("cooc-net")
            .enable_all()
            .build()?;
        let rank = setup.hello.rank;
        let mesh = rt.block_on(async {
            let node = Node::bind(setup.bind, &setup.secret, setup.hello)?;
            anyhow::Ok(mesh::rendezvous(node, rank, &setup.peers, setup.rendezvous_timeout).await?)
        })?;
        Ok(QuicComm { rt, mesh })
    }

    /// Calls `on_loss(rank, detail)`, on the network thread, when the link to a peer ends
    /// other than by that peer's orderly close after a successful run (reason `done`): a
    /// crash (the keep-alive times out), a partition, or a peer that failed and said why.
    /// For communicators whose collectives do not run over these links (NCCL), so that a
    /// lost peer is still noticed.
    pub fn watch_peers(&self, on_loss: impl Fn(u32, String) + Send + Sync + 'static) {
        let on_loss = std::sync::Arc::new(on_loss);
        for (q, conn) in self.mesh.links() {
            let on_loss = on_loss.clone();
            self.rt.spawn(async move {
                match conn.closed().await {
                    quinn::ConnectionError::ApplicationClosed(c) if &c.reason[..] == b"done" => {}
                    quinn::ConnectionError::LocallyClosed => {}
                    quinn::ConnectionError::ApplicationClosed(c) => {
                        on_loss(q, String::from_utf8_lossy(&c.reason).into_owned())
                    }
                    e => on_loss(q, e.to_string()),
                }
            });
        }
    }

    /// A handle that closes every link with a reason, from any thread (a signal handler):
    /// the peers learn at once why this rank left instead of at their idle timeout.
    pub fn abort_handle(&self) -> AbortLinks {
        AbortLinks(self.mesh.links().into_iter().map(|(_, c)| c).collect())
    }

    /// Closes every link, telling peers why, and waits until they were told.
    pub fn close(self, reason: &str) {
        let QuicComm { rt, mesh } = self;
        rt.block_on(async {
            // Bounded: a peer that is already gone never acknowledges.
            let _ = tokio::time::timeout(Duration::from_secs(3), mesh.close(reason)).await;
        });
    }
}

impl Communicator for QuicComm {
    fn rank(&self) -> u32 {
        self.mesh.rank()
    }
    fn world(&self) -> u32 {
        self.mesh.world()
    }
    fn all_gather(&self, phase: &'static str, mine: &[u8]) -> Result<Vec<Vec<u8>>, CommError> {
        self.rt.block_on(self.mesh.all_gather(phase, mine))
    }
    fn all_to_all(
        &self,
        phase: &'static str,
        out: Vec<Vec<u8>>,
    ) -> Result<Vec<Vec<u8>>, CommError> {
        self.rt.block_on(self.mesh.all_to_all(phase, out))
    }
    fn all_reduce_sum(&self, phase: &'static str, v: &mut [u64]) -> Result<(), CommError> {
        self.rt.block_on(self.mesh.all_reduce_sum(phase, v))
    }
    fn gather(
        &self,
        phase: &'static str,
        mine: Vec<u8>,
    ) -> Result<Option<Vec<Vec<u8>>>, CommError> {
        self.rt.block_on(self.mesh.gather(phase, mine))
    }
    fn broadcast(
        &self,
        phase: &'static str,
        root: u32,
        data: Vec<u8>,
    ) -> Result<Vec<u8>, CommError> {
        self.rt.block_on(self.mesh.broadcast(phase, root, data))
    }
    fn traffic(&self) -> Traffic {
        self.mesh.traffic()
    }
    fn bound_messages(&self, max: usize) {
        self.mesh.bound_messages(max);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gang::link::PROTOCOL_VERSION;

    /// Three ranks on loopback, joined concurrently.
    fn gang3() -> Vec<QuicComm> {
        let socks: Vec<_> = (0..3)
            .map(|_| std::net::UdpSocket::bind("127.0.0.1:0").unwrap())
            .collect();
        let addrs: Vec<std::net::SocketAddr> =
            socks.iter().map(|s| s.local_addr().unwrap()).collect();
        drop(socks);
        let peers: Vec<String> = addrs.iter().map(|a| a.to_string()).collect();
        let joins: Vec<_> = (0..3u32)
            .map(|rank| {
                let setup = QuicSetup {
                    bind: addrs[rank as usize],
                    peers: peers.clone(),
                    secret: b"0123456789abcdef0123456789abcdef".to_vec(),
                    hello: Hello {
                        protocol: PROTOCOL_VERSION,
                        job: "watch".into(),
                        restart_attempt: 0,
                        rank,
                        world: 3,
                        fingerprint: "fp".into(),
                    },
                    rendezvous_timeout: Duration::from_secs(30),
                };
                std::thread::spawn(move || QuicComm::join(setup).expect("joins"))
            })
            .collect();
        joins.into_iter().map(|j| j.join().unwrap()).collect()
    }

    #[test]
    fn a_peer_that_fails_is_reported_and_one_that_finishes_is_not() {
        let mut g = gang3().into_iter();
        let (c0, c1, c2) = (g.next().unwrap(), g.next().unwrap(), g.next().unwrap());
        let (tx, rx) = std::sync::mpsc::channel();
        let tx = std::sync::Mutex::new(tx);
        c0.watch_peers(move |q, detail| {
            let _ = tx.lock().unwrap().send((q, detail));
        });
        c1.close("done");
        c2.close("rank 2 failed: orders.csv:7: bad row");
        let (q, detail) = rx
            .recv_timeout(Duration::from_secs(20))
            .expect("the failed peer is reported");
        assert_eq!(q, 2);
        assert!(detail.contains("orders.csv:7"), "{detail}");
        assert!(
            rx.recv_timeout(Duration::from_millis(500)).is_err(),
            "an orderly close is not a loss"
        );
        c0.close("done");
    }
}
