//! A minimal Raft type configuration for the log stores' unit tests: string payloads, no
//! responses, so a test builds entries without a ledger.

openraft::declare_raft_types!(
    /// The unit tests' configuration.
    pub TestConfig:
        D = String,
        R = (),
);

/// A log entry of [`TestConfig`].
pub type Entry = openraft::alias::EntryOf<TestConfig>;
