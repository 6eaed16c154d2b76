//! Why a membership operation was refused or failed: the reason an admin answer carries.

use uuid::Uuid;

use super::client::AdminError;
use crate::cluster::forward::ClusterError;
use crate::raft::identity::IdentityError;
use crate::raft::NodeId;

/// Why a membership operation (form, join, add, remove, transfer, admit) did not happen.
#[derive(Debug, thiserror::Error)]
pub enum MembershipError {
    /// The node to add or contact did not answer.
    #[error("cannot reach node {id} at {addr}: {reason}")]
    Unreachable {
        /// The node.
        id: NodeId,
        /// Its Raft address.
        addr: String,
        /// The transport error.
        reason: String,
    },
    /// The address answers as another node than the one named.
    #[error("{addr} is node {actual}, not node {expected}")]
    WrongNode {
        /// The address asked.
        addr: String,
        /// Who answered.
        actual: NodeId,
        /// Who was meant.
        expected: NodeId,
    },
    /// The node to add belongs to another cluster.
    #[error("node {id} belongs to another cluster ({theirs}); this is cluster {ours}")]
    OtherCluster {
        /// The node.
        id: NodeId,
        /// Its cluster.
        theirs: Uuid,
        /// This cluster.
        ours: Uuid,
    },
    /// An admit request meant for another node.
    #[error("this is node {me}, not node {asked}")]
    NotThisNode {
        /// This node.
        me: NodeId,
        /// The node the request names.
        asked: NodeId,
    },
    /// The only voter cannot be removed.
    #[error("cannot remove the last voter")]
    LastVoter,
    /// Removing the voter would leave no healthy quorum (and `force` was not given).
    #[error(
        "removing node {id} leaves {remaining} voters of which only {healthy} are known healthy: \
         that is no quorum; use --force to remove anyway"
    )]
    WouldLoseQuorum {
        /// The voter to remove.
        id: NodeId,
        /// Voters left after it.
        remaining: usize,
        /// Of those, the ones known healthy.
        healthy: usize,
    },
    /// A node came back with an empty data dir and its old incarnation cannot be removed.
    #[error("node {id} lost its data; its old incarnation cannot be removed yet: {source}")]
    OldIncarnation {
        /// The node.
        id: NodeId,
        /// Why the removal failed.
        source: Box<MembershipError>,
    },
    /// A bounded wait ran out.
    #[error("timed out after {secs} s waiting for {what} (no quorum?); it may still complete")]
    Timeout {
        /// What was awaited.
        what: &'static str,
        /// The bound.
        secs: u64,
    },
    /// Leadership can only go to a voter.
    #[error("node {0} is not a voter of this cluster: leadership can only go to a voter")]
    NotAVoter(NodeId),
    /// Leadership did not reach the requested node.
    #[error("leadership did not move to {to}: {reason}")]
    TransferFailed {
        /// The requested leader.
        to: NodeId,
        /// Why.
        reason: String,
    },
    /// openraft refused or failed the operation.
    #[error("{0}")]
    Raft(String),
    /// This node's admission record could not be changed.
    #[error(transparent)]
    Identity(#[from] IdentityError),
    /// No leader is known, or a cluster call failed.
    #[error(transparent)]
    Cluster(#[from] ClusterError),
    /// Another node's admin API refused or failed the call.
    #[error("{node}: {source}")]
    Remote {
        /// Which node and why it was asked (e.g. "leader at 127.0.0.1:22023").
        node: String,
        /// Its answer.
        source: AdminError,
    },
    /// `--peers` names a node that answers as another.
    #[error("{addr} is node {actual}, but --peers says node {expected}")]
    PeersMismatch {
        /// The address in `--peers`.
        addr: String,
        /// Who answered.
        actual: NodeId,
        /// The id `--peers` gives it.
        expected: NodeId,
    },
    /// This node waits to be admitted by the creator of the cluster.
    #[error(
        "node {0} is not admitted yet: waiting for the lowest id of --peers to create the cluster"
    )]
    NotAdmitted(NodeId),
}

impl MembershipError {
    /// Wraps openraft's error.
    pub fn raft(error: impl std::fmt::Display) -> MembershipError {
        MembershipError::Raft(error.to_string())
    }
}
