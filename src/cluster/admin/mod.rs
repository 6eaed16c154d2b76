//! The admin API on the node-to-node port (`/cluster/admin/...`): `status`, `add`,
//! `remove`, `transfer-leader` and `admit`. One file per operation (`for_clients` offers
//! the status and a leadership transfer to the client API); the messages are in
//! [`messages`], the client (used by `licensectl`, by joining nodes and by followers
//! passing a change to the leader) in [`client`].
//!
//! Membership changes run on the leader. Any node accepts them and passes them on.

mod add;
pub mod client;
pub mod error;
#[cfg(feature = "failpoints")]
pub mod failpoints;
mod for_clients;
pub mod messages;
mod remove;
mod status;
mod transfer;

use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use openraft::ChangeMembers;
use serde::Serialize;

use crate::borrow::return_token::constant_time_eq;
use crate::cluster::forward::{known_leader, ClusterError};
use crate::raft::identity::IdentityStore;
use crate::raft::node::Node;
use crate::raft::routes::PeerRoutes;
use crate::raft::state_machine::SnapshotCounters;
use crate::raft::{metrics_of, NodeAddr, NodeId, Raft};
use crate::transport::peer::PeerDialer;

pub use client::{AdminClient, AdminError};
pub use error::MembershipError;
pub use for_clients::{cluster_views, transfer_leadership, ClusterViews};
pub use messages::*;
pub use status::status;
pub use transfer::step_down;

/// Bound on one membership change (joint consensus needs a quorum of old and new voters);
/// without it an admin call against a cluster that lost its quorum would hang.
const CHANGE_TIMEOUT: Duration = Duration::from_secs(30);
/// Bound on a new learner catching up (it may need a whole snapshot).
const CATCH_UP_TIMEOUT: Duration = Duration::from_secs(120);
/// Bound on an admin call to another node: the leader's own bound (a learner catching
/// up) plus a margin.
pub const ADMIN_CALL_TIMEOUT: Duration = Duration::from_secs(CATCH_UP_TIMEOUT.as_secs() + 10);
/// How long a change asked during an election waits for a leader before it is refused:
/// several election timeouts, so a change asked right after a leadership transfer or a
/// leader's crash finds the new leader instead of failing.
const LEADER_WAIT: Duration = Duration::from_secs(10);

#[derive(Clone)]
struct AdminState {
    raft: Raft,
    /// When set, changes need `Authorization: Bearer <token>`; status stays open.
    token: Option<String>,
    /// `--peer-route`: how to dial the leader and new members.
    routes: PeerRoutes,
    /// This node's cluster and admission.
    identity: Arc<IdentityStore>,
    /// Snapshots built and installed since start, for the status.
    snapshots: Arc<SnapshotCounters>,
    /// How to dial the leader and new members.
    dialer: PeerDialer,
}

impl AdminState {
    /// The admin API of `node`; changes need `token` when it is set.
    fn new(node: &Node, token: Option<String>) -> AdminState {
        AdminState {
            raft: node.raft.clone(),
            token,
            routes: node.routes.clone(),
            identity: node.identity.clone(),
            snapshots: node.snapshots.clone(),
            dialer: node.dialer.clone(),
        }
    }

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
            let answer = AdminAnswer::refused(
                "this cluster requires the admin token (Authorization: Bearer ...)",
            );
            (StatusCode::UNAUTHORIZED, Json(answer)).into_response()
        })
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

/// The `/cluster/admin/...` routes on the node-to-node port. With `admin_token`, the
/// changes (add, remove, transfer-leader, admit) require it as a bearer token. Chaos
/// builds add [`FAILPOINTS_PATH`], behind the token too.
pub fn router(node: &Node, admin_token: Option<String>) -> Router {
    let router = Router::new()
        .route(STATUS_PATH, get(status_route))
        .route(ADMIT_PATH, post(admit_route))
        .route(ADD_PATH, post(add_route))
        .route(REMOVE_PATH, post(remove_route))
        .route(TRANSFER_PATH, post(transfer_route));
    #[cfg(feature = "failpoints")]
    let router = router.route(FAILPOINTS_PATH, get(failpoints::list)).route(
        &format!("{FAILPOINTS_PATH}/{{name}}"),
        axum::routing::put(failpoints::arm).delete(failpoints::clear),
    );
    router.with_state(AdminState::new(node, admin_token))
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
        Err(MembershipError::NotThisNode {
            me,
            asked: request.node_id,
        })
    } else {
        state
            .identity
            .admit(request.cluster_id)
            .map(|()| format!("node {me} admitted into cluster {}", request.cluster_id))
            .map_err(MembershipError::from)
    };
    AdminAnswer::from_result(answer).into_response()
}

async fn status_route(State(state): State<AdminState>) -> Response {
    Json(status(&state.raft, &state.snapshots)).into_response()
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
        |_, request| async move { add::add_on_leader(&add_state, &request).await },
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
        |raft, request| async move { remove::remove_on_leader(&raft, &request).await },
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
        |raft, request| async move { transfer::transfer_on_leader(&raft, &request).await },
    )
    .await
}

/// Runs `op` here when this node leads, else passes the request to the leader; the
/// answer carries the outcome. Refused without the admin token (when one is configured).
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
    Fut: std::future::Future<Output = Result<String, MembershipError>>,
{
    if let Some(refusal) = state.refusal(headers) {
        return refusal;
    }
    AdminAnswer::from_result(run_on_leader(state, path, request, op).await).into_response()
}

/// Runs `op` here when this node leads, else sends `request` to the leader's `path`
/// (with this node's admin token and peer credentials).
async fn run_on_leader<Req, F, Fut>(
    state: &AdminState,
    path: &str,
    request: Req,
    op: F,
) -> Result<String, MembershipError>
where
    Req: Serialize,
    F: FnOnce(Raft, Req) -> Fut,
    Fut: std::future::Future<Output = Result<String, MembershipError>>,
{
    let raft = &state.raft;
    match wait_for_leader(raft).await {
        Some((leader, _)) if leader == metrics_of(raft).id => op(raft.clone(), request).await,
        Some((leader, addr)) => {
            let leader_addr = state.routes.resolve(leader, &addr.raft_addr);
            let answer = async {
                AdminClient::new(leader_addr, state.token.clone())?
                    .with_dialer(&state.dialer)?
                    .post(path, &request, ADMIN_CALL_TIMEOUT)
                    .await
            };
            answer.await.map_err(|source| MembershipError::Remote {
                node: format!("leader at {leader_addr}"),
                source,
            })
        }
        None => Err(ClusterError::NotLeader { leader: None }.into()),
    }
}

/// The leader this node knows, waiting up to [`LEADER_WAIT`] for one while an election
/// is under way (a node learns of a new leader only from its first message).
async fn wait_for_leader(raft: &Raft) -> Option<(NodeId, NodeAddr)> {
    if let Some(leader) = known_leader(raft) {
        return Some(leader);
    }
    // A leader that is no longer a member (it just removed itself) counts as none. A
    // timeout leaves the answer "no leader", which the caller reports.
    let _ = raft
        .wait(Some(LEADER_WAIT))
        .metrics(
            |m| {
                m.current_leader
                    .is_some_and(|l| m.membership_config.membership().get_node(&l).is_some())
            },
            "a known leader that is a member",
        )
        .await;
    known_leader(raft)
}

/// One membership change, bounded by [`CHANGE_TIMEOUT`].
async fn change(
    raft: &Raft,
    members: ChangeMembers<NodeId, NodeAddr>,
) -> Result<(), MembershipError> {
    bounded(
        CHANGE_TIMEOUT,
        "the membership change to commit",
        raft.change_membership(members, false),
    )
    .await
    .map(|_| ())
}

/// Awaits `fut` for at most `limit`, turning both its error and the timeout into a
/// [`MembershipError`].
async fn bounded<T, E: std::fmt::Display>(
    limit: Duration,
    what: &'static str,
    fut: impl std::future::Future<Output = Result<T, E>>,
) -> Result<T, MembershipError> {
    match tokio::time::timeout(limit, fut).await {
        Ok(result) => result.map_err(MembershipError::raft),
        Err(_) => Err(MembershipError::Timeout {
            what,
            secs: limit.as_secs(),
        }),
    }
}
