//! Running a node: bind the two ports, open the stores, serve the client API and the
//! node-to-node API, come into the cluster in the background, and stop cleanly when
//! `shutdown` resolves. The `licensed` binary parses flags and calls [`run`]; tests and
//! tools can do the same in-process.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;

use crate::app::{App, AppError};
use crate::borrow::document::{KeyError, LicenseSigner};
use crate::borrow::pool::{parse_pool, Pool, PoolError};
use crate::cluster::formation::{parse_peers, PeersError};
use crate::cluster::startup::{become_ready, Membership, Startup};
use crate::cluster::{admin, forward};
use crate::config::Config;
use crate::raft::node::{self, NodeError, NodeOptions};
use crate::raft::routes::PeerRoutes;
use crate::raft::{clock, identity, peer_api, NodeAddr};
use crate::server::{self, ApiState};
use crate::transport::{serve, setup};

/// Why a node could not start or stopped serving.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// A port could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address asked for.
        addr: SocketAddr,
        /// Why.
        source: io::Error,
    },
    /// A file named by a flag could not be read.
    #[error("cannot read {what} {path}: {source}")]
    Read {
        /// Which file (`pool file`, `signing key`).
        what: &'static str,
        /// Its path.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
    /// `--pool` is not a valid pool.
    #[error("pool file {path}: {source}")]
    Pool {
        /// Its path.
        path: PathBuf,
        /// What is wrong with it.
        source: PoolError,
    },
    /// `--signing-key` is not a usable key: refuse to start rather than serve.
    #[error("signing key {path}: {source}")]
    SigningKey {
        /// Its path.
        path: PathBuf,
        /// What is wrong with it.
        source: KeyError,
    },
    /// `--peers` cannot be read.
    #[error("--peers: {0}")]
    Peers(#[from] PeersError),
    /// `--peer-route` cannot be read.
    #[error("--peer-route: {0}")]
    PeerRoute(String),
    /// The stores or Raft could not be started.
    #[error(transparent)]
    Node(#[from] NodeError),
    /// The client API could not be set up.
    #[error(transparent)]
    App(#[from] AppError),
    /// Serving failed.
    #[error("serving: {0}")]
    Serve(io::Error),
    /// TLS, peer credentials or limits could not be set up.
    #[error(transparent)]
    Transport(#[from] crate::transport::setup::SetupError),
    /// Chaos builds only: `LICENSED_BROKEN` names no known broken mode.
    #[cfg(feature = "failpoints")]
    #[error(transparent)]
    Broken(#[from] crate::broken::UnknownMode),
}

/// The two bound ports of a node.
#[derive(Debug)]
pub struct Listeners {
    /// Clients: `/licenses`, health, metrics.
    pub api: TcpListener,
    /// Node-to-node: Raft, forwarding, admin.
    pub raft: TcpListener,
}

impl Listeners {
    /// Binds `--listen` and `--raft-listen`. Binding comes first: with port 0 the real
    /// ports are only known now, and they go into the membership so peers can reach us.
    pub async fn bind(config: &Config) -> Result<Listeners, RunError> {
        let bind = |addr: SocketAddr| async move {
            TcpListener::bind(addr)
                .await
                .map_err(|source| RunError::Bind { addr, source })
        };
        Ok(Listeners {
            api: bind(config.listen).await?,
            raft: bind(config.raft_listen).await?,
        })
    }

    /// The addresses peers and clients reach this node at: the advertised ones when
    /// configured, else the bound ones.
    fn advertised(&self, config: &Config) -> Result<NodeAddr, RunError> {
        let local = |listener: &TcpListener, addr: SocketAddr| {
            listener
                .local_addr()
                .map(|bound| bound.to_string())
                .map_err(|source| RunError::Bind { addr, source })
        };
        Ok(NodeAddr {
            api_addr: match &config.advertise_api {
                Some(advertised) => advertised.clone(),
                None => local(&self.api, config.listen)?,
            },
            raft_addr: match &config.advertise_raft {
                Some(advertised) => advertised.clone(),
                None => local(&self.raft, config.raft_listen)?,
            },
        })
    }
}

/// Runs a node until `shutdown` resolves: then hands leadership over (when leading),
/// stops Raft and returns.
///
/// Clients are served from the start: until the node has a leader and a ledger they get
/// `-32603` with a reason, `/readyz` answers 503 and `/healthz` 200. The node never exits
/// for lack of a quorum; it keeps trying and says why in `/readyz` and the log.
pub async fn run(
    config: Config,
    listeners: Listeners,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), RunError> {
    // Chaos builds only: a deliberately broken mode, or a refusal to start on an unknown one.
    #[cfg(feature = "failpoints")]
    crate::broken::init()?;
    let addr = listeners.advertised(&config)?;
    let membership = match (&config.peers, &config.join) {
        (Some(peers), _) => Membership::Peers(parse_peers(peers)?),
        (None, Some(target)) => Membership::Join(target.clone()),
        (None, None) => Membership::Single,
    };
    let routes = PeerRoutes::parse(&config.peer_routes).map_err(RunError::PeerRoute)?;
    let pool = config.pool.as_deref().map(read_pool).transpose()?;
    let signer = config.signing_key.as_deref().map(read_signer).transpose()?;
    let api_tls = setup::client_tls(&config)?;
    let peer = setup::peer_transport(&config)?;
    let connection_limits = setup::connection_limits(&config);

    let node = node::start(&NodeOptions {
        id: config.node_id,
        data_dir: config.data_dir.clone(),
        heartbeat_ms: config.heartbeat_ms,
        election_ms: (config.election_min_ms, config.election_max_ms),
        snapshot_every: config.snapshot_every,
        routes,
        max_clock_offset: Duration::from_millis(config.max_clock_offset_ms),
        dialer: peer.dialer.clone(),
    })
    .await?;
    let request_timeout = Duration::from_millis(config.request_timeout_ms);

    // Raft RPCs only while this data dir is admitted, and only from this cluster.
    let raft_rpcs = peer_api::router(node.raft.clone()).route_layer(
        axum::middleware::from_fn_with_state(node.identity.clone(), identity::guard),
    );
    let peer_routes = raft_rpcs
        .merge(forward::router(&node, addr.clone(), request_timeout))
        .merge(admin::router(&node, config.admin_token.clone()))
        // Every node-to-node request and answer carries the sender's clock.
        .layer(axum::middleware::from_fn_with_state(
            node.clocks.clone(),
            clock::exchange,
        ))
        // Outermost: nothing of a request from outside the cluster is looked at.
        .layer(axum::middleware::from_fn_with_state(
            peer.gate.clone(),
            crate::transport::peer::gate,
        ));
    let raft_server = serve::serve(
        serve::Port {
            name: "peer",
            listener: listeners.raft,
            tls: peer.tls,
            limits: connection_limits.clone(),
            router: peer_routes,
        },
        std::future::pending(),
    );
    let raft_task = tokio::spawn(raft_server);

    let app = Arc::new(
        App::new(node.clone(), request_timeout)?.with_admin_token(config.admin_token.clone()),
    );
    let api = server::router(ApiState {
        app: app.clone(),
        max_body_bytes: config.max_body_bytes,
        shape: setup::json_shape(&config),
        admin_token: config.admin_token.as_deref().map(Arc::from),
        require_api_keys: config.require_api_keys,
        web_console: !config.no_web_console,
    });
    tracing::info!(api = %addr.api_addr, raft = %addr.raft_addr, "serving; ready once the cluster has a leader and a ledger");
    let startup = tokio::spawn(become_ready(Startup {
        node: node.clone(),
        app,
        addr,
        membership,
        admin_token: config.admin_token.clone(),
        pool,
        pool_path: config.pool.clone(),
        signer,
        retention_secs: config.retention,
        api_tls: api_tls.is_some(),
    }));

    let api = api.layer(axum::middleware::from_fn_with_state(
        setup::request_limits(&config),
        crate::transport::limits::guard,
    ));
    let served = serve::serve(
        serve::Port {
            name: "api",
            listener: listeners.api,
            tls: api_tls,
            limits: connection_limits,
            router: api,
        },
        shutdown,
    )
    .await;
    tracing::info!("shutting down");
    startup.abort();
    admin::step_down(&node.raft).await;
    let _ = node.raft.shutdown().await;
    raft_task.abort();
    served.map_err(RunError::Serve)
}

fn read_file(what: &'static str, path: &Path) -> Result<String, RunError> {
    std::fs::read_to_string(path).map_err(|source| RunError::Read {
        what,
        path: path.to_path_buf(),
        source,
    })
}

fn read_pool(path: &Path) -> Result<Pool, RunError> {
    parse_pool(&read_file("pool file", path)?).map_err(|source| RunError::Pool {
        path: path.to_path_buf(),
        source,
    })
}

fn read_signer(path: &Path) -> Result<LicenseSigner, RunError> {
    LicenseSigner::from_pkcs8_pem(&read_file("signing key", path)?).map_err(|source| {
        RunError::SigningKey {
            path: path.to_path_buf(),
            source,
        }
    })
}
