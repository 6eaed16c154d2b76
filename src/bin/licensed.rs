//! `licensed`: parse the configuration, start the node, serve until SIGTERM or Ctrl-C.

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
use licensed::raft::{cluster, peer_api, NodeAddr};
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

    let node = node::start(&NodeOptions {
        id: config.node_id,
        addr: addr.clone(),
        data_dir: config.data_dir.clone(),
        heartbeat_ms: config.heartbeat_ms,
        election_ms: (config.election_min_ms, config.election_max_ms),
        snapshot_every: config.snapshot_every,
        routes,
    })
    .await?;
    let peer_routes = peer_api::router(node.raft.clone())
        .merge(cluster::router(
            node.raft.clone(),
            config.node_id,
            addr.clone(),
        ))
        .merge(membership::router(
            node.raft.clone(),
            config.admin_token.clone(),
        ));
    let raft_server = axum::serve(raft_listener, peer_routes);
    let raft_task = tokio::spawn(async move { raft_server.await });

    // Who may load the pool: the node that creates the cluster (one node, or the lowest
    // id of --peers). Bootstrap is idempotent, so a retry after a crash is harmless.
    let creator = match (&peers, &config.join) {
        (Some(peers), _) => {
            if membership::bootstrap_static(
                &node.raft,
                config.node_id,
                &addr,
                peers,
                Duration::from_secs(300),
            )
            .await
            .map_err(|e| anyhow::anyhow!("cluster bootstrap: {e}"))?
            {
                tracing::info!(members = peers.len(), "created a new cluster");
            }
            peers.keys().next() == Some(&config.node_id)
        }
        (None, Some(target)) => {
            if !node.raft.is_initialized().await? {
                join(target, config.node_id, &addr).await?;
            }
            false
        }
        (None, None) => {
            if node.initialize_single(&addr).await? {
                tracing::info!(node = config.node_id, "created a new one-node cluster");
            }
            true
        }
    };
    node.wait_ready(Duration::from_secs(300)).await?;

    let app = Arc::new(App::new(
        node.clone(),
        Duration::from_millis(config.request_timeout_ms),
    )?);
    if creator && !node.ledger.read().is_bootstrapped() {
        let signer = load_or_generate_signer(&config)?;
        let pool = pool.unwrap_or_else(|| {
            tracing::warn!("no --pool given: the new cluster starts with an empty license pool");
            Pool {
                licenses: Vec::new(),
                max_borrow_secs: licensed::borrow::license::DEFAULT_MAX_BORROW_SECS,
            }
        });
        let count = pool.licenses.len();
        let loaded = app
            .bootstrap(Bootstrap {
                licenses: pool.licenses,
                max_borrow_secs: pool.max_borrow_secs,
                retention_secs: config.retention,
                signing_key: signer.secret_bytes(),
            })
            .await?;
        if loaded {
            tracing::info!(
                licenses = count,
                key_id = signer.key_id(),
                "license pool loaded"
            );
        }
    } else if config.pool.is_some() {
        tracing::info!("the cluster already has a ledger; --pool is ignored");
    }

    let api = server::router(ApiState {
        app,
        max_body_bytes: config.max_body_bytes,
    });
    // Tests and scripts read this line to learn the port when --listen uses port 0.
    println!("licensed listening on http://{}", addr.api_addr);
    tracing::info!(api = %addr.api_addr, raft = %addr.raft_addr, "serving");

    axum::serve(api_listener, api)
        .with_graceful_shutdown(shutdown_signal())
        .await?;
    tracing::info!("shutting down");
    membership::step_down(&node.raft).await;
    let _ = node.raft.shutdown().await;
    raft_task.abort();
    Ok(())
}

/// Asks a member of a running cluster to add this node; returns once it is a voter.
async fn join(target: &str, id: u64, addr: &NodeAddr) -> anyhow::Result<()> {
    let request = AddRequest {
        id,
        raft_addr: addr.raft_addr.clone(),
    };
    let url = format!("http://{target}{}", membership::ADD_PATH);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(300);
    loop {
        let answer = reqwest::Client::new()
            .post(&url)
            .timeout(Duration::from_secs(120))
            .json(&request)
            .send()
            .await;
        match answer {
            Ok(response) => {
                let body: serde_json::Value = response.json().await?;
                if body["ok"].as_bool() == Some(true) {
                    tracing::info!(%target, "joined the cluster");
                    return Ok(());
                }
                let reason = body["reason"].as_str().unwrap_or("refused").to_string();
                if tokio::time::Instant::now() >= deadline {
                    anyhow::bail!("joining via {target}: {reason}");
                }
                tracing::warn!(%target, %reason, "join refused; retrying");
            }
            Err(e) if tokio::time::Instant::now() < deadline => {
                tracing::warn!(%target, error = %e, "cluster not reachable; retrying");
            }
            Err(e) => anyhow::bail!("joining via {target}: {e}"),
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

fn load_or_generate_signer(config: &Config) -> anyhow::Result<LicenseSigner> {
    match &config.signing_key {
        Some(path) => {
            let pem = std::fs::read_to_string(path)
                .with_context(|| format!("cannot read signing key {}", path.display()))?;
            LicenseSigner::from_pkcs8_pem(&pem)
                .with_context(|| format!("signing key {}", path.display()))
        }
        None => Ok(LicenseSigner::generate()?),
    }
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
