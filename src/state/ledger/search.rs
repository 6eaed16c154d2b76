//! `ListBorrowsV1`: borrows by filter, in pages. Pages follow the order borrows were made
//! in (the ledger clock at apply, then the id): a borrow made while a client pages comes
//! after every borrow that existed when it started, so following the cursor returns each
//! of those exactly once.

use std::fmt;
use std::ops::Bound;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::borrow::host_id::HostId;
use crate::borrow::time::UnixSeconds;

use super::{BorrowRecord, Ledger};

/// Where a borrow stands at some instant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BorrowStatus {
    /// Starts later.
    Upcoming,
    /// Holds a seat now.
    Active,
    /// Given back early (`ReturnLicenseV1`).
    Returned,
    /// Ran to its end.
    Expired,
}

impl BorrowStatus {
    /// The status of `record` at `now`.
    pub fn of(record: &BorrowRecord, now: UnixSeconds) -> BorrowStatus {
        if record.returned_at.is_some() {
            BorrowStatus::Returned
        } else if record.valid_until <= now {
            BorrowStatus::Expired
        } else if record.valid_from > now {
            BorrowStatus::Upcoming
        } else {
            BorrowStatus::Active
        }
    }

    /// Its wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            BorrowStatus::Upcoming => "upcoming",
            BorrowStatus::Active => "active",
            BorrowStatus::Returned => "returned",
            BorrowStatus::Expired => "expired",
        }
    }

    /// From its wire name.
    pub fn parse(text: &str) -> Option<BorrowStatus> {
        [
            BorrowStatus::Upcoming,
            BorrowStatus::Active,
            BorrowStatus::Returned,
            BorrowStatus::Expired,
        ]
        .into_iter()
        .find(|status| status.as_str() == text)
    }
}

impl fmt::Display for BorrowStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What `ListBorrowsV1` looks for; every set field must match.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BorrowFilter {
    /// The machine.
    pub host_id: Option<HostId>,
    /// The license's feature.
    pub feature: Option<String>,
    /// The license's uuid.
    pub uuid: Option<String>,
    /// Text the borrow's user info contains, ignoring case.
    pub user_info: Option<String>,
    /// Its status at the read's instant.
    pub status: Option<BorrowStatus>,
    /// Borrows that end after this instant...
    pub from: Option<UnixSeconds>,
    /// ...and start before this one.
    pub until: Option<UnixSeconds>,
    /// The features the caller may see (`None`: all).
    pub visible_features: Option<Vec<String>>,
}

impl BorrowFilter {
    /// Whether `record` matches at `now`.
    pub fn matches(&self, record: &BorrowRecord, now: UnixSeconds) -> bool {
        let user_info_matches = match (&self.user_info, &record.user_info) {
            (None, _) => true,
            (Some(_), None) => false,
            (Some(wanted), Some(text)) => text.to_lowercase().contains(&wanted.to_lowercase()),
        };
        self.host_id.as_ref().is_none_or(|h| *h == record.host_id)
            && self
                .feature
                .as_ref()
                .is_none_or(|f| *f == record.key.feature)
            && self.uuid.as_ref().is_none_or(|u| *u == record.key.uuid)
            && user_info_matches
            && self
                .status
                .is_none_or(|status| BorrowStatus::of(record, now) == status)
            && self.from.is_none_or(|from| record.valid_until > from)
            && self.until.is_none_or(|until| record.valid_from < until)
            && self
                .visible_features
                .as_ref()
                .is_none_or(|features| features.contains(&record.key.feature))
    }
}

/// Where a page ends: the next page starts after this borrow.
pub type BorrowCursor = (UnixSeconds, Uuid);

/// One page of `ListBorrowsV1`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BorrowsPage {
    /// The borrows, in the order they were made.
    pub borrows: Vec<BorrowRecord>,
    /// Where the next page starts; `None` when this page is the last.
    pub next: Option<BorrowCursor>,
}

impl Ledger {
    /// Up to `limit` retained borrows matching `filter` at `now`, made after `after`.
    pub fn borrows_page(
        &self,
        filter: &BorrowFilter,
        after: Option<BorrowCursor>,
        limit: usize,
        now: UnixSeconds,
    ) -> BorrowsPage {
        let start = after.map_or(Bound::Unbounded, Bound::Excluded);
        let mut borrows = Vec::new();
        let mut next = None;
        for (issued_at, id) in self.by_issue.range((start, Bound::Unbounded)) {
            let Some(record) = self.borrows.get(id) else {
                continue;
            };
            if !filter.matches(record, now) {
                continue;
            }
            if borrows.len() == limit {
                // One more matches: there is a next page, starting after the last one shown.
                next = borrows
                    .last()
                    .map(|last: &BorrowRecord| (last.issued_at, last.borrow_id));
                break;
            }
            debug_assert_eq!(*issued_at, record.issued_at);
            borrows.push(BorrowRecord::clone(record));
        }
        BorrowsPage { borrows, next }
    }
}
