//! The `cooc` binary: parses the command line, runs the command, maps errors to the
//! documented exit codes (see `cooc::error::Exit`). The commands that serve HTTP (`serve`,
//! `demo`) are wired here, the one place the trainer reaches the server crate.

use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use cooc::cli::{self, DemoArgs};
use cooc::error::ConfigError;
use cooc_serve::server::{self, ServeArgs};

/// Item co-occurrence recommenders: generate data, train top-K neighbours, serve them.
#[derive(Parser, Debug)]
#[command(name = "cooc", version, about, propagate_version = true)]
struct Top {
    #[command(subcommand)]
    cmd: TopCmd,
    /// More log lines on a terminal: -v info, -vv debug (RUST_LOG, when set, decides instead).
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    verbose: u8,
}

// Parsed once per process: the size of its largest variant does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand, Debug)]
enum TopCmd {
    #[command(flatten)]
    Lib(cli::Cmd),
    /// Serve the live model over HTTP (same as the cooc-serve binary).
    Serve(ServeArgs),
    /// Generate, train, evaluate, register and serve in one go.
    Demo(DemoArgs),
}

fn serve(a: ServeArgs) -> anyhow::Result<()> {
    let cfg = a.config().map_err(ConfigError)?;
    tokio::runtime::Runtime::new()?.block_on(a.serve(cfg))
}

/// `cooc demo`: the port is taken before any work, so a busy port fails at once (exit 2)
/// and registers nothing.
fn demo(a: DemoArgs) -> anyhow::Result<()> {
    let listener = match a.no_serve {
        true => None,
        false => Some(
            std::net::TcpListener::bind(&a.listen)
                .map_err(|e| ConfigError(format!("--listen {}: {e}", a.listen)))?,
        ),
    };
    let model_dir = a.dir.join("model");
    let outcome = cli::run_demo(a)?;
    let Some(listener) = listener else {
        return Ok(());
    };
    listener.set_nonblocking(true)?;
    tokio::runtime::Runtime::new()?.block_on(async {
        let listener = tokio::net::TcpListener::from_std(listener)?;
        let addr = listener.local_addr()?;
        println!(
            "\nServing on http://{addr} (Ctrl-C to stop). Try:\n  curl 'http://127.0.0.1:{}/recommend?book_id={}&k=5'",
            addr.port(),
            outcome.example
        );
        let cfg = server::Config {
            store: cooc_model::ModelStore::new(model_dir),
            model_name: "recommender".into(),
            default_k: 5,
            reload_interval: std::time::Duration::from_secs(2),
            limits: server::Limits::default(),
        };
        server::run(listener, cfg, server::shutdown_signal())
            .await
            .context("serving the demo model")
    })
}

fn run(top: Top) -> anyhow::Result<u8> {
    match top.cmd {
        TopCmd::Lib(cmd) => cli::run(cli::Cli { cmd }),
        TopCmd::Serve(a) => serve(a).map(|()| 0),
        TopCmd::Demo(a) => demo(a).map(|()| 0),
    }
}

/// Logs go to stderr. `RUST_LOG` decides the level when set. Otherwise, on a terminal the
/// run's summary says what matters, so only warnings are logged (`-v` info, `-vv` debug),
/// human-readable; elsewhere (a pod, a pipe, a file) every line is a JSON object at info,
/// for a log collector.
fn init_logs(verbose: u8) {
    use std::io::IsTerminal;
    use tracing_subscriber::EnvFilter;
    let tty = std::io::stderr().is_terminal();
    let level = match (tty, verbose) {
        (_, 2..) => "debug",
        (true, 0) => "warn",
        _ => "info",
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| level.into());
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if tty {
        logs.with_ansi(true).init();
    } else {
        logs.json().flatten_event(true).init();
    }
}

fn main() -> ExitCode {
    let top = Top::parse();
    init_logs(top.verbose);
    match run(top) {
        Ok(code) => ExitCode::from(code),
        Err(e) if cli::broken_pipe(&e) => ExitCode::SUCCESS,
        Err(e) => {
            let code = cli::exit_code(&e);
            eprintln!("cooc: error: {e:#}");
            ExitCode::from(code as u8)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    /// Every command has a description, every argument a one-line help; the commands that
    /// run in pods (`train`, `tune`, `serve`) take every option from the environment too (the
    /// README says so).
    #[test]
    fn every_command_and_flag_explains_itself() {
        fn walk(cmd: &clap::Command, path: &str, missing: &mut Vec<String>) {
            if cmd.get_about().is_none() && !path.is_empty() {
                missing.push(format!("{path}: no description"));
            }
            let in_pods = ["cooc train", "cooc tune", "cooc serve"].contains(&path);
            for arg in cmd.get_arguments() {
                let id = arg.get_id().as_str();
                if ["help", "version"].contains(&id) {
                    continue;
                }
                let help = arg.get_help().map(|h| h.to_string()).unwrap_or_default();
                if help.trim().is_empty() {
                    missing.push(format!("{path} {id}: no help"));
                }
                let flag = arg.get_long().is_some();
                if in_pods && flag && id != "verbose" && arg.get_env().is_none() {
                    missing.push(format!("{path} --{id}: no environment variable"));
                }
            }
            for sub in cmd.get_subcommands() {
                if sub.get_name() == "help" {
                    continue;
                }
                walk(
                    sub,
                    &format!("{path} {}", sub.get_name())
                        .trim_start()
                        .replace("  ", " "),
                    missing,
                );
            }
        }
        let top = Top::command();
        top.clone().debug_assert();
        let mut missing = Vec::new();
        walk(&top, "cooc", &mut missing);
        assert!(missing.is_empty(), "{}", missing.join("\n"));
    }
}
