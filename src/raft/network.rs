//! Node-to-node Raft RPC, client side: every Raft message is one HTTP `POST` to the peer's
//! `raft_addr`, with a bincode body (see [`wire`]). The server side is
//! [`peer_api`](super::peer_api).
//!
//! Errors are classified for openraft's retry logic: `Unreachable` makes replication back
//! off (see [`PeerClient::backoff`]), `Network` and `Timeout` retry at once. Anything that
//! will fail again the same way (the peer answers an HTTP error, the peer's Raft has stopped,
//! the answer does not decode) is reported as `Unreachable`, so a broken peer is not hammered.

use std::future::Future;
use std::time::Duration;

use openraft::errors::{
    NetworkError, RPCError, RaftError, ReplicationClosed, StreamingError, Timeout, Unreachable,
};
use openraft::network::{Backoff, RPCOption, RaftNetworkFactory, RaftNetworkV2};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, SnapshotResponse, TransferLeaderRequest,
    TransferLeaderResponse, VoteRequest, VoteResponse,
};
use openraft::type_config::alias::{SnapshotOf, VoteOf};
use openraft::RPCTypes;
use serde::de::DeserializeOwned;

use super::state_machine::SnapshotData;
use super::{NodeAddr, NodeId, TypeConfig};

/// Path of the AppendEntries RPC (also heartbeats).
pub(crate) const APPEND_PATH: &str = "/raft/append";
/// Path of the RequestVote RPC.
pub(crate) const VOTE_PATH: &str = "/raft/vote";
/// Path of the Pre-Vote RPC.
pub(crate) const PRE_VOTE_PATH: &str = "/raft/pre-vote";
/// Path of the full-snapshot transfer.
pub(crate) const SNAPSHOT_PATH: &str = "/raft/snapshot";
/// Path of the leadership hand-over notice.
pub(crate) const TRANSFER_LEADER_PATH: &str = "/raft/transfer-leader";

/// Upper bound on opening a TCP connection to a peer. A connect that takes longer counts as
/// `Unreachable` (with backoff) instead of eating the whole RPC deadline.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
/// Idle pooled connections are probed so a silently vanished peer is noticed.
const TCP_KEEPALIVE: Duration = Duration::from_secs(30);
/// First pause before retrying an unreachable peer.
const BACKOFF_START: Duration = Duration::from_millis(50);
/// Longest pause between retries: a restarted peer is caught up within about a second.
const BACKOFF_MAX: Duration = Duration::from_secs(1);

/// Why the peer network could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum PeerNetworkError {
    /// The HTTP client could not be built.
    #[error("cannot build the HTTP client for Raft peers: {0}")]
    Client(#[from] reqwest::Error),
}

/// Creates the per-peer [`PeerClient`]s openraft asks for. All of them share one
/// `reqwest::Client`, hence one connection pool: connections to a peer are kept alive and
/// reused, and concurrent RPCs to the same peer (heartbeat while a snapshot is in flight)
/// each get their own pooled connection, so they do not queue behind each other.
#[derive(Debug, Clone)]
pub struct PeerNetwork {
    /// Shared HTTP client (connection pool).
    client: reqwest::Client,
    /// This node's id, reported in `Timeout` errors.
    local_id: NodeId,
}

impl PeerNetwork {
    /// Builds the network of node `local_id`. Fails only if the HTTP client cannot be built.
    pub fn new(local_id: NodeId) -> Result<Self, PeerNetworkError> {
        let client = reqwest::Client::builder()
            // Peers are addressed directly; an HTTP(S)_PROXY in the environment must not
            // reroute cluster traffic.
            .no_proxy()
            // Heartbeats and votes are tiny; Nagle's algorithm would delay them.
            .tcp_nodelay(true)
            .tcp_keepalive(TCP_KEEPALIVE)
            .connect_timeout(CONNECT_TIMEOUT)
            .build()?;
        Ok(PeerNetwork { client, local_id })
    }
}

impl RaftNetworkFactory<TypeConfig> for PeerNetwork {
    type Network = PeerClient;

    /// Creates a client for `target`; it connects lazily on the first RPC.
    async fn new_client(&mut self, target: NodeId, node: &NodeAddr) -> PeerClient {
        PeerClient {
            client: self.client.clone(),
            local_id: self.local_id,
            target,
            base_url: format!("http://{}", node.raft_addr),
        }
    }
}

/// Sends Raft RPCs to one peer. Created by [`PeerNetwork`].
#[derive(Debug, Clone)]
pub struct PeerClient {
    /// Shared HTTP client (connection pool).
    client: reqwest::Client,
    /// This node's id, for `Timeout` errors.
    local_id: NodeId,
    /// The peer's id, for `Timeout` errors.
    target: NodeId,
    /// `http://{raft_addr}` of the peer.
    base_url: String,
}

impl PeerClient {
    /// POSTs `body` to `path` and decodes the peer's `Result<Resp, RaftError>`.
    async fn call<Resp>(
        &self,
        path: &str,
        body: Vec<u8>,
        action: RPCTypes,
        timeout: Duration,
    ) -> Result<Resp, RPCError<TypeConfig>>
    where
        Resp: DeserializeOwned,
    {
        let url = format!("{}{}", self.base_url, path);
        let transport = |e: reqwest::Error| self.transport_error(e, action, timeout);
        let response = self
            .client
            .post(&url)
            .header(reqwest::header::CONTENT_TYPE, wire::CONTENT_TYPE)
            .timeout(timeout)
            .body(body)
            .send()
            .await
            .map_err(transport)?;
        let status = response.status();
        if !status.is_success() {
            // The peer answered, but will answer the same again: back off.
            let reason = response.text().await.unwrap_or_default();
            return Err(RPCError::Unreachable(Unreachable::from_string(format!(
                "{url}: HTTP {status}: {reason}"
            ))));
        }
        let bytes = response.bytes().await.map_err(transport)?;
        let answer: Result<Resp, RaftError<TypeConfig>> = wire::decode(&bytes).map_err(|e| {
            RPCError::Unreachable(Unreachable::from_string(format!(
                "{url}: undecodable answer: {e}"
            )))
        })?;
        // The only remote error is `Fatal`: the peer's Raft has stopped. Treat it like a
        // down peer until it is restarted.
        answer.map_err(|e| RPCError::Unreachable(Unreachable::new(&e)))
    }

    /// Classifies a transport failure for openraft's retry logic.
    fn transport_error(
        &self,
        e: reqwest::Error,
        action: RPCTypes,
        timeout: Duration,
    ) -> RPCError<TypeConfig> {
        if e.is_connect() {
            // Nobody listens (or the host is down): retrying at once is pointless.
            RPCError::Unreachable(Unreachable::new(&e))
        } else if e.is_timeout() {
            RPCError::Timeout(Timeout {
                action,
                id: self.local_id,
                target: self.target,
                timeout,
            })
        } else {
            // Connection reset mid-request and the like: worth an immediate retry.
            RPCError::Network(NetworkError::new(&e))
        }
    }

    /// Encodes a request; failing to encode our own message is not a transient problem.
    fn encode<T: serde::Serialize>(&self, value: &T) -> Result<Vec<u8>, RPCError<TypeConfig>> {
        wire::encode(value).map_err(|e| RPCError::Unreachable(Unreachable::new(&e)))
    }
}

impl RaftNetworkV2<TypeConfig> for PeerClient {
    type SnapshotData = SnapshotData;

    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<TypeConfig>, RPCError<TypeConfig>> {
        let body = self.encode(&rpc)?;
        self.call(APPEND_PATH, body, RPCTypes::AppendEntries, option.soft_ttl())
            .await
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<VoteResponse<TypeConfig>, RPCError<TypeConfig>> {
        let body = self.encode(&rpc)?;
        self.call(VOTE_PATH, body, RPCTypes::Vote, option.soft_ttl())
            .await
    }

    async fn pre_vote(
        &mut self,
        rpc: VoteRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<VoteResponse<TypeConfig>, RPCError<TypeConfig>> {
        let body = self.encode(&rpc)?;
        self.call(PRE_VOTE_PATH, body, RPCTypes::Vote, option.soft_ttl())
            .await
    }

    /// Sends the whole snapshot in one request: a ledger snapshot is small enough to hold in
    /// memory, and one request keeps the receiving side trivial.
    async fn full_snapshot(
        &mut self,
        vote: VoteOf<TypeConfig>,
        snapshot: SnapshotOf<TypeConfig, SnapshotData>,
        cancel: impl Future<Output = ReplicationClosed> + Send + 'static,
        option: RPCOption,
    ) -> Result<SnapshotResponse<TypeConfig>, StreamingError<TypeConfig>> {
        let body = wire::encode_snapshot(&vote, &snapshot.meta, snapshot.snapshot.get_ref())
            .map_err(|e| StreamingError::Unreachable(Unreachable::new(&e)))?;
        drop(snapshot);
        // Openraft may drop the transfer at `hard_ttl`; a large snapshot needs all of it.
        let send = self.call(
            SNAPSHOT_PATH,
            body,
            RPCTypes::InstallSnapshot,
            option.hard_ttl(),
        );
        tokio::select! {
            closed = cancel => Err(StreamingError::Closed(closed)),
            answer = send => answer.map_err(StreamingError::from),
        }
    }

    async fn transfer_leader(
        &mut self,
        req: TransferLeaderRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<TransferLeaderResponse<TypeConfig>, RPCError<TypeConfig>> {
        let body = self.encode(&req)?;
        self.call(
            TRANSFER_LEADER_PATH,
            body,
            RPCTypes::TransferLeader,
            option.soft_ttl(),
        )
        .await
    }

    /// Exponential backoff for an unreachable peer: 50 ms, 100 ms, … capped at 1 s. Short
    /// first steps rejoin a briefly restarted peer quickly; the cap keeps a dead peer from
    /// being polled more than once a second.
    fn backoff(&self) -> Option<Backoff> {
        Some(Backoff::new(backoff_delays()))
    }
}

/// The infinite series of retry pauses behind [`PeerClient::backoff`].
fn backoff_delays() -> impl Iterator<Item = Duration> + Send + 'static {
    std::iter::successors(Some(BACKOFF_START), |d| {
        Some(d.saturating_mul(2).min(BACKOFF_MAX))
    })
}

/// The body format shared by [`PeerClient`] and [`peer_api`](super::peer_api): bincode 2
/// with the standard configuration. Compact and fast; every openraft message and our
/// `Command` round-trip through it (see the tests).
pub(crate) mod wire {
    use bincode::config::{Configuration, Limit, LittleEndian, Varint};
    use bincode::error::{DecodeError, EncodeError};
    use serde::de::DeserializeOwned;
    use serde::Serialize;

    use crate::raft::TypeConfig;
    use openraft::type_config::alias::{SnapshotMetaOf, VoteOf};

    /// `Content-Type` of every request and answer.
    pub(crate) const CONTENT_TYPE: &str = "application/octet-stream";

    /// Most bytes one decode may claim. A corrupt length prefix then fails cleanly instead
    /// of asking for an absurd allocation; set above any body the server accepts.
    const DECODE_LIMIT: usize = 4 << 30;

    /// Decoding configuration: the standard encoding plus [`DECODE_LIMIT`].
    fn decode_config() -> Configuration<LittleEndian, Varint, Limit<DECODE_LIMIT>> {
        bincode::config::standard().with_limit::<DECODE_LIMIT>()
    }

    /// Why a body could not be decoded.
    #[derive(Debug, thiserror::Error)]
    pub(crate) enum WireError {
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
    pub(crate) fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, EncodeError> {
        bincode::serde::encode_to_vec(value, bincode::config::standard())
    }

    /// Decodes one message that must fill `bytes` exactly.
    pub(crate) fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, WireError> {
        let (value, used) = bincode::serde::decode_from_slice(bytes, decode_config())?;
        match bytes.len() - used {
            0 => Ok(value),
            extra => Err(WireError::Trailing { extra }),
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

    /// Decodes what [`encode_snapshot`] wrote.
    pub(crate) fn decode_snapshot(
        bytes: &[u8],
    ) -> Result<(VoteOf<TypeConfig>, SnapshotMetaOf<TypeConfig>, Vec<u8>), WireError> {
        let ((vote, meta), used): ((VoteOf<TypeConfig>, SnapshotMetaOf<TypeConfig>), usize) =
            bincode::serde::decode_from_slice(bytes, decode_config())?;
        Ok((vote, meta, bytes[used..].to_vec()))
    }
}

#[cfg(test)]
mod tests;
