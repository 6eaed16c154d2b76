//! The cluster's status and a leadership transfer, for the client API: what
//! `licensectl cluster` does on the node-to-node port, reachable through any node's
//! client port with the client API's credentials.

use crate::cluster::admin::{self, ClusterViews, MembershipError};
use crate::raft::NodeId;
use crate::state::api_keys::Access;

use super::{App, AppError, Principal};

impl App {
    /// This node's view of the cluster and its leader's (`GetClusterStatusV1`).
    pub async fn cluster_views(&self, principal: &Principal) -> Result<ClusterViews, AppError> {
        principal.check(Access::READ_CLUSTER)?;
        Ok(admin::cluster_views(&self.node).await)
    }

    /// Hands leadership to voter `to` (`TransferLeadershipV1`); answers what happened.
    pub async fn transfer_leadership(
        &self,
        principal: &Principal,
        to: NodeId,
    ) -> Result<String, AppError> {
        principal.check(Access::ADMINISTER_CLUSTER)?;
        admin::transfer_leadership(&self.node, self.admin_token.clone(), to)
            .await
            .map_err(|error| match error {
                MembershipError::NotAVoter(_) => AppError::InvalidInput(error.to_string()),
                other => AppError::Unavailable(other.to_string()),
            })
    }
}
