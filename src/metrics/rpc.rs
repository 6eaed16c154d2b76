//! This node's JSON-RPC traffic: calls by method and outcome, latency by method, bodies in
//! flight, batch sizes. Counted on the node that received the call, so summing across
//! nodes gives the cluster's traffic.

use std::sync::LazyLock;

use prometheus::{Histogram, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, Opts};

use super::{gauge, histogram, registered};
use crate::rpc::methods::METHODS;

/// The `method` label of a call that names no method of the API (labels never carry
/// client text).
pub const UNKNOWN_METHOD: &str = "unknown";
/// The `method` label of a request that is not a valid JSON-RPC call at all (no JSON, no
/// object, no method).
pub const INVALID_REQUEST: &str = "invalid";

struct RpcMetrics {
    requests: IntCounterVec,
    duration: HistogramVec,
    in_flight: IntGauge,
    batch_size: Histogram,
}

static RPC: LazyLock<RpcMetrics> = LazyLock::new(|| {
    const REQUESTS: &str = "licensed_rpc_requests_total";
    const DURATION: &str = "licensed_rpc_request_duration_seconds";
    let requests = registered(
        REQUESTS,
        IntCounterVec::new(
            Opts::new(REQUESTS, "JSON-RPC calls this node answered, by method and outcome (`ok` or the JSON-RPC error code); notifications included"),
            &["method", "code"],
        ),
    );
    let duration = registered(
        DURATION,
        HistogramVec::new(
            HistogramOpts::new(DURATION, "Time this node took to answer one JSON-RPC call, by method (a write includes its replication)")
                .buckets(vec![
                    0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0,
                ]),
            &["method"],
        ),
    );
    let in_flight = gauge(
        "licensed_rpc_requests_in_flight",
        "POST /licenses bodies this node is answering now",
    );
    let batch_size = histogram(
        "licensed_rpc_batch_size",
        "Calls per JSON-RPC batch body this node received",
        &[1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0, 200.0, 500.0, 1000.0],
    );
    RpcMetrics {
        requests,
        duration,
        in_flight,
        batch_size,
    }
});

/// The `method` label for `method`: the API's own name, or [`UNKNOWN_METHOD`].
pub fn method_label(method: &str) -> &'static str {
    METHODS
        .iter()
        .find(|known| **known == method)
        .copied()
        .unwrap_or(UNKNOWN_METHOD)
}

/// Counts one answered call: its method label, its error code (`None` for success) and
/// how long it took.
pub fn observe_call(method: &'static str, error_code: Option<i64>, seconds: f64) {
    let code = error_code.map_or_else(|| "ok".to_string(), |code| code.to_string());
    RPC.requests.with_label_values(&[method, &code]).inc();
    RPC.duration.with_label_values(&[method]).observe(seconds);
}

/// Counts a batch body of `size` calls.
pub fn observe_batch(size: usize) {
    RPC.batch_size.observe(size as f64);
}

/// One body being answered; the in-flight gauge goes down when this drops.
pub struct InFlight(());

impl InFlight {
    /// Counts a body in flight until the guard drops.
    pub fn start() -> InFlight {
        RPC.in_flight.inc();
        InFlight(())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        RPC.in_flight.dec();
    }
}
