//! `licensed`: parse the configuration, start the node, serve until SIGTERM or Ctrl-C.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use licensed::app::App;
use licensed::borrow::document::LicenseSigner;
use licensed::borrow::pool::{parse_pool, Pool};
use licensed::config::Config;
use licensed::raft::membership::{self, AddRequest};
use licensed::raft::node::{self, NodeOptions};
use licensed::raft::routes::PeerRoutes;
use licensed::raft::{clock, cluster, identity, peer_api, NodeAddr};
use licensed::server::{self, ApiState};
use licensed::state::Bootstrap;
use tokio::net::TcpListener;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config = Config::parse();
    init_tracing(&config.log_format);
    // Chaos builds only: crash points from the FAILPOINTS environment variable.
    #[cfg(feature = "failpoints")]
    let _failpoints = arm_failpoints();

    // Bind first: with port 0 the real ports are only known now, and they go into the
    // membership so that peers can reach us.
    let api_listener = TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("cannot listen on {}", config.listen))?;
    let raft_listener = TcpListener::bind(config.raft_listen)
        .await
        .with_context(|| format!("cannot listen on {}", config.raft_listen))?;
    let addr = NodeAddr {
        api_addr: match &config.advertise_api {
            Some(advertised) => advertised.clone(),
            None => api_listener.local_addr()?.to_string(),
        },
        raft_addr: match &config.advertise_raft {
            Some(advertised) => advertised.clone(),
            None => raft_listener.local_addr()?.to_string(),
        },
    };
    let peers = config
        .peers
        .as_deref()
        .map(membership::parse_peers)
        .transpose()
        .map_err(|e| anyhow::anyhow!("--peers: {e}"))?;

    let routes =
        PeerRoutes::parse(&config.peer_routes).map_err(|e| anyhow::anyhow!("--peer-route: {e}"))?;

    let pool = match &config.pool {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("cannot read pool file {}", path.display()))?;
            Some(parse_pool(&text).with_context(|| format!("pool file {}", path.display()))?)
        }
        None => None,
    };

    // A bad key file is a configuration error: refuse to start rather than serve.
    let signer = config.signing_key.as_deref().map(load_signer).transpose()?;

    let node = node::start(&NodeOptions {
        id: config.node_id,
        addr: addr.clone(),
        data_dir: config.data_dir.clone(),
        heartbeat_ms: config.heartbeat_ms,
        election_ms: (config.election_min_ms, config.election_max_ms),
        snapshot_every: config.snapshot_every,
        routes,
        max_clock_offset: Duration::from_millis(config.max_clock_offset_ms),
    })
    .await?;
    // Raft RPCs only while this data dir is admitted, and only from this cluster.
    let raft_rpcs = peer_api::router(node.raft.clone()).route_layer(
        axum::middleware::from_fn_with_state(node.identity.clone(), identity::guard),
    );
    let peer_routes = raft_rpcs
        .merge(cluster::router(
            &node,
            addr.clone(),
            Duration::from_millis(config.request_timeout_ms),
        ))
        .merge(membership::router(&node, config.admin_token.clone()))
        // Every node-to-node request and answer carries the sender's clock.
        .layer(axum::middleware::from_fn_with_state(
            node.clocks.clone(),
            clock::exchange,
        ));
    let raft_server = axum::serve(raft_listener, peer_routes);
    let raft_task = tokio::spawn(async move { raft_server.await });

    // Clients are served from the start: until the node has a leader and a ledger they
    // get -32603 with a reason, /readyz answers 503 and /healthz 200. The node never
    // exits for lack of a quorum; it keeps trying and says why in /readyz and the log.
    let app = Arc::new(App::new(
        node.clone(),
        Duration::from_millis(config.request_timeout_ms),
    )?);
    let api = server::router(ApiState {
        app: app.clone(),
        max_body_bytes: config.max_body_bytes,
        admin_token: config.admin_token.as_deref().map(Arc::from),
    });
    tracing::info!(api = %addr.api_addr, raft = %addr.raft_addr, "serving; ready once the cluster has a leader and a ledger");
    let startup = tokio::spawn(become_ready(Startup {
        config,
        node: node.clone(),
        app,
        addr,
        peers,
        pool,
        signer,
    }));

    axum::serve(api_listener, api)
        .with_graceful_shutdown(shutdown_signal())
        .await?;
    tracing::info!("shutting down");
    startup.abort();
    membership::step_down(&node.raft).await;
    let _ = node.raft.shutdown().await;
    raft_task.abort();
    Ok(())
}

/// What the node needs to form or join its cluster and load the pool.
struct Startup {
    config: Config,
    node: node::Node,
    app: Arc<App>,
    addr: NodeAddr,
    peers: Option<BTreeMap<u64, String>>,
    pool: Option<Pool>,
    signer: Option<LicenseSigner>,
}

/// Pause between attempts to form, join or load while the cluster cannot answer.
const STARTUP_RETRY: Duration = Duration::from_secs(1);
/// How long one wait for a leader lasts before the node says again why it waits.
const READY_REPORT_EVERY: Duration = Duration::from_secs(30);

/// Forms or joins the cluster, waits for a leader, loads the pool when this node creates
/// the cluster, then announces readiness. Retries every step for as long as it takes.
async fn become_ready(startup: Startup) {
    let Startup {
        config,
        node,
        app,
        addr,
        peers,
        pool,
        signer,
    } = startup;
    // Who may load the pool: the node that creates the cluster (one node, or the lowest
    // id of --peers). Bootstrap is idempotent, so a retry after a crash is harmless.
    let creator = loop {
        let attempt = match (&peers, &config.join) {
            (Some(peers), _) => {
                form_or_rejoin(&node, &addr, peers, config.admin_token.as_deref()).await
            }
            (None, Some(target)) => join(&node, target, &addr, config.admin_token.as_deref())
                .await
                .map(|()| false),
            (None, None) => match node.initialize_single(&addr).await {
                Ok(created) => {
                    if created {
                        tracing::info!(node = config.node_id, "created a new one-node cluster");
                    }
                    Ok(true)
                }
                Err(e) => Err(e.to_string()),
            },
        };
        match attempt {
            Ok(creator) => break creator,
            Err(reason) => {
                let reason = format!("cannot form or join the cluster yet: {reason}");
                tracing::warn!(%reason, "retrying");
                app.set_starting(Some(reason));
                tokio::time::sleep(STARTUP_RETRY).await;
            }
        }
    };
    app.set_starting(None);
    while let Err(e) = node.wait_ready(READY_REPORT_EVERY).await {
        tracing::warn!(error = %e, "no leader yet (a quorum of the voters must be up); still waiting");
    }
    if creator && !node.ledger.read().is_bootstrapped() {
        load_pool(&app, &config, pool, signer).await;
    } else if config.pool.is_some() {
        tracing::info!("the cluster already has a ledger; --pool is ignored");
    }
    // Tests and scripts read this line to learn the port when --listen uses port 0.
    println!("licensed listening on http://{}", addr.api_addr);
    tracing::info!("ready");
}

/// `--peers`: creates the cluster when this node has the lowest id and no peer belongs to
/// one yet; otherwise waits to be admitted by the creator or, when the cluster already
/// runs and this data dir is not admitted (new, or back empty), asks to be added — the
/// leader then removes the old incarnation of this id first. Returns whether this node
/// is the creator (who loads the pool).
async fn form_or_rejoin(
    node: &node::Node,
    addr: &NodeAddr,
    peers: &BTreeMap<u64, String>,
    admin_token: Option<&str>,
) -> Result<bool, String> {
    let created =
        membership::bootstrap_static(node, addr, peers, admin_token, READY_REPORT_EVERY).await?;
    if created {
        tracing::info!(members = peers.len(), "created a new cluster");
    }
    if !node.identity.get().admitted {
        match membership::find_cluster(node, peers).await? {
            Some(target) => join(node, &target, addr, admin_token).await?,
            None => {
                return Err(format!(
                    "node {} is not admitted yet: waiting for the lowest id of --peers to create the cluster",
                    node.id
                ))
            }
        }
    }
    Ok(peers.keys().next() == Some(&node.id))
}

/// Loads the pool into the new cluster's ledger, retrying while there is no quorum.
async fn load_pool(app: &App, config: &Config, pool: Option<Pool>, signer: Option<LicenseSigner>) {
    let signer = match signer {
        Some(signer) => signer,
        None => match LicenseSigner::generate() {
            Ok(signer) => signer,
            Err(e) => {
                tracing::error!(error = %e, "cannot generate a signing key; the pool is not loaded");
                return;
            }
        },
    };
    let pool = pool.unwrap_or_else(|| {
        tracing::warn!("no --pool given: the new cluster starts with an empty license pool");
        Pool {
            licenses: Vec::new(),
            max_borrow_secs: licensed::borrow::license::DEFAULT_MAX_BORROW_SECS,
        }
    });
    let count = pool.licenses.len();
    let bootstrap = Bootstrap {
        licenses: pool.licenses,
        max_borrow_secs: pool.max_borrow_secs,
        retention_secs: config.retention,
        signing_key: signer.secret_bytes(),
    };
    loop {
        match app.bootstrap(bootstrap.clone()).await {
            Ok(true) => {
                tracing::info!(
                    licenses = count,
                    key_id = signer.key_id(),
                    "license pool loaded"
                );
                return;
            }
            Ok(false) => return,
            Err(e) => {
                tracing::warn!(error = %e, "cannot load the license pool yet; retrying");
                tokio::time::sleep(STARTUP_RETRY).await;
            }
        }
    }
}

/// Asks a member of a running cluster to add this node (a no-op once it belongs to a
/// cluster). One attempt; the caller retries.
async fn join(
    node: &node::Node,
    target: &str,
    addr: &NodeAddr,
    admin_token: Option<&str>,
) -> Result<(), String> {
    let initialized = node
        .raft
        .is_initialized()
        .await
        .map_err(|e| e.to_string())?;
    if initialized && node.identity.get().admitted {
        return Ok(());
    }
    let request = AddRequest {
        id: node.id,
        raft_addr: addr.raft_addr.clone(),
    };
    // The member passes it on to the leader: its bound plus a margin.
    let timeout = membership::ADMIN_CALL_TIMEOUT + Duration::from_secs(10);
    let message =
        membership::post_admin(target, membership::ADD_PATH, &request, admin_token, timeout)
            .await
            .map_err(|reason| format!("join via {target}: {reason}"))?;
    tracing::info!(%target, %message, "joined the cluster");
    Ok(())
}

fn load_signer(path: &std::path::Path) -> anyhow::Result<LicenseSigner> {
    let pem = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read signing key {}", path.display()))?;
    LicenseSigner::from_pkcs8_pem(&pem).with_context(|| format!("signing key {}", path.display()))
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = terminate => {},
    }
}

fn init_tracing(format: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,openraft=warn"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if format == "json" {
        builder.json().init();
    } else {
        builder.init();
    }
}

/// Reads `FAILPOINTS` (e.g. `log-append-after=1%panic`) and makes a triggered panic a
/// process crash, the way a power cut or `kill -9` at that instant would look: a panic in
/// one task would otherwise leave the process half alive.
#[cfg(feature = "failpoints")]
fn arm_failpoints() -> fail::FailScenario<'static> {
    let scenario = fail::FailScenario::setup();
    if std::env::var_os("FAILPOINTS").is_some_and(|v| !v.is_empty()) {
        let default_hook = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            default_hook(info);
            std::process::abort();
        }));
        tracing::warn!("failpoints armed from FAILPOINTS");
    }
    scenario
}
