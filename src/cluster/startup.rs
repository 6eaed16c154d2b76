//! What a node does once it serves: form or join its cluster, wait for a leader, load the
//! pool when it created the cluster, then announce readiness. Every step is retried for
//! as long as it takes; until then clients get `-32603` with the reason and `/readyz`
//! answers 503 (see [`App::set_starting`]).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use super::admin::{AdminClient, MembershipError};
use super::formation;
use super::standing::{self, Standing};
use crate::app::App;
use crate::borrow::document::LicenseSigner;
use crate::borrow::license::DEFAULT_MAX_BORROW_SECS;
use crate::borrow::pool::{
    parse_pool, Pool, DEFAULT_AUDIT_RETENTION_SECS, DEFAULT_MAX_AUDIT_ENTRIES,
};
use crate::raft::node::Node;
use crate::raft::{NodeAddr, NodeId};
use crate::state::Bootstrap;

/// Pause between attempts to form, join or load while the cluster cannot answer.
const STARTUP_RETRY: Duration = Duration::from_secs(1);
/// How often a node reads its `--pool` file again to apply a changed one (a Kubernetes
/// ConfigMap changes in place).
pub const POOL_FILE_POLL: Duration = Duration::from_secs(10);
/// How soon a node tries its `--pool` file again while it has not yet compared the file
/// with the cluster's pool (not yet a member, or no leader yet). Prompt, because until
/// that first comparison the node cannot tell its unchanged file from a changed one: had
/// another node applied a different file meanwhile, this node's first comparison would
/// take its own, older file for the newest intent and apply it.
const POOL_FILE_FIRST_READ_RETRY: Duration = Duration::from_millis(250);
/// How often a running node checks that it was not left unpromoted.
const UNPROMOTED_CHECK_EVERY: Duration = Duration::from_secs(5);
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
    /// `--pool`: read again every [`POOL_FILE_POLL`]; a pool that differs from the one
    /// last applied from a file is applied through the leader.
    pub pool_path: Option<PathBuf>,
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
        pool_path,
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
    }
    if let Some(path) = pool_path {
        tokio::spawn(declare_pool(app.clone(), node.clone(), path));
    }
    if !matches!(membership, Membership::Single) {
        tokio::spawn(stay_a_voter(
            node.clone(),
            addr.clone(),
            membership,
            admin_token.clone(),
        ));
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
    // Admitted is not yet a member: a leader admits a joining data dir before it adds it,
    // and the addition can still fail (another change in progress, a leader change, after
    // the learner step and before the voter step), so ask again until this node is a
    // voter.
    if standing::standing_of(node).await?.must_ask_to_be_added() {
        ask_peers_to_add(node, addr, peers, admin_token).await?;
    }
    Ok(peers.keys().next() == Some(&node.id))
}

/// Asks the first running member of `peers` to add this node.
async fn ask_peers_to_add(
    node: &Node,
    addr: &NodeAddr,
    peers: &BTreeMap<NodeId, String>,
    admin_token: Option<&str>,
) -> Result<(), MembershipError> {
    match formation::find_cluster(node, peers).await? {
        Some(target) => join(node, &target, addr, admin_token).await,
        None => Err(MembershipError::NotAdmitted(node.id)),
    }
}

/// While the node runs, makes sure it is not left unpromoted ([`Standing::Unpromoted`]):
/// an addition cut short between its steps is noticed here even when the node learns of
/// its own membership only after it announced readiness. A removed node stays out.
async fn stay_a_voter(
    node: Node,
    addr: NodeAddr,
    membership: Membership,
    admin_token: Option<String>,
) {
    loop {
        tokio::time::sleep(UNPROMOTED_CHECK_EVERY).await;
        if !matches!(standing::standing_of(&node).await, Ok(Standing::Unpromoted)) {
            continue;
        }
        tracing::warn!(
            node = node.id,
            "this node is not yet a voter: its addition did not finish; asking again"
        );
        let token = admin_token.as_deref();
        let asked = match &membership {
            Membership::Peers(peers) => ask_peers_to_add(&node, &addr, peers, token).await,
            Membership::Join(target) => join(&node, target, &addr, token).await,
            Membership::Single => Ok(()),
        };
        if let Err(e) = asked {
            tracing::warn!(error = %e, "cannot be made a voter yet; retrying");
        }
    }
}

/// Asks a member of a running cluster to add this node (a no-op once it is a voter or
/// was removed). One attempt; the caller retries.
async fn join(
    node: &Node,
    target: &str,
    addr: &NodeAddr,
    admin_token: Option<&str>,
) -> Result<(), MembershipError> {
    if !standing::standing_of(node).await?.must_ask_to_be_added() {
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
            audit_retention_secs: DEFAULT_AUDIT_RETENTION_SECS,
            max_audit_entries: DEFAULT_MAX_AUDIT_ENTRIES,
        }
    });
    let count = pool.licenses.len();
    let bootstrap = Bootstrap {
        licenses: pool.licenses,
        max_borrow_secs: pool.max_borrow_secs,
        retention_secs,
        signing_key: signer.secret_bytes(),
        audit_retention_secs: pool.audit_retention_secs,
        max_audit_entries: pool.max_audit_entries,
        created_at: chrono::Utc::now().timestamp(),
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

/// `--pool` on a running cluster, declaratively: whenever the file holds a pool other than
/// the one this node last proposed, it is applied through the leader, without force. The
/// ledger skips a pool equal to the one last applied from a file, so an unchanged file
/// never undoes an administrator's change, and the nodes of a cluster given the same file
/// apply it once between them. A pool that would leave held borrows outside their
/// licenses is refused and logged as an error with the borrows; it is tried again when
/// the file changes or the node restarts.
async fn declare_pool(app: Arc<App>, node: Node, path: PathBuf) {
    let mut last_text: Option<String> = None;
    // Whether the file as this node started with it has been compared with the cluster's.
    let mut compared_once = false;
    loop {
        let text = match tokio::fs::read_to_string(&path).await {
            Ok(text) => Some(text),
            Err(e) => {
                if last_text.is_some() {
                    tracing::error!(path = %path.display(), error = %e, "cannot read the pool file; the pool stays as it is");
                }
                // Nothing to compare: a file that appears later is a change.
                compared_once = true;
                None
            }
        };
        if let Some(text) = text.filter(|text| Some(text) != last_text.as_ref()) {
            let bootstrapped = node.ledger.read().is_bootstrapped();
            if bootstrapped && declare_once(&app, &path, &text).await {
                last_text = Some(text);
                compared_once = true;
            }
        }
        let pause = if compared_once {
            POOL_FILE_POLL
        } else {
            POOL_FILE_FIRST_READ_RETRY
        };
        tokio::time::sleep(pause).await;
    }
}

/// One attempt to apply the pool in `text`; `false` when it should be tried again soon
/// (the cluster could not answer).
async fn declare_once(app: &App, path: &std::path::Path, text: &str) -> bool {
    let pool = match parse_pool(text) {
        Ok(pool) => pool,
        Err(e) => {
            tracing::error!(path = %path.display(), error = %e, "the pool file is not valid; the pool stays as it is");
            return true;
        }
    };
    // Most starts: the file is the pool the cluster has. A read, not a log entry.
    match app.is_declared_pool(&pool).await {
        Ok(true) => {
            tracing::debug!(path = %path.display(), "the pool file is the pool in use");
            return true;
        }
        Ok(false) => {}
        Err(e) => {
            tracing::warn!(path = %path.display(), error = %e, "cannot read the cluster's pool yet; retrying");
            return false;
        }
    }
    match app.declare_pool(pool).await {
        Ok(plan) if plan.is_empty() => {
            tracing::debug!(path = %path.display(), "the pool file is the pool in use");
            true
        }
        Ok(plan) => {
            tracing::info!(path = %path.display(), summary = %plan.summary(), "applied the pool file");
            true
        }
        Err(crate::app::AppError::Admin(refusal)) => {
            tracing::error!(
                path = %path.display(),
                reason = %refusal,
                "the pool file was NOT applied: it would leave held borrows outside their licenses; \
                 change the file, return the borrows, or apply it with `licensectl pool apply --force`"
            );
            true
        }
        Err(e) => {
            tracing::warn!(path = %path.display(), error = %e, "cannot apply the pool file yet; retrying");
            false
        }
    }
}
