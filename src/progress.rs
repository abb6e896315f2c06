//! Phase timing and terminal progress: a spinner per phase on a terminal, a log line always.

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
