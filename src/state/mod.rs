//! The replicated state machine: log payloads and their deterministic apply. No I/O.

pub mod api_key;
pub mod api_keys;
pub mod command;
pub mod ledger;
pub mod outstanding;

#[cfg(test)]
mod api_keys_tests;
#[cfg(test)]
mod limits_tests;

pub use api_key::{ApiKeyText, KeyId, Scope};
pub use api_keys::{ApiKeyChange, ApiKeyError, ApiKeyRecord, KeyRefusal, NewApiKey};
pub use command::{Bootstrap, Command, Outcome};
pub use ledger::{BorrowRecord, FrozenLedger, Ledger, LedgerSnapshot, RequestRecord, SnapshotView};
