//! The chaos suite against the real `licensed` binary: the short profile (every fault kind
//! once) must pass every check, and a deliberately broken server (stale local reads) must
//! fail the linearizability check — the checker can fail.
//!
//! Needs root (a tmpfs for the full-disk fault) and libfaketime (`apt-get install
//! faketime`) for the clock skew; `.ci/run` provides both.

use std::time::Duration;

use licensed_chaos::checker::Verdict;
use licensed_chaos::nemesis::FaultKind;
use licensed_chaos::run::{run, RunConfig};
use licensed_testkit::licensed_binary;

fn config(out: &std::path::Path, faults: Vec<FaultKind>, seed: u64) -> RunConfig {
    RunConfig {
        nodes: 3,
        clients: 8,
        faults,
        duration: None,
        hold: Duration::from_secs(3),
        gap: Duration::from_secs(1),
        seed,
        binary: licensed_binary().unwrap_or_else(|e| panic!("{e}")),
        out: out.to_path_buf(),
        broken: None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_short_profile_injects_every_fault_kind_and_passes_every_check() {
    let dir = tempfile::tempdir().expect("temp dir");
    let seed = std::env::var("CHAOS_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(20261129);
    let report = run(config(dir.path(), FaultKind::all(), seed))
        .await
        .expect("the run completes");
    println!("{report}");
    for kind in FaultKind::all() {
        assert!(
            report.fault_kinds.contains_key(&kind.to_string()),
            "{kind} was not injected"
        );
    }
    assert!(report.check.summary.acknowledged_borrows > 100, "{report}");
    assert!(report.passed, "violations (seed {seed}):\n{report}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_checker_catches_stale_local_reads() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut config = config(dir.path(), vec![FaultKind::IsolateNode], 7);
    config.broken = Some("stale-reads".to_string());
    let report = run(config).await.expect("the run completes");
    println!("{report}");
    assert!(!report.passed, "the broken server passed:\n{report}");
    assert_eq!(
        report.check.linearizability.verdict(),
        Verdict::Fail,
        "{report}"
    );
}
