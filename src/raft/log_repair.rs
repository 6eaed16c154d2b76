//! The log's shape checked after every start, before openraft reads it: the entries form
//! one contiguous run right after the purge mark, each stored under its own index with
//! log ids rising, and the committed id names an entry the log holds (or one purged).
//!
//! Why a power loss can break this without any bug of ours: the column families share
//! RocksDB's write-ahead log, which is a sequence of files. A `flush_wal(true)` syncs every
//! one of them, but between two syncs the tail of the older file and the head of the newer
//! one (RocksDB starts a new file when a memtable is flushed) are both unsynced, and a disk
//! that loses power may keep the newer and drop the older. RocksDB then replays what is
//! left, and the log comes back with a hole: entries missing, and later ones present.
//!
//! Everything after the first hole was never synced — a sync after it would have made the
//! hole's entries durable too — so no append or vote there was ever acknowledged. Dropping
//! it all (and syncing the drop) leaves exactly a state the power cut could have left, and
//! the leader sends the entries again. Keeping it would be wrong: openraft would apply the
//! committed range with entries missing, and the node's ledger would differ from every
//! other node's (borrows lost here, others admitted here that the cluster refused).

use openraft::alias::LogIdOf;
use openraft::entry::RaftEntry;
use openraft::RaftTypeConfig;
use rocksdb::{IteratorMode, WriteBatch, WriteOptions, DB};

use super::log_store::{
    decode, index_key, LogStoreError, COMMITTED_KEY, LAST_PURGED_KEY, LOGS_CF, META_CF,
};

/// What [`check_and_repair`] found and changed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LogRepair {
    /// Entries in the log before the check.
    pub entries: u64,
    /// The first index that broke the run (missing, misplaced or out of order), if any.
    pub hole_at: Option<u64>,
    /// Entries dropped from the hole on.
    pub dropped: u64,
    /// Whether the committed id was cleared because it named no entry the log still holds.
    pub committed_cleared: bool,
}

impl LogRepair {
    /// Whether the log was changed.
    pub fn repaired(&self) -> bool {
        self.dropped > 0 || self.committed_cleared
    }
}

/// Checks the log in `db` (opened with [`super::log_store::open_db`]) and cuts it back to
/// its intact prefix if a power loss left a hole; see the module documentation. Reads every
/// entry once; the changes, if any, are written with a WAL sync before this returns.
pub fn check_and_repair<C: RaftTypeConfig>(db: &DB) -> Result<LogRepair, LogStoreError> {
    let logs = db
        .cf_handle(LOGS_CF)
        .ok_or(LogStoreError::MissingColumnFamily(LOGS_CF))?;
    let meta = db
        .cf_handle(META_CF)
        .ok_or(LogStoreError::MissingColumnFamily(META_CF))?;
    let read_meta = |key: &'static [u8], what| -> Result<Option<LogIdOf<C>>, LogStoreError> {
        match db.get_pinned_cf(meta, key)? {
            Some(bytes) => decode(what, &bytes).map(Some),
            None => Ok(None),
        }
    };
    let purged = read_meta(LAST_PURGED_KEY, "last_purged")?;
    let committed = read_meta(COMMITTED_KEY, "committed")?;

    let mut repair = LogRepair::default();
    // The last entry of the intact run, and the log id the committed id must match if it
    // points into the log.
    let mut previous: Option<LogIdOf<C>> = purged.clone();
    let mut committed_found = false;
    for item in db.iterator_cf(logs, IteratorMode::Start) {
        let (key, value) = item?;
        repair.entries += 1;
        if repair.hole_at.is_some() {
            repair.dropped += 1;
            continue;
        }
        let index = key_index(&key);
        let entry: C::Entry = decode("log entry", &value)?;
        let log_id = entry.log_id();
        let in_place = index == Some(log_id.index());
        let follows = match &previous {
            Some(previous) => {
                log_id.index() == previous.index().saturating_add(1) && log_id > *previous
            }
            // No purge yet: the log starts wherever its first entry is.
            None => true,
        };
        if !(in_place && follows) {
            repair.hole_at = Some(index.unwrap_or(log_id.index()));
            repair.dropped += 1;
            continue;
        }
        if committed.as_ref() == Some(&log_id) {
            committed_found = true;
        }
        previous = Some(log_id);
    }

    // A committed id at or below the purge mark is covered by the snapshot; one above it
    // must name an entry of the intact run exactly.
    let committed_purged = match (&committed, &purged) {
        (Some(committed), Some(purged)) => committed.index() <= purged.index(),
        _ => false,
    };
    repair.committed_cleared = committed.is_some() && !committed_found && !committed_purged;

    if repair.repaired() {
        let mut batch = WriteBatch::default();
        if let Some(from) = repair.hole_at {
            batch.delete_range_cf(logs, index_key(from), index_key(u64::MAX));
        }
        if repair.committed_cleared {
            batch.delete_cf(meta, COMMITTED_KEY);
        }
        let mut options = WriteOptions::default();
        options.set_sync(true);
        db.write_opt(batch, &options)?;
    }
    Ok(repair)
}

/// The index a log key encodes, or `None` for a key of the wrong length.
fn key_index(key: &[u8]) -> Option<u64> {
    <[u8; 8]>::try_from(key).ok().map(u64::from_be_bytes)
}

#[cfg(test)]
mod tests {
    use openraft::testing::log_id;

    use super::*;
    use crate::raft::log_store::{encode, open_db};

    use crate::raft::test_types::{Entry, TestConfig};

    fn put_entry(db: &DB, term: u64, index: u64) {
        let entry = Entry::new_normal(log_id::<TestConfig>(term, 1, index), format!("e{index}"));
        let logs = db.cf_handle(LOGS_CF).unwrap();
        db.put_cf(logs, index_key(index), encode("entry", &entry).unwrap())
            .unwrap();
    }

    fn put_meta(db: &DB, key: &[u8], term: u64, index: u64) {
        let meta = db.cf_handle(META_CF).unwrap();
        let id = log_id::<TestConfig>(term, 1, index);
        db.put_cf(meta, key, encode("meta", &id).unwrap()).unwrap();
    }

    fn indexes(db: &DB) -> Vec<u64> {
        let logs = db.cf_handle(LOGS_CF).unwrap();
        db.iterator_cf(logs, IteratorMode::Start)
            .map(|item| key_index(&item.unwrap().0).unwrap())
            .collect()
    }

    fn committed(db: &DB) -> bool {
        let meta = db.cf_handle(META_CF).unwrap();
        db.get_cf(meta, COMMITTED_KEY).unwrap().is_some()
    }

    #[test]
    fn an_intact_log_is_left_alone() {
        let dir = tempfile::tempdir().unwrap();
        let db = open_db(dir.path()).unwrap();
        for index in 1..=5 {
            put_entry(&db, 1, index);
        }
        for index in 6..=9 {
            put_entry(&db, 2, index);
        }
        put_meta(&db, COMMITTED_KEY, 2, 8);
        let repair = check_and_repair::<TestConfig>(&db).unwrap();
        assert_eq!(
            repair,
            LogRepair {
                entries: 9,
                ..LogRepair::default()
            }
        );
        assert!(!repair.repaired());
        assert_eq!(indexes(&db), (1..=9).collect::<Vec<_>>());
        assert!(committed(&db));
    }

    #[test]
    fn a_hole_drops_everything_after_it_and_a_committed_id_beyond_it() {
        let dir = tempfile::tempdir().unwrap();
        let db = open_db(dir.path()).unwrap();
        for index in (1..=4).chain(8..=10) {
            put_entry(&db, 1, index);
        }
        put_meta(&db, COMMITTED_KEY, 1, 9);
        let repair = check_and_repair::<TestConfig>(&db).unwrap();
        assert_eq!(repair.hole_at, Some(8));
        assert_eq!(repair.dropped, 3);
        assert!(repair.committed_cleared);
        assert_eq!(indexes(&db), vec![1, 2, 3, 4]);
        assert!(!committed(&db));
        // Checked again (the next start), the log is intact.
        let again = check_and_repair::<TestConfig>(&db).unwrap();
        assert!(!again.repaired());
    }

    #[test]
    fn a_gap_after_the_purge_mark_is_a_hole() {
        let dir = tempfile::tempdir().unwrap();
        let db = open_db(dir.path()).unwrap();
        put_meta(&db, LAST_PURGED_KEY, 1, 10);
        for index in 13..=15 {
            put_entry(&db, 1, index);
        }
        put_meta(&db, COMMITTED_KEY, 1, 7);
        let repair = check_and_repair::<TestConfig>(&db).unwrap();
        assert_eq!(repair.hole_at, Some(13));
        assert_eq!(repair.dropped, 3);
        // A committed id under the purge mark is the snapshot's business: kept.
        assert!(!repair.committed_cleared);
        assert!(indexes(&db).is_empty());
        assert!(committed(&db));
    }

    #[test]
    fn a_term_going_back_or_a_committed_id_of_another_term_is_caught() {
        let dir = tempfile::tempdir().unwrap();
        let db = open_db(dir.path()).unwrap();
        put_entry(&db, 2, 1);
        put_entry(&db, 2, 2);
        put_entry(&db, 1, 3);
        // Index 2 exists, but of term 2: a committed id of term 3 there names another entry.
        put_meta(&db, COMMITTED_KEY, 3, 2);
        let repair = check_and_repair::<TestConfig>(&db).unwrap();
        assert_eq!(repair.hole_at, Some(3));
        assert_eq!(repair.dropped, 1);
        assert!(repair.committed_cleared);
        assert_eq!(indexes(&db), vec![1, 2]);
    }
}
