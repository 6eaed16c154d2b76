//! Adding a node: admit its data dir, add it as a learner, wait until it has caught up,
//! then make it a voter. A node that comes back with an empty data dir under a member's
//! id has its old incarnation removed first.

use std::collections::BTreeSet;
use std::time::Duration;

use openraft::ChangeMembers;
use uuid::Uuid;

use super::client::AdminClient;
use super::error::MembershipError;
use super::messages::{AddRequest, RemoveRequest};
use super::remove::remove_on_leader;
use super::{bounded, change, AdminState, CATCH_UP_TIMEOUT};
use crate::cluster::forward::ClusterClient;
use crate::cluster::standing::Standing;
use crate::raft::metrics_of;

/// Adds the node on this node, the leader.
pub(super) async fn add_on_leader(
    state: &AdminState,
    request: &AddRequest,
) -> Result<String, MembershipError> {
    let (raft, routes) = (&state.raft, &state.routes);
    let target = routes.resolve(request.id, &request.raft_addr);
    let unreachable = |reason: String| MembershipError::Unreachable {
        id: request.id,
        addr: request.raft_addr.clone(),
        reason,
    };
    let client = ClusterClient::new(routes.clone(), &state.dialer)
        .map_err(|e| unreachable(e.to_string()))?;
    let info = client
        .info(target, Duration::from_secs(3))
        .await
        .map_err(|e| unreachable(e.to_string()))?;
    if info.id != request.id {
        return Err(MembershipError::WrongNode {
            addr: request.raft_addr.clone(),
            actual: info.id,
            expected: request.id,
        });
    }
    // This cluster's id; a leader from before identities makes one now (the others learn
    // it from its Raft requests).
    let cluster_id = state.identity.get().cluster_id.unwrap_or_else(Uuid::new_v4);
    state.identity.admit(cluster_id)?;
    if let Some(theirs) = info.cluster_id.filter(|theirs| *theirs != cluster_id) {
        return Err(MembershipError::OtherCluster {
            id: request.id,
            theirs,
            ours: cluster_id,
        });
    }
    let metrics = metrics_of(raft);
    let membership = metrics.membership_config.membership();
    let is_member = membership.get_node(&request.id).is_some();
    let standing = Standing::of(request.id, info.admitted, true, membership);
    if standing == Standing::Voter {
        return Ok(format!("node {} is already a voter", request.id));
    }
    if standing == Standing::Unpromoted {
        // An addition cut short between its steps (the leader restarted, say): finish it
        // below. `add_learner` changes nothing for a member and waits for it to catch up;
        // the voter step also finishes a joint configuration left behind.
        tracing::info!(
            node = request.id,
            "node is not yet a voter; finishing its addition"
        );
    } else if is_member {
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
        .map_err(|reason| MembershipError::OldIncarnation {
            id: request.id,
            source: Box::new(reason),
        })?;
    }
    let admitted = async {
        AdminClient::new(target, state.token.clone())?
            .with_dialer(&state.dialer)?
            .admit(request.id, cluster_id)
            .await
    };
    admitted.await.map_err(|source| MembershipError::Remote {
        node: format!("admitting node {} at {target}", request.id),
        source,
    })?;
    // Learner first: it receives the log (or a snapshot) without counting towards the
    // quorum; `blocking` waits until it has caught up.
    bounded(
        CATCH_UP_TIMEOUT,
        "the new node to catch up",
        raft.add_learner(request.id, info.addr, true),
    )
    .await?;
    // Chaos builds: the leader can crash here, leaving a learner nobody else would promote.
    fail::fail_point!("add-before-voter");
    change(
        raft,
        ChangeMembers::AddVoterIds(BTreeSet::from([request.id])),
    )
    .await?;
    Ok(format!("node {} is a voter", request.id))
}
