//! Process-level plumbing of the `licensed` binary: logging, span export, the shutdown
//! signal and, in chaos builds, crash points.

pub mod trace_export;

use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::Layer;

pub use trace_export::TraceExport;

/// Logs to stderr, as text or (`format == "json"`) one JSON object per line (`RUST_LOG`
/// overrides the default filter), and exports spans over OTLP when the standard
/// `OTEL_EXPORTER_OTLP_ENDPOINT` is set (see [`trace_export`]). Keep the returned
/// exporter until the process ends: dropping it flushes the last spans.
pub fn init(format: &str, node_id: u64) -> Option<TraceExport> {
    // RUST_LOG filters the logs only: spans are exported whatever the log level.
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,openraft=warn"));
    // Colours only for a person at a terminal: a journal, `docker logs` or a file gets
    // plain text (and `NO_COLOR` turns them off anyway).
    let colour = std::io::IsTerminal::is_terminal(&std::io::stderr())
        && std::env::var_os("NO_COLOR").is_none();
    let logs = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(colour);
    let logs = if format == "json" {
        logs.json().with_filter(filter).boxed()
    } else {
        logs.with_filter(filter).boxed()
    };
    let (export, problem) = match TraceExport::from_env(node_id) {
        Ok(export) => (export, None),
        Err(problem) => (None, Some(problem)),
    };
    // This server's own spans (request, forward, proposal, commit wait, read-index
    // round), not openraft's internals.
    let spans = export.as_ref().map(|export| {
        tracing_opentelemetry::layer()
            .with_tracer(export.tracer())
            .with_filter(
                tracing_subscriber::filter::Targets::new()
                    .with_target("licensed", tracing::Level::INFO),
            )
    });
    tracing_subscriber::registry().with(logs).with(spans).init();
    if let Some(problem) = problem {
        tracing::error!(%problem, "tracing export not started");
    }
    export
}

/// Resolves on SIGTERM or Ctrl-C.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = terminate => {},
    }
}

/// Reads `FAILPOINTS` (e.g. `log-append-after=1%panic`) and makes a triggered panic a
/// process crash, the way a power cut or `kill -9` at that instant would look: a panic in
/// one task would otherwise leave the process half alive.
#[cfg(feature = "failpoints")]
pub fn arm_failpoints() -> fail::FailScenario<'static> {
    let scenario = fail::FailScenario::setup();
    if std::env::var_os("FAILPOINTS").is_some_and(|v| !v.is_empty()) {
        abort_on_panic();
        tracing::warn!("failpoints armed from FAILPOINTS");
    }
    scenario
}

/// Chaos builds only: from now on a panic anywhere prints its message (the default hook:
/// a failpoint's names the point, `failpoint apply-before panic`) and aborts the process.
/// Installed once, when the first failpoint is armed (at start or over HTTP).
#[cfg(feature = "failpoints")]
pub fn abort_on_panic() {
    static INSTALLED: std::sync::Once = std::sync::Once::new();
    INSTALLED.call_once(|| {
        let default_hook = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            default_hook(info);
            std::process::abort();
        }));
    });
}
