//! The Raft state machine: the [`Ledger`] in memory, made durable by the log plus
//! snapshots written to files.
//!
//! Why in memory: the borrow decision runs on every apply and must be cheap; the log in
//! RocksDB is already fsynced before an entry commits, so the state machine need not sync
//! again. On restart the newest readable snapshot is loaded and openraft re-applies the
//! committed log after it (the log store persists the committed id). Snapshots are taken
//! every `snapshot_every` entries, which bounds the replay.
//!
//! Snapshots never sit whole in memory: they are encoded straight into their file, sent
//! from it in chunks, received into a temp file and decoded from it. All of that file
//! work, and the decoding, runs in `spawn_blocking`, off the async workers that carry the
//! heartbeats.

mod snapshot_file;

use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

use futures::{Stream, TryStreamExt};
use openraft::alias::{LogIdOf, SnapshotMetaOf, SnapshotOf, StoredMembershipOf};
use openraft::storage::{EntryResponder, RaftStateMachine};
use openraft::{EntryPayload, OptionalSend, RaftSnapshotBuilder};

use crate::state::{Ledger, LedgerSnapshot, Outcome};

pub use snapshot_file::SnapshotData;
pub(crate) use snapshot_file::{create_rw, encode_header};
use snapshot_file::{decode_ledger, encode_ledger, SnapshotDir};

use super::TypeConfig;

/// The ledger, shared between the state machine (which writes) and the API (which reads).
///
/// Beside it, a version that changes whenever the ledger may have: every write access
/// bumps it while holding the lock, and the ledger object survives snapshot installs, so
/// equal versions mean an identical ledger. Readers use it to reuse what they rendered.
#[derive(Debug, Default, Clone)]
pub struct SharedLedger(Arc<RwLock<Ledger>>, Arc<AtomicU64>);

impl SharedLedger {
    /// Read access and the ledger's version (see the type's doc), consistent with each
    /// other: writers wait while the guard lives.
    pub fn read_versioned(&self) -> (RwLockReadGuard<'_, Ledger>, u64) {
        let guard = self.read();
        let version = self.1.load(Ordering::Acquire);
        (guard, version)
    }

    /// Read access. Only a writer can poison the lock, and a panic while writing aborts
    /// the process (`LedgerWrite`), so a reader never sees a half-changed ledger.
    pub fn read(&self) -> RwLockReadGuard<'_, Ledger> {
        self.0
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn write(&self) -> LedgerWrite<'_> {
        let guard = self
            .0
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        self.1.fetch_add(1, Ordering::AcqRel);
        LedgerWrite { guard }
    }
}

/// Write access to the ledger that aborts the process if a panic unwinds through it.
///
/// A panic in the middle of an apply (or a snapshot load) leaves the ledger half changed:
/// an index updated and its record not, a borrow counted and not stored. Nothing that
/// reads it afterwards could be trusted, and openraft would not apply the entry again.
/// Aborting makes it a crash: the restart rebuilds the ledger from the snapshot and the
/// log, which hold only whole entries.
pub(crate) struct LedgerWrite<'a> {
    guard: RwLockWriteGuard<'a, Ledger>,
}

impl std::ops::Deref for LedgerWrite<'_> {
    type Target = Ledger;
    fn deref(&self) -> &Ledger {
        &self.guard
    }
}

impl std::ops::DerefMut for LedgerWrite<'_> {
    fn deref_mut(&mut self) -> &mut Ledger {
        &mut self.guard
    }
}

impl Drop for LedgerWrite<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            tracing::error!("a panic while the ledger was being changed: aborting, the restart rebuilds it from the snapshot and the log");
            std::process::abort();
        }
    }
}

/// Where the state machine stands in the log. Written only while the ledger's write lock
/// is held (apply, snapshot load) and read for snapshots under its read lock, so the
/// ledger lock guards the pair: no one sees a ledger with another ledger's position.
#[derive(Debug, Clone, Default)]
struct Applied {
    log_id: Option<LogIdOf<TypeConfig>>,
    membership: StoredMembershipOf<TypeConfig>,
}

/// How many snapshots this process built and installed since it started, for the
/// cluster status. Shared by the clones of the store; read with relaxed loads.
#[derive(Debug, Default)]
pub struct SnapshotCounters {
    built: AtomicU64,
    installed: AtomicU64,
}

impl SnapshotCounters {
    /// Snapshots this process built from its own ledger.
    pub fn built(&self) -> u64 {
        self.built.load(Ordering::Relaxed)
    }

    /// Snapshots this process received from a leader and installed.
    pub fn installed(&self) -> u64 {
        self.installed.load(Ordering::Relaxed)
    }
}

/// openraft's view of the ledger.
#[derive(Debug, Clone)]
pub struct LedgerStore {
    ledger: SharedLedger,
    applied: Arc<RwLock<Applied>>,
    snapshots: SnapshotDir,
    counters: Arc<SnapshotCounters>,
}

impl LedgerStore {
    /// Opens the state machine in `snapshot_dir`: removes the temp files of interrupted
    /// writes and loads the newest snapshot that decodes. A snapshot that does not is
    /// logged and set aside (renamed `.corrupt`) and the next older one is tried; openraft
    /// then re-applies the log after whichever was loaded, or refuses to start if the log
    /// no longer reaches back to it.
    pub fn open(snapshot_dir: &Path) -> io::Result<LedgerStore> {
        let store = LedgerStore {
            ledger: SharedLedger::default(),
            applied: Arc::default(),
            snapshots: SnapshotDir::open(snapshot_dir)?,
            counters: Arc::default(),
        };
        let mut candidates = store.snapshots.snapshots()?;
        while let Some(path) = candidates.pop() {
            match store.load_file(&path) {
                Ok(()) => break,
                Err(error) => {
                    tracing::error!(
                        file = %path.display(),
                        %error,
                        "cannot load the snapshot; setting it aside and trying the one before"
                    );
                    store.snapshots.set_aside(&path)?;
                }
            }
        }
        Ok(store)
    }

    /// The ledger handle the API reads from.
    pub fn ledger(&self) -> SharedLedger {
        self.ledger.clone()
    }

    /// The snapshot counters, shared with the store, for the cluster status.
    pub fn snapshot_counters(&self) -> Arc<SnapshotCounters> {
        Arc::clone(&self.counters)
    }

    /// The directory of the snapshot files, where incoming snapshots are assembled.
    pub fn snapshot_dir(&self) -> PathBuf {
        self.snapshots.path().to_path_buf()
    }

    fn load_file(&self, path: &Path) -> io::Result<()> {
        let (meta, data) = snapshot_file::open_snapshot(path)?;
        let snapshot = decode_ledger(&data)?;
        self.swap(&meta, Ledger::from_snapshot(snapshot));
        Ok(())
    }

    /// Replaces the ledger and its applied position in one step under the ledger lock.
    /// The old ledger is freed after the lock is released.
    fn swap(&self, meta: &SnapshotMetaOf<TypeConfig>, ledger: Ledger) {
        let old = {
            let mut guard = self.ledger.write();
            let old = std::mem::replace(&mut *guard, ledger);
            let mut applied = self.applied.write().unwrap_or_else(|p| p.into_inner());
            applied.log_id = meta.last_log_id;
            applied.membership = meta.last_membership.clone();
            old
        };
        drop(old);
    }
}

/// Logs a failed snapshot build or install at error level with the OS's reason (a full
/// disk: "No space left on device (os error 28)") before openraft gets the error.
fn failed(what: &'static str, error: io::Error) -> io::Error {
    tracing::error!(%error, what, "snapshot failed");
    error
}

/// Runs blocking snapshot work off the async workers.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> io::Result<T> + Send + 'static,
) -> io::Result<T> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(io::Error::other)?
}

impl RaftSnapshotBuilder<TypeConfig> for LedgerStore {
    type SnapshotData = SnapshotData;

    async fn build_snapshot(&mut self) -> Result<SnapshotOf<TypeConfig, SnapshotData>, io::Error> {
        // The applied position and the ledger must match: take both under the ledger lock,
        // which apply also holds while it changes either. Under the lock only the frozen
        // view (shared records, no copies): applies wait for as short as possible; the
        // sorting and encoding happen after, straight into the file.
        let (mut frozen, meta) = {
            let ledger = self.ledger.read();
            let applied = self
                .applied
                .read()
                .unwrap_or_else(|p| p.into_inner())
                .clone();
            let meta = SnapshotMetaOf::<TypeConfig> {
                last_log_id: applied.log_id,
                last_membership: applied.membership,
            };
            (ledger.freeze(), meta)
        };
        let started = std::time::Instant::now();
        let snapshots = self.snapshots.clone();
        let meta_for_write = meta.clone();
        let data = blocking(move || {
            snapshots.write(&meta_for_write, |out| {
                let len = encode_ledger(&frozen.view(), out)?;
                fail::fail_point!("snapshot-build");
                Ok(len)
            })
        })
        .await
        .map_err(|error| failed("build a snapshot", error))?;
        self.counters.built.fetch_add(1, Ordering::Relaxed);
        crate::metrics::storage::observe_snapshot_built(started.elapsed(), data.len());
        tracing::info!(last_log_id = ?meta.last_log_id, bytes = data.len(), "snapshot built");
        Ok(SnapshotOf::<TypeConfig, SnapshotData> {
            meta,
            snapshot: data,
        })
    }
}

impl RaftStateMachine<TypeConfig> for LedgerStore {
    type SnapshotData = SnapshotData;
    type SnapshotBuilder = Self;

    async fn applied_state(
        &mut self,
    ) -> Result<(Option<LogIdOf<TypeConfig>>, StoredMembershipOf<TypeConfig>), io::Error> {
        let applied = self.applied.read().unwrap_or_else(|p| p.into_inner());
        Ok((applied.log_id, applied.membership.clone()))
    }

    // One span per applied batch, a trace of its own (the log entries carry no request
    // context); the sampler thins these out like any other root span.
    #[tracing::instrument(name = "apply", level = "info", skip_all)]
    async fn apply<Strm>(&mut self, mut entries: Strm) -> Result<(), io::Error>
    where
        Strm: Stream<Item = Result<EntryResponder<TypeConfig>, io::Error>> + Unpin + OptionalSend,
    {
        while let Some((entry, responder)) = entries.try_next().await? {
            fail::fail_point!("apply-before");
            let outcome = {
                let mut ledger = self.ledger.write();
                let outcome = match &entry.payload {
                    EntryPayload::Normal(command) => {
                        let before = crate::metrics::ledger::before_apply(&ledger, command);
                        let outcome = ledger.apply(command);
                        crate::metrics::ledger::observe_applied(&ledger, command, before, &outcome);
                        outcome
                    }
                    EntryPayload::Blank => Outcome::Nothing,
                    EntryPayload::Membership(membership) => {
                        let ids = |ids: Vec<u64>| {
                            ids.iter()
                                .map(ToString::to_string)
                                .collect::<Vec<_>>()
                                .join(", ")
                        };
                        ledger.record_membership(format!(
                            "membership at log index {}: voters [{}], learners [{}]",
                            entry.log_id.index(),
                            ids(membership.voter_ids().collect()),
                            ids(membership.learner_ids().collect()),
                        ));
                        let mut applied = self.applied.write().unwrap_or_else(|p| p.into_inner());
                        applied.membership = StoredMembershipOf::<TypeConfig>::new(
                            Some(entry.log_id),
                            membership.clone(),
                        );
                        Outcome::Nothing
                    }
                };
                self.applied
                    .write()
                    .unwrap_or_else(|p| p.into_inner())
                    .log_id = Some(entry.log_id);
                outcome
            };
            fail::fail_point!("apply-after");
            if let Some(responder) = responder {
                responder.send(outcome);
            }
        }
        Ok(())
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.clone()
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMetaOf<TypeConfig>,
        snapshot: SnapshotData,
    ) -> Result<(), io::Error> {
        let store = self.clone();
        let meta = meta.clone();
        let bytes = snapshot.len();
        let last_log_id = meta.last_log_id;
        let started = std::time::Instant::now();
        let decode_ms = blocking(move || {
            // Decoded before it is put in place: a snapshot that does not decode is refused
            // (the leader sends it again) instead of becoming the newest on disk.
            let ledger = Ledger::from_snapshot(decode_ledger::<LedgerSnapshot>(&snapshot)?);
            let decode_ms = started.elapsed().as_millis();
            fail::fail_point!("snapshot-install-before-persist");
            drop(store.snapshots.install(&meta, snapshot)?);
            fail::fail_point!("snapshot-install-after-persist");
            store.swap(&meta, ledger);
            Ok(decode_ms)
        })
        .await
        .map_err(|error| failed("install a snapshot", error))?;
        self.counters.installed.fetch_add(1, Ordering::Relaxed);
        crate::metrics::storage::observe_snapshot_installed(started.elapsed(), bytes);
        let total_ms = started.elapsed().as_millis();
        tracing::info!(
            ?last_log_id,
            bytes,
            decode_ms,
            total_ms,
            "snapshot installed"
        );
        Ok(())
    }

    async fn get_current_snapshot(
        &mut self,
    ) -> Result<Option<SnapshotOf<TypeConfig, SnapshotData>>, io::Error> {
        let snapshots = self.snapshots.clone();
        let newest = blocking(move || snapshots.newest()).await?;
        Ok(
            newest.map(|(meta, data)| SnapshotOf::<TypeConfig, SnapshotData> {
                meta,
                snapshot: data,
            }),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Set in the child process the test below starts.
    const CHILD: &str = "LICENSED_TEST_PANIC_IN_LEDGER_WRITE";

    #[test]
    fn a_panic_while_the_ledger_is_being_changed_aborts_the_process() {
        if std::env::var_os(CHILD).is_some() {
            let ledger = SharedLedger::default();
            let _write = ledger.write();
            panic!("in the middle of changing the ledger");
        }
        let status = std::process::Command::new(std::env::current_exe().expect("test binary"))
            .args([
                "--exact",
                "raft::state_machine::tests::a_panic_while_the_ledger_is_being_changed_aborts_the_process",
                "--test-threads=1",
            ])
            .env(CHILD, "1")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .expect("run the child");
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(
            status.signal(),
            Some(6),
            "the child should die of SIGABRT, not unwind and go on: {status}"
        );
    }
}
