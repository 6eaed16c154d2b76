//! The replicated state machine: log payloads and their deterministic apply. No I/O.

pub mod api_key;
pub mod api_keys;
pub mod audit;
pub mod command;
pub mod hosts;
pub mod ledger;
pub mod outstanding;
pub mod pool_plan;

#[cfg(test)]
mod administration_tests;
#[cfg(test)]
mod api_keys_tests;
#[cfg(test)]
mod limits_tests;

pub use api_key::{ApiKeyText, KeyId, Scope};
pub use api_keys::{ApiKeyChange, ApiKeyError, ApiKeyRecord, KeyRefusal, NewApiKey};
pub use command::{Bootstrap, Command, Outcome};
pub use ledger::host_admin::{HostChange, HostChanged};
pub use ledger::licensing::{AdminError, LicenseChange, LicenseChanged, LicenseUpdate};
pub use ledger::search::{BorrowFilter, BorrowStatus, BorrowsPage};
pub use ledger::{BorrowRecord, FrozenLedger, Ledger, LedgerSnapshot, RequestRecord, SnapshotView};
