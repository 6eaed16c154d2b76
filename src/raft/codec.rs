//! The body format of every node-to-node message, shared by the Raft client
//! ([`network`](super::network)), its server side ([`peer_api`](super::peer_api)) and
//! cluster forwarding: bincode 2 with the standard configuration. Compact and fast; every
//! openraft message and our `Command` round-trip through it (see the network tests).

use bincode::config::{Configuration, Limit, LittleEndian, Varint};
use bincode::error::{DecodeError, EncodeError};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::raft::TypeConfig;
use openraft::type_config::alias::{SnapshotMetaOf, VoteOf};

/// `Content-Type` of every request and answer.
pub(crate) const CONTENT_TYPE: &str = "application/octet-stream";

/// Largest message the server accepts (snapshot data aside, which bypasses the decoder).
pub(crate) const MAX_MESSAGE_BYTES: usize = 64 << 20;

/// Most string and byte-array payload one decode may claim. bincode allocates a string
/// before reading it, so without this bound a corrupt length prefix would ask for an
/// absurd allocation and abort the process; no valid message claims more than its size.
const DECODE_LIMIT: usize = MAX_MESSAGE_BYTES;

/// Decoding configuration: the standard encoding plus [`DECODE_LIMIT`].
fn decode_config() -> Configuration<LittleEndian, Varint, Limit<DECODE_LIMIT>> {
    bincode::config::standard().with_limit::<DECODE_LIMIT>()
}

/// Why a body could not be decoded.
#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    /// Not a valid encoding of the expected message.
    #[error("malformed body: {0}")]
    Decode(#[from] DecodeError),
    /// A valid message followed by garbage: most likely a different message type.
    #[error("malformed body: {extra} trailing byte(s)")]
    Trailing {
        /// How many bytes were left over.
        extra: usize,
    },
}

/// Encodes one message.
pub fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, EncodeError> {
    bincode::serde::encode_to_vec(value, bincode::config::standard())
}

/// Decodes one message at the start of `bytes`; returns it and the bytes it used.
pub fn decode_prefix<T: DeserializeOwned>(bytes: &[u8]) -> Result<(T, usize), CodecError> {
    Ok(bincode::serde::decode_from_slice(bytes, decode_config())?)
}

/// Decodes one message that must fill `bytes` exactly.
pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, CodecError> {
    let (value, used) = bincode::serde::decode_from_slice(bytes, decode_config())?;
    match bytes.len() - used {
        0 => Ok(value),
        extra => Err(CodecError::Trailing { extra }),
    }
}

/// Encodes a snapshot transfer: the bincode header `(vote, meta)` followed by the raw
/// snapshot bytes. The data is not run through serde, so it is copied only once.
pub(crate) fn encode_snapshot(
    vote: &VoteOf<TypeConfig>,
    meta: &SnapshotMetaOf<TypeConfig>,
    data: &[u8],
) -> Result<Vec<u8>, EncodeError> {
    let mut body = encode(&(vote, meta))?;
    body.extend_from_slice(data);
    Ok(body)
}

/// A decoded snapshot transfer (tests only: the receiver decodes the header with
/// [`decode_prefix`] and stores the data without copying it).
#[cfg(test)]
pub(crate) struct SnapshotTransfer {
    /// The sending leader's vote.
    pub(crate) vote: VoteOf<TypeConfig>,
    /// What the snapshot covers.
    pub(crate) meta: SnapshotMetaOf<TypeConfig>,
    /// The snapshot itself, as the state machine wrote it.
    pub(crate) data: Vec<u8>,
}

/// Decodes what [`encode_snapshot`] wrote.
#[cfg(test)]
pub(crate) fn decode_snapshot(bytes: &[u8]) -> Result<SnapshotTransfer, CodecError> {
    let ((vote, meta), used) = bincode::serde::decode_from_slice(bytes, decode_config())?;
    Ok(SnapshotTransfer {
        vote,
        meta,
        data: bytes[used..].to_vec(),
    })
}
