//! From flags to the transport of both ports: the client port's TLS, the peer port's TLS
//! and credentials, and the refusal to run a cluster whose peer port trusts anyone.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use rustls::ServerConfig;

use super::json_shape::JsonShape;
use super::limits::RequestLimits;
use super::peer::{ClusterSecret, PeerDialer, PeerGate, WeakSecret};
use super::serve::ConnectionLimits;
use super::tls::{self, CertStore, ClientCerts, TlsError};
use crate::cluster::admin::{ADD_PATH, FAILPOINTS_PATH, REMOVE_PATH, STATUS_PATH, TRANSFER_PATH};
use crate::cluster::forward::INFO_PATH;
use crate::config::Config;

/// Why the transport could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    /// A certificate, key or CA could not be used.
    #[error("{flag}: {source}")]
    Tls {
        /// The flag naming the file.
        flag: &'static str,
        /// What is wrong.
        source: TlsError,
    },
    /// The cluster secret file could not be read.
    #[error("--cluster-secret-file {path}: {source}")]
    SecretFile {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The cluster secret is too short.
    #[error("cluster secret: {0}")]
    WeakSecret(#[from] WeakSecret),
    /// A cluster would run with a peer port anyone can use.
    #[error("a cluster's nodes must prove who they are to each other: give every node the same --cluster-secret-file, or peer certificates (--peer-tls-cert, --peer-tls-key, --peer-tls-ca); --insecure-peers runs without (for a trial on one machine only)")]
    InsecurePeers,
}

fn tls_error(flag: &'static str) -> impl FnOnce(TlsError) -> SetupError {
    move |source| SetupError::Tls { flag, source }
}

/// The client port's TLS, or `None` for plain HTTP (logged as a warning).
pub fn client_tls(config: &Config) -> Result<Option<Arc<ServerConfig>>, SetupError> {
    let (Some(cert), Some(key)) = (&config.tls_cert, &config.tls_key) else {
        tracing::warn!("serving clients over plain HTTP: borrows and return tokens cross the network unencrypted (give --tls-cert and --tls-key for HTTPS)");
        return Ok(None);
    };
    let store = CertStore::load(cert, key).map_err(tls_error("--tls-cert/--tls-key"))?;
    store.watch("api");
    let clients = match &config.tls_client_ca {
        Some(ca) => {
            ClientCerts::Required(tls::load_roots(ca).map_err(tls_error("--tls-client-ca"))?)
        }
        None => ClientCerts::NotAsked,
    };
    tls::server_config(store, clients)
        .map(Some)
        .map_err(tls_error("--tls-cert/--tls-key"))
}

/// The peer port's transport: its TLS, how this node dials peers, and the gate.
pub struct PeerTransport {
    /// TLS of the peer port (mutual: peers present their certificates).
    pub tls: Option<Arc<ServerConfig>>,
    /// How this node dials its peers.
    pub dialer: PeerDialer,
    /// What the peer port asks of a request.
    pub gate: Arc<PeerGate>,
}

/// Paths of the peer port open to anyone: the cluster's status and a node's identity,
/// for operators and for nodes looking for their cluster.
const OPEN_PATHS: &[&str] = &[STATUS_PATH, INFO_PATH];
/// Paths of admin changes: a peer's credentials, or the admin token.
const ADMIN_PATHS: &[&str] = &[ADD_PATH, REMOVE_PATH, TRANSFER_PATH, FAILPOINTS_PATH];

/// The peer transport from the flags. A node given `--peers` or `--join` refuses to start
/// with neither certificates nor a secret, unless `--insecure-peers`.
pub fn peer_transport(config: &Config) -> Result<PeerTransport, SetupError> {
    let secret = match (&config.cluster_secret_file, &config.cluster_secret) {
        (Some(path), _) => {
            let text = std::fs::read_to_string(path).map_err(|source| SetupError::SecretFile {
                path: path.clone(),
                source,
            })?;
            Some(ClusterSecret::new(&text)?)
        }
        (None, Some(text)) => Some(ClusterSecret::new(text)?),
        (None, None) => None,
    };
    let (tls, client_tls) = match (
        &config.peer_tls_cert,
        &config.peer_tls_key,
        &config.peer_tls_ca,
    ) {
        (Some(cert), Some(key), Some(ca)) => {
            let store =
                CertStore::load(cert, key).map_err(tls_error("--peer-tls-cert/--peer-tls-key"))?;
            store.watch("peer");
            let roots = tls::load_roots(ca).map_err(tls_error("--peer-tls-ca"))?;
            let server = tls::server_config(store.clone(), ClientCerts::Optional(roots.clone()))
                .map_err(tls_error("--peer-tls-cert"))?;
            let client =
                tls::client_config(roots, Some(store)).map_err(tls_error("--peer-tls-cert"))?;
            (Some(server), Some(client))
        }
        _ => (None, None),
    };
    let clustered = config.peers.is_some() || config.join.is_some();
    let secured = secret.is_some() || tls.is_some();
    if clustered && !secured && !config.insecure_peers {
        return Err(SetupError::InsecurePeers);
    }
    if config.insecure_peers && !secured {
        tracing::warn!(
            "--insecure-peers: anyone who reaches the peer port can act as a node of this cluster"
        );
    }
    Ok(PeerTransport {
        tls,
        dialer: PeerDialer::new(client_tls, secret.clone()),
        gate: Arc::new(PeerGate {
            secret,
            insecure: config.insecure_peers && !secured,
            admin_token_set: config.admin_token.is_some(),
            open_paths: OPEN_PATHS,
            admin_paths: ADMIN_PATHS,
        }),
    })
}

/// Connection limits from the flags.
pub fn connection_limits(config: &Config) -> ConnectionLimits {
    ConnectionLimits {
        max_connections: config.max_connections.max(1),
        header_read_timeout: Duration::from_millis(config.header_read_timeout_ms.max(1)),
        max_streams_per_connection: config.max_streams_per_connection.max(1),
    }
}

/// The client port's request limits from the flags.
pub fn request_limits(config: &Config) -> RequestLimits {
    RequestLimits::new(
        config.max_concurrent_requests.max(1),
        Duration::from_millis(config.body_read_timeout_ms.max(1)),
        Duration::from_millis(config.request_deadline_ms.max(1)),
    )
}

/// The JSON shape bounds from the flags.
pub fn json_shape(config: &Config) -> JsonShape {
    JsonShape {
        max_depth: config.max_json_depth.max(1),
        max_string_bytes: config.max_string_bytes.max(1),
    }
}
