//! Cluster membership: static bootstrap from `--peers`, `--join` of a running cluster,
//! and the admin operations (`status`, `add`, `remove`, `transfer-leader`).
//!
//! Membership changes run on the leader. Any node accepts them on `/cluster/admin/...`
//! (JSON, node-to-node port) and passes them to the leader.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use openraft::{ChangeMembers, Instant as _};
use serde::{Deserialize, Serialize};

use super::cluster::{known_leader, ClusterClient, ClusterError};
use super::{metrics_of, NodeAddr, NodeId, Raft};

/// Add a node (learner first, voter once caught up).
pub const ADD_PATH: &str = "/cluster/admin/add";
/// Remove a node.
pub const REMOVE_PATH: &str = "/cluster/admin/remove";
/// Hand leadership to a node.
pub const TRANSFER_PATH: &str = "/cluster/admin/transfer-leader";
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
    let client = ClusterClient::new().map_err(|e| e.to_string())?;
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
        members,
    }
}

async fn add_on_leader(raft: &Raft, request: &AddRequest) -> Result<String, String> {
    let client = ClusterClient::new().map_err(|e| e.to_string())?;
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
    raft.add_learner(request.id, info.addr, true)
        .await
        .map_err(|e| e.to_string())?;
    raft.change_membership(
        ChangeMembers::AddVoterIds(BTreeSet::from([request.id])),
        false,
    )
    .await
    .map_err(|e| e.to_string())?;
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
        raft.change_membership(
            ChangeMembers::RemoveVoters(BTreeSet::from([request.id])),
            false,
        )
        .await
        .map_err(|e| e.to_string())?;
    }
    // A removed voter may stay as a learner; drop it from the membership altogether.
    let still_member = metrics_of(raft)
        .membership_config
        .membership()
        .get_node(&request.id)
        .is_some();
    if still_member {
        raft.change_membership(
            ChangeMembers::RemoveNodes(BTreeSet::from([request.id])),
            false,
        )
        .await
        .map_err(|e| e.to_string())?;
    }
    Ok(format!("node {} removed", request.id))
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
}

/// The `/cluster/admin/...` routes on the node-to-node port.
pub fn router(raft: Raft) -> Router {
    Router::new()
        .route(STATUS_PATH, get(status_route))
        .route(ADD_PATH, post(add_route))
        .route(REMOVE_PATH, post(remove_route))
        .route(TRANSFER_PATH, post(transfer_route))
        .with_state(AdminState { raft })
}

async fn status_route(State(state): State<AdminState>) -> Response {
    Json(status(&state.raft)).into_response()
}

/// Runs `op` here when this node leads, else passes the request to the leader.
async fn on_leader<Req, F, Fut>(raft: &Raft, path: &str, request: Req, op: F) -> Response
where
    Req: Serialize,
    F: FnOnce(Raft, Req) -> Fut,
    Fut: std::future::Future<Output = Result<String, String>>,
{
    let answer = match known_leader(raft) {
        Some((leader, _)) if leader == metrics_of(raft).id => op(raft.clone(), request).await,
        Some((_, addr)) => forward_admin(&addr, path, &request).await,
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
) -> Result<String, String> {
    let response = reqwest::Client::new()
        .post(format!("http://{}{path}", leader.raft_addr))
        .timeout(Duration::from_secs(60))
        .json(request)
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

async fn add_route(State(state): State<AdminState>, Json(request): Json<AddRequest>) -> Response {
    on_leader(&state.raft, ADD_PATH, request, |raft, request| async move {
        add_on_leader(&raft, &request).await
    })
    .await
}

async fn remove_route(
    State(state): State<AdminState>,
    Json(request): Json<RemoveRequest>,
) -> Response {
    on_leader(
        &state.raft,
        REMOVE_PATH,
        request,
        |raft, request| async move { remove_on_leader(&raft, &request).await },
    )
    .await
}

async fn transfer_route(
    State(state): State<AdminState>,
    Json(request): Json<TransferRequest>,
) -> Response {
    on_leader(
        &state.raft,
        TRANSFER_PATH,
        request,
        |raft, request| async move { transfer_on_leader(&raft, &request).await },
    )
    .await
}
