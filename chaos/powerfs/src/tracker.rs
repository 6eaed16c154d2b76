//! The files with unsynced changes, the counters, and the power cut itself.
//!
//! Files are identified by their backing device and inode number, not by path: RocksDB
//! renames files, and every name of a file shares its data. An entry holds its own
//! descriptor of the backing file, so the cut can restore the file wherever it was renamed
//! to, and so the inode number cannot be reused while the entry exists.

use std::collections::HashMap;
use std::fs::File;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock, RwLockReadGuard};

use crate::undo::{FileIo, UndoLog};
use crate::{CutMode, CutReport, PowerFsStats};

/// A backing file: device and inode number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct FileKey {
    pub(crate) dev: u64,
    pub(crate) ino: u64,
}

impl FileKey {
    /// The key of an open file.
    pub(crate) fn of(file: &File) -> io::Result<FileKey> {
        let m = file.metadata()?;
        Ok(FileKey {
            dev: m.dev(),
            ino: m.ino(),
        })
    }
}

/// One file with changes since its last sync.
#[derive(Debug)]
struct Entry {
    /// Read-write descriptor of the backing file.
    file: File,
    log: UndoLog,
    /// Set when the entry left the table (synced, deleted, cut): a writer holding it must
    /// look the file up again.
    dead: bool,
}

/// Counters since mount.
#[derive(Debug, Default)]
struct Counters {
    fsyncs: AtomicU64,
    writes: AtomicU64,
    bytes_written: AtomicU64,
    unsynced_bytes: AtomicU64,
    cuts: AtomicU64,
    bytes_dropped: AtomicU64,
}

/// A change to a file, made through [`Tracker::change`].
pub(crate) enum Change<'a> {
    /// Write `data` at `offset`, or at the end of the file if `append`.
    Write {
        offset: u64,
        data: &'a [u8],
        append: bool,
    },
    /// Set the length.
    SetLen(u64),
    /// `fallocate(2)` with these arguments.
    Fallocate { mode: i32, offset: u64, len: u64 },
}

/// What [`Tracker::change`] did.
pub(crate) enum Changed {
    /// Bytes written.
    Written(usize),
    /// The length was set, or space allocated.
    Done,
}

/// The unsynced state of all files of one mount.
#[derive(Debug, Default)]
pub(crate) struct Tracker {
    files: Mutex<HashMap<FileKey, Arc<Mutex<Entry>>>>,
    /// Changes hold it shared, a cut exclusively: a cut waits for changes in flight.
    gate: RwLock<()>,
    counters: Counters,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn read_gate(g: &RwLock<()>) -> RwLockReadGuard<'_, ()> {
    g.read().unwrap_or_else(|p| p.into_inner())
}

fn cvt(r: libc::c_int) -> io::Result<()> {
    if r == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// A deterministic generator (SplitMix64) for torn cuts.
struct SplitMix(u64);

impl SplitMix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

impl Tracker {
    /// The entry of `key`, created for `file` (whose current length is taken as synced) if
    /// there is none.
    fn entry(&self, key: FileKey, file: &File) -> io::Result<Arc<Mutex<Entry>>> {
        let mut files = lock(&self.files);
        if let Some(e) = files.get(&key) {
            return Ok(e.clone());
        }
        let own = file.try_clone()?;
        let len = own.metadata()?.len();
        let e = Arc::new(Mutex::new(Entry {
            file: own,
            log: UndoLog::new(len),
            dead: false,
        }));
        files.insert(key, e.clone());
        Ok(e)
    }

    /// Applies `change` to `file` (the backing file `key`, open read-write), recording what a
    /// cut needs to undo it.
    pub(crate) fn change(
        &self,
        key: FileKey,
        file: &File,
        change: Change<'_>,
    ) -> io::Result<Changed> {
        let _gate = read_gate(&self.gate);
        // A length change to the current length changes nothing: no entry needed.
        if let Change::SetLen(len) = change {
            if !lock(&self.files).contains_key(&key) && file.metadata()?.len() == len {
                return Ok(Changed::Done);
            }
        }
        loop {
            let entry = self.entry(key, file)?;
            let mut e = lock(&entry);
            if e.dead {
                continue;
            }
            let e = &mut *e;
            let io: &dyn FileIo = &e.file;
            return match change {
                Change::Write {
                    offset,
                    data,
                    append,
                } => {
                    let offset = if append { e.log.cur_len() } else { offset };
                    e.log.prepare_write(io, offset, data.len() as u64)?;
                    let n = write_at(file, data, offset)?;
                    e.log.commit_write(offset, n as u64);
                    self.counters.writes.fetch_add(1, Ordering::Relaxed);
                    self.counters
                        .bytes_written
                        .fetch_add(n as u64, Ordering::Relaxed);
                    self.counters
                        .unsynced_bytes
                        .fetch_add(n as u64, Ordering::Relaxed);
                    Ok(Changed::Written(n))
                }
                Change::SetLen(len) => {
                    e.log.prepare_set_len(io, len)?;
                    file.set_len(len)?;
                    e.log.commit_set_len(len);
                    Ok(Changed::Done)
                }
                Change::Fallocate { mode, offset, len } => {
                    self.fallocate(e, file, mode, offset, len)?;
                    Ok(Changed::Done)
                }
            };
        }
    }

    fn fallocate(
        &self,
        e: &mut Entry,
        file: &File,
        mode: i32,
        offset: u64,
        len: u64,
    ) -> io::Result<()> {
        use std::os::fd::AsRawFd;
        let unsupported = libc::FALLOC_FL_COLLAPSE_RANGE | libc::FALLOC_FL_INSERT_RANGE;
        if mode & unsupported != 0 {
            return Err(io::Error::from_raw_os_error(libc::EOPNOTSUPP));
        }
        let zeroes = mode & (libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_ZERO_RANGE) != 0;
        let keep_size = mode & libc::FALLOC_FL_KEEP_SIZE != 0;
        let end = offset.saturating_add(len);
        let cur = e.log.cur_len();
        let new_len = if keep_size { cur } else { cur.max(end) };
        let io: &dyn FileIo = &e.file;
        if zeroes {
            e.log.prepare_zero(io, offset, len)?;
        }
        let (off, l) = (
            i64::try_from(offset).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?,
            i64::try_from(len).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?,
        );
        // SAFETY: plain system call on a descriptor we own.
        cvt(unsafe { libc::fallocate(file.as_raw_fd(), mode, off, l) })?;
        if zeroes {
            e.log.commit_zero(offset, len, new_len);
        } else {
            // Allocation keeps the contents; only a length change needs undoing.
            e.log.commit_set_len(new_len);
        }
        Ok(())
    }

    /// The file was made durable by fsync or fdatasync.
    pub(crate) fn synced(&self, key: FileKey) {
        self.counters.fsyncs.fetch_add(1, Ordering::Relaxed);
        self.drop_entry(key);
    }

    /// Forgets `key` if the file no longer has a name (its data cannot come back).
    pub(crate) fn forget_if_deleted(&self, key: FileKey) {
        let entry = lock(&self.files).get(&key).cloned();
        if let Some(entry) = entry {
            let nlink = lock(&entry).file.metadata().map(|m| m.nlink()).unwrap_or(0);
            if nlink == 0 {
                self.drop_entry(key);
            }
        }
    }

    fn drop_entry(&self, key: FileKey) {
        let entry = lock(&self.files).remove(&key);
        if let Some(entry) = entry {
            let mut e = lock(&entry);
            e.dead = true;
            self.counters
                .unsynced_bytes
                .fetch_sub(e.log.unsynced_bytes(), Ordering::Relaxed);
        }
    }

    /// Undoes the unsynced changes of every file, as `mode` says.
    pub(crate) fn cut(&self, mode: CutMode) -> io::Result<CutReport> {
        let _gate = self.gate.write().unwrap_or_else(|p| p.into_inner());
        let mut entries: Vec<(FileKey, Arc<Mutex<Entry>>)> =
            std::mem::take(&mut *lock(&self.files))
                .into_iter()
                .collect();
        entries.sort_by_key(|(k, _)| *k);
        let mut rng = match mode {
            CutMode::Clean => None,
            CutMode::Torn { seed } => Some(SplitMix(seed)),
        };
        let mut report = CutReport::default();
        let mut first_error = None;
        for (_, entry) in entries {
            let mut e = lock(&entry);
            e.dead = true;
            self.counters
                .unsynced_bytes
                .fetch_sub(e.log.unsynced_bytes(), Ordering::Relaxed);
            // A file without a name is gone, whatever happened to its data.
            match e.file.metadata() {
                Ok(m) if m.nlink() == 0 => continue,
                Ok(_) => {}
                Err(err) => {
                    first_error.get_or_insert(err);
                    continue;
                }
            }
            let io: &dyn FileIo = &e.file;
            let restored = match rng.as_mut() {
                None => e.log.restore_clean(io),
                Some(rng) => {
                    let pick = rng.next() % e.log.torn_outcomes();
                    e.log.restore_torn(io, pick)
                }
            };
            match restored {
                Ok(r) => {
                    if r.bytes_dropped > 0 || r.new_len != r.old_len {
                        report.files += 1;
                    }
                    if r.new_len < r.old_len {
                        report.files_truncated += 1;
                    }
                    report.bytes_dropped += r.bytes_dropped;
                }
                Err(err) => {
                    first_error.get_or_insert(err);
                }
            }
        }
        self.counters.cuts.fetch_add(1, Ordering::Relaxed);
        self.counters
            .bytes_dropped
            .fetch_add(report.bytes_dropped, Ordering::Relaxed);
        match first_error {
            Some(err) => Err(err),
            None => Ok(report),
        }
    }

    /// The counters.
    pub(crate) fn stats(&self) -> PowerFsStats {
        let c = &self.counters;
        PowerFsStats {
            fsyncs: c.fsyncs.load(Ordering::Relaxed),
            writes: c.writes.load(Ordering::Relaxed),
            bytes_written: c.bytes_written.load(Ordering::Relaxed),
            unsynced_bytes: c.unsynced_bytes.load(Ordering::Relaxed),
            cuts: c.cuts.load(Ordering::Relaxed),
            bytes_dropped: c.bytes_dropped.load(Ordering::Relaxed),
        }
    }
}

/// One `pwrite`, retried on EINTR; may write less than asked.
fn write_at(file: &File, data: &[u8], offset: u64) -> io::Result<usize> {
    use std::os::unix::fs::FileExt;
    loop {
        match file.write_at(data, offset) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            r => return r,
        }
    }
}
