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

    /// PEM certificate chain for the client port: with `--tls-key`, clients speak HTTPS
    /// (HTTP/1.1 and HTTP/2). Re-read when the file changes, without a restart.
    #[arg(long, env = "LICENSED_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,

    /// PEM private key of `--tls-cert` (re-read with it).
    #[arg(long, env = "LICENSED_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,

    /// PEM CA certificate(s): clients must present a certificate signed by one of them.
    #[arg(long, env = "LICENSED_TLS_CLIENT_CA", requires = "tls_cert")]
    pub tls_client_ca: Option<PathBuf>,

    /// PEM certificate of this node on the peer port, signed by `--peer-tls-ca`: peers
    /// talk mutual TLS and prove membership with their certificates.
    #[arg(long, env = "LICENSED_PEER_TLS_CERT", requires_all = ["peer_tls_key", "peer_tls_ca"])]
    pub peer_tls_cert: Option<PathBuf>,

    /// PEM private key of `--peer-tls-cert`.
    #[arg(long, env = "LICENSED_PEER_TLS_KEY", requires = "peer_tls_cert")]
    pub peer_tls_key: Option<PathBuf>,

    /// PEM certificate of the cluster CA that signs every node's peer certificate.
    #[arg(long, env = "LICENSED_PEER_TLS_CA", requires = "peer_tls_cert")]
    pub peer_tls_ca: Option<PathBuf>,

    /// File holding the cluster secret (at least 16 bytes, the same on every node): without
    /// peer certificates, every peer request carries an HMAC made with it.
    #[arg(
        long,
        env = "LICENSED_CLUSTER_SECRET_FILE",
        conflicts_with = "cluster_secret"
    )]
    pub cluster_secret_file: Option<PathBuf>,

    /// The cluster secret itself (prefer `--cluster-secret-file`: a flag shows in `ps`).
    #[arg(
        long,
        env = "LICENSED_CLUSTER_SECRET",
        hide_env_values = true,
        allow_hyphen_values = true
    )]
    pub cluster_secret: Option<String>,

    /// Let a multi-node cluster run without peer certificates or a cluster secret: anyone
    /// who reaches the peer port can then act as a node. For a trial on one machine only.
    #[arg(long, env = "LICENSED_INSECURE_PEERS")]
    pub insecure_peers: bool,

    /// Connections served at once per port; more get HTTP 503 and are closed.
    #[arg(long, env = "LICENSED_MAX_CONNECTIONS", default_value_t = crate::transport::serve::DEFAULT_MAX_CONNECTIONS)]
    pub max_connections: usize,

    /// Client requests answered at once; more get HTTP 503 with `Retry-After`.
    #[arg(long, env = "LICENSED_MAX_CONCURRENT_REQUESTS", default_value_t = crate::transport::limits::DEFAULT_MAX_CONCURRENT_REQUESTS)]
    pub max_concurrent_requests: usize,

    /// Concurrent requests (HTTP/2 streams) on one connection; HTTP/1.1 runs one at a time.
    #[arg(long, env = "LICENSED_MAX_STREAMS_PER_CONNECTION", default_value_t = crate::transport::serve::DEFAULT_MAX_STREAMS_PER_CONNECTION)]
    pub max_streams_per_connection: u32,

    /// Time a client gets to finish the TLS handshake and to send a request's headers;
    /// then the connection is closed (slow clients hold nothing longer).
    #[arg(long, env = "LICENSED_HEADER_READ_TIMEOUT_MS", default_value_t = crate::transport::serve::DEFAULT_HEADER_READ_TIMEOUT.as_millis() as u64)]
    pub header_read_timeout_ms: u64,

    /// Time a client gets to send a request's body.
    #[arg(long, env = "LICENSED_BODY_READ_TIMEOUT_MS", default_value_t = crate::transport::limits::DEFAULT_BODY_READ_TIMEOUT.as_millis() as u64)]
    pub body_read_timeout_ms: u64,

    /// Deadline for a whole client request, a batch included.
    #[arg(long, env = "LICENSED_REQUEST_DEADLINE_MS", default_value_t = crate::transport::limits::DEFAULT_REQUEST_DEADLINE.as_millis() as u64)]
    pub request_deadline_ms: u64,

    /// Deepest nesting of arrays and objects in a request.
    #[arg(long, env = "LICENSED_MAX_JSON_DEPTH", default_value_t = crate::transport::json_shape::DEFAULT_MAX_DEPTH)]
    pub max_json_depth: usize,

    /// Longest string in a request, in bytes.
    #[arg(long, env = "LICENSED_MAX_STRING_BYTES", default_value_t = crate::transport::json_shape::DEFAULT_MAX_STRING_BYTES)]
    pub max_string_bytes: usize,

    /// Raft address other nodes use to reach this one (default: the bound `--raft-listen`).
    #[arg(long, env = "LICENSED_ADVERTISE_RAFT")]
    pub advertise_raft: Option<String>,

    /// Client address other nodes report for this one (default: the bound `--listen`).
    #[arg(long, env = "LICENSED_ADVERTISE_API")]
    pub advertise_api: Option<String>,

    /// This node's id in the cluster, or `from-hostname`: a StatefulSet pod's hostname
    /// `NAME-ORDINAL` gives ORDINAL + 1 (the hostname is `$HOSTNAME`, else the kernel's).
    #[arg(long, env = "LICENSED_NODE_ID", default_value = "1", value_parser = parse_node_id)]
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
    #[arg(long, env = "LICENSED_SNAPSHOT_EVERY", default_value_t = 100_000)]
    pub snapshot_every: u64,

    /// Log format: `text` or `json`.
    #[arg(long, env = "LICENSED_LOG_FORMAT", default_value = "text")]
    pub log_format: String,

    /// Refuse `/licenses` calls that carry no valid API key (`Authorization: Bearer
    /// lk_…`) or the admin token. Without it, calls without a key work as in the Borrow API
    /// (MVTec's clients send none); a key that is sent must be valid either way.
    #[arg(long, env = "LICENSED_REQUIRE_API_KEYS")]
    pub require_api_keys: bool,

    /// Do not serve the web console (`/ui`) on the client port. It holds no secret and
    /// uses only the client API, so turning it off removes pages, not capabilities.
    #[arg(long, env = "LICENSED_NO_WEB_CONSOLE")]
    pub no_web_console: bool,

    /// Threads that serve requests and run Raft. Default: one per CPU this process may
    /// use (affinity and cgroup quota count). Fewer where several nodes share a machine's
    /// cores: each thread of a node that has nothing to do parks and is woken again, and
    /// that wake-up costs CPU the other nodes could use. RocksDB's and the fsync threads
    /// are apart from these.
    #[arg(long, env = "LICENSED_WORKER_THREADS", value_parser = clap::value_parser!(u16).range(1..=1024))]
    pub worker_threads: Option<u16>,
}

/// `--node-id`: a number, or `from-hostname` (see [`node_id_from_hostname`]).
pub fn parse_node_id(text: &str) -> Result<u64, String> {
    if text.trim() == "from-hostname" {
        let hostname = std::env::var("HOSTNAME")
            .ok()
            .filter(|name| !name.trim().is_empty())
            .or_else(|| std::fs::read_to_string("/proc/sys/kernel/hostname").ok())
            .unwrap_or_default();
        return node_id_from_hostname(hostname.trim());
    }
    text.trim()
        .parse()
        .map_err(|_| format!("{text:?} is not a node id: a whole number, or from-hostname"))
}

/// The node id of a StatefulSet pod: its hostname is `NAME-ORDINAL`, its id ORDINAL + 1
/// (ids start at 1; ordinals at 0).
pub fn node_id_from_hostname(hostname: &str) -> Result<u64, String> {
    let ordinal = hostname
        .rsplit_once('-')
        .and_then(|(_, ordinal)| ordinal.parse::<u64>().ok())
        .ok_or_else(|| {
            format!(
                "--node-id from-hostname: hostname {hostname:?} does not end in -ORDINAL (a StatefulSet pod's name)"
            )
        })?;
    ordinal
        .checked_add(1)
        .ok_or_else(|| format!("hostname {hostname:?}: ordinal too large"))
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
    #[test]
    fn a_statefulset_pod_name_gives_ordinal_plus_one() {
        assert_eq!(node_id_from_hostname("licensed-0"), Ok(1));
        assert_eq!(node_id_from_hostname("my-release-licensed-4"), Ok(5));
        assert!(node_id_from_hostname("licensed").is_err());
        assert!(node_id_from_hostname("licensed-x").is_err());
        assert!(node_id_from_hostname("").is_err());
        assert_eq!(parse_node_id(" 7 "), Ok(7));
        assert!(parse_node_id("seven").is_err());
    }

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
    fn worker_threads_default_to_the_runtime_choice_and_refuse_zero() {
        let parse = |extra: &[&str]| {
            Config::try_parse_from(["licensed"].iter().chain(extra).copied())
                .map(|config| config.worker_threads)
        };
        assert_eq!(parse(&[]).expect("defaults parse"), None);
        assert_eq!(parse(&["--worker-threads", "3"]).expect("3"), Some(3));
        for bad in ["0", "1025", "two"] {
            let error = parse(&["--worker-threads", bad]).expect_err(bad);
            assert!(
                error.to_string().contains("--worker-threads"),
                "{bad}: {error}"
            );
        }
    }

    #[test]
    fn anything_else_is_refused_with_the_accepted_forms() {
        for bad in [":", ":port", ":70000", "22022", "host", ""] {
            let error = parse_listen_addr(bad).expect_err(bad);
            assert!(error.contains("expected :PORT"), "{bad}: {error}");
        }
    }
}
