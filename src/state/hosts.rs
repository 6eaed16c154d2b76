//! The host registry: the machines licenses were borrowed for, what administrators wrote
//! about them (a name, notes) and whether they are blocked from borrowing.
//!
//! A host is registered by its first borrow, or by an administrator editing, blocking or
//! unblocking it. Every replica holds the same registry (it changes only through apply),
//! and records are shared with snapshots being written: a change copies the record first.

use std::collections::BTreeMap;
use std::fmt;
use std::ops::Bound;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::borrow::host_id::HostId;
use crate::borrow::time::UnixSeconds;

/// Most characters of a host's name.
pub const MAX_HOST_NAME_CHARS: usize = 128;
/// Most characters of a host's notes.
pub const MAX_HOST_NOTES_CHARS: usize = 1024;
/// Most characters of the reason a host is blocked.
pub const MAX_BLOCK_REASON_CHARS: usize = 512;

/// Why a host may not borrow.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Blocked {
    /// When it was first blocked (a second block keeps this).
    pub at: UnixSeconds,
    /// Why, as the administrator wrote it.
    pub reason: Option<String>,
}

/// One host as the registry keeps it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostRecord {
    /// The host.
    pub host_id: HostId,
    /// Time of its first borrow (the ledger's clock at apply).
    pub first_borrow: Option<UnixSeconds>,
    /// Time of its latest borrow.
    pub last_borrow: Option<UnixSeconds>,
    /// How many borrows it made.
    pub borrows: u64,
    /// What the administrator calls it (one line).
    pub name: Option<String>,
    /// Free notes (may span lines).
    pub notes: Option<String>,
    /// Set while it is blocked from borrowing.
    pub blocked: Option<Blocked>,
}

impl HostRecord {
    /// A host nothing is known about yet.
    pub fn new(host_id: HostId) -> HostRecord {
        HostRecord {
            host_id,
            first_borrow: None,
            last_borrow: None,
            borrows: 0,
            name: None,
            notes: None,
            blocked: None,
        }
    }

    /// Whether the record says nothing worth keeping past `cutoff`: no name, no notes,
    /// not blocked, and no borrow at or after `cutoff`.
    fn is_idle(&self, cutoff: UnixSeconds) -> bool {
        self.name.is_none()
            && self.notes.is_none()
            && self.blocked.is_none()
            && self.last_borrow.is_none_or(|last| last < cutoff)
    }
}

/// An edit of a host's text. For each field: `None` leaves it, `Some(None)` clears it,
/// `Some(Some(text))` sets it (an empty text clears it too).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostEdit {
    /// The new name.
    pub name: Option<Option<String>>,
    /// The new notes.
    pub notes: Option<Option<String>>,
}

/// A text field of a host, named in [`HostError`]s.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum HostField {
    /// [`HostRecord::name`].
    Name,
    /// [`HostRecord::notes`].
    Notes,
    /// [`Blocked::reason`].
    Reason,
}

impl HostField {
    /// The field's name on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            HostField::Name => "name",
            HostField::Notes => "notes",
            HostField::Reason => "reason",
        }
    }

    /// Most characters the field holds.
    pub fn max_chars(self) -> usize {
        match self {
            HostField::Name => MAX_HOST_NAME_CHARS,
            HostField::Notes => MAX_HOST_NOTES_CHARS,
            HostField::Reason => MAX_BLOCK_REASON_CHARS,
        }
    }

    /// Whether the field may hold line feeds (`\n`, no other control character).
    fn allows_line_feeds(self) -> bool {
        self == HostField::Notes
    }

    /// The end of the control-character refusal's message.
    fn control_exception(self) -> &'static str {
        if self.allows_line_feeds() {
            " other than line feeds"
        } else {
            ""
        }
    }
}

impl fmt::Display for HostField {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a host change was not made (nothing changed).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum HostError {
    /// The text is longer than the field holds.
    #[error("{field} must be at most {max} characters")]
    TooLong {
        /// The field.
        field: HostField,
        /// Its most characters.
        max: usize,
    },
    /// The text has control characters the field does not allow.
    #[error("{field} must not contain control characters{}", field.control_exception())]
    ControlCharacters {
        /// The field.
        field: HostField,
    },
}

/// Checks `text` for `field`, and answers what is stored: `None` for an empty text.
fn checked(field: HostField, text: Option<&str>) -> Result<Option<String>, HostError> {
    let Some(text) = text.filter(|text| !text.is_empty()) else {
        return Ok(None);
    };
    let max = field.max_chars();
    // Counting stops at max + 1: a huge text costs no more than a long one.
    if text.chars().take(max + 1).count() > max {
        return Err(HostError::TooLong { field, max });
    }
    let allowed = |c: char| !c.is_control() || (c == '\n' && field.allows_line_feeds());
    if !text.chars().all(allowed) {
        return Err(HostError::ControlCharacters { field });
    }
    Ok(Some(text.to_string()))
}

/// Every host registered, by id.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HostRegistry {
    /// Shared with snapshots being written; a change copies the record first.
    hosts: BTreeMap<HostId, Arc<HostRecord>>,
    /// How many of them are blocked: every borrow asks whether its host is, and with
    /// none blocked (the usual case) the answer needs no search of a large map.
    blocked: usize,
}

impl HostRegistry {
    /// The record of `host` to change, registered if unseen, copied if shared.
    fn record_mut(&mut self, host: &HostId) -> &mut HostRecord {
        let shared = self
            .hosts
            .entry(host.clone())
            .or_insert_with(|| Arc::new(HostRecord::new(host.clone())));
        Arc::make_mut(shared)
    }

    /// Counts a borrow of `host` at `now`: first and last borrow times, number of borrows.
    pub fn record_borrow(&mut self, host: &HostId, now: UnixSeconds) {
        let record = self.record_mut(host);
        record.first_borrow = Some(record.first_borrow.map_or(now, |first| first.min(now)));
        record.last_borrow = Some(record.last_borrow.map_or(now, |last| last.max(now)));
        record.borrows = record.borrows.saturating_add(1);
    }

    /// Edits a host's name and notes (registering it if unseen) and answers its record.
    /// Both texts are checked before anything changes.
    pub fn edit(&mut self, host: &HostId, edit: &HostEdit) -> Result<HostRecord, HostError> {
        let name = edit
            .name
            .as_ref()
            .map(|name| checked(HostField::Name, name.as_deref()))
            .transpose()?;
        let notes = edit
            .notes
            .as_ref()
            .map(|notes| checked(HostField::Notes, notes.as_deref()))
            .transpose()?;
        let record = self.record_mut(host);
        if let Some(name) = name {
            record.name = name;
        }
        if let Some(notes) = notes {
            record.notes = notes;
        }
        Ok(record.clone())
    }

    /// Blocks `host` from borrowing (registering it if unseen) and answers its record.
    /// Idempotent: a blocked host keeps the time of its first block; its reason is
    /// replaced only when one is given.
    pub fn block(
        &mut self,
        host: &HostId,
        reason: Option<&str>,
        now: UnixSeconds,
    ) -> Result<HostRecord, HostError> {
        let reason = checked(HostField::Reason, reason)?;
        let record = self.record_mut(host);
        let newly_blocked = record.blocked.is_none();
        match &mut record.blocked {
            Some(blocked) => {
                if reason.is_some() {
                    blocked.reason = reason;
                }
            }
            None => record.blocked = Some(Blocked { at: now, reason }),
        }
        let record = record.clone();
        if newly_blocked {
            self.blocked += 1;
        }
        Ok(record)
    }

    /// Lifts the block of `host` (idempotent; registers it if unseen) and answers its
    /// record.
    pub fn unblock(&mut self, host: &HostId) -> HostRecord {
        // No copy of a shared record when there is nothing to change.
        if let Some(record) = self.hosts.get(host).filter(|r| r.blocked.is_none()) {
            return HostRecord::clone(record);
        }
        let record = self.record_mut(host);
        let was_blocked = record.blocked.take().is_some();
        let record = record.clone();
        if was_blocked {
            self.blocked -= 1;
        }
        record
    }

    /// The block of `host`, if it is blocked.
    pub fn blocked(&self, host: &HostId) -> Option<&Blocked> {
        if self.blocked == 0 {
            return None;
        }
        self.hosts.get(host)?.blocked.as_ref()
    }

    /// How many hosts are blocked.
    pub fn blocked_count(&self) -> usize {
        self.blocked
    }

    /// The record of `host`, if registered.
    pub fn get(&self, host: &HostId) -> Option<&HostRecord> {
        self.hosts.get(host).map(Arc::as_ref)
    }

    /// Number of hosts registered.
    pub fn len(&self) -> usize {
        self.hosts.len()
    }

    /// Whether no host is registered.
    pub fn is_empty(&self) -> bool {
        self.hosts.is_empty()
    }

    /// Every host, ordered by id.
    pub fn iter(&self) -> impl Iterator<Item = &HostRecord> {
        self.hosts.values().map(Arc::as_ref)
    }

    /// A page of hosts ordered by id: those after `after` (the cursor; `None`: from the
    /// start), only blocked ones (`Some(true)`) or only unblocked ones (`Some(false)`) or
    /// all, at most `limit` (0 is taken as 1, so that every page moves the cursor). Also
    /// answers the cursor of the next page: the last id of this one when the page is full
    /// and hosts follow it, else `None`.
    pub fn page(
        &self,
        blocked: Option<bool>,
        after: Option<&HostId>,
        limit: usize,
    ) -> (Vec<Arc<HostRecord>>, Option<HostId>) {
        let limit = limit.max(1);
        let start = after.map_or(Bound::Unbounded, Bound::Excluded);
        let mut page = Vec::new();
        for (id, record) in self.hosts.range::<HostId, _>((start, Bound::Unbounded)) {
            if blocked.is_some_and(|blocked| blocked != record.blocked.is_some()) {
                continue;
            }
            page.push(Arc::clone(record));
            if page.len() == limit {
                // Conservative: the hosts that follow may not pass the filter.
                let more = self
                    .hosts
                    .range::<HostId, _>((Bound::Excluded(id), Bound::Unbounded))
                    .next()
                    .is_some();
                return (page, more.then(|| id.clone()));
            }
        }
        (page, None)
    }

    /// Forgets the hosts that are unnamed, without notes, unblocked, and whose last
    /// borrow is before `cutoff` (or who never borrowed): a registry of every host ever
    /// seen would grow forever. Visits every host: meant to run rarely.
    pub fn forget_idle(&mut self, cutoff: UnixSeconds) {
        self.hosts.retain(|_, record| !record.is_idle(cutoff));
    }

    /// The records, shared, ordered by id: what a snapshot writes.
    pub fn shared(&self) -> Vec<Arc<HostRecord>> {
        self.hosts.values().cloned().collect()
    }

    /// The registry of a snapshot (of two records of one host, the later wins).
    pub fn from_records(records: Vec<HostRecord>) -> HostRegistry {
        let hosts = records
            .into_iter()
            .map(|record| (record.host_id.clone(), Arc::new(record)))
            .collect::<BTreeMap<_, _>>();
        let blocked = hosts.values().filter(|r| r.blocked.is_some()).count();
        HostRegistry { hosts, blocked }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: UnixSeconds = 1_800_000_000;
    const DAY: i64 = 86_400;

    fn host(n: u64) -> HostId {
        HostId::parse(&format!("MAC:{n:012X}")).expect("host id")
    }

    fn set(text: &str) -> Option<Option<String>> {
        Some(Some(text.to_string()))
    }

    fn ids(page: &[Arc<HostRecord>]) -> Vec<HostId> {
        page.iter().map(|record| record.host_id.clone()).collect()
    }

    #[test]
    fn borrows_register_a_host_and_are_counted() {
        let mut hosts = HostRegistry::default();
        assert!(hosts.is_empty());
        hosts.record_borrow(&host(1), NOW);
        hosts.record_borrow(&host(1), NOW + 10);
        hosts.record_borrow(&host(1), NOW + 5);
        let record = hosts.get(&host(1)).expect("registered");
        assert_eq!(record.first_borrow, Some(NOW));
        assert_eq!(record.last_borrow, Some(NOW + 10));
        assert_eq!(record.borrows, 3);
        assert_eq!(record.name, None);
        assert_eq!(hosts.blocked(&host(1)), None);
        assert_eq!(hosts.len(), 1);
        assert_eq!(hosts.get(&host(2)), None);
    }

    #[test]
    fn edits_set_clear_and_leave_each_field() {
        let mut hosts = HostRegistry::default();
        // An unseen host is registered by an edit.
        let record = hosts
            .edit(
                &host(1),
                &HostEdit {
                    name: set("build-7"),
                    notes: set("rack 3\nshelf 2"),
                },
            )
            .expect("edited");
        assert_eq!(record.name.as_deref(), Some("build-7"));
        assert_eq!(record.notes.as_deref(), Some("rack 3\nshelf 2"));
        assert_eq!(record.borrows, 0);
        assert_eq!(hosts.get(&host(1)), Some(&record));

        let record = hosts
            .edit(
                &host(1),
                &HostEdit {
                    name: set("build-8"),
                    notes: None,
                },
            )
            .expect("edited");
        assert_eq!(record.name.as_deref(), Some("build-8"));
        assert_eq!(record.notes.as_deref(), Some("rack 3\nshelf 2"), "left");

        let record = hosts
            .edit(
                &host(1),
                &HostEdit {
                    name: None,
                    notes: Some(None),
                },
            )
            .expect("edited");
        assert_eq!(record.name.as_deref(), Some("build-8"), "left");
        assert_eq!(record.notes, None, "cleared");

        let record = hosts
            .edit(
                &host(1),
                &HostEdit {
                    name: set(""),
                    notes: None,
                },
            )
            .expect("edited");
        assert_eq!(record.name, None, "an empty name is no name");

        // Borrow counts survive edits.
        hosts.record_borrow(&host(1), NOW);
        let record = hosts.edit(&host(1), &HostEdit::default()).expect("edited");
        assert_eq!(record.borrows, 1);
    }

    #[test]
    fn invalid_text_is_refused_and_changes_nothing() {
        let mut hosts = HostRegistry::default();
        let valid = HostEdit {
            name: set("build-7"),
            notes: set("notes"),
        };
        hosts.edit(&host(1), &valid).expect("edited");
        let before = hosts.clone();

        let long_name = "n".repeat(MAX_HOST_NAME_CHARS + 1);
        let long_notes = "é".repeat(MAX_HOST_NOTES_CHARS + 1);
        let cases = [
            (
                HostEdit {
                    name: set(&long_name),
                    notes: set("fine"),
                },
                HostError::TooLong {
                    field: HostField::Name,
                    max: MAX_HOST_NAME_CHARS,
                },
                "name must be at most 128 characters",
            ),
            (
                // A valid name with invalid notes: the name does not change either.
                HostEdit {
                    name: set("other"),
                    notes: set(&long_notes),
                },
                HostError::TooLong {
                    field: HostField::Notes,
                    max: MAX_HOST_NOTES_CHARS,
                },
                "notes must be at most 1024 characters",
            ),
            (
                HostEdit {
                    name: set("two\nlines"),
                    notes: None,
                },
                HostError::ControlCharacters {
                    field: HostField::Name,
                },
                "name must not contain control characters",
            ),
            (
                HostEdit {
                    name: set("other"),
                    notes: set("tab\there"),
                },
                HostError::ControlCharacters {
                    field: HostField::Notes,
                },
                "notes must not contain control characters other than line feeds",
            ),
            (
                HostEdit {
                    name: None,
                    notes: set("crlf\r\n"),
                },
                HostError::ControlCharacters {
                    field: HostField::Notes,
                },
                "notes must not contain control characters other than line feeds",
            ),
        ];
        for (edit, error, message) in cases {
            assert_eq!(hosts.edit(&host(1), &edit), Err(error.clone()));
            assert_eq!(error.to_string(), message);
            assert_eq!(hosts, before, "nothing changed");
            // Nor is an unseen host registered by a refused edit.
            assert!(hosts.edit(&host(2), &edit).is_err());
            assert_eq!(hosts.get(&host(2)), None);
        }

        // The limits count characters, not bytes.
        let at_limit = HostEdit {
            name: set(&"é".repeat(MAX_HOST_NAME_CHARS)),
            notes: set(&"é".repeat(MAX_HOST_NOTES_CHARS)),
        };
        assert!(hosts.edit(&host(1), &at_limit).is_ok());
    }

    #[test]
    fn blocking_is_idempotent_and_keeps_the_first_time() {
        let mut hosts = HostRegistry::default();
        hosts.record_borrow(&host(1), NOW);
        let record = hosts
            .block(&host(1), Some("stolen"), NOW + 10)
            .expect("blocked");
        let first = Blocked {
            at: NOW + 10,
            reason: Some("stolen".into()),
        };
        assert_eq!(record.blocked.as_ref(), Some(&first));
        assert_eq!(record.borrows, 1);
        assert_eq!(hosts.blocked(&host(1)), Some(&first));

        // Again without a reason: nothing changes.
        let record = hosts.block(&host(1), None, NOW + 20).expect("blocked");
        assert_eq!(record.blocked.as_ref(), Some(&first));
        // Again with a reason: the reason changes, the time stays.
        let record = hosts
            .block(&host(1), Some("lost"), NOW + 30)
            .expect("blocked");
        assert_eq!(
            record.blocked,
            Some(Blocked {
                at: NOW + 10,
                reason: Some("lost".into()),
            })
        );

        // A bad reason changes nothing.
        let before = hosts.clone();
        let long = "r".repeat(MAX_BLOCK_REASON_CHARS + 1);
        assert_eq!(
            hosts.block(&host(1), Some(&long), NOW + 40),
            Err(HostError::TooLong {
                field: HostField::Reason,
                max: MAX_BLOCK_REASON_CHARS,
            })
        );
        assert_eq!(
            hosts.block(&host(2), Some("a\u{7}bell"), NOW + 40),
            Err(HostError::ControlCharacters {
                field: HostField::Reason,
            })
        );
        assert_eq!(
            HostError::TooLong {
                field: HostField::Reason,
                max: MAX_BLOCK_REASON_CHARS,
            }
            .to_string(),
            "reason must be at most 512 characters"
        );
        assert_eq!(hosts, before);

        // An unseen host can be blocked before it ever borrows, without a reason.
        let record = hosts.block(&host(3), None, NOW).expect("blocked");
        assert_eq!(
            record.blocked,
            Some(Blocked {
                at: NOW,
                reason: None,
            })
        );
        assert_eq!(record.borrows, 0);
    }

    #[test]
    fn unblocking_is_idempotent_and_registers_unseen_hosts() {
        let mut hosts = HostRegistry::default();
        hosts.block(&host(1), Some("stolen"), NOW).expect("blocked");
        let record = hosts.unblock(&host(1));
        assert_eq!(record.blocked, None);
        assert_eq!(hosts.blocked(&host(1)), None);
        assert_eq!(hosts.unblock(&host(1)), record);

        let unseen = hosts.unblock(&host(2));
        assert_eq!(unseen, HostRecord::new(host(2)));
        assert_eq!(hosts.len(), 2);

        // Blocking after an unblock starts a new block.
        let record = hosts.block(&host(1), None, NOW + 50).expect("blocked");
        assert_eq!(record.blocked.map(|blocked| blocked.at), Some(NOW + 50));
    }

    #[test]
    fn changes_copy_records_a_snapshot_still_holds() {
        let mut hosts = HostRegistry::default();
        hosts.record_borrow(&host(1), NOW);
        let frozen = hosts.shared();
        hosts.record_borrow(&host(1), NOW + 1);
        hosts
            .edit(
                &host(1),
                &HostEdit {
                    name: set("x"),
                    notes: None,
                },
            )
            .expect("edited");
        hosts.block(&host(1), None, NOW + 2).expect("blocked");
        assert_eq!(frozen[0].borrows, 1);
        assert_eq!(frozen[0].name, None);
        assert_eq!(frozen[0].blocked, None);
        assert_eq!(hosts.get(&host(1)).map(|record| record.borrows), Some(2));
    }

    #[test]
    fn pages_follow_the_cursor_in_id_order_and_filter_by_block() {
        let mut hosts = HostRegistry::default();
        // Registered out of order; hosts 0, 3, 6, 9 blocked.
        for n in (0..10).rev() {
            hosts.record_borrow(&host(n), NOW);
            if n % 3 == 0 {
                hosts.block(&host(n), None, NOW).expect("blocked");
            }
        }
        let (page, next) = hosts.page(None, None, 4);
        assert_eq!(ids(&page), [host(0), host(1), host(2), host(3)]);
        assert_eq!(next, Some(host(3)));
        let (page, next) = hosts.page(None, next.as_ref(), 4);
        assert_eq!(ids(&page), [host(4), host(5), host(6), host(7)]);
        let (page, next) = hosts.page(None, next.as_ref(), 4);
        assert_eq!(ids(&page), [host(8), host(9)]);
        assert_eq!(next, None);
        // A full page that ends at the last host says so.
        assert_eq!(hosts.page(None, Some(&host(5)), 4).1, None);

        let (page, next) = hosts.page(Some(true), None, 3);
        assert_eq!(ids(&page), [host(0), host(3), host(6)]);
        assert_eq!(next, Some(host(6)));
        let (page, next) = hosts.page(Some(true), next.as_ref(), 3);
        assert_eq!(ids(&page), [host(9)]);
        assert_eq!(next, None);
        let (page, _) = hosts.page(Some(false), None, 100);
        assert_eq!(
            ids(&page),
            [host(1), host(2), host(4), host(5), host(7), host(8)]
        );

        let (page, next) = hosts.page(Some(true), Some(&host(5)), 2);
        assert_eq!(ids(&page), [host(6), host(9)]);
        assert_eq!(next, None, "nothing follows host 9");
        // Conservative: a full page says more may follow even when none passes the filter.
        let (page, next) = hosts.page(Some(false), Some(&host(7)), 1);
        assert_eq!(ids(&page), [host(8)]);
        assert_eq!(next, Some(host(8)));
        assert_eq!(
            hosts.page(Some(false), next.as_ref(), 1),
            (Vec::new(), None)
        );

        // A cursor that is no host, limit 0, an empty registry.
        let (page, _) = hosts.page(None, Some(&host(100)), 4);
        assert!(page.is_empty());
        let (page, next) = hosts.page(None, None, 0);
        assert_eq!((ids(&page), next), (vec![host(0)], Some(host(0))));
        assert_eq!(
            HostRegistry::default().page(None, None, 4),
            (Vec::new(), None)
        );

        // Hosts registered while paging after the cursor show up; none is seen twice.
        let mut seen = Vec::new();
        let mut cursor: Option<HostId> = None;
        let mut added = 100;
        loop {
            let (page, next) = hosts.page(None, cursor.as_ref(), 3);
            seen.extend(ids(&page));
            hosts.record_borrow(&host(added), NOW);
            added += 1;
            match next {
                Some(next) => cursor = Some(next),
                None => break,
            }
        }
        let mut sorted = seen.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(sorted, seen, "in order, each once");
        assert!((0..10).all(|n| seen.contains(&host(n))));
    }

    #[test]
    fn the_blocked_count_follows_blocks_unblocks_and_snapshots() {
        let mut hosts = HostRegistry::default();
        hosts.record_borrow(&host(1), NOW);
        assert_eq!(hosts.blocked_count(), 0);
        assert_eq!(hosts.blocked(&host(1)), None);
        hosts.block(&host(1), Some("lost"), NOW).expect("blocked");
        hosts.block(&host(1), None, NOW + 1).expect("blocked again");
        hosts.block(&host(2), None, NOW).expect("blocked");
        assert_eq!(
            hosts.blocked_count(),
            2,
            "a second block of a host counts once"
        );
        assert!(hosts.blocked(&host(1)).is_some());
        hosts.unblock(&host(2));
        hosts.unblock(&host(2));
        hosts.unblock(&host(3));
        assert_eq!(hosts.blocked_count(), 1);
        assert_eq!(hosts.blocked(&host(2)), None);
        hosts.forget_idle(NOW + 10);
        assert!(
            hosts.blocked(&host(1)).is_some(),
            "a blocked host is never idle"
        );
        let restored = HostRegistry::from_records(hosts.iter().cloned().collect());
        assert_eq!(restored.blocked_count(), 1);
        assert_eq!(restored, hosts);
        hosts.unblock(&host(1));
        assert_eq!(hosts.blocked_count(), 0);
        assert_eq!(hosts.blocked(&host(1)), None);
    }

    #[test]
    fn forgetting_keeps_named_annotated_blocked_and_recent_hosts() {
        let mut hosts = HostRegistry::default();
        for n in 0..6 {
            hosts.record_borrow(&host(n), NOW);
        }
        hosts.record_borrow(&host(1), NOW + 10 * DAY);
        hosts
            .edit(
                &host(2),
                &HostEdit {
                    name: set("named"),
                    notes: None,
                },
            )
            .expect("edited");
        hosts
            .edit(
                &host(3),
                &HostEdit {
                    name: None,
                    notes: set("annotated"),
                },
            )
            .expect("edited");
        hosts.block(&host(4), None, NOW).expect("blocked");
        // Unblocked again: nothing left to keep.
        hosts.block(&host(5), None, NOW).expect("blocked");
        hosts.unblock(&host(5));
        // Registered without ever borrowing, nothing written about it.
        hosts.unblock(&host(6));

        hosts.forget_idle(NOW);
        assert_eq!(hosts.get(&host(6)), None, "never borrowed, nothing to keep");
        assert_eq!(hosts.len(), 6, "a borrow at the cutoff is not idle");
        hosts.forget_idle(NOW + 1);
        let kept: Vec<HostId> = hosts.iter().map(|record| record.host_id.clone()).collect();
        assert_eq!(kept, [host(1), host(2), host(3), host(4)]);
        hosts.forget_idle(NOW + 11 * DAY);
        assert_eq!(hosts.len(), 3);
        assert_eq!(hosts.get(&host(1)), None);
    }

    #[test]
    fn a_registry_survives_its_records_and_bincode() {
        let mut hosts = HostRegistry::default();
        hosts.record_borrow(&host(2), NOW);
        hosts
            .edit(
                &host(1),
                &HostEdit {
                    name: set("build-7"),
                    notes: set("a\nb"),
                },
            )
            .expect("edited");
        hosts
            .block(&host(3), Some("stolen"), NOW + 1)
            .expect("blocked");
        hosts.block(&host(4), None, NOW + 2).expect("blocked");

        let shared = hosts.shared();
        assert_eq!(ids(&shared), [host(1), host(2), host(3), host(4)]);
        let records: Vec<&HostRecord> = shared.iter().map(Arc::as_ref).collect();
        let config = bincode::config::standard();
        let bytes = bincode::serde::encode_to_vec(&records, config).expect("encodes");
        let (decoded, _): (Vec<HostRecord>, usize) =
            bincode::serde::decode_from_slice(&bytes, config).expect("decodes");
        let restored = HostRegistry::from_records(decoded);
        assert_eq!(restored, hosts);

        // Edits and errors travel in the log and in outcomes.
        let edit = HostEdit {
            name: Some(None),
            notes: set("x"),
        };
        let bytes = bincode::serde::encode_to_vec(&edit, config).expect("encodes");
        let (decoded, _): (HostEdit, usize) =
            bincode::serde::decode_from_slice(&bytes, config).expect("decodes");
        assert_eq!(decoded, edit);
        let error = HostError::ControlCharacters {
            field: HostField::Notes,
        };
        let bytes = bincode::serde::encode_to_vec(&error, config).expect("encodes");
        let (decoded, _): (HostError, usize) =
            bincode::serde::decode_from_slice(&bytes, config).expect("decodes");
        assert_eq!(decoded, error);

        // Of two records of one host, the later wins.
        let mut renamed = HostRecord::new(host(1));
        renamed.name = Some("later".into());
        let restored = HostRegistry::from_records(vec![HostRecord::new(host(1)), renamed.clone()]);
        assert_eq!(restored.get(&host(1)), Some(&renamed));
    }
}
