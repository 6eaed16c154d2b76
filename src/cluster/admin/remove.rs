//! Removing a node: refused when the voters left would have no healthy quorum, unless
//! forced; a removed voter is dropped from the membership altogether.

use std::collections::BTreeSet;
use std::time::Duration;

use openraft::{ChangeMembers, Instant as _};

use super::change;
use super::error::MembershipError;
use super::messages::RemoveRequest;
use crate::raft::{metrics_of, NodeId, Raft};

/// A follower that acknowledged the leader this recently counts as healthy.
const HEALTHY_WITHIN: Duration = Duration::from_secs(1);

/// How long a removal that looks like it would lose the quorum waits for acknowledgements
/// before it is refused: right after a membership change (the previous removal, say) the
/// leader has not yet heard from every follower under the new configuration.
const HEALTH_GRACE: Duration = Duration::from_secs(2);
/// How often the leader's view of its followers is read again meanwhile.
const HEALTH_POLL: Duration = Duration::from_millis(100);

/// How many of `remaining` are healthy: the leader itself plus the followers that
/// acknowledged it within [`HEALTHY_WITHIN`].
fn healthy_among(raft: &Raft, remaining: &BTreeSet<NodeId>) -> usize {
    let metrics = metrics_of(raft);
    remaining
        .iter()
        .filter(|id| {
            Some(**id) == metrics.current_leader
                || metrics
                    .heartbeat
                    .as_ref()
                    .and_then(|beats| beats.get(*id).cloned().flatten())
                    .is_some_and(|acked| acked.elapsed() < HEALTHY_WITHIN)
        })
        .count()
}

/// Removes the node on this node, the leader.
pub(super) async fn remove_on_leader(
    raft: &Raft,
    request: &RemoveRequest,
) -> Result<String, MembershipError> {
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
            return Err(MembershipError::LastVoter);
        }
        let deadline = tokio::time::Instant::now() + HEALTH_GRACE;
        let mut healthy = healthy_among(raft, &remaining);
        while healthy * 2 <= remaining.len()
            && !request.force
            && tokio::time::Instant::now() < deadline
        {
            tokio::time::sleep(HEALTH_POLL).await;
            healthy = healthy_among(raft, &remaining);
        }
        if healthy * 2 <= remaining.len() && !request.force {
            return Err(MembershipError::WouldLoseQuorum {
                id: request.id,
                remaining: remaining.len(),
                healthy,
            });
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
