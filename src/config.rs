//! Server configuration: flags, each also settable through a `LICENSED_*` environment
//! variable, with defaults for a one-node trial.

use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;

use clap::Parser;

use crate::borrow::pool::parse_duration_secs;

/// Default client port (the Borrow API's).
pub const DEFAULT_LISTEN: &str = "0.0.0.0:22022";
/// Default node-to-node Raft port.
pub const DEFAULT_RAFT_LISTEN: &str = "127.0.0.1:22023";
/// Largest request body accepted on `/licenses`.
pub const DEFAULT_MAX_BODY_BYTES: usize = 1024 * 1024;

/// `--version`; a chaos build (crash points, broken modes) says so.
#[cfg(feature = "failpoints")]
pub const VERSION: &str = concat!(env!("CARGO_PKG_VERSION"), " (chaos build: failpoints)");
/// `--version`.
#[cfg(not(feature = "failpoints"))]
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// `licensed` — the license server.
#[derive(Debug, Clone, Parser)]
#[command(
    name = "licensed",
    version = VERSION,
    about = "High-availability license server (MVTec Borrow API, JSON-RPC 2.0)"
)]
pub struct Config {
    /// Address for clients (`POST /licenses`, `/metrics`, `/healthz`, `/readyz`, `/public-key`):
    /// `:PORT` (every interface), `HOST:PORT`, `[IPv6]:PORT` or `NAME:PORT`. Port 0 picks a
    /// free port; the chosen address is printed on stdout.
    #[arg(long, env = "LICENSED_LISTEN", default_value = DEFAULT_LISTEN, value_parser = parse_listen_addr)]
    pub listen: SocketAddr,

    /// Address for node-to-node Raft traffic.
    #[arg(long, env = "LICENSED_RAFT_LISTEN", default_value = DEFAULT_RAFT_LISTEN, value_parser = parse_listen_addr)]
    pub raft_listen: SocketAddr,

    /// Where the Raft log, vote and snapshots live. Keep it on a local disk.
    #[arg(long, env = "LICENSED_DATA_DIR", default_value = "data")]
    pub data_dir: PathBuf,

    /// License pool (JSON) loaded when this node creates a new cluster; ignored once the
    /// cluster has a ledger.
    #[arg(long, env = "LICENSED_POOL")]
    pub pool: Option<PathBuf>,

    /// Voters of a new cluster: `1=host:port,2=host:port,3=host:port` (node ids and Raft
    /// addresses, this node included). The lowest id creates the cluster once every peer
    /// answers and none belongs to a cluster yet. Without `--peers` and `--join` a new
    /// node creates a one-node cluster.
    #[arg(long, env = "LICENSED_PEERS", conflicts_with = "join")]
    pub peers: Option<String>,

    /// Raft address of any member of a running cluster to join (as a learner first, a
    /// voter once caught up).
    #[arg(long, env = "LICENSED_JOIN")]
    pub join: Option<String>,

    /// Dial `HOST:PORT` instead of the membership's address for peer `ID` (repeatable:
    /// `--peer-route 2=10.1.0.7:22023`), for NAT, multi-homed hosts or a proxy on one link.
    #[arg(
        long = "peer-route",
        env = "LICENSED_PEER_ROUTES",
        value_delimiter = ','
    )]
    pub peer_routes: Vec<String>,

    /// Bearer token required by the cluster admin changes (add, remove, transfer-leader) on
    /// the Raft port, and that lets a `/licenses` caller return any borrow without its
    /// return token. Give every node the same one. Unset: the Raft port must be private.
    #[arg(
        long,
        env = "LICENSED_ADMIN_TOKEN",
        hide_env_values = true,
        allow_hyphen_values = true
    )]
    pub admin_token: Option<String>,

    /// Raft address other nodes use to reach this one (default: the bound `--raft-listen`).
    #[arg(long, env = "LICENSED_ADVERTISE_RAFT")]
    pub advertise_raft: Option<String>,

    /// Client address other nodes report for this one (default: the bound `--listen`).
    #[arg(long, env = "LICENSED_ADVERTISE_API")]
    pub advertise_api: Option<String>,

    /// This node's id in the cluster.
    #[arg(long, env = "LICENSED_NODE_ID", default_value_t = 1)]
    pub node_id: u64,

    /// PKCS#8 PEM file with the Ed25519 key that signs borrowed licenses. Without it a new
    /// cluster generates one; either way it is replicated to every node.
    #[arg(long, env = "LICENSED_SIGNING_KEY")]
    pub signing_key: Option<PathBuf>,

    /// How long expired borrows stay retrievable by `GetBorrowedLicenseV1` (e.g. 30d, 12h).
    #[arg(long, env = "LICENSED_RETENTION", default_value = "30d", value_parser = parse_duration_secs)]
    pub retention: i64,

    /// Largest accepted request body in bytes.
    #[arg(long, env = "LICENSED_MAX_BODY_BYTES", default_value_t = DEFAULT_MAX_BODY_BYTES)]
    pub max_body_bytes: usize,

    /// How long a request may wait for the cluster (leader election, replication) before
    /// it is answered with an error instead.
    #[arg(long, env = "LICENSED_REQUEST_TIMEOUT_MS", default_value_t = 5_000)]
    pub request_timeout_ms: u64,

    /// How far (ms) a leader's wall clock may be off the clocks of a quorum of the voters.
    /// Beyond it the leader stamps no write and no read, hands leadership to a node whose
    /// clock agrees, and `/readyz` says so: one clock running ahead would otherwise drag
    /// the ledger clock forward for good.
    #[arg(long, env = "LICENSED_MAX_CLOCK_OFFSET_MS", default_value_t = crate::raft::clock::DEFAULT_MAX_OFFSET.as_millis() as u64)]
    pub max_clock_offset_ms: u64,

    /// Raft heartbeat interval.
    #[arg(long, env = "LICENSED_HEARTBEAT_MS", default_value_t = 100)]
    pub heartbeat_ms: u64,

    /// Raft election timeout, lower bound. Above fsync stalls (~100 ms under load); the
    /// leader lease and pre-vote keep one slow follower from starting an election.
    #[arg(long, env = "LICENSED_ELECTION_MIN_MS", default_value_t = 250)]
    pub election_min_ms: u64,

    /// Raft election timeout, upper bound.
    #[arg(long, env = "LICENSED_ELECTION_MAX_MS", default_value_t = 500)]
    pub election_max_ms: u64,

    /// Build a snapshot (and compact the log) every this many applied entries.
    #[arg(long, env = "LICENSED_SNAPSHOT_EVERY", default_value_t = 10_000)]
    pub snapshot_every: u64,

    /// Log format: `text` or `json`.
    #[arg(long, env = "LICENSED_LOG_FORMAT", default_value = "text")]
    pub log_format: String,
}

/// Parses a listen address as users type it: `:PORT` (every interface), `HOST:PORT`,
/// `[IPv6]:PORT`, or a host name with a port (`localhost:22022`).
pub fn parse_listen_addr(text: &str) -> Result<SocketAddr, String> {
    let text = text.trim();
    let expected = "expected :PORT, HOST:PORT, [IPv6]:PORT or a host name with a port";
    if let Some(port) = text.strip_prefix(':') {
        let port: u16 = port
            .parse()
            .map_err(|_| format!("{text:?}: {port:?} is not a port (0-65535); {expected}"))?;
        return Ok(SocketAddr::from(([0, 0, 0, 0], port)));
    }
    if let Ok(addr) = text.parse::<SocketAddr>() {
        return Ok(addr);
    }
    if !text.contains(':') {
        return Err(format!("{text:?} has no port; {expected}"));
    }
    text.to_socket_addrs()
        .map_err(|e| format!("{text:?}: {e}; {expected}"))?
        .next()
        .ok_or_else(|| format!("{text:?} resolves to no address; {expected}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_forms_users_type_are_accepted() {
        assert_eq!(
            parse_listen_addr(":22022"),
            Ok("0.0.0.0:22022".parse().expect("addr"))
        );
        assert_eq!(
            parse_listen_addr("127.0.0.1:0"),
            Ok("127.0.0.1:0".parse().expect("addr"))
        );
        assert_eq!(
            parse_listen_addr("[::1]:22023"),
            Ok("[::1]:22023".parse().expect("addr"))
        );
        let local = parse_listen_addr("localhost:22022").expect("resolves");
        assert!(local.ip().is_loopback() && local.port() == 22022, "{local}");
    }

    #[test]
    fn anything_else_is_refused_with_the_accepted_forms() {
        for bad in [":", ":port", ":70000", "22022", "host", ""] {
            let error = parse_listen_addr(bad).expect_err(bad);
            assert!(error.contains("expected :PORT"), "{bad}: {error}");
        }
    }
}
