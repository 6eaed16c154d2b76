//! This node's view of its peers: Raft RPC round trips and failures by peer and kind,
//! and, on the leader, each follower's replication lag and whether its last RPC got
//! through; the clock offset to each peer. Labels are node ids: bounded by the
//! membership (a removed member's series stay until the process restarts).

use std::collections::HashMap;
use std::sync::{LazyLock, Mutex, PoisonError};
use std::time::{Duration, Instant};

use prometheus::{GaugeVec, HistogramOpts, HistogramVec, IntCounterVec, IntGaugeVec, Opts};

use super::proposals::LATENCY_BUCKETS;
use super::registered;
use crate::raft::NodeId;

/// A peer whose last RPC failed, or that was not reached for this long, is down.
const UP_WITHIN: Duration = Duration::from_secs(5);

struct PeerMetrics {
    rpc_duration: HistogramVec,
    rpc_failures: IntCounterVec,
    lag: IntGaugeVec,
    up: IntGaugeVec,
    clock_offset: GaugeVec,
    /// Per peer: when an RPC last succeeded, and whether the latest one failed.
    last: Mutex<HashMap<NodeId, (Option<Instant>, bool)>>,
}

static PEERS: LazyLock<PeerMetrics> = LazyLock::new(|| {
    const DURATION: &str = "licensed_raft_peer_rpc_duration_seconds";
    const FAILURES: &str = "licensed_raft_peer_rpc_failures_total";
    const LAG: &str = "licensed_raft_peer_replication_lag_entries";
    const UP: &str = "licensed_raft_peer_up";
    const OFFSET: &str = "licensed_peer_clock_offset_seconds";
    let rpc_duration = registered(
        DURATION,
        HistogramVec::new(
            HistogramOpts::new(DURATION, "Round trip of a Raft RPC this node sent, by peer and kind (append, vote, snapshot, transfer); answered calls only")
                .buckets(LATENCY_BUCKETS.to_vec()),
            &["peer", "rpc"],
        ),
    );
    let rpc_failures = registered(
        FAILURES,
        IntCounterVec::new(
            Opts::new(FAILURES, "Raft RPCs this node sent that failed (unreachable, timed out, refused), by peer and kind"),
            &["peer", "rpc"],
        ),
    );
    let lag = registered(
        LAG,
        IntGaugeVec::new(
            Opts::new(LAG, "On the leader: log entries a member has not yet acknowledged (the leader's last log index minus the member's matched index)"),
            &["peer"],
        ),
    );
    let up = registered(
        UP,
        IntGaugeVec::new(
            Opts::new(
                UP,
                "On the leader: 1 if the last Raft RPC to the member succeeded within the last 5 s",
            ),
            &["peer"],
        ),
    );
    let clock_offset = registered(
        OFFSET,
        GaugeVec::new(
            Opts::new(OFFSET, "The peer's wall clock minus this node's, from the last 10 s of node-to-node traffic"),
            &["peer"],
        ),
    );
    PeerMetrics {
        rpc_duration,
        rpc_failures,
        lag,
        up,
        clock_offset,
        last: Mutex::new(HashMap::new()),
    }
});

/// The series of RPCs of one kind to one peer, resolved once per connection.
#[derive(Debug, Clone)]
pub struct PeerRpc {
    peer: NodeId,
    duration: prometheus::Histogram,
    failures: prometheus::IntCounter,
}

impl PeerRpc {
    /// The series for `rpc` calls to `peer` (the failure count shows as 0 from now on).
    pub fn new(peer: NodeId, rpc: &str) -> PeerRpc {
        let label = peer.to_string();
        PeerRpc {
            peer,
            duration: PEERS.rpc_duration.with_label_values(&[&label, rpc]),
            failures: PEERS.rpc_failures.with_label_values(&[&label, rpc]),
        }
    }

    /// One call answered after `elapsed`, or failed.
    pub fn observe(&self, elapsed: Duration, ok: bool) {
        if ok {
            self.duration.observe(elapsed.as_secs_f64());
        } else {
            self.failures.inc();
        }
        let mut last = PEERS.last.lock().unwrap_or_else(PoisonError::into_inner);
        let entry = last.entry(self.peer).or_insert((None, false));
        if ok {
            *entry = (Some(Instant::now()), false);
        } else {
            entry.1 = true;
        }
    }
}

/// Sets the leader-side series from `replication` (member → matched index) and
/// `last_log_index`; clears them on a node that does not lead.
pub(super) fn observe_replication(
    replication: Option<Vec<(NodeId, u64)>>,
    last_log_index: u64,
    me: NodeId,
) {
    let m = &*PEERS;
    m.lag.reset();
    m.up.reset();
    let Some(replication) = replication else {
        return;
    };
    let last = m.last.lock().unwrap_or_else(PoisonError::into_inner);
    for (peer, matched) in replication.into_iter().filter(|(peer, _)| *peer != me) {
        let label = peer.to_string();
        m.lag
            .with_label_values(&[&label])
            .set(last_log_index.saturating_sub(matched) as i64);
        let up = last.get(&peer).is_some_and(|(ok_at, failing)| {
            !failing && ok_at.is_some_and(|at| at.elapsed() < UP_WITHIN)
        });
        m.up.with_label_values(&[&label]).set(i64::from(up));
    }
}

/// Sets the clock offset to each peer with a fresh sample (ms, peer − us).
pub(super) fn observe_clock_offsets(offsets: &HashMap<NodeId, i64>) {
    let m = &*PEERS;
    m.clock_offset.reset();
    for (peer, ms) in offsets {
        m.clock_offset
            .with_label_values(&[&peer.to_string()])
            .set(*ms as f64 / 1_000.0);
    }
}
