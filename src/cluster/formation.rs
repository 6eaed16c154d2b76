//! Forming a cluster from `--peers`: the lowest id creates it once every peer answers and
//! none belongs to a cluster yet; a node that is not admitted finds a running member to
//! ask to be added.

use std::collections::BTreeMap;
use std::time::Duration;

use uuid::Uuid;

use super::admin::{AdminClient, MembershipError};
use super::forward::ClusterClient;
use crate::raft::node::Node;
use crate::raft::{NodeAddr, NodeId};

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
