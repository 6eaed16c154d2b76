//! Writes: a proposal is appended on this node when it leads, else forwarded to the
//! leader in a batch (see [`Batcher`](crate::cluster::batcher::Batcher)); retried while
//! that is safe, all within the request timeout.

use std::sync::Arc;
use std::time::Duration;

use super::retry::{self, Failed};
use super::{App, AppError};
use crate::cluster::batcher::{Batcher, SendBatch};
use crate::cluster::forward::{self as cluster, ClusterClient, ClusterError, Proposal};
use crate::raft::{NodeAddr, NodeId};
use crate::state::Outcome;
use crate::telemetry::trace_export;
use tracing::Instrument;

impl App {
    /// Gets a proposal applied: appended here when this node leads, forwarded to the
    /// leader otherwise, retried while that is safe, all within the request timeout.
    pub(super) async fn propose(&self, proposal: Proposal) -> Result<Outcome, AppError> {
        // A leader that lost its quorum keeps the entry pending: bound the whole wait.
        tokio::time::timeout(self.request_timeout, self.propose_until(proposal))
            .instrument(tracing::info_span!("propose"))
            .await
            .map_err(|_| {
                AppError::Unavailable(format!(
                    "no quorum within {} ms: the write was not confirmed and may or may not be applied later",
                    self.request_timeout.as_millis()
                ))
            })?
    }

    async fn propose_until(&self, proposal: Proposal) -> Result<Outcome, AppError> {
        retry::until_deadline(self.request_timeout, "the write to commit", |_| {
            self.attempt_write(&proposal)
        })
        .await
    }

    async fn attempt_write(&self, proposal: &Proposal) -> Result<Outcome, Failed> {
        // A follower that knows the leader forwards at once rather than asking its own
        // Raft core first (which would only answer "not the leader"). A stale leader
        // answers NotLeader, which is retried like any other attempt.
        let leader = cluster::known_leader(&self.node.raft).filter(|(id, _)| *id != self.node.id);
        let attempt = match leader {
            Some(leader) => self.forward(leader, proposal).await,
            None => self.propose_here(proposal).await,
        };
        attempt.map_err(|e| {
            if e.is_retriable() {
                Failed::Retriable(e.to_string())
            } else {
                Failed::Final(AppError::Unavailable(format!(
                    "the write may or may not have been applied: {e}"
                )))
            }
        })
    }

    /// Appends a proposal on this node, or forwards it to the leader this node's Raft
    /// names when it does not lead.
    async fn propose_here(&self, proposal: &Proposal) -> Result<Outcome, ClusterError> {
        #[cfg(feature = "failpoints")]
        if let Some(answer) = cluster::ack_before_commit(&self.node, proposal) {
            return answer;
        }
        match cluster::propose_local(&self.node.raft, &self.node.clocks, proposal.clone()).await {
            Err(ClusterError::NotLeader {
                leader: Some(leader),
            }) if leader.0 != self.node.id => self.forward(leader, proposal).await,
            other => other,
        }
    }

    /// Sends a proposal to the leader within a batch (see [`Batcher`]).
    async fn forward(
        &self,
        leader: (NodeId, NodeAddr),
        proposal: &Proposal,
    ) -> Result<Outcome, ClusterError> {
        let span = tracing::info_span!("forward", leader = leader.0);
        let traceparent = trace_export::traceparent_of(&span);
        let answer = self
            .forwards
            .call(leader, (proposal.clone(), traceparent))
            .instrument(span)
            .await;
        match answer {
            Some(answer) => answer.and_then(|answer| answer),
            None => Err(ClusterError::Unknown(
                "the forwarding task failed".to_string(),
            )),
        }
    }
}

/// A write forwarded to the leader, with its caller's `traceparent` (none when not traced).
pub(super) type Forwarded = (Proposal, Option<String>);

/// Batches of forwarded writes, by leader.
pub(super) type ForwardBatcher =
    Batcher<(NodeId, NodeAddr), Forwarded, Result<Outcome, ClusterError>, ClusterError>;

type SendForwards =
    SendBatch<(NodeId, NodeAddr), Forwarded, Result<Outcome, ClusterError>, ClusterError>;

/// Sends a batch of forwarded writes to the leader in one request.
pub(super) fn forward_batches(peers: ClusterClient, timeout: Duration) -> SendForwards {
    Arc::new(move |(leader, addr), proposals| {
        let peers = peers.clone();
        Box::pin(async move {
            let size = proposals.len();
            let answer = peers
                .forward_batch((leader, &addr), proposals, timeout)
                .await;
            crate::metrics::proposals::observe_forward(size, answer.is_ok());
            answer
        })
    })
}
