//! Client of the cluster admin API (`/cluster/admin/...` on a node's Raft port), used by
//! `licensectl cluster`. Any node accepts a change and passes it to the leader.

use std::time::Duration;

use serde::Serialize;

use crate::raft::membership::{
    AddRequest, ClusterStatus, RemoveRequest, TransferRequest, ADD_PATH, REMOVE_PATH, STATUS_PATH,
    TRANSFER_PATH,
};
use crate::raft::NodeId;

/// Default Raft address of a local node.
pub const DEFAULT_RAFT_ADDR: &str = "127.0.0.1:22023";
/// A change may wait for a learner to catch up (up to two minutes on the server side).
const CHANGE_TIMEOUT: Duration = Duration::from_secs(150);
/// Status is answered from memory.
const STATUS_TIMEOUT: Duration = Duration::from_secs(5);

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
        Ok(AdminClient { http, base, token })
    }

    /// The cluster as this node sees it.
    pub async fn status(&self) -> Result<ClusterStatus, AdminError> {
        let response = self
            .http
            .get(format!("{}{STATUS_PATH}", self.base))
            .timeout(STATUS_TIMEOUT)
            .send()
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

    async fn change<Req: Serialize>(
        &self,
        path: &str,
        request: &Req,
    ) -> Result<String, AdminError> {
        let mut call = self
            .http
            .post(format!("{}{path}", self.base))
            .timeout(CHANGE_TIMEOUT)
            .json(request);
        if let Some(token) = &self.token {
            call = call.bearer_auth(token);
        }
        let response = call.send().await.map_err(|e| self.unreachable(e))?;
        let status = response.status();
        let body: serde_json::Value = response.json().await.map_err(|e| AdminError::BadAnswer {
            addr: self.base.clone(),
            reason: format!("HTTP {status}: {e}"),
        })?;
        let text = |key: &str| body[key].as_str().unwrap_or_default().to_string();
        if body["ok"].as_bool() == Some(true) {
            Ok(text("message"))
        } else if body["ok"].as_bool() == Some(false) {
            Err(AdminError::Refused(text("reason")))
        } else {
            Err(AdminError::BadAnswer {
                addr: self.base.clone(),
                reason: format!("HTTP {status}: {body}"),
            })
        }
    }

    fn unreachable(&self, error: reqwest::Error) -> AdminError {
        AdminError::Unreachable {
            addr: self.base.clone(),
            reason: error.to_string(),
        }
    }
}

/// `cluster status` as a table: one line per member, the answering node's view.
pub fn render_status(status: &ClusterStatus) -> String {
    let show = |value: Option<u64>| value.map_or_else(|| "-".to_string(), |v| v.to_string());
    let mut out = format!(
        "node {} ({}), leader {}, term {}, last log {}, committed {}, applied {}, snapshot {}\n",
        status.node,
        status.state,
        show(status.leader),
        status.term,
        show(status.last_log_index),
        show(status.committed),
        show(status.applied),
        show(status.snapshot),
    );
    out.push_str(&format!(
        "{:<6} {:<8} {:<7} {:<22} {:<22} {:>9} {:>7} {:>9}\n",
        "ID", "ROLE", "LEADER", "RAFT", "API", "MATCHED", "LAG", "LAST ACK"
    ));
    for member in &status.members {
        let ack = member
            .last_ack_ms
            .map_or_else(|| "-".to_string(), |ms| format!("{ms} ms"));
        out.push_str(&format!(
            "{:<6} {:<8} {:<7} {:<22} {:<22} {:>9} {:>7} {:>9}\n",
            member.id,
            if member.voter { "voter" } else { "learner" },
            if status.leader == Some(member.id) {
                "*"
            } else {
                ""
            },
            member.addr.raft_addr,
            member.addr.api_addr,
            show(member.matched),
            show(member.lag),
            ack,
        ));
    }
    out
}
