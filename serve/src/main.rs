//! The `cooc-serve` binary: reads its settings from the environment, serves the live model.
//!
//! Exit codes: 0 after a clean drain, 2 for bad configuration, 1 for anything else.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use cooc_serve::server::{self, Config, MAX_K};

/// Serve a cooc model over HTTP (drop-in for the reference recommender predictor).
#[derive(Parser, Debug)]
#[command(version, about)]
struct Args {
    /// Model store directory (holds CURRENT and one directory per version).
    #[arg(long, env = "MODEL_DIR", default_value = "/workspace/model")]
    model_dir: std::path::PathBuf,
    /// Name served under /v1/models/<name>.
    #[arg(long, env = "MODEL_NAME", default_value = "recommender")]
    model_name: String,
    /// k when a request gives none (1..=100).
    #[arg(long, env = "DEFAULT_K", default_value_t = 5)]
    default_k: u32,
    /// Address to listen on.
    #[arg(long, env = "LISTEN", default_value = "0.0.0.0:8080")]
    listen: String,
    /// How often CURRENT is checked for a new version, in milliseconds.
    #[arg(long, env = "RELOAD_INTERVAL_MS", default_value_t = 2000)]
    reload_interval_ms: u64,
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let args = match Args::try_parse() {
        Ok(a) => a,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() { 2 } else { 0 });
        }
    };
    if !(1..=MAX_K).contains(&args.default_k) {
        eprintln!(
            "cooc-serve: DEFAULT_K={} is outside 1..={MAX_K}",
            args.default_k
        );
        return ExitCode::from(2);
    }
    let cfg = Config {
        model_dir: args.model_dir,
        model_name: args.model_name,
        default_k: args.default_k,
        reload_interval: Duration::from_millis(args.reload_interval_ms.max(50)),
    };
    let rt = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("cooc-serve: starting the runtime: {e}");
            return ExitCode::from(1);
        }
    };
    let result = rt.block_on(async {
        let listener = tokio::net::TcpListener::bind(&args.listen)
            .await
            .with_context(|| format!("listening on {}", args.listen))?;
        server::run(listener, cfg, server::shutdown_signal()).await
    });
    match result {
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
