//! The chaos suite against the real `licensed` binary: the short profile (every fault kind
//! once, data dirs on the power-loss file system) must pass every check with every fault
//! verified effective, and a fault made ineffective on purpose must fail the run, naming it.
//!
//! Each run takes a fresh random seed unless `CHAOS_SEED` is set; the seed is printed
//! first, so a failure reproduces with `CHAOS_SEED=<seed>`.
//!
//! Needs root (a tmpfs for the full-disk fault, FUSE mounts for the power cuts) and
//! libfaketime (`apt-get install faketime`) for the clock skews; `.ci/run` provides both.

use licensed_chaos::nemesis::FaultKind;
use licensed_chaos::run::{run, RunConfig, RunReport};
use licensed_testkit::licensed_binary;

/// One cluster at a time: two runs side by side on a small machine would slow each
/// other's recovery.
static ONE_RUN_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn seed() -> u64 {
    let seed = std::env::var("CHAOS_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(rand::random);
    println!("chaos seed {seed} (CHAOS_SEED={seed} repeats this run)");
    seed
}

fn config(out: &std::path::Path, faults: Vec<FaultKind>, seed: u64) -> RunConfig {
    let binary = licensed_binary().unwrap_or_else(|e| panic!("{e}"));
    RunConfig::new(binary, out.to_path_buf(), faults, seed)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_short_profile_injects_every_fault_kind_and_passes_every_check() {
    let _one = ONE_RUN_AT_A_TIME.lock().await;
    let dir = tempfile::tempdir().expect("temp dir");
    let seed = seed();
    let report = run(config(dir.path(), FaultKind::all(), seed))
        .await
        .expect("the run completes");
    // What failed comes first: a log shortened in the middle still shows it.
    let failed = what_failed(&report);
    if !report.passed {
        println!("{failed}");
        // Keep the history, logs and data dirs of a failed run for `chaos check`.
        println!("kept for inspection: {}", dir.keep().display());
    }
    println!("{report}");
    for kind in FaultKind::all() {
        assert!(
            report.fault_kinds.contains_key(&kind.to_string()),
            "{kind} was not injected (seed {seed})"
        );
        assert!(
            report.verified_kinds.contains_key(&kind.to_string()),
            "{kind} was not verified effective (seed {seed}):\n{report}"
        );
    }
    assert!(report.check.summary.acknowledged_borrows > 100, "{report}");
    assert!(report.passed, "{failed}(full report above)");
}

/// Each check's verdict, every violation and every ineffective fault, in a few lines.
fn what_failed(report: &RunReport) -> String {
    let check = &report.check;
    let mut text = format!(
        "chaos run FAILED (seed {}): safety {}, durability {}, linearizability {}, answers {}, clock {}, liveness {}\n",
        report.seed,
        check.safety.verdict(),
        check.durability.verdict(),
        check.linearizability.verdict(),
        check.answers.verdict(),
        check.clock.verdict(),
        check.liveness.verdict(),
    );
    for violation in check.violations() {
        text.push_str(&format!("  violation: {violation}\n"));
    }
    for warning in check.warnings.iter().chain(&check.linearizability.warnings) {
        text.push_str(&format!("  warning: {warning}\n"));
    }
    for reason in &report.ineffective {
        text.push_str(&format!("  ineffective: {reason}\n"));
    }
    text
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_fault_that_does_nothing_fails_the_run_and_is_named() {
    let _one = ONE_RUN_AT_A_TIME.lock().await;
    let dir = tempfile::tempdir().expect("temp dir");
    let seed = seed();
    let mut config = config(
        dir.path(),
        vec![FaultKind::IsolateNode, FaultKind::KillLeader],
        seed,
    );
    config.sabotage = Some("isolate-node".to_string());
    let report = run(config).await.expect("the run completes");
    println!("{report}");
    assert!(!report.passed, "a sabotaged fault passed:\n{report}");
    assert_eq!(report.ineffective.len(), 1, "{report}");
    assert!(
        report.ineffective[0].contains("isolate-node")
            && report.ineffective[0].contains("bytes discarded"),
        "{report}"
    );
    // The fault that was not sabotaged was verified, and the history is still clean:
    // only the verification failed the run.
    assert_eq!(
        report.verified_kinds.get("kill-leader"),
        Some(&1),
        "{report}"
    );
    assert!(report.check.passed(), "{report}");
}
