//! The gang harness: rank processes on loopback with a shared secret, generated inputs, and
//! the model identity the exactness tests compare.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use cooc_model::Model;

use super::{ok, p};

/// Every section of the model but its provenance.
pub(crate) fn identity_bytes(path: &Path) -> Vec<u8> {
    Model::open(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .identity_bytes()
}

/// The model's identity (every section but provenance), as a digest.
pub(crate) fn identity(path: &Path) -> u32 {
    Model::open(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .identity_digest()
}

pub(crate) fn free_ports(n: usize) -> Vec<u16> {
    let socks: Vec<_> = (0..n)
        .map(|_| std::net::UdpSocket::bind("127.0.0.1:0").unwrap())
        .collect();
    socks
        .iter()
        .map(|s| s.local_addr().unwrap().port())
        .collect()
}

/// `127.0.0.1:<free port>` for each of `n` ranks.
pub(crate) fn loopback_peers(n: usize) -> Vec<String> {
    free_ports(n)
        .iter()
        .map(|p| format!("127.0.0.1:{p}"))
        .collect()
}

pub(crate) fn secret(dir: &Path, name: &str) -> PathBuf {
    let f = dir.join(name);
    std::fs::write(&f, ok(&["secret"])).unwrap();
    f
}

/// Starts one static rank of `world` with stderr piped.
pub(crate) fn spawn_rank(
    args: &[&str],
    rank: u32,
    peers: &[String],
    secret: &Path,
    env: &[(&str, &str)],
) -> Child {
    Command::new(env!("CARGO_BIN_EXE_cooc"))
        .args(args)
        .args(["--rank", &rank.to_string()])
        .args(["--world-size", &peers.len().to_string()])
        .args(["--peers", &peers.join(",")])
        .args(["--secret-file", p(secret)])
        .args(["--run-id", "gang-test"])
        .env("RUST_LOG", "info")
        .envs(env.iter().copied())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting a rank")
}

/// Waits for a child at most `limit`; its exit code (None if it did not end in time:
/// it is killed) and its stderr.
pub(crate) fn finish(mut c: Child, limit: Duration) -> (Option<i32>, String) {
    let start = Instant::now();
    let code = loop {
        if let Some(s) = c.try_wait().unwrap() {
            break s.code();
        }
        if start.elapsed() > limit {
            c.kill().ok();
            c.wait().ok();
            break None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut err = String::new();
    if let Some(mut e) = c.stderr.take() {
        std::io::Read::read_to_string(&mut e, &mut err).ok();
    }
    (code, err)
}

pub(crate) fn gen(dir: &Path, size: &str) -> PathBuf {
    let d = dir.join(format!("data-{size}"));
    ok(&["gen", "--size", size, "--seed", "7", "--out", p(&d)]);
    d
}
