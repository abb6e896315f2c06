//! The QUIC mesh: rendezvous into a full mesh of authenticated links, then the
//! collectives the trainer needs, each following a schedule from [`super::schedule`].
//!
//! Every message is one QUIC unidirectional stream: both ends of a link run the same
//! schedule, and a peer's streams are accepted in the order it opened them, so the k-th
//! message received from a peer is the k-th it sent. Bulk arrays travel as their raw
//! little-endian bytes (`bytemuck`), never re-encoded.
//!
//! Failures are typed for the exit codes: a rank that never arrives or is lost mid-run is
//! retriable ([`CommError::retriable`], exit 75); a peer of another job is not (exit 2).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

use super::communicator::{CommError, Traffic};
use super::link::{Link, LinkError, Node};
use super::schedule::{balanced_blocks, broadcast_tree, shifted_exchange};

/// This rank's links to every other rank.
pub struct Mesh {
    node: Node,
    rank: u32,
    world: u32,
    /// `conns[q]`: the link to rank `q` (`None` for this rank).
    conns: Vec<Option<quinn::Connection>>,
    /// Payload bytes this rank has sent and received, for the run's report.
    sent: AtomicU64,
    received: AtomicU64,
    /// The most bytes one incoming message may hold (see [`Mesh::bound_messages`]).
    max_message: AtomicUsize,
}

/// The stream error code a receiver sends when a message exceeds its bound.
const STREAM_TOO_LONG: u32 = 1;

/// The message bound of a mesh that was never given one: larger than any control
/// message, far below what would exhaust a rank's memory.
pub const DEFAULT_MAX_MESSAGE: usize = 1 << 30;

/// Capped exponential backoff between connection attempts.
const BACKOFF_START: Duration = Duration::from_millis(50);
const BACKOFF_CAP: Duration = Duration::from_secs(2);
/// Longest single connection attempt.
const ATTEMPT: Duration = Duration::from_secs(2);
/// How long an incoming connection may take to complete TLS and send its sealed hello.
pub const HELLO_DEADLINE: Duration = Duration::from_secs(5);

/// Joins the gang: connects to every lower rank (retrying with capped exponential backoff,
/// resolving `peers[q]` afresh each time, so a name that appears late or moves is found) and
/// accepts every higher rank, until `timeout`.
pub async fn rendezvous(
    node: Node,
    rank: u32,
    peers: &[String],
    timeout: Duration,
) -> Result<Mesh, CommError> {
    let world = peers.len() as u32;
    let deadline = Instant::now() + timeout;
    let arrived = Arc::new(Mutex::new(vec![false; world as usize]));
    arrived.lock().unwrap_or_else(|p| p.into_inner())[rank as usize] = true;
    let mark = |q: u32| arrived.lock().unwrap_or_else(|p| p.into_inner())[q as usize] = true;

    // Each incoming connection is authenticated in a task of its own, under a short
    // deadline: a client that completes TLS and then says nothing (or promises a hello it
    // never sends) is dropped, and never delays the ranks behind it.
    let accept_higher = async {
        let mut got = Vec::new();
        let mut pending = tokio::task::JoinSet::new();
        let auth = node.authenticator();
        while got.len() < (world - 1 - rank) as usize {
            tokio::select! {
                incoming = node.incoming() => {
                    let Some(incoming) = incoming else {
                        return Err(CommError::Link(LinkError::Closed));
                    };
                    let auth = auth.clone();
                    let from = incoming.remote_address();
                    pending.spawn(async move {
                        tokio::time::timeout(HELLO_DEADLINE, auth.authenticate(incoming))
                            .await
                            .unwrap_or_else(|_| {
                                Err(LinkError::Protocol {
                                    peer: from,
                                    detail: format!(
                                        "no hello within {} s",
                                        HELLO_DEADLINE.as_secs()
                                    ),
                                })
                            })
                    });
                }
                Some(done) = pending.join_next() => match done {
                    Ok(Ok(Link { conn, peer }))
                        if peer.rank > rank && !got.iter().any(|(q, _)| *q == peer.rank) =>
                    {
                        mark(peer.rank);
                        got.push((peer.rank, conn));
                    }
                    Ok(Ok(Link { conn, peer })) => {
                        tracing::warn!(
                            peer = peer.rank,
                            "unexpected or duplicate connection, closed"
                        );
                        conn.close(3u32.into(), b"unexpected rank");
                    }
                    Ok(Err(e @ LinkError::Mismatch { .. })) => return Err(CommError::from(e)),
                    Ok(Err(e)) => tracing::warn!("refused a connection: {e}"),
                    Err(e) => tracing::warn!("authenticating a connection failed: {e}"),
                },
            }
        }
        Ok(got)
    };
    let connect_lower = async {
        let mut got = Vec::new();
        for q in 0..rank {
            let mut wait = BACKOFF_START;
            let conn = loop {
                match resolve(&peers[q as usize]).await {
                    // Bounded: a peer that is not listening yet never answers (QUIC ignores
                    // ICMP), and the attempt would otherwise last the whole idle timeout.
                    Ok(addr) => match tokio::time::timeout(ATTEMPT, node.connect(addr, q)).await {
                        Ok(Ok(link)) => break link.conn,
                        Ok(Err(e @ LinkError::Mismatch { .. })) => return Err(CommError::from(e)),
                        Ok(Err(e @ LinkError::OtherRun { .. })) => {
                            tracing::warn!(peer = q, "refused: {e}")
                        }
                        Ok(Err(e)) => tracing::debug!(peer = q, "not yet: {e}"),
                        Err(_) => tracing::debug!(peer = q, "not yet: no answer from {addr}"),
                    },
                    Err(e) => tracing::debug!(peer = q, "not resolvable yet: {e}"),
                }
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(BACKOFF_CAP);
            };
            mark(q);
            got.push((q, conn));
        }
        Ok(got)
    };
    let joined = tokio::time::timeout_at(deadline, async {
        tokio::try_join!(accept_higher, connect_lower)
    })
    .await;
    let (higher, lower) = match joined {
        Ok(Ok(r)) => r,
        Ok(Err(e)) => {
            // Flush the close frames (a refused peer must hear why, or it retries until
            // its own deadline), bounded: a peer that is gone never acknowledges.
            let _ = tokio::time::timeout(BACKOFF_CAP, node.shutdown(&e.to_string())).await;
            return Err(e);
        }
        Err(_) => {
            let missing = arrived
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .iter()
                .enumerate()
                .filter(|(_, a)| !**a)
                .map(|(q, _)| q as u32)
                .collect();
            return Err(CommError::Missing {
                missing,
                secs: timeout.as_secs(),
            });
        }
    };
    let mut conns = vec![None; world as usize];
    for (q, c) in higher.into_iter().chain(lower) {
        conns[q as usize] = Some(c);
    }
    Ok(Mesh {
        node,
        rank,
        world,
        conns,
        sent: AtomicU64::new(0),
        received: AtomicU64::new(0),
        max_message: AtomicUsize::new(DEFAULT_MAX_MESSAGE),
    })
}

/// A block of `len` little-endian u64s from rank `from`, whatever the buffer's alignment;
/// a block of any other length is a named error, never a panic.
fn u64_block(
    bytes: &[u8],
    len: usize,
    from: u32,
    phase: &'static str,
) -> Result<Vec<u64>, CommError> {
    if bytes.len() != len * 8 {
        return Err(CommError::Malformed {
            rank: from,
            phase,
            detail: format!(
                "a block of {} bytes where {} u64s were due",
                bytes.len(),
                len
            ),
        });
    }
    Ok(bytes
        .chunks_exact(8)
        .map(|c| u64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]))
        .collect())
}

/// Why a stream to or from a peer failed: the link's close reason when the link is gone
/// (a peer that left says why, "rank 1 stopped by SIGTERM"; the stream error alone would
/// only say "connection lost"), else the stream's own error.
fn loss_detail(conn: &quinn::Connection, e: &dyn std::fmt::Display) -> String {
    match conn.close_reason() {
        Some(reason) => reason.to_string(),
        None => e.to_string(),
    }
}

/// Resolves `host:port`, never caching a failure (each attempt asks again).
async fn resolve(peer: &str) -> std::io::Result<SocketAddr> {
    tokio::net::lookup_host(peer).await?.next().ok_or_else(|| {
        std::io::Error::new(
            std::io::ErrorKind::NotFound,
            format!("{peer} has no address"),
        )
    })
}

impl Mesh {
    /// This rank.
    pub fn rank(&self) -> u32 {
        self.rank
    }

    /// Ranks in the gang.
    pub fn world(&self) -> u32 {
        self.world
    }

    /// Bounds every incoming message at `max` bytes: a peer (even one with the secret)
    /// that sends more is reported as [`CommError::Malformed`] before this rank holds it.
    pub fn bound_messages(&self, max: usize) {
        self.max_message.store(max, Relaxed);
    }

    fn conn(&self, q: u32) -> &quinn::Connection {
        self.conns[q as usize]
            .as_ref()
            .expect("a link to every other rank")
    }

    async fn send(&self, to: u32, phase: &'static str, bytes: &[u8]) -> Result<(), CommError> {
        let lost = |e: &dyn std::fmt::Display| CommError::Lost {
            rank: to,
            phase,
            detail: loss_detail(self.conn(to), e),
        };
        let mut s = self.conn(to).open_uni().await.map_err(|e| lost(&e))?;
        s.write_all(bytes).await.map_err(|e| lost(&e))?;
        s.finish().map_err(|e| lost(&e))?;
        self.sent.fetch_add(bytes.len() as u64, Relaxed);
        // Done means delivered: the peer has read the whole stream. (Closing right after
        // `finish` would otherwise drop what is still unacknowledged.)
        match s.stopped().await {
            Ok(None) => Ok(()),
            Ok(Some(code)) => Err(lost(&format!("peer stopped the stream (code {code})"))),
            Err(e) => Err(lost(&e)),
        }
    }

    async fn recv(&self, from: u32, phase: &'static str) -> Result<Vec<u8>, CommError> {
        let lost = |e: &dyn std::fmt::Display| CommError::Lost {
            rank: from,
            phase,
            detail: loss_detail(self.conn(from), e),
        };
        let mut r = self.conn(from).accept_uni().await.map_err(|e| lost(&e))?;
        let max = self.max_message.load(Relaxed);
        let got = match r.read_to_end(max).await {
            Ok(got) => got,
            Err(quinn::ReadToEndError::TooLong) => {
                // Tell the sender why, rather than leaving it blocked on a full window.
                let _ = r.stop(STREAM_TOO_LONG.into());
                return Err(CommError::Malformed {
                    rank: from,
                    phase,
                    detail: format!("a message of more than {max} bytes (this run's bound)"),
                });
            }
            Err(e) => return Err(lost(&e)),
        };
        self.received.fetch_add(got.len() as u64, Relaxed);
        Ok(got)
    }

    /// The link to every other rank, for watching them.
    pub(crate) fn links(&self) -> Vec<(u32, quinn::Connection)> {
        self.conns
            .iter()
            .enumerate()
            .filter_map(|(q, c)| c.clone().map(|c| (q as u32, c)))
            .collect()
    }

    /// Payload bytes sent and received so far.
    pub fn traffic(&self) -> Traffic {
        Traffic {
            sent: self.sent.load(Relaxed),
            received: self.received.load(Relaxed),
        }
    }

    /// Personalised exchange: `out[q]` goes to rank `q`; returns what every rank sent to
    /// this one, in rank order (`out[self]` is kept, not sent).
    pub async fn all_to_all(
        &self,
        phase: &'static str,
        mut out: Vec<Vec<u8>>,
    ) -> Result<Vec<Vec<u8>>, CommError> {
        assert_eq!(out.len(), self.world as usize, "one message per rank");
        let me = self.rank as usize;
        let mut got = vec![Vec::new(); self.world as usize];
        got[me] = std::mem::take(&mut out[me]);
        for step in shifted_exchange(self.world) {
            let e = step[me];
            let msg = std::mem::take(&mut out[e.send_to as usize]);
            let (sent, recv) = tokio::join!(
                self.send(e.send_to, phase, &msg),
                self.recv(e.recv_from, phase)
            );
            sent?;
            got[e.recv_from as usize] = recv?;
        }
        Ok(got)
    }

    /// `data` of `root` on every rank (binomial tree; the others pass anything, e.g. empty).
    pub async fn broadcast(
        &self,
        phase: &'static str,
        root: u32,
        data: Vec<u8>,
    ) -> Result<Vec<u8>, CommError> {
        let mut have = (self.rank == root).then_some(data);
        for round in broadcast_tree(self.world, root) {
            for (from, to) in round {
                if from == self.rank {
                    let bytes = have.as_deref().expect("a sender already holds the data");
                    self.send(to, phase, bytes).await?;
                } else if to == self.rank {
                    have = Some(self.recv(from, phase).await?);
                }
            }
        }
        Ok(have.expect("every rank is reached by the tree"))
    }

    /// Every rank's `mine`, in rank order.
    pub async fn all_gather(
        &self,
        phase: &'static str,
        mine: &[u8],
    ) -> Result<Vec<Vec<u8>>, CommError> {
        let mut out = vec![Vec::new(); self.world as usize];
        out[self.rank as usize] = mine.to_vec();
        for step in shifted_exchange(self.world) {
            let e = step[self.rank as usize];
            let (sent, got) = tokio::join!(
                self.send(e.send_to, phase, mine),
                self.recv(e.recv_from, phase)
            );
            sent?;
            out[e.recv_from as usize] = got?;
        }
        Ok(out)
    }

    /// Returns once every rank has called it.
    pub async fn barrier(&self, phase: &'static str) -> Result<(), CommError> {
        self.all_gather(phase, &[]).await.map(|_| ())
    }

    /// Element-wise sum over all ranks, in place: reduce-scatter of equal blocks, then
    /// all-gather of the reduced blocks.
    pub async fn all_reduce_sum(
        &self,
        phase: &'static str,
        v: &mut [u64],
    ) -> Result<(), CommError> {
        let blocks = balanced_blocks(&vec![1; v.len()], self.world);
        let me = self.rank as usize;
        for step in shifted_exchange(self.world) {
            let e = step[me];
            let out =
                bytemuck::cast_slice::<u64, u8>(&v[blocks[e.send_to as usize].clone()]).to_vec();
            let (sent, got) = tokio::join!(
                self.send(e.send_to, phase, &out),
                self.recv(e.recv_from, phase)
            );
            sent?;
            let theirs = u64_block(&got?, blocks[me].len(), e.recv_from, phase)?;
            for (a, b) in v[blocks[me].clone()].iter_mut().zip(theirs) {
                *a += b;
            }
        }
        let mine = bytemuck::cast_slice::<u64, u8>(&v[blocks[me].clone()]).to_vec();
        let all = self.all_gather(phase, &mine).await?;
        for (q, bytes) in all.iter().enumerate() {
            if q != me {
                let src = u64_block(bytes, blocks[q].len(), q as u32, phase)?;
                v[blocks[q].clone()].copy_from_slice(&src);
            }
        }
        Ok(())
    }

    /// Rank 0 gets every rank's `mine` in rank order; the others get `None`.
    pub async fn gather(
        &self,
        phase: &'static str,
        mine: Vec<u8>,
    ) -> Result<Option<Vec<Vec<u8>>>, CommError> {
        if self.rank != 0 {
            self.send(0, phase, &mine).await?;
            return Ok(None);
        }
        let mut out = vec![mine];
        for q in 1..self.world {
            out.push(self.recv(q, phase).await?);
        }
        Ok(Some(out))
    }

    /// Closes every link and waits until peers have been told.
    pub async fn close(self, reason: &str) {
        self.node.shutdown(reason).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gang::link::{Hello, PROTOCOL_VERSION, STREAM_WINDOW};

    const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef";

    fn nodes(world: u32) -> (Vec<Node>, Vec<String>) {
        let nodes: Vec<Node> = (0..world)
            .map(|rank| {
                let hello = Hello {
                    protocol: PROTOCOL_VERSION,
                    job: "job".into(),
                    restart_attempt: 0,
                    rank,
                    world,
                    fingerprint: "fp".into(),
                };
                Node::bind("127.0.0.1:0".parse().unwrap(), SECRET, hello).unwrap()
            })
            .collect();
        let peers = nodes
            .iter()
            .map(|n| n.local_addr().unwrap().to_string())
            .collect();
        (nodes, peers)
    }

    /// Clients that complete TLS and then say nothing, or promise a hello they never send,
    /// hold connections to rank 0 while a 2-rank gang forms: the gang still forms, long
    /// before its rendezvous deadline.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn silent_clients_do_not_stop_a_gang_from_forming() {
        let (mut nodes, peers) = nodes(2);
        let rogue = |job: &str| {
            let hello = Hello {
                protocol: PROTOCOL_VERSION,
                job: job.into(),
                restart_attempt: 0,
                rank: 1,
                world: 2,
                fingerprint: "fp".into(),
            };
            Node::bind(
                "127.0.0.1:0".parse().unwrap(),
                b"a secret nobody in this gang has",
                hello,
            )
            .unwrap()
        };
        let (r1, r2) = (rogue("x"), rogue("y"));
        let rank0: std::net::SocketAddr = peers[0].parse().unwrap();
        let n1 = nodes.pop().unwrap();
        let n0 = nodes.pop().unwrap();
        let p0 = peers.clone();
        let rank0_task =
            tokio::spawn(async move { rendezvous(n0, 0, &p0, Duration::from_secs(30)).await });
        let _held = r1.dial_silently(rank0, false).await;
        let _promised = r2.dial_silently(rank0, true).await;
        let started = Instant::now();
        let m1 = rendezvous(n1, 1, &peers, Duration::from_secs(30))
            .await
            .unwrap();
        let m0 = rank0_task.await.unwrap().unwrap();
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "the gang took {:?} to form",
            started.elapsed()
        );
        let (a, b) = tokio::join!(m0.barrier("formed"), m1.barrier("formed"));
        a.unwrap();
        b.unwrap();
        tokio::join!(m0.close("done"), m1.close("done"));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn meshes_of_one_to_five_ranks_run_every_collective() {
        for world in 1..=5u32 {
            let (nodes, peers) = nodes(world);
            let mut tasks = tokio::task::JoinSet::new();
            for (rank, node) in nodes.into_iter().enumerate() {
                let peers = peers.clone();
                tasks.spawn(async move {
                    let rank = rank as u32;
                    let mesh = rendezvous(node, rank, &peers, Duration::from_secs(20)).await?;
                    mesh.barrier("start").await?;
                    let all = mesh
                        .all_gather("gather names", format!("rank{rank}").as_bytes())
                        .await?;
                    let names: Vec<String> = all
                        .into_iter()
                        .map(|b| String::from_utf8(b).unwrap())
                        .collect();
                    // 11 items: uneven blocks for every world size.
                    let mut v: Vec<u64> = (0..11u64).map(|i| i * 10 + rank as u64).collect();
                    mesh.all_reduce_sum("totals", &mut v).await?;
                    let got = mesh
                        .gather("results", vec![rank as u8; rank as usize + 1])
                        .await?;
                    mesh.close("done").await;
                    Ok::<_, CommError>((rank, names, v, got))
                });
            }
            while let Some(r) = tasks.join_next().await {
                let (rank, names, v, got) = r.unwrap().unwrap();
                assert_eq!(
                    names,
                    (0..world).map(|q| format!("rank{q}")).collect::<Vec<_>>()
                );
                let ranks_sum: u64 = (0..world as u64).sum();
                let want: Vec<u64> = (0..11u64)
                    .map(|i| i * 10 * world as u64 + ranks_sum)
                    .collect();
                assert_eq!(v, want, "world {world} rank {rank}");
                if rank == 0 {
                    let got = got.unwrap();
                    assert_eq!(got.len(), world as usize);
                    assert_eq!(
                        got[world as usize - 1],
                        vec![(world - 1) as u8; world as usize]
                    );
                } else {
                    assert!(got.is_none());
                }
            }
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_rank_that_never_arrives_is_named_at_the_deadline() {
        let (mut nodes, peers) = nodes(3);
        drop(nodes.pop()); // rank 2 never starts
        let mut tasks = tokio::task::JoinSet::new();
        for (rank, node) in nodes.into_iter().enumerate() {
            let peers = peers.clone();
            tasks.spawn(async move {
                rendezvous(node, rank as u32, &peers, Duration::from_millis(1500))
                    .await
                    .err()
            });
        }
        while let Some(r) = tasks.join_next().await {
            let e = r.unwrap().expect("rendezvous must fail");
            assert!(e.retriable());
            assert!(
                matches!(&e, CommError::Missing { missing, .. } if missing == &vec![2]),
                "{e}"
            );
        }
    }

    /// Runs `body(rank, mesh)` on every rank of a freshly joined `world`-rank gang on
    /// loopback, each rank in a task of its own.
    fn on_every_rank<T, F, Fut>(world: u32, body: F) -> tokio::task::JoinSet<T>
    where
        F: Fn(usize, Mesh) -> Fut + Clone + Send + 'static,
        Fut: std::future::Future<Output = T> + Send + 'static,
        T: Send + 'static,
    {
        let (nodes, peers) = nodes(world);
        let mut tasks = tokio::task::JoinSet::new();
        for (rank, node) in nodes.into_iter().enumerate() {
            let (peers, body) = (peers.clone(), body.clone());
            tasks.spawn(async move {
                let mesh = rendezvous(node, rank as u32, &peers, Duration::from_secs(20))
                    .await
                    .unwrap();
                body(rank, mesh).await
            });
        }
        tasks
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_lost_rank_is_named_with_the_phase() {
        let mut tasks = on_every_rank(3, |rank, mesh| async move {
            mesh.barrier("start").await.unwrap();
            if rank == 2 {
                // Leaves without taking part in the next collective.
                mesh.close("leaving").await;
                return None;
            }
            // The mesh is handed back, not dropped: a survivor that closed its links on
            // failing would make the other survivor lose it, not rank 2, first.
            Some((mesh.all_gather("counting", b"x").await.err(), mesh))
        });
        let mut seen = 0;
        let mut kept = Vec::new();
        while let Some(r) = tasks.join_next().await {
            if let Some((err, mesh)) = r.unwrap() {
                kept.push(mesh);
                let e = err.expect("the collective must fail");
                assert!(e.retriable());
                assert!(
                    e.to_string().contains("rank 2") && e.to_string().contains("counting"),
                    "{e}"
                );
                seen += 1;
            }
        }
        assert_eq!(seen, 2);
    }

    /// A peer that leaves in the middle of a message (a SIGTERM closes its links with the
    /// reason) is reported with that reason, not the stream's bare "connection lost".
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_peer_leaving_mid_message_is_reported_with_its_reason() {
        let mut tasks = on_every_rank(2, |rank, mesh| async move {
            mesh.barrier("start").await.unwrap();
            if rank == 1 {
                let mut s = mesh.conn(0).open_uni().await.unwrap();
                s.write_all(b"the first bytes of a message").await.unwrap();
                // Long enough for rank 0 to be reading the stream.
                tokio::time::sleep(Duration::from_millis(300)).await;
                mesh.conn(0)
                    .close(5u32.into(), b"rank 1 stopped by SIGTERM");
                return None;
            }
            Some(mesh.recv(1, "routing").await.err())
        });
        while let Some(r) = tasks.join_next().await {
            if let Some(err) = r.unwrap() {
                let e = err.expect("the receive must fail").to_string();
                assert!(
                    e.contains("rank 1 stopped by SIGTERM") && e.contains("routing"),
                    "{e}"
                );
            }
        }
    }

    /// A peer that sends more than the receiver's bound (with the secret, or through a
    /// bug) is refused as malformed, named with the phase, and the receiver never holds
    /// the message; messages within the bound still pass.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_message_above_the_bound_is_refused_before_it_is_held() {
        let mut tasks = on_every_rank(2, |rank, mesh| async move {
            mesh.bound_messages(4096);
            let small = mesh.all_gather("small", &[7u8; 4096]).await.unwrap();
            assert_eq!(small[1 - rank], vec![7u8; 4096]);
            // Larger than one stream's window: a smaller message can be delivered and
            // acknowledged by the transport before the root's refusal reaches the sender.
            let big = if rank == 1 {
                vec![1u8; STREAM_WINDOW as usize + (1 << 20)]
            } else {
                vec![]
            };
            let got = mesh.gather("flooding", big).await;
            let traffic = mesh.traffic();
            // Keep the links open until the other rank is done with them.
            mesh.barrier("end").await.ok();
            (rank, got.err(), traffic)
        });
        while let Some(r) = tasks.join_next().await {
            let (rank, err, traffic) = r.unwrap();
            if rank == 0 {
                let e = err.expect("the root must refuse rank 1's message");
                assert!(matches!(e, CommError::Malformed { rank: 1, .. }), "{e}");
                assert!(!e.retriable());
                assert!(e.to_string().contains("flooding"), "{e}");
                assert!(e.to_string().contains("4096"), "{e}");
                assert!(traffic.received < 1 << 20, "{traffic:?}");
            } else {
                let e = err.expect("the sender learns its message was refused");
                assert!(e.to_string().contains("rank 0"), "{e}");
            }
        }
    }
}
