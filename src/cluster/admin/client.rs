//! Client of the cluster admin API (`/cluster/admin/...` on a node's Raft port), used by
//! `licensectl cluster`, by a node joining a cluster, by the node that creates one (to
//! admit its peers) and by a follower passing a change on to the leader. Any node accepts
//! a change and passes it to the leader. The one place that reads an [`AdminAnswer`].

use std::time::Duration;

use serde::Serialize;
use uuid::Uuid;

use super::messages::{
    AddRequest, AdminAnswer, AdmitRequest, ClusterStatus, RemoveRequest, TransferRequest, ADD_PATH,
    ADMIT_PATH, FAILPOINTS_PATH, REMOVE_PATH, STATUS_PATH, TRANSFER_PATH,
};
use crate::raft::NodeId;
use crate::transport::peer::PeerDialer;

/// A change may wait for a learner to catch up (up to two minutes on the server side),
/// and a follower passes it on to the leader: the leader's bound plus margins.
const CHANGE_TIMEOUT: Duration = Duration::from_secs(150);
/// Admission only writes a small file on the node.
const ADMIT_TIMEOUT: Duration = Duration::from_secs(10);
/// Status is answered from memory.
const STATUS_TIMEOUT: Duration = Duration::from_secs(5);
/// Arming a failpoint only changes a table in memory.
const FAILPOINT_TIMEOUT: Duration = Duration::from_secs(5);

/// Why an admin call failed.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    /// No answer from the node.
    #[error("cannot reach {addr}: {reason}")]
    Unreachable {
        /// The node asked.
        addr: String,
        /// The transport error.
        reason: String,
    },
    /// The node (or the leader) refused or failed the change.
    #[error("{0}")]
    Refused(String),
    /// The answer was not what the admin API sends.
    #[error("unexpected answer from {addr}: {reason}")]
    BadAnswer {
        /// The node asked.
        addr: String,
        /// What was wrong.
        reason: String,
    },
}

/// Talks to one node's admin API.
#[derive(Debug, Clone)]
pub struct AdminClient {
    http: reqwest::Client,
    base: String,
    token: Option<String>,
    dialer: PeerDialer,
}

impl AdminClient {
    /// A client for the node whose Raft port is `raft_addr` (`host:port` or a URL);
    /// `token` is the cluster's admin token, when it has one.
    pub fn new(raft_addr: &str, token: Option<String>) -> Result<AdminClient, AdminError> {
        let base = if raft_addr.starts_with("http://") || raft_addr.starts_with("https://") {
            raft_addr.trim_end_matches('/').to_string()
        } else {
            format!("http://{}", raft_addr.trim_end_matches('/'))
        };
        let http =
            reqwest::Client::builder()
                .no_proxy()
                .build()
                .map_err(|e| AdminError::Unreachable {
                    addr: base.clone(),
                    reason: e.to_string(),
                })?;
        Ok(AdminClient {
            http,
            base,
            token,
            dialer: PeerDialer::plain(),
        })
    }

    /// The same client dialing the way `dialer` does: TLS (a bare `host:port` becomes
    /// `https://`) and, for a node, its peer credentials.
    pub fn with_dialer(mut self, dialer: &PeerDialer) -> Result<AdminClient, AdminError> {
        if let Some(rest) = self.base.strip_prefix("http://") {
            self.base = dialer.base_url(rest);
        }
        self.http = dialer
            .client_builder()
            .build()
            .map_err(|e| AdminError::Unreachable {
                addr: self.base.clone(),
                reason: e.to_string(),
            })?;
        self.dialer = dialer.clone();
        Ok(self)
    }

    /// The cluster as this node sees it.
    pub async fn status(&self) -> Result<ClusterStatus, AdminError> {
        let call = self
            .http
            .get(format!("{}{STATUS_PATH}", self.base))
            .timeout(STATUS_TIMEOUT);
        let response = self
            .dialer
            .send(&self.http, call)
            .await
            .map_err(|e| self.unreachable(e))?;
        response.json().await.map_err(|e| AdminError::BadAnswer {
            addr: self.base.clone(),
            reason: e.to_string(),
        })
    }

    /// Adds node `id`, reachable at `raft_addr`, as a learner and then a voter.
    pub async fn add(&self, id: NodeId, raft_addr: &str) -> Result<String, AdminError> {
        let request = AddRequest {
            id,
            raft_addr: raft_addr.to_string(),
        };
        self.change(ADD_PATH, &request).await
    }

    /// Removes node `id`; `force` allows leaving fewer healthy voters than a quorum.
    pub async fn remove(&self, id: NodeId, force: bool) -> Result<String, AdminError> {
        self.change(REMOVE_PATH, &RemoveRequest { id, force }).await
    }

    /// Hands leadership to node `to`.
    pub async fn transfer_leader(&self, to: NodeId) -> Result<String, AdminError> {
        self.change(TRANSFER_PATH, &TransferRequest { to }).await
    }

    /// Admits node `node_id`'s data dir into cluster `cluster_id` (see
    /// `raft/identity.rs`).
    pub async fn admit(&self, node_id: NodeId, cluster_id: Uuid) -> Result<String, AdminError> {
        let request = AdmitRequest {
            node_id,
            cluster_id,
        };
        self.post(ADMIT_PATH, &request, ADMIT_TIMEOUT).await
    }

    /// Chaos builds only: arms crash point `name` on this node with a `fail` action
    /// (`panic`, `1*off->panic`, ...). Other builds answer 404, reported as
    /// [`AdminError::BadAnswer`].
    pub async fn arm_failpoint(&self, name: &str, action: &str) -> Result<String, AdminError> {
        let call = self
            .http
            .put(format!("{}{FAILPOINTS_PATH}/{name}", self.base))
            .body(action.to_string());
        self.answer(call, FAILPOINT_TIMEOUT).await
    }

    /// Chaos builds only: clears crash point `name` on this node.
    pub async fn clear_failpoint(&self, name: &str) -> Result<String, AdminError> {
        let call = self
            .http
            .delete(format!("{}{FAILPOINTS_PATH}/{name}", self.base));
        self.answer(call, FAILPOINT_TIMEOUT).await
    }

    async fn change<Req: Serialize>(
        &self,
        path: &str,
        request: &Req,
    ) -> Result<String, AdminError> {
        self.post(path, request, CHANGE_TIMEOUT).await
    }

    /// POSTs `request` to `path` (with the admin token, when there is one) and returns
    /// the answer's message, or its reason as [`AdminError::Refused`].
    pub async fn post<Req: Serialize>(
        &self,
        path: &str,
        request: &Req,
        timeout: Duration,
    ) -> Result<String, AdminError> {
        let call = self.http.post(format!("{}{path}", self.base)).json(request);
        self.answer(call, timeout).await
    }

    /// Sends `call` (with the admin token, when there is one) and reads its
    /// [`AdminAnswer`].
    async fn answer(
        &self,
        call: reqwest::RequestBuilder,
        timeout: Duration,
    ) -> Result<String, AdminError> {
        let mut call = call.timeout(timeout);
        if let Some(token) = &self.token {
            call = call.bearer_auth(token);
        }
        let response = self
            .dialer
            .send(&self.http, call)
            .await
            .map_err(|e| self.unreachable(e))?;
        let status = response.status();
        let answer: AdminAnswer = response.json().await.map_err(|e| AdminError::BadAnswer {
            addr: self.base.clone(),
            reason: format!("HTTP {status} without an admin answer: {e}"),
        })?;
        answer.into_result().map_err(AdminError::Refused)
    }

    fn unreachable(&self, error: reqwest::Error) -> AdminError {
        AdminError::Unreachable {
            addr: self.base.clone(),
            reason: error.to_string(),
        }
    }
}
