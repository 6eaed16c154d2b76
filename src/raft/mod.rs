//! openraft glue: the type configuration, the RocksDB log and state-machine stores, the
//! node-to-node transport (codec, client, server routes, the clock and admission headers
//! every peer message carries, peer routes) and the node's lifecycle. Cluster behaviour
//! built on top (forwarding, batching, membership) lives in [`crate::cluster`]. See
//! `DESIGN.md` beside this file for the reasoning.

pub(crate) mod clock;
pub(crate) mod codec;
pub(crate) mod identity;
pub(crate) mod log_repair;
pub mod log_store;
pub(crate) mod network;
pub(crate) mod node;
pub(crate) mod peer_api;
pub(crate) mod recent_entries;
pub mod routes;
pub mod state_machine;
#[cfg(test)]
pub(crate) mod test_types;

pub use identity::IdentityError;
pub use node::NodeError;

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::state::{Command, Outcome};

/// A node's id in the cluster.
pub type NodeId = u64;

/// Where a node can be reached. Stored in the membership, so every node learns every
/// other node's addresses through the log.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeAddr {
    /// `host:port` of the node-to-node Raft endpoint.
    pub raft_addr: String,
    /// `host:port` of the client endpoint (`/licenses`).
    pub api_addr: String,
}

impl fmt::Display for NodeAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "raft={} api={}", self.raft_addr, self.api_addr)
    }
}

openraft::declare_raft_types!(
    /// The Raft types of `licensed`: log payloads are ledger commands.
    pub TypeConfig:
        D = Command,
        R = Outcome,
        NodeId = NodeId,
        Node = NodeAddr,
);

/// The Raft handle with our state machine.
pub type Raft = openraft::Raft<TypeConfig, state_machine::LedgerStore>;

/// The node's current Raft metrics (leader, term, indexes).
pub fn metrics_of(raft: &Raft) -> openraft::RaftMetrics<TypeConfig> {
    use openraft::async_runtime::WatchReceiver;
    raft.metrics().borrow_watched().clone()
}
