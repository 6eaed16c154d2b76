//! Where a node stands in its cluster — outside, not yet promoted, a voter, or removed —
//! as its own data dir tells; what decides whether it must ask to be added (again).

use openraft::Membership;

use super::admin::MembershipError;
use crate::raft::node::Node;
use crate::raft::{metrics_of, NodeAddr, NodeId};

/// Where a node stands in its cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Standing {
    /// Not admitted, or admitted without any membership yet: new, back on an empty data
    /// dir, or admitted by a leader that has not added it yet.
    Outside,
    /// Not yet a voter of a finished configuration: a learner, or a voter only of the
    /// newer half of a joint configuration. No operator keeps a node so: an addition ends
    /// with the node a voter of a uniform configuration, so this is an addition under way
    /// or one cut short (the leader restarted between its steps), which nobody else would
    /// finish.
    Unpromoted,
    /// A voter (also one of the older half of a joint configuration: a removal under way
    /// or cut short, which the node must not undo).
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
        let configs = membership.get_joint_config();
        let in_newest = configs.last().is_some_and(|voters| voters.contains(&id));
        let in_oldest = configs.first().is_some_and(|voters| voters.contains(&id));
        if !admitted || !initialized {
            Standing::Outside
        } else if in_newest && !in_oldest {
            Standing::Unpromoted
        } else if in_newest || in_oldest {
            Standing::Voter
        } else if membership.get_node(&id).is_some() {
            Standing::Unpromoted
        } else {
            Standing::Removed
        }
    }

    /// Whether the node must ask a member to add it (again): the leader admits it, makes
    /// it a learner, and makes a learner a voter once it has caught up.
    pub fn must_ask_to_be_added(self) -> bool {
        matches!(self, Standing::Outside | Standing::Unpromoted)
    }
}

/// The standing of `node` now (its latest membership, committed or not).
pub async fn standing_of(node: &Node) -> Result<Standing, MembershipError> {
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

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet};

    use super::*;

    fn addr(id: NodeId) -> NodeAddr {
        NodeAddr {
            api_addr: format!("127.0.0.1:{}", 22000 + id),
            raft_addr: format!("127.0.0.1:{}", 23000 + id),
        }
    }

    /// Nodes 1-4 with the voter configurations `configs`.
    fn membership(configs: Vec<BTreeSet<NodeId>>) -> Membership<NodeId, NodeAddr> {
        let nodes: BTreeMap<NodeId, NodeAddr> = (1..=4).map(|n| (n, addr(n))).collect();
        Membership::new(configs, nodes).expect("membership")
    }

    /// Voters 1-3, node 4 a learner.
    fn three_voters_one_learner() -> Membership<NodeId, NodeAddr> {
        membership(vec![BTreeSet::from([1, 2, 3])])
    }

    #[test]
    fn a_learner_asks_again_to_be_made_a_voter() {
        let standing = Standing::of(4, true, true, &three_voters_one_learner());
        assert_eq!(standing, Standing::Unpromoted);
        assert!(standing.must_ask_to_be_added());
    }

    #[test]
    fn a_voter_and_a_removed_node_do_not_ask() {
        let voter = Standing::of(2, true, true, &three_voters_one_learner());
        assert_eq!(voter, Standing::Voter);
        assert!(!voter.must_ask_to_be_added());
        let removed = Standing::of(5, true, true, &three_voters_one_learner());
        assert_eq!(removed, Standing::Removed);
        assert!(!removed.must_ask_to_be_added());
    }

    #[test]
    fn a_node_not_admitted_or_without_membership_asks() {
        for (admitted, initialized) in [(false, false), (false, true), (true, false)] {
            let standing = Standing::of(2, admitted, initialized, &three_voters_one_learner());
            assert_eq!(standing, Standing::Outside, "{admitted} {initialized}");
            assert!(standing.must_ask_to_be_added());
        }
    }

    #[test]
    fn a_joint_configuration_left_unfinished_is_finished_by_the_node_being_added() {
        let adding = membership(vec![
            BTreeSet::from([1, 2, 3]),
            BTreeSet::from([1, 2, 3, 4]),
        ]);
        assert_eq!(Standing::of(4, true, true, &adding), Standing::Unpromoted);
        assert_eq!(Standing::of(1, true, true, &adding), Standing::Voter);
        // A removal left in its joint configuration: the leaving node does not undo it.
        let removing = membership(vec![
            BTreeSet::from([1, 2, 3, 4]),
            BTreeSet::from([1, 2, 3]),
        ]);
        assert_eq!(Standing::of(4, true, true, &removing), Standing::Voter);
        assert!(!Standing::of(4, true, true, &removing).must_ask_to_be_added());
    }
}
