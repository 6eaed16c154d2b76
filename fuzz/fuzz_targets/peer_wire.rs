//! The node-to-node wire: every body a node decodes from a peer — Raft RPC requests and
//! answers, snapshot headers, forwarded writes and their answers, read points. Arbitrary
//! bytes never panic (nor ask for an absurd allocation), and whatever decodes encodes,
//! decodes and encodes again to the same bytes.
//!
//! The first byte picks the message; the rest is the body.
#![no_main]

use libfuzzer_sys::fuzz_target;
use licensed::cluster::forward::{ClusterError, Proposal, ReadPoint};
use licensed::fuzzing::{decode, decode_prefix, encode};
use licensed::raft::TypeConfig;
use licensed::state::Outcome;
use openraft::errors::RaftError;
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, SnapshotResponse, TransferLeaderRequest,
    TransferLeaderResponse, VoteRequest, VoteResponse,
};
use openraft::type_config::alias::{SnapshotMetaOf, VoteOf};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

type C = TypeConfig;

/// The header of a snapshot chunk request (`/raft/snapshot-chunk`): the same fields in the
/// same order as the server's, so it decodes exactly as the server does.
#[derive(Serialize, Deserialize)]
struct ChunkHeader {
    vote: VoteOf<C>,
    meta: SnapshotMetaOf<C>,
    transfer: u64,
    offset: u64,
    total: u64,
}

fuzz_target!(|data: &[u8]| {
    let Some((&which, body)) = data.split_first() else {
        return;
    };
    match which % 13 {
        // What a node's Raft routes decode.
        0 => whole::<AppendEntriesRequest<C>>(body),
        1 => whole::<VoteRequest<C>>(body),
        2 => whole::<TransferLeaderRequest<C>>(body),
        3 => prefix::<(VoteOf<C>, SnapshotMetaOf<C>)>(body),
        4 => prefix::<ChunkHeader>(body),
        // What the Raft client decodes from a peer's answer.
        5 => whole::<Result<AppendEntriesResponse<C>, RaftError<C>>>(body),
        6 => whole::<Result<VoteResponse<C>, RaftError<C>>>(body),
        7 => whole::<Result<SnapshotResponse<C>, RaftError<C>>>(body),
        8 => whole::<Result<u64, RaftError<C>>>(body),
        9 => whole::<Result<TransferLeaderResponse<C>, RaftError<C>>>(body),
        // Forwarding: the leader decodes writes, the follower the answers.
        10 => whole::<Vec<Proposal>>(body),
        11 => whole::<Vec<Result<Outcome, ClusterError>>>(body),
        _ => whole::<Result<ReadPoint, ClusterError>>(body),
    }
});

/// A body that must be exactly one message.
fn whole<T: Serialize + DeserializeOwned>(body: &[u8]) {
    if let Ok(message) = decode::<T>(body) {
        round_trip(&message);
    }
}

/// A message followed by raw data (snapshot bytes).
fn prefix<T: Serialize + DeserializeOwned>(body: &[u8]) {
    if let Ok((message, used)) = decode_prefix::<T>(body) {
        assert!(used <= body.len());
        round_trip(&message);
    }
}

/// Encoded, decoded and encoded again, a message gives the same bytes.
fn round_trip<T: Serialize + DeserializeOwned>(message: &T) {
    let bytes = encode(message).expect("a decoded message encodes");
    let again: T = decode(&bytes).expect("and decodes again");
    let bytes_again = encode(&again).expect("and encodes again");
    assert_eq!(bytes, bytes_again);
}
