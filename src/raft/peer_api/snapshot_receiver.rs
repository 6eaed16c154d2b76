//! Receiving side of chunked snapshot transfers (the format and the sending side are in
//! [`network::snapshot_transfer`](crate::raft::network::snapshot_transfer)).
//!
//! Chunks of one transfer arrive in order, one at a time. Each is appended to a temp file
//! in the snapshot directory that already holds the snapshot file's header, so the
//! finished file only needs an fsync and a rename to become the newest snapshot. One
//! transfer is assembled at a time: a chunk at offset 0 starts a new one (dropping an
//! unfinished one), any other chunk must continue the transfer in progress exactly where
//! it stands. The file writes and the final fsync run in `spawn_blocking`.

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock, PoisonError};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use openraft::errors::RaftError;
use openraft::raft::SnapshotResponse;
use openraft::type_config::alias::{SnapshotMetaOf, VoteOf};
use openraft::Snapshot;

use super::{bad_request, reply, RaftRpc};
use crate::raft::codec;
use crate::raft::network::snapshot_transfer::{decode_chunk, ChunkHeader, CHUNK_BYTES};
use crate::raft::network::{SNAPSHOT_CHUNK_PATH, SNAPSHOT_PATH};
use crate::raft::state_machine::{create_rw, encode_header, SnapshotData};
use crate::raft::TypeConfig;

/// The largest snapshot a node accepts from a peer: far above any real ledger (a million
/// borrows take some hundred MB), low enough that a bad announcement cannot fill the disk.
pub(crate) const MAX_SNAPSHOT_BYTES: u64 = 4 << 30;

/// Why a chunk was refused. The sender backs off and restarts the transfer.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ChunkError {
    /// More data in one request than a chunk may carry.
    #[error("chunk of {len} bytes exceeds the {max}-byte limit")]
    TooLarge {
        /// The chunk's data length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The announced snapshot is larger than any this node accepts.
    #[error("a snapshot of {total} bytes exceeds the {max}-byte limit")]
    SnapshotTooLarge {
        /// The announced length.
        total: u64,
        /// The limit.
        max: u64,
    },
    /// The chunk reaches past the snapshot's announced length.
    #[error("chunk at {offset} of {len} bytes runs past the snapshot's {total} bytes")]
    PastTheEnd {
        /// Where the chunk starts.
        offset: u64,
        /// Its length.
        len: usize,
        /// The snapshot's length.
        total: u64,
    },
    /// A chunk after the first, but its transfer is not the one in progress.
    #[error("no transfer {transfer:016x} in progress (chunk at {offset})")]
    UnknownTransfer {
        /// The chunk's transfer id.
        transfer: u64,
        /// Where the chunk starts.
        offset: u64,
    },
    /// The chunk does not continue the transfer where it stands, or changed what it sends.
    #[error("chunk at {offset} does not continue the transfer, which holds {held} bytes")]
    OutOfOrder {
        /// Where the chunk starts.
        offset: u64,
        /// Bytes received so far.
        held: u64,
    },
    /// Writing the temp file failed.
    #[error("cannot store the snapshot chunk: {0}")]
    Io(#[from] io::Error),
}

/// What a chunk does to the transfer in progress.
#[derive(Debug, PartialEq, Eq)]
enum Step {
    /// Start a new transfer with this chunk, dropping any unfinished one.
    Start,
    /// Append to the transfer in progress.
    Append,
}

/// Where a transfer stands.
#[derive(Debug, Clone, PartialEq)]
struct Progress {
    transfer: u64,
    total: u64,
    held: u64,
    meta: SnapshotMetaOf<TypeConfig>,
}

/// Decides what a chunk of `len` bytes under `header` does, given the transfer in
/// progress. Pure: the checks that keep a file from being assembled out of order.
fn plan(
    current: Option<&Progress>,
    header: &ChunkHeader,
    len: usize,
    max: usize,
) -> Result<Step, ChunkError> {
    if len > max {
        return Err(ChunkError::TooLarge { len, max });
    }
    let end = header.offset.checked_add(len as u64);
    if end.is_none_or(|end| end > header.total) {
        return Err(ChunkError::PastTheEnd {
            offset: header.offset,
            len,
            total: header.total,
        });
    }
    if header.total > MAX_SNAPSHOT_BYTES {
        return Err(ChunkError::SnapshotTooLarge {
            total: header.total,
            max: MAX_SNAPSHOT_BYTES,
        });
    }
    if header.offset == 0 {
        return Ok(Step::Start);
    }
    let Some(current) = current.filter(|c| c.transfer == header.transfer) else {
        return Err(ChunkError::UnknownTransfer {
            transfer: header.transfer,
            offset: header.offset,
        });
    };
    if current.held != header.offset || current.total != header.total || current.meta != header.meta
    {
        return Err(ChunkError::OutOfOrder {
            offset: header.offset,
            held: current.held,
        });
    }
    Ok(Step::Append)
}

/// A transfer being assembled: its temp file, deleted if it is dropped unfinished.
struct Incoming {
    progress: Progress,
    vote: VoteOf<TypeConfig>,
    path: PathBuf,
    file: Option<File>,
    data_offset: u64,
}

impl Incoming {
    /// Creates the temp file and writes the snapshot file header into it. Blocking.
    fn create(dir: &std::path::Path, header: &ChunkHeader) -> io::Result<Incoming> {
        let path = dir.join(format!("incoming-{:016x}.tmp", header.transfer));
        tracing::info!(
            transfer = header.transfer,
            bytes = header.total,
            last_log_id = ?header.meta.last_log_id,
            "receiving a snapshot"
        );
        let snapshot_header = encode_header(&header.meta)?;
        let mut file = create_rw(&path)?;
        let mut incoming = Incoming {
            progress: Progress {
                transfer: header.transfer,
                total: header.total,
                held: 0,
                meta: header.meta.clone(),
            },
            vote: header.vote,
            path,
            file: None,
            data_offset: snapshot_header.len() as u64,
        };
        // Stored before the write, so a failed write still deletes the file on drop.
        let written = file.write_all(&snapshot_header);
        incoming.file = Some(file);
        written.map(|()| incoming)
    }

    /// Appends a chunk. Blocking.
    fn append(&mut self, data: &[u8]) -> io::Result<()> {
        let file = self
            .file
            .as_mut()
            .ok_or_else(|| io::Error::other("the transfer is finished"))?;
        file.write_all(data)?;
        self.progress.held += data.len() as u64;
        Ok(())
    }

    fn is_complete(&self) -> bool {
        self.progress.held == self.progress.total
    }

    /// Makes the assembled file durable and hands it over as a staged snapshot, which
    /// deletes it unless it is installed. Blocking.
    fn finish(
        mut self,
    ) -> io::Result<(VoteOf<TypeConfig>, SnapshotMetaOf<TypeConfig>, SnapshotData)> {
        let file = self
            .file
            .take()
            .ok_or_else(|| io::Error::other("the transfer is finished"))?;
        // Staged before the sync, so the file is deleted if the sync fails.
        let path = std::mem::take(&mut self.path);
        let data = SnapshotData::staged(file, self.data_offset, self.progress.total, path);
        data.sync()?;
        let meta = self.progress.meta.clone();
        Ok((self.vote, meta, data))
    }
}

impl Drop for Incoming {
    fn drop(&mut self) {
        if self.file.is_some() {
            if let Err(error) = fs::remove_file(&self.path) {
                tracing::warn!(path = %self.path.display(), %error, "cannot remove an unfinished snapshot");
            }
        }
    }
}

/// What a received chunk led to.
pub(crate) enum Received {
    /// More to come; the follower holds this many bytes.
    Held(u64),
    /// The snapshot is complete, durable and staged for installing.
    Complete {
        /// The sending leader's vote.
        vote: VoteOf<TypeConfig>,
        /// What the snapshot covers.
        meta: SnapshotMetaOf<TypeConfig>,
        /// The assembled snapshot.
        data: SnapshotData,
    },
}

#[derive(Default)]
struct Inner {
    dir: OnceLock<PathBuf>,
    incoming: Mutex<Option<Incoming>>,
}

/// The node's snapshot receiver: where transfers are assembled and the one in progress.
/// Clones share it.
#[derive(Clone, Default)]
pub(crate) struct SnapshotReceiver(Arc<Inner>);

impl SnapshotReceiver {
    /// Whether the directory to assemble in is known yet.
    pub(crate) fn has_dir(&self) -> bool {
        self.0.dir.get().is_some()
    }

    /// Sets the directory to assemble in (the snapshot directory); the first one set stays.
    pub(crate) fn set_dir(&self, dir: PathBuf) {
        let _ = self.0.dir.set(dir);
    }

    fn take_incoming(&self) -> Option<Incoming> {
        self.0
            .incoming
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
    }

    /// Puts a transfer back, unless a newer one started meanwhile.
    fn put_back(&self, incoming: Incoming) {
        let mut slot = self
            .0
            .incoming
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if slot.is_none() {
            *slot = Some(incoming);
        }
    }

    /// Stores `body[data_at..]`, the data of the chunk `header` describes, of at most
    /// `max` bytes.
    pub(crate) async fn receive(
        &self,
        header: ChunkHeader,
        body: Bytes,
        data_at: usize,
        max: usize,
    ) -> Result<Received, ChunkError> {
        let dir = self
            .0
            .dir
            .get()
            .cloned()
            .ok_or_else(|| io::Error::other("no snapshot directory"))?;
        let len = body.len().saturating_sub(data_at);
        let current = self.take_incoming();
        let step = match plan(current.as_ref().map(|c| &c.progress), &header, len, max) {
            Ok(step) => step,
            Err(error) => {
                // A stray chunk does not spoil the transfer in progress.
                if let Some(current) = current {
                    self.put_back(current);
                }
                return Err(error);
            }
        };
        let receiver = self.clone();
        tokio::task::spawn_blocking(move || {
            let mut incoming = match (step, current) {
                (Step::Append, Some(current)) => current,
                (_, current) => {
                    drop(current);
                    Incoming::create(&dir, &header)?
                }
            };
            incoming.append(body.get(data_at..).unwrap_or_default())?;
            if !incoming.is_complete() {
                let held = incoming.progress.held;
                receiver.put_back(incoming);
                return Ok(Received::Held(held));
            }
            let (vote, meta, data) = incoming.finish()?;
            tracing::info!(bytes = data.len(), "snapshot received; installing it");
            Ok(Received::Complete { vote, meta, data })
        })
        .await
        .map_err(io::Error::other)?
    }
}

/// Largest whole snapshot accepted on the path of earlier versions (a leader not yet
/// upgraded); current leaders send chunks of at most
/// [`CHUNK_BODY_LIMIT`](crate::raft::network::snapshot_transfer::CHUNK_BODY_LIMIT). The
/// body is buffered, so this bounds what one such request can make the node hold.
pub(super) const WHOLE_SNAPSHOT_BODY_LIMIT: usize = 1 << 30;

/// A whole snapshot in one request, from a leader of an earlier version: stored and
/// installed like a transfer of a single chunk.
pub(super) async fn whole<R: RaftRpc>(State(raft): State<R>, body: Bytes) -> Response {
    let (vote, meta, data_at) = match codec::decode_prefix(&body) {
        Ok(((vote, meta), used)) => (vote, meta, used),
        Err(e) => return bad_request(SNAPSHOT_PATH, e),
    };
    let header = ChunkHeader {
        vote,
        meta,
        transfer: rand::random(),
        offset: 0,
        total: (body.len() - data_at) as u64,
    };
    receive_chunk(raft, header, body, data_at, WHOLE_SNAPSHOT_BODY_LIMIT).await
}

/// One chunk of a snapshot transfer: stored; the last one installs the snapshot.
pub(super) async fn chunk<R: RaftRpc>(State(raft): State<R>, body: Bytes) -> Response {
    let (header, data_at) = match decode_chunk(&body) {
        Ok((header, data)) => (header, body.len() - data.len()),
        Err(e) => return bad_request(SNAPSHOT_CHUNK_PATH, e),
    };
    receive_chunk(raft, header, body, data_at, CHUNK_BYTES).await
}

async fn receive_chunk<R: RaftRpc>(
    raft: R,
    header: ChunkHeader,
    body: Bytes,
    data_at: usize,
    max: usize,
) -> Response {
    let receiver = raft.snapshot_receiver();
    if !receiver.has_dir() {
        match raft.snapshot_dir().await {
            Ok(dir) => receiver.set_dir(dir),
            Err(fatal) => {
                return reply::<SnapshotResponse<TypeConfig>>(Err(RaftError::Fatal(fatal)))
            }
        }
    }
    match receiver.receive(header, body, data_at, max).await {
        Ok(Received::Held(held)) => reply::<u64>(Ok(held)),
        Ok(Received::Complete { vote, meta, data }) => {
            let snapshot = Snapshot {
                meta,
                snapshot: data,
            };
            reply(
                raft.on_snapshot(vote, snapshot)
                    .await
                    .map_err(RaftError::Fatal),
            )
        }
        Err(error) => refused_chunk(error),
    }
}

/// A chunk that cannot be stored: 413 if too large, 409 if it does not fit the transfer,
/// 500 if the disk failed. The leader backs off and starts the transfer over.
fn refused_chunk(error: ChunkError) -> Response {
    let status = match &error {
        ChunkError::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
        ChunkError::Io(_) => StatusCode::INTERNAL_SERVER_ERROR,
        _ => StatusCode::CONFLICT,
    };
    tracing::warn!(path = SNAPSHOT_CHUNK_PATH, %error, "refused a snapshot chunk");
    (status, error.to_string()).into_response()
}

#[cfg(test)]
mod tests {
    use openraft::testing::log_id;

    use super::*;

    fn header(transfer: u64, offset: u64, total: u64) -> ChunkHeader {
        ChunkHeader {
            vote: VoteOf::<TypeConfig>::new_committed(3, 1),
            meta: SnapshotMetaOf::<TypeConfig> {
                last_log_id: Some(log_id::<TypeConfig>(3, 1, 41)),
                last_membership: Default::default(),
            },
            transfer,
            offset,
            total,
        }
    }

    fn progress(transfer: u64, held: u64, total: u64) -> Progress {
        Progress {
            transfer,
            total,
            held,
            meta: header(transfer, 0, total).meta,
        }
    }

    #[test]
    fn chunks_must_continue_the_transfer_in_order() {
        let current = progress(7, 100, 300);
        let next = |offset| plan(Some(&current), &header(7, offset, 300), 100, 100);
        assert_eq!(next(100).unwrap(), Step::Append);
        assert!(matches!(next(0).unwrap(), Step::Start));
        assert!(matches!(
            next(200),
            Err(ChunkError::OutOfOrder { held: 100, .. })
        ));
        assert!(matches!(next(50), Err(ChunkError::OutOfOrder { .. })));
        let other = plan(Some(&current), &header(8, 100, 300), 100, 100);
        assert!(matches!(other, Err(ChunkError::UnknownTransfer { .. })));
        let nothing = plan(None, &header(7, 100, 300), 100, 100);
        assert!(matches!(nothing, Err(ChunkError::UnknownTransfer { .. })));
        let changed = plan(Some(&current), &header(7, 100, 400), 100, 100);
        assert!(matches!(changed, Err(ChunkError::OutOfOrder { .. })));
    }

    #[test]
    fn oversized_and_overlong_chunks_are_refused() {
        let too_large = plan(None, &header(1, 0, 1 << 30), 101, 100);
        assert!(matches!(
            too_large,
            Err(ChunkError::TooLarge { len: 101, max: 100 })
        ));
        let past = plan(None, &header(1, 0, 50), 60, 100);
        assert!(matches!(past, Err(ChunkError::PastTheEnd { .. })));
        let huge = plan(None, &header(1, 0, MAX_SNAPSHOT_BYTES + 1), 1, 100);
        assert!(
            matches!(huge, Err(ChunkError::SnapshotTooLarge { .. })),
            "{huge:?}"
        );
        let wrapping = plan(None, &header(1, u64::MAX, u64::MAX), 1, 100);
        assert!(matches!(wrapping, Err(ChunkError::PastTheEnd { .. })));
        assert_eq!(plan(None, &header(1, 0, 0), 0, 100).unwrap(), Step::Start);
    }
}
