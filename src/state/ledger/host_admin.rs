//! Host administration on the ledger: names and notes, the blocklist. A blocked host's
//! borrows are refused at apply (code 36), on every replica from the same log position.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::borrow::host_id::HostId;
use crate::borrow::time::UnixSeconds;

use super::super::audit::AuditEvent;
use super::super::command::Outcome;
use super::super::hosts::{HostEdit, HostRecord};
use super::super::pool_plan;
use super::{BorrowRecord, Caller, Ledger};

/// A change to one host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum HostChange {
    /// Set or clear its name and notes.
    Edit(HostEdit),
    /// Refuse its borrows from now on.
    Block {
        /// Why, shown in the refusals.
        reason: Option<String>,
    },
    /// Let it borrow again.
    Unblock,
}

impl fmt::Display for HostChange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Names, notes and reasons are client text: not in Raft's logs.
        f.write_str(match self {
            HostChange::Edit(_) => "edit",
            HostChange::Block { .. } => "block",
            HostChange::Unblock => "unblock",
        })
    }
}

/// A host as it now stands, with the borrows it holds (current and upcoming) when the
/// change blocked it, for an administrator to return.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostChanged {
    /// The host.
    pub host: HostRecord,
    /// Its held borrows (a block's answer only).
    pub borrows: Vec<BorrowRecord>,
}

impl Ledger {
    /// Applies a host change at `now`.
    pub(super) fn change_host(
        &mut self,
        now: UnixSeconds,
        host_id: &HostId,
        change: &HostChange,
        caller: Caller,
    ) -> Outcome {
        let changed = match change {
            HostChange::Edit(edit) => self.hosts.edit(host_id, edit).map(|host| {
                let detail = edit_detail(edit);
                (
                    host,
                    Vec::new(),
                    AuditEvent::HostUpdate {
                        host_id: host_id.clone(),
                        detail,
                    },
                )
            }),
            HostChange::Block { reason } => {
                self.hosts
                    .block(host_id, reason.as_deref(), now)
                    .map(|host| {
                        let borrows: Vec<BorrowRecord> = self
                            .host_borrows(host_id, now)
                            .into_iter()
                            .cloned()
                            .collect();
                        let detail = format!(
                            "blocked{} with {} current or upcoming borrow(s)",
                            reason
                                .as_deref()
                                .map(|r| format!(" ({r})"))
                                .unwrap_or_default(),
                            borrows.len()
                        );
                        (
                            host,
                            borrows,
                            AuditEvent::HostBlock {
                                host_id: host_id.clone(),
                                detail,
                            },
                        )
                    })
            }
            HostChange::Unblock => Ok((
                self.hosts.unblock(host_id),
                Vec::new(),
                AuditEvent::HostUnblock {
                    host_id: host_id.clone(),
                },
            )),
        };
        Outcome::Host(changed.map(|(host, borrows, event)| {
            self.audit.record(now, caller.node, caller.actor, event);
            Box::new(HostChanged { host, borrows })
        }))
    }

    /// The borrows `host_id` holds at or after `now`, ordered by start then id.
    pub fn host_borrows(&self, host_id: &HostId, now: UnixSeconds) -> Vec<&BorrowRecord> {
        let mut held: Vec<&BorrowRecord> = self
            .borrows
            .values()
            .map(|record| &**record)
            .filter(|record| &record.host_id == host_id && pool_plan::holds_a_seat(record, now))
            .collect();
        held.sort_by_key(|record| (record.valid_from, record.borrow_id));
        held
    }

    /// The host registry.
    pub fn hosts(&self) -> &super::super::hosts::HostRegistry {
        &self.hosts
    }

    /// Why `host_id` may not borrow, if it is blocked.
    pub(super) fn blocked_reason(&self, host_id: &HostId) -> Option<String> {
        self.hosts.blocked(host_id).map(|blocked| {
            let reason = blocked
                .reason
                .as_deref()
                .map(|r| format!(": {r}"))
                .unwrap_or_default();
            format!(
                "host {host_id} is blocked since {}{reason}",
                crate::borrow::time::format_instant(blocked.at)
            )
        })
    }
}

fn edit_detail(edit: &HostEdit) -> String {
    let field = |name: &str, value: &Option<Option<String>>| match value {
        None => None,
        Some(None) => Some(format!("{name} cleared")),
        Some(Some(text)) => Some(format!("{name} {text:?}")),
    };
    let parts: Vec<String> = [field("name", &edit.name), field("notes", &edit.notes)]
        .into_iter()
        .flatten()
        .collect();
    if parts.is_empty() {
        "no change".to_string()
    } else {
        parts.join(", ")
    }
}
