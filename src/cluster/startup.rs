//! What a node does once it serves: form or join its cluster, wait for a leader, load the
//! pool when it created the cluster, then announce readiness. Every step is retried for
//! as long as it takes; until then clients get `-32603` with the reason and `/readyz`
//! answers 503 (see [`App::set_starting`]).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use super::admin::{AdminClient, MembershipError};
use super::formation;
use crate::app::App;
use crate::borrow::document::LicenseSigner;
use crate::borrow::license::DEFAULT_MAX_BORROW_SECS;
use crate::borrow::pool::Pool;
use crate::raft::node::Node;
use crate::raft::{NodeAddr, NodeId};
use crate::state::Bootstrap;

/// Pause between attempts to form, join or load while the cluster cannot answer.
const STARTUP_RETRY: Duration = Duration::from_secs(1);
/// How long one wait for a leader lasts before the node says again why it waits.
const READY_REPORT_EVERY: Duration = Duration::from_secs(30);
/// What `licensed` prints on stdout once it serves clients: tests and scripts read the
/// port from this line when `--listen` uses port 0.
pub const READY_LINE_PREFIX: &str = "licensed listening on http://";
/// The ready line of a node whose client port speaks TLS.
pub const READY_LINE_PREFIX_TLS: &str = "licensed listening on https://";

/// How this node comes into its cluster.
#[derive(Debug, Clone)]
pub enum Membership {
    /// `--peers`: form a new cluster with these voters, or rejoin it.
    Peers(BTreeMap<NodeId, String>),
    /// `--join`: ask this member of a running cluster to add this node.
    Join(String),
    /// Neither: a one-node cluster.
    Single,
}

/// What the node needs to form or join its cluster and load the pool.
pub struct Startup {
    /// The running node.
    pub node: Node,
    /// The client API's view of it (readiness is reported there).
    pub app: Arc<App>,
    /// This node's advertised addresses.
    pub addr: NodeAddr,
    /// How it comes into its cluster.
    pub membership: Membership,
    /// The admin token, for admitting peers and joining.
    pub admin_token: Option<String>,
    /// The pool to load when this node creates the cluster.
    pub pool: Option<Pool>,
    /// Whether `--pool` was given (to say that it is ignored on an existing cluster).
    pub pool_given: bool,
    /// The signing key of a new cluster (a fresh one when `None`).
    pub signer: Option<LicenseSigner>,
    /// Retention of expired borrows in a new cluster, in seconds.
    pub retention_secs: i64,
    /// The client port speaks TLS (the ready line says `https://`).
    pub api_tls: bool,
}

/// Forms or joins the cluster, waits for a leader, loads the pool when this node creates
/// the cluster, then announces readiness. Retries every step for as long as it takes.
pub async fn become_ready(startup: Startup) {
    let Startup {
        node,
        app,
        addr,
        membership,
        admin_token,
        pool,
        pool_given,
        signer,
        retention_secs,
        api_tls,
    } = startup;
    let token = admin_token.as_deref();
    // Who may load the pool: the node that creates the cluster (one node, or the lowest
    // id of --peers). Bootstrap is idempotent, so a retry after a crash is harmless.
    let creator = loop {
        let attempt = match &membership {
            Membership::Peers(peers) => form_or_rejoin(&node, &addr, peers, token).await,
            Membership::Join(target) => join(&node, target, &addr, token).await.map(|()| false),
            Membership::Single => match node.initialize_single(&addr).await {
                Ok(created) => {
                    if created {
                        tracing::info!(node = node.id, "created a new one-node cluster");
                    }
                    Ok(true)
                }
                Err(e) => Err(MembershipError::raft(e)),
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
        load_pool(&app, pool, signer, retention_secs).await;
    } else if pool_given {
        tracing::info!("the cluster already has a ledger; --pool is ignored");
    }
    let ready_line = if api_tls {
        READY_LINE_PREFIX_TLS
    } else {
        READY_LINE_PREFIX
    };
    println!("{ready_line}{}", addr.api_addr);
    tracing::info!("ready");
}

/// `--peers`: creates the cluster when this node has the lowest id and no peer belongs to
/// one yet; otherwise waits to be admitted by the creator or, when the cluster already
/// runs and this data dir is not admitted (new, or back empty), asks to be added — the
/// leader then removes the old incarnation of this id first. Returns whether this node
/// is the creator (who loads the pool).
async fn form_or_rejoin(
    node: &Node,
    addr: &NodeAddr,
    peers: &BTreeMap<NodeId, String>,
    admin_token: Option<&str>,
) -> Result<bool, MembershipError> {
    let created =
        formation::bootstrap_static(node, addr, peers, admin_token, READY_REPORT_EVERY).await?;
    if created {
        tracing::info!(members = peers.len(), "created a new cluster");
    }
    if !node.identity.get().admitted {
        match formation::find_cluster(node, peers).await? {
            Some(target) => join(node, &target, addr, admin_token).await?,
            None => return Err(MembershipError::NotAdmitted(node.id)),
        }
    }
    Ok(peers.keys().next() == Some(&node.id))
}

/// Asks a member of a running cluster to add this node (a no-op once it belongs to a
/// cluster). One attempt; the caller retries.
async fn join(
    node: &Node,
    target: &str,
    addr: &NodeAddr,
    admin_token: Option<&str>,
) -> Result<(), MembershipError> {
    let initialized = node
        .raft
        .is_initialized()
        .await
        .map_err(MembershipError::raft)?;
    if initialized && node.identity.get().admitted {
        return Ok(());
    }
    let joined = async {
        AdminClient::new(target, admin_token.map(str::to_string))?
            .with_dialer(&node.dialer)?
            .add(node.id, &addr.raft_addr)
            .await
    };
    let message = joined.await.map_err(|source| MembershipError::Remote {
        node: format!("join via {target}"),
        source,
    })?;
    tracing::info!(%target, %message, "joined the cluster");
    Ok(())
}

/// Loads the pool into the new cluster's ledger, retrying while there is no quorum.
async fn load_pool(
    app: &App,
    pool: Option<Pool>,
    signer: Option<LicenseSigner>,
    retention_secs: i64,
) {
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
            max_borrow_secs: DEFAULT_MAX_BORROW_SECS,
        }
    });
    let count = pool.licenses.len();
    let bootstrap = Bootstrap {
        licenses: pool.licenses,
        max_borrow_secs: pool.max_borrow_secs,
        retention_secs,
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
