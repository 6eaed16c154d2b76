//! Linearizable reads: the leader confirms its leadership with a quorum (read index),
//! concurrent reads share one round (see [`Batcher`](crate::cluster::batcher::Batcher)),
//! and this node waits until it has applied up to that index.

use std::sync::Arc;
use std::time::Duration;

use super::retry::{self, Failed};
use super::{App, AppError};
use crate::cluster::batcher::SendBatch;
use crate::cluster::forward::{self as cluster, ClusterClient, ClusterError, ReadPoint};
use crate::raft::node::Node;
use tracing::Instrument;

impl App {
    /// Waits until this node's ledger reflects every write acknowledged anywhere before
    /// the call: the leader confirms its leadership with a quorum (read index), then this
    /// node waits until it has applied up to that index. Returns the read point.
    pub(super) async fn linearize(&self) -> Result<ReadPoint, AppError> {
        // Chaos builds only: a deliberately broken mode that answers reads from the local
        // ledger, stale on a lagging or cut-off node, to prove the chaos checker notices.
        #[cfg(feature = "failpoints")]
        if crate::broken::is(crate::broken::Broken::StaleReads) {
            return Ok(ReadPoint {
                index: 0,
                now: crate::borrow::time::now(),
            });
        }
        tokio::time::timeout(self.request_timeout, self.linearize_until())
            .await
            .map_err(|_| {
                retry::timeout_error(self.request_timeout, "a linearizable read", "timed out")
            })?
    }

    async fn linearize_until(&self) -> Result<ReadPoint, AppError> {
        retry::until_deadline(self.request_timeout, "a linearizable read", |deadline| {
            self.attempt_read(deadline)
        })
        .await
    }

    async fn attempt_read(&self, deadline: tokio::time::Instant) -> Result<ReadPoint, Failed> {
        let read = self
            .read_index
            .call((), ())
            .await
            .unwrap_or_else(|| {
                Err(ClusterError::NoQuorum(
                    "the read-index round failed".to_string(),
                ))
            })
            .map_err(|e| Failed::Retriable(e.to_string()))?;
        let remaining = deadline.saturating_duration_since(tokio::time::Instant::now());
        self.node
            .raft
            .wait(Some(remaining))
            .applied_index_at_least(Some(read.index), "read index")
            .await
            .map(|_| read)
            .map_err(|e| {
                Failed::Final(retry::timeout_error(
                    self.request_timeout,
                    "this node to apply up to the read index",
                    &e.to_string(),
                ))
            })
    }
}

/// One read-index round for a batch of reads: from this node when it leads, else from
/// the leader it knows (one request for every read in the batch).
pub(super) fn read_index_round(
    node: Node,
    peers: ClusterClient,
    timeout: Duration,
) -> SendBatch<(), (), ReadPoint, ClusterError> {
    Arc::new(move |(), reads: Vec<()>| {
        let (node, peers) = (node.clone(), peers.clone());
        let span = tracing::info_span!("read_index_round", reads = reads.len());
        Box::pin(
            async move {
                crate::metrics::proposals::observe_read_index_round(reads.len());
                let read = match cluster::read_index_local(&node.raft, &node.clocks).await {
                    Err(ClusterError::NotLeader {
                        leader: Some((leader, addr)),
                    }) if leader != node.id => peers.read_index((leader, &addr), timeout).await,
                    other => other,
                }?;
                Ok(vec![read; reads.len()])
            }
            .instrument(span),
        )
    })
}
