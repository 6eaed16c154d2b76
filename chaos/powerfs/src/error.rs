//! Errors of [`crate::PowerFs`].

use std::io;
use std::path::PathBuf;

/// What can go wrong when mounting, cutting power or unmounting.
#[derive(Debug, thiserror::Error)]
pub enum PowerFsError {
    /// FUSE cannot be used on this machine at all.
    #[error("FUSE is not available: {reason}")]
    FuseUnavailable {
        /// Why, and what to do about it.
        reason: String,
    },
    /// The mount point cannot be used.
    #[error("cannot mount on {}: {reason}", mountpoint.display())]
    BadMountpoint {
        /// The mount point.
        mountpoint: PathBuf,
        /// Why.
        reason: String,
    },
    /// The kernel or the mount helper refused the mount.
    #[error("mounting on {} failed: {reason}", mountpoint.display())]
    MountFailed {
        /// The mount point.
        mountpoint: PathBuf,
        /// Why, with a hint where one is known.
        reason: String,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// Unmounting failed (the mount was detached lazily instead, if possible).
    #[error("unmounting {} failed: {reason}", mountpoint.display())]
    UnmountFailed {
        /// The mount point.
        mountpoint: PathBuf,
        /// Why.
        reason: String,
    },
    /// An I/O error.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The error.
        #[source]
        source: io::Error,
    },
}

impl PowerFsError {
    /// An [`PowerFsError::Io`] with `context`.
    pub(crate) fn io(context: impl Into<String>, source: io::Error) -> PowerFsError {
        PowerFsError::Io {
            context: context.into(),
            source,
        }
    }
}
