//! Cluster membership: static bootstrap from `--peers`, `--join` of a running cluster,
//! and the admin operations (`status`, `add`, `remove`, `transfer-leader`).
//!
//! Membership changes run on the leader. Any node accepts them on `/cluster/admin/...`
//! (JSON, node-to-node port) and passes them to the leader.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use openraft::{ChangeMembers, Instant as _};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::borrow::return_token::constant_time_eq;

use super::cluster::{known_leader, ClusterClient, ClusterError};
use super::identity::IdentityStore;
use super::node::Node;
use super::routes::PeerRoutes;
use super::{metrics_of, NodeAddr, NodeId, Raft};

/// Add a node (learner first, voter once caught up).
pub const ADD_PATH: &str = "/cluster/admin/add";
/// Remove a node.
pub const REMOVE_PATH: &str = "/cluster/admin/remove";
/// Hand leadership to a node.
pub const TRANSFER_PATH: &str = "/cluster/admin/transfer-leader";
/// Admit a node's data dir into a cluster (see [`super::identity`]): sent by the node that
/// creates the cluster, and by the leader before it adds a node.
pub const ADMIT_PATH: &str = "/cluster/admin/admit";
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
    node: &Node,
    my_addr: &NodeAddr,
    peers: &BTreeMap<NodeId, String>,
    admin_token: Option<&str>,
    patience: Duration,
) -> Result<bool, String> {
    let (raft, my_id, routes) = (&node.raft, node.id, &node.routes);
    if raft.is_initialized().await.map_err(|e| e.to_string())? {
        return Ok(false);
    }
    if peers.keys().next() != Some(&my_id) {
        // Another node creates the cluster; this one waits to be contacted.
        return Ok(false);
    }
    let client = ClusterClient::new(routes.clone()).map_err(|e| e.to_string())?;
    let deadline = tokio::time::Instant::now() + patience;
    let mut members = BTreeMap::new();
    for (&id, raft_addr) in peers {
        if id == my_id {
            members.insert(id, (my_addr.clone(), my_addr.raft_addr.clone()));
            continue;
        }
        let raft_addr = routes.resolve(id, raft_addr);
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
        members.insert(id, (info.addr, raft_addr.to_string()));
    }
    // Admit every member's data dir into the new cluster first: until then they refuse
    // Raft traffic. A retry after a crash reuses the id this node kept.
    let cluster_id = node.identity.get().cluster_id.unwrap_or_else(Uuid::new_v4);
    node.identity.admit(cluster_id).map_err(|e| e.to_string())?;
    for (&id, (_, raft_addr)) in members.iter().filter(|(id, _)| **id != my_id) {
        admit_remote(raft_addr, id, cluster_id, admin_token).await?;
    }
    let members = members
        .into_iter()
        .map(|(id, (addr, _))| (id, addr))
        .collect::<BTreeMap<_, _>>();
    raft.initialize(members).await.map_err(|e| e.to_string())?;
    Ok(true)
}

/// The first peer of `peers` that belongs to a running cluster: where a node that is not
/// admitted (new, or back on an empty data dir) asks to be added.
pub async fn find_cluster(
    node: &Node,
    peers: &BTreeMap<NodeId, String>,
) -> Result<Option<String>, String> {
    let client = ClusterClient::new(node.routes.clone()).map_err(|e| e.to_string())?;
    for (&id, raft_addr) in peers.iter().filter(|(id, _)| **id != node.id) {
        let raft_addr = node.routes.resolve(id, raft_addr);
        if let Ok(info) = client.info(raft_addr, Duration::from_secs(2)).await {
            if info.initialized {
                return Ok(Some(raft_addr.to_string()));
            }
        }
    }
    Ok(None)
}

/// The answer of every admin call: `{"ok": true, "message": …}` or
/// `{"ok": false, "reason": …}` (HTTP 409).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AdminAnswer {
    /// Whether it was done.
    pub ok: bool,
    /// What was done.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// Why not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

impl AdminAnswer {
    /// The answer for an outcome.
    pub fn from_result(result: Result<String, String>) -> AdminAnswer {
        match result {
            Ok(message) => AdminAnswer {
                ok: true,
                message: Some(message),
                reason: None,
            },
            Err(reason) => AdminAnswer {
                ok: false,
                message: None,
                reason: Some(reason),
            },
        }
    }

    /// The outcome it reports.
    pub fn into_result(self) -> Result<String, String> {
        if self.ok {
            Ok(self.message.unwrap_or_else(|| "done".to_string()))
        } else {
            Err(self.reason.unwrap_or_else(|| "refused".to_string()))
        }
    }

    /// Reads an answer from an HTTP response.
    pub async fn read(response: reqwest::Response) -> Result<AdminAnswer, String> {
        let status = response.status();
        response
            .json()
            .await
            .map_err(|e| format!("HTTP {status} without an admin answer: {e}"))
    }
}

impl IntoResponse for AdminAnswer {
    fn into_response(self) -> Response {
        let status = if self.ok {
            StatusCode::OK
        } else {
            StatusCode::CONFLICT
        };
        (status, Json(self)).into_response()
    }
}

/// A request to admit a node's data dir into a cluster.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AdmitRequest {
    /// The node meant (refused by any other).
    pub node_id: NodeId,
    /// The cluster.
    pub cluster_id: Uuid,
}

/// Admits node `id` at `raft_addr` into `cluster_id`.
async fn admit_remote(
    raft_addr: &str,
    id: NodeId,
    cluster_id: Uuid,
    token: Option<&str>,
) -> Result<(), String> {
    let request = AdmitRequest {
        node_id: id,
        cluster_id,
    };
    post_admin(
        raft_addr,
        ADMIT_PATH,
        &request,
        token,
        Duration::from_secs(10),
    )
    .await
    .map(|_| ())
    .map_err(|reason| format!("admitting node {id} at {raft_addr}: {reason}"))
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

async fn add_on_leader(state: &AdminState, request: &AddRequest) -> Result<String, String> {
    let (raft, routes) = (&state.raft, &state.routes);
    let target = routes.resolve(request.id, &request.raft_addr);
    let client = ClusterClient::new(routes.clone()).map_err(|e| e.to_string())?;
    let info = client
        .info(target, Duration::from_secs(3))
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
    // This cluster's id; a leader from before identities makes one now (the others learn
    // it from its Raft requests).
    let cluster_id = state.identity.get().cluster_id.unwrap_or_else(Uuid::new_v4);
    state
        .identity
        .admit(cluster_id)
        .map_err(|e| e.to_string())?;
    if let Some(theirs) = info.cluster_id.filter(|theirs| *theirs != cluster_id) {
        return Err(format!(
            "node {} belongs to another cluster ({theirs}); this is cluster {cluster_id}",
            request.id
        ));
    }
    let is_member = metrics_of(raft)
        .membership_config
        .membership()
        .get_node(&request.id)
        .is_some();
    if is_member && info.admitted {
        return Ok(format!("node {} is already a member", request.id));
    }
    if is_member {
        // The id is a member, but this data dir is not the one that was: an empty data
        // dir (lost disk or volume). It must not count as the old voter, whose log it
        // lacks: remove the old incarnation first (this needs a quorum of the others).
        tracing::warn!(
            node = request.id,
            "node came back with an empty data dir; removing its old incarnation before adding it again"
        );
        remove_on_leader(
            raft,
            &RemoveRequest {
                id: request.id,
                force: false,
            },
        )
        .await
        .map_err(|reason| {
            format!(
                "node {} lost its data; its old incarnation cannot be removed yet: {reason}",
                request.id
            )
        })?;
    }
    admit_remote(target, request.id, cluster_id, state.token.as_deref()).await?;
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
    /// `--peer-route`: how to dial the leader and new members.
    routes: PeerRoutes,
    /// This node's cluster and admission.
    identity: Arc<IdentityStore>,
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
        let matches =
            given.is_some_and(|given| constant_time_eq(given.as_bytes(), token.as_bytes()));
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
pub fn router(node: &Node, admin_token: Option<String>) -> Router {
    Router::new()
        .route(STATUS_PATH, get(status_route))
        .route(ADMIT_PATH, post(admit_route))
        .route(ADD_PATH, post(add_route))
        .route(REMOVE_PATH, post(remove_route))
        .route(TRANSFER_PATH, post(transfer_route))
        .with_state(AdminState {
            raft: node.raft.clone(),
            token: admin_token,
            routes: node.routes.clone(),
            identity: node.identity.clone(),
        })
}

/// Admits this node's data dir into a cluster: from the node creating the cluster, or
/// the leader about to add this node.
async fn admit_route(
    State(state): State<AdminState>,
    headers: HeaderMap,
    Json(request): Json<AdmitRequest>,
) -> Response {
    if let Some(refusal) = state.refusal(&headers) {
        return refusal;
    }
    let me = metrics_of(&state.raft).id;
    let answer = if request.node_id != me {
        Err(format!("this is node {me}, not node {}", request.node_id))
    } else {
        state
            .identity
            .admit(request.cluster_id)
            .map(|()| format!("node {me} admitted into cluster {}", request.cluster_id))
            .map_err(|e| e.to_string())
    };
    AdminAnswer::from_result(answer).into_response()
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
        Some((leader, addr)) => {
            let leader_addr = state.routes.resolve(leader, &addr.raft_addr);
            forward_admin(leader_addr, path, &request, state.token.as_deref()).await
        }
        None => Err(ClusterError::NotLeader { leader: None }.to_string()),
    };
    AdminAnswer::from_result(answer).into_response()
}

async fn forward_admin<Req: Serialize>(
    leader_addr: &str,
    path: &str,
    request: &Req,
    token: Option<&str>,
) -> Result<String, String> {
    // The leader's own bound (catch-up) plus a margin.
    post_admin(leader_addr, path, request, token, ADMIN_CALL_TIMEOUT)
        .await
        .map_err(|e| format!("leader at {leader_addr}: {e}"))
}

/// Bound on an admin call to another node: the leader's own bound (a learner catching
/// up) plus a margin.
pub const ADMIN_CALL_TIMEOUT: Duration = Duration::from_secs(CATCH_UP_TIMEOUT.as_secs() + 10);

/// POSTs an admin request (JSON, with the admin token when there is one) to the node at
/// `raft_addr` and returns its answer's message or reason.
pub async fn post_admin<Req: Serialize>(
    raft_addr: &str,
    path: &str,
    request: &Req,
    token: Option<&str>,
    timeout: Duration,
) -> Result<String, String> {
    let mut call = reqwest::Client::new()
        .post(format!("http://{raft_addr}{path}"))
        .timeout(timeout)
        .json(request);
    if let Some(token) = token {
        call = call.bearer_auth(token);
    }
    let response = call.send().await.map_err(|e| format!("unreachable: {e}"))?;
    AdminAnswer::read(response).await?.into_result()
}

async fn add_route(
    State(state): State<AdminState>,
    headers: HeaderMap,
    Json(request): Json<AddRequest>,
) -> Response {
    let add_state = state.clone();
    on_leader(
        &state,
        &headers,
        ADD_PATH,
        request,
        |_, request| async move { add_on_leader(&add_state, &request).await },
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
