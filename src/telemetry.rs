//! Process-level plumbing of the `licensed` binary: logging, the shutdown signal and,
//! in chaos builds, crash points.

/// Logs to stderr, as text or (`format == "json"`) one JSON object per line; `RUST_LOG`
/// overrides the default filter.
pub fn init(format: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,openraft=warn"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if format == "json" {
        builder.json().init();
    } else {
        builder.init();
    }
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
