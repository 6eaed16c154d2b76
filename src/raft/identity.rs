//! Who this node is across restarts: the cluster it belongs to, and whether this data dir
//! was ever admitted into it.
//!
//! A Raft voter's promises live in its data dir: the entries it acknowledged, the vote it
//! cast. A node restarted on an empty data dir (a lost disk, a lost Kubernetes volume)
//! that came back as the same voter would have forgotten them: an entry committed on
//! {A, B}, B wiped, A dead, and B and C elect C without the entry. So a data dir carries
//! an identity file (`identity.json`):
//!
//! - `incarnation`: a random id made when the data dir is created. A new data dir is a new
//!   incarnation, whatever `--node-id` says.
//! - `admitted`: whether this incarnation was admitted into a cluster — by the node that
//!   created the cluster, or by the leader after it removed any older incarnation of the
//!   same id. Until then the node refuses Raft traffic: it never votes or acknowledges as
//!   a member it does not remember being.
//! - `cluster_id`: the cluster it was admitted into. Raft requests carry the sender's
//!   (`x-licensed-cluster`); a node refuses those of another cluster.
//!
//! - `data_format`: the encoding of the ledger in this data dir's log and snapshots. A
//!   build refuses to start on a data dir of another format, with a message, instead of
//!   failing to decode entries halfway through a start. A data dir without it (a Raft log
//!   but no identity file, or an identity without the field) is of format 1.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::NodeId;

/// The sender's cluster id, on node-to-node Raft requests.
pub const CLUSTER_HEADER: &str = "x-licensed-cluster";
/// The identity file inside the data dir.
pub const IDENTITY_FILE: &str = "identity.json";

/// What the identity file holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Identity {
    /// The node id this data dir belongs to.
    pub node_id: NodeId,
    /// Made when the data dir was created.
    pub incarnation: Uuid,
    /// Whether this incarnation was admitted into a cluster.
    pub admitted: bool,
    /// The cluster it was admitted into, once known.
    pub cluster_id: Option<Uuid>,
    /// The ledger encoding of this data dir (see `DATA_FORMAT`); absent: format 1.
    #[serde(default)]
    pub data_format: Option<u32>,
}

/// The ledger encoding this build reads and writes: log entries (`Command`) and snapshots
/// (`LedgerSnapshot`), both bincode, whose layout changes when a field is added. Format 2
/// added license policies, hosts, the audit trail and the declared pool. Before 1.0 a
/// format change is not migrated: the cluster is created again.
pub const DATA_FORMAT: u32 = 2;

/// Why an identity cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    /// Reading or writing the identity file failed.
    #[error("identity file {path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The failure.
        source: io::Error,
    },
    /// The data dir belongs to another node id.
    #[error("data dir belongs to node {found}, not node {expected} (--node-id)")]
    OtherNode {
        /// The id in the file.
        found: NodeId,
        /// `--node-id`.
        expected: NodeId,
    },
    /// The data dir holds a ledger encoding this build does not read.
    #[error("data dir holds ledger format {found}, this build reads format {expected}: start this node on an empty data dir and create the cluster again (its pool file and borrows are not carried over; formats change only before 1.0)")]
    DataFormat {
        /// The data dir's format.
        found: u32,
        /// This build's format (`DATA_FORMAT`).
        expected: u32,
    },
    /// Admission into another cluster than the one this node belongs to.
    #[error("this node belongs to cluster {mine}, not {theirs}")]
    OtherCluster {
        /// This node's cluster.
        mine: Uuid,
        /// The other one.
        theirs: Uuid,
    },
}

/// The identity of this node, persisted in its data dir.
#[derive(Debug)]
pub struct IdentityStore {
    path: PathBuf,
    current: Mutex<Identity>,
}

impl IdentityStore {
    /// Opens (or creates) the identity of `data_dir`. `had_log` says whether the data dir
    /// already held a Raft log before this start (a data dir from before identities).
    pub fn open(
        data_dir: &Path,
        node_id: NodeId,
        had_log: bool,
    ) -> Result<Arc<IdentityStore>, IdentityError> {
        let path = data_dir.join(IDENTITY_FILE);
        let io_error = |source| IdentityError::Io {
            path: path.display().to_string(),
            source,
        };
        let identity = match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice::<Identity>(&bytes)
                .map_err(|e| io_error(io::Error::new(io::ErrorKind::InvalidData, e)))?,
            Err(e) if e.kind() == io::ErrorKind::NotFound => Identity {
                node_id,
                incarnation: Uuid::new_v4(),
                admitted: had_log,
                cluster_id: None,
                // A log without an identity file was written before identities existed.
                data_format: (!had_log).then_some(DATA_FORMAT),
            },
            Err(e) => return Err(io_error(e)),
        };
        let found = identity.data_format.unwrap_or(1);
        if found != DATA_FORMAT {
            return Err(IdentityError::DataFormat {
                found,
                expected: DATA_FORMAT,
            });
        }
        if identity.node_id != node_id {
            return Err(IdentityError::OtherNode {
                found: identity.node_id,
                expected: node_id,
            });
        }
        let store = IdentityStore {
            path: path.clone(),
            current: Mutex::new(identity.clone()),
        };
        store.persist(&identity).map_err(io_error)?;
        Ok(Arc::new(store))
    }

    /// The identity as it stands.
    pub fn get(&self) -> Identity {
        self.current
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Admits this incarnation into `cluster_id` (idempotent). Refused when it already
    /// belongs to another cluster.
    pub fn admit(&self, cluster_id: Uuid) -> Result<(), IdentityError> {
        let mut current = self.current.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(mine) = current.cluster_id.filter(|mine| *mine != cluster_id) {
            return Err(IdentityError::OtherCluster {
                mine,
                theirs: cluster_id,
            });
        }
        let next = Identity {
            admitted: true,
            cluster_id: Some(cluster_id),
            ..current.clone()
        };
        if next != *current {
            self.persist(&next).map_err(|source| IdentityError::Io {
                path: self.path.display().to_string(),
                source,
            })?;
            *current = next;
        }
        Ok(())
    }

    /// Whether a Raft request from a node of cluster `theirs` may be served. An admitted
    /// node without a cluster id (an old data dir) adopts the first one it sees.
    pub fn admits(&self, theirs: Option<Uuid>) -> Result<(), String> {
        let identity = self.get();
        if !identity.admitted {
            return Err(format!(
                "node {} has an empty data dir and was not admitted yet: it takes no part in Raft until it has rejoined (the leader removes its old incarnation first)",
                identity.node_id
            ));
        }
        match (identity.cluster_id, theirs) {
            (Some(mine), Some(theirs)) if mine != theirs => Err(format!(
                "node {} belongs to cluster {mine}, not {theirs}",
                identity.node_id
            )),
            (None, Some(theirs)) => self.admit(theirs).map_err(|e| e.to_string()),
            _ => Ok(()),
        }
    }

    /// Writes `identity` to a temp file, syncs it, renames it over the file and syncs the
    /// directory: a crash leaves the old or the new identity, never a torn one.
    fn persist(&self, identity: &Identity) -> io::Result<()> {
        let text = serde_json::to_vec_pretty(identity).map_err(io::Error::other)?;
        let temp = self.path.with_extension("json.tmp");
        {
            use std::io::Write;
            let mut file = std::fs::File::create(&temp)?;
            file.write_all(&text)?;
            file.sync_all()?;
        }
        std::fs::rename(&temp, &self.path)?;
        if let Some(dir) = self.path.parent() {
            std::fs::File::open(dir)?.sync_all()?;
        }
        Ok(())
    }
}

/// Middleware of the Raft RPC routes: refuses requests while this node is not admitted,
/// and requests from another cluster (HTTP 409 with the reason).
pub async fn guard(
    State(identity): State<Arc<IdentityStore>>,
    request: Request,
    next: Next,
) -> Response {
    let theirs = request
        .headers()
        .get(CLUSTER_HEADER)
        .and_then(|value| value.to_str().ok())
        .and_then(|text| Uuid::parse_str(text).ok());
    match identity.admits(theirs) {
        Ok(()) => next.run(request).await,
        Err(reason) => (StatusCode::CONFLICT, reason).into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_data_dir_is_a_new_unadmitted_incarnation() {
        let dir = tempfile::tempdir().expect("dir");
        let first = IdentityStore::open(dir.path(), 2, false).expect("open");
        let identity = first.get();
        assert!(!identity.admitted);
        assert!(first.admits(None).is_err());
        let cluster = Uuid::new_v4();
        first.admit(cluster).expect("admit");
        assert!(first.admits(Some(cluster)).is_ok());
        assert!(
            first.admits(Some(Uuid::new_v4())).is_err(),
            "another cluster"
        );
        assert!(first.admit(Uuid::new_v4()).is_err(), "another cluster");

        // A restart keeps it; a wiped dir is a new incarnation, not admitted.
        let again = IdentityStore::open(dir.path(), 2, true).expect("reopen");
        assert_eq!(again.get().incarnation, identity.incarnation);
        assert!(again.get().admitted);
        let wiped = tempfile::tempdir().expect("dir");
        let fresh = IdentityStore::open(wiped.path(), 2, false).expect("open");
        assert_ne!(fresh.get().incarnation, identity.incarnation);
        assert!(fresh.admits(Some(cluster)).is_err());
        assert!(
            IdentityStore::open(dir.path(), 3, true).is_err(),
            "other node id"
        );
    }

    #[test]
    fn a_data_dir_of_another_ledger_format_is_refused() {
        // A log without an identity file: written before identities, format 1.
        let dir = tempfile::tempdir().expect("dir");
        let error = IdentityStore::open(dir.path(), 1, true).expect_err("format 1");
        assert!(
            matches!(
                error,
                IdentityError::DataFormat {
                    found: 1,
                    expected: DATA_FORMAT
                }
            ),
            "{error}"
        );
        // An identity file without the field is format 1 as well.
        let dir = tempfile::tempdir().expect("dir");
        let old = serde_json::json!({
            "node_id": 1, "incarnation": Uuid::new_v4(), "admitted": true, "cluster_id": null,
        });
        std::fs::write(dir.path().join(IDENTITY_FILE), old.to_string()).expect("write");
        assert!(IdentityStore::open(dir.path(), 1, false).is_err());
        // A new data dir is written in this build's format and opens again.
        let dir = tempfile::tempdir().expect("dir");
        drop(IdentityStore::open(dir.path(), 1, false).expect("new"));
        let again = IdentityStore::open(dir.path(), 1, true).expect("reopen");
        assert_eq!(again.get().data_format, Some(DATA_FORMAT));
    }
}
