//! The admin API's messages (`/cluster/admin/...` on the node-to-node port), one type per
//! message, used by both the server ([`super`]) and the client ([`super::client`]).

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::raft::{NodeAddr, NodeId};

/// Add a node (learner first, voter once caught up).
pub const ADD_PATH: &str = "/cluster/admin/add";
/// Remove a node.
pub const REMOVE_PATH: &str = "/cluster/admin/remove";
/// Hand leadership to a node.
pub const TRANSFER_PATH: &str = "/cluster/admin/transfer-leader";
/// Admit a node's data dir into a cluster (see `raft/identity.rs`): sent by the
/// node that creates the cluster, and by the leader before it adds a node.
pub const ADMIT_PATH: &str = "/cluster/admin/admit";
/// The cluster as this node sees it.
pub const STATUS_PATH: &str = "/cluster/admin/status";
/// Chaos builds only: the crash points armed on this node (`GET`); `PUT` and `DELETE` on
/// `{FAILPOINTS_PATH}/{name}` arm (the body is a `fail` action such as `panic` or
/// `1*off->panic`) and clear one. Behind the admin token like the changes. Other builds
/// answer 404.
pub const FAILPOINTS_PATH: &str = "/debug/failpoints";

/// The answer of every admin change: `{"ok": true, "message": …}` (HTTP 200) or
/// `{"ok": false, "reason": …}` (HTTP 409, or 401 without the admin token).
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
    pub fn from_result<E: std::fmt::Display>(result: Result<String, E>) -> AdminAnswer {
        match result {
            Ok(message) => AdminAnswer {
                ok: true,
                message: Some(message),
                reason: None,
            },
            Err(reason) => AdminAnswer::refused(reason.to_string()),
        }
    }

    /// A refusal with `reason`.
    pub fn refused(reason: impl Into<String>) -> AdminAnswer {
        AdminAnswer {
            ok: false,
            message: None,
            reason: Some(reason.into()),
        }
    }

    /// The outcome it reports: the message, or the reason it was refused.
    pub fn into_result(self) -> Result<String, String> {
        if self.ok {
            Ok(self.message.unwrap_or_else(|| "done".to_string()))
        } else {
            Err(self.reason.unwrap_or_else(|| "refused".to_string()))
        }
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
    /// Snapshots this process received from a leader and installed since it started.
    #[serde(default)]
    pub snapshots_installed: u64,
    /// Snapshots this process built from its own ledger since it started.
    #[serde(default)]
    pub snapshots_built: u64,
    /// Members.
    pub members: Vec<MemberStatus>,
}
