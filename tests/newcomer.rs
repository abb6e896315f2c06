//! What a newcomer sees: on a terminal `cooc train` prints its summary and progress, not
//! log lines (until `RUST_LOG` or `-v` asks for them); in a pod, where stderr is no
//! terminal, every log line is a JSON object.

use std::io::Read;
use std::os::fd::{FromRawFd, OwnedFd};
use std::process::{Command, Stdio};

use crate::common::{cooc, p, stderr};

/// Runs `cooc args` with stderr on a pseudo-terminal and `env`; what it wrote there.
fn on_terminal(args: &[&str], env: &[(&str, &str)]) -> String {
    let (mut master, mut slave) = (0, 0);
    // SAFETY: openpty writes two new descriptors into the given integers; the other
    // arguments may be null.
    let rc = unsafe {
        libc::openpty(
            &mut master,
            &mut slave,
            std::ptr::null_mut(),
            std::ptr::null(),
            std::ptr::null(),
        )
    };
    assert_eq!(rc, 0, "openpty: {}", std::io::Error::last_os_error());
    // SAFETY: both descriptors were just opened and are owned here alone.
    let (master, slave) = unsafe { (OwnedFd::from_raw_fd(master), OwnedFd::from_raw_fd(slave)) };
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_cooc"));
    cmd.args(args)
        .env_remove("RUST_LOG")
        .envs(env.iter().copied())
        .stdout(Stdio::null())
        .stderr(Stdio::from(slave));
    let mut child = cmd.spawn().expect("running cooc");
    // The child holds the terminal now: drop this process's copy, so that reading ends
    // when the child exits.
    drop(cmd);
    let mut out = Vec::new();
    let mut master = std::fs::File::from(master);
    // Linux answers EIO once the last writer has gone: that is the end.
    let _ = master.read_to_end(&mut out);
    assert!(
        child.wait().unwrap().success(),
        "{}",
        String::from_utf8_lossy(&out)
    );
    String::from_utf8_lossy(&out).into_owned()
}

#[test]
fn a_terminal_gets_the_summary_and_progress_and_a_pod_gets_json_logs() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("model");
    let args = [
        "train",
        "--generate",
        "s",
        "--holdout",
        "last",
        "--model-dir",
        p(&store),
    ];
    let tty = on_terminal(&args, &[]);
    assert!(tty.contains("trained 200 books"), "{tty}");
    assert!(tty.contains("hold-out (last order of"), "{tty}");
    assert!(
        tty.contains("HitRate@10 ") && tty.contains("(popularity "),
        "{tty}"
    );
    assert!(tty.contains("is live in"), "{tty}");
    // The progress spinner names the phases; no log line reaches the terminal.
    assert!(tty.contains("similarity/top-K"), "{tty}");
    assert!(!tty.contains("INFO") && !tty.contains("{\""), "{tty}");

    let verbose = on_terminal(&args, &[("RUST_LOG", "info")]);
    assert!(
        verbose.contains("INFO") && verbose.contains("phase done"),
        "{verbose}"
    );
    let v = on_terminal(&[&args[..], &["-v", "--no-promote"]].concat(), &[]);
    assert!(v.contains("INFO"), "{v}");
    assert!(v.contains("not live (--no-promote)"), "{v}");

    // No terminal (a pod): JSON lines at info, then the summary.
    let out = Command::new(env!("CARGO_BIN_EXE_cooc"))
        .args(args)
        .env_remove("RUST_LOG")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let err = stderr(&out);
    let logs: Vec<serde_json::Value> = err
        .lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    assert!(
        logs.iter()
            .any(|l| l["level"] == "INFO" && l["message"] == "phase done"),
        "{err}"
    );
    assert!(err.contains("trained 200 books"), "{err}");
    // A bad gate outside 0..=1 is refused before anything runs.
    let bad = cooc(&[&args[..], &["--min-hit-rate", "1.1"]].concat());
    assert_eq!(bad.status.code(), Some(2), "{}", stderr(&bad));
}
