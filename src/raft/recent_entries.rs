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

/// How many entries are kept at most: several AppendEntries batches of slack for a
/// follower that falls a little behind, a few MB of borrows.
pub const RECENT_ENTRIES: usize = 8192;
/// How many bytes of entries (as encoded in the log) are kept at most: a run of large
/// entries (pool changes) must not make the cache large.
pub const RECENT_BYTES: usize = 32 << 20;

/// The newest entries of the log (see the module docs). Shared by the log store and its
/// readers.
pub struct RecentEntries<C: RaftTypeConfig> {
    inner: Mutex<Cached<C>>,
    capacity: usize,
    max_bytes: usize,
}

/// The entries with their encoded sizes, and the sum of those.
struct Cached<C: RaftTypeConfig> {
    entries: VecDeque<(C::Entry, usize)>,
    bytes: usize,
}

impl<C: RaftTypeConfig> Cached<C> {
    fn pop_front(&mut self) {
        if let Some((_, size)) = self.entries.pop_front() {
            self.bytes -= size;
        }
    }

    fn pop_back(&mut self) {
        if let Some((_, size)) = self.entries.pop_back() {
            self.bytes -= size;
        }
    }

    fn first_index(&self) -> Option<u64> {
        self.entries.front().map(|(entry, _)| entry.index())
    }

    fn last_index(&self) -> Option<u64> {
        self.entries.back().map(|(entry, _)| entry.index())
    }
}

impl<C: RaftTypeConfig> RecentEntries<C> {
    /// An empty cache of at most `capacity` entries and `max_bytes` encoded bytes.
    pub fn new(capacity: usize, max_bytes: usize) -> RecentEntries<C> {
        RecentEntries {
            inner: Mutex::new(Cached {
                entries: VecDeque::with_capacity(capacity.min(RECENT_ENTRIES)),
                bytes: 0,
            }),
            capacity,
            max_bytes,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Cached<C>> {
        // A panic while holding the lock cannot leave a half-made change that matters:
        // at worst the cache is cleared below on the next discontinuity.
        self.inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Records entries just written to the log, in index order, each with its encoded
    /// size. An entry that does not follow the newest one (the first append after a
    /// start or a truncation) starts the run afresh; the oldest entries make room.
    pub fn appended(&self, entries: impl IntoIterator<Item = (C::Entry, usize)>) {
        if self.capacity == 0 {
            return;
        }
        let mut cached = self.lock();
        for (entry, size) in entries {
            let follows = cached
                .last_index()
                .is_none_or(|newest| newest + 1 == entry.index());
            if !follows {
                cached.entries.clear();
                cached.bytes = 0;
            }
            while !cached.entries.is_empty()
                && (cached.entries.len() == self.capacity || cached.bytes + size > self.max_bytes)
            {
                cached.pop_front();
            }
            cached.bytes += size;
            cached.entries.push_back((entry, size));
        }
    }

    /// Forgets the entries from index `from` on (a truncation).
    pub fn truncate_from(&self, from: u64) {
        let mut cached = self.lock();
        while cached.last_index().is_some_and(|newest| newest >= from) {
            cached.pop_back();
        }
    }

    /// Forgets the entries up to and including index `upto` (a purge).
    pub fn purge_upto(&self, upto: u64) {
        let mut cached = self.lock();
        while cached.first_index().is_some_and(|oldest| oldest <= upto) {
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
        let first = cached.first_index()?;
        let newest = cached.last_index()?;
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
        Some(
            cached
                .entries
                .range(from..=to)
                .map(|(entry, _)| entry.clone())
                .collect(),
        )
    }
}

#[cfg(test)]
mod tests {
    use openraft::testing::log_id;

    use super::*;

    use crate::raft::test_types::{Entry, TestConfig};

    fn entry(index: u64) -> Entry {
        Entry::new_normal(log_id::<TestConfig>(1, 1, index), format!("entry {index}"))
    }

    fn indexes(entries: Option<Vec<Entry>>) -> Option<Vec<u64>> {
        entries.map(|entries| entries.iter().map(|e| e.index()).collect())
    }

    fn sized(entries: impl IntoIterator<Item = Entry>) -> Vec<(Entry, usize)> {
        entries.into_iter().map(|entry| (entry, 100)).collect()
    }

    #[test]
    fn serves_only_ranges_it_holds_whole() {
        let cache = RecentEntries::<TestConfig>::new(4, 1 << 20);
        assert_eq!(indexes(cache.get(1, Bound::Unbounded)), None, "empty");
        cache.appended(sized((1..=6).map(entry)));
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
        let cache = RecentEntries::<TestConfig>::new(16, 1 << 20);
        cache.appended(sized((1..=8).map(entry)));
        cache.truncate_from(6);
        assert_eq!(
            indexes(cache.get(1, Bound::Unbounded)),
            Some(vec![1, 2, 3, 4, 5])
        );
        // A conflicting suffix rewritten after the truncation.
        let rewritten = Entry::new_normal(log_id::<TestConfig>(2, 1, 6), "new 6".to_string());
        cache.appended(sized([rewritten.clone()]));
        assert_eq!(
            cache.get(6, Bound::Unbounded),
            Some(vec![rewritten.clone()])
        );
        cache.purge_upto(3);
        assert_eq!(indexes(cache.get(3, Bound::Unbounded)), None);
        assert_eq!(indexes(cache.get(4, Bound::Unbounded)), Some(vec![4, 5, 6]));
        // An entry that does not follow the newest (after a snapshot install) restarts
        // the run: nothing before it may be served from here any more.
        cache.appended(sized([entry(20)]));
        assert_eq!(indexes(cache.get(4, Bound::Unbounded)), None);
        assert_eq!(indexes(cache.get(20, Bound::Unbounded)), Some(vec![20]));
    }

    #[test]
    fn a_cache_of_nothing_serves_nothing() {
        let cache = RecentEntries::<TestConfig>::new(0, 1 << 20);
        cache.appended(sized([entry(1)]));
        assert_eq!(indexes(cache.get(1, Bound::Unbounded)), None);
    }

    #[test]
    fn large_entries_push_old_ones_out_by_size() {
        let cache = RecentEntries::<TestConfig>::new(100, 1000);
        cache.appended((1..=5).map(|i| (entry(i), 100)));
        assert_eq!(
            indexes(cache.get(1, Bound::Unbounded)),
            Some(vec![1, 2, 3, 4, 5])
        );
        // 700 more bytes: 500 + 700 > 1000, so entries 1 and 2 make room.
        cache.appended([(entry(6), 700)]);
        assert_eq!(indexes(cache.get(1, Bound::Unbounded)), None);
        assert_eq!(
            indexes(cache.get(3, Bound::Unbounded)),
            Some(vec![3, 4, 5, 6])
        );
        // An entry larger than the whole budget is still kept, alone.
        cache.appended([(entry(7), 5000)]);
        assert_eq!(indexes(cache.get(6, Bound::Unbounded)), None);
        assert_eq!(indexes(cache.get(7, Bound::Unbounded)), Some(vec![7]));
        cache.purge_upto(7);
        cache.appended([(entry(8), 900)]);
        assert_eq!(indexes(cache.get(8, Bound::Unbounded)), Some(vec![8]));
    }
}
