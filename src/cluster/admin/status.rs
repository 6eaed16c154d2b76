//! `cluster status`: the membership, roles, replication progress and log indexes as this
//! node sees them (the leader's view has each member's progress).

use std::collections::BTreeSet;

use openraft::Instant as _;

use super::messages::{ClusterStatus, MemberStatus};
use crate::raft::state_machine::SnapshotCounters;
use crate::raft::{metrics_of, NodeId, Raft};

/// This node's view of the cluster, with the snapshots this process built and installed.
pub fn status(raft: &Raft, snapshots: &SnapshotCounters) -> ClusterStatus {
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
        snapshots_installed: snapshots.installed(),
        snapshots_built: snapshots.built(),
        members,
    }
}
