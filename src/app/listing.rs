//! `ListLicensesV1`'s answer, rendered again only when it would differ: the ledger
//! changed, or a listed borrow ended. A busy pool is listed far more often than it
//! changes.

use std::sync::{Arc, PoisonError};

use super::auth::Principal;
use super::{App, AppError, LicenseListing};
use crate::borrow::time::UnixSeconds;
use crate::state::api_keys::Access;

/// A rendered listing and what it shows: the ledger at `version`, at instants from
/// `rendered_at` until `fresh_until` (exclusive), when its first borrow ends.
pub(super) struct RenderedListing {
    version: u64,
    rendered_at: UnixSeconds,
    fresh_until: UnixSeconds,
    text: Arc<str>,
}

impl RenderedListing {
    fn shows(&self, version: u64, now: UnixSeconds) -> bool {
        // A clock stepped back could bring back a borrow that had dropped out: render.
        self.version == version && self.rendered_at <= now && now < self.fresh_until
    }
}

impl App {
    /// Every license with its current and upcoming borrows (ordered by feature, then
    /// uuid) as `render` turns it into text, rendered again only when the answer would
    /// differ: the ledger changed, or a listed borrow ended.
    /// A busy pool is listed far more often than it changes; this answers those lists
    /// without walking and rendering every borrow each time.
    ///
    /// A key limited to features lists the licenses of those features only (rendered for
    /// it, not cached).
    pub async fn licenses_rendered(
        &self,
        principal: &Principal,
        render: fn(Vec<LicenseListing>) -> Result<String, String>,
    ) -> Result<Arc<str>, AppError> {
        let listing = Access::LIST_LICENSES;
        principal.check(listing)?;
        let read = self.linearize().await?;
        let (ledger, version) = self.node.ledger.read_versioned();
        App::recheck(&ledger, principal, listing)?;
        // The read point's time, never before what the ledger already applied: the same
        // on every node for the same read, whatever the answering node's clock says.
        let now = read.now.max(ledger.clock());
        if !principal.sees_all_features() {
            let listings: Vec<LicenseListing> = ledger
                .licenses(now)
                .into_iter()
                .filter(|view| principal.sees_feature(&view.license.key.feature))
                .map(|view| LicenseListing {
                    license: view.license.clone(),
                    borrows: view.borrows.into_iter().cloned().collect(),
                })
                .collect();
            drop(ledger);
            return Ok(render(listings).map_err(AppError::Internal)?.into());
        }
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
            .unwrap_or(UnixSeconds::MAX);
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
}
