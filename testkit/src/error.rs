//! Why a process could not be driven as asked.

use std::io;
use std::process::ExitStatus;
use std::time::Duration;

use licensed::cluster::admin::AdminError;

/// Why a process could not be driven as asked. `name` says which process (`node 3`).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file, directory, mount or process operation failed.
    #[error("{name}: {context}: {source}")]
    Io {
        /// The process.
        name: String,
        /// What was being done.
        context: String,
        /// The cause.
        source: io::Error,
    },
    /// The operation needs a process that is not running.
    #[error("{name} is running")]
    Running {
        /// The process.
        name: String,
    },
    /// The operation needs a running process.
    #[error("{name} is not running")]
    NotRunning {
        /// The process.
        name: String,
    },
    /// The process ended before printing its ready line.
    #[error("{name} exited ({status}) before it was ready; end of its log:\n{log_tail}")]
    ExitedEarly {
        /// The process.
        name: String,
        /// How it ended.
        status: ExitStatus,
        /// The last lines of its log.
        log_tail: String,
    },
    /// The process closed its stdout without printing its ready line.
    #[error("{name} closed its output before it was ready; end of its log:\n{log_tail}")]
    NoReadyLine {
        /// The process.
        name: String,
        /// The last lines of its log.
        log_tail: String,
    },
    /// The process did not print its ready line in time; it has been killed.
    #[error("{name} not ready within {timeout:?} (killed); end of its log:\n{log_tail}")]
    NotReady {
        /// The process.
        name: String,
        /// How long it was given.
        timeout: Duration,
        /// The last lines of its log.
        log_tail: String,
    },
    /// The process ignored SIGTERM for too long; it has been killed.
    #[error("{name} still running {timeout:?} after SIGTERM (killed)")]
    StopTimeout {
        /// The process.
        name: String,
        /// How long it was given.
        timeout: Duration,
    },
    /// Something did not happen in time (the process is left as it is).
    #[error("{name}: no {what} within {timeout:?}")]
    Timeout {
        /// The process.
        name: String,
        /// What was waited for.
        what: String,
        /// How long it was given.
        timeout: Duration,
    },
    /// An HTTP request to the process failed.
    #[error("{name}: {url}: {source}")]
    Http {
        /// The process.
        name: String,
        /// What was asked.
        url: String,
        /// The cause.
        source: reqwest::Error,
    },
    /// An admin call failed: the node was unreachable, refused, or answered oddly.
    #[error("{name}: {source}")]
    Admin {
        /// The node asked.
        name: String,
        /// What the admin client reports.
        source: AdminError,
    },
    /// A clock offset was asked for, but libfaketime is not installed.
    #[error("libfaketime not found (Debian package `faketime`)")]
    NoFaketime,
    /// The `licensed` executable was not found.
    #[error(
        "the licensed binary is not built: run `cargo build --bin licensed` (with the \
         profile of this build) or set LICENSED_BIN; looked for {searched}"
    )]
    NoBinary {
        /// The paths tried.
        searched: String,
    },
}

/// Wraps an I/O error with the process and what was being done.
pub(crate) fn io_error(name: &str, context: String) -> impl FnOnce(io::Error) -> Error {
    let name = name.to_string();
    move |source| Error::Io {
        name,
        context,
        source,
    }
}
