//! Node-to-node Raft RPC, server side: the routes a peer's
//! [`PeerClient`](super::network::PeerClient) posts to, on the node's `raft_addr`.
//!
//! Every route decodes a bincode body, hands it to the local Raft node and answers the
//! bincode-encoded `Result<_, RaftError>` with HTTP 200. A body that does not decode is
//! answered HTTP 400 with the reason as text; the client then backs off.

mod snapshot_receiver;

use std::future::Future;
use std::path::PathBuf;

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use openraft::errors::{Fatal, RaftError};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, SnapshotResponse, TransferLeaderRequest,
    TransferLeaderResponse, VoteRequest, VoteResponse,
};
use openraft::type_config::alias::{SnapshotOf, VoteOf};
use serde::Serialize;

use super::codec::{self, CodecError};
use super::network::snapshot_transfer::CHUNK_BODY_LIMIT;
use super::network::{
    APPEND_PATH, PRE_VOTE_PATH, SNAPSHOT_CHUNK_PATH, SNAPSHOT_PATH, TRANSFER_LEADER_PATH, VOTE_PATH,
};
use super::state_machine::{LedgerStore, SnapshotData};
use super::{Raft, TypeConfig};
use snapshot_receiver::SnapshotReceiver;

/// Largest AppendEntries body: far above any batch openraft sends (a few thousand small
/// borrow commands), yet a bound on what one request can make this node buffer.
const APPEND_BODY_LIMIT: usize = codec::MAX_MESSAGE_BYTES;

/// The node-to-node Raft routes, to be served on the node's `raft_addr`:
/// `POST /raft/{append,vote,pre-vote,snapshot,snapshot-chunk,transfer-leader}`.
pub fn router(raft: Raft) -> Router {
    routes(raft)
}

/// What the routes need from the Raft node. A seam so the HTTP layer is tested without
/// storage; [`Raft`] is the only implementation outside tests.
trait RaftRpc: Clone + Send + Sync + 'static {
    fn on_append(
        &self,
        rpc: AppendEntriesRequest<TypeConfig>,
    ) -> impl Future<Output = Result<AppendEntriesResponse<TypeConfig>, RaftError<TypeConfig>>> + Send;

    fn on_vote(
        &self,
        rpc: VoteRequest<TypeConfig>,
    ) -> impl Future<Output = Result<VoteResponse<TypeConfig>, RaftError<TypeConfig>>> + Send;

    fn on_pre_vote(
        &self,
        rpc: VoteRequest<TypeConfig>,
    ) -> impl Future<Output = Result<VoteResponse<TypeConfig>, RaftError<TypeConfig>>> + Send;

    fn on_snapshot(
        &self,
        vote: VoteOf<TypeConfig>,
        snapshot: SnapshotOf<TypeConfig, SnapshotData>,
    ) -> impl Future<Output = Result<SnapshotResponse<TypeConfig>, Fatal<TypeConfig>>> + Send;

    /// The node's snapshot receiver (one per node, shared by every request).
    fn snapshot_receiver(&self) -> SnapshotReceiver;

    /// The snapshot directory, where incoming snapshots are assembled.
    fn snapshot_dir(&self) -> impl Future<Output = Result<PathBuf, Fatal<TypeConfig>>> + Send;

    fn on_transfer_leader(
        &self,
        req: TransferLeaderRequest<TypeConfig>,
    ) -> impl Future<Output = Result<TransferLeaderResponse<TypeConfig>, Fatal<TypeConfig>>> + Send;
}

impl RaftRpc for Raft {
    async fn on_append(
        &self,
        rpc: AppendEntriesRequest<TypeConfig>,
    ) -> Result<AppendEntriesResponse<TypeConfig>, RaftError<TypeConfig>> {
        self.append_entries(rpc).await
    }

    async fn on_vote(
        &self,
        rpc: VoteRequest<TypeConfig>,
    ) -> Result<VoteResponse<TypeConfig>, RaftError<TypeConfig>> {
        self.vote(rpc).await
    }

    async fn on_pre_vote(
        &self,
        rpc: VoteRequest<TypeConfig>,
    ) -> Result<VoteResponse<TypeConfig>, RaftError<TypeConfig>> {
        self.pre_vote(rpc).await
    }

    async fn on_snapshot(
        &self,
        vote: VoteOf<TypeConfig>,
        snapshot: SnapshotOf<TypeConfig, SnapshotData>,
    ) -> Result<SnapshotResponse<TypeConfig>, Fatal<TypeConfig>> {
        self.install_full_snapshot(vote, snapshot).await
    }

    fn snapshot_receiver(&self) -> SnapshotReceiver {
        self.extension::<SnapshotReceiver>()
    }

    async fn snapshot_dir(&self) -> Result<PathBuf, Fatal<TypeConfig>> {
        self.with_state_machine(|sm: &mut LedgerStore| {
            let dir = sm.snapshot_dir();
            Box::pin(async move { dir })
        })
        .await
    }

    async fn on_transfer_leader(
        &self,
        req: TransferLeaderRequest<TypeConfig>,
    ) -> Result<TransferLeaderResponse<TypeConfig>, Fatal<TypeConfig>> {
        self.handle_transfer_leader(req).await
    }
}

/// The routes over any [`RaftRpc`].
fn routes<R: RaftRpc>(raft: R) -> Router {
    Router::new()
        .route(
            APPEND_PATH,
            post(append::<R>).layer(DefaultBodyLimit::max(APPEND_BODY_LIMIT)),
        )
        .route(VOTE_PATH, post(vote::<R>))
        .route(PRE_VOTE_PATH, post(pre_vote::<R>))
        // A snapshot of any size arrives as bounded chunks; each request is bounded.
        .route(
            SNAPSHOT_CHUNK_PATH,
            post(snapshot_receiver::chunk::<R>).layer(DefaultBodyLimit::max(CHUNK_BODY_LIMIT)),
        )
        .route(
            SNAPSHOT_PATH,
            post(snapshot_receiver::whole::<R>).layer(DefaultBodyLimit::max(
                snapshot_receiver::WHOLE_SNAPSHOT_BODY_LIMIT,
            )),
        )
        .route(TRANSFER_LEADER_PATH, post(transfer_leader::<R>))
        .with_state(raft)
}

async fn append<R: RaftRpc>(State(raft): State<R>, body: Bytes) -> Response {
    match codec::decode(&body) {
        Ok(rpc) => reply(raft.on_append(rpc).await),
        Err(e) => bad_request(APPEND_PATH, e),
    }
}

async fn vote<R: RaftRpc>(State(raft): State<R>, body: Bytes) -> Response {
    match codec::decode(&body) {
        Ok(rpc) => reply(raft.on_vote(rpc).await),
        Err(e) => bad_request(VOTE_PATH, e),
    }
}

async fn pre_vote<R: RaftRpc>(State(raft): State<R>, body: Bytes) -> Response {
    match codec::decode(&body) {
        Ok(rpc) => reply(raft.on_pre_vote(rpc).await),
        Err(e) => bad_request(PRE_VOTE_PATH, e),
    }
}

async fn transfer_leader<R: RaftRpc>(State(raft): State<R>, body: Bytes) -> Response {
    match codec::decode(&body) {
        Ok(req) => reply(raft.on_transfer_leader(req).await.map_err(RaftError::Fatal)),
        Err(e) => bad_request(TRANSFER_LEADER_PATH, e),
    }
}

/// HTTP 200 with the encoded answer, whether the Raft node said yes, no or has stopped:
/// the client tells those apart, not the status code.
fn reply<T: Serialize>(answer: Result<T, RaftError<TypeConfig>>) -> Response {
    match codec::encode(&answer) {
        Ok(body) => ([(header::CONTENT_TYPE, codec::CONTENT_TYPE)], body).into_response(),
        Err(e) => {
            tracing::error!(error = %e, "cannot encode a Raft answer");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("cannot encode the answer: {e}"),
            )
                .into_response()
        }
    }
}

/// HTTP 400 with the reason: most likely a peer running an incompatible version.
fn bad_request(path: &'static str, e: CodecError) -> Response {
    tracing::warn!(path, error = %e, "refused a Raft RPC");
    (StatusCode::BAD_REQUEST, e.to_string()).into_response()
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    use openraft::entry::RaftEntry;
    use openraft::errors::RPCError;
    use openraft::network::{RPCOption, RaftNetworkFactory, RaftNetworkV2};
    use openraft::testing::log_id;
    use openraft::type_config::alias::{EntryOf, LogIdOf};
    use uuid::Uuid;

    use openraft::Snapshot;

    use super::*;
    use crate::borrow::check::BorrowRequest;
    use crate::borrow::host_id::HostId;
    use crate::borrow::license::LicenseKey;
    use crate::raft::network::snapshot_transfer::{self, CHUNK_BYTES};
    use crate::raft::network::{PeerClient, PeerNetwork};
    use crate::raft::NodeAddr;
    use crate::state::Command;

    type C = TypeConfig;

    /// Answers like a Raft node would, and records what reached it. Snapshots are
    /// assembled in a temp dir of its own.
    #[derive(Clone)]
    struct FakeRaft {
        seen: Arc<Mutex<Vec<String>>>,
        receiver: SnapshotReceiver,
        dir: Arc<tempfile::TempDir>,
    }

    impl Default for FakeRaft {
        fn default() -> Self {
            FakeRaft {
                seen: Arc::default(),
                receiver: SnapshotReceiver::default(),
                dir: Arc::new(tempfile::tempdir().expect("temp dir")),
            }
        }
    }

    impl FakeRaft {
        fn record(&self, what: String) {
            self.seen.lock().expect("lock").push(what);
        }

        fn seen(&self) -> Vec<String> {
            self.seen.lock().expect("lock").clone()
        }
    }

    impl RaftRpc for FakeRaft {
        async fn on_append(
            &self,
            rpc: AppendEntriesRequest<C>,
        ) -> Result<AppendEntriesResponse<C>, RaftError<C>> {
            self.record(format!("append {}", rpc.entries.len()));
            Ok(match rpc.entries.last() {
                Some(last) => AppendEntriesResponse::PartialSuccess(Some(last.log_id)),
                None => AppendEntriesResponse::Success,
            })
        }

        async fn on_vote(&self, rpc: VoteRequest<C>) -> Result<VoteResponse<C>, RaftError<C>> {
            self.record("vote".to_string());
            Ok(VoteResponse::new(rpc.vote, rpc.last_log_id, true))
        }

        async fn on_pre_vote(&self, rpc: VoteRequest<C>) -> Result<VoteResponse<C>, RaftError<C>> {
            self.record("pre-vote".to_string());
            Ok(VoteResponse::new(
                VoteOf::<C>::new(9, 3),
                rpc.last_log_id,
                false,
            ))
        }

        async fn on_snapshot(
            &self,
            vote: VoteOf<C>,
            snapshot: SnapshotOf<C, SnapshotData>,
        ) -> Result<SnapshotResponse<C>, Fatal<C>> {
            let data = &snapshot.snapshot;
            let mut bytes = vec![0u8; data.len() as usize];
            data.read_at(0, &mut bytes).expect("read the snapshot");
            let intact = bytes.iter().enumerate().all(|(i, b)| *b == (i % 253) as u8);
            self.record(format!("snapshot {} {intact}", bytes.len()));
            Ok(SnapshotResponse::new(vote))
        }

        fn snapshot_receiver(&self) -> SnapshotReceiver {
            self.receiver.clone()
        }

        async fn snapshot_dir(&self) -> Result<PathBuf, Fatal<C>> {
            Ok(self.dir.path().to_path_buf())
        }

        async fn on_transfer_leader(
            &self,
            _req: TransferLeaderRequest<C>,
        ) -> Result<TransferLeaderResponse<C>, Fatal<C>> {
            self.record("transfer-leader".to_string());
            Err(Fatal::Stopped)
        }
    }

    async fn serve(raft: FakeRaft) -> SocketAddr {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move { axum::serve(listener, routes(raft)).await });
        addr
    }

    async fn client_for(addr: SocketAddr) -> PeerClient {
        let node = NodeAddr {
            raft_addr: addr.to_string(),
            api_addr: String::new(),
        };
        PeerNetwork::new(
            1,
            crate::raft::routes::PeerRoutes::default(),
            crate::raft::clock::ClockBook::new(crate::raft::clock::DEFAULT_MAX_OFFSET),
            crate::transport::peer::PeerDialer::plain(),
        )
        .expect("network")
        .new_client(2, &node)
        .await
    }

    fn option() -> RPCOption {
        RPCOption::new(Duration::from_secs(10))
    }

    fn lid(index: u64) -> LogIdOf<C> {
        log_id::<C>(3, 1, index)
    }

    fn vote() -> VoteOf<C> {
        VoteOf::<C>::new_committed(3, 1)
    }

    fn borrow_entry(index: u64, user_info_len: usize) -> EntryOf<C> {
        let command = Command::Borrow {
            now: 1_700_000_000,
            borrow_id: Uuid::new_v4(),
            request: BorrowRequest {
                key: LicenseKey {
                    feature: "MVTec_HDevelop".to_string(),
                    uuid: "u1".to_string(),
                },
                host_id: HostId::parse("CM:3-1234567890").expect("host id"),
                valid_from: None,
                valid_until: Some(1_700_086_400),
                user_info: Some("i".repeat(user_info_len)),
            },
            request_id: None,
        };
        EntryOf::<C>::new_normal(lid(index), command)
    }

    #[tokio::test]
    async fn every_rpc_reaches_raft_and_its_answer_comes_back() {
        let raft = FakeRaft::default();
        let mut client = client_for(serve(raft.clone()).await).await;

        let heartbeat = AppendEntriesRequest::<C> {
            vote: vote(),
            prev_log_id: Some(lid(4)),
            entries: Vec::new(),
            leader_commit: Some(lid(4)),
        };
        let answer = client.append_entries(heartbeat, option()).await;
        assert_eq!(answer.expect("append"), AppendEntriesResponse::Success);

        // Above axum's default 2 MiB limit: the append route allows more.
        let big = AppendEntriesRequest::<C> {
            vote: vote(),
            prev_log_id: Some(lid(4)),
            entries: vec![borrow_entry(5, 10), borrow_entry(6, 3 << 20)],
            leader_commit: Some(lid(4)),
        };
        let answer = client.append_entries(big, option()).await;
        assert_eq!(
            answer.expect("append"),
            AppendEntriesResponse::PartialSuccess(Some(lid(6)))
        );

        let request = VoteRequest::<C>::new(vote(), Some(lid(6)));
        let answer = client.vote(request.clone(), option()).await.expect("vote");
        assert_eq!(answer, VoteResponse::new(vote(), Some(lid(6)), true));
        let answer = client.pre_vote(request, option()).await.expect("pre-vote");
        assert!(!answer.vote_granted);
        assert_eq!(answer.vote, VoteOf::<C>::new(9, 3));

        // Above one chunk's limit: the snapshot goes as two chunks.
        let snapshot = patterned_snapshot(5 << 20);
        let answer = client
            .full_snapshot(vote(), snapshot, std::future::pending(), option())
            .await
            .expect("snapshot");
        assert_eq!(answer.vote, vote());

        // The fake's Raft "has stopped": the peer counts as unreachable.
        let request = TransferLeaderRequest::<C>::new(vote(), 2, Some(lid(6)));
        let err = client.transfer_leader(request, option()).await.unwrap_err();
        assert!(matches!(err, RPCError::Unreachable(_)), "{err:?}");

        assert_eq!(
            raft.seen(),
            [
                "append 0",
                "append 2",
                "vote",
                "pre-vote",
                "snapshot 5242880 true",
                "transfer-leader"
            ]
        );
    }

    #[tokio::test]
    async fn malformed_bodies_get_400_with_a_reason() {
        let raft = FakeRaft::default();
        let addr = serve(raft.clone()).await;
        let http = reqwest::Client::builder()
            .no_proxy()
            .build()
            .expect("client");
        for path in [
            APPEND_PATH,
            VOTE_PATH,
            PRE_VOTE_PATH,
            SNAPSHOT_PATH,
            SNAPSHOT_CHUNK_PATH,
            TRANSFER_LEADER_PATH,
        ] {
            for body in [Vec::new(), b"{\"vote\": 1}".to_vec(), vec![0xff; 40]] {
                let response = http
                    .post(format!("http://{addr}{path}"))
                    .body(body)
                    .send()
                    .await
                    .expect("send");
                assert_eq!(
                    response.status(),
                    reqwest::StatusCode::BAD_REQUEST,
                    "{path}"
                );
                let reason = response.text().await.expect("text");
                assert!(reason.starts_with("malformed body"), "{path}: {reason}");
            }
        }
        assert!(raft.seen().is_empty(), "{:?}", raft.seen());
    }

    #[tokio::test]
    async fn small_rpcs_keep_a_body_limit_and_only_post_is_served() {
        let addr = serve(FakeRaft::default()).await;
        let http = reqwest::Client::builder()
            .no_proxy()
            .build()
            .expect("client");
        let response = http
            .post(format!("http://{addr}{VOTE_PATH}"))
            .body(vec![0; 3 << 20])
            .send()
            .await
            .expect("send");
        assert_eq!(response.status(), reqwest::StatusCode::PAYLOAD_TOO_LARGE);
        let response = http
            .get(format!("http://{addr}{APPEND_PATH}"))
            .send()
            .await
            .expect("send");
        assert_eq!(response.status(), reqwest::StatusCode::METHOD_NOT_ALLOWED);
    }

    /// A snapshot of `len` bytes following the pattern `FakeRaft` checks, in a temp file.
    fn patterned_snapshot(len: usize) -> SnapshotOf<C, SnapshotData> {
        use std::io::Write;
        let data: Vec<u8> = (0..len).map(|i| (i % 253) as u8).collect();
        let mut file = tempfile::tempfile().expect("temp file");
        file.write_all(&data).expect("write");
        Snapshot {
            meta: Default::default(),
            snapshot: SnapshotData::from_file(file, 0, len as u64),
        }
    }

    fn leftovers(raft: &FakeRaft) -> Vec<String> {
        std::fs::read_dir(raft.dir.path())
            .expect("read dir")
            .map(|entry| {
                entry
                    .expect("entry")
                    .file_name()
                    .to_string_lossy()
                    .into_owned()
            })
            .collect()
    }

    #[tokio::test]
    async fn a_chunked_transfer_assembles_the_same_bytes() {
        let raft = FakeRaft::default();
        let mut client = client_for(serve(raft.clone()).await).await;
        // Not a multiple of the chunk size: three full chunks and a short one.
        let len = 3 * CHUNK_BYTES + 12_345;
        let answer = client
            .full_snapshot(
                vote(),
                patterned_snapshot(len),
                std::future::pending(),
                option(),
            )
            .await
            .expect("snapshot");
        assert_eq!(answer.vote, vote());
        // An empty snapshot is one empty chunk.
        client
            .full_snapshot(
                vote(),
                patterned_snapshot(0),
                std::future::pending(),
                option(),
            )
            .await
            .expect("empty snapshot");
        assert_eq!(
            raft.seen(),
            [
                format!("snapshot {len} true"),
                "snapshot 0 true".to_string()
            ]
        );
        // The staged files were handed over and deleted with the snapshots.
        assert!(leftovers(&raft).is_empty(), "{:?}", leftovers(&raft));
    }

    /// POSTs one chunk of `len` bytes at `offset` of transfer 7 to the chunk path.
    async fn post_chunk(
        addr: SocketAddr,
        offset: u64,
        len: usize,
        total: u64,
    ) -> reqwest::Response {
        let header = snapshot_transfer::ChunkHeader {
            vote: vote(),
            meta: Default::default(),
            transfer: 7,
            offset,
            total,
        };
        let body = snapshot_transfer::encode_chunk(&header, &vec![1u8; len]).expect("encode");
        reqwest::Client::builder()
            .no_proxy()
            .build()
            .expect("client")
            .post(format!("http://{addr}{SNAPSHOT_CHUNK_PATH}"))
            .body(body)
            .send()
            .await
            .expect("send")
    }

    #[tokio::test]
    async fn oversized_and_stray_chunks_are_refused() {
        let raft = FakeRaft::default();
        let addr = serve(raft.clone()).await;
        let total = 64 << 20;
        // One byte over the chunk size, within the body limit: refused by the receiver.
        let response = post_chunk(addr, 0, CHUNK_BYTES + 1, total).await;
        assert_eq!(response.status(), reqwest::StatusCode::PAYLOAD_TOO_LARGE);
        // Over the body limit: refused before the body is read in full.
        let response = post_chunk(addr, 0, CHUNK_BODY_LIMIT + 1, total).await;
        assert_eq!(response.status(), reqwest::StatusCode::PAYLOAD_TOO_LARGE);
        // A chunk that does not continue a transfer in progress.
        let response = post_chunk(addr, 4096, 4096, total).await;
        assert_eq!(response.status(), reqwest::StatusCode::CONFLICT);
        // A proper first chunk is held; a gap after it is refused; the transfer survives.
        let response = post_chunk(addr, 0, 4096, total).await;
        assert_eq!(response.status(), reqwest::StatusCode::OK);
        let held: Result<u64, RaftError<C>> =
            codec::decode(&response.bytes().await.expect("body")).expect("decode");
        assert_eq!(held.expect("held"), 4096);
        let response = post_chunk(addr, 8192, 4096, total).await;
        assert_eq!(response.status(), reqwest::StatusCode::CONFLICT);
        let response = post_chunk(addr, 4096, 4096, total).await;
        assert_eq!(response.status(), reqwest::StatusCode::OK);
        assert!(raft.seen().is_empty(), "{:?}", raft.seen());
        assert_eq!(leftovers(&raft).len(), 1, "one transfer in progress");
    }
}
