//! Durability bookkeeping for one file: what a power cut has to undo.
//!
//! An [`UndoLog`] starts when a file is first changed after its last sync (or after it was
//! first seen) and is dropped when the file is synced. It remembers:
//!
//! - the synced length, and the original (synced) bytes of every part of `[0, synced length)`
//!   that was changed since, saved once, the first time that part is changed;
//! - the set of ranges changed since the sync ("touched"), to tell appends and first-time
//!   overwrites apart from writes over data that is itself unsynced;
//! - for torn cuts, the unsynced writes in the order they were made, after the last
//!   operation that a torn cut may not split (a "barrier": a write over unsynced data, a
//!   length change by truncate or fallocate, a punched or zeroed range). Contiguous writes
//!   (appends) are merged into one record, so an appending file needs one record.
//!
//! A clean cut restores the synced length and writes the saved originals back. A torn cut
//! keeps a prefix of the unsynced writes that ends at a page boundary of the file, chosen
//! among the positions after the last barrier (or keeps nothing). Restricting the choice so
//! is what lets the log stay small: after the last barrier the remaining writes are disjoint
//! from each other and from everything changed before them, so every byte they wrote that
//! does not survive goes back to its synced original (or beyond the end of the file).

use std::collections::BTreeMap;
use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;

/// The page size of the torn-write model: a torn cut keeps a prefix of the unsynced writes
/// that ends at a multiple of this many bytes of the file.
pub(crate) const PAGE: u64 = 4096;

/// The file operations the bookkeeping needs, so that the unit tests can run on a `Vec`.
pub(crate) trait FileIo {
    /// Reads `buf.len()` bytes at `offset`; bytes past the end of the file read as zero.
    fn read_at_zero_filled(&self, buf: &mut [u8], offset: u64) -> io::Result<()>;
    /// Writes all of `buf` at `offset`.
    fn write_all_at(&self, buf: &[u8], offset: u64) -> io::Result<()>;
    /// Sets the length of the file.
    fn set_len(&self, len: u64) -> io::Result<()>;
}

impl FileIo for File {
    fn read_at_zero_filled(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        let mut done = 0;
        while done < buf.len() {
            match FileExt::read_at(self, &mut buf[done..], offset + done as u64) {
                Ok(0) => break,
                Ok(n) => done += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        buf[done..].fill(0);
        Ok(())
    }

    fn write_all_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        FileExt::write_all_at(self, buf, offset)
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        File::set_len(self, len)
    }
}

/// A set of disjoint, non-adjacent half-open ranges `[start, end)`.
#[derive(Debug, Default, Clone)]
struct RangeSet {
    /// start → end.
    ranges: BTreeMap<u64, u64>,
}

impl RangeSet {
    /// Whether any byte of `[start, end)` is in the set.
    fn overlaps(&self, start: u64, end: u64) -> bool {
        if start >= end {
            return false;
        }
        // The last range starting before `end` is the only candidate.
        self.ranges
            .range(..end)
            .next_back()
            .is_some_and(|(_, &e)| e > start)
    }

    /// Adds `[start, end)`, merging with overlapping or adjacent ranges.
    fn insert(&mut self, mut start: u64, mut end: u64) {
        if start >= end {
            return;
        }
        // Absorb every range that overlaps or touches [start, end].
        while let Some((&s, &e)) = self.ranges.range(..=end).next_back() {
            if e < start {
                break;
            }
            self.ranges.remove(&s);
            start = start.min(s);
            end = end.max(e);
        }
        self.ranges.insert(start, end);
    }
}

/// One record of unsynced writes after the last barrier: `len` bytes written at `offset`
/// (several contiguous writes merged).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Extent {
    offset: u64,
    len: u64,
}

impl Extent {
    fn end(self) -> u64 {
        self.offset + self.len
    }

    /// How many prefixes of this extent end at a page boundary of the file: the byte counts
    /// `m` in `1..=len` with `offset + m` a multiple of [`PAGE`].
    fn page_ends(self) -> u64 {
        self.end() / PAGE - self.offset / PAGE
    }

    /// The byte count of the `k`-th (0-based) prefix ending at a page boundary.
    fn nth_page_end(self, k: u64) -> u64 {
        (self.offset / PAGE + 1 + k) * PAGE - self.offset
    }
}

/// What a restore did to one file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Restored {
    /// Bytes of unsynced writes that did not survive.
    pub(crate) bytes_dropped: u64,
    /// The length of the file before the restore.
    pub(crate) old_len: u64,
    /// The length of the file after the restore.
    pub(crate) new_len: u64,
}

/// The undo information of one file since its last sync. See the module documentation.
#[derive(Debug, Clone)]
pub(crate) struct UndoLog {
    /// The length at the last sync.
    synced_len: u64,
    /// The current length, kept up to date by the commit methods.
    cur_len: u64,
    /// Original bytes of changed parts of `[0, synced_len)`, disjoint, keyed by offset.
    originals: BTreeMap<u64, Vec<u8>>,
    /// Ranges changed since the sync (including holes made by writing past the end).
    touched: RangeSet,
    /// Bytes written since the sync.
    stream_bytes: u64,
    /// The length right after the last barrier (the synced length if there was none).
    base_len: u64,
    /// Bytes written up to and including the last barrier (0 if there was none).
    base_stream: u64,
    /// Whether a torn cut may end exactly at the last barrier: it was a write that ended at
    /// a page boundary.
    base_is_candidate: bool,
    /// Writes after the last barrier, in order, contiguous ones merged.
    records: Vec<Extent>,
}

impl UndoLog {
    /// A log for a file whose current (and synced) length is `synced_len`.
    pub(crate) fn new(synced_len: u64) -> UndoLog {
        UndoLog {
            synced_len,
            cur_len: synced_len,
            originals: BTreeMap::new(),
            touched: RangeSet::default(),
            stream_bytes: 0,
            base_len: synced_len,
            base_stream: 0,
            base_is_candidate: false,
            records: Vec::new(),
        }
    }

    /// The current length of the file as the log knows it.
    pub(crate) fn cur_len(&self) -> u64 {
        self.cur_len
    }

    /// Bytes written since the last sync.
    pub(crate) fn unsynced_bytes(&self) -> u64 {
        self.stream_bytes
    }

    /// Bytes of original data held in memory.
    #[cfg(test)]
    pub(crate) fn saved_bytes(&self) -> u64 {
        self.originals.values().map(|v| v.len() as u64).sum()
    }

    /// Saves the synced bytes of `[start, end)` that are not saved yet. Must be called before
    /// the bytes are changed.
    fn save_originals(&mut self, io: &dyn FileIo, start: u64, end: u64) -> io::Result<()> {
        let end = end.min(self.synced_len);
        if start >= end {
            return Ok(());
        }
        // Find the gaps of [start, end) between saved ranges.
        let mut gaps = Vec::new();
        let mut pos = start;
        let first = self
            .originals
            .range(..=start)
            .next_back()
            .map(|(&s, v)| (s, s + v.len() as u64));
        if let Some((_, e)) = first {
            pos = pos.max(e);
        }
        for (&s, v) in self.originals.range(start..end) {
            if s > pos {
                gaps.push((pos, s));
            }
            pos = pos.max(s + v.len() as u64);
        }
        if pos < end {
            gaps.push((pos, end));
        }
        for (s, e) in gaps {
            let mut buf = vec![0; (e - s) as usize];
            io.read_at_zero_filled(&mut buf, s)?;
            self.originals.insert(s, buf);
        }
        Ok(())
    }

    /// Makes the state after the operation just committed the new base of torn cuts.
    fn barrier(&mut self, is_candidate: bool) {
        self.base_len = self.cur_len;
        self.base_stream = self.stream_bytes;
        self.base_is_candidate = is_candidate;
        self.records.clear();
    }

    /// To be called before `len` bytes are written at `offset`.
    pub(crate) fn prepare_write(
        &mut self,
        io: &dyn FileIo,
        offset: u64,
        len: u64,
    ) -> io::Result<()> {
        self.save_originals(io, offset, offset.saturating_add(len))
    }

    /// Records that `len` bytes were written at `offset` (after [`Self::prepare_write`]).
    pub(crate) fn commit_write(&mut self, offset: u64, len: u64) {
        if len == 0 {
            return;
        }
        let end = offset + len;
        // Writing past the end makes a hole: part of the change as well.
        let start = offset.min(self.cur_len);
        let overlap = self.touched.overlaps(start, end);
        self.touched.insert(start, end);
        self.stream_bytes += len;
        self.cur_len = self.cur_len.max(end);
        if overlap || start < offset {
            self.barrier(end % PAGE == 0);
            return;
        }
        match self.records.last_mut() {
            Some(last) if last.end() == offset => last.len += len,
            _ => self.records.push(Extent { offset, len }),
        }
    }

    /// To be called before the length changes to `new_len` (truncate, fallocate).
    pub(crate) fn prepare_set_len(&mut self, io: &dyn FileIo, new_len: u64) -> io::Result<()> {
        if new_len < self.cur_len {
            self.save_originals(io, new_len, self.cur_len)?;
        }
        Ok(())
    }

    /// Records that the length changed to `new_len` (after [`Self::prepare_set_len`]).
    pub(crate) fn commit_set_len(&mut self, new_len: u64) {
        if new_len == self.cur_len {
            return;
        }
        let (a, b) = (new_len.min(self.cur_len), new_len.max(self.cur_len));
        self.touched.insert(a, b);
        self.cur_len = new_len;
        self.barrier(false);
    }

    /// To be called before the bytes of `[offset, offset + len)` are replaced by zeros
    /// (hole punching, zeroing).
    pub(crate) fn prepare_zero(
        &mut self,
        io: &dyn FileIo,
        offset: u64,
        len: u64,
    ) -> io::Result<()> {
        self.save_originals(io, offset, offset.saturating_add(len))
    }

    /// Records that `[offset, offset + len)` was zeroed and the length is now `new_len`.
    pub(crate) fn commit_zero(&mut self, offset: u64, len: u64, new_len: u64) {
        let start = offset.min(self.cur_len);
        self.touched.insert(start, offset.saturating_add(len));
        if new_len != self.cur_len {
            let (a, b) = (new_len.min(self.cur_len), new_len.max(self.cur_len));
            self.touched.insert(a, b);
        }
        self.cur_len = new_len;
        self.barrier(false);
    }

    /// The number of outcomes a torn cut chooses from; outcome 0 keeps no unsynced write.
    pub(crate) fn torn_outcomes(&self) -> u64 {
        1 + u64::from(self.base_is_candidate)
            + self.records.iter().map(|r| r.page_ends()).sum::<u64>()
    }

    /// For outcome `pick` (in `1..torn_outcomes()`), the surviving records and the bytes that
    /// survive of the next one.
    fn locate(&self, pick: u64) -> (usize, u64) {
        let mut k = pick - 1;
        if self.base_is_candidate {
            if k == 0 {
                return (0, 0);
            }
            k -= 1;
        }
        for (i, r) in self.records.iter().enumerate() {
            let n = r.page_ends();
            if k < n {
                return (i, r.nth_page_end(k));
            }
            k -= n;
        }
        unreachable!("torn outcome {pick} out of range")
    }

    /// How many unsynced bytes (in write order) survive outcome `pick`.
    pub(crate) fn surviving_stream(&self, pick: u64) -> u64 {
        if pick == 0 {
            return 0;
        }
        let (i, m) = self.locate(pick);
        self.base_stream + self.records[..i].iter().map(|r| r.len).sum::<u64>() + m
    }

    /// Writes the saved originals of `[start, end)` back.
    fn put_back(&self, io: &dyn FileIo, start: u64, end: u64) -> io::Result<()> {
        if start >= end {
            return Ok(());
        }
        let from = self
            .originals
            .range(..=start)
            .next_back()
            .map_or(start, |(&s, _)| s);
        for (&s, bytes) in self.originals.range(from..end) {
            let e = s + bytes.len() as u64;
            let (a, b) = (s.max(start), e.min(end));
            if a < b {
                io.write_all_at(&bytes[(a - s) as usize..(b - s) as usize], a)?;
            }
        }
        Ok(())
    }

    /// Undoes everything since the sync.
    pub(crate) fn restore_clean(&self, io: &dyn FileIo) -> io::Result<Restored> {
        io.set_len(self.synced_len)?;
        for (&s, bytes) in &self.originals {
            io.write_all_at(bytes, s)?;
        }
        Ok(Restored {
            bytes_dropped: self.stream_bytes,
            old_len: self.cur_len,
            new_len: self.synced_len,
        })
    }

    /// Applies torn outcome `pick` (see [`Self::torn_outcomes`]); 0 is a clean restore.
    pub(crate) fn restore_torn(&self, io: &dyn FileIo, pick: u64) -> io::Result<Restored> {
        if pick == 0 {
            return self.restore_clean(io);
        }
        let (i, m) = self.locate(pick);
        let mut new_len = self.base_len;
        for r in &self.records[..i] {
            new_len = new_len.max(r.end());
        }
        let mut lost: Vec<(u64, u64)> = Vec::new();
        if let Some(r) = self.records.get(i) {
            if m > 0 {
                new_len = new_len.max(r.offset + m);
            }
            lost.push((r.offset + m, r.end()));
            lost.extend(self.records[i + 1..].iter().map(|r| (r.offset, r.end())));
        }
        let keep_until = new_len.min(self.synced_len);
        for (s, e) in lost {
            self.put_back(io, s, e.min(keep_until))?;
        }
        io.set_len(new_len)?;
        Ok(Restored {
            bytes_dropped: self.stream_bytes - self.surviving_stream(pick),
            old_len: self.cur_len,
            new_len,
        })
    }
}

#[cfg(test)]
mod tests {
    use std::cell::RefCell;

    use super::*;

    /// A file in memory.
    #[derive(Debug, Default, Clone)]
    struct MemFile(RefCell<Vec<u8>>);

    impl FileIo for MemFile {
        fn read_at_zero_filled(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
            let data = self.0.borrow();
            for (i, b) in buf.iter_mut().enumerate() {
                *b = data.get(offset as usize + i).copied().unwrap_or(0);
            }
            Ok(())
        }

        fn write_all_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
            let mut data = self.0.borrow_mut();
            let end = offset as usize + buf.len();
            if data.len() < end {
                data.resize(end, 0);
            }
            data[offset as usize..end].copy_from_slice(buf);
            Ok(())
        }

        fn set_len(&self, len: u64) -> io::Result<()> {
            self.0.borrow_mut().resize(len as usize, 0);
            Ok(())
        }
    }

    impl MemFile {
        fn bytes(&self) -> Vec<u8> {
            self.0.borrow().clone()
        }
    }

    /// An operation on a file, for replaying a history.
    #[derive(Debug, Clone)]
    enum Op {
        Write(u64, Vec<u8>),
        SetLen(u64),
        Zero(u64, u64),
    }

    /// A file plus its log, driven like the file system drives them.
    struct Tracked {
        file: MemFile,
        log: Option<UndoLog>,
        synced: Vec<u8>,
        ops: Vec<Op>,
    }

    impl Tracked {
        fn new(initial: Vec<u8>) -> Tracked {
            Tracked {
                file: MemFile(RefCell::new(initial.clone())),
                log: None,
                synced: initial,
                ops: Vec::new(),
            }
        }

        fn log(&mut self) -> &mut UndoLog {
            let len = self.file.0.borrow().len() as u64;
            self.log.get_or_insert_with(|| UndoLog::new(len))
        }

        fn apply(&mut self, op: Op) {
            let file = self.file.clone();
            match &op {
                Op::Write(off, data) => {
                    let log = self.log();
                    log.prepare_write(&file, *off, data.len() as u64).unwrap();
                    file.write_all_at(data, *off).unwrap();
                    log.commit_write(*off, data.len() as u64);
                }
                Op::SetLen(len) => {
                    let log = self.log();
                    log.prepare_set_len(&file, *len).unwrap();
                    file.set_len(*len).unwrap();
                    log.commit_set_len(*len);
                }
                Op::Zero(off, len) => {
                    let log = self.log();
                    log.prepare_zero(&file, *off, *len).unwrap();
                    let cur = file.0.borrow().len() as u64;
                    let end = (off + len).min(cur);
                    if *off < end {
                        file.write_all_at(&vec![0; (end - off) as usize], *off)
                            .unwrap();
                    }
                    log.commit_zero(*off, *len, cur);
                }
            }
            self.file = file;
            self.ops.push(op);
        }

        fn sync(&mut self) {
            self.log = None;
            self.synced = self.file.bytes();
            self.ops.clear();
        }

        /// The contents after replaying the ops since the sync until `budget` written bytes.
        fn replay(&self, budget: u64) -> Vec<u8> {
            let f = MemFile(RefCell::new(self.synced.clone()));
            if budget == 0 {
                return f.bytes();
            }
            let mut left = budget;
            for op in &self.ops {
                match op {
                    Op::Write(off, data) => {
                        let n = (data.len() as u64).min(left);
                        f.write_all_at(&data[..n as usize], *off).unwrap();
                        left -= n;
                        if left == 0 {
                            break;
                        }
                    }
                    Op::SetLen(len) => f.set_len(*len).unwrap(),
                    Op::Zero(off, len) => {
                        let cur = f.0.borrow().len() as u64;
                        let end = (off + len).min(cur);
                        if *off < end {
                            f.write_all_at(&vec![0; (end - off) as usize], *off)
                                .unwrap();
                        }
                    }
                }
            }
            f.bytes()
        }
    }

    fn pattern(seed: u64, len: usize) -> Vec<u8> {
        (0..len)
            .map(|i| (seed.wrapping_mul(31).wrapping_add(i as u64 * 7) % 251) as u8 + 1)
            .collect()
    }

    #[test]
    fn range_set_merges_and_detects_overlap() {
        let mut s = RangeSet::default();
        s.insert(10, 20);
        s.insert(30, 40);
        assert!(!s.overlaps(20, 30));
        assert!(s.overlaps(19, 21));
        assert!(s.overlaps(0, 11));
        assert!(!s.overlaps(0, 10));
        s.insert(20, 30);
        assert_eq!(s.ranges.len(), 1);
        assert_eq!(s.ranges.get(&10), Some(&40));
        s.insert(5, 6);
        s.insert(0, 100);
        assert_eq!(s.ranges.len(), 1);
        assert_eq!(s.ranges.get(&0), Some(&100));
    }

    #[test]
    fn appends_need_no_saved_bytes_and_one_record() {
        let mut t = Tracked::new(pattern(1, 1000));
        for i in 0..100 {
            t.apply(Op::Write(1000 + i * 10, pattern(i, 10)));
        }
        let log = t.log.as_ref().unwrap();
        assert_eq!(log.saved_bytes(), 0);
        assert_eq!(log.records.len(), 1);
        assert_eq!(log.unsynced_bytes(), 1000);
        let r = log.restore_clean(&t.file).unwrap();
        assert_eq!(r.bytes_dropped, 1000);
        assert_eq!((r.old_len, r.new_len), (2000, 1000));
        assert_eq!(t.file.bytes(), pattern(1, 1000));
    }

    #[test]
    fn overwriting_twice_saves_the_original_once() {
        let mut t = Tracked::new(pattern(2, 8192));
        t.apply(Op::Write(100, vec![1; 500]));
        t.apply(Op::Write(300, vec![2; 500]));
        t.apply(Op::Write(100, vec![3; 700]));
        assert_eq!(t.log.as_ref().unwrap().saved_bytes(), 700);
        t.log.as_ref().unwrap().restore_clean(&t.file).unwrap();
        assert_eq!(t.file.bytes(), pattern(2, 8192));
    }

    #[test]
    fn truncate_and_regrow_is_undone() {
        let mut t = Tracked::new(pattern(3, 5000));
        t.apply(Op::SetLen(100));
        t.apply(Op::Write(100, vec![9; 50]));
        t.apply(Op::SetLen(9000));
        t.log.as_ref().unwrap().restore_clean(&t.file).unwrap();
        assert_eq!(t.file.bytes(), pattern(3, 5000));
    }

    #[test]
    fn torn_outcomes_of_an_append_end_at_page_boundaries() {
        let mut t = Tracked::new(pattern(4, 1000));
        t.apply(Op::Write(1000, pattern(5, 10_000)));
        let log = t.log.clone().unwrap();
        // Page ends inside [1000, 11000): 4096, 8192. Plus "nothing".
        assert_eq!(log.torn_outcomes(), 3);
        for pick in 0..log.torn_outcomes() {
            let f = t.file.clone();
            let f = MemFile(RefCell::new(f.bytes()));
            let r = log.restore_torn(&f, pick).unwrap();
            let kept = log.surviving_stream(pick);
            assert_eq!(f.bytes(), t.replay(kept));
            assert_eq!(r.new_len, 1000 + kept);
            assert!(pick == 0 || r.new_len % PAGE == 0);
            assert_eq!(r.bytes_dropped, 10_000 - kept);
        }
    }

    /// A small deterministic generator for the randomized tests.
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = self.0;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^ (z >> 31)
        }
        fn below(&mut self, n: u64) -> u64 {
            self.next() % n
        }
    }

    fn random_op(rng: &mut Rng, cur_len: u64) -> Op {
        match rng.below(10) {
            0..=4 => {
                // Append, mostly.
                let len = 1 + rng.below(6000);
                Op::Write(cur_len, pattern(rng.next(), len as usize))
            }
            5 | 6 => {
                let off = rng.below(cur_len + 3000);
                let len = 1 + rng.below(5000);
                Op::Write(off, pattern(rng.next(), len as usize))
            }
            7 => Op::SetLen(rng.below(cur_len + 5000)),
            8 => Op::Zero(rng.below(cur_len + 10), rng.below(5000)),
            _ => Op::Write(cur_len + rng.below(5000), pattern(rng.next(), 100)),
        }
    }

    #[test]
    fn randomized_histories_restore_exactly() {
        let mut rng = Rng(42);
        for round in 0..300 {
            let initial = pattern(round, rng.below(20_000) as usize);
            let mut t = Tracked::new(initial);
            // Some synced history first.
            for _ in 0..rng.below(5) {
                let len = t.file.0.borrow().len() as u64;
                let op = random_op(&mut rng, len);
                t.apply(op);
                if rng.below(2) == 0 {
                    t.sync();
                }
            }
            t.sync();
            let n = 1 + rng.below(12);
            for _ in 0..n {
                let len = t.file.0.borrow().len() as u64;
                let op = random_op(&mut rng, len);
                t.apply(op);
            }
            let log = t.log.clone().expect("a log after changes");
            assert_eq!(log.cur_len(), t.file.0.borrow().len() as u64);
            // Clean.
            let f = MemFile(RefCell::new(t.file.bytes()));
            log.restore_clean(&f).unwrap();
            assert_eq!(f.bytes(), t.synced, "round {round}: clean restore");
            // Every torn outcome is a replay of a prefix ending at a page boundary.
            for pick in 0..log.torn_outcomes() {
                let f = MemFile(RefCell::new(t.file.bytes()));
                let r = log.restore_torn(&f, pick).unwrap();
                let kept = log.surviving_stream(pick);
                assert_eq!(
                    f.bytes(),
                    t.replay(kept),
                    "round {round}: torn outcome {pick} of {} ({:?})",
                    log.torn_outcomes(),
                    t.ops
                );
                assert_eq!(r.new_len, f.0.borrow().len() as u64);
                assert_eq!(r.bytes_dropped, log.unsynced_bytes() - kept);
                if pick > 0 {
                    // The last surviving byte ends a page of the file.
                    let mut left = kept;
                    let mut end = None;
                    for op in &t.ops {
                        if let Op::Write(off, data) = op {
                            let n = (data.len() as u64).min(left);
                            left -= n;
                            if left == 0 {
                                end = Some(off + n);
                                break;
                            }
                        }
                    }
                    let end = end.expect("the surviving prefix ends in a write");
                    assert_eq!(end % PAGE, 0, "round {round}: outcome {pick} ends at {end}");
                }
            }
        }
    }
}
