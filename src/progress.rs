//! Phase timing and terminal progress: a spinner per phase on a terminal, a log line always,
//! and the run's [`Timings`] table.

use std::io::IsTerminal;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};

/// A running phase; [`Phase::finish`] logs and returns its duration in seconds.
pub struct Phase {
    name: &'static str,
    started: Instant,
    bar: Option<ProgressBar>,
}

impl Phase {
    /// Starts timing (and, on a terminal, showing) the phase `name`.
    pub fn start(name: &'static str) -> Phase {
        let bar = std::io::stderr().is_terminal().then(|| {
            let b = ProgressBar::new_spinner().with_message(name);
            b.set_style(
                ProgressStyle::with_template("{spinner} {msg} {elapsed}")
                    .unwrap_or_else(|_| ProgressStyle::default_spinner()),
            );
            b.enable_steady_tick(Duration::from_millis(120));
            b
        });
        Phase {
            name,
            started: Instant::now(),
            bar,
        }
    }

    /// Ends the phase; its duration in seconds.
    pub fn finish(self) -> f64 {
        if let Some(b) = &self.bar {
            b.finish_and_clear();
        }
        let secs = self.started.elapsed().as_secs_f64();
        tracing::info!(
            phase = self.name,
            seconds = format!("{secs:.3}"),
            "phase done"
        );
        secs
    }
}

/// A progress bar over `len` units on a terminal, hidden otherwise.
pub fn bar(len: u64, what: &str) -> ProgressBar {
    if !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let b = ProgressBar::new(len).with_message(what.to_owned());
    b.set_style(
        ProgressStyle::with_template("{msg} [{bar:30}] {percent}% {elapsed} (eta {eta})")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    b
}

/// How long one phase of a run took.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PhaseTime {
    /// The phase, e.g. `count`.
    pub name: &'static str,
    /// Wall-clock seconds.
    pub seconds: f64,
}

/// The phases of a run in the order they ran.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Timings(Vec<PhaseTime>);

impl Timings {
    /// Appends the phases of `other`, after these.
    pub fn extend(&mut self, other: Timings) {
        self.0.extend(other.0);
    }

    /// Ends `phase` and records it.
    pub fn finish(&mut self, phase: Phase) {
        let name = phase.name;
        let seconds = phase.finish();
        self.0.push(PhaseTime { name, seconds });
    }

    /// Runs `f` as the phase `name`.
    pub fn time<T>(&mut self, name: &'static str, f: impl FnOnce() -> T) -> T {
        let phase = Phase::start(name);
        let out = f();
        self.finish(phase);
        out
    }

    /// The recorded phases.
    pub fn iter(&self) -> impl Iterator<Item = &PhaseTime> {
        self.0.iter()
    }

    /// `read 0.981s, count 0.432s, ...`: the phases as the summary lines print them (the
    /// benchmark scripts read this form).
    pub fn summary(&self) -> String {
        self.0
            .iter()
            .map(|p| format!("{} {:.3}s", p.name, p.seconds))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// This process's peak resident set size in bytes so far (`getrusage`), where the
/// platform reports it: a rank states its own, which a wrapper timing the gang cannot.
pub fn peak_rss() -> Option<u64> {
    let mut usage = std::mem::MaybeUninit::<libc::rusage>::zeroed();
    // SAFETY: `getrusage` fills the struct it is given and reads nothing else.
    let rc = unsafe { libc::getrusage(libc::RUSAGE_SELF, usage.as_mut_ptr()) };
    // SAFETY: zero-initialised and, on success, written by the call.
    let usage = unsafe { usage.assume_init() };
    // Linux reports kibibytes.
    (rc == 0 && usage.ru_maxrss > 0).then(|| usage.ru_maxrss as u64 * 1024)
}
