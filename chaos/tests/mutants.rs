//! Each class of bug is caught on a real cluster: the server is built with deliberately
//! broken modes (`LICENSED_BROKEN`, chaos builds only), each run against the faults that
//! expose it, and the checks must fail — the check named in the table below among them.
//! The real server must pass the very same runs (same faults, same seed).
//!
//! | mutant | faults | caught by |
//! |---|---|---|
//! | `stale-reads` | isolate a follower | linearizability |
//! | `ack-before-commit` | isolate the leader, kill the leader | durability |
//! | `skip-dedup` | drop answers on client links | safety or linearizability (one `requestId` took effect twice) |
//! | `capacity-off-by-one` | delay | safety (more borrows than seats) |
//! | `skip-flush-wal` | power cut on every node | durability |
//! | `apply-forwarded-twice` | delay | safety or linearizability |

use std::time::Instant;

use licensed_chaos::checker::Verdict;
use licensed_chaos::nemesis::FaultKind;
use licensed_chaos::run::{run, RunConfig, RunReport};
use licensed_testkit::licensed_binary;

/// One cluster at a time: two runs side by side on a small machine would slow each
/// other's recovery.
static ONE_RUN_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// The checks a report can fail.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Check {
    Safety,
    Durability,
    Linearizability,
}

fn failed_checks(report: &RunReport) -> Vec<Check> {
    let mut failed = Vec::new();
    if report.check.safety.verdict() == Verdict::Fail {
        failed.push(Check::Safety);
    }
    if report.check.durability.verdict() == Verdict::Fail {
        failed.push(Check::Durability);
    }
    if report.check.linearizability.verdict() == Verdict::Fail {
        failed.push(Check::Linearizability);
    }
    failed
}

async fn one_run(mutant: Option<&str>, faults: &[FaultKind], seed: u64) -> (RunReport, f64) {
    let dir = tempfile::tempdir().expect("temp dir");
    let binary = licensed_binary().unwrap_or_else(|e| panic!("{e}"));
    let mut config = RunConfig::new(binary, dir.path().to_path_buf(), faults.to_vec(), seed);
    config.broken = mutant.map(str::to_string);
    let started = Instant::now();
    let report = run(config).await.expect("the run completes");
    (report, started.elapsed().as_secs_f64())
}

/// Runs `mutant` against `faults`: some check in `caught_by` must fail. Then runs the
/// real server the same way: every check must pass.
async fn caught(mutant: &str, faults: &[FaultKind], caught_by: &[Check]) {
    let _one = ONE_RUN_AT_A_TIME.lock().await;
    let seed: u64 = std::env::var("CHAOS_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(rand::random);
    println!("mutant {mutant}, chaos seed {seed}");
    let (report, seconds) = one_run(Some(mutant), faults, seed).await;
    println!("{report}");
    let failed = failed_checks(&report);
    assert!(
        failed.iter().any(|check| caught_by.contains(check)),
        "mutant {mutant} was not caught by {caught_by:?} (failed: {failed:?}, seed {seed}):\n{report}"
    );
    println!("mutant {mutant}: caught by {failed:?} in a {seconds:.0} s run (seed {seed})");
    let (real, _) = one_run(None, faults, seed).await;
    println!("{real}");
    assert!(
        real.passed,
        "the real server failed the run that caught {mutant} (seed {seed}):\n{real}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn stale_local_reads_are_caught() {
    caught(
        "stale-reads",
        &[FaultKind::IsolateNode, FaultKind::IsolateNode],
        &[Check::Linearizability],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn acknowledging_before_commit_is_caught() {
    caught(
        "ack-before-commit",
        &[
            FaultKind::IsolateLeader,
            FaultKind::KillLeader,
            FaultKind::IsolateLeader,
        ],
        &[Check::Durability],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn skipping_the_request_id_dedup_is_caught() {
    caught(
        "skip-dedup",
        &[
            FaultKind::ClientReplyDrop,
            FaultKind::ClientReplyDrop,
            FaultKind::ClientReplyDrop,
        ],
        &[Check::Safety, Check::Linearizability],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_capacity_check_off_by_one_is_caught() {
    caught("capacity-off-by-one", &[FaultKind::Delay], &[Check::Safety]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn skipping_the_fsync_before_acknowledging_is_caught_under_power_loss() {
    caught(
        "skip-flush-wal",
        &[FaultKind::PowerCutAll, FaultKind::PowerCutAll],
        &[Check::Durability],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn applying_a_forwarded_batch_twice_is_caught() {
    caught(
        "apply-forwarded-twice",
        &[FaultKind::Delay],
        &[Check::Safety, Check::Linearizability],
    )
    .await;
}
