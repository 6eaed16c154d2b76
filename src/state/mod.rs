//! The replicated state machine: log payloads and their deterministic apply. No I/O.

pub mod command;
pub mod ledger;

pub use command::{Bootstrap, Command, Outcome};
pub use ledger::{BorrowRecord, FrozenLedger, Ledger, LedgerSnapshot, RequestRecord, SnapshotView};
