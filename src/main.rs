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
            model_dir,
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

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    match run(Top::parse()) {
        Ok(code) => ExitCode::from(code),
        Err(e) if cli::broken_pipe(&e) => ExitCode::SUCCESS,
        Err(e) => {
            let code = cli::exit_code(&e);
            eprintln!("cooc: error: {e:#}");
            ExitCode::from(code as u8)
        }
    }
}
