//! The Raft log, the vote and the committed log id in RocksDB.
//!
//! Why it looks like this:
//! - An entry counts towards a quorum only once its `IOFlushed` callback fires, so the
//!   callback must follow an fsync of the WAL. One long-lived flusher thread per store
//!   takes every callback queued since its last fsync, syncs the WAL once for the whole
//!   group (group commit) and then completes them in order. Appends themselves write
//!   without syncing and return at once, so the entries are readable immediately.
//! - `save_vote` is queued to the same thread and awaited: the vote is durable when it
//!   returns, the async runtime is never blocked on an fsync, and the vote's sync is
//!   ordered with the appends around it.
//! - `truncate_after` is synced the same way before it returns. openraft installs a
//!   snapshot as truncate, install, purge; the snapshot file is fsynced in between, so an
//!   unsynced truncation could be lost under a durable newer snapshot, and after a power
//!   cut the node would hold a conflicting suffix above it and refuse to start.
//! - Purge and the committed id are written without a sync. Losing one in a crash only
//!   brings back what Raft handles on restart (a prefix the snapshot covers, an older
//!   committed id), and the next fsync persists them anyway because the WAL is sequential.
//!   `DESIGN.md` lists every write and why it is or is not synced.
//!
//! Layout: column family [`LOGS_CF`] maps the big-endian `u64` index (so byte order is
//! index order) to the entry; [`META_CF`] holds the vote, the last purged and the committed
//! log id. Values are bincode 2 (standard config) over serde.

use std::fmt;
use std::io;
use std::marker::PhantomData;
use std::ops::{Bound, RangeBounds};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use openraft::alias::{LogIdOf, VoteOf};
use openraft::entry::RaftEntry;
use openraft::storage::{IOFlushed, LogState, RaftLogStorage};
use openraft::type_config::TypeConfigExt;
use openraft::{OptionalSend, RaftLogReader, RaftTypeConfig};
use rocksdb::{
    ColumnFamily, ColumnFamilyDescriptor, DBCompressionType, Direction, IteratorMode, Options,
    ReadOptions, WriteBatch, DB,
};
use serde::de::DeserializeOwned;
use serde::Serialize;

use super::recent_entries::{RecentEntries, RECENT_BYTES, RECENT_ENTRIES};

/// Column family of the log entries, keyed by big-endian index.
pub const LOGS_CF: &str = "logs";
/// Column family of the vote, the last purged and the committed log id.
pub const META_CF: &str = "meta";
/// Column family reserved for the state machine.
pub const SM_CF: &str = "sm";
/// Column families [`open_db`] creates besides the log store's own; extend this list
/// when another component keeps data in the same RocksDB instance.
pub const EXTRA_COLUMN_FAMILIES: &[&str] = &[SM_CF];

const VOTE_KEY: &[u8] = b"vote";
pub(super) const LAST_PURGED_KEY: &[u8] = b"last_purged";
pub(super) const COMMITTED_KEY: &[u8] = b"committed";

/// Why the log store could not open or do its I/O. Converted to `io::Error` at the
/// openraft trait boundary.
#[derive(Debug, thiserror::Error)]
pub enum LogStoreError {
    /// The database directory could not be created.
    #[error("cannot create {path}: {source}")]
    CreateDir {
        /// The directory.
        path: PathBuf,
        /// What the file system said.
        source: io::Error,
    },
    /// RocksDB refused to open the database.
    #[error("cannot open RocksDB at {path}: {source}")]
    Open {
        /// The database directory.
        path: PathBuf,
        /// What RocksDB said.
        source: rocksdb::Error,
    },
    /// A read, write or WAL sync failed.
    #[error("RocksDB: {0}")]
    Rocks(#[from] rocksdb::Error),
    /// The database was opened without one of the column families the store needs.
    #[error("column family {0:?} is missing; open the database with open_db")]
    MissingColumnFamily(&'static str),
    /// A value could not be encoded.
    #[error("cannot encode {what}: {source}")]
    Encode {
        /// What was being stored.
        what: &'static str,
        /// The encoder's reason.
        source: bincode::error::EncodeError,
    },
    /// A stored value could not be decoded: the data is corrupt or from another format.
    #[error("cannot decode {what}: {source}")]
    Decode {
        /// What was being read.
        what: &'static str,
        /// The decoder's reason.
        source: bincode::error::DecodeError,
    },
    /// The flusher thread is gone, so a vote could not be confirmed durable.
    #[error("the WAL flusher stopped before confirming the sync")]
    FlusherGone,
}

impl From<LogStoreError> for io::Error {
    fn from(error: LogStoreError) -> io::Error {
        let kind = match &error {
            LogStoreError::Decode { .. } => io::ErrorKind::InvalidData,
            _ => io::ErrorKind::Other,
        };
        io::Error::new(kind, error)
    }
}

/// Opens (or creates) the RocksDB instance at `path` with the log store's column families
/// and [`EXTRA_COLUMN_FAMILIES`].
pub fn open_db(path: impl AsRef<Path>) -> Result<Arc<DB>, LogStoreError> {
    open_db_with(path, EXTRA_COLUMN_FAMILIES)
}

/// Like [`open_db`], with an explicit list of extra column families. Column families
/// already in the database are opened too, so an older binary still opens a newer dir.
pub fn open_db_with(path: impl AsRef<Path>, extra: &[&str]) -> Result<Arc<DB>, LogStoreError> {
    open_db_using(path.as_ref(), extra, &db_options())
}

/// [`open_db_with`] on given options (tests enable RocksDB's statistics through them).
fn open_db_using(path: &Path, extra: &[&str], options: &Options) -> Result<Arc<DB>, LogStoreError> {
    std::fs::create_dir_all(path).map_err(|source| LogStoreError::CreateDir {
        path: path.to_path_buf(),
        source,
    })?;
    let mut names: Vec<String> = [LOGS_CF, META_CF]
        .iter()
        .chain(extra)
        .map(ToString::to_string)
        .collect();
    // A fresh directory has no column family list yet; that is not an error.
    for existing in DB::list_cf(options, path).unwrap_or_default() {
        if existing != rocksdb::DEFAULT_COLUMN_FAMILY_NAME && !names.contains(&existing) {
            names.push(existing);
        }
    }
    let descriptors = names
        .into_iter()
        .map(|name| ColumnFamilyDescriptor::new(name, options.clone()));
    DB::open_cf_descriptors(options, path, descriptors)
        .map(Arc::new)
        .map_err(|source| LogStoreError::Open {
            path: path.to_path_buf(),
            source,
        })
}

/// RocksDB options for a Raft log: small sequential writes, reads of recent entries,
/// prefix deletes after snapshots.
fn db_options() -> Options {
    let mut options = Options::default();
    options.create_if_missing(true);
    options.create_missing_column_families(true);
    // Every write reaches the WAL file at once (no user-space WAL buffer); durability is
    // then one `flush_wal(true)` per group of appends, issued by the flusher thread.
    options.set_manual_wal_flush(false);
    // The log is read back mostly while it is still in the memtable; 16 MiB keeps
    // thousands of entries there without holding much memory per column family.
    options.set_write_buffer_size(16 << 20);
    // Column families share the WAL; capping it makes RocksDB flush a quiet column family
    // (meta, sm) instead of keeping old WAL files alive for it, which bounds recovery time.
    options.set_max_total_wal_size(64 << 20);
    // Older entries land in SST files; LZ4 is cheap on CPU and the one codec compiled in.
    options.set_compression_type(DBCompressionType::Lz4);
    // RocksDB's own info log: keep a few bounded files rather than one per restart forever.
    options.set_keep_log_file_num(5);
    options.set_max_log_file_size(8 << 20);
    // WAL recovery stays at RocksDB's default (point in time): after a torn write the log
    // ends at the last intact record, which Raft treats as a shorter log.
    options
}

/// Counters of the WAL syncs behind acknowledgements, for metrics. Shared with the
/// flusher thread; read them with relaxed loads at any time.
#[derive(Debug, Default)]
pub struct FsyncStats {
    fsyncs: AtomicU64,
    fsync_nanos: AtomicU64,
    last_group_size: AtomicU64,
    failures: AtomicU64,
}

impl FsyncStats {
    /// WAL syncs performed (successful or not).
    pub fn fsyncs(&self) -> u64 {
        self.fsyncs.load(Ordering::Relaxed)
    }

    /// Total time spent in WAL syncs, in nanoseconds.
    pub fn fsync_nanos(&self) -> u64 {
        self.fsync_nanos.load(Ordering::Relaxed)
    }

    /// How many appends and votes the most recent sync acknowledged.
    pub fn last_group_size(&self) -> u64 {
        self.last_group_size.load(Ordering::Relaxed)
    }

    /// WAL syncs that failed; each failure is reported to every waiting caller.
    pub fn failures(&self) -> u64 {
        self.failures.load(Ordering::Relaxed)
    }

    fn record(&self, group_size: usize, elapsed: Duration, ok: bool) {
        crate::metrics::storage::observe_fsync(elapsed);
        let nanos = u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX);
        self.fsync_nanos.fetch_add(nanos, Ordering::Relaxed);
        self.last_group_size
            .store(group_size as u64, Ordering::Relaxed);
        if !ok {
            self.failures.fetch_add(1, Ordering::Relaxed);
        }
        // Counted last, so whoever sees the count also sees the rest of this sync.
        self.fsyncs.fetch_add(1, Ordering::Relaxed);
    }
}

/// Syncs the WAL once and records it.
fn sync_wal(db: &DB, stats: &FsyncStats, group_size: usize) -> Result<(), rocksdb::Error> {
    let started = Instant::now();
    let result = db.flush_wal(true);
    stats.record(group_size, started.elapsed(), result.is_ok());
    if let Err(error) = &result {
        tracing::error!(%error, group_size, "WAL sync failed");
    }
    result
}

/// Logs a failed write (a full disk: "No space left on device") at error level where it
/// happens, with what was being written, before openraft gets the error and stops the
/// node's Raft core.
fn write_failed(what: &'static str, error: rocksdb::Error) -> LogStoreError {
    tracing::error!(%error, what, "RocksDB write failed");
    LogStoreError::Rocks(error)
}

/// Gives each waiter its own copy of the sync's outcome (`io::Error` is not `Clone`).
fn outcome(result: &Result<(), rocksdb::Error>) -> Result<(), io::Error> {
    match result {
        Ok(()) => Ok(()),
        Err(error) => Err(io::Error::other(LogStoreError::Rocks(error.clone()))),
    }
}

/// The flusher thread's loop: one sync per batch of queued callbacks, completed in
/// order. Returns once every sender is dropped and the queue is drained.
fn run_flusher<C: RaftTypeConfig>(
    db: &DB,
    queue: &mpsc::Receiver<IOFlushed<C>>,
    stats: &FsyncStats,
) {
    while let Ok(first) = queue.recv() {
        let mut group = vec![first];
        group.extend(queue.try_iter());
        let result = sync_wal(db, stats, group.len());
        for callback in group {
            callback.io_completed(outcome(&result));
        }
    }
}

/// Owns the flusher thread; dropped with the last clone of the store.
struct Flusher<C: RaftTypeConfig> {
    /// `None` when the thread could not be started; callers then sync inline.
    queue: Option<mpsc::Sender<IOFlushed<C>>>,
    thread: Option<JoinHandle<()>>,
}

impl<C: RaftTypeConfig> Flusher<C> {
    fn start(db: Arc<DB>, stats: Arc<FsyncStats>) -> Flusher<C> {
        let (queue, pending) = mpsc::channel();
        let spawned = std::thread::Builder::new()
            .name("raft-log-fsync".to_string())
            .spawn(move || run_flusher(&db, &pending, &stats));
        match spawned {
            Ok(thread) => Flusher {
                queue: Some(queue),
                thread: Some(thread),
            },
            Err(error) => {
                tracing::error!(%error, "cannot start the WAL flusher thread; syncing inline");
                Flusher {
                    queue: None,
                    thread: None,
                }
            }
        }
    }

    /// Queues `callback` behind the next sync, or hands it back if there is no flusher.
    fn submit(&self, callback: IOFlushed<C>) -> Result<(), IOFlushed<C>> {
        match &self.queue {
            Some(queue) => queue.send(callback).map_err(|failed| failed.0),
            None => Err(callback),
        }
    }
}

impl<C: RaftTypeConfig> Drop for Flusher<C> {
    /// Closes the queue and waits for the thread to complete what is queued and release
    /// its handle on the database, so the directory can be reopened right away.
    fn drop(&mut self) {
        self.queue = None;
        if let Some(thread) = self.thread.take() {
            if thread.join().is_err() {
                tracing::error!("the WAL flusher thread panicked");
            }
        }
    }
}

pub(super) fn encode<T: Serialize>(
    what: &'static str,
    value: &T,
) -> Result<Vec<u8>, LogStoreError> {
    bincode::serde::encode_to_vec(value, bincode::config::standard())
        .map_err(|source| LogStoreError::Encode { what, source })
}

pub(super) fn decode<T: DeserializeOwned>(
    what: &'static str,
    bytes: &[u8],
) -> Result<T, LogStoreError> {
    bincode::serde::decode_from_slice(bytes, bincode::config::standard())
        .map(|(value, _)| value)
        .map_err(|source| LogStoreError::Decode { what, source })
}

pub(super) fn index_key(index: u64) -> [u8; 8] {
    index.to_be_bytes()
}

/// Reads the log and the vote. A clone of the database handle: cheap, and as many as
/// openraft's replication tasks want.
pub struct RocksLogReader<C: RaftTypeConfig> {
    db: Arc<DB>,
    /// The newest entries, served without a RocksDB read (see `recent_entries.rs`).
    recent: Arc<RecentEntries<C>>,
    _config: PhantomData<C>,
}

impl<C: RaftTypeConfig> Clone for RocksLogReader<C> {
    fn clone(&self) -> Self {
        RocksLogReader {
            db: Arc::clone(&self.db),
            recent: Arc::clone(&self.recent),
            _config: PhantomData,
        }
    }
}

impl<C: RaftTypeConfig> fmt::Debug for RocksLogReader<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RocksLogReader")
            .field("path", &self.db.path())
            .finish()
    }
}

impl<C: RaftTypeConfig> RocksLogReader<C> {
    fn cf(&self, name: &'static str) -> Result<&ColumnFamily, LogStoreError> {
        self.db
            .cf_handle(name)
            .ok_or(LogStoreError::MissingColumnFamily(name))
    }

    fn get_meta<T: DeserializeOwned>(
        &self,
        key: &'static [u8],
    ) -> Result<Option<T>, LogStoreError> {
        let what = std::str::from_utf8(key).unwrap_or("meta");
        match self.db.get_pinned_cf(self.cf(META_CF)?, key)? {
            Some(bytes) => decode(what, &bytes).map(Some),
            None => Ok(None),
        }
    }

    /// Entries with index in `[start, end)`; `end == None` reads to the last entry.
    fn entries(&self, start: u64, end: Option<u64>) -> Result<Vec<C::Entry>, LogStoreError> {
        if end.is_some_and(|end| end <= start) {
            return Ok(Vec::new());
        }
        let mut read = ReadOptions::default();
        if let Some(end) = end {
            // Stops the iterator at `end` instead of walking past it (and over tombstones).
            read.set_iterate_upper_bound(index_key(end));
        }
        let from = index_key(start);
        let mode = IteratorMode::From(&from, Direction::Forward);
        self.db
            .iterator_cf_opt(self.cf(LOGS_CF)?, read, mode)
            .map(|item| {
                let (_, value) = item?;
                decode("log entry", &value)
            })
            .collect()
    }

    fn last_entry(&self) -> Result<Option<C::Entry>, LogStoreError> {
        match self
            .db
            .iterator_cf(self.cf(LOGS_CF)?, IteratorMode::End)
            .next()
        {
            Some(item) => {
                let (_, value) = item?;
                decode("log entry", &value).map(Some)
            }
            None => Ok(None),
        }
    }
}

impl<C: RaftTypeConfig> RaftLogReader<C> for RocksLogReader<C>
where
    C::Entry: Clone,
{
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + fmt::Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<C::Entry>, io::Error> {
        let start = match range.start_bound() {
            Bound::Included(&start) => start,
            Bound::Excluded(&start) => start.saturating_add(1),
            Bound::Unbounded => 0,
        };
        let end = match range.end_bound() {
            Bound::Included(&end) => end.checked_add(1),
            Bound::Excluded(&end) => Some(end),
            Bound::Unbounded => None,
        };
        let end_bound = end.map_or(Bound::Unbounded, Bound::Excluded);
        if let Some(entries) = self.recent.get(start, end_bound) {
            return Ok(entries);
        }
        Ok(self.entries(start, end)?)
    }

    async fn read_vote(&mut self) -> Result<Option<VoteOf<C>>, io::Error> {
        Ok(self.get_meta(VOTE_KEY)?)
    }
}

/// openraft's log storage on a shared RocksDB instance (see the module docs). Clones
/// share the database, the flusher thread and the counters; the thread ends when the
/// last clone is dropped.
pub struct RocksLogStore<C: RaftTypeConfig> {
    reader: RocksLogReader<C>,
    flusher: Arc<Flusher<C>>,
    stats: Arc<FsyncStats>,
}

impl<C: RaftTypeConfig> Clone for RocksLogStore<C> {
    fn clone(&self) -> Self {
        RocksLogStore {
            reader: self.reader.clone(),
            flusher: Arc::clone(&self.flusher),
            stats: Arc::clone(&self.stats),
        }
    }
}

impl<C: RaftTypeConfig> fmt::Debug for RocksLogStore<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RocksLogStore")
            .field("path", &self.reader.db.path())
            .field("stats", &self.stats)
            .finish()
    }
}

impl<C: RaftTypeConfig> RocksLogStore<C> {
    /// A store on `db` (opened with [`open_db`]), with its own flusher thread. Does not
    /// fail: a missing column family surfaces as an error on first use, and if the thread
    /// cannot start, appends sync inline instead.
    pub fn new(db: Arc<DB>) -> RocksLogStore<C> {
        let stats = Arc::new(FsyncStats::default());
        RocksLogStore {
            flusher: Arc::new(Flusher::start(Arc::clone(&db), Arc::clone(&stats))),
            reader: RocksLogReader {
                db,
                recent: Arc::new(RecentEntries::new(RECENT_ENTRIES, RECENT_BYTES)),
                _config: PhantomData,
            },
            stats,
        }
    }

    /// The WAL sync counters, shared with the flusher thread, for metrics.
    pub fn fsync_stats(&self) -> Arc<FsyncStats> {
        Arc::clone(&self.stats)
    }

    fn db(&self) -> &DB {
        &self.reader.db
    }

    /// Completes `callback` after the next WAL sync: on the flusher thread, or here if it
    /// is not running.
    fn complete_after_sync(&self, callback: IOFlushed<C>) {
        if let Err(callback) = self.flusher.submit(callback) {
            let result = sync_wal(self.db(), &self.stats, 1);
            callback.io_completed(outcome(&result));
        }
    }

    /// Waits until everything written so far is on disk: one WAL sync, queued on the
    /// flusher thread (ordered with the appends around it, and never an fsync on the async
    /// runtime).
    async fn sync_written(&self) -> Result<(), io::Error> {
        let (done, synced) = C::oneshot();
        self.complete_after_sync(IOFlushed::signal(done));
        synced.await.map_err(|_| LogStoreError::FlusherGone)?
    }

    fn put_meta<T: Serialize>(&self, key: &'static [u8], value: &T) -> Result<(), LogStoreError> {
        let what = std::str::from_utf8(key).unwrap_or("meta");
        let cf = self.reader.cf(META_CF)?;
        self.db()
            .put_cf(cf, key, encode(what, value)?)
            .map_err(|error| write_failed(what, error))
    }
}

impl<C: RaftTypeConfig> RaftLogStorage<C> for RocksLogStore<C>
where
    C::Entry: Clone,
{
    type LogReader = RocksLogReader<C>;

    async fn get_log_state(&mut self) -> Result<LogState<C>, io::Error> {
        let last_purged_log_id: Option<LogIdOf<C>> = self.reader.get_meta(LAST_PURGED_KEY)?;
        let last_log_id = match self.reader.last_entry()? {
            Some(entry) => Some(entry.log_id()),
            None => last_purged_log_id.clone(),
        };
        Ok(LogState {
            last_purged_log_id,
            last_log_id,
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.reader.clone()
    }

    async fn save_vote(&mut self, vote: &VoteOf<C>) -> Result<(), io::Error> {
        self.put_meta(VOTE_KEY, vote)?;
        self.sync_written().await
    }

    async fn save_committed(&mut self, committed: Option<LogIdOf<C>>) -> Result<(), io::Error> {
        match committed {
            Some(log_id) => self.put_meta(COMMITTED_KEY, &log_id)?,
            None => {
                let cf = self.reader.cf(META_CF)?;
                self.db()
                    .delete_cf(cf, COMMITTED_KEY)
                    .map_err(|error| write_failed("clear the committed id", error))?;
            }
        }
        Ok(())
    }

    async fn read_committed(&mut self) -> Result<Option<LogIdOf<C>>, io::Error> {
        Ok(self.reader.get_meta(COMMITTED_KEY)?)
    }

    async fn append<I>(&mut self, entries: I, callback: IOFlushed<C>) -> Result<(), io::Error>
    where
        I: IntoIterator<Item = C::Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let cf = self.reader.cf(LOGS_CF)?;
        let mut batch = WriteBatch::default();
        let mut written = Vec::new();
        for entry in entries {
            let bytes = encode("log entry", &entry)?;
            let size = bytes.len();
            batch.put_cf(cf, index_key(entry.index()), bytes);
            written.push((entry, size));
        }
        fail::fail_point!("log-append-before");
        // Written (readable) now, acknowledged after the flusher's next WAL sync.
        self.db()
            .write(batch)
            .map_err(|error| write_failed("append log entries", error))?;
        // Readable from memory from now on, like from RocksDB.
        self.reader.recent.appended(written);
        fail::fail_point!("log-append-after");
        // Chaos builds only, `LICENSED_BROKEN=skip-flush-wal`: acknowledge at once, without
        // the WAL fsync above (`flush_wal(true)` on the flusher thread), which is the only
        // thing that makes an append durable. `flush_wal(false)` still hands RocksDB's WAL
        // buffer to the OS (with `manual_wal_flush` off the write already did): the entries
        // sit in the page cache, so a `kill -9` keeps them, but a power cut (or a file
        // system that drops unsynced data) loses entries this node counted towards a
        // quorum, and with them acknowledged writes.
        #[cfg(feature = "failpoints")]
        if crate::broken::is(crate::broken::Broken::SkipFlushWal) {
            let written = self.db().flush_wal(false).map_err(LogStoreError::from);
            callback.io_completed(written.map_err(io::Error::from));
            return Ok(());
        }
        self.complete_after_sync(callback);
        Ok(())
    }

    async fn truncate_after(&mut self, last_log_id: Option<LogIdOf<C>>) -> Result<(), io::Error> {
        let from = last_log_id.map_or(0, |log_id| log_id.index().saturating_add(1));
        let cf = self.reader.cf(LOGS_CF)?;
        // The cache first: from here on no read is served an entry the log is losing.
        self.reader.recent.truncate_from(from);
        // Index u64::MAX is never a real entry, so an exclusive end there covers the tail.
        self.db()
            .delete_range_cf(cf, index_key(from), index_key(u64::MAX))
            .map_err(|error| write_failed("truncate the log", error))?;
        // Durable before anything that depends on it: a snapshot install fsyncs its file
        // right after this, and a lost truncation under it would leave a conflicting
        // suffix above a newer snapshot.
        self.sync_written().await
    }

    async fn purge(&mut self, log_id: LogIdOf<C>) -> Result<(), io::Error> {
        let logs = self.reader.cf(LOGS_CF)?;
        let meta = self.reader.cf(META_CF)?;
        self.reader.recent.purge_upto(log_id.index());
        let mut batch = WriteBatch::default();
        // The purge mark goes first and in the same atomic batch: the log state never
        // shows a prefix gone without saying up to where.
        batch.put_cf(meta, LAST_PURGED_KEY, encode("last_purged", &log_id)?);
        let end = log_id.index().saturating_add(1);
        batch.delete_range_cf(logs, index_key(0), index_key(end));
        self.db()
            .write(batch)
            .map_err(|error| write_failed("purge the log", error))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use openraft::testing::log_id;

    use super::*;

    use crate::raft::test_types::{Entry, TestConfig};
    type Vote = VoteOf<TestConfig>;

    fn entry(term: u64, index: u64) -> Entry {
        Entry::new_normal(
            log_id::<TestConfig>(term, 1, index),
            format!("entry {index}"),
        )
    }

    fn open(dir: &Path) -> RocksLogStore<TestConfig> {
        RocksLogStore::new(open_db(dir).unwrap())
    }

    /// Appends and waits until openraft would have been told the entries are durable.
    async fn append(store: &mut RocksLogStore<TestConfig>, entries: Vec<Entry>) {
        let (done, flushed) = TestConfig::oneshot();
        store
            .append(entries, IOFlushed::signal(done))
            .await
            .unwrap();
        flushed.await.unwrap().unwrap();
    }

    async fn indexes(
        store: &mut RocksLogStore<TestConfig>,
        range: impl RangeBounds<u64> + Clone + fmt::Debug + Send,
    ) -> Vec<u64> {
        let mut reader = store.get_log_reader().await;
        let entries = reader.try_get_log_entries(range).await.unwrap();
        entries.iter().map(|entry| entry.index()).collect()
    }

    #[tokio::test]
    async fn appended_entries_read_back_by_range() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = open(dir.path());
        append(&mut store, (1..=5).map(|i| entry(1, i)).collect()).await;

        let mut reader = store.get_log_reader().await;
        let read = reader.try_get_log_entries(2..4).await.unwrap();
        assert_eq!(read, vec![entry(1, 2), entry(1, 3)]);
        assert_eq!(indexes(&mut store, 2..=4).await, vec![2, 3, 4]);
        assert_eq!(indexes(&mut store, 4..).await, vec![4, 5]);
        assert_eq!(indexes(&mut store, ..).await, vec![1, 2, 3, 4, 5]);
        assert_eq!(indexes(&mut store, ..=1).await, vec![1]);
        assert_eq!(
            indexes(&mut store, (Bound::Excluded(3), Bound::Unbounded)).await,
            vec![4, 5]
        );
        assert!(indexes(&mut store, 3..3).await.is_empty());
        assert!(indexes(&mut store, 6..).await.is_empty());
    }

    #[tokio::test]
    async fn appends_are_readable_before_the_sync_completes() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = open(dir.path());
        // A callback nobody waits for: the entries must be visible when append returns.
        store
            .append(vec![entry(1, 1)], IOFlushed::noop())
            .await
            .unwrap();
        assert_eq!(indexes(&mut store, ..).await, vec![1]);
    }

    #[tokio::test]
    async fn vote_and_log_survive_reopening_the_directory() {
        let dir = tempfile::tempdir().unwrap();
        {
            let mut store = open(dir.path());
            assert_eq!(
                store.get_log_reader().await.read_vote().await.unwrap(),
                None
            );
            store.save_vote(&Vote::new(3, 2)).await.unwrap();
            append(&mut store, vec![entry(3, 1), entry(3, 2)]).await;
            assert!(store.fsync_stats().fsyncs() >= 2);
        }
        // The store held the last handle on the database; dropping it closed RocksDB.
        let mut store = open(dir.path());
        let vote = store.get_log_reader().await.read_vote().await.unwrap();
        assert_eq!(vote, Some(Vote::new(3, 2)));
        assert_eq!(indexes(&mut store, ..).await, vec![1, 2]);
    }

    #[tokio::test]
    async fn truncate_after_drops_the_tail() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = open(dir.path());
        append(&mut store, (1..=6).map(|i| entry(1, i)).collect()).await;

        store
            .truncate_after(Some(log_id::<TestConfig>(1, 1, 3)))
            .await
            .unwrap();
        assert_eq!(indexes(&mut store, ..).await, vec![1, 2, 3]);
        let state = store.get_log_state().await.unwrap();
        assert_eq!(state.last_log_id, Some(log_id::<TestConfig>(1, 1, 3)));

        // A new leader's entries replace the truncated ones.
        append(&mut store, vec![entry(2, 4)]).await;
        assert_eq!(indexes(&mut store, ..).await, vec![1, 2, 3, 4]);

        store.truncate_after(None).await.unwrap();
        assert!(indexes(&mut store, ..).await.is_empty());
        assert_eq!(store.get_log_state().await.unwrap().last_log_id, None);
    }

    /// RocksDB's own count of WAL syncs, independent of the store's counters.
    fn wal_syncs(options: &Options) -> u64 {
        options.get_ticker_count(rocksdb::statistics::Ticker::WalFileSynced)
    }

    #[tokio::test]
    async fn truncation_is_synced_before_it_returns() {
        let dir = tempfile::tempdir().unwrap();
        let mut options = db_options();
        options.enable_statistics();
        let db = open_db_using(dir.path(), EXTRA_COLUMN_FAMILIES, &options).unwrap();
        let mut store = RocksLogStore::<TestConfig>::new(db);
        append(&mut store, (1..=6).map(|i| entry(1, i)).collect()).await;
        // The append's callback fired after its sync: nothing else is pending now.
        let before = wal_syncs(&options);
        assert!(before >= 1, "the append was synced");

        store
            .truncate_after(Some(log_id::<TestConfig>(1, 1, 3)))
            .await
            .unwrap();
        assert!(
            wal_syncs(&options) > before,
            "truncate_after returned before a WAL sync"
        );
        assert_eq!(indexes(&mut store, ..).await, vec![1, 2, 3]);
    }

    #[tokio::test]
    async fn purge_removes_the_prefix_and_remembers_it() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = open(dir.path());
        append(&mut store, (1..=5).map(|i| entry(1, i)).collect()).await;

        store.purge(log_id::<TestConfig>(1, 1, 2)).await.unwrap();
        assert_eq!(indexes(&mut store, ..).await, vec![3, 4, 5]);
        let state = store.get_log_state().await.unwrap();
        assert_eq!(
            state.last_purged_log_id,
            Some(log_id::<TestConfig>(1, 1, 2))
        );
        assert_eq!(state.last_log_id, Some(log_id::<TestConfig>(1, 1, 5)));

        // Purging past the end leaves no entries; the last log id is the purge mark.
        store.purge(log_id::<TestConfig>(1, 1, 9)).await.unwrap();
        assert!(indexes(&mut store, ..).await.is_empty());
        let state = store.get_log_state().await.unwrap();
        assert_eq!(
            state.last_purged_log_id,
            Some(log_id::<TestConfig>(1, 1, 9))
        );
        assert_eq!(state.last_log_id, Some(log_id::<TestConfig>(1, 1, 9)));
    }

    #[tokio::test]
    async fn log_state_of_an_empty_store_is_empty() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = open(dir.path());
        assert_eq!(store.get_log_state().await.unwrap(), LogState::default());
        append(&mut store, vec![entry(1, 1), entry(2, 2)]).await;
        let state = store.get_log_state().await.unwrap();
        assert_eq!(state.last_purged_log_id, None);
        assert_eq!(state.last_log_id, Some(log_id::<TestConfig>(2, 1, 2)));
    }

    #[tokio::test]
    async fn committed_log_id_roundtrips_and_clears() {
        let dir = tempfile::tempdir().unwrap();
        {
            let mut store = open(dir.path());
            assert_eq!(store.read_committed().await.unwrap(), None);
            let committed = Some(log_id::<TestConfig>(2, 1, 7));
            store.save_committed(committed).await.unwrap();
            assert_eq!(store.read_committed().await.unwrap(), committed);
        }
        let mut store = open(dir.path());
        assert_eq!(
            store.read_committed().await.unwrap(),
            Some(log_id::<TestConfig>(2, 1, 7))
        );
        store.save_committed(None).await.unwrap();
        assert_eq!(store.read_committed().await.unwrap(), None);
    }

    #[tokio::test]
    async fn append_is_acknowledged_only_after_a_wal_sync() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = open(dir.path());
        let stats = store.fsync_stats();
        assert_eq!(stats.fsyncs(), 0);

        let (done, flushed) = TestConfig::oneshot();
        store
            .append(vec![entry(1, 1)], IOFlushed::signal(done))
            .await
            .unwrap();
        flushed.await.unwrap().unwrap();
        // The sync is recorded before any callback of its group completes.
        assert!(stats.fsyncs() >= 1);
        assert!(stats.last_group_size() >= 1);
        assert_eq!(stats.failures(), 0);
    }

    #[test]
    fn one_sync_acknowledges_every_queued_callback_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let db = open_db(dir.path()).unwrap();
        let stats = FsyncStats::default();
        let (queue, pending) = mpsc::channel::<IOFlushed<TestConfig>>();
        let mut receivers = Vec::new();
        for _ in 0..5 {
            let (done, flushed) = TestConfig::oneshot();
            queue.send(IOFlushed::signal(done)).unwrap();
            receivers.push(flushed);
        }
        drop(queue);

        // Runs to completion because the queue is closed and drained.
        run_flusher(&db, &pending, &stats);

        assert_eq!(stats.fsyncs(), 1);
        assert_eq!(stats.last_group_size(), 5);
        for flushed in receivers {
            futures::executor::block_on(flushed).unwrap().unwrap();
        }
    }

    #[tokio::test]
    async fn concurrent_callbacks_all_complete_and_the_thread_ends_on_drop() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = open(dir.path());
        let stats = store.fsync_stats();
        let mut pending = Vec::new();
        for i in 1..=50 {
            let (done, flushed) = TestConfig::oneshot();
            store
                .append(vec![entry(1, i)], IOFlushed::signal(done))
                .await
                .unwrap();
            pending.push(flushed);
        }
        drop(store);
        // Dropping the store closed the queue; the thread completed what was queued first.
        for flushed in pending {
            flushed.await.unwrap().unwrap();
        }
        assert!(stats.fsyncs() >= 1 && stats.fsyncs() <= 50);
        // The database handle was released: the directory opens again at once.
        let mut store = open(dir.path());
        assert_eq!(indexes(&mut store, ..).await.len(), 50);
    }

    #[tokio::test]
    async fn a_store_on_a_database_without_its_column_families_reports_it() {
        let dir = tempfile::tempdir().unwrap();
        let mut options = Options::default();
        options.create_if_missing(true);
        let db = Arc::new(DB::open(&options, dir.path()).unwrap());
        let mut store = RocksLogStore::<TestConfig>::new(db);
        let error = store.get_log_state().await.unwrap_err();
        assert!(error.to_string().contains("column family"), "{error}");
    }

    #[test]
    fn open_db_creates_the_extra_column_families() {
        let dir = tempfile::tempdir().unwrap();
        let db = open_db_with(dir.path(), &[SM_CF, "extra"]).unwrap();
        for name in [LOGS_CF, META_CF, SM_CF, "extra"] {
            assert!(db.cf_handle(name).is_some(), "{name}");
        }
        drop(db);
        // Reopening with the default list still opens the column family created above.
        let db = open_db(dir.path()).unwrap();
        assert!(db.cf_handle("extra").is_some());
    }
}
