//! The Raft state machine: the [`Ledger`] in memory, made durable by the log plus
//! snapshots written to files.
//!
//! Why in memory: the borrow decision runs on every apply and must be cheap; the log in
//! RocksDB is already fsynced before an entry commits, so the state machine need not sync
//! again. On restart the latest snapshot is loaded and openraft re-applies the committed
//! log after it (the log store persists the committed id). Snapshots are taken every
//! `snapshot_every` entries, which bounds the replay.

use std::fs;
use std::io::{self, Cursor, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

use futures::{Stream, TryStreamExt};
use openraft::alias::{LogIdOf, SnapshotMetaOf, SnapshotOf, StoredMembershipOf};
use openraft::storage::{EntryResponder, RaftStateMachine};
use openraft::{EntryPayload, OptionalSend, RaftSnapshotBuilder};
use serde::{Deserialize, Serialize};

use crate::state::{Ledger, LedgerSnapshot, Outcome, SnapshotView};

use super::TypeConfig;

/// Snapshot payload as openraft moves it around (and over the network).
pub type SnapshotData = Cursor<Vec<u8>>;

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

    /// Read access. A poisoned lock means an apply panicked mid-way; the ledger is still
    /// the last consistent one openraft saw, so reads go on.
    pub fn read(&self) -> RwLockReadGuard<'_, Ledger> {
        self.0
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn write(&self) -> RwLockWriteGuard<'_, Ledger> {
        let guard = self
            .0
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        self.1.fetch_add(1, Ordering::AcqRel);
        guard
    }
}

/// Where the state machine stands in the log.
#[derive(Debug, Clone, Default)]
struct Applied {
    log_id: Option<LogIdOf<TypeConfig>>,
    membership: StoredMembershipOf<TypeConfig>,
}

/// openraft's view of the ledger.
#[derive(Debug, Clone)]
pub struct LedgerStore {
    ledger: SharedLedger,
    applied: Arc<RwLock<Applied>>,
    snapshot_dir: PathBuf,
}

#[derive(Serialize, Deserialize)]
struct SnapshotHeader {
    meta: SnapshotMetaOf<TypeConfig>,
}

impl LedgerStore {
    /// Opens the state machine, loading the newest snapshot in `snapshot_dir` if any.
    pub fn open(snapshot_dir: &Path) -> io::Result<LedgerStore> {
        fs::create_dir_all(snapshot_dir)?;
        let store = LedgerStore {
            ledger: SharedLedger::default(),
            applied: Arc::default(),
            snapshot_dir: snapshot_dir.to_path_buf(),
        };
        if let Some((meta, data)) = store.read_newest_snapshot()? {
            store.load(&meta, &data)?;
        }
        Ok(store)
    }

    /// The ledger handle the API reads from.
    pub fn ledger(&self) -> SharedLedger {
        self.ledger.clone()
    }

    fn load(&self, meta: &SnapshotMetaOf<TypeConfig>, data: &[u8]) -> io::Result<()> {
        let snapshot = decode_ledger(data)?;
        *self.ledger.write() = Ledger::from_snapshot(snapshot);
        let mut applied = self.applied.write().unwrap_or_else(|p| p.into_inner());
        applied.log_id = meta.last_log_id;
        applied.membership = meta.last_membership.clone();
        Ok(())
    }

    fn snapshot_path(&self, meta: &SnapshotMetaOf<TypeConfig>) -> PathBuf {
        let name = match &meta.last_log_id {
            Some(log_id) => format!(
                "{:020}-{}.snap",
                log_id.index(),
                log_id.committed_leader_id()
            ),
            None => "00000000000000000000-none.snap".to_string(),
        };
        self.snapshot_dir.join(name)
    }

    /// Writes a snapshot atomically (temp file, fsync, rename, fsync dir) and keeps only
    /// the newest two, so a crash mid-write never leaves a half snapshot as the newest.
    fn persist(&self, meta: &SnapshotMetaOf<TypeConfig>, data: &[u8]) -> io::Result<()> {
        let header =
            serde_json::to_vec(&SnapshotHeader { meta: meta.clone() }).map_err(io::Error::other)?;
        let path = self.snapshot_path(meta);
        let temp = path.with_extension("tmp");
        {
            let mut file = fs::File::create(&temp)?;
            file.write_all(&(header.len() as u64).to_be_bytes())?;
            file.write_all(&header)?;
            file.write_all(data)?;
            file.sync_all()?;
        }
        fs::rename(&temp, &path)?;
        fs::File::open(&self.snapshot_dir)?.sync_all()?;
        let mut names = self.snapshot_names()?;
        while names.len() > 2 {
            let oldest = names.remove(0);
            let _ = fs::remove_file(self.snapshot_dir.join(oldest));
        }
        Ok(())
    }

    fn snapshot_names(&self) -> io::Result<Vec<String>> {
        let mut names = Vec::new();
        for entry in fs::read_dir(&self.snapshot_dir)? {
            let name = entry?.file_name().to_string_lossy().into_owned();
            if name.ends_with(".snap") {
                names.push(name);
            }
        }
        // Zero-padded index first: lexicographic order is log order.
        names.sort();
        Ok(names)
    }

    fn read_newest_snapshot(&self) -> io::Result<Option<(SnapshotMetaOf<TypeConfig>, Vec<u8>)>> {
        let Some(newest) = self.snapshot_names()?.pop() else {
            return Ok(None);
        };
        let bytes = fs::read(self.snapshot_dir.join(&newest))?;
        let invalid = |what: &str| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("snapshot {newest}: {what}"),
            )
        };
        let (len, rest) = bytes
            .split_at_checked(8)
            .ok_or_else(|| invalid("truncated"))?;
        let len = u64::from_be_bytes(len.try_into().map_err(|_| invalid("truncated"))?) as usize;
        let (header, data) = rest
            .split_at_checked(len)
            .ok_or_else(|| invalid("truncated"))?;
        let header: SnapshotHeader =
            serde_json::from_slice(header).map_err(|e| invalid(&e.to_string()))?;
        Ok(Some((header.meta, data.to_vec())))
    }
}

fn encode_ledger(snapshot: &SnapshotView<'_>) -> io::Result<Vec<u8>> {
    bincode::serde::encode_to_vec(snapshot, bincode::config::standard()).map_err(io::Error::other)
}

fn decode_ledger(data: &[u8]) -> io::Result<LedgerSnapshot> {
    bincode::serde::decode_from_slice(data, bincode::config::standard())
        .map(|(snapshot, _)| snapshot)
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
}

impl RaftSnapshotBuilder<TypeConfig> for LedgerStore {
    type SnapshotData = SnapshotData;

    async fn build_snapshot(&mut self) -> Result<SnapshotOf<TypeConfig, SnapshotData>, io::Error> {
        // The applied position and the ledger must match: take both under the ledger lock,
        // which apply also holds while it changes either. Under the lock only the frozen
        // view (shared records, no copies): applies wait for as short as possible; the
        // sorting and encoding happen after.
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
        let store = self.clone();
        let meta_for_write = meta.clone();
        let data = tokio::task::spawn_blocking(move || -> io::Result<Vec<u8>> {
            let data = encode_ledger(&frozen.view())?;
            fail::fail_point!("snapshot-build");
            store.persist(&meta_for_write, &data)?;
            Ok(data)
        })
        .await
        .map_err(io::Error::other)??;
        tracing::info!(last_log_id = ?meta.last_log_id, bytes = data.len(), "snapshot built");
        Ok(SnapshotOf::<TypeConfig, SnapshotData> {
            meta,
            snapshot: Cursor::new(data),
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

    async fn apply<Strm>(&mut self, mut entries: Strm) -> Result<(), io::Error>
    where
        Strm: Stream<Item = Result<EntryResponder<TypeConfig>, io::Error>> + Unpin + OptionalSend,
    {
        while let Some((entry, responder)) = entries.try_next().await? {
            fail::fail_point!("apply-before");
            let outcome = {
                let mut ledger = self.ledger.write();
                let outcome = match &entry.payload {
                    EntryPayload::Normal(command) => ledger.apply(command),
                    EntryPayload::Blank => Outcome::Nothing,
                    EntryPayload::Membership(membership) => {
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
        let data = snapshot.into_inner();
        let store = self.clone();
        let meta_owned = meta.clone();
        let data = tokio::task::spawn_blocking(move || -> io::Result<Vec<u8>> {
            fail::fail_point!("snapshot-install-before-persist");
            store.persist(&meta_owned, &data)?;
            fail::fail_point!("snapshot-install-after-persist");
            Ok(data)
        })
        .await
        .map_err(io::Error::other)??;
        self.load(meta, &data)?;
        tracing::info!(last_log_id = ?meta.last_log_id, bytes = data.len(), "snapshot installed");
        Ok(())
    }

    async fn get_current_snapshot(
        &mut self,
    ) -> Result<Option<SnapshotOf<TypeConfig, SnapshotData>>, io::Error> {
        Ok(self.read_newest_snapshot()?.map(
            |(meta, data)| SnapshotOf::<TypeConfig, SnapshotData> {
                meta,
                snapshot: Cursor::new(data),
            },
        ))
    }
}
