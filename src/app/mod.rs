//! The narrow interface the JSON-RPC layer uses: borrow, read, status. It hides openraft
//! and the ledger's locking from `rpc/`, and turns Raft failures into [`AppError`]s.

mod signed_cache;

use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::Duration;

use tokio::time::Instant as Deadline;
use uuid::Uuid;

use crate::borrow::check::{BorrowError, BorrowRequest};
use crate::borrow::document::{LicenseDocument, LicenseSigner, PublicKey};
use crate::borrow::license::License;
use crate::borrow::return_token::ReturnTokenKey;
use crate::borrow::time::{format_instant, Instant};
use crate::cluster::batcher::{Batcher, SendBatch};
use crate::cluster::forward::{self as cluster, ClusterClient, ClusterError, Proposal, ReadPoint};
use crate::raft::node::Node;
use crate::raft::{NodeAddr, NodeId};
use crate::state::{Bootstrap, BorrowRecord, Outcome};
use signed_cache::{SignedCache, DEFAULT_CAPACITY};

/// Pause between attempts while the cluster has no (reachable) leader.
const RETRY_PAUSE: Duration = Duration::from_millis(50);

/// A borrowed license as the API returns it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IssuedLicense {
    /// The signed license string.
    pub license: String,
    /// The borrow's id.
    pub borrow_id: Uuid,
    /// The proof a return needs ([`ReturnTokenKey`]): set only in the answer to the
    /// borrow itself, never when a license is served again.
    pub return_token: Option<String>,
}

/// Who asks for a return, and with what proof.
#[derive(Debug, Clone, Copy)]
pub enum ReturnAuthority<'a> {
    /// The caller presented the admin token: may return any borrow.
    Admin,
    /// A client, with the `returnToken` it gave (if any).
    Borrower(Option<&'a str>),
}

/// A license with its current and upcoming borrows.
#[derive(Debug, Clone)]
pub struct LicenseListing {
    /// The license.
    pub license: License,
    /// Borrows whose end is in the future, ordered by start.
    pub borrows: Vec<BorrowRecord>,
}

/// A rendered listing and what it shows: the ledger at `version`, at instants from
/// `rendered_at` until `fresh_until` (exclusive), when its first borrow ends.
struct RenderedListing {
    version: u64,
    rendered_at: Instant,
    fresh_until: Instant,
    text: Arc<str>,
}

impl RenderedListing {
    fn shows(&self, version: u64, now: Instant) -> bool {
        // A clock stepped back could bring back a borrow that had dropped out: render.
        self.version == version && self.rendered_at <= now && now < self.fresh_until
    }
}

/// Why the application could not answer.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    /// The borrow was refused by the ledger (codes 32–36).
    #[error(transparent)]
    Borrow(#[from] BorrowError),
    /// No retained borrow has this id (code 34).
    #[error("no borrow with borrowId {0}")]
    BorrowNotFound(Uuid),
    /// A `requestId` came back with a different request (invalid params).
    #[error("{0}")]
    RequestIdReused(String),
    /// A return without the borrower's token or the admin token (code 37).
    #[error("{0}")]
    ReturnRefused(String),
    /// The cluster cannot answer safely right now: no leader, no quorum, or too slow.
    /// Retriable.
    #[error("{0}")]
    Unavailable(String),
    /// Something that should not happen.
    #[error("{0}")]
    Internal(String),
}

/// The application: a Raft node plus what it takes to answer clients.
pub struct App {
    node: Node,
    request_timeout: Duration,
    signer: OnceLock<Arc<LicenseSigner>>,
    return_tokens: OnceLock<ReturnTokenKey>,
    signed: SignedCache,
    /// Writes forwarded to the leader in batches (see [`Batcher`]).
    forwards: Batcher<(NodeId, NodeAddr), Proposal, Result<Outcome, ClusterError>, ClusterError>,
    /// The last rendered listing, reused while the ledger and its expiries allow.
    listing: Mutex<Option<RenderedListing>>,
    /// Read-index rounds shared by concurrent reads: each read joins a batch taken
    /// after it arrived, so the index it gets is still from after its arrival.
    read_index: Batcher<(), (), ReadPoint, ClusterError>,
    /// Why the node is not in a cluster yet, while it forms or joins one.
    starting: Mutex<Option<String>>,
}

impl App {
    /// Wraps a started node. `request_timeout` bounds every wait on the cluster.
    pub fn new(node: Node, request_timeout: Duration) -> Result<App, AppError> {
        let peers = ClusterClient::new(node.routes.clone())
            .map_err(|e| AppError::Internal(e.to_string()))?;
        let forwards = Batcher::new(forward_batches(peers.clone(), request_timeout));
        let read_index = Batcher::new(read_index_round(node.clone(), peers, request_timeout));
        Ok(App {
            forwards,
            node,
            request_timeout,
            signer: OnceLock::new(),
            return_tokens: OnceLock::new(),
            signed: SignedCache::new(DEFAULT_CAPACITY),
            listing: Mutex::new(None),
            read_index,
            starting: Mutex::new(None),
        })
    }

    /// Records why the node is not in a cluster yet (`None` once it is), for `/readyz`.
    pub fn set_starting(&self, reason: Option<String>) {
        *self.starting.lock().unwrap_or_else(PoisonError::into_inner) = reason;
    }

    /// Whether this node can answer clients now, and why (`/readyz`): it is in a cluster,
    /// knows a leader, has applied what it committed, and the ledger has a license pool.
    pub fn readiness(&self) -> (bool, String) {
        if let Some(reason) = self
            .starting
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
        {
            return (false, reason);
        }
        let metrics = crate::raft::metrics_of(&self.node.raft);
        let applied = metrics.last_applied.as_ref().map(|id| id.index());
        let committed = metrics.local_committed.as_ref().map(|id| id.index());
        if let Err(reason) = self.node.clock_status() {
            return (false, reason);
        }
        match metrics.current_leader {
            None => (
                false,
                "no known leader: waiting for a quorum of the voters".to_string(),
            ),
            Some(_) if applied < committed => (
                false,
                format!("applied {applied:?} is behind committed {committed:?}"),
            ),
            Some(_) if !self.node.ledger.read().is_bootstrapped() => {
                (false, "the ledger has no license pool yet".to_string())
            }
            Some(leader) => (true, format!("leader {leader}")),
        }
    }

    /// The node underneath, for status and metrics.
    pub fn node(&self) -> &Node {
        &self.node
    }

    /// Borrows a license: proposes the borrow to the log and waits for its apply.
    #[tracing::instrument(level = "debug", skip_all, fields(feature = %request.key.feature, uuid = %request.key.uuid))]
    /// With a `request_id`, a repeated call answers the first call's outcome.
    pub async fn borrow(
        &self,
        request: BorrowRequest,
        request_id: Option<String>,
    ) -> Result<IssuedLicense, AppError> {
        let proposal = Proposal::Borrow {
            borrow_id: Uuid::new_v4(),
            request,
            request_id,
        };
        match self.propose(proposal).await? {
            Outcome::Borrow(Ok(record)) => {
                let mut issued = self.issue(&record)?;
                issued.return_token = Some(self.return_tokens()?.token_for(record.borrow_id));
                Ok(issued)
            }
            Outcome::Borrow(Err(refusal)) => Err(AppError::Borrow(refusal)),
            Outcome::RequestIdReused(reason) => Err(AppError::RequestIdReused(reason)),
            other => Err(AppError::Internal(format!(
                "unexpected outcome of a borrow: {other:?}"
            ))),
        }
    }

    /// Gives a borrow back early (`ReturnLicenseV1`); returns the borrow as it now stands.
    /// Only the borrower (its return token) or an administrator may: borrow ids are public.
    /// A refused return costs no log entry.
    pub async fn give_back(
        &self,
        borrow_id: Uuid,
        authority: ReturnAuthority<'_>,
    ) -> Result<BorrowRecord, AppError> {
        match authority {
            ReturnAuthority::Admin => {}
            ReturnAuthority::Borrower(None) => {
                return Err(AppError::ReturnRefused(format!(
                    "returning borrow {borrow_id} needs its returnToken (handed out in the borrow's answer) or the admin token"
                )))
            }
            ReturnAuthority::Borrower(Some(token)) => {
                if !self.return_tokens()?.verify(borrow_id, token) {
                    return Err(AppError::ReturnRefused(format!(
                        "the returnToken does not belong to borrow {borrow_id}"
                    )));
                }
            }
        }
        match self.propose(Proposal::Return { borrow_id }).await? {
            Outcome::Returned(Ok(record)) => Ok(*record),
            Outcome::Returned(Err(_)) => Err(AppError::BorrowNotFound(borrow_id)),
            other => Err(AppError::Internal(format!(
                "unexpected outcome of a return: {other:?}"
            ))),
        }
    }

    /// Loads a pool into a cluster that has no ledger yet. Returns whether it did.
    pub async fn bootstrap(&self, bootstrap: Bootstrap) -> Result<bool, AppError> {
        match self
            .propose(Proposal::Bootstrap(Box::new(bootstrap)))
            .await?
        {
            Outcome::Bootstrapped(done) => Ok(done),
            other => Err(AppError::Internal(format!(
                "unexpected outcome of a bootstrap: {other:?}"
            ))),
        }
    }

    /// Gets a proposal applied: appended here when this node leads, forwarded to the
    /// leader otherwise, retried while that is safe, all within the request timeout.
    async fn propose(&self, proposal: Proposal) -> Result<Outcome, AppError> {
        // A leader that lost its quorum keeps the entry pending: bound the whole wait.
        tokio::time::timeout(self.request_timeout, self.propose_until(proposal))
            .await
            .map_err(|_| {
                AppError::Unavailable(format!(
                    "no quorum within {} ms: the write was not confirmed and may or may not be applied later",
                    self.request_timeout.as_millis()
                ))
            })?
    }

    async fn propose_until(&self, proposal: Proposal) -> Result<Outcome, AppError> {
        let deadline = Deadline::now() + self.request_timeout;
        let mut last_error;
        loop {
            // A follower that knows the leader forwards at once rather than asking its
            // own Raft core first (which would only answer "not the leader"). A stale
            // leader answers NotLeader, which is retried like any other attempt.
            let leader =
                cluster::known_leader(&self.node.raft).filter(|(id, _)| *id != self.node.id);
            let attempt = match leader {
                Some(leader) => self.forward(leader, &proposal).await,
                None => match cluster::propose_local(
                    &self.node.raft,
                    &self.node.clocks,
                    proposal.clone(),
                )
                .await
                {
                    Err(ClusterError::NotLeader {
                        leader: Some(leader),
                    }) if leader.0 != self.node.id => self.forward(leader, &proposal).await,
                    other => other,
                },
            };
            match attempt {
                Ok(outcome) => return Ok(outcome),
                Err(e) if e.is_retriable() => last_error = e.to_string(),
                Err(e) => {
                    return Err(AppError::Unavailable(format!(
                        "the write may or may not have been applied: {e}"
                    )))
                }
            }
            if Deadline::now() + RETRY_PAUSE >= deadline {
                return Err(self.timeout_error("the write to commit", &last_error));
            }
            tokio::time::sleep(RETRY_PAUSE).await;
        }
    }

    /// A retained borrow's license, exactly as it was issued.
    pub async fn borrowed_license(&self, borrow_id: Uuid) -> Result<IssuedLicense, AppError> {
        let _ = self.linearize().await?;
        let record = self
            .node
            .ledger
            .read()
            .borrow_record(&borrow_id)
            .cloned()
            .ok_or(AppError::BorrowNotFound(borrow_id))?;
        self.issue(&record)
    }

    /// Every license with its current and upcoming borrows (ordered by feature, then
    /// uuid) as `render` turns it into text, rendered again only when the answer would
    /// differ: the ledger changed, or a listed borrow ended.
    /// A busy pool is listed far more often than it changes; this answers those lists
    /// without walking and rendering every borrow each time.
    pub async fn licenses_rendered(
        &self,
        render: fn(Vec<LicenseListing>) -> Result<String, String>,
    ) -> Result<Arc<str>, AppError> {
        let read = self.linearize().await?;
        let (ledger, version) = self.node.ledger.read_versioned();
        // The read point's time, never before what the ledger already applied: the same
        // on every node for the same read, whatever the answering node's clock says.
        let now = read.now.max(ledger.clock());
        {
            let cached = self.listing.lock().unwrap_or_else(PoisonError::into_inner);
            if let Some(cached) = cached.as_ref().filter(|c| c.shows(version, now)) {
                return Ok(cached.text.clone());
            }
        }
        let views = ledger.licenses(now);
        // The answer holds until the first listed borrow ends (then it drops out).
        let fresh_until = views
            .iter()
            .flat_map(|view| view.borrows.iter().map(|record| record.valid_until))
            .min()
            .unwrap_or(Instant::MAX);
        let listings: Vec<LicenseListing> = views
            .into_iter()
            .map(|view| LicenseListing {
                license: view.license.clone(),
                borrows: view.borrows.into_iter().cloned().collect(),
            })
            .collect();
        drop(ledger);
        let text: Arc<str> = render(listings).map_err(AppError::Internal)?.into();
        let mut cached = self.listing.lock().unwrap_or_else(PoisonError::into_inner);
        // Keep the newest rendering when two readers race.
        if cached.as_ref().is_none_or(|c| c.version <= version) {
            *cached = Some(RenderedListing {
                version,
                rendered_at: now,
                fresh_until,
                text: text.clone(),
            });
        }
        Ok(text)
    }

    /// The public half of the signing key.
    pub fn public_key(&self) -> Result<PublicKey, AppError> {
        Ok(self.signer()?.public_key())
    }

    /// Waits until this node's ledger reflects every write acknowledged anywhere before
    /// the call: the leader confirms its leadership with a quorum (read index), then this
    /// node waits until it has applied up to that index. Returns the read point.
    async fn linearize(&self) -> Result<ReadPoint, AppError> {
        // Chaos builds only: a deliberately broken mode that answers reads from the local
        // ledger, stale on a lagging or cut-off node, to prove the chaos checker notices.
        #[cfg(feature = "failpoints")]
        if std::env::var("LICENSED_BROKEN").as_deref() == Ok("stale-reads") {
            return Ok(ReadPoint {
                index: 0,
                now: crate::borrow::time::now(),
            });
        }
        tokio::time::timeout(self.request_timeout, self.linearize_until())
            .await
            .map_err(|_| self.timeout_error("a linearizable read", "timed out"))?
    }

    async fn linearize_until(&self) -> Result<ReadPoint, AppError> {
        let deadline = Deadline::now() + self.request_timeout;
        let mut last_error;
        loop {
            let attempt = self.read_index.call((), ()).await.unwrap_or_else(|| {
                Err(ClusterError::NoQuorum(
                    "the read-index round failed".to_string(),
                ))
            });
            match attempt {
                Ok(read) => {
                    let remaining = deadline.saturating_duration_since(Deadline::now());
                    return self
                        .node
                        .raft
                        .wait(Some(remaining))
                        .applied_index_at_least(Some(read.index), "read index")
                        .await
                        .map(|_| read)
                        .map_err(|e| {
                            self.timeout_error(
                                "this node to apply up to the read index",
                                &e.to_string(),
                            )
                        });
                }
                Err(e) => last_error = e.to_string(),
            }
            if Deadline::now() + RETRY_PAUSE >= deadline {
                return Err(self.timeout_error("a linearizable read", &last_error));
            }
            tokio::time::sleep(RETRY_PAUSE).await;
        }
    }

    /// Sends a proposal to the leader within a batch (see [`Batcher`]).
    async fn forward(
        &self,
        leader: (NodeId, NodeAddr),
        proposal: &Proposal,
    ) -> Result<Outcome, ClusterError> {
        match self.forwards.call(leader, proposal.clone()).await {
            Some(answer) => answer.and_then(|answer| answer),
            None => Err(ClusterError::Unknown(
                "the forwarding task failed".to_string(),
            )),
        }
    }

    fn timeout_error(&self, what: &str, last_error: &str) -> AppError {
        AppError::Unavailable(format!(
            "no answer within {} ms waiting for {what}: no leader or no quorum ({last_error})",
            self.request_timeout.as_millis()
        ))
    }

    fn signer(&self) -> Result<Arc<LicenseSigner>, AppError> {
        if let Some(signer) = self.signer.get() {
            return Ok(signer.clone());
        }
        let secret =
            *self.node.ledger.read().signing_key().ok_or_else(|| {
                AppError::Unavailable("the ledger has no license pool yet".into())
            })?;
        let signer = Arc::new(LicenseSigner::from_secret_bytes(&secret));
        Ok(self.signer.get_or_init(|| signer).clone())
    }

    /// The key of return tokens, derived from the signing key once it is known.
    fn return_tokens(&self) -> Result<&ReturnTokenKey, AppError> {
        if let Some(key) = self.return_tokens.get() {
            return Ok(key);
        }
        let key = ReturnTokenKey::from_signing_secret(&self.signer()?.secret_bytes());
        Ok(self.return_tokens.get_or_init(|| key))
    }

    /// Renders and signs a borrow's license document. Deterministic: the same record gives
    /// the same string on every node, every time.
    fn issue(&self, record: &BorrowRecord) -> Result<IssuedLicense, AppError> {
        let signer = self.signer()?;
        let license = self
            .signed
            .get_or_sign(record.borrow_id, record.valid_until, || {
                signer.sign(&document_for(record, signer.key_id()))
            });
        Ok(IssuedLicense {
            license,
            borrow_id: record.borrow_id,
            return_token: None,
        })
    }
}

/// Sends a batch of forwarded writes to the leader in one request.
fn forward_batches(
    peers: ClusterClient,
    timeout: Duration,
) -> SendBatch<(NodeId, NodeAddr), Proposal, Result<Outcome, ClusterError>, ClusterError> {
    Arc::new(move |(leader, addr), proposals| {
        let peers = peers.clone();
        Box::pin(async move {
            peers
                .forward_batch((leader, &addr), &proposals, timeout)
                .await
        })
    })
}

/// One read-index round for a batch of reads: from this node when it leads, else from
/// the leader it knows (one request for every read in the batch).
fn read_index_round(
    node: Node,
    peers: ClusterClient,
    timeout: Duration,
) -> SendBatch<(), (), ReadPoint, ClusterError> {
    Arc::new(move |(), reads: Vec<()>| {
        let (node, peers) = (node.clone(), peers.clone());
        Box::pin(async move {
            let read = match cluster::read_index_local(&node.raft, &node.clocks).await {
                Err(ClusterError::NotLeader {
                    leader: Some((leader, addr)),
                }) if leader != node.id => peers.read_index((leader, &addr), timeout).await,
                other => other,
            }?;
            Ok(vec![read; reads.len()])
        })
    })
}

/// The document a borrow's license string carries.
pub fn document_for(record: &BorrowRecord, key_id: &str) -> LicenseDocument {
    LicenseDocument {
        format: 1,
        feature: record.key.feature.clone(),
        uuid: record.key.uuid.clone(),
        version: record.version.clone(),
        edition: record.edition.clone(),
        modules: record.modules.clone(),
        host_id: record.host_id.to_string(),
        valid_from: format_instant(record.valid_from),
        valid_until: format_instant(record.valid_until),
        borrow_id: record.borrow_id.to_string(),
        user_info: record.user_info.clone(),
        issued_at: format_instant(record.issued_at),
        key_id: key_id.to_string(),
    }
}
