//! Snapshot transfer in bounded chunks over the peer link, sending side, and the chunk
//! format both sides share. The receiving side is
//! [`peer_api::snapshot_receiver`](crate::raft::peer_api).
//!
//! A snapshot is sent as a series of `POST /raft/snapshot-chunk` requests, each carrying a
//! bincode [`ChunkHeader`] (the leader's vote, the snapshot meta, a transfer id, the
//! chunk's offset and the snapshot's total length) followed by at most [`CHUNK_BYTES`] of
//! raw snapshot data. The follower appends each chunk to a temp file and answers how many
//! bytes it holds; the last chunk makes it install the assembled file and answer like a
//! whole-snapshot install. Any failure restarts the transfer from offset 0 (openraft
//! retries `full_snapshot`), under a new transfer id.
//!
//! Why chunks: every request has a bounded body and a bounded time, so neither side holds
//! the snapshot in memory and no single timeout has to fit the whole ledger. The leader
//! reads each chunk from the snapshot file in `spawn_blocking`.

use std::sync::Arc;
use std::time::Duration;

use bincode::error::EncodeError;
use openraft::errors::{RPCError, StreamingError, Unreachable};
use openraft::raft::SnapshotResponse;
use openraft::type_config::alias::{SnapshotMetaOf, SnapshotOf, VoteOf};
use openraft::type_config::TypeConfigExt;
use openraft::RPCTypes;
use openraft::StorageError;
use serde::{Deserialize, Serialize};

use super::{PeerClient, SNAPSHOT_PATH};
use crate::raft::codec::{self, CodecError};
use crate::raft::state_machine::SnapshotData;
use crate::raft::TypeConfig;

/// Path of the chunked snapshot transfer.
pub(crate) const SNAPSHOT_CHUNK_PATH: &str = "/raft/snapshot-chunk";
/// Snapshot bytes per chunk: large enough that a 200 MB snapshot is 50 requests, small
/// enough that a chunk is sent in well under a heartbeat's worth of CPU.
pub(crate) const CHUNK_BYTES: usize = 4 << 20;
/// Room for the header in a chunk request (the meta carries the membership).
pub(crate) const MAX_CHUNK_HEADER_BYTES: usize = 1 << 20;
/// Largest chunk request a follower accepts.
pub(crate) const CHUNK_BODY_LIMIT: usize = CHUNK_BYTES + MAX_CHUNK_HEADER_BYTES;
/// The slowest install the last chunk's deadline allows for: the follower fsyncs and
/// decodes the whole snapshot before it answers that chunk. A loaded 2-core follower was
/// measured decoding about 3 MB/s; this leaves room below that.
const MIN_INSTALL_BYTES_PER_SEC: u64 = 1 << 20;

/// What precedes the data in every chunk request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct ChunkHeader {
    /// The sending leader's vote.
    pub(crate) vote: VoteOf<TypeConfig>,
    /// What the snapshot covers.
    pub(crate) meta: SnapshotMetaOf<TypeConfig>,
    /// Random per transfer: chunks of two attempts never mix.
    pub(crate) transfer: u64,
    /// Where this chunk's data starts in the snapshot.
    pub(crate) offset: u64,
    /// The snapshot's length in bytes.
    pub(crate) total: u64,
}

impl ChunkHeader {
    /// Whether a chunk of `len` bytes at this header's offset completes the snapshot.
    pub(crate) fn is_last(&self, len: usize) -> bool {
        self.offset.checked_add(len as u64) == Some(self.total)
    }
}

/// Encodes a chunk request: the bincode header followed by the raw data.
pub(crate) fn encode_chunk(header: &ChunkHeader, data: &[u8]) -> Result<Vec<u8>, EncodeError> {
    let mut body = codec::encode(header)?;
    body.extend_from_slice(data);
    Ok(body)
}

/// Decodes what [`encode_chunk`] wrote; the data is a slice of `body`, not a copy.
pub(crate) fn decode_chunk(body: &[u8]) -> Result<(ChunkHeader, &[u8]), CodecError> {
    let (header, used) = codec::decode_prefix::<ChunkHeader>(body)?;
    Ok((header, &body[used..]))
}

/// Deadline of one chunk request: `base` (openraft's `install_snapshot_timeout`) for a
/// chunk, plus time to install a `total`-byte snapshot for the last one, which the
/// follower answers only after installing.
pub(crate) fn chunk_timeout(base: Duration, total: u64, last: bool) -> Duration {
    if !last {
        return base;
    }
    let install_ms = total.saturating_mul(1_000) / MIN_INSTALL_BYTES_PER_SEC;
    base.saturating_add(Duration::from_millis(install_ms))
}

/// The follower's answer to a chunk that is not the last: how many bytes it holds.
type HeldAnswer = u64;

fn storage_error(
    meta: &SnapshotMetaOf<TypeConfig>,
    error: &std::io::Error,
) -> StreamingError<TypeConfig> {
    StreamingError::StorageError(StorageError::read_snapshot(
        Some(meta.signature()),
        TypeConfig::err_from_error(error),
    ))
}

/// Reads `len` bytes at `offset` of the snapshot, off the async workers.
async fn read_chunk(
    data: &Arc<SnapshotData>,
    offset: u64,
    len: usize,
) -> Result<Vec<u8>, std::io::Error> {
    let data = Arc::clone(data);
    tokio::task::spawn_blocking(move || {
        let mut chunk = vec![0u8; len];
        data.read_at(offset, &mut chunk)?;
        Ok(chunk)
    })
    .await
    .map_err(std::io::Error::other)?
}

/// Sends `snapshot` to the client's peer in chunks and returns its install answer.
/// `base` bounds each chunk request (see [`chunk_timeout`]).
pub(super) async fn send(
    client: &PeerClient,
    vote: VoteOf<TypeConfig>,
    snapshot: SnapshotOf<TypeConfig, SnapshotData>,
    base: Duration,
) -> Result<SnapshotResponse<TypeConfig>, StreamingError<TypeConfig>> {
    let meta = snapshot.meta;
    let data = Arc::new(snapshot.snapshot);
    let total = data.len();
    let mut header = ChunkHeader {
        vote,
        meta,
        transfer: rand::random(),
        offset: 0,
        total,
    };
    loop {
        let remaining = total - header.offset;
        let len = usize::try_from(remaining).map_or(CHUNK_BYTES, |r| r.min(CHUNK_BYTES));
        let chunk = read_chunk(&data, header.offset, len)
            .await
            .map_err(|e| storage_error(&header.meta, &e))?;
        let body = encode_chunk(&header, &chunk)
            .map_err(|e| StreamingError::Unreachable(Unreachable::new(&e)))?;
        drop(chunk);
        let last = header.is_last(len);
        let timeout = chunk_timeout(base, total, last);
        let action = RPCTypes::InstallSnapshot;
        if last {
            let answer = client
                .call_status::<SnapshotResponse<TypeConfig>>(
                    SNAPSHOT_CHUNK_PATH,
                    body,
                    action,
                    timeout,
                )
                .await?;
            return match answer {
                Ok(response) => Ok(response),
                Err(refused) if refused.is_missing_route() && header.offset == 0 => {
                    send_whole(client, &header, &data, timeout).await
                }
                Err(refused) => Err(refused.into_unreachable().into()),
            };
        }
        let answer = client
            .call_status::<HeldAnswer>(SNAPSHOT_CHUNK_PATH, body, action, timeout)
            .await?;
        let held = match answer {
            Ok(held) => held,
            Err(refused) if refused.is_missing_route() && header.offset == 0 => {
                let timeout = chunk_timeout(base, total, true);
                return send_whole(client, &header, &data, timeout).await;
            }
            Err(refused) => return Err(refused.into_unreachable().into()),
        };
        let expected = header.offset + len as u64;
        if held != expected {
            return Err(StreamingError::Unreachable(Unreachable::from_string(
                format!("the follower holds {held} snapshot bytes, expected {expected}"),
            )));
        }
        header.offset = expected;
    }
}

/// The whole snapshot in one request, for a peer that predates chunked transfers (it
/// answers the chunk path with 404). Holds the snapshot in memory; such a peer does too.
async fn send_whole(
    client: &PeerClient,
    header: &ChunkHeader,
    data: &Arc<SnapshotData>,
    timeout: Duration,
) -> Result<SnapshotResponse<TypeConfig>, StreamingError<TypeConfig>> {
    tracing::info!(
        target = client.target,
        "the peer has no chunked snapshot transfer; sending the snapshot whole"
    );
    let len = usize::try_from(header.total)
        .map_err(|e| storage_error(&header.meta, &std::io::Error::other(e)))?;
    let bytes = read_chunk(data, 0, len)
        .await
        .map_err(|e| storage_error(&header.meta, &e))?;
    let body = codec::encode_snapshot(&header.vote, &header.meta, &bytes)
        .map_err(|e| StreamingError::Unreachable(Unreachable::new(&e)))?;
    drop(bytes);
    client
        .call(SNAPSHOT_PATH, body, RPCTypes::InstallSnapshot, timeout)
        .await
        .map_err(|e: RPCError<TypeConfig>| e.into())
}

#[cfg(test)]
mod tests {
    use openraft::testing::log_id;

    use super::*;

    fn header(offset: u64, total: u64) -> ChunkHeader {
        ChunkHeader {
            vote: VoteOf::<TypeConfig>::new_committed(3, 1),
            meta: SnapshotMetaOf::<TypeConfig> {
                last_log_id: Some(log_id::<TypeConfig>(3, 1, 41)),
                last_membership: Default::default(),
            },
            transfer: 0xfeed,
            offset,
            total,
        }
    }

    #[test]
    fn a_chunk_round_trips_and_its_data_is_not_decoded() {
        let data: Vec<u8> = (0..1000u32).map(|i| (i % 251) as u8).collect();
        let body = encode_chunk(&header(4096, 10_000), &data).expect("encode");
        let (got, got_data) = decode_chunk(&body).expect("decode");
        assert_eq!(got, header(4096, 10_000));
        assert_eq!(got_data, &data[..]);
        // Every strict prefix of the header is refused; the data may be any length.
        let header_len = body.len() - data.len();
        for len in 0..header_len {
            assert!(decode_chunk(&body[..len]).is_err(), "prefix {len}");
        }
    }

    #[test]
    fn the_last_chunk_gets_time_to_install_the_whole_snapshot() {
        let base = Duration::from_secs(10);
        assert_eq!(chunk_timeout(base, 1 << 30, false), base);
        // 1 GiB at 1 MiB/s: 1024 s more.
        assert_eq!(
            chunk_timeout(base, 1 << 30, true),
            Duration::from_secs(10 + 1024)
        );
        assert_eq!(chunk_timeout(base, 0, true), base);
        assert_eq!(
            chunk_timeout(base, u64::MAX, true),
            base.saturating_add(Duration::from_millis(u64::MAX / MIN_INSTALL_BYTES_PER_SEC))
        );
        assert!(header(0, 10).is_last(10));
        assert!(!header(0, 10).is_last(4));
        assert!(header(6, 10).is_last(4));
        assert!(header(0, 0).is_last(0));
    }
}
