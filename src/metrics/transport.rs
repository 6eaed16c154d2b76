//! This node's connections and the requests its limits turned away, on both ports.

use std::sync::LazyLock;

use prometheus::{IntCounterVec, IntGaugeVec, Opts};

use super::registered;

struct TransportMetrics {
    open: IntGaugeVec,
    refused: IntCounterVec,
    peer_refused: IntCounterVec,
}

static TRANSPORT: LazyLock<TransportMetrics> = LazyLock::new(|| {
    const OPEN: &str = "licensed_connections_open";
    const REFUSED: &str = "licensed_requests_refused_total";
    const PEER_REFUSED: &str = "licensed_peer_requests_refused_total";
    TransportMetrics {
        open: registered(
            OPEN,
            IntGaugeVec::new(
                Opts::new(OPEN, "Connections this node holds open, by port (`api`, `peer`)"),
                &["port"],
            ),
        ),
        refused: registered(
            REFUSED,
            IntCounterVec::new(
                Opts::new(REFUSED, "Requests and connections this node's limits turned away, by reason (`connections`, `busy`, `deadline`, `body_timeout`, `handshake`, `shape`)"),
                &["reason"],
            ),
        ),
        peer_refused: registered(
            PEER_REFUSED,
            IntCounterVec::new(
                Opts::new(PEER_REFUSED, "Requests on the peer port refused for lack of cluster credentials, by reason (`unauthenticated`, `bad_signature`, `admin`)"),
                &["reason"],
            ),
        ),
    }
});

/// One more refusal for `reason` (a constant).
pub fn refused(reason: &'static str) {
    TRANSPORT.refused.with_label_values(&[reason]).inc();
}

/// One more peer-port refusal for `reason` (a constant).
pub fn peer_refused(reason: &'static str) {
    TRANSPORT.peer_refused.with_label_values(&[reason]).inc();
}

/// Counts a connection on `port` while the guard lives.
pub struct OpenConnection(&'static str);

impl OpenConnection {
    /// Starts counting.
    pub fn start(port: &'static str) -> OpenConnection {
        TRANSPORT.open.with_label_values(&[port]).inc();
        OpenConnection(port)
    }
}

impl Drop for OpenConnection {
    fn drop(&mut self) {
        TRANSPORT.open.with_label_values(&[self.0]).dec();
    }
}
