//! Node-to-node Raft RPC, client side: every Raft message is one HTTP `POST` to the peer's
//! `raft_addr`, with a bincode body (see [`codec`](super::codec)). The server side is
//! [`peer_api`](super::peer_api).
//!
//! Errors are classified for openraft's retry logic: `Unreachable` makes replication back
//! off (see [`PeerClient::backoff`]), `Network` and `Timeout` retry at once. Anything that
//! will fail again the same way (the peer answers an HTTP error, the peer's Raft has stopped,
//! the answer does not decode) is reported as `Unreachable`, so a broken peer is not hammered.

pub(crate) mod snapshot_transfer;

use std::future::Future;
use std::sync::Arc;
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
use openraft::{OptionalSend, RPCTypes};
use serde::de::DeserializeOwned;

use super::clock::{self, ClockBook};
use super::codec;
use super::identity::{self, IdentityStore};
use super::routes::PeerRoutes;
use super::state_machine::SnapshotData;
use super::{NodeAddr, NodeId, TypeConfig};
use crate::metrics::peers::PeerRpc;
use crate::transport::peer::PeerDialer;

/// Path of the AppendEntries RPC (also heartbeats).
pub(crate) const APPEND_PATH: &str = "/raft/append";
/// Path of the RequestVote RPC.
pub(crate) const VOTE_PATH: &str = "/raft/vote";
/// Path of the Pre-Vote RPC.
pub(crate) const PRE_VOTE_PATH: &str = "/raft/pre-vote";
/// Path of the whole-snapshot transfer of earlier versions: still served (with a body
/// limit) for older leaders, and used towards peers without [`SNAPSHOT_CHUNK_PATH`].
pub(crate) const SNAPSHOT_PATH: &str = "/raft/snapshot";
pub(crate) use snapshot_transfer::SNAPSHOT_CHUNK_PATH;
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
    /// Address overrides (`--peer-route`).
    routes: PeerRoutes,
    /// Peer clock offsets, fed by every answer.
    clocks: Arc<ClockBook>,
    /// This node's cluster id goes on every request (see [`super::identity`]).
    identity: Option<Arc<IdentityStore>>,
    /// Scheme, TLS and request signing.
    dialer: PeerDialer,
}

impl PeerNetwork {
    /// The same network, sending this node's cluster id with every request.
    pub fn with_identity(mut self, identity: Arc<IdentityStore>) -> PeerNetwork {
        self.identity = Some(identity);
        self
    }

    /// Builds the network of node `local_id`. Fails only if the HTTP client cannot be built.
    pub fn new(
        local_id: NodeId,
        routes: PeerRoutes,
        clocks: Arc<ClockBook>,
        dialer: PeerDialer,
    ) -> Result<Self, PeerNetworkError> {
        // Peers are addressed directly; an HTTP(S)_PROXY in the environment must not
        // reroute cluster traffic (the dialer's builder says `no_proxy`).
        let client = dialer
            .client_builder()
            // Heartbeats and votes are tiny; Nagle's algorithm would delay them.
            .tcp_nodelay(true)
            .tcp_keepalive(TCP_KEEPALIVE)
            .connect_timeout(CONNECT_TIMEOUT)
            .build()?;
        Ok(PeerNetwork {
            client,
            local_id,
            routes,
            clocks,
            identity: None,
            dialer,
        })
    }
}

impl RaftNetworkFactory<TypeConfig> for PeerNetwork {
    type Network = PeerClient;

    /// Creates a client for `target`; it connects lazily on the first RPC.
    async fn new_client(&mut self, target: NodeId, node: &NodeAddr) -> PeerClient {
        PeerClient {
            client: self.client.clone(),
            local_id: self.local_id,
            clocks: self.clocks.clone(),
            identity: self.identity.clone(),
            target,
            base_url: self
                .dialer
                .base_url(self.routes.resolve(target, &node.raft_addr)),
            dialer: self.dialer.clone(),
            rpcs: Arc::new(PeerRpcs::new(target)),
        }
    }
}

/// Sends Raft RPCs to one peer. Created by [`PeerNetwork`].
#[derive(Debug, Clone)]
pub struct PeerClient {
    /// Shared HTTP client (connection pool).
    client: reqwest::Client,
    /// This node's id, for `Timeout` errors and the peer's clock book.
    local_id: NodeId,
    /// Peer clock offsets (see [`super::clock`]).
    clocks: Arc<ClockBook>,
    /// Where this node's cluster id comes from.
    identity: Option<Arc<IdentityStore>>,
    /// The peer's id, for `Timeout` errors.
    target: NodeId,
    /// `http(s)://{raft_addr}` of the peer.
    base_url: String,
    /// Scheme, TLS and request signing.
    dialer: PeerDialer,
    /// Round trips and failures of the RPCs to this peer, for the metrics.
    rpcs: Arc<PeerRpcs>,
}

/// The metric series of each kind of RPC to one peer.
#[derive(Debug)]
struct PeerRpcs {
    append: PeerRpc,
    vote: PeerRpc,
    snapshot: PeerRpc,
    transfer: PeerRpc,
}

impl PeerRpcs {
    fn new(peer: NodeId) -> PeerRpcs {
        PeerRpcs {
            append: PeerRpc::new(peer, "append"),
            vote: PeerRpc::new(peer, "vote"),
            snapshot: PeerRpc::new(peer, "snapshot"),
            transfer: PeerRpc::new(peer, "transfer"),
        }
    }

    fn of(&self, action: RPCTypes) -> &PeerRpc {
        match action {
            RPCTypes::AppendEntries => &self.append,
            RPCTypes::InstallSnapshot => &self.snapshot,
            RPCTypes::TransferLeader => &self.transfer,
            _ => &self.vote,
        }
    }
}

/// An HTTP error status from a peer: it answered, and will answer the same again.
#[derive(Debug)]
pub(crate) struct Refused {
    url: String,
    status: reqwest::StatusCode,
    reason: String,
}

impl Refused {
    /// The peer does not serve the path (a version without it).
    pub(crate) fn is_missing_route(&self) -> bool {
        self.status == reqwest::StatusCode::NOT_FOUND
    }

    /// As openraft's "back off, then retry".
    pub(crate) fn into_unreachable(self) -> Unreachable<TypeConfig> {
        Unreachable::from_string(format!(
            "{}: HTTP {}: {}",
            self.url, self.status, self.reason
        ))
    }
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
        self.call_status(path, body, action, timeout)
            .await?
            .map_err(|refused| RPCError::Unreachable(refused.into_unreachable()))
    }

    /// Like [`call`](Self::call), with an HTTP error status handed back as [`Refused`]
    /// for the caller to tell apart.
    async fn call_status<Resp>(
        &self,
        path: &str,
        body: Vec<u8>,
        action: RPCTypes,
        timeout: Duration,
    ) -> Result<Result<Resp, Refused>, RPCError<TypeConfig>>
    where
        Resp: DeserializeOwned,
    {
        let started = std::time::Instant::now();
        let answer = self.exchange(path, body, action, timeout).await;
        self.rpcs
            .of(action)
            .observe(started.elapsed(), matches!(answer, Ok(Ok(_))));
        answer
    }

    /// One request and its decoded answer.
    async fn exchange<Resp>(
        &self,
        path: &str,
        body: Vec<u8>,
        action: RPCTypes,
        timeout: Duration,
    ) -> Result<Result<Resp, Refused>, RPCError<TypeConfig>>
    where
        Resp: DeserializeOwned,
    {
        let url = format!("{}{}", self.base_url, path);
        let transport = |e: reqwest::Error| self.transport_error(e, action, timeout);
        let sent_ms = clock::wall_ms();
        let sent = std::time::Instant::now();
        let mut request = self
            .client
            .post(&url)
            .header(reqwest::header::CONTENT_TYPE, codec::CONTENT_TYPE)
            .header(clock::CLOCK_HEADER, sent_ms)
            .header(clock::NODE_HEADER, self.local_id);
        if let Some(cluster) = self.identity.as_ref().and_then(|i| i.get().cluster_id) {
            request = request.header(identity::CLUSTER_HEADER, cluster.to_string());
        }
        let response = self
            .dialer
            .send(&self.client, request.timeout(timeout).body(body))
            .await
            .map_err(transport)?;
        let peer_ms = response
            .headers()
            .get(clock::CLOCK_HEADER)
            .and_then(|value| value.to_str().ok())
            .and_then(|text| text.parse::<i64>().ok());
        if let Some(peer_ms) = peer_ms {
            self.clocks
                .observe_answer(self.target, peer_ms, sent.elapsed(), clock::wall_ms());
        }
        let status = response.status();
        if !status.is_success() {
            // The peer answered, but will answer the same again: back off.
            let reason = response.text().await.unwrap_or_default();
            return Ok(Err(Refused {
                url,
                status,
                reason,
            }));
        }
        let bytes = response.bytes().await.map_err(transport)?;
        let answer: Result<Resp, RaftError<TypeConfig>> = codec::decode(&bytes).map_err(|e| {
            RPCError::Unreachable(Unreachable::from_string(format!(
                "{url}: undecodable answer: {e}"
            )))
        })?;
        // The only remote error is `Fatal`: the peer's Raft has stopped. Treat it like a
        // down peer until it is restarted.
        answer
            .map(Ok)
            .map_err(|e| RPCError::Unreachable(Unreachable::new(&e)))
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
        codec::encode(value).map_err(|e| RPCError::Unreachable(Unreachable::new(&e)))
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
        self.call(
            APPEND_PATH,
            body,
            RPCTypes::AppendEntries,
            option.soft_ttl(),
        )
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

    /// Sends the snapshot in bounded chunks from its file (see [`snapshot_transfer`]).
    /// Each chunk request is bounded by openraft's `hard_ttl` (`install_snapshot_timeout`),
    /// the last one plus time in proportion to the snapshot's size; the transfer as a whole
    /// ends only when it completes, fails, or openraft cancels it.
    async fn full_snapshot(
        &mut self,
        vote: VoteOf<TypeConfig>,
        snapshot: SnapshotOf<TypeConfig, SnapshotData>,
        cancel: impl Future<Output = ReplicationClosed> + OptionalSend + 'static,
        option: RPCOption,
    ) -> Result<SnapshotResponse<TypeConfig>, StreamingError<TypeConfig>> {
        let send = snapshot_transfer::send(self, vote, snapshot, option.hard_ttl());
        tokio::select! {
            closed = cancel => Err(StreamingError::Closed(closed)),
            answer = send => answer,
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

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet};
    use std::net::SocketAddr;
    use std::time::Instant;

    use axum::body::Bytes;
    use axum::http::{header, HeaderMap, StatusCode};
    use axum::routing::post;
    use axum::Router;
    use openraft::entry::RaftEntry;
    use openraft::errors::{ErrorSource, Fatal, ForwardToLeader};
    use openraft::raft::TransferLeaderError;
    use openraft::testing::{blank_ent, log_id, membership_ent};
    use openraft::type_config::alias::{EntryOf, LogIdOf, SnapshotMetaOf};
    use openraft::{Membership, Snapshot, StorageError, StoredMembership};
    use serde::Serialize;
    use uuid::Uuid;

    use super::*;
    use crate::borrow::check::BorrowRequest;
    use crate::borrow::host_id::HostId;
    use crate::borrow::license::LicenseKey;
    use crate::state::{Bootstrap, Command};

    type C = TypeConfig;

    /// Encodes, decodes, and checks the decoded value encodes to the very same bytes: the
    /// encoding is deterministic, so equal bytes mean nothing was lost on the way.
    fn round_trip<T: Serialize + DeserializeOwned>(value: &T) -> T {
        let bytes = codec::encode(value).expect("encode");
        let back: T = codec::decode(&bytes).expect("decode");
        assert_eq!(codec::encode(&back).expect("re-encode"), bytes);
        back
    }

    fn lid(term: u64, index: u64) -> LogIdOf<C> {
        log_id::<C>(term, 1, index)
    }

    fn vote() -> VoteOf<C> {
        VoteOf::<C>::new_committed(3, 1)
    }

    fn borrow_command() -> Command {
        Command::Borrow {
            now: 1_700_000_000,
            borrow_id: Uuid::new_v4(),
            request: BorrowRequest {
                key: LicenseKey {
                    feature: "MVTec_HALCON".to_string(),
                    uuid: "c6d1f0a2".to_string(),
                },
                host_id: HostId::parse("MAC:2C549188C9E3").expect("host id"),
                valid_from: Some(1_700_000_000),
                valid_until: None,
                user_info: Some("ünïcode ✓".to_string()),
            },
            request_id: None,
        }
    }

    fn vote_request() -> VoteRequest<C> {
        VoteRequest::<C>::new(vote(), Some(lid(3, 41)))
    }

    fn bootstrap_command() -> Command {
        Command::Bootstrap(Box::new(Bootstrap {
            licenses: Vec::new(),
            max_borrow_secs: 86_400 * 30,
            retention_secs: 86_400,
            signing_key: [7; 32],
            audit_retention_secs: 90 * 86_400,
            max_audit_entries: 100_000,
            created_at: 0,
        }))
    }

    fn addr(n: u64) -> NodeAddr {
        NodeAddr {
            raft_addr: format!("10.0.0.{n}:22023"),
            api_addr: format!("10.0.0.{n}:22022"),
        }
    }

    fn three_node_membership() -> Membership<NodeId, NodeAddr> {
        let voters = BTreeSet::from([1, 2, 3]);
        let nodes: BTreeMap<NodeId, NodeAddr> = (1..=4).map(|n| (n, addr(n))).collect();
        Membership::new(vec![voters], nodes).expect("membership")
    }

    fn snapshot_meta() -> SnapshotMetaOf<C> {
        SnapshotMetaOf::<C> {
            last_log_id: Some(lid(3, 41)),
            last_membership: StoredMembership::new(Some(lid(2, 5)), three_node_membership()),
        }
    }

    #[test]
    fn append_entries_request_round_trips_with_every_payload_kind() {
        let entries: Vec<EntryOf<C>> = vec![
            blank_ent::<C>(3, 1, 10),
            EntryOf::<C>::new_normal(lid(3, 11), borrow_command()),
            EntryOf::<C>::new_normal(lid(3, 12), bootstrap_command()),
            membership_ent::<C>(3, 1, 13, vec![BTreeSet::from([1, 2, 3])]),
            EntryOf::<C>::new_membership(lid(3, 14), three_node_membership()),
        ];
        let request = AppendEntriesRequest::<C> {
            vote: vote(),
            prev_log_id: Some(lid(2, 9)),
            entries: entries.clone(),
            leader_commit: Some(lid(3, 8)),
        };
        let back = round_trip(&request);
        assert_eq!(back.vote, request.vote);
        assert_eq!(back.prev_log_id, request.prev_log_id);
        assert_eq!(back.leader_commit, request.leader_commit);
        assert_eq!(back.entries.len(), entries.len());
        for (got, want) in back.entries.iter().zip(&entries) {
            assert_eq!(got.log_id, want.log_id);
            assert_eq!(got.payload, want.payload);
        }
    }

    #[test]
    fn empty_append_entries_request_round_trips() {
        // A heartbeat: no entries, nothing known yet.
        let request = AppendEntriesRequest::<C> {
            vote: VoteOf::<C>::new(1, 2),
            prev_log_id: None,
            entries: Vec::new(),
            leader_commit: None,
        };
        let back = round_trip(&request);
        assert_eq!(back.vote, request.vote);
        assert!(back.entries.is_empty());
        assert_eq!(back.prev_log_id, None);
    }

    #[test]
    fn vote_and_pre_vote_requests_round_trip() {
        let mut request = VoteRequest::<C>::new(vote(), Some(lid(3, 41)));
        assert_eq!(round_trip(&request), request);
        // Set by a leadership transfer; a `serde(default)` field must still travel.
        request.leadership_transfer = true;
        assert_eq!(round_trip(&request), request);
        let first = VoteRequest::<C>::new(VoteOf::<C>::new(1, 1), None);
        assert_eq!(round_trip(&first), first);
    }

    #[test]
    fn transfer_leader_request_round_trips() {
        let request = TransferLeaderRequest::<C>::new(vote(), 2, Some(lid(3, 41)));
        assert_eq!(round_trip(&request), request);
        let request = TransferLeaderRequest::<C>::new(vote(), 3, None);
        assert_eq!(round_trip(&request), request);
    }

    #[test]
    fn snapshot_request_round_trips_with_raw_data() {
        let data: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
        let body = codec::encode_snapshot(&vote(), &snapshot_meta(), &data).expect("encode");
        let got = codec::decode_snapshot(&body).expect("decode");
        assert_eq!(got.vote, vote());
        assert_eq!(got.meta, snapshot_meta());
        assert_eq!(got.data, data);

        let empty =
            codec::encode_snapshot(&vote(), &SnapshotMetaOf::<C>::default(), &[]).expect("encode");
        let got = codec::decode_snapshot(&empty).expect("decode");
        assert_eq!(got.meta, SnapshotMetaOf::<C>::default());
        assert!(got.data.is_empty());
    }

    #[test]
    fn answers_round_trip() {
        type Answer<T> = Result<T, RaftError<C>>;
        for append in [
            AppendEntriesResponse::<C>::Success,
            AppendEntriesResponse::PartialSuccess(Some(lid(3, 12))),
            AppendEntriesResponse::PartialSuccess(None),
            AppendEntriesResponse::Conflict,
            AppendEntriesResponse::HigherVote(VoteOf::<C>::new(4, 2)),
        ] {
            let answer: Answer<_> = Ok(append);
            assert_eq!(round_trip(&answer), answer);
        }
        let answer: Answer<_> = Ok(VoteResponse::<C>::new(vote(), Some(lid(3, 41)), true));
        assert_eq!(round_trip(&answer), answer);
        let answer: Answer<_> = Ok(SnapshotResponse::<C>::new(vote()));
        assert_eq!(round_trip(&answer), answer);
        let answers: Vec<Answer<TransferLeaderResponse<C>>> = vec![
            Ok(Ok(())),
            Ok(Err(TransferLeaderError::VoteChanged {
                expected: vote(),
                actual: VoteOf::<C>::new(4, 3),
            })),
            Ok(Err(TransferLeaderError::LogNotFlushed {
                expected: Some(lid(3, 41)),
                actual: None,
            })),
        ];
        for answer in answers {
            assert_eq!(round_trip(&answer), answer);
        }
        let storage =
            StorageError::<C>::read_snapshot(None, ErrorSource::from_string("disk on fire"));
        for fatal in [
            Fatal::Stopped,
            Fatal::Panicked,
            Fatal::StorageError(storage),
        ] {
            let answer: Answer<VoteResponse<C>> = Err(RaftError::Fatal(fatal));
            assert_eq!(round_trip(&answer), answer);
        }
        // Not sent by this module, but the same codec carries it elsewhere.
        let forward = ForwardToLeader::<C>::new(2, addr(2));
        assert_eq!(round_trip(&forward), forward);
    }

    /// Every strict prefix and every one-byte extension of `valid` must be refused.
    fn assert_strict<T: DeserializeOwned>(valid: &[u8]) {
        assert!(codec::decode::<T>(valid).is_ok());
        for len in 0..valid.len() {
            assert!(codec::decode::<T>(&valid[..len]).is_err(), "prefix {len}");
        }
        assert!(codec::decode::<T>(&[valid, &[0]].concat()).is_err());
    }

    #[test]
    fn malformed_bodies_are_errors_not_panics() {
        let vote_body = codec::encode(&vote_request()).expect("encode");
        assert_strict::<VoteRequest<C>>(&vote_body);
        let append = AppendEntriesRequest::<C> {
            vote: vote(),
            prev_log_id: Some(lid(2, 9)),
            entries: vec![
                EntryOf::<C>::new_normal(lid(3, 10), borrow_command()),
                EntryOf::<C>::new_membership(lid(3, 11), three_node_membership()),
            ],
            leader_commit: Some(lid(3, 8)),
        };
        assert_strict::<AppendEntriesRequest<C>>(&codec::encode(&append).expect("encode"));
        let transfer = TransferLeaderRequest::<C>::new(vote(), 2, Some(lid(3, 41)));
        assert_strict::<TransferLeaderRequest<C>>(&codec::encode(&transfer).expect("encode"));

        let snapshot = codec::encode_snapshot(&vote(), &snapshot_meta(), b"data").expect("encode");
        let header_len = snapshot.len() - 4;
        for len in 0..header_len {
            assert!(
                codec::decode_snapshot(&snapshot[..len]).is_err(),
                "prefix {len}"
            );
        }

        // Length prefixes claiming huge strings or lists must fail, not try to allocate.
        let huge_len = [0xfd, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f];
        assert!(codec::decode::<String>(&huge_len).is_err());
        let mut nodes = BTreeMap::new();
        nodes.insert(
            1,
            NodeAddr {
                raft_addr: "Q".to_string(),
                api_addr: String::new(),
            },
        );
        let membership = Membership::new(vec![BTreeSet::from([1])], nodes).expect("membership");
        let append = AppendEntriesRequest::<C> {
            vote: vote(),
            prev_log_id: None,
            entries: vec![EntryOf::<C>::new_membership(lid(3, 1), membership)],
            leader_commit: None,
        };
        let body = codec::encode(&append).expect("encode");
        let at = body
            .windows(2)
            .position(|w| w == [1, b'Q'])
            .expect("the address");
        let patched = [&body[..at], &huge_len, &body[at + 1..]].concat();
        assert!(codec::decode::<AppendEntriesRequest<C>>(&patched).is_err());
        // The entry count follows the vote and `prev_log_id: None`.
        let entries_at = codec::encode(&(vote(), None::<LogIdOf<C>>))
            .expect("encode")
            .len();
        assert_eq!(body[entries_at], 1);
        let patched = [&body[..entries_at], &huge_len, &body[entries_at + 1..]].concat();
        assert!(codec::decode::<AppendEntriesRequest<C>>(&patched).is_err());

        // Pseudo-random garbage of many lengths.
        let mut state = 0x2545_f491_4f6c_dd1d_u64;
        for len in 0..300 {
            let body: Vec<u8> = (0..len)
                .map(|_| {
                    state ^= state << 13;
                    state ^= state >> 7;
                    state ^= state << 17;
                    state as u8
                })
                .collect();
            let _ = codec::decode::<AppendEntriesRequest<C>>(&body);
            let _ = codec::decode_snapshot(&body);
            let _ = codec::decode::<TransferLeaderRequest<C>>(&body);
        }
    }

    #[test]
    fn backoff_doubles_from_50ms_up_to_1s() {
        let delays: Vec<u128> = backoff_delays().take(8).map(|d| d.as_millis()).collect();
        assert_eq!(delays, [50, 100, 200, 400, 800, 1000, 1000, 1000]);
    }

    /// Serves `router` on an ephemeral port.
    async fn serve(router: Router) -> SocketAddr {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move { axum::serve(listener, router).await });
        addr
    }

    async fn client_for(addr: SocketAddr) -> PeerClient {
        let mut network = PeerNetwork::new(
            1,
            PeerRoutes::default(),
            crate::raft::clock::ClockBook::new(crate::raft::clock::DEFAULT_MAX_OFFSET),
            PeerDialer::plain(),
        )
        .expect("network");
        let node = NodeAddr {
            raft_addr: addr.to_string(),
            api_addr: String::new(),
        };
        network.new_client(2, &node).await
    }

    fn option() -> RPCOption {
        // soft_ttl = 300 ms
        RPCOption::new(Duration::from_millis(400))
    }

    #[tokio::test]
    async fn vote_reaches_the_peer_and_returns_its_answer() {
        async fn grant(headers: HeaderMap, body: Bytes) -> Vec<u8> {
            assert_eq!(headers[header::CONTENT_TYPE], codec::CONTENT_TYPE);
            let request: VoteRequest<C> = codec::decode(&body).expect("decode");
            let answer: Result<_, RaftError<C>> = Ok(VoteResponse::<C>::new(
                request.vote,
                request.last_log_id,
                true,
            ));
            codec::encode(&answer).expect("encode")
        }
        let addr = serve(Router::new().route(VOTE_PATH, post(grant))).await;
        let mut client = client_for(addr).await;
        let answer = client.vote(vote_request(), option()).await.expect("vote");
        assert_eq!(answer, VoteResponse::new(vote(), Some(lid(3, 41)), true));
    }

    #[tokio::test]
    async fn nobody_listening_is_unreachable() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        drop(listener);
        let mut client = client_for(addr).await;
        let err = client.vote(vote_request(), option()).await.unwrap_err();
        assert!(matches!(err, RPCError::Unreachable(_)), "{err:?}");
    }

    #[tokio::test]
    async fn http_error_is_unreachable_with_the_reason() {
        async fn refuse() -> (StatusCode, &'static str) {
            (StatusCode::BAD_REQUEST, "malformed body: too short")
        }
        let addr = serve(Router::new().route(VOTE_PATH, post(refuse))).await;
        let mut client = client_for(addr).await;
        let err = client.vote(vote_request(), option()).await.unwrap_err();
        assert!(matches!(err, RPCError::Unreachable(_)), "{err:?}");
        assert!(err.to_string().contains("too short"), "{err}");
        // A peer that does not serve the Raft API at all (wrong port) likewise.
        let err = client
            .append_entries(
                AppendEntriesRequest {
                    vote: vote(),
                    prev_log_id: None,
                    entries: Vec::new(),
                    leader_commit: None,
                },
                option(),
            )
            .await
            .unwrap_err();
        assert!(matches!(err, RPCError::Unreachable(_)), "{err:?}");
        assert!(err.to_string().contains("404"), "{err}");
    }

    #[tokio::test]
    async fn stopped_peer_is_unreachable() {
        async fn stopped() -> Vec<u8> {
            let answer: Result<VoteResponse<C>, RaftError<C>> =
                Err(RaftError::Fatal(Fatal::Stopped));
            codec::encode(&answer).expect("encode")
        }
        let addr = serve(Router::new().route(PRE_VOTE_PATH, post(stopped))).await;
        let mut client = client_for(addr).await;
        let err = client.pre_vote(vote_request(), option()).await.unwrap_err();
        assert!(matches!(err, RPCError::Unreachable(_)), "{err:?}");
    }

    #[tokio::test]
    async fn garbage_answer_is_unreachable() {
        async fn garbage() -> &'static str {
            "<html>hello</html>"
        }
        let addr = serve(Router::new().route(VOTE_PATH, post(garbage))).await;
        let mut client = client_for(addr).await;
        let err = client.vote(vote_request(), option()).await.unwrap_err();
        assert!(matches!(err, RPCError::Unreachable(_)), "{err:?}");
    }

    #[tokio::test]
    async fn slow_peer_times_out_after_soft_ttl() {
        async fn stall() -> Vec<u8> {
            tokio::time::sleep(Duration::from_secs(30)).await;
            Vec::new()
        }
        let addr = serve(Router::new().route(TRANSFER_LEADER_PATH, post(stall))).await;
        let mut client = client_for(addr).await;
        let started = Instant::now();
        let request = TransferLeaderRequest::<C>::new(vote(), 2, None);
        let err = client.transfer_leader(request, option()).await.unwrap_err();
        match err {
            RPCError::Timeout(timeout) => {
                assert_eq!(timeout.action, RPCTypes::TransferLeader);
                assert_eq!((timeout.id, timeout.target), (1, 2));
                assert_eq!(timeout.timeout, Duration::from_millis(300));
            }
            other => panic!("expected a timeout, got {other:?}"),
        }
        assert!(started.elapsed() < Duration::from_secs(10));
    }

    /// A snapshot handle on an anonymous temp file holding `data`.
    fn snapshot(data: Vec<u8>) -> SnapshotOf<C, SnapshotData> {
        use std::io::Write;
        let mut file = tempfile::tempfile().expect("temp file");
        file.write_all(&data).expect("write");
        Snapshot {
            meta: snapshot_meta(),
            snapshot: SnapshotData::from_file(file, 0, data.len() as u64),
        }
    }

    #[tokio::test]
    async fn full_snapshot_goes_whole_to_a_peer_without_chunks() {
        async fn install(body: Bytes) -> Vec<u8> {
            let got = codec::decode_snapshot(&body).expect("decode");
            assert_eq!(got.meta, snapshot_meta());
            assert_eq!(got.data.len(), 3 << 20);
            assert!(got.data.iter().all(|b| *b == 0xab));
            let answer: Result<_, RaftError<C>> = Ok(SnapshotResponse::<C>::new(got.vote));
            codec::encode(&answer).expect("encode")
        }
        // An older peer: only the whole-snapshot path, without a body limit. The chunk
        // path answers 404, and the sender falls back.
        let router = Router::new().route(
            SNAPSHOT_PATH,
            post(install).layer(axum::extract::DefaultBodyLimit::disable()),
        );
        let addr = serve(router).await;
        let mut client = client_for(addr).await;
        let answer = client
            .full_snapshot(
                vote(),
                snapshot(vec![0xab; 3 << 20]),
                std::future::pending(),
                RPCOption::new(Duration::from_secs(30)),
            )
            .await
            .expect("snapshot");
        assert_eq!(answer.vote, vote());
    }

    #[tokio::test]
    async fn full_snapshot_stops_when_cancelled() {
        async fn stall() -> Vec<u8> {
            tokio::time::sleep(Duration::from_secs(60)).await;
            Vec::new()
        }
        let addr = serve(Router::new().route(SNAPSHOT_CHUNK_PATH, post(stall))).await;
        let mut client = client_for(addr).await;
        let started = Instant::now();
        let cancel = async {
            tokio::time::sleep(Duration::from_millis(100)).await;
            ReplicationClosed::new("leader stepped down")
        };
        let err = client
            .full_snapshot(
                vote(),
                snapshot(vec![1; 1024]),
                cancel,
                RPCOption::new(Duration::from_secs(60)),
            )
            .await
            .unwrap_err();
        assert!(matches!(err, StreamingError::Closed(_)), "{err:?}");
        assert!(started.elapsed() < Duration::from_secs(10));
    }
}
