//! openraft's own storage test suite, run against the real RocksDB log store and the
//! ledger state machine, each on a fresh temp dir.

use licensed::raft::log_store::{open_db, RocksLogStore};
use licensed::raft::state_machine::LedgerStore;
use licensed::raft::TypeConfig;
use openraft::testing::log::{StoreBuilder, Suite};
use openraft::type_config::TypeConfigExt;
use openraft::StorageError;
use tempfile::TempDir;

struct RocksBuilder;

impl StoreBuilder<TypeConfig, RocksLogStore<TypeConfig>, LedgerStore, TempDir> for RocksBuilder {
    async fn build(
        &self,
    ) -> Result<(TempDir, RocksLogStore<TypeConfig>, LedgerStore), StorageError<TypeConfig>> {
        let fail = |e: &dyn std::fmt::Display| StorageError::read(TypeConfig::err_from_string(e));
        let dir = TempDir::new().map_err(|e| fail(&e))?;
        let db = open_db(dir.path().join("raft-log")).map_err(|e| fail(&e))?;
        let log_store = RocksLogStore::new(db);
        let state_machine =
            LedgerStore::open(&dir.path().join("snapshots")).map_err(|e| fail(&e))?;
        Ok((dir, log_store, state_machine))
    }
}

#[test]
fn openraft_storage_suite_passes_on_the_real_stores() {
    TypeConfig::run(async {
        Suite::test_all(RocksBuilder).await.expect("storage suite");
    });
}
