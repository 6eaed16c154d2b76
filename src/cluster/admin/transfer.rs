//! Handing leadership over: on request, and before a leader stops.

use std::collections::BTreeSet;
use std::time::Duration;

use super::error::MembershipError;
use super::messages::TransferRequest;
use crate::raft::{metrics_of, NodeId, Raft};

/// Hands leadership to the requested node, on this node, the leader.
pub(super) async fn transfer_on_leader(
    raft: &Raft,
    request: &TransferRequest,
) -> Result<String, MembershipError> {
    if metrics_of(raft).current_leader == Some(request.to) {
        return Ok(format!("node {} leads already", request.to));
    }
    raft.trigger()
        .transfer_leader(request.to)
        .await
        .map_err(MembershipError::raft)?;
    raft.wait(Some(Duration::from_secs(5)))
        .metrics(|m| m.current_leader == Some(request.to), "new leader")
        .await
        .map_err(|e| MembershipError::TransferFailed {
            to: request.to,
            reason: e.to_string(),
        })?;
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
