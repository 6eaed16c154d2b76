//! Cluster membership: static bootstrap from `--peers`, `--join` of a running cluster,
//! and the admin operations (`status`, `add`, `remove`, `transfer-leader`).
//!
//! Membership changes run on the leader. Any node accepts them on `/cluster/admin/...`
//! (JSON, node-to-node port) and passes them to the leader.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use openraft::{ChangeMembers, Instant as _};
use serde::{Deserialize, Serialize};

use super::cluster::{known_leader, ClusterClient, ClusterError};
use super::routes::PeerRoutes;
use super::{metrics_of, NodeAddr, NodeId, Raft};

/// Add a node (learner first, voter once caught up).
pub const ADD_PATH: &str = "/cluster/admin/add";
/// Remove a node.
pub const REMOVE_PATH: &str = "/cluster/admin/remove";
/// Hand leadership to a node.
pub const TRANSFER_PATH: &str = "/cluster/admin/transfer-leader";
/// Bound on one membership change (joint consensus needs a quorum of old and new voters);
/// without it an admin call against a cluster that lost its quorum would hang.
const CHANGE_TIMEOUT: Duration = Duration::from_secs(30);
/// Bound on a new learner catching up (it may need a whole snapshot).
const CATCH_UP_TIMEOUT: Duration = Duration::from_secs(120);
/// A follower that acknowledged the leader this recently counts as healthy.
const HEALTHY_WITHIN: Duration = Duration::from_secs(1);

/// The cluster as this node sees it.
pub const STATUS_PATH: &str = "/cluster/admin/status";

/// `--peers 1=host:port,2=host:port,...`: the voters of a new cluster by id and Raft address.
pub fn parse_peers(text: &str) -> Result<BTreeMap<NodeId, String>, String> {
    let mut peers = BTreeMap::new();
    for item in text
        .split(',')
        .map(str::trim)
        .filter(|item| !item.is_empty())
    {
        let (id, addr) = item
            .split_once('=')
            .ok_or_else(|| format!("{item:?}: expected ID=HOST:PORT"))?;
        let id: NodeId = id
            .trim()
            .parse()
            .map_err(|_| format!("{item:?}: the node id must be a number"))?;
        if peers.insert(id, addr.trim().to_string()).is_some() {
            return Err(format!("node id {id} appears twice"));
        }
    }
    if peers.is_empty() {
        return Err("no peers given".to_string());
    }
    Ok(peers)
}

/// Creates a new cluster from `peers` if this node has the lowest id and no peer belongs
/// to a cluster yet. Waits (up to `patience`) for every peer to come up. Returns whether
/// this node created the cluster.
pub async fn bootstrap_static(
    raft: &Raft,
    my_id: NodeId,
    my_addr: &NodeAddr,
    peers: &BTreeMap<NodeId, String>,
    patience: Duration,
) -> Result<bool, String> {
    if raft.is_initialized().await.map_err(|e| e.to_string())? {
        return Ok(false);
    }
    if peers.keys().next() != Some(&my_id) {
        // Another node creates the cluster; this one waits to be contacted.
        return Ok(false);
    }
    let client = ClusterClient::new(PeerRoutes::default()).map_err(|e| e.to_string())?;
    let deadline = tokio::time::Instant::now() + patience;
    let mut members = BTreeMap::new();
    for (&id, raft_addr) in peers {
        if id == my_id {
            members.insert(id, my_addr.clone());
            continue;
        }
        let info = loop {
            match client.info(raft_addr, Duration::from_secs(2)).await {
                Ok(info) => break info,
                Err(e) if tokio::time::Instant::now() < deadline => {
                    tracing::info!(peer = id, %raft_addr, error = %e, "waiting for peer");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                Err(e) => return Err(format!("peer {id} at {raft_addr} unreachable: {e}")),
            }
        };
        if info.id != id {
            return Err(format!(
                "{raft_addr} is node {}, but --peers says node {id}",
                info.id
            ));
        }
        if info.initialized {
            tracing::warn!(
                peer = id,
                "peer already belongs to a cluster; not creating a new one"
            );
            return Ok(false);
        }
        members.insert(id, info.addr);
    }
    raft.initialize(members).await.map_err(|e| e.to_string())?;
    Ok(true)
}

/// A request to add a node.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AddRequest {
    /// The new node's id.
    pub id: NodeId,
    /// Its node-to-node address; its client address is asked from it.
    pub raft_addr: String,
}

/// A request to remove a node.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RemoveRequest {
    /// The node to remove.
    pub id: NodeId,
    /// Allow removing a voter even when fewer than a majority of the remaining voters
    /// are known to be healthy.
    #[serde(default)]
    pub force: bool,
}

/// A request to hand over leadership.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TransferRequest {
    /// The node that should lead.
    pub to: NodeId,
}

/// One member as `cluster status` shows it.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MemberStatus {
    /// Node id.
    pub id: NodeId,
    /// Addresses.
    pub addr: NodeAddr,
    /// Voter (counts towards quorum) or learner.
    pub voter: bool,
    /// Highest log index known replicated to it (leader's view; `None` elsewhere).
    pub matched: Option<u64>,
    /// Entries it is behind the leader's last log.
    pub lag: Option<u64>,
    /// Milliseconds since it last acknowledged the leader (leader's view only).
    pub last_ack_ms: Option<u64>,
}

/// The cluster as one node sees it.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ClusterStatus {
    /// The node answering.
    pub node: NodeId,
    /// Its Raft role.
    pub state: String,
    /// The leader it knows.
    pub leader: Option<NodeId>,
    /// Current term.
    pub term: u64,
    /// Last log index.
    pub last_log_index: Option<u64>,
    /// Committed index.
    pub committed: Option<u64>,
    /// Applied index.
    pub applied: Option<u64>,
    /// Snapshot index.
    pub snapshot: Option<u64>,
    /// Highest log index compacted away: a member behind it catches up from a snapshot.
    pub purged: Option<u64>,
    /// Members.
    pub members: Vec<MemberStatus>,
}

/// This node's view of the cluster.
pub fn status(raft: &Raft) -> ClusterStatus {
    let metrics = metrics_of(raft);
    let membership = metrics.membership_config.membership();
    let voters: BTreeSet<NodeId> = membership.voter_ids().collect();
    let last = metrics.last_log_index;
    let members = membership
        .nodes()
        .map(|(id, addr)| {
            let matched = metrics
                .replication
                .as_ref()
                .and_then(|replication| replication.get(id))
                .and_then(|log_id| log_id.as_ref().map(|log_id| log_id.index()))
                .or_else(|| {
                    (Some(*id) == metrics.current_leader)
                        .then_some(last)
                        .flatten()
                });
            MemberStatus {
                id: *id,
                addr: addr.clone(),
                voter: voters.contains(id),
                matched,
                lag: matched.zip(last).map(|(m, l)| l.saturating_sub(m)),
                last_ack_ms: metrics
                    .heartbeat
                    .as_ref()
                    .and_then(|beats| beats.get(id).cloned().flatten())
                    .map(|acked| acked.elapsed().as_millis() as u64),
            }
        })
        .collect();
    ClusterStatus {
        node: metrics.id,
        state: format!("{:?}", metrics.state),
        leader: metrics.current_leader,
        term: metrics.current_term,
        last_log_index: last,
        #[allow(deprecated)]
        committed: metrics.local_committed.as_ref().map(|id| id.index()),
        applied: metrics.last_applied.as_ref().map(|id| id.index()),
        snapshot: metrics.snapshot.as_ref().map(|id| id.index()),
        purged: metrics.purged.as_ref().map(|id| id.index()),
        members,
    }
}

async fn add_on_leader(raft: &Raft, request: &AddRequest) -> Result<String, String> {
    let client = ClusterClient::new(PeerRoutes::default()).map_err(|e| e.to_string())?;
    let info = client
        .info(&request.raft_addr, Duration::from_secs(3))
        .await
        .map_err(|e| {
            format!(
                "cannot reach node {} at {}: {e}",
                request.id, request.raft_addr
            )
        })?;
    if info.id != request.id {
        return Err(format!(
            "{} is node {}, not {}",
            request.raft_addr, info.id, request.id
        ));
    }
    // Learner first: it receives the log (or a snapshot) without counting towards the
    // quorum; `blocking` waits until it has caught up.
    bounded(
        CATCH_UP_TIMEOUT,
        "the new node to catch up",
        raft.add_learner(request.id, info.addr, true),
    )
    .await?;
    change(
        raft,
        ChangeMembers::AddVoterIds(BTreeSet::from([request.id])),
    )
    .await?;
    Ok(format!("node {} is a voter", request.id))
}

async fn remove_on_leader(raft: &Raft, request: &RemoveRequest) -> Result<String, String> {
    let metrics = metrics_of(raft);
    let membership = metrics.membership_config.membership();
    let voters: BTreeSet<NodeId> = membership.voter_ids().collect();
    if voters.contains(&request.id) {
        let remaining: BTreeSet<NodeId> = voters
            .iter()
            .copied()
            .filter(|v| *v != request.id)
            .collect();
        if remaining.is_empty() {
            return Err("cannot remove the last voter".to_string());
        }
        // Healthy = the leader itself plus followers that acknowledged recently.
        let healthy = remaining
            .iter()
            .filter(|id| {
                Some(**id) == metrics.current_leader
                    || metrics
                        .heartbeat
                        .as_ref()
                        .and_then(|beats| beats.get(*id).cloned().flatten())
                        .is_some_and(|acked| acked.elapsed() < HEALTHY_WITHIN)
            })
            .count();
        if healthy * 2 <= remaining.len() && !request.force {
            return Err(format!(
                "removing node {} leaves {} voters of which only {healthy} are known healthy: \
                 that is no quorum; use --force to remove anyway",
                request.id,
                remaining.len()
            ));
        }
        change(
            raft,
            ChangeMembers::RemoveVoters(BTreeSet::from([request.id])),
        )
        .await?;
    }
    // A removed voter may stay as a learner; drop it from the membership altogether.
    let still_member = metrics_of(raft)
        .membership_config
        .membership()
        .get_node(&request.id)
        .is_some();
    if still_member {
        change(
            raft,
            ChangeMembers::RemoveNodes(BTreeSet::from([request.id])),
        )
        .await?;
    }
    Ok(format!("node {} removed", request.id))
}

/// One membership change, bounded by [`CHANGE_TIMEOUT`].
async fn change(raft: &Raft, members: ChangeMembers<NodeId, NodeAddr>) -> Result<(), String> {
    bounded(
        CHANGE_TIMEOUT,
        "the membership change to commit",
        raft.change_membership(members, false),
    )
    .await
    .map(|_| ())
}

/// Awaits `fut` for at most `limit`, turning both its error and the timeout into a reason.
async fn bounded<T, E: std::fmt::Display>(
    limit: Duration,
    what: &str,
    fut: impl std::future::Future<Output = Result<T, E>>,
) -> Result<T, String> {
    match tokio::time::timeout(limit, fut).await {
        Ok(result) => result.map_err(|e| e.to_string()),
        Err(_) => Err(format!(
            "timed out after {} s waiting for {what} (no quorum?); it may still complete",
            limit.as_secs()
        )),
    }
}

async fn transfer_on_leader(raft: &Raft, request: &TransferRequest) -> Result<String, String> {
    raft.trigger()
        .transfer_leader(request.to)
        .await
        .map_err(|e| e.to_string())?;
    raft.wait(Some(Duration::from_secs(5)))
        .metrics(|m| m.current_leader == Some(request.to), "new leader")
        .await
        .map_err(|e| format!("leadership did not move to {}: {e}", request.to))?;
    Ok(format!("node {} leads", request.to))
}

/// Hands leadership to the most up-to-date voter before this node stops, so clients see
/// no election timeout. A no-op when this node does not lead or is alone.
pub async fn step_down(raft: &Raft) {
    let metrics = metrics_of(raft);
    if metrics.current_leader != Some(metrics.id) {
        return;
    }
    let voters: BTreeSet<NodeId> = metrics.membership_config.membership().voter_ids().collect();
    let best = metrics.replication.as_ref().and_then(|replication| {
        replication
            .iter()
            .filter(|(id, _)| **id != metrics.id && voters.contains(id))
            .max_by_key(|(_, matched)| matched.as_ref().map(|log_id| log_id.index()))
            .map(|(id, _)| *id)
    });
    if let Some(to) = best {
        tracing::info!(to, "handing leadership over before shutdown");
        if let Err(e) = transfer_on_leader(raft, &TransferRequest { to }).await {
            tracing::warn!(error = %e, "leadership handover failed");
        }
    }
}

#[derive(Clone)]
struct AdminState {
    raft: Raft,
    /// When set, changes need `Authorization: Bearer <token>`; status stays open.
    token: Option<String>,
}

impl AdminState {
    /// The refusal of a change without the admin token (when one is configured).
    fn refusal(&self, headers: &HeaderMap) -> Option<Response> {
        let token = self.token.as_ref()?;
        let given = headers
            .get(header::AUTHORIZATION)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.strip_prefix("Bearer "));
        // Compare in constant time: the token guards cluster membership.
        let matches = given.is_some_and(|given| {
            given.len() == token.len()
                && given
                    .bytes()
                    .zip(token.bytes())
                    .fold(0u8, |acc, (a, b)| acc | (a ^ b))
                    == 0
        });
        (!matches).then(|| {
            (
                StatusCode::UNAUTHORIZED,
                Json(serde_json::json!({
                    "ok": false,
                    "reason": "this cluster requires the admin token (Authorization: Bearer ...)"
                })),
            )
                .into_response()
        })
    }
}

/// The `/cluster/admin/...` routes on the node-to-node port. With `admin_token`, the
/// changes (add, remove, transfer-leader) require it as a bearer token.
pub fn router(raft: Raft, admin_token: Option<String>) -> Router {
    Router::new()
        .route(STATUS_PATH, get(status_route))
        .route(ADD_PATH, post(add_route))
        .route(REMOVE_PATH, post(remove_route))
        .route(TRANSFER_PATH, post(transfer_route))
        .with_state(AdminState {
            raft,
            token: admin_token,
        })
}

async fn status_route(State(state): State<AdminState>) -> Response {
    Json(status(&state.raft)).into_response()
}

/// Runs `op` here when this node leads, else passes the request to the leader.
async fn on_leader<Req, F, Fut>(
    state: &AdminState,
    headers: &HeaderMap,
    path: &str,
    request: Req,
    op: F,
) -> Response
where
    Req: Serialize,
    F: FnOnce(Raft, Req) -> Fut,
    Fut: std::future::Future<Output = Result<String, String>>,
{
    if let Some(refusal) = state.refusal(headers) {
        return refusal;
    }
    let raft = &state.raft;
    let answer = match known_leader(raft) {
        Some((leader, _)) if leader == metrics_of(raft).id => op(raft.clone(), request).await,
        Some((_, addr)) => forward_admin(&addr, path, &request, state.token.as_deref()).await,
        None => Err(ClusterError::NotLeader { leader: None }.to_string()),
    };
    match answer {
        Ok(message) => (
            StatusCode::OK,
            Json(serde_json::json!({ "ok": true, "message": message })),
        )
            .into_response(),
        Err(reason) => (
            StatusCode::CONFLICT,
            Json(serde_json::json!({ "ok": false, "reason": reason })),
        )
            .into_response(),
    }
}

async fn forward_admin<Req: Serialize>(
    leader: &NodeAddr,
    path: &str,
    request: &Req,
    token: Option<&str>,
) -> Result<String, String> {
    let mut call = reqwest::Client::new()
        .post(format!("http://{}{path}", leader.raft_addr))
        // The leader's own bound (catch-up) plus a margin.
        .timeout(CATCH_UP_TIMEOUT + Duration::from_secs(10))
        .json(request);
    if let Some(token) = token {
        call = call.bearer_auth(token);
    }
    let response = call
        .send()
        .await
        .map_err(|e| format!("leader at {} unreachable: {e}", leader.raft_addr))?;
    let body: serde_json::Value = response.json().await.map_err(|e| e.to_string())?;
    if body["ok"].as_bool() == Some(true) {
        Ok(body["message"].as_str().unwrap_or("done").to_string())
    } else {
        Err(body["reason"].as_str().unwrap_or("failed").to_string())
    }
}

async fn add_route(
    State(state): State<AdminState>,
    headers: HeaderMap,
    Json(request): Json<AddRequest>,
) -> Response {
    on_leader(
        &state,
        &headers,
        ADD_PATH,
        request,
        |raft, request| async move { add_on_leader(&raft, &request).await },
    )
    .await
}

async fn remove_route(
    State(state): State<AdminState>,
    headers: HeaderMap,
    Json(request): Json<RemoveRequest>,
) -> Response {
    on_leader(
        &state,
        &headers,
        REMOVE_PATH,
        request,
        |raft, request| async move { remove_on_leader(&raft, &request).await },
    )
    .await
}

async fn transfer_route(
    State(state): State<AdminState>,
    headers: HeaderMap,
    Json(request): Json<TransferRequest>,
) -> Response {
    on_leader(
        &state,
        &headers,
        TRANSFER_PATH,
        request,
        |raft, request| async move { transfer_on_leader(&raft, &request).await },
    )
    .await
}
