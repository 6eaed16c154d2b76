//! `licensed`: parse the flags, start logging, run the node until SIGTERM or Ctrl-C.

use std::process::ExitCode;

use clap::Parser;
use licensed::config::Config;
use licensed::{run, Listeners};

/// See the `mimalloc` entry of Cargo.toml.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let config = Config::parse();
    let mut runtime = tokio::runtime::Builder::new_multi_thread();
    runtime.enable_all();
    if let Some(threads) = config.worker_threads {
        runtime.worker_threads(usize::from(threads));
    }
    match runtime.build() {
        Ok(runtime) => runtime.block_on(serve(config)),
        Err(e) => {
            eprintln!("licensed: cannot start the runtime: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Runs the node the flags describe until it is told to stop.
async fn serve(config: Config) -> ExitCode {
    // Held to the end: dropping it flushes the spans still queued for export.
    let _trace_export = licensed::telemetry::init(&config.log_format, config.node_id);
    // Chaos builds only: crash points from the FAILPOINTS environment variable.
    #[cfg(feature = "failpoints")]
    let _failpoints = licensed::telemetry::arm_failpoints();
    let result = match Listeners::bind(&config).await {
        Ok(listeners) => run(config, listeners, licensed::telemetry::shutdown_signal()).await,
        Err(e) => Err(e),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "licensed stopped");
            eprintln!("licensed: {e}");
            ExitCode::FAILURE
        }
    }
}
