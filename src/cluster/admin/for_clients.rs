//! The part of cluster administration the client API offers (JSON-RPC
//! `GetClusterStatusV1` and `TransferLeadershipV1`): a browser or script reaches one node
//! only, so that node asks the leader for its view, and passes a transfer on, over the
//! node-to-node port.

use serde::Serialize;

use super::messages::{ClusterStatus, TransferRequest, TRANSFER_PATH};
use super::{run_on_leader, status, transfer, AdminClient, AdminState, MembershipError};
use crate::cluster::forward::known_leader;
use crate::raft::node::Node;
use crate::raft::{metrics_of, NodeId};

/// The cluster as the answering node sees it, and as its leader does (only the leader
/// knows every member's replication progress).
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ClusterViews {
    /// The node that answered.
    pub served_by: NodeId,
    /// Its own view.
    pub node: ClusterStatus,
    /// The leader's view; absent when there is no leader or it did not answer.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub leader: Option<ClusterStatus>,
    /// Why the leader's view is absent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub leader_error: Option<String>,
}

/// This node's view of the cluster and the leader's, asked over the node-to-node port.
pub async fn cluster_views(node: &Node) -> ClusterViews {
    let own = status(&node.raft, &node.snapshots);
    let (leader, leader_error) = match known_leader(&node.raft) {
        Some((leader, _)) if leader == node.id => (Some(own.clone()), None),
        Some((leader, addr)) => {
            let leader_addr = node.routes.resolve(leader, &addr.raft_addr);
            let asked = async {
                AdminClient::new(leader_addr, None)?
                    .with_dialer(&node.dialer)?
                    .status()
                    .await
            };
            match asked.await {
                Ok(view) => (Some(view), None),
                Err(e) => (None, Some(format!("leader {leader}: {e}"))),
            }
        }
        None => (None, Some("no known leader".to_string())),
    };
    ClusterViews {
        served_by: node.id,
        node: own,
        leader,
        leader_error,
    }
}

/// Hands leadership to voter `to`, through whichever node leads. `admin_token` is this
/// node's own (`--admin-token`), which the leader's admin API asks of a passed-on change.
pub async fn transfer_leadership(
    node: &Node,
    admin_token: Option<String>,
    to: NodeId,
) -> Result<String, MembershipError> {
    let is_voter = metrics_of(&node.raft)
        .membership_config
        .membership()
        .voter_ids()
        .any(|id| id == to);
    if !is_voter {
        return Err(MembershipError::NotAVoter(to));
    }
    let state = AdminState::new(node, admin_token);
    run_on_leader(
        &state,
        TRANSFER_PATH,
        TransferRequest { to },
        |raft, request| async move { transfer::transfer_on_leader(&raft, &request).await },
    )
    .await
}
