//! Snapshot files: the on-disk format, the directory that holds them, and the handle
//! ([`SnapshotData`]) openraft passes between the state machine and the network.
//!
//! A snapshot file is `<index>-<leader>.snap`: an 8-byte big-endian header length, the
//! JSON header (`{"meta": …}`), then the bincode encoding of the ledger. Files are written
//! under a `.tmp` name, fsynced, renamed and the directory fsynced, so a crash never leaves
//! a partial `.snap`; a `.tmp` left by a crash is removed on the next open. Every function
//! here does blocking I/O: callers on the async runtime run them in `spawn_blocking`.

use std::fmt;
use std::fs::{self, File};
use std::io::{self, BufReader, BufWriter, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use openraft::alias::SnapshotMetaOf;
use serde::{Deserialize, Serialize};

use crate::raft::TypeConfig;

/// How many `.snap` files are kept: the newest, and one older to fall back to when the
/// newest cannot be read.
const KEEP_SNAPSHOTS: usize = 2;
/// Largest JSON header accepted (a membership of a few nodes is a few hundred bytes); a
/// corrupt length must not make the reader allocate without bound.
const MAX_HEADER_BYTES: u64 = 1 << 20;
/// Buffer of the streaming encoder and decoder.
const IO_BUFFER_BYTES: usize = 1 << 20;

#[derive(Serialize, Deserialize)]
struct SnapshotHeader {
    meta: SnapshotMetaOf<TypeConfig>,
}

/// A snapshot's ledger encoding: `len` bytes from `offset` in an open file.
///
/// Holding the open file (not a path) keeps the bytes readable while a newer snapshot
/// replaces this one on disk. A staged handle (received from the leader, not yet
/// installed) owns its temp file: installing moves it into place, dropping deletes it.
pub struct SnapshotData {
    file: File,
    offset: u64,
    len: u64,
    staged: Option<PathBuf>,
}

impl fmt::Debug for SnapshotData {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SnapshotData")
            .field("offset", &self.offset)
            .field("len", &self.len)
            .field("staged", &self.staged)
            .finish()
    }
}

impl SnapshotData {
    /// The `len` bytes from `offset` in `file`.
    pub fn from_file(file: File, offset: u64, len: u64) -> SnapshotData {
        SnapshotData {
            file,
            offset,
            len,
            staged: None,
        }
    }

    /// A complete snapshot file at `path` (header included) that is not yet in place;
    /// see the type's doc.
    pub(crate) fn staged(file: File, offset: u64, len: u64, path: PathBuf) -> SnapshotData {
        SnapshotData {
            file,
            offset,
            len,
            staged: Some(path),
        }
    }

    /// Length of the ledger encoding in bytes.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether the encoding is empty (never for a real ledger).
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Fills `buf` from position `at` of the encoding. Blocking.
    pub fn read_at(&self, at: u64, buf: &mut [u8]) -> io::Result<()> {
        let end = at.checked_add(buf.len() as u64);
        if end.is_none_or(|end| end > self.len) {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "read past the end of the snapshot",
            ));
        }
        self.file.read_exact_at(buf, self.offset + at)
    }

    /// Flushes the file to disk. Blocking.
    pub(crate) fn sync(&self) -> io::Result<()> {
        self.file.sync_all()
    }

    /// A buffered reader over the whole encoding. Blocking.
    fn reader(&self) -> io::Result<BufReader<io::Take<File>>> {
        let mut file = self.file.try_clone()?;
        file.seek(SeekFrom::Start(self.offset))?;
        Ok(BufReader::with_capacity(
            IO_BUFFER_BYTES,
            file.take(self.len),
        ))
    }
}

impl Drop for SnapshotData {
    /// A staged snapshot that was never installed (openraft found it outdated, or the
    /// transfer failed) is deleted here rather than left for the next start.
    fn drop(&mut self) {
        if let Some(path) = self.staged.take() {
            if let Err(error) = fs::remove_file(&path) {
                tracing::warn!(path = %path.display(), %error, "cannot remove a staged snapshot");
            }
        }
    }
}

/// Encodes the header that precedes the ledger in a snapshot file.
pub(crate) fn encode_header(meta: &SnapshotMetaOf<TypeConfig>) -> io::Result<Vec<u8>> {
    let json =
        serde_json::to_vec(&SnapshotHeader { meta: meta.clone() }).map_err(io::Error::other)?;
    let mut header = Vec::with_capacity(8 + json.len());
    header.extend_from_slice(&(json.len() as u64).to_be_bytes());
    header.extend_from_slice(&json);
    Ok(header)
}

fn invalid(what: impl fmt::Display) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what.to_string())
}

/// Reads a snapshot file's header: its meta and the ledger encoding behind it.
pub(crate) fn open_snapshot(path: &Path) -> io::Result<(SnapshotMetaOf<TypeConfig>, SnapshotData)> {
    let mut file = File::open(path)?;
    let size = file.metadata()?.len();
    let mut len = [0u8; 8];
    file.read_exact(&mut len)
        .map_err(|e| invalid(format!("header length: {e}")))?;
    let len = u64::from_be_bytes(len);
    if len > MAX_HEADER_BYTES || 8 + len > size {
        return Err(invalid(format!(
            "header of {len} bytes in a {size}-byte file"
        )));
    }
    let mut json = vec![0u8; len as usize];
    file.read_exact(&mut json)?;
    let header: SnapshotHeader =
        serde_json::from_slice(&json).map_err(|e| invalid(format!("header: {e}")))?;
    let offset = 8 + len;
    Ok((
        header.meta,
        SnapshotData::from_file(file, offset, size - offset),
    ))
}

/// Encodes `value` (the ledger's snapshot view) the way [`decode_ledger`] reads it.
pub(crate) fn encode_ledger<T: Serialize, W: Write>(value: &T, out: &mut W) -> io::Result<u64> {
    bincode::serde::encode_into_std_write(value, out, bincode::config::standard())
        .map(|written| written as u64)
        .map_err(io::Error::other)
}

/// Decodes a ledger snapshot straight from the file, without reading it into memory
/// first. The encoding must fill the data exactly.
pub(crate) fn decode_ledger<T: serde::de::DeserializeOwned>(data: &SnapshotData) -> io::Result<T> {
    let mut reader = data.reader()?;
    let value = bincode::serde::decode_from_std_read(&mut reader, bincode::config::standard())
        .map_err(invalid)?;
    if !reader.buffer().is_empty() || reader.get_ref().limit() != 0 {
        return Err(invalid("trailing bytes after the ledger"));
    }
    Ok(value)
}

/// The file name of the snapshot `meta` describes; zero-padded so that name order is log
/// order.
pub(crate) fn file_name(meta: &SnapshotMetaOf<TypeConfig>) -> String {
    match &meta.last_log_id {
        Some(log_id) => format!(
            "{:020}-{}.snap",
            log_id.index(),
            log_id.committed_leader_id()
        ),
        None => "00000000000000000000-none.snap".to_string(),
    }
}

/// Of the names in a snapshot directory, the snapshots (oldest first) and the leftovers
/// of interrupted writes.
pub(crate) fn classify(names: impl IntoIterator<Item = String>) -> (Vec<String>, Vec<String>) {
    let mut snapshots = Vec::new();
    let mut stale = Vec::new();
    for name in names {
        if name.ends_with(".snap") {
            snapshots.push(name);
        } else if name.ends_with(".tmp") {
            stale.push(name);
        }
    }
    snapshots.sort();
    (snapshots, stale)
}

/// The directory of snapshot files.
#[derive(Debug, Clone)]
pub(crate) struct SnapshotDir {
    path: PathBuf,
}

impl SnapshotDir {
    /// Opens (creates) the directory and removes the `.tmp` files interrupted writes and
    /// transfers left behind: nothing can be using them before the node starts.
    pub(crate) fn open(path: &Path) -> io::Result<SnapshotDir> {
        fs::create_dir_all(path)?;
        let dir = SnapshotDir {
            path: path.to_path_buf(),
        };
        let (_, stale) = classify(dir.names()?);
        for name in stale {
            match fs::remove_file(path.join(&name)) {
                Ok(()) => tracing::info!(file = %name, "removed a stale snapshot temp file"),
                Err(error) => {
                    tracing::warn!(file = %name, %error, "cannot remove a stale temp file")
                }
            }
        }
        Ok(dir)
    }

    /// The directory.
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    fn names(&self) -> io::Result<Vec<String>> {
        let mut names = Vec::new();
        for entry in fs::read_dir(&self.path)? {
            names.push(entry?.file_name().to_string_lossy().into_owned());
        }
        Ok(names)
    }

    /// The snapshot files, oldest first.
    pub(crate) fn snapshots(&self) -> io::Result<Vec<PathBuf>> {
        let (snapshots, _) = classify(self.names()?);
        Ok(snapshots.into_iter().map(|n| self.path.join(n)).collect())
    }

    /// The newest snapshot, if any.
    pub(crate) fn newest(&self) -> io::Result<Option<(SnapshotMetaOf<TypeConfig>, SnapshotData)>> {
        match self.snapshots()?.pop() {
            Some(path) => open_snapshot(&path).map(Some),
            None => Ok(None),
        }
    }

    /// Moves an unreadable snapshot out of the way (kept as `.corrupt` for inspection), so
    /// that the older one becomes the newest.
    pub(crate) fn set_aside(&self, path: &Path) -> io::Result<()> {
        fs::rename(path, path.with_extension("corrupt"))?;
        sync_dir(&self.path)
    }

    /// Writes a new snapshot: the header, then whatever `write_data` encodes, into a temp
    /// file that is fsynced and renamed into place. Returns a handle on the placed file.
    pub(crate) fn write(
        &self,
        meta: &SnapshotMetaOf<TypeConfig>,
        write_data: impl FnOnce(&mut BufWriter<&File>) -> io::Result<u64>,
    ) -> io::Result<SnapshotData> {
        let path = self.path.join(file_name(meta));
        let temp = path.with_extension("tmp");
        let header = encode_header(meta)?;
        let file = create_rw(&temp)?;
        let written = (|| {
            let mut out = BufWriter::with_capacity(IO_BUFFER_BYTES, &file);
            out.write_all(&header)?;
            let len = write_data(&mut out)?;
            out.flush()?;
            drop(out);
            file.sync_all()?;
            Ok(len)
        })();
        let len = match written {
            Ok(len) => len,
            Err(error) => {
                let _ = fs::remove_file(&temp);
                return Err(error);
            }
        };
        self.place(&temp, &path)?;
        Ok(SnapshotData::from_file(file, header.len() as u64, len))
    }

    /// Makes `data` the snapshot of `meta` in this directory. A staged file whose header
    /// is `meta`'s is fsynced and renamed; anything else (a snapshot from another
    /// directory, as openraft's storage tests pass) is copied in, chunk by chunk.
    pub(crate) fn install(
        &self,
        meta: &SnapshotMetaOf<TypeConfig>,
        mut data: SnapshotData,
    ) -> io::Result<SnapshotData> {
        if let Some(staged) = data.staged.take() {
            let path = self.path.join(file_name(meta));
            let ours = staged.parent() == Some(self.path.as_path())
                && open_snapshot(&staged).is_ok_and(|(staged_meta, _)| &staged_meta == meta);
            if ours {
                data.sync()?;
                self.place(&staged, &path)?;
                return Ok(data);
            }
            // Not in the expected shape: copy it like any other, then delete it.
            data.staged = Some(staged);
        }
        let copied = self.write(meta, |out| {
            let mut reader = data.reader()?;
            io::copy(&mut reader, out)
        })?;
        drop(data);
        Ok(copied)
    }

    /// Renames `temp` to `path`, fsyncs the directory and removes all but the newest
    /// [`KEEP_SNAPSHOTS`] snapshots.
    fn place(&self, temp: &Path, path: &Path) -> io::Result<()> {
        fs::rename(temp, path)?;
        sync_dir(&self.path)?;
        let mut snapshots = self.snapshots()?;
        while snapshots.len() > KEEP_SNAPSHOTS {
            let oldest = snapshots.remove(0);
            if let Err(error) = fs::remove_file(&oldest) {
                tracing::warn!(file = %oldest.display(), %error, "cannot remove an old snapshot");
            }
        }
        Ok(())
    }
}

/// Creates (truncates) `path` for writing and reading back: the handle is the snapshot
/// data that is later read.
pub(crate) fn create_rw(path: &Path) -> io::Result<File> {
    fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(path)
}

/// Makes a rename in `dir` durable.
fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classify_sorts_snapshots_and_finds_leftovers() {
        let names = [
            "00000000000000000020-1-2.snap",
            "00000000000000000010-1-2.snap",
            "00000000000000000030-1-2.tmp",
            "incoming-00000000000000ab.tmp",
            "00000000000000000005-1-1.corrupt",
            "notes.txt",
        ]
        .map(String::from);
        let (snapshots, stale) = classify(names);
        assert_eq!(
            snapshots,
            [
                "00000000000000000010-1-2.snap",
                "00000000000000000020-1-2.snap"
            ]
        );
        assert_eq!(
            stale,
            [
                "00000000000000000030-1-2.tmp",
                "incoming-00000000000000ab.tmp"
            ]
        );
    }

    #[test]
    fn a_written_snapshot_reads_back_and_reads_at_offsets() {
        let dir = tempfile::tempdir().unwrap();
        let snapshots = SnapshotDir::open(dir.path()).unwrap();
        let meta = SnapshotMetaOf::<TypeConfig>::default();
        let payload: Vec<u8> = (0..10_000u32).map(|i| (i % 251) as u8).collect();
        let written = snapshots
            .write(&meta, |out| {
                out.write_all(&payload)?;
                Ok(payload.len() as u64)
            })
            .unwrap();
        assert_eq!(written.len(), payload.len() as u64);
        let (read_meta, data) = snapshots.newest().unwrap().unwrap();
        assert_eq!(read_meta, meta);
        let mut middle = [0u8; 100];
        data.read_at(5_000, &mut middle).unwrap();
        assert_eq!(middle[..], payload[5_000..5_100]);
        assert!(data.read_at(9_950, &mut middle).is_err(), "past the end");
        let mut all = Vec::new();
        data.reader().unwrap().read_to_end(&mut all).unwrap();
        assert_eq!(all, payload);
    }

    #[test]
    fn a_corrupt_header_is_an_error_not_an_allocation() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.snap");
        fs::write(&path, [0xff; 64]).unwrap();
        let error = open_snapshot(&path).unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::InvalidData, "{error}");
        fs::write(&path, [0; 4]).unwrap();
        assert!(open_snapshot(&path).is_err());
    }

    #[test]
    fn a_dropped_staged_snapshot_deletes_its_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("incoming-1.tmp");
        fs::write(&path, b"data").unwrap();
        let data = SnapshotData::staged(File::open(&path).unwrap(), 0, 4, path.clone());
        drop(data);
        assert!(!path.exists());
    }
}
