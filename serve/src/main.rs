//! The `cooc-serve` binary: reads its settings from the environment, serves the live model.
//!
//! Exit codes: 0 after a clean drain, 2 for bad configuration (or an address that cannot be
//! bound), 1 for anything else.

use std::process::ExitCode;

use clap::Parser;
use cooc_serve::server::ServeArgs;

/// Serve a cooc model over HTTP (drop-in for the reference recommender predictor).
#[derive(Parser, Debug)]
#[command(version, about)]
struct Args {
    #[command(flatten)]
    serve: ServeArgs,
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let args = match Args::try_parse() {
        Ok(a) => a.serve,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() { 2 } else { 0 });
        }
    };
    let cfg = match args.config() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("cooc-serve: {e}");
            return ExitCode::from(2);
        }
    };
    let rt = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("cooc-serve: starting the runtime: {e}");
            return ExitCode::from(1);
        }
    };
    match rt.block_on(args.serve(cfg)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("cooc-serve: {e:#}");
            ExitCode::from(if e.chain().any(|c| c.is::<std::io::Error>()) {
                2
            } else {
                1
            })
        }
    }
}
