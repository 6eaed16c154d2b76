//! `licensed-powerfs`: a FUSE file system that simulates power loss, for the chaos suite.
//!
//! [`PowerFs::mount`] mounts a directory that passes everything through to a backing
//! directory. Writes reach the backing files at once, but the file system remembers what
//! was not made durable yet, and [`PowerFs::power_cut`] undoes it, as a machine losing power
//! would: a node's data directory on the mount, the node killed, a cut, and the node
//! restarted on the same directory sees what survived a power failure. The model follows
//! LazyFS (the file system Jepsen uses for the same purpose).
//!
//! # What a cut loses
//!
//! - **File data** not made durable: every write, truncate, and length-changing or zeroing
//!   `fallocate` since the file's last `fsync` or `fdatasync` (through any handle of the
//!   file; both count as durable for data). Files opened with `O_SYNC` or `O_DSYNC` make
//!   every write durable. The file's synced length and synced bytes come back: appended data
//!   is cut off, overwritten bytes get their synced value, a truncated file its synced
//!   length and bytes. A file created and written but never synced comes back empty.
//! - **Nothing else.** Metadata operations (create, mkdir, rename, link, unlink, rmdir,
//!   chmod, utimes) are durable as soon as they return, which is LazyFS's default. A file
//!   renamed after its last sync keeps its synced data under the new name; data is tracked
//!   per backing file (device and inode number), not per path. `fsyncdir` is accepted and
//!   does nothing.
//!
//! # Cut modes
//!
//! - [`CutMode::Clean`]: all unsynced data is lost.
//! - [`CutMode::Torn`]: of each file's unsynced writes, in the order they were made, a
//!   prefix survives that ends at a 4096-byte page boundary of the file (or nothing
//!   survives); the rest is lost. The prefix is drawn with the given seed, file by file in
//!   the order of their backing device and inode numbers. Where writes since the sync
//!   overlapped each other (an unsynced region written again) or the length was changed by
//!   truncate or fallocate, the prefix is only chosen among the positions after the last
//!   such operation, or is empty: then the result is still exactly what the prefix of
//!   writes produced, without keeping a copy of the overwritten unsynced bytes. For the
//!   append-only files RocksDB writes, every page boundary is a candidate.
//!
//! # Bookkeeping cost
//!
//! Per file with unsynced changes: its synced length, the synced bytes of regions
//! overwritten since the sync (saved once, the first time they are overwritten), the set of
//! changed ranges, and one record per run of contiguous writes. An appending file needs no
//! saved bytes at all. Syncs pass no `fsync` to the backing file system: the machine under
//! the backing directory is assumed not to lose power, and RocksDB's frequent `fdatasync`s
//! stay cheap.
//!
//! # Caching
//!
//! Entries and attributes are returned with a zero time to live, files are opened with
//! direct I/O (`FOPEN_DIRECT_IO`), and a cut also invalidates every inode the kernel knows.
//! So a cut is done in place, without remounting, and the next reader sees the post-cut
//! contents and sizes.
//!
//! # Limitations
//!
//! - Shared writable `mmap` of files on the mount is not supported (direct I/O); RocksDB
//!   does not use it by default.
//! - A cut expects no process to have files open on the mount (kill the node first); a cut
//!   waits for changes in flight, but a process still writing afterwards writes after the
//!   cut.
//! - `fallocate` with `FALLOC_FL_COLLAPSE_RANGE` or `FALLOC_FL_INSERT_RANGE` is refused
//!   (`EOPNOTSUPP`). Extended attributes and POSIX locks are left to the kernel's defaults
//!   (locks work locally, which is what RocksDB's `LOCK` file needs).
//! - Mounting needs `/dev/fuse` and either root (the mount is made directly) or the
//!   `fusermount3` helper. The mount is removed when [`PowerFs`] is dropped, also while a
//!   test panics. If a process is killed and leaves a dead mount ("Transport endpoint is not
//!   connected"), remove it with `fusermount3 -u <dir>` (or `umount -l <dir>` as root);
//!   [`PowerFs::mount`] detaches such a dead mount at its mount point by itself.
#![cfg_attr(not(test), deny(unused_crate_dependencies))]
#![warn(missing_docs)]

mod error;
mod fs;
mod tracker;
mod undo;

use std::ffi::CString;
use std::fmt;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use fuser::{BackgroundSession, Config, INodeNo, MountOption, SessionACL};
use serde::Serialize;

pub use error::PowerFsError;

/// How much unsynced data a power cut loses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub enum CutMode {
    /// All unsynced data is lost.
    Clean,
    /// Of each file's unsynced writes (in the order they were made), a prefix survives that
    /// ends at a 4096-byte page boundary of the file, chosen with this seed; the rest is
    /// lost. See the crate documentation for the exact rule.
    Torn {
        /// Seeds the choice of the surviving prefixes.
        seed: u64,
    },
}

/// What a power cut did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct CutReport {
    /// Files that lost data (written bytes, or a length change).
    pub files: usize,
    /// Bytes of unsynced writes that were lost.
    pub bytes_dropped: u64,
    /// Files that came back shorter than they were before the cut.
    pub files_truncated: usize,
}

/// Counters since the mount.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct PowerFsStats {
    /// `fsync` and `fdatasync` calls on files.
    pub fsyncs: u64,
    /// Write requests.
    pub writes: u64,
    /// Bytes written.
    pub bytes_written: u64,
    /// Bytes written and not synced yet (what a clean cut would drop now).
    pub unsynced_bytes: u64,
    /// Power cuts so far.
    pub cuts: u64,
    /// Bytes of unsynced writes dropped by all cuts so far.
    pub bytes_dropped: u64,
}

/// A mounted power-loss file system. Unmounted by [`PowerFs::unmount`] or on drop.
pub struct PowerFs {
    server: Option<BackgroundSession>,
    shared: Arc<fs::Shared>,
    backing: PathBuf,
    mountpoint: PathBuf,
}

impl fmt::Debug for PowerFs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PowerFs")
            .field("backing", &self.backing)
            .field("mountpoint", &self.mountpoint)
            .field("mounted", &self.server.is_some())
            .field("stats", &self.stats())
            .finish()
    }
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

fn cstring(p: &Path) -> io::Result<CString> {
    CString::new(p.as_os_str().as_bytes()).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))
}

/// `umount2(path, flags)`.
fn umount2(path: &Path, flags: libc::c_int) -> io::Result<()> {
    let c = cstring(path)?;
    // SAFETY: `c` is a valid C string.
    if unsafe { libc::umount2(c.as_ptr(), flags) } == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Runs the unprivileged unmount helper: `fusermount3 -u [-z] path` (or `fusermount`).
fn fusermount_unmount(path: &Path, lazy: bool) -> io::Result<()> {
    let mut last = io::Error::from(io::ErrorKind::NotFound);
    for bin in ["fusermount3", "fusermount"] {
        let mut cmd = Command::new(bin);
        cmd.arg("-u");
        if lazy {
            cmd.arg("-z");
        }
        match cmd.arg(path).output() {
            Ok(out) if out.status.success() => return Ok(()),
            Ok(out) => {
                last = io::Error::other(format!(
                    "{bin} -u failed: {}",
                    String::from_utf8_lossy(&out.stderr).trim()
                ))
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => last = e,
        }
    }
    Err(last)
}

/// Whether an unmount helper is on the `PATH`.
fn has_fusermount() -> bool {
    let Some(path) = std::env::var_os("PATH") else {
        return false;
    };
    std::env::split_paths(&path)
        .any(|dir| dir.join("fusermount3").exists() || dir.join("fusermount").exists())
}

/// Detaches a dead FUSE mount (its server gone) at `path`, if there is one.
fn clear_dead_mount(path: &Path) -> Result<(), PowerFsError> {
    match std::fs::symlink_metadata(path) {
        Err(e) if e.raw_os_error() == Some(libc::ENOTCONN) => {
            let detached = if is_root() {
                umount2(path, libc::MNT_DETACH)
            } else {
                fusermount_unmount(path, true)
            };
            detached.map_err(|e| PowerFsError::BadMountpoint {
                mountpoint: path.to_path_buf(),
                reason: format!(
                    "a dead FUSE mount is left there and could not be removed ({e}); \
                     run `fusermount3 -u {}`",
                    path.display()
                ),
            })
        }
        _ => Ok(()),
    }
}

impl PowerFs {
    /// Mounts at `mountpoint` (created if missing, must be empty), passing through to
    /// `backing` (created if missing). Returns once the mount serves requests.
    ///
    /// Needs `/dev/fuse`, and root or the `fusermount3` helper. The two directories must
    /// not contain each other. A dead FUSE mount left at `mountpoint` by a killed process
    /// is detached first.
    pub fn mount(backing: &Path, mountpoint: &Path) -> Result<PowerFs, PowerFsError> {
        if !Path::new("/dev/fuse").exists() {
            return Err(PowerFsError::FuseUnavailable {
                reason: "/dev/fuse missing (load the fuse module: `modprobe fuse`; in a \
                         container, pass the device: `--device /dev/fuse`)"
                    .into(),
            });
        }
        if !is_root() && !has_fusermount() {
            return Err(PowerFsError::FuseUnavailable {
                reason: "not root, and no fusermount3 on the PATH to mount as a user \
                         (run as root or install the fuse3 package)"
                    .into(),
            });
        }
        std::fs::create_dir_all(backing).map_err(|e| {
            PowerFsError::io(
                format!("creating backing directory {}", backing.display()),
                e,
            )
        })?;
        let backing = backing.canonicalize().map_err(|e| {
            PowerFsError::io(
                format!("resolving backing directory {}", backing.display()),
                e,
            )
        })?;
        clear_dead_mount(mountpoint)?;
        let bad = |reason: String| PowerFsError::BadMountpoint {
            mountpoint: mountpoint.to_path_buf(),
            reason,
        };
        std::fs::create_dir_all(mountpoint).map_err(|e| {
            PowerFsError::io(format!("creating mount point {}", mountpoint.display()), e)
        })?;
        let mountpoint = mountpoint.canonicalize().map_err(|e| {
            PowerFsError::io(format!("resolving mount point {}", mountpoint.display()), e)
        })?;
        if mountpoint.starts_with(&backing) || backing.starts_with(&mountpoint) {
            return Err(bad(format!(
                "it and the backing directory {} contain each other",
                backing.display()
            )));
        }
        let mut listing = std::fs::read_dir(&mountpoint).map_err(|e| {
            PowerFsError::io(format!("listing mount point {}", mountpoint.display()), e)
        })?;
        if listing.next().is_some() {
            return Err(bad("it is not empty".into()));
        }

        let (filesystem, shared) = fs::PowerFilesystem::new(backing.clone())
            .map_err(|e| PowerFsError::io(format!("reading {}", backing.display()), e))?;
        let mut config = Config::default();
        config.mount_options = vec![
            MountOption::FSName("licensed-powerfs".into()),
            MountOption::Subtype("powerfs".into()),
            MountOption::DefaultPermissions,
            MountOption::NoAtime,
        ];
        // As root the mount is made directly and may let every user in; a user mount goes
        // through fusermount3, which only allows that with `user_allow_other` configured.
        config.acl = if is_root() {
            SessionACL::All
        } else {
            SessionACL::Owner
        };
        config.n_threads = Some(2);
        let failed = |source: io::Error| {
            let reason = match source.raw_os_error() {
                Some(libc::EPERM) | Some(libc::EACCES) => {
                    "not permitted (run as root, or as a user allowed to use fusermount3)"
                        .to_string()
                }
                Some(libc::ENODEV) => "the kernel has no FUSE support (`modprobe fuse`)".into(),
                _ => source.to_string(),
            };
            PowerFsError::MountFailed {
                mountpoint: mountpoint.clone(),
                reason,
                source,
            }
        };
        let server = fuser::Session::new(filesystem, &mountpoint, &config).map_err(failed)?;
        let server = server.spawn().map_err(failed)?;
        let mut powerfs = PowerFs {
            server: Some(server),
            shared,
            backing,
            mountpoint,
        };
        // The kernel has initialised the connection; check that the mount point now shows it.
        let parent = powerfs
            .mountpoint
            .parent()
            .unwrap_or(Path::new("/"))
            .to_path_buf();
        let on = std::fs::metadata(&powerfs.mountpoint).map(|m| m.dev());
        let under = std::fs::metadata(&parent).map(|m| m.dev());
        match (on, under) {
            (Ok(a), Ok(b)) if a != b => Ok(powerfs),
            (on, _) => {
                let _ = powerfs.shutdown();
                Err(PowerFsError::MountFailed {
                    mountpoint: powerfs.mountpoint.clone(),
                    reason: "the mount point does not show the mounted file system".into(),
                    source: on
                        .err()
                        .unwrap_or_else(|| io::Error::other("same device as parent")),
                })
            }
        }
    }

    /// Simulates a power cut: every change to file data not made durable by `fsync` or
    /// `fdatasync` is undone on the backing files, completely ([`CutMode::Clean`]) or
    /// leaving a page-aligned prefix of each file's unsynced writes ([`CutMode::Torn`]).
    /// Metadata changes (creates, renames, unlinks, directories) are kept.
    ///
    /// Precondition: no process has files open on the mount (kill the node first). The
    /// mount stays mounted, and the next reader through it sees the post-cut contents.
    /// Unsynced state is reset: after the cut, every file counts as synced.
    pub fn power_cut(&mut self, mode: CutMode) -> Result<CutReport, PowerFsError> {
        let report = self
            .shared
            .tracker
            .cut(mode)
            .map_err(|e| PowerFsError::io("restoring backing files for a power cut", e))?;
        // Belt and braces: nothing should be cached (direct I/O, zero TTLs), but drop
        // whatever the kernel holds for the inodes it knows.
        if let Some(server) = &self.server {
            let notifier = server.notifier();
            for ino in self.shared.known_inodes() {
                // Inodes the kernel already forgot give ENOENT: nothing to drop.
                let _ = notifier.inval_inode(INodeNo(ino), 0, 0);
            }
        }
        Ok(report)
    }

    /// Counters since the mount: syncs seen, writes and bytes written, bytes currently
    /// unsynced, cuts so far and bytes they dropped.
    pub fn stats(&self) -> PowerFsStats {
        self.shared.tracker.stats()
    }

    /// Where the file system is mounted (canonical path).
    pub fn mountpoint(&self) -> &Path {
        &self.mountpoint
    }

    /// The backing directory (canonical path).
    pub fn backing(&self) -> &Path {
        &self.backing
    }

    /// Unmounts and waits for the file system to stop. If the mount is busy (files still
    /// open), it is detached lazily and an error returned. Also done on drop, ignoring
    /// errors. Unmounting is not a power cut: unsynced data stays in the backing files, and
    /// a new mount counts every file as synced.
    pub fn unmount(mut self) -> Result<(), PowerFsError> {
        self.shutdown()
    }

    fn shutdown(&mut self) -> Result<(), PowerFsError> {
        let Some(server) = self.server.take() else {
            return Ok(());
        };
        let mp = self.mountpoint.clone();
        let failed = |reason: String| PowerFsError::UnmountFailed {
            mountpoint: mp.clone(),
            reason,
        };
        let unmounted = if is_root() {
            umount2(&mp, 0)
        } else {
            fusermount_unmount(&mp, false)
        };
        match unmounted {
            // Not mounted any more (someone else unmounted it): the file system threads have ended too.
            Ok(()) => {}
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {}
            Err(e) => {
                let lazy = if is_root() {
                    umount2(&mp, libc::MNT_DETACH)
                } else {
                    fusermount_unmount(&mp, true)
                };
                // The file system threads end once the last open file is closed; not waited for.
                drop(server);
                return Err(failed(match lazy {
                    Ok(()) => format!("{e}; detached lazily instead"),
                    Err(l) => format!("{e}; lazy detach failed too: {l}"),
                }));
            }
        }
        server
            .join()
            .map_err(|e| failed(format!("file system thread: {e}")))
    }
}

impl Drop for PowerFs {
    fn drop(&mut self) {
        let _ = self.shutdown();
    }
}
