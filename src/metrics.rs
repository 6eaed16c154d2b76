//! Prometheus metrics: one registry, names in the etcd tradition (`has_leader`,
//! `leader_changes_seen_total`, …) under the `licensed_` prefix, base units, `_total` on
//! counters, and labels only from bounded sets (method names, codes, the pool's features
//! and licenses, member roles) — never client text.
//!
//! - [`rpc`]: this node's JSON-RPC traffic.
//! - [`ledger`]: the business view from the replicated ledger.
//! - [`proposals`]: proposals, forwarded writes, read-index rounds, commit latencies.
//! - [`peers`]: Raft RPCs by peer, replication lag, clock offsets.
//! - [`storage`]: WAL sync and snapshot latencies, data directory size.
//! - [`transport`]: open connections, requests refused by limits or peer checks.
//! - here: Raft state read from the node before each scrape, and the standard
//!   `process_*` series (CPU, memory, file descriptors).

pub mod ledger;
pub mod peers;
pub mod proposals;
pub mod rpc;
pub mod storage;
pub mod transport;

use std::sync::LazyLock;

use prometheus::core::Collector;
use prometheus::{Encoder, IntCounter, IntGauge, IntGaugeVec, Opts, Registry, TextEncoder};

use crate::raft::node::Node;
use crate::raft::Raft;

static REGISTRY: LazyLock<Registry> = LazyLock::new(Registry::new);

/// Adds `collector` to the one registry. Names are constants, registered once each (the
/// metric sets are lazily built statics), so a failure here is a programming error.
fn register<C: Collector + Clone + 'static>(collector: &C) {
    if let Err(error) = REGISTRY.register(Box::new(collector.clone())) {
        tracing::error!(%error, "metric not registered");
    }
}

/// Metric names are constants, so constructing them cannot fail; this keeps the
/// impossible branch loud instead of silently unregistered.
fn unreachable_metric(name: &str) -> ! {
    panic!("invalid metric definition {name}")
}

struct RaftMetrics {
    has_leader: IntGauge,
    is_leader: IntGauge,
    leader_changes: IntCounter,
    term: IntGauge,
    last_log_index: IntGauge,
    committed_index: IntGauge,
    applied_index: IntGauge,
    snapshot_index: IntGauge,
    purged_index: IntGauge,
    members: IntGaugeVec,
    snapshots_built: IntCounter,
    snapshots_installed: IntCounter,
    fsyncs: IntCounter,
    fsync_seconds: prometheus::Counter,
    fsync_group_size: IntGauge,
    fsync_failures: IntCounter,
    borrows_retained: IntGauge,
    clock_ok: IntGauge,
    peer_clock_offset: prometheus::Gauge,
}

fn gauge(name: &str, help: &str) -> IntGauge {
    registered(name, IntGauge::new(name, help))
}

/// A metric family built from constant options, registered. `name` is for the message
/// of the impossible failure.
fn registered<M: Collector + Clone + 'static>(name: &str, built: prometheus::Result<M>) -> M {
    let metric = built.unwrap_or_else(|_| unreachable_metric(name));
    register(&metric);
    metric
}

fn histogram(name: &str, help: &str, buckets: &[f64]) -> prometheus::Histogram {
    registered(
        name,
        prometheus::Histogram::with_opts(
            prometheus::HistogramOpts::new(name, help).buckets(buckets.to_vec()),
        ),
    )
}

fn counter(name: &str, help: &str) -> IntCounter {
    registered(name, IntCounter::new(name, help))
}

static RAFT: LazyLock<RaftMetrics> = LazyLock::new(|| {
    const MEMBERS: &str = "licensed_raft_members";
    const FSYNC_SECONDS: &str = "licensed_raft_log_fsync_seconds_total";
    const OFFSET_MAX: &str = "licensed_peer_clock_offset_max_seconds";
    let members = registered(
        MEMBERS,
        IntGaugeVec::new(
            Opts::new(MEMBERS, "Members of the cluster as this node's effective membership has them, by role (voter, learner)"),
            &["role"],
        ),
    );
    let fsync_seconds = registered(
        FSYNC_SECONDS,
        prometheus::Counter::new(
            FSYNC_SECONDS,
            "Time spent in Raft log WAL syncs (every acknowledged append waits for one)",
        ),
    );
    let peer_clock_offset = registered(
        OFFSET_MAX,
        prometheus::Gauge::new(
            OFFSET_MAX,
            "Largest clock offset to a peer seen in the last 10 s (absolute)",
        ),
    );
    RaftMetrics {
        has_leader: gauge("licensed_raft_has_leader", "1 if this node knows a leader"),
        is_leader: gauge("licensed_raft_is_leader", "1 if this node is the leader"),
        leader_changes: counter(
            "licensed_raft_leader_changes_seen_total",
            "Times this node saw the leader change (to a known leader other than the last one it knew)",
        ),
        term: gauge("licensed_raft_term", "Current Raft term"),
        last_log_index: gauge(
            "licensed_raft_last_log_index",
            "Last log index on this node",
        ),
        committed_index: gauge(
            "licensed_raft_committed_index",
            "Committed log index as this node knows it",
        ),
        applied_index: gauge(
            "licensed_raft_applied_index",
            "Last log index applied to this node's ledger",
        ),
        snapshot_index: gauge(
            "licensed_raft_snapshot_index",
            "Last log index in this node's newest snapshot",
        ),
        purged_index: gauge(
            "licensed_raft_purged_index",
            "Last log index this node compacted away (covered by its snapshot)",
        ),
        members,
        snapshots_built: counter(
            "licensed_raft_snapshots_built_total",
            "Snapshots this node built from its own ledger",
        ),
        snapshots_installed: counter(
            "licensed_raft_snapshots_installed_total",
            "Snapshots this node installed from the leader",
        ),
        fsyncs: counter(
            "licensed_raft_log_fsyncs_total",
            "Raft log WAL syncs (one acknowledges a whole group of appends)",
        ),
        fsync_seconds,
        fsync_group_size: gauge(
            "licensed_raft_log_fsync_group_size",
            "Appends and votes the most recent WAL sync acknowledged",
        ),
        fsync_failures: counter(
            "licensed_raft_log_fsync_failures_total",
            "Raft log WAL syncs that failed (each fails every waiting write)",
        ),
        borrows_retained: gauge(
            "licensed_borrows_retained",
            "Borrow records held (current, upcoming and expired within retention)",
        ),
        clock_ok: gauge(
            "licensed_clock_ok",
            "1 if this node's clock is within --max-clock-offset-ms of a quorum's (leader) or its leader's (follower)",
        ),
        peer_clock_offset,
    }
});

/// Moves `counter` up to `total` (a running total kept elsewhere, e.g. by the log store).
fn advance(counter: &IntCounter, total: u64) {
    let seen = counter.get();
    if total > seen {
        counter.inc_by(total - seen);
    }
}

/// Copies the node's Raft, storage and ledger state into the metrics before a scrape.
pub fn observe_node(node: &Node) {
    let raft = crate::raft::metrics_of(&node.raft);
    let m = &*RAFT;
    let index = |id: Option<&openraft::LogId<_>>| id.map_or(0, |id| id.index) as i64;
    m.has_leader.set(i64::from(raft.current_leader.is_some()));
    m.is_leader
        .set(i64::from(raft.current_leader == Some(node.id)));
    m.term.set(raft.current_term as i64);
    m.last_log_index
        .set(raft.last_log_index.unwrap_or(0) as i64);
    m.committed_index.set(index(raft.local_committed.as_ref()));
    m.applied_index.set(index(raft.last_applied.as_ref()));
    m.snapshot_index.set(index(raft.snapshot.as_ref()));
    m.purged_index.set(index(raft.purged.as_ref()));
    let membership = raft.membership_config.membership();
    let voters = membership.voter_ids().count() as i64;
    let learners = membership.learner_ids().count() as i64;
    m.members.with_label_values(&["voter"]).set(voters);
    m.members.with_label_values(&["learner"]).set(learners);
    advance(&m.snapshots_built, node.snapshots.built());
    advance(&m.snapshots_installed, node.snapshots.installed());
    let fsync = &node.fsync;
    advance(&m.fsyncs, fsync.fsyncs());
    let seconds = fsync.fsync_nanos() as f64 / 1e9;
    let seen = m.fsync_seconds.get();
    if seconds > seen {
        m.fsync_seconds.inc_by(seconds - seen);
    }
    m.fsync_group_size.set(fsync.last_group_size() as i64);
    advance(&m.fsync_failures, fsync.failures());
    m.clock_ok.set(i64::from(node.clock_status().is_ok()));
    let offsets = node.clocks.offsets();
    let largest = offsets.values().map(|ms| ms.abs()).max();
    m.peer_clock_offset
        .set(largest.unwrap_or(0) as f64 / 1_000.0);
    peers::observe_clock_offsets(&offsets);
    let replication = raft.replication.as_ref().map(|members| {
        members
            .iter()
            .map(|(peer, matched)| (*peer, matched.as_ref().map_or(0, |id| id.index)))
            .collect()
    });
    peers::observe_replication(replication, raft.last_log_index.unwrap_or(0), node.id);
    storage::observe_data_dir(&node.data_dir);
    let ledger = node.ledger.read();
    m.borrows_retained.set(ledger.borrow_count() as i64);
    ledger::observe_licenses(&ledger, crate::borrow::time::now());
}

/// Follows `raft`'s metrics stream for as long as it runs: counts leader changes as this
/// node sees them, and samples the commit latencies ([`proposals`]).
pub async fn watch_raft(raft: Raft) {
    use openraft::async_runtime::WatchReceiver;
    let mut watch = raft.metrics();
    let mut last_leader = None;
    let mut latencies = proposals::CommitLatencies::default();
    loop {
        let (leader, last, commit, applied) = {
            let m = watch.borrow_watched();
            (
                m.current_leader,
                m.last_log_index,
                m.local_committed.as_ref().map(|id| id.index),
                m.last_applied.as_ref().map(|id| id.index),
            )
        };
        if leader.is_some() && leader != last_leader {
            RAFT.leader_changes.inc();
            last_leader = leader;
        }
        latencies.observe(last, commit, applied);
        if watch.changed().await.is_err() {
            return;
        }
    }
}

/// Makes every series that does not depend on traffic exist from the start (a dashboard
/// shows 0, not "no data"), and registers the process collector. Idempotent.
pub fn init() {
    static INIT: std::sync::Once = std::sync::Once::new();
    INIT.call_once(|| {
        LazyLock::force(&RAFT);
        proposals::init();
        storage::init();
        #[cfg(target_os = "linux")]
        if let Err(error) = REGISTRY.register(Box::new(
            prometheus::process_collector::ProcessCollector::for_self(),
        )) {
            tracing::error!(%error, "process metrics not registered");
        }
    });
}

/// The Prometheus text exposition of every metric.
pub fn render() -> Vec<u8> {
    init();
    let mut buffer = Vec::new();
    let _ = TextEncoder::new().encode(&REGISTRY.gather(), &mut buffer);
    buffer
}
