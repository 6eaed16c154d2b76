//! The narrow interface the JSON-RPC layer uses: borrow, read, status. It hides openraft
//! and the ledger's locking from `rpc/`, and turns Raft failures into [`AppError`]s.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use openraft::ReadPolicy;
use uuid::Uuid;

use crate::borrow::check::{BorrowError, BorrowRequest};
use crate::borrow::document::{LicenseDocument, LicenseSigner, PublicKey};
use crate::borrow::license::License;
use crate::borrow::time::{self, format_instant};
use crate::raft::node::Node;
use crate::state::{BorrowRecord, Command, Outcome};

/// A borrowed license as the API returns it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IssuedLicense {
    /// The signed license string.
    pub license: String,
    /// The borrow's id.
    pub borrow_id: Uuid,
}

/// A license with its current and upcoming borrows.
#[derive(Debug, Clone)]
pub struct LicenseListing {
    /// The license.
    pub license: License,
    /// Borrows whose end is in the future, ordered by start.
    pub borrows: Vec<BorrowRecord>,
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
}

impl App {
    /// Wraps a started node. `request_timeout` bounds every wait on the cluster.
    pub fn new(node: Node, request_timeout: Duration) -> App {
        App {
            node,
            request_timeout,
            signer: OnceLock::new(),
        }
    }

    /// The node underneath, for status and metrics.
    pub fn node(&self) -> &Node {
        &self.node
    }

    /// Borrows a license: proposes the borrow to the log and waits for its apply.
    #[tracing::instrument(level = "debug", skip_all, fields(feature = %request.key.feature, uuid = %request.key.uuid))]
    pub async fn borrow(&self, request: BorrowRequest) -> Result<IssuedLicense, AppError> {
        let command = Command::Borrow {
            now: time::now(),
            borrow_id: Uuid::new_v4(),
            request,
        };
        let write = self.node.raft.client_write(command);
        let response = tokio::time::timeout(self.request_timeout, write)
            .await
            .map_err(|_| self.timeout_error("the borrow to commit"))?
            .map_err(|e| AppError::Unavailable(format!("the borrow was not committed: {e}")))?;
        match response.data {
            Outcome::Borrow(Ok(record)) => self.issue(&record),
            Outcome::Borrow(Err(refusal)) => Err(AppError::Borrow(refusal)),
            other => Err(AppError::Internal(format!(
                "unexpected outcome of a borrow: {other:?}"
            ))),
        }
    }

    /// A retained borrow's license, exactly as it was issued.
    pub async fn borrowed_license(&self, borrow_id: Uuid) -> Result<IssuedLicense, AppError> {
        self.linearize().await?;
        let record = self
            .node
            .ledger
            .read()
            .borrow_record(&borrow_id)
            .cloned()
            .ok_or(AppError::BorrowNotFound(borrow_id))?;
        self.issue(&record)
    }

    /// Every license with its current and upcoming borrows, ordered by feature then uuid.
    pub async fn licenses(&self) -> Result<Vec<LicenseListing>, AppError> {
        self.linearize().await?;
        let now = time::now();
        let ledger = self.node.ledger.read();
        Ok(ledger
            .licenses(now)
            .into_iter()
            .map(|view| LicenseListing {
                license: view.license.clone(),
                borrows: view.borrows.into_iter().cloned().collect(),
            })
            .collect())
    }

    /// The public half of the signing key.
    pub fn public_key(&self) -> Result<PublicKey, AppError> {
        Ok(self.signer()?.public_key())
    }

    /// Waits until this node's ledger reflects every write acknowledged anywhere before
    /// the call (read-index through the leader).
    async fn linearize(&self) -> Result<(), AppError> {
        let read = self.node.raft.ensure_linearizable(ReadPolicy::ReadIndex);
        tokio::time::timeout(self.request_timeout, read)
            .await
            .map_err(|_| self.timeout_error("a linearizable read"))?
            .map_err(|e| AppError::Unavailable(format!("cannot read linearizably: {e}")))?;
        Ok(())
    }

    fn timeout_error(&self, what: &str) -> AppError {
        AppError::Unavailable(format!(
            "timed out after {} ms waiting for {what}: no leader or no quorum",
            self.request_timeout.as_millis()
        ))
    }

    fn signer(&self) -> Result<Arc<LicenseSigner>, AppError> {
        if let Some(signer) = self.signer.get() {
            return Ok(signer.clone());
        }
        let secret = *self
            .node
            .ledger
            .read()
            .signing_key()
            .ok_or_else(|| AppError::Unavailable("the ledger has no license pool yet".into()))?;
        let signer = Arc::new(LicenseSigner::from_secret_bytes(&secret));
        Ok(self.signer.get_or_init(|| signer).clone())
    }

    /// Renders and signs a borrow's license document. Deterministic: the same record gives
    /// the same string on every node, every time.
    fn issue(&self, record: &BorrowRecord) -> Result<IssuedLicense, AppError> {
        let signer = self.signer()?;
        let document = document_for(record, signer.key_id());
        Ok(IssuedLicense {
            license: signer.sign(&document),
            borrow_id: record.borrow_id,
        })
    }
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
