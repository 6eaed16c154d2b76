//! The state machine's snapshot files across restarts: a corrupt newest snapshot falls
//! back to the older one, temp files of interrupted writes are removed, and a snapshot
//! moves from one state machine to another through its file.

use std::fs;
use std::path::{Path, PathBuf};

use futures::stream;
use licensed::raft::state_machine::LedgerStore;
use licensed::raft::TypeConfig;
use licensed::state::{Bootstrap, Command};
use openraft::alias::{EntryOf, LogIdOf};
use openraft::entry::RaftEntry;
use openraft::storage::{RaftSnapshotBuilder, RaftStateMachine};
use openraft::testing::log_id;

type C = TypeConfig;

fn lid(index: u64) -> LogIdOf<C> {
    log_id::<C>(1, 1, index)
}

fn bootstrap(index: u64) -> EntryOf<C> {
    EntryOf::<C>::new_normal(
        lid(index),
        Command::Bootstrap(Box::new(Bootstrap {
            licenses: Vec::new(),
            max_borrow_secs: 86_400,
            retention_secs: 86_400,
            signing_key: [7; 32],
            audit_retention_secs: 90 * 86_400,
            max_audit_entries: 100_000,
            created_at: 0,
        })),
    )
}

async fn apply(store: &mut LedgerStore, entries: Vec<EntryOf<C>>) {
    let items = entries.into_iter().map(|entry| Ok((entry, None)));
    store.apply(stream::iter(items)).await.expect("apply");
}

/// Applies up to `last` and builds a snapshot there.
async fn snapshot_at(store: &mut LedgerStore, from: u64, last: u64) {
    let entries = (from..=last)
        .map(|i| {
            if i == 1 {
                bootstrap(i)
            } else {
                EntryOf::<C>::new_blank(lid(i))
            }
        })
        .collect();
    apply(store, entries).await;
    let mut builder = store.get_snapshot_builder().await;
    let snapshot = builder.build_snapshot().await.expect("build");
    assert_eq!(snapshot.meta.last_log_id, Some(lid(last)));
}

fn names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .expect("read dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

fn with_extension(dir: &Path, ext: &str) -> Vec<PathBuf> {
    names(dir)
        .into_iter()
        .filter(|n| n.ends_with(ext))
        .map(|n| dir.join(n))
        .collect()
}

#[tokio::test]
async fn a_corrupt_newest_snapshot_falls_back_to_the_older_one() {
    let dir = tempfile::tempdir().expect("temp dir");
    {
        let mut store = LedgerStore::open(dir.path()).expect("open");
        snapshot_at(&mut store, 1, 1).await;
        snapshot_at(&mut store, 2, 3).await;
    }
    let snaps = with_extension(dir.path(), ".snap");
    assert_eq!(snaps.len(), 2, "{:?}", names(dir.path()));
    // Cut the newest short in its ledger data, keeping its header intact.
    let newest = &snaps[1];
    let bytes = fs::read(newest).expect("read");
    fs::write(newest, &bytes[..bytes.len() - 3]).expect("write");

    let mut store = LedgerStore::open(dir.path()).expect("falls back instead of failing");
    let (applied, _) = store.applied_state().await.expect("applied");
    assert_eq!(applied, Some(lid(1)), "the older snapshot is loaded");
    assert!(store.ledger().read().is_bootstrapped());
    let current = store
        .get_current_snapshot()
        .await
        .expect("current")
        .expect("a snapshot");
    assert_eq!(current.meta.last_log_id, Some(lid(1)));
    // The unreadable one is kept aside for inspection, out of the way.
    assert_eq!(with_extension(dir.path(), ".snap").len(), 1);
    assert_eq!(with_extension(dir.path(), ".corrupt").len(), 1);
}

#[tokio::test]
async fn stale_temp_files_are_removed_on_open() {
    let dir = tempfile::tempdir().expect("temp dir");
    {
        let mut store = LedgerStore::open(dir.path()).expect("open");
        snapshot_at(&mut store, 1, 2).await;
    }
    // What a crash in the middle of writing or receiving a snapshot leaves behind.
    fs::write(dir.path().join("00000000000000000009-1-1.tmp"), b"half").expect("write");
    fs::write(dir.path().join("incoming-00000000000000ab.tmp"), b"half").expect("write");

    let mut store = LedgerStore::open(dir.path()).expect("open");
    assert!(
        with_extension(dir.path(), ".tmp").is_empty(),
        "{:?}",
        names(dir.path())
    );
    assert_eq!(with_extension(dir.path(), ".snap").len(), 1);
    let (applied, _) = store.applied_state().await.expect("applied");
    assert_eq!(applied, Some(lid(2)));
}

#[tokio::test]
async fn a_snapshot_installs_from_another_store_and_survives_a_restart() {
    let leader_dir = tempfile::tempdir().expect("temp dir");
    let follower_dir = tempfile::tempdir().expect("temp dir");
    let mut leader = LedgerStore::open(leader_dir.path()).expect("open");
    snapshot_at(&mut leader, 1, 5).await;
    let snapshot = leader
        .get_current_snapshot()
        .await
        .expect("current")
        .expect("a snapshot");
    {
        let mut follower = LedgerStore::open(follower_dir.path()).expect("open");
        follower
            .install_snapshot(&snapshot.meta, snapshot.snapshot)
            .await
            .expect("install");
        let (applied, _) = follower.applied_state().await.expect("applied");
        assert_eq!(applied, Some(lid(5)));
        assert!(follower.ledger().read().is_bootstrapped());
        // The status counters: one built by the leader, one received and installed.
        assert_eq!(leader.snapshot_counters().built(), 1);
        assert_eq!(leader.snapshot_counters().installed(), 0);
        assert_eq!(follower.snapshot_counters().installed(), 1);
        assert_eq!(follower.snapshot_counters().built(), 0);
    }
    let mut follower = LedgerStore::open(follower_dir.path()).expect("reopen");
    let (applied, _) = follower.applied_state().await.expect("applied");
    assert_eq!(applied, Some(lid(5)));
    assert_eq!(with_extension(follower_dir.path(), ".snap").len(), 1);
    assert!(with_extension(follower_dir.path(), ".tmp").is_empty());
}
