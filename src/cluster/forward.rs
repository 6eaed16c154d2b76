//! Any node answers any client: writes reaching a follower are forwarded to the leader,
//! and reads on a follower are made linearizable with the leader's read index.
//!
//! Both travel over the node-to-node port (`/cluster/...`), bincode-encoded like the Raft
//! RPCs, so clients never see a redirect.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use openraft::errors::{ClientWriteError, LinearizableReadError, RaftError};
use openraft::ReadPolicy;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::borrow::check::BorrowRequest;
use crate::borrow::host_id::HostId;
use crate::borrow::time::UnixSeconds;
use crate::metrics::proposals::ProposalInFlight;
use crate::state::{ApiKeyChange, Bootstrap, Command, HostChange, KeyId, LicenseChange, Outcome};
use crate::telemetry::trace_export;
use crate::transport::peer::PeerDialer;
use tracing::Instrument;

use crate::raft::clock::ClockBook;
use crate::raft::codec;
use crate::raft::identity::IdentityStore;
use crate::raft::node::Node;
use crate::raft::routes::PeerRoutes;
use crate::raft::{metrics_of, NodeAddr, NodeId, Raft};

/// Forward writes to the leader, several in one request (see `cluster/batcher.rs`).
pub const FORWARD_BATCH_PATH: &str = "/cluster/forward-batch";
/// On a forwarded batch: each write's W3C `traceparent`, in order, comma-separated (empty
/// for a write not traced). A header, so the body stays what every version reads.
pub const TRACEPARENTS_HEADER: &str = "x-licensed-traceparents";
/// Ask the leader for a read index.
pub const READ_INDEX_PATH: &str = "/cluster/read-index";
/// Who is this node, does it belong to a cluster, whom does it follow.
pub const INFO_PATH: &str = "/cluster/info";

/// A write before the leader stamps its time: what a follower forwards.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Proposal {
    /// See [`Command::Bootstrap`].
    Bootstrap(Box<Bootstrap>),
    /// See [`Command::Borrow`].
    Borrow {
        /// Chosen by the node the client reached, so a retried forward keeps its id.
        borrow_id: Uuid,
        /// The decoded request.
        request: BorrowRequest,
        /// The client's idempotency key.
        request_id: Option<String>,
    },
    /// See [`Command::Return`].
    Return {
        /// The borrow to give back.
        borrow_id: Uuid,
    },
    // New variants go last: forwards from nodes of an earlier version keep decoding.
    /// See [`Command::ApiKey`].
    ApiKey(ApiKeyChange),
    /// See [`Command::AsKey`]: `proposal` made with a client API key.
    AsKey {
        /// The key's id.
        key_id: KeyId,
        /// The write.
        proposal: Box<Proposal>,
    },
    /// See [`Command::Origin`]: `proposal` as node `node` took it from a caller.
    Origin {
        /// The node the caller reached.
        node: u64,
        /// The caller used the admin token.
        admin: bool,
        /// The write.
        proposal: Box<Proposal>,
    },
    /// See [`Command::Licenses`].
    Licenses(LicenseChange),
    /// See [`Command::Host`].
    Host {
        /// The host.
        host_id: HostId,
        /// What to do.
        change: HostChange,
    },
}

impl Proposal {
    /// The write itself, without who made it (origin, API key).
    pub fn into_inner(self) -> Proposal {
        match self {
            Proposal::AsKey { proposal, .. } | Proposal::Origin { proposal, .. } => {
                proposal.into_inner()
            }
            other => other,
        }
    }

    /// The log command, with the time of the node that appends it (the leader).
    pub fn stamp(self, now: UnixSeconds) -> Command {
        match self {
            Proposal::Bootstrap(bootstrap) => Command::Bootstrap(bootstrap),
            Proposal::Borrow {
                borrow_id,
                request,
                request_id,
            } => Command::Borrow {
                now,
                borrow_id,
                request,
                request_id,
            },
            Proposal::Return { borrow_id } => Command::Return { now, borrow_id },
            Proposal::ApiKey(change) => Command::ApiKey { now, change },
            Proposal::AsKey { key_id, proposal } => Command::AsKey {
                key_id,
                command: Box::new(proposal.stamp(now)),
            },
            Proposal::Origin {
                node,
                admin,
                proposal,
            } => Command::Origin {
                node,
                admin,
                command: Box::new(proposal.stamp(now)),
            },
            Proposal::Licenses(change) => Command::Licenses { now, change },
            Proposal::Host { host_id, change } => Command::Host {
                now,
                host_id,
                change,
            },
        }
    }
}

/// Why a write or read could not be done on this node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum ClusterError {
    /// Not the leader; the proposal was not appended, so trying elsewhere is safe.
    #[error("not the leader (leader: {leader:?})")]
    NotLeader {
        /// The leader as this node knows it.
        leader: Option<(NodeId, NodeAddr)>,
    },
    /// No quorum answered (read index).
    #[error("no quorum: {0}")]
    NoQuorum(String),
    /// The proposal may or may not have been applied (the leader stopped, or the answer
    /// was lost): retrying could apply it twice.
    #[error("outcome unknown: {0}")]
    Unknown(String),
    /// The peer could not be reached; nothing was sent.
    #[error("peer unreachable: {0}")]
    Unreachable(String),
    /// This leader's clock is off a quorum's: it stamps nothing and hands leadership
    /// over. Nothing was appended.
    #[error("{0}")]
    ClockOff(String),
}

impl ClusterError {
    /// Whether trying again (here or on another node) is safe and may succeed.
    pub fn is_retriable(&self) -> bool {
        !matches!(self, ClusterError::Unknown(_))
    }
}

/// Where a linearizable read is taken: the log index a replica must have applied, and
/// the leader's clock when it confirmed its leadership for that index. Reads that depend
/// on time (which borrows are still current) use this instant, not the answering node's
/// clock, so every node gives the same answer for the same read point.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReadPoint {
    /// Apply up to here before reading.
    pub index: u64,
    /// The leader's clock at the read index.
    pub now: UnixSeconds,
}

/// What a node says about itself on [`INFO_PATH`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeInfo {
    /// Its id.
    pub id: NodeId,
    /// Its addresses.
    pub addr: NodeAddr,
    /// Whether it already belongs to a cluster.
    pub initialized: bool,
    /// The leader it knows.
    pub leader: Option<NodeId>,
    /// Whether its data dir was admitted into a cluster (see `raft/identity.rs`); a node
    /// restarted on an empty data dir is not, whatever its id.
    #[serde(default)]
    pub admitted: bool,
    /// The cluster it was admitted into.
    #[serde(default)]
    pub cluster_id: Option<Uuid>,
}

/// Refuses unless this node leads, by its published metrics, with a clock a quorum of the
/// voters agrees with: what it stamps would drag the ledger clock (see `raft/clock.rs`).
///
/// A node whose metrics do not (yet) say it leads is refused too, never let through to
/// stamp: the metrics trail the Raft core, so a node that has just won an election may
/// still read as a follower here while its core already accepts writes, and a write
/// stamped in that window would carry a clock nobody checked. The caller retries; by
/// then the metrics say who leads.
fn check_clock(raft: &Raft, clocks: &ClockBook, now_ms: i64) -> Result<(), ClusterError> {
    use openraft::async_runtime::WatchReceiver;
    let metrics = raft.metrics();
    let metrics = metrics.borrow_watched();
    if metrics.current_leader != Some(metrics.id) {
        let leader = metrics.current_leader.and_then(|leader| {
            let addr = metrics
                .membership_config
                .membership()
                .get_node(&leader)
                .cloned();
            addr.map(|addr| (leader, addr))
        });
        return Err(ClusterError::NotLeader { leader });
    }
    let voters = metrics.membership_config.membership().voter_ids().collect();
    clocks
        .may_stamp_at(metrics.id, &voters, now_ms)
        .map_err(ClusterError::ClockOff)
}

/// This node's clock, read once for both the clock check and the stamp (see
/// [`ClockBook::may_stamp_at`]): Unix milliseconds, and the stamp's whole seconds.
fn stamp_clock() -> (i64, UnixSeconds) {
    let now_ms = crate::raft::clock::wall_ms();
    (now_ms, now_ms.div_euclid(1000))
}

/// Appends a proposal on this node, which must be the leader.
#[tracing::instrument(name = "proposal", level = "info", skip_all)]
pub async fn propose_local(
    raft: &Raft,
    clocks: &ClockBook,
    proposal: Proposal,
) -> Result<Outcome, ClusterError> {
    let (now_ms, now) = stamp_clock();
    check_clock(raft, clocks, now_ms)?;
    // Dropped unfinished (a timeout abandons the wait) it counts as failed.
    let in_flight = ProposalInFlight::start();
    let written = raft
        .client_write(proposal.stamp(now))
        .instrument(tracing::info_span!("commit_wait"))
        .await;
    match written {
        Ok(response) => {
            in_flight.committed();
            Ok(response.data)
        }
        Err(RaftError::APIError(ClientWriteError::ForwardToLeader(forward))) => {
            in_flight.not_proposed();
            Err(ClusterError::NotLeader {
                leader: forward.leader_id.zip(forward.leader_node),
            })
        }
        Err(e) => Err(ClusterError::Unknown(e.to_string())),
    }
}

/// Chaos builds only, `LICENSED_BROKEN=ack-before-commit`: on the leader, answers a borrow
/// or return at once from a copy of the local ledger, as if its entry were applied, and
/// proposes the entry in the background with its result ignored. The client gets its
/// answer before the entry is on a quorum (or even in the log): if the leader is killed or
/// cut off before the entry commits, the acknowledged borrow never existed, and its seat
/// goes to someone else. `None` when not in this mode, or when this node does not lead
/// (the write then takes the normal path: forwarded or refused).
#[cfg(feature = "failpoints")]
pub(crate) fn ack_before_commit(
    node: &Node,
    proposal: &Proposal,
) -> Option<Result<Outcome, ClusterError>> {
    use crate::broken::{is, Broken};
    if !is(Broken::AckBeforeCommit)
        || matches!(proposal, Proposal::Bootstrap(_))
        || metrics_of(&node.raft).current_leader != Some(node.id)
    {
        return None;
    }
    let (now_ms, now) = stamp_clock();
    if let Err(refused) = check_clock(&node.raft, &node.clocks, now_ms) {
        return Some(Err(refused));
    }
    let command = proposal.clone().stamp(now);
    let mut as_if_applied = node.ledger.read().clone();
    let outcome = as_if_applied.apply(&command);
    let raft = node.raft.clone();
    tokio::spawn(async move {
        let _ignored = raft.client_write(command).await;
    });
    Some(Ok(outcome))
}

/// On the leader: a log index such that a state machine that has applied it reflects
/// every write acknowledged before this call, with the leader's clock (see [`ReadPoint`]).
pub async fn read_index_local(raft: &Raft, clocks: &ClockBook) -> Result<ReadPoint, ClusterError> {
    match raft.get_read_linearizer(ReadPolicy::ReadIndex).await {
        Ok(linearizer) => {
            // The read's time is checked like a write's stamp, from the same reading.
            let (now_ms, now) = stamp_clock();
            check_clock(raft, clocks, now_ms)?;
            Ok(ReadPoint {
                index: linearizer.read_log_id().index(),
                now,
            })
        }
        Err(RaftError::APIError(LinearizableReadError::ForwardToLeader(forward))) => {
            Err(ClusterError::NotLeader {
                leader: forward.leader_id.zip(forward.leader_node),
            })
        }
        Err(RaftError::APIError(LinearizableReadError::QuorumNotEnough(e))) => {
            Err(ClusterError::NoQuorum(e.to_string()))
        }
        Err(e) => Err(ClusterError::NoQuorum(e.to_string())),
    }
}

/// The leader this node knows, with its addresses. Called on every write: reads the
/// metrics in place rather than cloning them.
pub fn known_leader(raft: &Raft) -> Option<(NodeId, NodeAddr)> {
    use openraft::async_runtime::WatchReceiver;
    let metrics = raft.metrics();
    let metrics = metrics.borrow_watched();
    let leader = metrics.current_leader?;
    let addr = metrics
        .membership_config
        .membership()
        .get_node(&leader)
        .cloned()?;
    Some((leader, addr))
}

/// Calls a peer's cluster endpoints.
#[derive(Debug, Clone)]
pub struct ClusterClient {
    http: reqwest::Client,
    routes: PeerRoutes,
    dialer: PeerDialer,
}

impl ClusterClient {
    /// A client with its own connection pool (kept alive between calls).
    pub fn new(routes: PeerRoutes, dialer: &PeerDialer) -> Result<ClusterClient, reqwest::Error> {
        Ok(ClusterClient {
            routes,
            dialer: dialer.clone(),
            http: dialer
                .client_builder()
                .tcp_nodelay(true)
                .connect_timeout(Duration::from_secs(1))
                .build()?,
        })
    }

    async fn post<Req: Serialize, Resp: for<'de> Deserialize<'de>>(
        &self,
        (id, addr): (NodeId, &NodeAddr),
        path: &str,
        body: &Req,
        timeout: Duration,
        traceparents: Option<String>,
    ) -> Result<Resp, ClusterError> {
        let raft_addr = self.routes.resolve(id, &addr.raft_addr);
        let body = codec::encode(body).map_err(|e| ClusterError::Unreachable(e.to_string()))?;
        let mut request = self
            .http
            .post(format!("{}{path}", self.dialer.base_url(raft_addr)))
            .header(header::CONTENT_TYPE, codec::CONTENT_TYPE);
        if let Some(traceparents) = traceparents {
            request = request.header(TRACEPARENTS_HEADER, traceparents);
        }
        let response = self
            .dialer
            .send(&self.http, request.timeout(timeout).body(body))
            .await
            .map_err(|e| {
                if e.is_connect() {
                    ClusterError::Unreachable(e.to_string())
                } else {
                    ClusterError::Unknown(format!("{path} on {}: {e}", raft_addr))
                }
            })?;
        if !response.status().is_success() {
            return Err(ClusterError::Unknown(format!(
                "{path} on {}: HTTP {}",
                raft_addr,
                response.status()
            )));
        }
        let bytes = response
            .bytes()
            .await
            .map_err(|e| ClusterError::Unknown(e.to_string()))?;
        codec::decode(&bytes).map_err(|e| ClusterError::Unknown(e.to_string()))
    }

    /// Forwards proposals to `leader` in one request: one answer per proposal, in order.
    /// Each proposal comes with its caller's `traceparent`, if traced; the leader
    /// continues those traces.
    pub async fn forward_batch(
        &self,
        leader: (NodeId, &NodeAddr),
        proposals: Vec<(Proposal, Option<String>)>,
        timeout: Duration,
    ) -> Result<Vec<Result<Outcome, ClusterError>>, ClusterError> {
        let (proposals, traceparents): (Vec<Proposal>, Vec<Option<String>>) =
            proposals.into_iter().unzip();
        let traceparents = traceparents.iter().any(Option::is_some).then(|| {
            traceparents
                .iter()
                .map(|tp| tp.as_deref().unwrap_or(""))
                .collect::<Vec<_>>()
                .join(",")
        });
        self.post(
            leader,
            FORWARD_BATCH_PATH,
            &proposals,
            timeout,
            traceparents,
        )
        .await
    }

    /// Asks `leader` for a read point.
    pub async fn read_index(
        &self,
        leader: (NodeId, &NodeAddr),
        timeout: Duration,
    ) -> Result<ReadPoint, ClusterError> {
        let answer: Result<ReadPoint, ClusterError> = self
            .post(leader, READ_INDEX_PATH, &(), timeout, None)
            .await?;
        answer
    }

    /// Asks a node about itself (JSON, so operators can curl it too).
    pub async fn info(&self, raft_addr: &str, timeout: Duration) -> Result<NodeInfo, ClusterError> {
        let response = self
            .http
            .get(format!("{}{INFO_PATH}", self.dialer.base_url(raft_addr)))
            .timeout(timeout)
            .send()
            .await
            .map_err(|e| ClusterError::Unreachable(e.to_string()))?;
        response
            .json()
            .await
            .map_err(|e| ClusterError::Unreachable(e.to_string()))
    }
}

#[derive(Clone)]
struct ClusterState {
    raft: Raft,
    id: NodeId,
    addr: NodeAddr,
    identity: Arc<IdentityStore>,
    /// How long the leader works on a forwarded write before answering "unknown".
    deadline: Duration,
    clocks: Arc<ClockBook>,
    /// Chaos builds only: what the broken modes need (ledger and all).
    #[cfg(feature = "failpoints")]
    node: Node,
}

/// The `/cluster/...` routes, served beside the Raft RPCs on the node-to-node port.
/// `deadline` bounds the leader's work on each forwarded write (the request timeout): a
/// leader that lost its quorum answers instead of holding the request open forever.
pub fn router(node: &Node, addr: NodeAddr, deadline: Duration) -> Router {
    Router::new()
        .route(FORWARD_BATCH_PATH, post(forward_batch))
        .route(READ_INDEX_PATH, post(read_index))
        .route(INFO_PATH, get(info))
        .with_state(ClusterState {
            raft: node.raft.clone(),
            id: node.id,
            addr,
            identity: node.identity.clone(),
            deadline,
            clocks: node.clocks.clone(),
            #[cfg(feature = "failpoints")]
            node: node.clone(),
        })
}

fn bincode_response<T: Serialize>(value: &T) -> Response {
    match codec::encode(value) {
        Ok(bytes) => ([(header::CONTENT_TYPE, codec::CONTENT_TYPE)], bytes).into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    }
}

async fn forward_batch(
    State(state): State<ClusterState>,
    headers: axum::http::HeaderMap,
    body: Bytes,
) -> Response {
    let proposals: Vec<Proposal> = match codec::decode(&body) {
        Ok(proposals) => proposals,
        Err(e) => return (StatusCode::BAD_REQUEST, format!("malformed body: {e}")).into_response(),
    };
    let mut traceparents = headers
        .get(TRACEPARENTS_HEADER)
        .and_then(|value| value.to_str().ok())
        .map(|value| value.split(',').map(str::to_string).collect::<Vec<_>>())
        .unwrap_or_default()
        .into_iter();
    let spans: Vec<tracing::Span> = proposals
        .iter()
        .map(|_| {
            let span = tracing::info_span!("forwarded_write", otel.kind = "server");
            if let Some(traceparent) = traceparents.next().filter(|tp| !tp.is_empty()) {
                trace_export::continue_trace(&span, &traceparent);
            }
            span
        })
        .collect();
    #[cfg(feature = "failpoints")]
    let forwarded = proposals.clone();
    // All at once: Raft appends what arrives together as one group commit.
    let answers =
        futures::future::join_all(proposals.into_iter().zip(spans).map(|(proposal, span)| {
            async {
                #[cfg(feature = "failpoints")]
                if let Some(answer) = ack_before_commit(&state.node, &proposal) {
                    return answer;
                }
                tokio::time::timeout(
                    state.deadline,
                    propose_local(&state.raft, &state.clocks, proposal),
                )
                .await
                .unwrap_or_else(|_| {
                    Err(ClusterError::Unknown(format!(
                        "not committed within {} ms on the leader (no quorum?)",
                        state.deadline.as_millis()
                    )))
                })
            }
            .instrument(span)
        }))
        .await;
    #[cfg(feature = "failpoints")]
    if crate::broken::is(crate::broken::Broken::ApplyForwardedTwice) {
        apply_forwarded_again(&state, forwarded, &answers).await;
    }
    bincode_response(&answers)
}

/// Chaos builds only, `LICENSED_BROKEN=apply-forwarded-twice`: after a forwarded batch
/// was applied, the leader proposes each granted borrow of it a second time. The second
/// one gets a fresh borrow id and no `requestId`: with the same ones the ledger would only
/// repeat the first answer (dedup) and hide the bug. What a client sees: its borrow is
/// answered once, yet a second borrow of the same license for the same host and interval,
/// with an id nobody was told, shows in `ListLicensesV1` and holds a seat, so later
/// borrows can be refused for a seat that should be free.
#[cfg(feature = "failpoints")]
async fn apply_forwarded_again(
    state: &ClusterState,
    forwarded: Vec<Proposal>,
    answers: &[Result<Outcome, ClusterError>],
) {
    let again = forwarded
        .into_iter()
        .zip(answers)
        .filter_map(|(proposal, answer)| match (proposal.into_inner(), answer) {
            (Proposal::Borrow { request, .. }, Ok(Outcome::Borrow(Ok(_)))) => {
                Some(Proposal::Borrow {
                    borrow_id: Uuid::new_v4(),
                    request,
                    request_id: None,
                })
            }
            _ => None,
        });
    let applied = futures::future::join_all(again.map(|proposal| {
        tokio::time::timeout(
            state.deadline,
            propose_local(&state.raft, &state.clocks, proposal),
        )
    }))
    .await;
    tracing::debug!(
        count = applied.len(),
        "forwarded borrows applied a second time"
    );
}

async fn read_index(State(state): State<ClusterState>) -> Response {
    bincode_response(&read_index_local(&state.raft, &state.clocks).await)
}

async fn info(State(state): State<ClusterState>) -> Response {
    let initialized = state.raft.is_initialized().await.unwrap_or(false);
    let identity = state.identity.get();
    Json(NodeInfo {
        id: state.id,
        addr: state.addr.clone(),
        initialized,
        leader: metrics_of(&state.raft).current_leader,
        admitted: identity.admitted,
        cluster_id: identity.cluster_id,
    })
    .into_response()
}
