//! The newest log entries, kept in memory beside RocksDB. Under load the leader reads
//! every entry back once per follower to send it, and every node reads it back once more
//! to apply it; those reads almost always ask for entries appended a moment ago. Served
//! from here they cost a clone instead of a RocksDB iterator and a bincode decode.
//!
//! The cache holds a contiguous run of the newest entries, exactly as written to the log:
//! an append adds to it only after its write succeeded, a truncation and a purge cut it
//! before they cut the log. A read it cannot serve whole goes to RocksDB.

use std::collections::VecDeque;
use std::ops::Bound;
use std::sync::Mutex;

use openraft::entry::RaftEntry;
use openraft::RaftTypeConfig;

/// How many entries are kept: several AppendEntries batches of slack for a follower
/// that falls a little behind, a few MB of memory.
pub const RECENT_ENTRIES: usize = 8192;

/// The newest entries of the log (see the module docs). Shared by the log store and its
/// readers.
pub struct RecentEntries<C: RaftTypeConfig> {
    inner: Mutex<VecDeque<C::Entry>>,
    capacity: usize,
}

impl<C: RaftTypeConfig> RecentEntries<C> {
    /// An empty cache of at most `capacity` entries.
    pub fn new(capacity: usize) -> RecentEntries<C> {
        RecentEntries {
            inner: Mutex::new(VecDeque::with_capacity(capacity.min(RECENT_ENTRIES))),
            capacity,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, VecDeque<C::Entry>> {
        // A panic while holding the lock cannot leave a half-made change that matters:
        // at worst the cache is cleared below on the next discontinuity.
        self.inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Records entries just written to the log, in index order. An entry that does not
    /// follow the newest one (the first append after a start or a truncation) starts
    /// the run afresh.
    pub fn appended(&self, entries: impl IntoIterator<Item = C::Entry>) {
        if self.capacity == 0 {
            return;
        }
        let mut cached = self.lock();
        for entry in entries {
            let follows = cached
                .back()
                .is_none_or(|newest| newest.index() + 1 == entry.index());
            if !follows {
                cached.clear();
            }
            if cached.len() == self.capacity {
                cached.pop_front();
            }
            cached.push_back(entry);
        }
    }

    /// Forgets the entries from index `from` on (a truncation).
    pub fn truncate_from(&self, from: u64) {
        let mut cached = self.lock();
        while cached.back().is_some_and(|newest| newest.index() >= from) {
            cached.pop_back();
        }
    }

    /// Forgets the entries up to and including index `upto` (a purge).
    pub fn purge_upto(&self, upto: u64) {
        let mut cached = self.lock();
        while cached.front().is_some_and(|oldest| oldest.index() <= upto) {
            cached.pop_front();
        }
    }

    /// The entries with index in `[start, end)` (`end` unbounded: to the newest), if the
    /// cache holds all of them; `None` sends the caller to the log itself.
    pub fn get(&self, start: u64, end: Bound<u64>) -> Option<Vec<C::Entry>>
    where
        C::Entry: Clone,
    {
        let cached = self.lock();
        let first = cached.front()?.index();
        let newest = cached.back()?.index();
        if start < first {
            return None;
        }
        let last = match end {
            Bound::Excluded(end) if end <= start => return Some(Vec::new()),
            Bound::Excluded(end) => end - 1,
            Bound::Included(end) if end < start => return Some(Vec::new()),
            Bound::Included(end) => end,
            Bound::Unbounded => newest,
        };
        if last > newest {
            // Asks for entries past the newest: only the log can say whether they exist
            // (they do not, unless something wrote around the cache).
            return None;
        }
        if start > newest {
            return Some(Vec::new());
        }
        let from = (start - first) as usize;
        let to = (last - first) as usize;
        Some(cached.range(from..=to).cloned().collect())
    }
}

#[cfg(test)]
mod tests {
    use openraft::testing::log_id;

    use super::*;

    openraft::declare_raft_types!(
        TestConfig:
            D = String,
            R = (),
    );

    type Entry = openraft::alias::EntryOf<TestConfig>;

    fn entry(index: u64) -> Entry {
        Entry::new_normal(log_id::<TestConfig>(1, 1, index), format!("entry {index}"))
    }

    fn indexes(entries: Option<Vec<Entry>>) -> Option<Vec<u64>> {
        entries.map(|entries| entries.iter().map(|e| e.index()).collect())
    }

    #[test]
    fn serves_only_ranges_it_holds_whole() {
        let cache = RecentEntries::<TestConfig>::new(4);
        assert_eq!(indexes(cache.get(1, Bound::Unbounded)), None, "empty");
        let written: Vec<Entry> = (1..=6).map(entry).collect();
        cache.appended(written);
        // Capacity 4: entries 3..=6 are kept.
        assert_eq!(indexes(cache.get(3, Bound::Excluded(5))), Some(vec![3, 4]));
        assert_eq!(indexes(cache.get(4, Bound::Unbounded)), Some(vec![4, 5, 6]));
        assert_eq!(indexes(cache.get(5, Bound::Included(6))), Some(vec![5, 6]));
        assert_eq!(indexes(cache.get(2, Bound::Excluded(5))), None, "2 is gone");
        assert_eq!(indexes(cache.get(5, Bound::Excluded(8))), None, "past 6");
        assert_eq!(indexes(cache.get(7, Bound::Unbounded)), Some(vec![]));
        assert_eq!(indexes(cache.get(5, Bound::Excluded(5))), Some(vec![]));
        let payload = cache.get(6, Bound::Unbounded).expect("held");
        assert_eq!(payload, vec![entry(6)], "the very entry written");
    }

    #[test]
    fn truncation_purge_and_gaps_keep_it_equal_to_the_log() {
        let cache = RecentEntries::<TestConfig>::new(16);
        let written: Vec<Entry> = (1..=8).map(entry).collect();
        cache.appended(written);
        cache.truncate_from(6);
        assert_eq!(
            indexes(cache.get(1, Bound::Unbounded)),
            Some(vec![1, 2, 3, 4, 5])
        );
        // A conflicting suffix rewritten after the truncation.
        let rewritten = Entry::new_normal(log_id::<TestConfig>(2, 1, 6), "new 6".to_string());
        cache.appended([rewritten.clone()]);
        assert_eq!(
            cache.get(6, Bound::Unbounded),
            Some(vec![rewritten.clone()])
        );
        cache.purge_upto(3);
        assert_eq!(indexes(cache.get(3, Bound::Unbounded)), None);
        assert_eq!(indexes(cache.get(4, Bound::Unbounded)), Some(vec![4, 5, 6]));
        // An entry that does not follow the newest (after a snapshot install) restarts
        // the run: nothing before it may be served from here any more.
        cache.appended([entry(20)]);
        assert_eq!(indexes(cache.get(4, Bound::Unbounded)), None);
        assert_eq!(indexes(cache.get(20, Bound::Unbounded)), Some(vec![20]));
    }

    #[test]
    fn a_cache_of_nothing_serves_nothing() {
        let cache = RecentEntries::<TestConfig>::new(0);
        cache.appended([entry(1)]);
        assert_eq!(indexes(cache.get(1, Bound::Unbounded)), None);
    }
}
