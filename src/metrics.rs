//! Prometheus metrics: one registry, names in the etcd tradition (`has_leader`,
//! `leader_changes_seen_total`, …) under the `licensed_` prefix.

use std::sync::LazyLock;

use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramTimer, IntGauge, Registry, TextEncoder,
};

use crate::raft::node::Node;

struct Metrics {
    registry: Registry,
    request_seconds: Histogram,
    has_leader: IntGauge,
    is_leader: IntGauge,
    term: IntGauge,
    last_log_index: IntGauge,
    committed_index: IntGauge,
    applied_index: IntGauge,
    borrows_retained: IntGauge,
    clock_ok: IntGauge,
    peer_clock_offset_ms: IntGauge,
}

static METRICS: LazyLock<Metrics> = LazyLock::new(|| {
    let registry = Registry::new();
    let gauge = |name: &str, help: &str| {
        let gauge = IntGauge::new(name, help).unwrap_or_else(|_| unreachable_metric(name));
        let _ = registry.register(Box::new(gauge.clone()));
        gauge
    };
    let request_seconds = Histogram::with_opts(
        HistogramOpts::new(
            "licensed_rpc_request_duration_seconds",
            "Time to answer one POST /licenses body",
        )
        .buckets(vec![
            0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0,
        ]),
    )
    .unwrap_or_else(|_| unreachable_metric("licensed_rpc_request_duration_seconds"));
    let _ = registry.register(Box::new(request_seconds.clone()));
    Metrics {
        request_seconds,
        has_leader: gauge("licensed_raft_has_leader", "1 if this node knows a leader"),
        is_leader: gauge("licensed_raft_is_leader", "1 if this node is the leader"),
        term: gauge("licensed_raft_term", "Current Raft term"),
        last_log_index: gauge(
            "licensed_raft_last_log_index",
            "Last log index on this node",
        ),
        committed_index: gauge("licensed_raft_committed_index", "Committed log index"),
        applied_index: gauge("licensed_raft_applied_index", "Applied log index"),
        borrows_retained: gauge(
            "licensed_borrows_retained",
            "Borrow records held (current, upcoming and expired within retention)",
        ),
        clock_ok: gauge(
            "licensed_clock_ok",
            "1 if this node's clock is within --max-clock-offset-ms of a quorum's (leader) or its leader's (follower)",
        ),
        peer_clock_offset_ms: gauge(
            "licensed_peer_clock_offset_max_ms",
            "Largest clock offset to a peer seen in the last 10 s, in ms (absolute)",
        ),
        registry,
    }
});

/// Metric names are constants, so constructing them cannot fail; this keeps the
/// impossible branch loud instead of silently unregistered.
fn unreachable_metric(name: &str) -> ! {
    panic!("invalid metric definition {name}")
}

/// Starts timing one `/licenses` request; the time is recorded when the timer drops.
pub fn request_timer() -> HistogramTimer {
    METRICS.request_seconds.start_timer()
}

/// Copies the node's Raft state into the gauges.
pub fn observe_node(node: &Node) {
    let raft = crate::raft::metrics_of(&node.raft);
    let m = &*METRICS;
    m.has_leader.set(raft.current_leader.is_some() as i64);
    m.is_leader
        .set((raft.current_leader == Some(node.id)) as i64);
    m.term.set(raft.current_term as i64);
    m.last_log_index
        .set(raft.last_log_index.unwrap_or(0) as i64);
    m.committed_index
        .set(raft.local_committed.as_ref().map_or(0, |id| id.index()) as i64);
    m.applied_index
        .set(raft.last_applied.as_ref().map_or(0, |id| id.index()) as i64);
    m.borrows_retained
        .set(node.ledger.read().borrow_count() as i64);
    m.clock_ok.set(node.clock_status().is_ok() as i64);
    let largest = node.clocks.offsets().values().map(|ms| ms.abs()).max();
    m.peer_clock_offset_ms.set(largest.unwrap_or(0));
}

/// The Prometheus text exposition of every metric.
pub fn render() -> Vec<u8> {
    let mut buffer = Vec::new();
    let _ = TextEncoder::new().encode(&METRICS.registry.gather(), &mut buffer);
    buffer
}
