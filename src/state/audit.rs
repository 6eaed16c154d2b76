//! The audit trail: who changed what, and when, in the order the log applied it.
//!
//! Every replica records the same entries with the same sequence numbers, since apply is
//! deterministic: the trail is part of the replicated state and of its snapshots. An
//! entry's `seq` starts at 1, grows by one per entry and is never reused, even after the
//! entry is dropped by retention or the trail is rebuilt from a snapshot. Clients page
//! through it with `seq` as the cursor, which no append or trim can shift.

use std::collections::VecDeque;
use std::fmt;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::borrow::host_id::HostId;
use crate::borrow::license::LicenseKey;
use crate::borrow::time::{format_instant, UnixSeconds};

use super::api_key::KeyId;

/// How long entries are kept by default: 90 days.
pub const DEFAULT_AUDIT_RETENTION_SECS: i64 = 90 * 86_400;
/// How many entries are kept by default.
pub const DEFAULT_MAX_AUDIT_ENTRIES: usize = 100_000;
/// Most characters of one free-text field of an event (a reason, a detail, a refused
/// request's license key): every replica keeps every entry, so client text is bounded.
pub const MAX_AUDIT_TEXT_CHARS: usize = 512;

/// Who made a change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Actor {
    /// A client of the Borrow API without an API key.
    Client,
    /// The holder of the admin token.
    AdminToken,
    /// A client with this API key.
    Key(KeyId),
    /// The cluster node with this id (e.g. membership changes it made on its own).
    Node(u64),
    /// The ledger itself (expiry, retention).
    System,
}

impl Actor {
    /// Parses the form [`Display`](fmt::Display) writes: `client`, `admin`,
    /// `key:<16 hex digits>`, `node:<decimal id>`, `system`.
    pub fn parse(text: &str) -> Option<Actor> {
        match text {
            "client" => return Some(Actor::Client),
            "admin" => return Some(Actor::AdminToken),
            "system" => return Some(Actor::System),
            _ => {}
        }
        if let Some(id) = text.strip_prefix("key:") {
            return KeyId::parse(id).ok().map(Actor::Key);
        }
        let id = text.strip_prefix("node:")?;
        // Digits only: `u64::from_str` would also take a sign.
        if id.is_empty() || !id.bytes().all(|byte| byte.is_ascii_digit()) {
            return None;
        }
        id.parse().ok().map(Actor::Node)
    }
}

impl fmt::Display for Actor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Actor::Client => f.write_str("client"),
            Actor::AdminToken => f.write_str("admin"),
            Actor::Key(id) => write!(f, "key:{id}"),
            Actor::Node(id) => write!(f, "node:{id}"),
            Actor::System => f.write_str("system"),
        }
    }
}

/// The kind of an [`AuditEvent`], for filters and listings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum AuditKind {
    /// [`AuditEvent::Borrow`].
    Borrow,
    /// [`AuditEvent::Refusal`].
    Refusal,
    /// [`AuditEvent::Return`].
    Return,
    /// [`AuditEvent::LicenseAdd`].
    LicenseAdd,
    /// [`AuditEvent::LicenseUpdate`].
    LicenseUpdate,
    /// [`AuditEvent::LicenseRemove`].
    LicenseRemove,
    /// [`AuditEvent::PoolApply`].
    PoolApply,
    /// [`AuditEvent::HostUpdate`].
    HostUpdate,
    /// [`AuditEvent::HostBlock`].
    HostBlock,
    /// [`AuditEvent::HostUnblock`].
    HostUnblock,
    /// [`AuditEvent::ApiKeyCreate`].
    ApiKeyCreate,
    /// [`AuditEvent::ApiKeyRevoke`].
    ApiKeyRevoke,
    /// [`AuditEvent::Membership`].
    Membership,
}

impl AuditKind {
    /// Every kind, in declaration order.
    pub const ALL: [AuditKind; 13] = [
        AuditKind::Borrow,
        AuditKind::Refusal,
        AuditKind::Return,
        AuditKind::LicenseAdd,
        AuditKind::LicenseUpdate,
        AuditKind::LicenseRemove,
        AuditKind::PoolApply,
        AuditKind::HostUpdate,
        AuditKind::HostBlock,
        AuditKind::HostUnblock,
        AuditKind::ApiKeyCreate,
        AuditKind::ApiKeyRevoke,
        AuditKind::Membership,
    ];

    /// The kind's name on the wire, e.g. `license-add`.
    pub fn as_str(self) -> &'static str {
        match self {
            AuditKind::Borrow => "borrow",
            AuditKind::Refusal => "refusal",
            AuditKind::Return => "return",
            AuditKind::LicenseAdd => "license-add",
            AuditKind::LicenseUpdate => "license-update",
            AuditKind::LicenseRemove => "license-remove",
            AuditKind::PoolApply => "pool-apply",
            AuditKind::HostUpdate => "host-update",
            AuditKind::HostBlock => "host-block",
            AuditKind::HostUnblock => "host-unblock",
            AuditKind::ApiKeyCreate => "api-key-create",
            AuditKind::ApiKeyRevoke => "api-key-revoke",
            AuditKind::Membership => "membership",
        }
    }

    /// The kind named `text` (the form [`as_str`](AuditKind::as_str) writes).
    pub fn parse(text: &str) -> Option<AuditKind> {
        AuditKind::ALL
            .into_iter()
            .find(|kind| kind.as_str() == text)
    }
}

impl fmt::Display for AuditKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What happened. New variants go last: snapshots encode the variant's index.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum AuditEvent {
    /// A license was borrowed.
    Borrow {
        /// The new borrow.
        borrow_id: Uuid,
        /// The license.
        key: LicenseKey,
        /// The machine it is bound to.
        host_id: HostId,
        /// Start of the borrow.
        valid_from: UnixSeconds,
        /// End of the borrow (exclusive).
        valid_until: UnixSeconds,
    },
    /// A borrow was refused.
    Refusal {
        /// The license asked for (client text: bounded when recorded).
        key: LicenseKey,
        /// The machine it was asked for.
        host_id: HostId,
        /// The JSON-RPC error code of the refusal.
        code: i64,
        /// Why.
        reason: String,
    },
    /// A borrow was given back early.
    Return {
        /// The borrow.
        borrow_id: Uuid,
        /// Its license.
        key: LicenseKey,
        /// Its machine.
        host_id: HostId,
    },
    /// A license was added to the pool.
    LicenseAdd {
        /// The license.
        key: LicenseKey,
        /// What it is (count, validity, …).
        detail: String,
    },
    /// A license of the pool was changed.
    LicenseUpdate {
        /// The license.
        key: LicenseKey,
        /// What changed.
        detail: String,
    },
    /// A license was removed from the pool.
    LicenseRemove {
        /// The license.
        key: LicenseKey,
        /// What it was, or why it went.
        detail: String,
    },
    /// A whole pool file was applied.
    PoolApply {
        /// What changed (counts of added, updated, removed licenses).
        detail: String,
    },
    /// A host's name or notes were edited.
    HostUpdate {
        /// The host.
        host_id: HostId,
        /// What changed.
        detail: String,
    },
    /// A host was blocked from borrowing.
    HostBlock {
        /// The host.
        host_id: HostId,
        /// Why (the block's reason).
        detail: String,
    },
    /// A host's block was lifted.
    HostUnblock {
        /// The host.
        host_id: HostId,
    },
    /// A client API key was created.
    ApiKeyCreate {
        /// The key.
        key_id: KeyId,
        /// Its name, scope and features.
        detail: String,
    },
    /// A client API key was revoked.
    ApiKeyRevoke {
        /// The key.
        key_id: KeyId,
    },
    /// The cluster's membership changed.
    Membership {
        /// How.
        detail: String,
    },
}

impl AuditEvent {
    /// The event's kind.
    pub fn kind(&self) -> AuditKind {
        match self {
            AuditEvent::Borrow { .. } => AuditKind::Borrow,
            AuditEvent::Refusal { .. } => AuditKind::Refusal,
            AuditEvent::Return { .. } => AuditKind::Return,
            AuditEvent::LicenseAdd { .. } => AuditKind::LicenseAdd,
            AuditEvent::LicenseUpdate { .. } => AuditKind::LicenseUpdate,
            AuditEvent::LicenseRemove { .. } => AuditKind::LicenseRemove,
            AuditEvent::PoolApply { .. } => AuditKind::PoolApply,
            AuditEvent::HostUpdate { .. } => AuditKind::HostUpdate,
            AuditEvent::HostBlock { .. } => AuditKind::HostBlock,
            AuditEvent::HostUnblock { .. } => AuditKind::HostUnblock,
            AuditEvent::ApiKeyCreate { .. } => AuditKind::ApiKeyCreate,
            AuditEvent::ApiKeyRevoke { .. } => AuditKind::ApiKeyRevoke,
            AuditEvent::Membership { .. } => AuditKind::Membership,
        }
    }

    /// The borrow the event is about, if any.
    pub fn borrow_id(&self) -> Option<Uuid> {
        match self {
            AuditEvent::Borrow { borrow_id, .. } | AuditEvent::Return { borrow_id, .. } => {
                Some(*borrow_id)
            }
            _ => None,
        }
    }

    /// The license the event is about, if any.
    pub fn license(&self) -> Option<&LicenseKey> {
        match self {
            AuditEvent::Borrow { key, .. }
            | AuditEvent::Refusal { key, .. }
            | AuditEvent::Return { key, .. }
            | AuditEvent::LicenseAdd { key, .. }
            | AuditEvent::LicenseUpdate { key, .. }
            | AuditEvent::LicenseRemove { key, .. } => Some(key),
            _ => None,
        }
    }

    /// The host the event is about, if any.
    pub fn host_id(&self) -> Option<&HostId> {
        match self {
            AuditEvent::Borrow { host_id, .. }
            | AuditEvent::Refusal { host_id, .. }
            | AuditEvent::Return { host_id, .. }
            | AuditEvent::HostUpdate { host_id, .. }
            | AuditEvent::HostBlock { host_id, .. }
            | AuditEvent::HostUnblock { host_id } => Some(host_id),
            _ => None,
        }
    }

    /// The JSON-RPC error code of a refusal.
    pub fn code(&self) -> Option<i64> {
        match self {
            AuditEvent::Refusal { code, .. } => Some(*code),
            _ => None,
        }
    }

    /// One line for a person, e.g. `borrowed MVTec_HALCON/abc for MAC:2C549188C9E3
    /// [2026-01-01T00:00:00Z, 2026-01-08T00:00:00Z) as borrow <uuid>`.
    pub fn detail(&self) -> String {
        // `: detail`, or nothing when there is no detail.
        fn colon(detail: &str) -> String {
            if detail.is_empty() {
                String::new()
            } else {
                format!(": {detail}")
            }
        }
        match self {
            AuditEvent::Borrow {
                borrow_id,
                key,
                host_id,
                valid_from,
                valid_until,
            } => format!(
                "borrowed {}/{} for {host_id} [{}, {}) as borrow {borrow_id}",
                key.feature,
                key.uuid,
                format_instant(*valid_from),
                format_instant(*valid_until)
            ),
            AuditEvent::Refusal {
                key,
                host_id,
                code,
                reason,
            } => format!(
                "refused {}/{} for {host_id} (code {code}){}",
                key.feature,
                key.uuid,
                colon(reason)
            ),
            AuditEvent::Return {
                borrow_id,
                key,
                host_id,
            } => format!(
                "returned {}/{} from {host_id} (borrow {borrow_id})",
                key.feature, key.uuid
            ),
            AuditEvent::LicenseAdd { key, detail } => {
                format!(
                    "added license {}/{}{}",
                    key.feature,
                    key.uuid,
                    colon(detail)
                )
            }
            AuditEvent::LicenseUpdate { key, detail } => format!(
                "updated license {}/{}{}",
                key.feature,
                key.uuid,
                colon(detail)
            ),
            AuditEvent::LicenseRemove { key, detail } => format!(
                "removed license {}/{}{}",
                key.feature,
                key.uuid,
                colon(detail)
            ),
            AuditEvent::PoolApply { detail } => format!("applied a pool{}", colon(detail)),
            AuditEvent::HostUpdate { host_id, detail } => {
                format!("updated host {host_id}{}", colon(detail))
            }
            AuditEvent::HostBlock { host_id, detail } => {
                format!("blocked host {host_id}{}", colon(detail))
            }
            AuditEvent::HostUnblock { host_id } => format!("unblocked host {host_id}"),
            AuditEvent::ApiKeyCreate { key_id, detail } => {
                format!("created API key {key_id}{}", colon(detail))
            }
            AuditEvent::ApiKeyRevoke { key_id } => format!("revoked API key {key_id}"),
            AuditEvent::Membership { detail } => format!("changed membership{}", colon(detail)),
        }
    }

    /// The event with every free-text field passed through [`bounded_text`]: what
    /// [`AuditTrail::record`] stores.
    pub fn bounded(self) -> AuditEvent {
        let key = |key: LicenseKey| LicenseKey {
            feature: bounded_text(&key.feature),
            uuid: bounded_text(&key.uuid),
        };
        match self {
            AuditEvent::Refusal {
                key: license,
                host_id,
                code,
                reason,
            } => AuditEvent::Refusal {
                key: key(license),
                host_id,
                code,
                reason: bounded_text(&reason),
            },
            AuditEvent::LicenseAdd {
                key: license,
                detail,
            } => AuditEvent::LicenseAdd {
                key: key(license),
                detail: bounded_text(&detail),
            },
            AuditEvent::LicenseUpdate {
                key: license,
                detail,
            } => AuditEvent::LicenseUpdate {
                key: key(license),
                detail: bounded_text(&detail),
            },
            AuditEvent::LicenseRemove {
                key: license,
                detail,
            } => AuditEvent::LicenseRemove {
                key: key(license),
                detail: bounded_text(&detail),
            },
            AuditEvent::PoolApply { detail } => AuditEvent::PoolApply {
                detail: bounded_text(&detail),
            },
            AuditEvent::HostUpdate { host_id, detail } => AuditEvent::HostUpdate {
                host_id,
                detail: bounded_text(&detail),
            },
            AuditEvent::HostBlock { host_id, detail } => AuditEvent::HostBlock {
                host_id,
                detail: bounded_text(&detail),
            },
            AuditEvent::ApiKeyCreate { key_id, detail } => AuditEvent::ApiKeyCreate {
                key_id,
                detail: bounded_text(&detail),
            },
            AuditEvent::Membership { detail } => AuditEvent::Membership {
                detail: bounded_text(&detail),
            },
            // Borrows and returns name licenses the pool holds: validated, short.
            event @ (AuditEvent::Borrow { .. }
            | AuditEvent::Return { .. }
            | AuditEvent::HostUnblock { .. }
            | AuditEvent::ApiKeyRevoke { .. }) => event,
        }
    }
}

/// `text` cut to at most [`MAX_AUDIT_TEXT_CHARS`] characters (the last one `…` when cut),
/// with control characters (line breaks included) replaced by spaces, so that
/// [`AuditEvent::detail`] stays one line.
pub fn bounded_text(text: &str) -> String {
    let mut chars = text.chars();
    let mut bounded = String::with_capacity(text.len().min(MAX_AUDIT_TEXT_CHARS));
    for _ in 0..MAX_AUDIT_TEXT_CHARS {
        match chars.next() {
            Some(c) if c.is_control() => bounded.push(' '),
            Some(c) => bounded.push(c),
            None => return bounded,
        }
    }
    if chars.next().is_some() {
        bounded.pop();
        bounded.push('…');
    }
    bounded
}

/// One entry of the trail.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEntry {
    /// Its place in the trail: 1 for the first entry ever, +1 for each next one.
    pub seq: u64,
    /// When (the ledger's clock, which never goes backwards).
    pub at: UnixSeconds,
    /// The node the request arrived at, when known.
    pub node: Option<u64>,
    /// Who.
    pub actor: Actor,
    /// What.
    pub event: AuditEvent,
}

/// The filters of `ListAuditV1`: all optional, all must hold.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditFilter {
    /// Entries at or after this instant.
    pub since: Option<UnixSeconds>,
    /// Entries before this instant.
    pub until: Option<UnixSeconds>,
    /// Entries of this kind.
    pub kind: Option<AuditKind>,
    /// Entries about this host.
    pub host_id: Option<HostId>,
    /// Entries about a license of this feature.
    pub feature: Option<String>,
    /// Entries about this borrow.
    pub borrow_id: Option<Uuid>,
    /// Entries made by this actor.
    pub actor: Option<Actor>,
}

impl AuditFilter {
    /// Whether `entry` passes every filter that is set.
    pub fn matches(&self, entry: &AuditEntry) -> bool {
        let event = &entry.event;
        self.since.is_none_or(|since| entry.at >= since)
            && self.until.is_none_or(|until| entry.at < until)
            && self.kind.is_none_or(|kind| event.kind() == kind)
            && self
                .host_id
                .as_ref()
                .is_none_or(|host| event.host_id() == Some(host))
            && self.feature.as_ref().is_none_or(|feature| {
                event
                    .license()
                    .is_some_and(|key| key.feature == feature.as_str())
            })
            && self
                .borrow_id
                .is_none_or(|id| event.borrow_id() == Some(id))
            && self.actor.is_none_or(|actor| entry.actor == actor)
    }
}

/// How much of the trail is kept (replicated: every replica trims alike).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditRetention {
    /// Entries older than this many seconds are dropped (0 or less: only entries of the
    /// current second are kept).
    pub max_age_secs: i64,
    /// At most this many entries are kept, the newest (0: none).
    pub max_entries: usize,
}

impl Default for AuditRetention {
    fn default() -> Self {
        AuditRetention {
            max_age_secs: DEFAULT_AUDIT_RETENTION_SECS,
            max_entries: DEFAULT_MAX_AUDIT_ENTRIES,
        }
    }
}

/// The trail: entries in `seq` order, which is also (non-strict) time order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditTrail {
    /// Shared with snapshots being written: an entry never changes once recorded.
    entries: VecDeque<Arc<AuditEntry>>,
    /// The `seq` of the next entry: never goes down, so a `seq` is never reused.
    next_seq: u64,
    /// What is kept.
    retention: AuditRetention,
}

impl Default for AuditTrail {
    fn default() -> Self {
        AuditTrail::new(AuditRetention::default())
    }
}

impl AuditTrail {
    /// An empty trail whose first entry will be `seq` 1.
    pub fn new(retention: AuditRetention) -> Self {
        AuditTrail {
            entries: VecDeque::new(),
            next_seq: 1,
            retention,
        }
    }

    /// What is kept.
    pub fn retention(&self) -> AuditRetention {
        self.retention
    }

    /// Changes what is kept and trims at once: by count, and by age as of the newest
    /// entry's time (the ledger's clock is at least that, so this drops nothing that the
    /// next [`expire`](AuditTrail::expire) would keep).
    pub fn set_retention(&mut self, retention: AuditRetention) {
        self.retention = retention;
        self.trim_as_of_newest();
    }

    /// Appends an entry and answers its `seq`; then drops entries older than
    /// `at - max_age_secs` and the oldest beyond `max_entries`. Free text is bounded
    /// ([`AuditEvent::bounded`]). An `at` earlier than the newest entry's is recorded as
    /// that entry's: times never go backwards along the trail, which paging relies on
    /// (the ledger's clock never does either, so this is only a safeguard).
    pub fn record(
        &mut self,
        at: UnixSeconds,
        node: Option<u64>,
        actor: Actor,
        event: AuditEvent,
    ) -> u64 {
        let at = self.entries.back().map_or(at, |newest| at.max(newest.at));
        let seq = self.next_seq;
        // 2⁶⁴ entries are never reached; saturating keeps apply free of panics.
        self.next_seq = self.next_seq.saturating_add(1);
        self.entries.push_back(Arc::new(AuditEntry {
            seq,
            at,
            node,
            actor,
            event: event.bounded(),
        }));
        self.trim(at);
        seq
    }

    /// Drops the entries that are too old as of `now` (called when the ledger's clock
    /// advances).
    pub fn expire(&mut self, now: UnixSeconds) {
        self.trim(now);
    }

    /// Number of entries kept.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether no entry is kept.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// A page of the trail: the entries after `after_seq` (the cursor; `None`: from the
    /// start) that match `filter`, oldest first, at most `limit` of them (a `limit` of 0
    /// is taken as 1, so that every page moves the cursor). Also answers the cursor of the
    /// next page: the last `seq` of this one when the page is full and entries that may
    /// match follow it, else `None`.
    ///
    /// A client that follows the cursors sees every entry that existed when it started
    /// exactly once, whatever is appended meanwhile (unless retention drops it first).
    pub fn page(
        &self,
        filter: &AuditFilter,
        after_seq: Option<u64>,
        limit: usize,
    ) -> (Vec<Arc<AuditEntry>>, Option<u64>) {
        let limit = limit.max(1);
        // Entries are in `seq` order and in time order: both bounds by binary search.
        let mut start = after_seq.map_or(0, |after| {
            self.entries.partition_point(|entry| entry.seq <= after)
        });
        if let Some(since) = filter.since {
            start = start.max(self.entries.partition_point(|entry| entry.at < since));
        }
        let end = filter
            .until
            .map_or(self.entries.len(), |until| {
                self.entries.partition_point(|entry| entry.at < until)
            })
            .max(start);
        let mut page = Vec::new();
        for (index, entry) in self.entries.range(start..end).enumerate() {
            if !filter.matches(entry) {
                continue;
            }
            page.push(Arc::clone(entry));
            if page.len() == limit {
                let more = start + index + 1 < end;
                return (page, more.then_some(entry.seq));
            }
        }
        (page, None)
    }

    /// The entries, shared, in `seq` order: what a snapshot writes (with
    /// [`next_seq`](AuditTrail::next_seq) and [`retention`](AuditTrail::retention)).
    pub fn shared(&self) -> Vec<Arc<AuditEntry>> {
        self.entries.iter().cloned().collect()
    }

    /// The `seq` the next entry will get.
    pub fn next_seq(&self) -> u64 {
        self.next_seq
    }

    /// The trail of a snapshot. Entries are put in `seq` order (the first of equal `seq`s
    /// wins), `next_seq` is raised past the last entry's, times are made non-decreasing
    /// and the retention is applied as [`set_retention`](AuditTrail::set_retention)
    /// does; for what [`shared`](AuditTrail::shared) wrote, all of this changes nothing.
    pub fn from_parts(
        next_seq: u64,
        retention: AuditRetention,
        mut entries: Vec<AuditEntry>,
    ) -> AuditTrail {
        entries.sort_by_key(|entry| entry.seq);
        entries.dedup_by_key(|entry| entry.seq);
        let mut latest = UnixSeconds::MIN;
        let entries: VecDeque<Arc<AuditEntry>> = entries
            .into_iter()
            .map(|mut entry| {
                latest = latest.max(entry.at);
                entry.at = latest;
                Arc::new(entry)
            })
            .collect();
        let next_seq = entries
            .back()
            .map_or(next_seq, |last| next_seq.max(last.seq.saturating_add(1)))
            .max(1);
        let mut trail = AuditTrail {
            entries,
            next_seq,
            retention,
        };
        trail.trim_as_of_newest();
        trail
    }

    /// Trims as of the newest entry's time.
    fn trim_as_of_newest(&mut self) {
        if let Some(newest) = self.entries.back().map(|entry| entry.at) {
            self.trim(newest);
        }
    }

    /// Drops entries older than `now - max_age_secs`, then the oldest beyond `max_entries`.
    fn trim(&mut self, now: UnixSeconds) {
        let cutoff = now.saturating_sub(self.retention.max_age_secs.max(0));
        // Times are non-decreasing along the trail: the old ones are all at the front.
        // Most calls (one per applied entry) find nothing old: the front answers that
        // without a binary search over the whole trail.
        let old = match self.entries.front() {
            Some(oldest) if oldest.at < cutoff => {
                self.entries.partition_point(|entry| entry.at < cutoff)
            }
            _ => 0,
        };
        let excess = self
            .entries
            .len()
            .saturating_sub(self.retention.max_entries);
        self.entries.drain(..old.max(excess));
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

    const NOW: UnixSeconds = 1_800_000_000;
    const DAY: i64 = 86_400;

    fn host(n: u64) -> HostId {
        HostId::parse(&format!("MAC:{n:012X}")).expect("host id")
    }

    fn license(feature: &str, uuid: &str) -> LicenseKey {
        LicenseKey {
            feature: feature.into(),
            uuid: uuid.into(),
        }
    }

    fn borrow(n: u64) -> AuditEvent {
        AuditEvent::Borrow {
            borrow_id: Uuid::from_u128(u128::from(n)),
            key: license("MVTec_HALCON", "abc"),
            host_id: host(n),
            valid_from: NOW,
            valid_until: NOW + DAY,
        }
    }

    /// One event of every kind, in [`AuditKind::ALL`] order.
    fn one_of_each() -> Vec<AuditEvent> {
        let key = license("MVTec_HDevelop", "lic-1");
        vec![
            borrow(1),
            AuditEvent::Refusal {
                key: key.clone(),
                host_id: host(2),
                code: 32,
                reason: "no seat left".into(),
            },
            AuditEvent::Return {
                borrow_id: Uuid::from_u128(1),
                key: key.clone(),
                host_id: host(1),
            },
            AuditEvent::LicenseAdd {
                key: key.clone(),
                detail: "count 5".into(),
            },
            AuditEvent::LicenseUpdate {
                key: key.clone(),
                detail: "count 5 -> 6".into(),
            },
            AuditEvent::LicenseRemove {
                key,
                detail: String::new(),
            },
            AuditEvent::PoolApply {
                detail: "1 added".into(),
            },
            AuditEvent::HostUpdate {
                host_id: host(3),
                detail: "name build-7".into(),
            },
            AuditEvent::HostBlock {
                host_id: host(3),
                detail: "stolen".into(),
            },
            AuditEvent::HostUnblock { host_id: host(3) },
            AuditEvent::ApiKeyCreate {
                key_id: KeyId::from_u64(7),
                detail: "ci (borrow)".into(),
            },
            AuditEvent::ApiKeyRevoke {
                key_id: KeyId::from_u64(7),
            },
            AuditEvent::Membership {
                detail: "added node 4".into(),
            },
        ]
    }

    fn unlimited() -> AuditRetention {
        AuditRetention {
            max_age_secs: i64::MAX,
            max_entries: usize::MAX,
        }
    }

    fn seqs(entries: &[Arc<AuditEntry>]) -> Vec<u64> {
        entries.iter().map(|entry| entry.seq).collect()
    }

    /// Every page of `filter`, following the cursors.
    fn all_pages(trail: &AuditTrail, filter: &AuditFilter, limit: usize) -> Vec<u64> {
        let mut seen = Vec::new();
        let mut cursor = None;
        loop {
            let (page, next) = trail.page(filter, cursor, limit);
            assert!(page.len() <= limit.max(1));
            seen.extend(seqs(&page));
            match next {
                Some(next) => cursor = Some(next),
                None => return seen,
            }
        }
    }

    #[test]
    fn actors_and_kinds_read_back_what_they_write() {
        let actors = [
            Actor::Client,
            Actor::AdminToken,
            Actor::Key(KeyId::from_u64(0x0f3a_9c5d_2e7b_6a18)),
            Actor::Key(KeyId::from_u64(0)),
            Actor::Node(0),
            Actor::Node(u64::MAX),
            Actor::System,
        ];
        for actor in actors {
            assert_eq!(Actor::parse(&actor.to_string()), Some(actor), "{actor}");
        }
        assert_eq!(
            Actor::Key(KeyId::from_u64(0x0f3a_9c5d_2e7b_6a18)).to_string(),
            "key:0f3a9c5d2e7b6a18"
        );
        assert_eq!(Actor::Node(3).to_string(), "node:3");
        assert_eq!(Actor::AdminToken.to_string(), "admin");
        for bad in [
            "",
            "Client",
            "admin-token",
            "key:",
            "key:123",
            "key:0F3A9C5D2E7B6A18",
            "node:",
            "node:+1",
            "node:-1",
            "node:1x",
            "node:18446744073709551616",
            "node 1",
        ] {
            assert_eq!(Actor::parse(bad), None, "{bad:?}");
        }

        let names: BTreeSet<&str> = AuditKind::ALL.iter().map(|kind| kind.as_str()).collect();
        assert_eq!(names.len(), AuditKind::ALL.len(), "names are distinct");
        for kind in AuditKind::ALL {
            assert_eq!(AuditKind::parse(&kind.to_string()), Some(kind));
        }
        assert_eq!(AuditKind::LicenseAdd.to_string(), "license-add");
        assert_eq!(AuditKind::ApiKeyRevoke.to_string(), "api-key-revoke");
        assert_eq!(AuditKind::parse("Borrow"), None);
        assert_eq!(AuditKind::parse("license_add"), None);
    }

    #[test]
    fn events_answer_their_kind_and_what_they_are_about() {
        let events = one_of_each();
        let kinds: Vec<AuditKind> = events.iter().map(AuditEvent::kind).collect();
        assert_eq!(kinds, AuditKind::ALL);

        let borrow = &events[0];
        assert_eq!(borrow.borrow_id(), Some(Uuid::from_u128(1)));
        assert_eq!(borrow.license(), Some(&license("MVTec_HALCON", "abc")));
        assert_eq!(borrow.host_id(), Some(&host(1)));
        assert_eq!(borrow.code(), None);
        assert_eq!(
            borrow.detail(),
            format!(
                "borrowed MVTec_HALCON/abc for MAC:000000000001 [2027-01-15T08:00:00Z, 2027-01-16T08:00:00Z) as borrow {}",
                Uuid::from_u128(1)
            )
        );
        let refusal = &events[1];
        assert_eq!(refusal.code(), Some(32));
        assert_eq!(refusal.borrow_id(), None);
        assert_eq!(
            refusal.detail(),
            "refused MVTec_HDevelop/lic-1 for MAC:000000000002 (code 32): no seat left"
        );
        assert_eq!(events[2].borrow_id(), Some(Uuid::from_u128(1)));
        assert_eq!(events[5].detail(), "removed license MVTec_HDevelop/lic-1");
        assert_eq!(events[8].detail(), "blocked host MAC:000000000003: stolen");
        assert_eq!(events[11].detail(), "revoked API key 0000000000000007");

        let with_license: Vec<bool> = events.iter().map(|e| e.license().is_some()).collect();
        assert_eq!(
            with_license,
            [true, true, true, true, true, true, false, false, false, false, false, false, false]
        );
        let with_host: Vec<bool> = events.iter().map(|e| e.host_id().is_some()).collect();
        assert_eq!(
            with_host,
            [true, true, true, false, false, false, false, true, true, true, false, false, false]
        );
        for event in &events {
            let detail = event.detail();
            assert!(!detail.is_empty() && !detail.contains('\n'), "{detail:?}");
        }
    }

    #[test]
    fn free_text_is_bounded_and_one_line() {
        assert_eq!(bounded_text("short"), "short");
        assert_eq!(bounded_text("two\nlines\there"), "two lines here");
        let exact = "é".repeat(MAX_AUDIT_TEXT_CHARS);
        assert_eq!(bounded_text(&exact), exact);
        let long = "é".repeat(MAX_AUDIT_TEXT_CHARS + 1);
        let cut = bounded_text(&long);
        assert_eq!(cut.chars().count(), MAX_AUDIT_TEXT_CHARS);
        assert!(cut.ends_with("é…"));

        let mut trail = AuditTrail::default();
        let huge = "x".repeat(10_000);
        trail.record(
            NOW,
            None,
            Actor::Client,
            AuditEvent::Refusal {
                key: license("MVTec_HALCON", &huge),
                host_id: host(1),
                code: 31,
                reason: format!("{huge}\n{huge}"),
            },
        );
        trail.record(
            NOW,
            Some(1),
            Actor::AdminToken,
            AuditEvent::PoolApply {
                detail: huge.clone(),
            },
        );
        let (entries, _) = trail.page(&AuditFilter::default(), None, 10);
        assert_eq!(entries.len(), 2);
        match &entries[0].event {
            AuditEvent::Refusal { key, reason, .. } => {
                assert_eq!(key.uuid.chars().count(), MAX_AUDIT_TEXT_CHARS);
                assert_eq!(reason.chars().count(), MAX_AUDIT_TEXT_CHARS);
            }
            other => panic!("expected a refusal, got {other:?}"),
        }
        for entry in &entries {
            let detail = entry.event.detail();
            assert!(detail.chars().count() < 3 * MAX_AUDIT_TEXT_CHARS, "bounded");
            assert!(!detail.contains('\n'));
        }
    }

    #[test]
    fn seq_starts_at_one_grows_by_one_and_is_never_reused() {
        let mut trail = AuditTrail::new(AuditRetention {
            max_age_secs: DAY,
            max_entries: 3,
        });
        assert!(trail.is_empty());
        assert_eq!(trail.next_seq(), 1);
        let recorded: Vec<u64> = (0..10)
            .map(|n| trail.record(NOW + n as i64, None, Actor::System, borrow(n)))
            .collect();
        assert_eq!(recorded, (1..=10).collect::<Vec<u64>>());
        assert_eq!(trail.len(), 3);
        assert_eq!(seqs(&trail.shared()), [8, 9, 10]);
        assert_eq!(trail.next_seq(), 11);

        // Dropping everything by age does not restart the count.
        trail.expire(NOW + 100 * DAY);
        assert!(trail.is_empty());
        assert_eq!(
            trail.record(NOW + 100 * DAY, None, Actor::System, borrow(0)),
            11
        );
    }

    #[test]
    fn times_never_go_backwards_along_the_trail() {
        let mut trail = AuditTrail::new(unlimited());
        trail.record(NOW, None, Actor::System, borrow(1));
        trail.record(NOW - 50, None, Actor::System, borrow(2));
        let ats: Vec<UnixSeconds> = trail.shared().iter().map(|entry| entry.at).collect();
        assert_eq!(ats, [NOW, NOW]);
    }

    #[test]
    fn retention_drops_old_entries_and_the_oldest_beyond_the_count() {
        let mut trail = AuditTrail::new(AuditRetention {
            max_age_secs: 10 * DAY,
            max_entries: 100,
        });
        for day in 0..20 {
            trail.record(NOW + day * DAY, Some(1), Actor::Client, borrow(day as u64));
        }
        // Recording at day 19 keeps days 9..=19: `at` >= now - max_age.
        assert_eq!(trail.len(), 11);
        assert_eq!(trail.shared()[0].at, NOW + 9 * DAY);

        trail.expire(NOW + 25 * DAY - 1);
        assert_eq!(trail.shared()[0].at, NOW + 15 * DAY);
        assert_eq!(trail.len(), 5);
        trail.expire(NOW + 25 * DAY);
        assert_eq!(trail.len(), 5, "an entry exactly max_age old stays");
        // `expire` with an earlier time drops nothing more.
        trail.expire(NOW);
        assert_eq!(trail.len(), 5);

        // A smaller count trims at once; a shorter age trims as of the newest entry.
        trail.set_retention(AuditRetention {
            max_age_secs: 10 * DAY,
            max_entries: 3,
        });
        assert_eq!(seqs(&trail.shared()), [18, 19, 20]);
        trail.set_retention(AuditRetention {
            max_age_secs: DAY,
            max_entries: 3,
        });
        assert_eq!(seqs(&trail.shared()), [19, 20]);
        assert_eq!(trail.retention().max_age_secs, DAY);

        // Nothing kept at all.
        trail.set_retention(AuditRetention {
            max_age_secs: DAY,
            max_entries: 0,
        });
        assert!(trail.is_empty());
        assert_eq!(
            trail.record(NOW + 30 * DAY, None, Actor::System, borrow(0)),
            21
        );
        assert!(trail.is_empty());
    }

    #[test]
    fn default_retention_is_ninety_days_and_a_hundred_thousand_entries() {
        let retention = AuditRetention::default();
        assert_eq!(retention.max_age_secs, 90 * DAY);
        assert_eq!(retention.max_entries, 100_000);
        assert_eq!(AuditTrail::default().retention(), retention);
    }

    #[test]
    fn each_filter_selects_its_entries() {
        let mut trail = AuditTrail::new(unlimited());
        let actors = [
            Actor::Client,
            Actor::AdminToken,
            Actor::Key(KeyId::from_u64(9)),
            Actor::Node(2),
        ];
        for (n, event) in one_of_each().into_iter().enumerate() {
            trail.record(NOW + n as i64 * 10, Some(1), actors[n % 4], event);
        }
        let matching = |filter: AuditFilter| all_pages(&trail, &filter, 100);

        assert_eq!(
            matching(AuditFilter::default()),
            (1..=13).collect::<Vec<_>>()
        );
        assert_eq!(
            matching(AuditFilter {
                since: Some(NOW + 30),
                ..AuditFilter::default()
            }),
            (4..=13).collect::<Vec<_>>()
        );
        assert_eq!(
            matching(AuditFilter {
                until: Some(NOW + 30),
                ..AuditFilter::default()
            }),
            [1, 2, 3]
        );
        assert_eq!(
            matching(AuditFilter {
                since: Some(NOW + 25),
                until: Some(NOW + 51),
                ..AuditFilter::default()
            }),
            [4, 5, 6]
        );
        assert_eq!(
            matching(AuditFilter {
                since: Some(NOW + 60),
                until: Some(NOW + 30),
                ..AuditFilter::default()
            }),
            Vec::<u64>::new()
        );
        for (n, kind) in AuditKind::ALL.into_iter().enumerate() {
            assert_eq!(
                matching(AuditFilter {
                    kind: Some(kind),
                    ..AuditFilter::default()
                }),
                [n as u64 + 1],
                "{kind}"
            );
        }
        assert_eq!(
            matching(AuditFilter {
                host_id: Some(host(3)),
                ..AuditFilter::default()
            }),
            [8, 9, 10]
        );
        assert_eq!(
            matching(AuditFilter {
                host_id: Some(host(1)),
                ..AuditFilter::default()
            }),
            [1, 3]
        );
        assert_eq!(
            matching(AuditFilter {
                feature: Some("MVTec_HDevelop".into()),
                ..AuditFilter::default()
            }),
            [2, 3, 4, 5, 6]
        );
        assert_eq!(
            matching(AuditFilter {
                feature: Some("MVTec".into()),
                ..AuditFilter::default()
            }),
            Vec::<u64>::new()
        );
        assert_eq!(
            matching(AuditFilter {
                borrow_id: Some(Uuid::from_u128(1)),
                ..AuditFilter::default()
            }),
            [1, 3]
        );
        assert_eq!(
            matching(AuditFilter {
                actor: Some(Actor::Key(KeyId::from_u64(9))),
                ..AuditFilter::default()
            }),
            [3, 7, 11]
        );
        assert_eq!(
            matching(AuditFilter {
                actor: Some(Actor::System),
                ..AuditFilter::default()
            }),
            Vec::<u64>::new()
        );
        // Filters combine.
        assert_eq!(
            matching(AuditFilter {
                feature: Some("MVTec_HDevelop".into()),
                actor: Some(Actor::AdminToken),
                since: Some(NOW + 20),
                ..AuditFilter::default()
            }),
            [6]
        );
    }

    #[test]
    fn pages_follow_the_cursor_and_say_when_more_may_follow() {
        let mut trail = AuditTrail::new(unlimited());
        for n in 0..10 {
            trail.record(NOW + n as i64, None, Actor::Client, borrow(n));
        }
        let all = AuditFilter::default();
        let (page, next) = trail.page(&all, None, 4);
        assert_eq!((seqs(&page), next), (vec![1, 2, 3, 4], Some(4)));
        let (page, next) = trail.page(&all, Some(4), 4);
        assert_eq!((seqs(&page), next), (vec![5, 6, 7, 8], Some(8)));
        let (page, next) = trail.page(&all, Some(8), 4);
        assert_eq!((seqs(&page), next), (vec![9, 10], None));
        // A page that ends exactly at the last entry says so.
        let (page, next) = trail.page(&all, Some(6), 4);
        assert_eq!((seqs(&page), next), (vec![7, 8, 9, 10], None));
        // A cursor past the end, or before the start, is fine.
        assert_eq!(trail.page(&all, Some(99), 4), (Vec::new(), None));
        assert_eq!(seqs(&trail.page(&all, Some(0), 2).0), [1, 2]);
        // Limit 0 still moves forward.
        let (page, next) = trail.page(&all, None, 0);
        assert_eq!((seqs(&page), next), (vec![1], Some(1)));
        // A cursor and `since` together: the later start wins.
        let since = AuditFilter {
            since: Some(NOW + 6),
            ..AuditFilter::default()
        };
        assert_eq!(seqs(&trail.page(&since, Some(2), 10).0), [7, 8, 9, 10]);
        assert_eq!(seqs(&trail.page(&since, Some(8), 10).0), [9, 10]);
        // With entries dropped by retention, the cursor still means the same place.
        trail.set_retention(AuditRetention {
            max_age_secs: i64::MAX,
            max_entries: 5,
        });
        assert_eq!(seqs(&trail.page(&all, Some(2), 3).0), [6, 7, 8]);
        assert_eq!(seqs(&trail.page(&all, Some(7), 3).0), [8, 9, 10]);
    }

    #[test]
    fn paging_while_entries_are_appended_sees_each_existing_entry_once() {
        let mut trail = AuditTrail::new(unlimited());
        for n in 0..1_000u64 {
            let event = if n % 3 == 0 {
                borrow(n)
            } else {
                AuditEvent::Membership {
                    detail: format!("change {n}"),
                }
            };
            trail.record(NOW + (n / 7) as i64, None, Actor::System, event);
        }
        let existing = trail.next_seq();
        for (filter, expected) in [
            (AuditFilter::default(), (1..existing).collect::<Vec<u64>>()),
            (
                AuditFilter {
                    kind: Some(AuditKind::Borrow),
                    ..AuditFilter::default()
                },
                (1..existing).filter(|seq| (seq - 1) % 3 == 0).collect(),
            ),
        ] {
            let mut probe = trail.clone();
            let mut seen = Vec::new();
            let mut cursor = None;
            let mut appended = 0u64;
            loop {
                let (page, next) = probe.page(&filter, cursor, 37);
                seen.extend(seqs(&page));
                // Appends between pages: borrows and others, at the latest time.
                for _ in 0..5 {
                    let n = 2_000 + appended;
                    probe.record(NOW + 1_000, None, Actor::Client, borrow(n));
                    appended += 1;
                }
                match next {
                    Some(next) => cursor = Some(next),
                    None => break,
                }
                assert!(appended < 10_000, "paging ends");
            }
            let seen_existing: Vec<u64> =
                seen.iter().copied().filter(|seq| *seq < existing).collect();
            assert_eq!(seen_existing, expected);
            let distinct: BTreeSet<u64> = seen.iter().copied().collect();
            assert_eq!(distinct.len(), seen.len(), "no entry twice");
        }
    }

    #[test]
    fn a_trail_survives_its_parts_and_bincode() {
        let mut trail = AuditTrail::new(AuditRetention {
            max_age_secs: 30 * DAY,
            max_entries: 1_000,
        });
        for (n, event) in one_of_each().into_iter().enumerate() {
            trail.record(
                NOW + n as i64,
                Some(n as u64),
                Actor::Key(KeyId::from_u64(n as u64)),
                event,
            );
        }
        trail.set_retention(AuditRetention {
            max_age_secs: 30 * DAY,
            max_entries: 10,
        });
        let shared = trail.shared();
        let entries: Vec<&AuditEntry> = shared.iter().map(Arc::as_ref).collect();
        let config = bincode::config::standard();
        let bytes =
            bincode::serde::encode_to_vec((trail.next_seq(), trail.retention(), &entries), config)
                .expect("encodes");
        let ((next_seq, retention, decoded), _): ((u64, AuditRetention, Vec<AuditEntry>), usize) =
            bincode::serde::decode_from_slice(&bytes, config).expect("decodes");
        let mut restored = AuditTrail::from_parts(next_seq, retention, decoded);
        assert_eq!(restored, trail);
        assert_eq!(restored.next_seq(), 14);
        assert_eq!(seqs(&restored.shared()), (4..=13).collect::<Vec<_>>());
        assert_eq!(
            restored.record(NOW + 20, None, Actor::System, borrow(1)),
            14,
            "seq carries on"
        );
        let filter = AuditFilter::default();
        assert_eq!(
            seqs(&restored.page(&filter, Some(12), 10).0),
            [13, 14],
            "cursors carry on"
        );

        // The filter travels too (ListAuditV1 may be forwarded).
        let filter = AuditFilter {
            since: Some(NOW),
            until: None,
            kind: Some(AuditKind::HostBlock),
            host_id: Some(host(3)),
            feature: Some("MVTec_HALCON".into()),
            borrow_id: Some(Uuid::from_u128(5)),
            actor: Some(Actor::Node(3)),
        };
        let bytes = bincode::serde::encode_to_vec(&filter, config).expect("encodes");
        let (decoded, _): (AuditFilter, usize) =
            bincode::serde::decode_from_slice(&bytes, config).expect("decodes");
        assert_eq!(decoded, filter);
    }

    #[test]
    fn from_parts_repairs_what_record_would_never_write() {
        let entry = |seq: u64, at: UnixSeconds| AuditEntry {
            seq,
            at,
            node: None,
            actor: Actor::System,
            event: borrow(seq),
        };
        let trail = AuditTrail::from_parts(
            2,
            unlimited(),
            vec![
                entry(5, NOW + 5),
                entry(3, NOW + 9),
                entry(5, NOW),
                entry(4, NOW),
            ],
        );
        let shared = trail.shared();
        assert_eq!(seqs(&shared), [3, 4, 5]);
        let ats: Vec<UnixSeconds> = shared.iter().map(|entry| entry.at).collect();
        assert_eq!(ats, [NOW + 9, NOW + 9, NOW + 9]);
        assert_eq!(trail.next_seq(), 6);
        assert_eq!(
            AuditTrail::from_parts(0, unlimited(), Vec::new()).next_seq(),
            1
        );
        let limited = AuditTrail::from_parts(
            10,
            AuditRetention {
                max_age_secs: 3,
                max_entries: 2,
            },
            vec![
                entry(1, NOW),
                entry(2, NOW + 5),
                entry(3, NOW + 6),
                entry(4, NOW + 7),
            ],
        );
        assert_eq!(seqs(&limited.shared()), [3, 4]);
    }
}
