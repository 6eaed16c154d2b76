//! `licensed`: parse the configuration, start the node, serve until SIGTERM or Ctrl-C.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use licensed::app::App;
use licensed::borrow::document::LicenseSigner;
use licensed::borrow::pool::{parse_pool, Pool};
use licensed::config::Config;
use licensed::raft::node::{self, NodeOptions};
use licensed::raft::{peer_api, NodeAddr};
use licensed::server::{self, ApiState};
use tokio::net::TcpListener;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config = Config::parse();
    init_tracing(&config.log_format);

    // Bind first: with port 0 the real ports are only known now, and they go into the
    // membership so that peers can reach us.
    let api_listener = TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("cannot listen on {}", config.listen))?;
    let raft_listener = TcpListener::bind(config.raft_listen)
        .await
        .with_context(|| format!("cannot listen on {}", config.raft_listen))?;
    let addr = NodeAddr {
        api_addr: api_listener.local_addr()?.to_string(),
        raft_addr: raft_listener.local_addr()?.to_string(),
    };

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
    })
    .await?;
    let raft_server = axum::serve(raft_listener, peer_api::router(node.raft.clone()));
    let raft_task = tokio::spawn(async move { raft_server.await });

    if node.initialize_single(&addr).await? {
        tracing::info!(node = config.node_id, "created a new one-node cluster");
    }
    node.wait_ready(Duration::from_secs(60)).await?;
    if !node.ledger.read().is_bootstrapped() {
        let signer = load_or_generate_signer(&config)?;
        let pool = pool.unwrap_or_else(|| {
            tracing::warn!("no --pool given: the new cluster starts with an empty license pool");
            Pool {
                licenses: Vec::new(),
                max_borrow_secs: licensed::borrow::license::DEFAULT_MAX_BORROW_SECS,
            }
        });
        let count = pool.licenses.len();
        node.bootstrap_ledger(pool, &signer, config.retention).await?;
        tracing::info!(licenses = count, key_id = signer.key_id(), "license pool loaded");
    } else if config.pool.is_some() {
        tracing::info!("the cluster already has a ledger; --pool is ignored");
    }

    let app = Arc::new(App::new(
        node.clone(),
        Duration::from_millis(config.request_timeout_ms),
    ));
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
    let _ = node.raft.shutdown().await;
    raft_task.abort();
    Ok(())
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
