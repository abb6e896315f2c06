//! The NCCL [`Communicator`] (feature `nccl`): the gang's collectives on GPU buffers, for a
//! gang on a GPU node pool.
//!
//! The gang still meets over QUIC: the authenticated rendezvous, then rank 0 creates the
//! NCCL unique id and broadcasts it over the QUIC links (never through a shared file), and
//! every rank joins the NCCL communicator with it. The QUIC links stay open beside it and
//! carry the close reasons. All-reduce and broadcast map to the NCCL calls of the same name;
//! byte collectives of uneven sizes first agree on lengths (an all-gather of u64), then move
//! the bytes with NCCL all-gather (padded) or grouped send/recv (all-to-all, gather).
//!
//! The NCCL communicator holds raw handles and is neither `Send` nor `Sync`: it lives and is
//! used on the thread that created it, with the CUDA context bound there.
//!
//! A peer lost during an NCCL collective would leave this rank waiting inside NCCL. The
//! QUIC links notice it (keep-alive timeout, or the peer's close saying it failed): while a
//! collective is in flight the watcher ends the process with exit code 75 naming the rank
//! and the phase, as the QUIC path does; between collectives the loss is kept and the next
//! collective fails with it.

use std::cell::Cell;
use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
use std::sync::{Arc, Mutex};

use cudarc::driver::{CudaContext, CudaSlice, CudaStream, DriverError};
use cudarc::nccl::{Comm, Id, ReduceOp};

use super::communicator::{CommError, Communicator, Traffic};
use super::quic::QuicComm;
use crate::error::ConfigError;

/// A gang member whose collectives run on NCCL.
pub struct NcclComm {
    quic: QuicComm,
    nccl: Comm,
    stream: Arc<CudaStream>,
    traffic: Cell<Traffic>,
    watch: Arc<Watch>,
    /// The most bytes one incoming message may hold ([`Communicator::bound_messages`]).
    max_message: Cell<usize>,
}

/// What the link watcher and the collectives share.
#[derive(Default)]
struct Watch {
    /// The phase of the collective in flight, if any.
    in_flight: Mutex<Option<&'static str>>,
    /// A peer lost between collectives: `(rank, detail)`.
    lost: Mutex<Option<(u32, String)>>,
    /// Set once this rank is leaving: losses no longer matter.
    leaving: AtomicBool,
}

/// Marks a collective in flight for the watcher; clears it when dropped.
struct InFlight<'a>(&'a Watch);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        *self.0.in_flight.lock().unwrap_or_else(|e| e.into_inner()) = None;
    }
}

impl NcclComm {
    /// Joins the NCCL communicator of the gang `quic` belongs to, on GPU `rank` modulo the
    /// visible devices.
    pub fn join(quic: QuicComm) -> anyhow::Result<NcclComm> {
        let (rank, world) = (quic.rank(), quic.world());
        // SAFETY: dlopen attempts only; nothing is called through the libraries yet.
        let (driver, nccl) = unsafe {
            (
                cudarc::driver::sys::is_culib_present(),
                cudarc::nccl::sys::is_culib_present(),
            )
        };
        if !driver || !nccl {
            return Err(ConfigError(format!(
                "--comm nccl: {} could not be loaded (a GPU node with the NVIDIA runtime and NCCL?)",
                if driver { "libnccl" } else { "libcuda" }
            ))
            .into());
        }
        let n = CudaContext::device_count()?;
        if n <= 0 {
            return Err(ConfigError("--comm nccl: no CUDA device is visible".into()).into());
        }
        let ctx = CudaContext::new(rank as usize % n as usize)?;
        let stream = ctx.default_stream();
        let mine = if rank == 0 {
            let id = Id::new().map_err(|e| nccl_error("creating the NCCL id", e))?;
            id.internal().iter().map(|&c| c as u8).collect()
        } else {
            Vec::new()
        };
        let got = quic.broadcast("sharing the NCCL id", 0, mine)?;
        let mut internal = [0 as std::ffi::c_char; 128];
        if got.len() != internal.len() {
            anyhow::bail!(
                "rank 0 sent an NCCL id of {} bytes, not {}",
                got.len(),
                internal.len()
            );
        }
        for (d, &b) in internal.iter_mut().zip(&got) {
            *d = b as std::ffi::c_char;
        }
        let nccl = Comm::from_rank(
            stream.clone(),
            rank as usize,
            world as usize,
            Id::uninit(internal),
        )
        .map_err(|e| nccl_error("joining the NCCL communicator", e))?;
        tracing::info!(
            rank,
            world,
            device = ctx.ordinal(),
            "joined the NCCL communicator"
        );
        let watch = Arc::new(Watch::default());
        let w = watch.clone();
        quic.watch_peers(move |q, detail| {
            if w.leaving.load(SeqCst) {
                return;
            }
            let phase = *w.in_flight.lock().unwrap_or_else(|e| e.into_inner());
            match phase {
                Some(phase) => {
                    // This rank is blocked inside NCCL and cannot return: leave now.
                    eprintln!(
                        "cooc: error: rank {rank} of {world}: lost rank {q} during {phase} (NCCL): {detail}"
                    );
                    std::process::exit(crate::error::Exit::Retriable as i32);
                }
                None => {
                    *w.lost.lock().unwrap_or_else(|e| e.into_inner()) = Some((q, detail));
                }
            }
        });
        Ok(NcclComm {
            quic,
            nccl,
            stream,
            traffic: Cell::new(Traffic::default()),
            watch,
            max_message: Cell::new(crate::gang::mesh::DEFAULT_MAX_MESSAGE),
        })
    }

    /// Starts a collective: fails at once with a peer already lost, else marks it in flight.
    fn begin(&self, phase: &'static str) -> Result<InFlight<'_>, CommError> {
        let lost = self
            .watch
            .lost
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        if let Some((rank, detail)) = lost {
            return Err(CommError::Lost {
                rank,
                phase,
                detail,
            });
        }
        *self
            .watch
            .in_flight
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = Some(phase);
        Ok(InFlight(&self.watch))
    }

    /// Leaves NCCL, then closes the QUIC links telling peers why.
    pub fn close(self, reason: &str) {
        let NcclComm {
            quic, nccl, watch, ..
        } = self;
        watch.leaving.store(true, SeqCst);
        drop(nccl);
        quic.close(reason);
    }

    fn count(&self, sent: usize, received: usize) {
        let t = self.traffic.get();
        self.traffic.set(Traffic {
            sent: t.sent + sent as u64,
            received: t.received + received as u64,
        });
    }

    /// A device copy of `data` (at least one element: CUDA refuses empty allocations).
    fn upload<T: cudarc::driver::DeviceRepr + Default + Copy>(
        &self,
        phase: &'static str,
        data: &[T],
    ) -> Result<CudaSlice<T>, CommError> {
        if data.is_empty() {
            return self.stream.clone_htod(&[T::default()]).map_err(cuda(phase));
        }
        self.stream.clone_htod(data).map_err(cuda(phase))
    }

    fn download<T: cudarc::driver::DeviceRepr>(
        &self,
        phase: &'static str,
        d: &CudaSlice<T>,
        len: usize,
    ) -> Result<Vec<T>, CommError> {
        let mut v = self.stream.clone_dtoh(d).map_err(cuda(phase))?;
        self.stream.synchronize().map_err(cuda(phase))?;
        v.truncate(len);
        Ok(v)
    }

    /// Every rank's `v` (all of one length), concatenated in rank order.
    fn all_gather_u64(&self, phase: &'static str, v: &[u64]) -> Result<Vec<u64>, CommError> {
        let w = self.world() as usize;
        let send = self.upload(phase, v)?;
        let mut recv = self
            .stream
            .alloc_zeros::<u64>((w * v.len()).max(1))
            .map_err(cuda(phase))?;
        if !v.is_empty() {
            self.nccl
                .all_gather(&send, &mut recv)
                .map_err(|e| nccl_error(phase, e))?;
        }
        self.download(phase, &recv, w * v.len())
    }

    /// Refuses a collective in which a rank `q` of `(q, n)` would send this one `n` bytes
    /// beyond the bound, before anything is allocated for it.
    fn check_lens(
        &self,
        phase: &'static str,
        lens: impl IntoIterator<Item = (usize, usize)>,
    ) -> Result<(), CommError> {
        let max = self.max_message.get();
        match lens.into_iter().find(|&(_, n)| n > max) {
            Some((q, n)) => Err(CommError::Malformed {
                rank: q as u32,
                phase,
                detail: format!("a message of {n} bytes, above this run's bound of {max}"),
            }),
            None => Ok(()),
        }
    }

    /// Moves `out[q]` to rank `q` for the `q` in `peers`, receiving `lens[q]` bytes from each,
    /// in one NCCL group.
    fn exchange(
        &self,
        phase: &'static str,
        out: &[Vec<u8>],
        lens: &[usize],
        peers: impl Iterator<Item = (bool, bool, usize)> + Clone,
    ) -> Result<Vec<Vec<u8>>, CommError> {
        let w = self.world() as usize;
        let mut sends = Vec::with_capacity(w);
        let mut recvs = Vec::with_capacity(w);
        for (q, &len) in lens.iter().enumerate().take(w) {
            sends.push(self.upload(phase, out.get(q).map_or(&[][..], |v| &v[..]))?);
            recvs.push(
                self.stream
                    .alloc_zeros::<u8>(len.max(1))
                    .map_err(cuda(phase))?,
            );
        }
        {
            let mut group = self.nccl.group();
            let mut recv_views: Vec<_> = recvs.iter_mut().map(|r| Some(r.slice_mut(..))).collect();
            for (send, recv, q) in peers.clone() {
                if send && out.get(q).is_some_and(|v| !v.is_empty()) {
                    group
                        .send(sends[q].slice(..out[q].len()), q as i32)
                        .map_err(|e| nccl_error(phase, e))?;
                }
                if recv && lens[q] > 0 {
                    if let Some(view) = recv_views[q].take() {
                        group
                            .recv(view, q as i32)
                            .map_err(|e| nccl_error(phase, e))?;
                    }
                }
            }
        }
        let mut got = Vec::with_capacity(w);
        for (q, r) in recvs.iter().enumerate() {
            got.push(if lens[q] > 0 {
                self.download(phase, r, lens[q])?
            } else {
                Vec::new()
            });
        }
        Ok(got)
    }
}

fn cuda(phase: &'static str) -> impl Fn(DriverError) -> CommError {
    move |e| CommError::Nccl {
        phase,
        detail: format!("CUDA: {e}"),
        retriable: false,
    }
}

fn nccl_error(phase: &'static str, e: cudarc::nccl::result::NcclError) -> CommError {
    use cudarc::nccl::sys::ncclResult_t as R;
    let retriable = matches!(
        e.0,
        R::ncclSystemError | R::ncclRemoteError | R::ncclInternalError
    );
    CommError::Nccl {
        phase,
        detail: format!("{:?}", e.0),
        retriable,
    }
}

impl Communicator for NcclComm {
    fn rank(&self) -> u32 {
        self.quic.rank()
    }
    fn world(&self) -> u32 {
        self.quic.world()
    }
    fn all_gather(&self, phase: &'static str, mine: &[u8]) -> Result<Vec<Vec<u8>>, CommError> {
        let _f = self.begin(phase)?;
        let w = self.world() as usize;
        let lens = self.all_gather_u64(phase, &[mine.len() as u64])?;
        self.check_lens(phase, lens.iter().map(|&n| n as usize).enumerate())?;
        let max = lens.iter().copied().max().unwrap_or(0) as usize;
        if max == 0 {
            return Ok(vec![Vec::new(); w]);
        }
        let mut padded = mine.to_vec();
        padded.resize(max, 0);
        let send = self.upload(phase, &padded)?;
        let mut recv = self
            .stream
            .alloc_zeros::<u8>(w * max)
            .map_err(cuda(phase))?;
        self.nccl
            .all_gather(&send, &mut recv)
            .map_err(|e| nccl_error(phase, e))?;
        let all = self.download(phase, &recv, w * max)?;
        self.count(
            mine.len() * (w - 1),
            lens.iter().sum::<u64>() as usize - mine.len(),
        );
        Ok(all
            .chunks(max)
            .zip(&lens)
            .map(|(c, &n)| c[..n as usize].to_vec())
            .collect())
    }
    fn all_to_all(
        &self,
        phase: &'static str,
        mut out: Vec<Vec<u8>>,
    ) -> Result<Vec<Vec<u8>>, CommError> {
        let _f = self.begin(phase)?;
        let (w, me) = (self.world() as usize, self.rank() as usize);
        out.resize(w, Vec::new());
        let sizes: Vec<u64> = out.iter().map(|v| v.len() as u64).collect();
        let matrix = self.all_gather_u64(phase, &sizes)?;
        // What rank q sends here: row q, column me.
        let lens: Vec<usize> = (0..w)
            .map(|q| {
                if q == me {
                    0
                } else {
                    matrix[q * w + me] as usize
                }
            })
            .collect();
        self.check_lens(phase, lens.iter().copied().enumerate())?;
        let peers = (0..w).filter(move |&q| q != me).map(|q| (true, true, q));
        let mut got = self.exchange(phase, &out, &lens, peers)?;
        self.count(
            sizes.iter().sum::<u64>() as usize - out[me].len(),
            lens.iter().sum(),
        );
        got[me] = std::mem::take(&mut out[me]);
        Ok(got)
    }
    fn all_reduce_sum(&self, phase: &'static str, v: &mut [u64]) -> Result<(), CommError> {
        if v.is_empty() {
            return Ok(());
        }
        let _f = self.begin(phase)?;
        let mut d = self.upload(phase, v)?;
        self.nccl
            .all_reduce_in_place(&mut d, &ReduceOp::Sum)
            .map_err(|e| nccl_error(phase, e))?;
        let sum = self.download(phase, &d, v.len())?;
        v.copy_from_slice(&sum);
        self.count(8 * v.len(), 8 * v.len());
        Ok(())
    }
    fn gather(
        &self,
        phase: &'static str,
        mine: Vec<u8>,
    ) -> Result<Option<Vec<Vec<u8>>>, CommError> {
        let _f = self.begin(phase)?;
        let (w, me) = (self.world() as usize, self.rank() as usize);
        let lens = self.all_gather_u64(phase, &[mine.len() as u64])?;
        if me == 0 {
            let want: Vec<usize> = (0..w)
                .map(|q| if q == 0 { 0 } else { lens[q] as usize })
                .collect();
            self.check_lens(phase, want.iter().copied().enumerate())?;
            let peers = (1..w).map(|q| (false, true, q));
            let mut got = self.exchange(phase, &[], &want, peers)?;
            self.count(0, want.iter().sum());
            got[0] = mine;
            Ok(Some(got))
        } else {
            let mut out = vec![Vec::new(); w];
            let n = mine.len();
            out[0] = mine;
            self.exchange(phase, &out, &vec![0; w], std::iter::once((true, false, 0)))?;
            self.count(n, 0);
            Ok(None)
        }
    }
    fn broadcast(
        &self,
        phase: &'static str,
        root: u32,
        data: Vec<u8>,
    ) -> Result<Vec<u8>, CommError> {
        let _f = self.begin(phase)?;
        let me = self.rank();
        let mut len = self.upload(phase, &[data.len() as u64])?;
        self.nccl
            .broadcast_in_place(&mut len, root as i32)
            .map_err(|e| nccl_error(phase, e))?;
        let n = self.download(phase, &len, 1)?[0] as usize;
        if me != root {
            self.check_lens(phase, [(root as usize, n)])?;
        }
        if n == 0 {
            return Ok(Vec::new());
        }
        let mut buf = if me == root {
            self.upload(phase, &data)?
        } else {
            self.stream.alloc_zeros::<u8>(n).map_err(cuda(phase))?
        };
        self.nccl
            .broadcast_in_place(&mut buf, root as i32)
            .map_err(|e| nccl_error(phase, e))?;
        if me == root {
            self.count(n * (self.world() as usize - 1), 0);
            return Ok(data);
        }
        self.count(0, n);
        self.download(phase, &buf, n)
    }
    fn traffic(&self) -> Traffic {
        self.traffic.get()
    }
    fn bound_messages(&self, max: usize) {
        self.max_message.set(max);
        self.quic.bound_messages(max);
    }
}
