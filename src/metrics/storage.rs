//! Storage: Raft log WAL sync latency, snapshot build and install durations and size, and
//! the bytes the data directory holds.

use std::path::Path;
use std::sync::LazyLock;
use std::time::Duration;

use prometheus::{Histogram, IntGauge, IntGaugeVec, Opts};

use super::{gauge, histogram, registered};

/// WAL sync buckets, seconds: 50 µs to about 3 s (this class of disk: ~0.2 ms, stalls of
/// ~100 ms under load).
const FSYNC_BUCKETS: &[f64] = &[
    0.00005, 0.0001, 0.0002, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 3.0,
];
/// Snapshot buckets, seconds: 5 ms to about 80 s.
const SNAPSHOT_BUCKETS: &[f64] = &[
    0.005, 0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92,
];

/// The parts of a data directory whose size is reported.
const PARTS: &[(&str, &str)] = &[("raft", "raft-log"), ("snapshots", "snapshots")];

struct StorageMetrics {
    fsync: Histogram,
    snapshot_build: Histogram,
    snapshot_install: Histogram,
    snapshot_size: IntGauge,
    data_dir: IntGaugeVec,
}

static STORAGE: LazyLock<StorageMetrics> = LazyLock::new(|| {
    const DATA_DIR: &str = "licensed_data_dir_bytes";
    let data_dir = registered(
        DATA_DIR,
        IntGaugeVec::new(
            Opts::new(DATA_DIR, "Bytes in this node's data directory, by part (raft: the RocksDB Raft log; snapshots: snapshot files)"),
            &["part"],
        ),
    );
    StorageMetrics {
        fsync: histogram(
            "licensed_raft_log_fsync_duration_seconds",
            "Time one Raft log WAL sync took (every acknowledged append waits for one)",
            FSYNC_BUCKETS,
        ),
        snapshot_build: histogram(
            "licensed_raft_snapshot_build_duration_seconds",
            "Time this node took to build a snapshot of its ledger and write it to disk",
            SNAPSHOT_BUCKETS,
        ),
        snapshot_install: histogram(
            "licensed_raft_snapshot_install_duration_seconds",
            "Time this node took to decode, persist and load a snapshot sent by the leader",
            SNAPSHOT_BUCKETS,
        ),
        snapshot_size: gauge(
            "licensed_raft_snapshot_size_bytes",
            "Size of the snapshot this node last built or installed",
        ),
        data_dir,
    }
});

/// Makes every series of this module exist from the start.
pub(super) fn init() {
    let m = &*STORAGE;
    for (part, _) in PARTS {
        m.data_dir.with_label_values(&[part]);
    }
}

/// One WAL sync took `elapsed`.
pub fn observe_fsync(elapsed: Duration) {
    STORAGE.fsync.observe(elapsed.as_secs_f64());
}

/// A snapshot of `bytes` was built in `elapsed`.
pub fn observe_snapshot_built(elapsed: Duration, bytes: u64) {
    STORAGE.snapshot_build.observe(elapsed.as_secs_f64());
    STORAGE.snapshot_size.set(bytes as i64);
}

/// A snapshot of `bytes` from the leader was installed in `elapsed`.
pub fn observe_snapshot_installed(elapsed: Duration, bytes: u64) {
    STORAGE.snapshot_install.observe(elapsed.as_secs_f64());
    STORAGE.snapshot_size.set(bytes as i64);
}

/// Measures the data directory's parts (a directory walk: a few dozen files).
pub(super) fn observe_data_dir(data_dir: &Path) {
    for (part, dir) in PARTS {
        STORAGE
            .data_dir
            .with_label_values(&[part])
            .set(bytes_under(&data_dir.join(dir)) as i64);
    }
}

/// Total size of the files under `path`; what cannot be read counts as nothing (a file
/// RocksDB deletes during the walk).
fn bytes_under(path: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(path) else {
        return 0;
    };
    entries
        .flatten()
        .map(|entry| match entry.file_type() {
            Ok(kind) if kind.is_dir() => bytes_under(&entry.path()),
            Ok(_) => entry.metadata().map_or(0, |meta| meta.len()),
            Err(_) => 0,
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_under_counts_nested_files_and_a_missing_dir_as_zero() {
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::write(dir.path().join("a"), [0u8; 100]).expect("write");
        std::fs::create_dir(dir.path().join("sub")).expect("mkdir");
        std::fs::write(dir.path().join("sub").join("b"), [0u8; 23]).expect("write");
        assert_eq!(bytes_under(dir.path()), 123);
        assert_eq!(bytes_under(&dir.path().join("missing")), 0);
    }
}
