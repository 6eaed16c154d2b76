//! The replicated state machine: log payloads and their deterministic apply. No I/O.

pub mod command;
pub mod ledger;
pub mod outstanding;

#[cfg(test)]
mod limits_tests;

pub use command::{Bootstrap, Command, Outcome};
pub use ledger::{BorrowRecord, FrozenLedger, Ledger, LedgerSnapshot, RequestRecord, SnapshotView};
