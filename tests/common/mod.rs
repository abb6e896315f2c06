//! Shared helpers for the integration tests: running the `cooc` binary, finding shared data.

#![allow(dead_code)]

pub(crate) mod gang;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// Runs `cooc` with `args`, returning its output (never panics on a non-zero exit).
pub(crate) fn cooc(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_cooc"))
        .args(args)
        .env("RUST_LOG", "warn")
        .output()
        .expect("running the cooc binary")
}

pub(crate) fn ok(args: &[&str]) -> String {
    let out = cooc(args);
    assert!(
        out.status.success(),
        "cooc {args:?} failed ({:?}):\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8 output")
}

pub(crate) fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// The project's shared datasets directory: `$COOC_SHARED_DIR` or `../shared` beside the
/// repository. `None` when absent: only optional checks use it (`required_dataset` is for
/// tests that need it, which are `#[ignore]`d).
pub(crate) fn shared_dataset(rel: &str) -> Option<PathBuf> {
    let base = std::env::var_os("COOC_SHARED_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared"));
    let p = base.join("datasets").join(rel);
    if p.is_file() {
        return Some(p);
    }
    None
}

/// A shared dataset an `#[ignore]`d test needs: a test run without it fails, naming it.
pub(crate) fn required_dataset(rel: &str) -> PathBuf {
    shared_dataset(rel).unwrap_or_else(|| {
        panic!("{rel} is not under $COOC_SHARED_DIR or ../shared/datasets: this test needs it")
    })
}

pub(crate) fn p(path: &Path) -> &str {
    path.to_str().expect("utf-8 path")
}
