//! Forming a cluster from `--peers`: the lowest id creates it once every peer answers and
//! none belongs to a cluster yet; a node that is not admitted finds a running member to
//! ask to be added.

use std::collections::BTreeMap;
use std::time::Duration;

use uuid::Uuid;

use openraft::Membership;

use super::admin::{AdminClient, MembershipError};
use super::forward::ClusterClient;
use crate::raft::node::Node;
use crate::raft::{metrics_of, NodeAddr, NodeId};

/// Pause between probes of a peer that is not up yet.
const PEER_PROBE_EVERY: Duration = Duration::from_millis(200);
/// Bound on one probe of a peer.
const PEER_PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// Why `--peers` could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PeersError {
    /// An item is not `ID=HOST:PORT`.
    #[error("{0:?}: expected ID=HOST:PORT")]
    Malformed(String),
    /// An item's id is not a number.
    #[error("{0:?}: the node id must be a number")]
    BadId(String),
    /// Two items share an id.
    #[error("node id {0} appears twice")]
    Duplicate(NodeId),
    /// Nothing was given.
    #[error("no peers given")]
    Empty,
}

/// `--peers 1=host:port,2=host:port,...`: the voters of a new cluster by id and Raft address.
pub fn parse_peers(text: &str) -> Result<BTreeMap<NodeId, String>, PeersError> {
    let mut peers = BTreeMap::new();
    for item in text
        .split(',')
        .map(str::trim)
        .filter(|item| !item.is_empty())
    {
        let (id, addr) = item
            .split_once('=')
            .ok_or_else(|| PeersError::Malformed(item.to_string()))?;
        let id: NodeId = id
            .trim()
            .parse()
            .map_err(|_| PeersError::BadId(item.to_string()))?;
        if peers.insert(id, addr.trim().to_string()).is_some() {
            return Err(PeersError::Duplicate(id));
        }
    }
    if peers.is_empty() {
        return Err(PeersError::Empty);
    }
    Ok(peers)
}

/// Where a node stands in its cluster, as its own data dir tells.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Standing {
    /// Not admitted, or admitted without any membership yet: new, back on an empty data
    /// dir, or admitted by a leader that has not added it yet.
    Outside,
    /// A learner. No operator keeps a learner: an addition ends with the voter step, so a
    /// learner is an addition still under way or one cut short between its two steps (the
    /// leader restarted, say), which nobody else would finish.
    Learner,
    /// A voter.
    Voter,
    /// Admitted, with a membership that does not name it: removed by an operator, and it
    /// stays out.
    Removed,
}

impl Standing {
    /// Reads the standing of node `id` from its own state.
    pub fn of(
        id: NodeId,
        admitted: bool,
        initialized: bool,
        membership: &Membership<NodeId, NodeAddr>,
    ) -> Self {
        if !admitted || !initialized {
            Standing::Outside
        } else if membership.voter_ids().any(|voter| voter == id) {
            Standing::Voter
        } else if membership.get_node(&id).is_some() {
            Standing::Learner
        } else {
            Standing::Removed
        }
    }

    /// Whether the node must ask a member to add it (again): the leader admits it, makes
    /// it a learner, and makes a learner a voter once it has caught up.
    pub fn must_ask_to_be_added(self) -> bool {
        matches!(self, Standing::Outside | Standing::Learner)
    }
}

/// The standing of `node` now (its latest membership, committed or not).
pub async fn standing(node: &Node) -> Result<Standing, MembershipError> {
    let initialized = node
        .raft
        .is_initialized()
        .await
        .map_err(MembershipError::raft)?;
    let metrics = metrics_of(&node.raft);
    Ok(Standing::of(
        node.id,
        node.identity.get().admitted,
        initialized,
        metrics.membership_config.membership(),
    ))
}

/// Creates a new cluster from `peers` if this node has the lowest id and no peer belongs
/// to a cluster yet. Waits (up to `patience`) for every peer to come up. Returns whether
/// this node created the cluster.
pub async fn bootstrap_static(
    node: &Node,
    my_addr: &NodeAddr,
    peers: &BTreeMap<NodeId, String>,
    admin_token: Option<&str>,
    patience: Duration,
) -> Result<bool, MembershipError> {
    let (raft, my_id, routes) = (&node.raft, node.id, &node.routes);
    if raft.is_initialized().await.map_err(MembershipError::raft)? {
        return Ok(false);
    }
    if peers.keys().next() != Some(&my_id) {
        // Another node creates the cluster; this one waits to be contacted.
        return Ok(false);
    }
    let client = ClusterClient::new(routes.clone(), &node.dialer).map_err(MembershipError::raft)?;
    let deadline = tokio::time::Instant::now() + patience;
    let mut members = BTreeMap::new();
    members.insert(my_id, (my_addr.clone(), my_addr.raft_addr.clone()));
    // Every round asks every peer not heard from yet: one that already belongs to a
    // cluster settles it at once (this node was wiped and the cluster runs on), even
    // while another first voter is down for good (removed since, say).
    loop {
        let mut unreachable = None;
        for (&id, raft_addr) in peers {
            if members.contains_key(&id) {
                continue;
            }
            let raft_addr = routes.resolve(id, raft_addr);
            match client.info(raft_addr, PEER_PROBE_TIMEOUT).await {
                Ok(info) if info.id != id => {
                    return Err(MembershipError::PeersMismatch {
                        addr: raft_addr.to_string(),
                        actual: info.id,
                        expected: id,
                    })
                }
                Ok(info) if info.initialized => {
                    tracing::warn!(
                        peer = id,
                        "peer already belongs to a cluster; not creating a new one"
                    );
                    return Ok(false);
                }
                Ok(info) => {
                    members.insert(id, (info.addr, raft_addr.to_string()));
                }
                Err(e) => {
                    tracing::info!(peer = id, %raft_addr, error = %e, "waiting for peer");
                    unreachable = Some(MembershipError::Unreachable {
                        id,
                        addr: raft_addr.to_string(),
                        reason: e.to_string(),
                    });
                }
            }
        }
        match unreachable {
            None => break,
            Some(error) if tokio::time::Instant::now() >= deadline => return Err(error),
            Some(_) => tokio::time::sleep(PEER_PROBE_EVERY).await,
        }
    }
    // Admit every member's data dir into the new cluster first: until then they refuse
    // Raft traffic. A retry after a crash reuses the id this node kept.
    let cluster_id = node.identity.get().cluster_id.unwrap_or_else(Uuid::new_v4);
    node.identity.admit(cluster_id)?;
    for (&id, (_, raft_addr)) in members.iter().filter(|(id, _)| **id != my_id) {
        let token = admin_token.map(str::to_string);
        let admitted = async {
            AdminClient::new(raft_addr, token)?
                .with_dialer(&node.dialer)?
                .admit(id, cluster_id)
                .await
        };
        admitted.await.map_err(|source| MembershipError::Remote {
            node: format!("admitting node {id} at {raft_addr}"),
            source,
        })?;
    }
    let members = members
        .into_iter()
        .map(|(id, (addr, _))| (id, addr))
        .collect::<BTreeMap<_, _>>();
    raft.initialize(members)
        .await
        .map_err(MembershipError::raft)?;
    Ok(true)
}

/// The first peer of `peers` that belongs to a running cluster: where a node that is not
/// admitted (new, or back on an empty data dir) asks to be added.
pub async fn find_cluster(
    node: &Node,
    peers: &BTreeMap<NodeId, String>,
) -> Result<Option<String>, MembershipError> {
    let client =
        ClusterClient::new(node.routes.clone(), &node.dialer).map_err(MembershipError::raft)?;
    for (&id, raft_addr) in peers.iter().filter(|(id, _)| **id != node.id) {
        let raft_addr = node.routes.resolve(id, raft_addr);
        if let Ok(info) = client.info(raft_addr, PEER_PROBE_TIMEOUT).await {
            if info.initialized {
                return Ok(Some(raft_addr.to_string()));
            }
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

    fn addr(id: NodeId) -> NodeAddr {
        NodeAddr {
            api_addr: format!("127.0.0.1:{}", 22000 + id),
            raft_addr: format!("127.0.0.1:{}", 23000 + id),
        }
    }

    /// Voters 1-3, node 4 a learner.
    fn membership() -> Membership<NodeId, NodeAddr> {
        let nodes: BTreeMap<NodeId, NodeAddr> = (1..=4).map(|n| (n, addr(n))).collect();
        Membership::new(vec![BTreeSet::from([1, 2, 3])], nodes).expect("membership")
    }

    #[test]
    fn a_learner_asks_again_to_be_made_a_voter() {
        let standing = Standing::of(4, true, true, &membership());
        assert_eq!(standing, Standing::Learner);
        assert!(standing.must_ask_to_be_added());
    }

    #[test]
    fn a_voter_and_a_removed_node_do_not_ask() {
        let voter = Standing::of(2, true, true, &membership());
        assert_eq!(voter, Standing::Voter);
        assert!(!voter.must_ask_to_be_added());
        let removed = Standing::of(5, true, true, &membership());
        assert_eq!(removed, Standing::Removed);
        assert!(!removed.must_ask_to_be_added());
    }

    #[test]
    fn a_node_not_admitted_or_without_membership_asks() {
        for (admitted, initialized) in [(false, false), (false, true), (true, false)] {
            let standing = Standing::of(2, admitted, initialized, &membership());
            assert_eq!(standing, Standing::Outside, "{admitted} {initialized}");
            assert!(standing.must_ask_to_be_added());
        }
    }

    #[test]
    fn a_voter_of_a_joint_configuration_is_a_voter() {
        let nodes: BTreeMap<NodeId, NodeAddr> = (1..=4).map(|n| (n, addr(n))).collect();
        let joint = Membership::new(
            vec![BTreeSet::from([1, 2, 3]), BTreeSet::from([1, 2, 3, 4])],
            nodes,
        )
        .expect("joint membership");
        assert_eq!(Standing::of(4, true, true, &joint), Standing::Voter);
    }
}
