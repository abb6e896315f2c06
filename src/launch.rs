//! How a training run is launched: one process, N local rank processes on loopback, or one
//! member of a gang (static peer list or JobSet environment). Turns the gang flags into a
//! validated [`Launch`] once, runs the local launcher, and runs a member: join the gang,
//! run the pipeline, close the links with a reason the peers can print.
//!
//! Owns process spawning, the shared secret's file and the member's join/run/close
//! sequence; the pipeline owns what a run computes.

use std::ffi::OsString;
use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use rand_core::{OsRng, TryRngCore};

use anyhow::Context;
use clap::Args;

use crate::backend::Comm;
use crate::error::ConfigError;
use crate::gang::communicator::{Communicator, Traffic};
use crate::gang::jobset::JobSetIdentity;
use crate::gang::link::{Hello, MIN_SECRET_BYTES, PROTOCOL_VERSION};
use crate::gang::quic::{QuicComm, QuicSetup};
use crate::plan::TrainPlan;

/// A new shared secret: 32 random bytes, hex encoded (what `cooc secret` prints).
pub fn new_secret() -> anyhow::Result<String> {
    let mut b = [0u8; 32];
    OsRng
        .try_fill_bytes(&mut b)
        .map_err(|e| anyhow::anyhow!("the OS random source failed: {e}"))?;
    Ok(b.iter().map(|x| format!("{x:02x}")).collect())
}

/// Reads a secret file (surrounding whitespace trimmed: a Kubernetes Secret often ends in a
/// newline).
pub fn read_secret(path: &Path) -> Result<Vec<u8>, ConfigError> {
    let text = std::fs::read(path)
        .map_err(|e| ConfigError(format!("--secret-file {}: {e}", path.display())))?;
    if let Some(warning) = std::fs::metadata(path)
        .ok()
        .and_then(|m| world_readable_warning(path, m.permissions().mode()))
    {
        tracing::warn!("{warning}");
    }
    let s = text.trim_ascii().to_vec();
    if s.len() < MIN_SECRET_BYTES {
        return Err(ConfigError(format!(
            "--secret-file {}: the secret has {} bytes, at least {MIN_SECRET_BYTES} are needed (make one with `cooc secret`)",
            path.display(),
            s.len()
        )));
    }
    Ok(s)
}

/// The warning for a secret file that every user of the machine may read (`mode` is the
/// file's, symlinks followed), as ssh warns of an open private key; `None` when it is not.
fn world_readable_warning(path: &Path, mode: u32) -> Option<String> {
    (mode & 0o004 != 0).then(|| {
        format!(
            "--secret-file {} is readable by every user (mode {:o}): anyone who can read it can join the gang; \
             chmod 600 it (in Kubernetes, set the secret volume's defaultMode to 0440)",
            path.display(),
            mode & 0o777
        )
    })
}

/// Gang options: how this process takes part in a multi-rank training.
#[derive(Args, Debug, Clone, Default)]
pub struct GangOptions {
    /// This process's rank in a static gang (0..world-size).
    #[arg(long, env = "COOC_RANK")]
    pub rank: Option<u32>,
    /// Ranks in a static gang.
    #[arg(long, env = "COOC_WORLD_SIZE")]
    pub world_size: Option<u32>,
    /// host:port of every rank, in rank order (this rank listens on its own entry's port).
    #[arg(long, env = "COOC_PEERS", value_delimiter = ',')]
    pub peers: Option<Vec<String>>,
    /// Read rank, world size and peers from a JobSet pod's environment (see jobset/README.md).
    #[arg(long, env = "COOC_JOBSET")]
    pub jobset: bool,
    /// UDP port of the rank endpoint in --jobset mode.
    #[arg(long, env = "COOC_PORT", default_value_t = 7077)]
    pub port: u16,
    /// Start this many rank processes on loopback and wait for them.
    #[arg(long, env = "COOC_LOCAL_RANKS")]
    pub local_ranks: Option<u32>,
    /// File holding the ranks' shared secret (`cooc secret` makes one).
    #[arg(long, env = "COOC_SECRET_FILE")]
    pub secret_file: Option<PathBuf>,
    /// Identity of this run outside Kubernetes: ranks of other runs are refused.
    #[arg(long, env = "COOC_RUN_ID")]
    pub run_id: Option<String>,
    /// How long to wait for every rank to arrive (e.g. 3m, 90s).
    #[arg(long, env = "COOC_RENDEZVOUS_TIMEOUT", default_value = "3m", value_parser = humantime::parse_duration)]
    pub rendezvous_timeout: Duration,
}

/// A validated launch.
#[derive(Debug)]
pub enum Launch {
    /// One process, no gang.
    Single,
    /// Start this many rank processes on loopback and wait for them.
    Local(u32),
    /// Be one rank of a gang.
    Member(QuicSetup),
}

impl GangOptions {
    /// Validates the options; `fingerprint` is the training plan's, for the handshake.
    pub fn launch(
        self,
        fingerprint: String,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Launch, ConfigError> {
        let bad = |m: &str| Err(ConfigError(m.to_owned()));
        let statics = self.rank.is_some() || self.world_size.is_some() || self.peers.is_some();
        if let Some(n) = self.local_ranks {
            if statics || self.jobset {
                return bad("--local-ranks starts its own ranks: drop --rank, --world-size, --peers and --jobset");
            }
            if !(1..=64).contains(&n) {
                return bad("--local-ranks must be in 1..=64");
            }
            return Ok(Launch::Local(n));
        }
        if !statics && !self.jobset {
            return Ok(Launch::Single);
        }
        let secret_file = self.secret_file.as_deref().ok_or_else(|| {
            ConfigError("a gang member needs --secret-file (COOC_SECRET_FILE): the ranks' shared secret; `cooc secret` makes one".into())
        })?;
        let secret = read_secret(secret_file)?;
        let (rank, world, peers, job, restart_attempt, bind) = if self.jobset {
            if statics {
                return bad("--jobset reads rank, world size and peers from the pod environment: drop --rank, --world-size and --peers");
            }
            let id = JobSetIdentity::from_env(&env).map_err(|e| ConfigError(e.0))?;
            let peers = id.peers(self.port).map_err(|e| ConfigError(e.0))?;
            let bind = SocketAddr::from(([0, 0, 0, 0], self.port));
            (id.rank, id.world, peers, id.uid, id.restart_attempt, bind)
        } else {
            let (Some(rank), Some(world), Some(peers)) = (self.rank, self.world_size, self.peers)
            else {
                return bad("a static gang needs all of --rank, --world-size and --peers");
            };
            if world == 0 || rank >= world {
                return Err(ConfigError(format!(
                    "--rank {rank} must be below --world-size {world}"
                )));
            }
            if peers.len() != world as usize {
                return Err(ConfigError(format!(
                    "--peers lists {} address(es) for --world-size {world}: give one host:port per rank, in rank order",
                    peers.len()
                )));
            }
            let (host, port) = peers[rank as usize]
                .rsplit_once(':')
                .and_then(|(h, p)| Some((h, p.parse::<u16>().ok()?)))
                .ok_or_else(|| {
                    ConfigError(format!(
                        "--peers entry {rank} ({:?}) is not host:port",
                        peers[rank as usize]
                    ))
                })?;
            // A rank its peers reach over loopback (`--local-ranks`, or a gang on one
            // host) listens there only: nothing off the machine can reach its port.
            let ip = if is_loopback(host) {
                std::net::Ipv4Addr::LOCALHOST
            } else {
                std::net::Ipv4Addr::UNSPECIFIED
            };
            let job = self.run_id.clone().unwrap_or_else(|| "cooc".into());
            (rank, world, peers, job, 0, SocketAddr::from((ip, port)))
        };
        Ok(Launch::Member(QuicSetup {
            bind,
            peers,
            secret,
            hello: Hello {
                protocol: PROTOCOL_VERSION,
                job,
                restart_attempt,
                rank,
                world,
                fingerprint,
            },
            rendezvous_timeout: self.rendezvous_timeout,
        }))
    }
}

/// Whether `host` (of a `host:port` peer entry) names this machine's IPv4 loopback.
fn is_loopback(host: &str) -> bool {
    host == "localhost"
        || host
            .parse::<std::net::Ipv4Addr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// What a leaving rank tells the peers that are still waiting.
fn close_reason<T>(rank: u32, out: &anyhow::Result<T>) -> String {
    match out {
        Ok(_) => "done".to_owned(),
        Err(e) => format!("rank {rank} failed: {e:#}")
            .chars()
            .take(400)
            .collect(),
    }
}

/// Something a stop signal must do before the process exits.
type StopAction = Box<dyn Fn(&str) + Send>;

/// What a stop signal must do besides exiting: close this rank's links, stop local ranks.
static ON_STOP: std::sync::Mutex<Vec<StopAction>> = std::sync::Mutex::new(Vec::new());

fn on_stop(f: impl Fn(&str) + Send + 'static) {
    ON_STOP
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .push(Box::new(f));
}

/// Makes SIGTERM and SIGINT stop a training at once, registering nothing: the peers are
/// told why (their links close with the reason, so they exit promptly too), local ranks
/// are stopped, and the process exits 75, retriable: a Kueue preemption or an eviction
/// restarts the gang. In a `FROM scratch` image the process is PID 1, which the kernel
/// gives no default action for SIGTERM: without this it would wait for SIGKILL.
pub fn exit_on_stop_signals() -> anyhow::Result<()> {
    use signal_hook::consts::{SIGINT, SIGTERM};
    let mut signals = signal_hook::iterator::Signals::new([SIGTERM, SIGINT])
        .context("installing the SIGTERM/SIGINT handler")?;
    std::thread::Builder::new()
        .name("cooc-signals".into())
        .spawn(move || {
            if let Some(sig) = signals.forever().next() {
                let name = if sig == SIGTERM { "SIGTERM" } else { "SIGINT" };
                let reason = format!("stopped by {name}");
                for f in ON_STOP.lock().unwrap_or_else(|p| p.into_inner()).iter() {
                    f(&reason);
                }
                // Let the close frames leave before the process goes.
                std::thread::sleep(Duration::from_millis(300));
                eprintln!("cooc: {reason}; nothing was registered (exit 75: retriable)");
                std::process::exit(crate::error::Exit::Retriable as i32);
            }
        })
        .context("starting the signal thread")?;
    Ok(())
}

/// Runs one member of a gang: joins it over QUIC (then NCCL with `--comm nccl`), runs
/// `body` (the pipeline) over the gang, and closes every link with `done` or this rank's
/// failure. Returns `body`'s result, this rank's traffic, its rank and the world size.
pub fn run_member<T>(
    plan: &TrainPlan,
    setup: QuicSetup,
    comm: Comm,
    body: &dyn Fn(&TrainPlan, &dyn Communicator) -> anyhow::Result<T>,
) -> anyhow::Result<(T, Traffic, u32, u32)> {
    let rank = setup.hello.rank;
    let world = setup.hello.world;
    let quic = QuicComm::join(setup)
        .with_context(|| format!("rank {rank} of {world}: joining the gang"))?;
    let links = quic.abort_handle();
    on_stop(move |reason| links.close(&format!("rank {rank} {reason}")));
    let out = match comm {
        Comm::Quic => {
            let out = body(plan, &quic).map(|r| (r, quic.traffic()));
            quic.close(&close_reason(rank, &out));
            out
        }
        #[cfg(feature = "nccl")]
        Comm::Nccl => {
            let nccl = crate::gang::nccl::NcclComm::join(quic)
                .with_context(|| format!("rank {rank} of {world}: joining NCCL"))?;
            let out = body(plan, &nccl).map(|r| (r, nccl.traffic()));
            nccl.close(&close_reason(rank, &out));
            out
        }
        #[cfg(not(feature = "nccl"))]
        Comm::Nccl => {
            quic.close("this build has no NCCL");
            return Err(crate::backend::NCCL_UNAVAILABLE.into());
        }
    };
    let (r, traffic) = out.with_context(|| format!("rank {rank} of {world}"))?;
    Ok((r, traffic, rank, world))
}

/// Runs `n` rank processes of this executable on loopback with `args` (the original
/// command line without `--local-ranks`) plus each one's `--rank/--world-size/--peers`, a
/// fresh secret and run id; waits for all of them. Returns the gang's exit code: 2 if any
/// rank reported bad input, else 75 if any was retriable, else the first other failure.
pub fn run_local(n: u32, args: &[OsString], threads_per_rank: usize) -> anyhow::Result<i32> {
    let dir = tempfile::Builder::new().prefix("cooc-gang-").tempdir()?;
    let secret = dir.path().join("secret");
    std::fs::write(&secret, new_secret()?)?;
    std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o600))?;
    let run_id = format!("local-{}", &new_secret()?[..16]);
    // Free UDP ports, released just before the ranks bind them.
    let ports: Vec<u16> = {
        let socks: Vec<std::net::UdpSocket> = (0..n)
            .map(|_| std::net::UdpSocket::bind("127.0.0.1:0"))
            .collect::<Result<_, _>>()?;
        socks
            .iter()
            .map(|s| s.local_addr().map(|a| a.port()))
            .collect::<Result<_, _>>()?
    };
    let peers: Vec<String> = ports.iter().map(|p| format!("127.0.0.1:{p}")).collect();
    let exe = std::env::current_exe()?;
    let mut children = Vec::new();
    for r in 0..n {
        let mut cmd = std::process::Command::new(&exe);
        cmd.args(args)
            .arg("--rank")
            .arg(r.to_string())
            .arg("--world-size")
            .arg(n.to_string())
            .arg("--peers")
            .arg(peers.join(","))
            .arg("--secret-file")
            .arg(&secret)
            .arg("--run-id")
            .arg(&run_id)
            .env_remove("COOC_LOCAL_RANKS")
            .env("COOC_THREADS", threads_per_rank.to_string());
        let child = cmd.spawn()?;
        let pid = child.id() as libc::pid_t;
        // A stop signal sent to the launcher alone reaches its ranks too.
        on_stop(move |_| {
            // SAFETY: kill(2) with a child's pid and a valid signal number.
            unsafe { libc::kill(pid, libc::SIGTERM) };
        });
        children.push((r, child));
    }
    let mut codes = Vec::new();
    for (r, mut c) in children {
        let status = c.wait()?;
        let code = status.code().unwrap_or_else(|| {
            tracing::warn!("rank {r} was killed by a signal ({status})");
            128 + std::os::unix::process::ExitStatusExt::signal(&status).unwrap_or(0)
        });
        codes.push(code);
    }
    let code = if codes.iter().all(|&c| c == 0) {
        0
    } else if codes.contains(&2) {
        2
    } else if codes.contains(&75) {
        75
    } else {
        *codes.iter().find(|&&c| c != 0).expect("a failure")
    };
    Ok(code)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_world_readable_secret_is_warned_of_and_a_private_one_is_not() {
        let p = Path::new("/run/cooc/secret");
        let w = world_readable_warning(p, 0o100644).expect("0644 is world-readable");
        assert!(
            w.contains("/run/cooc/secret") && w.contains("644") && w.contains("chmod 600"),
            "{w}"
        );
        assert!(world_readable_warning(p, 0o100600).is_none());
        // Kubernetes' secret volume with defaultMode 0440 and an fsGroup: group only.
        assert!(world_readable_warning(p, 0o100440).is_none());
    }

    fn opts() -> GangOptions {
        GangOptions {
            port: 7077,
            rendezvous_timeout: Duration::from_secs(1),
            ..GangOptions::default()
        }
    }

    #[test]
    fn launches_are_validated_with_named_flags() {
        let none = |_: &str| None;
        assert!(matches!(
            opts().launch("fp".into(), none),
            Ok(Launch::Single)
        ));
        let local = GangOptions {
            local_ranks: Some(2),
            ..opts()
        };
        assert!(matches!(
            local.launch("fp".into(), none),
            Ok(Launch::Local(2))
        ));
        let half = GangOptions {
            rank: Some(0),
            ..opts()
        };
        let e = half.launch("fp".into(), none).unwrap_err();
        assert!(e.0.contains("--secret-file"), "{e}");

        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("s");
        std::fs::write(&f, "short\n").unwrap();
        let weak = GangOptions {
            rank: Some(0),
            world_size: Some(2),
            peers: Some(vec!["a:1".into(), "b:2".into()]),
            secret_file: Some(f.clone()),
            ..opts()
        };
        assert!(weak
            .clone()
            .launch("fp".into(), none)
            .unwrap_err()
            .0
            .contains("at least 16"));
        std::fs::write(&f, new_secret().unwrap()).unwrap();
        let Launch::Member(setup) = weak.clone().launch("fp".into(), none).unwrap() else {
            panic!("a member")
        };
        assert_eq!(setup.bind, "0.0.0.0:1".parse().unwrap());
        assert_eq!(setup.hello.world, 2);
        // A gang on loopback (as `--local-ranks` starts it) listens on loopback only.
        for own in ["127.0.0.1:7000", "localhost:7000"] {
            let local = GangOptions {
                peers: Some(vec![own.into(), "127.0.0.1:7001".into()]),
                ..weak.clone()
            };
            let Launch::Member(setup) = local.launch("fp".into(), none).unwrap() else {
                panic!("a member")
            };
            assert_eq!(setup.bind, "127.0.0.1:7000".parse().unwrap(), "{own}");
        }
        let wrong = GangOptions {
            peers: Some(vec!["a:1".into()]),
            ..weak.clone()
        };
        assert!(wrong
            .launch("fp".into(), none)
            .unwrap_err()
            .0
            .contains("1 address(es)"));
        let past = GangOptions {
            rank: Some(2),
            ..weak
        };
        assert!(past
            .launch("fp".into(), none)
            .unwrap_err()
            .0
            .contains("below --world-size"));
    }

    #[test]
    fn secrets_are_fresh_hex() {
        let (a, b) = (new_secret().unwrap(), new_secret().unwrap());
        assert_eq!(a.len(), 64);
        assert!(a.bytes().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(a, b);
    }
}
