//! Chaos builds: a crash point armed over HTTP on a running node ends the process at that
//! point, and the log names it; an unknown `LICENSED_BROKEN` mode refuses to start.
//!
//! These need the `licensed` binary built with the `failpoints` feature. `cargo test
//! --workspace` builds it so (the chaos crate turns the feature on); a plain
//! `cargo test -p licensed` needs `--features failpoints`. Any other build fails here
//! with that explanation rather than skipping.

use std::path::{Path, PathBuf};
use std::time::Duration;

use licensed::cluster::admin::AdminClient;
use licensed_testkit::{licensed_binary, Cluster, NodeProcess, NodeSpec, SAMPLE_POOL};
use serde_json::json;

const TOKEN: &str = "failpoint-test-token";

/// The `licensed` binary, which must be a chaos build.
fn chaos_binary() -> PathBuf {
    let binary = licensed_binary().unwrap_or_else(|e| panic!("{e}"));
    let output = std::process::Command::new(&binary)
        .arg("--version")
        .output()
        .unwrap_or_else(|e| panic!("running {} --version: {e}", binary.display()));
    let version = String::from_utf8_lossy(&output.stdout);
    assert!(
        version.contains("failpoints"),
        "{} is not a chaos build (its --version says {:?}): run these tests with \
         `cargo test --workspace` or `cargo test -p licensed --features failpoints`",
        binary.display(),
        version.trim()
    );
    binary
}

/// A one-node spec serving the sample pool from `dir`, with the admin token.
fn spec(binary: &Path, dir: &Path) -> NodeSpec {
    let pool = dir.join("pool.json");
    std::fs::write(&pool, SAMPLE_POOL).expect("write the pool");
    NodeSpec::new(1, binary, dir.join("data"))
        .expect("free ports")
        .arg("--pool")
        .arg(pool.display().to_string())
        .admin_token(TOKEN)
        .env("RUST_LOG", "warn")
}

#[tokio::test]
async fn a_crash_point_armed_over_http_ends_the_process_there_and_the_log_names_it() {
    let binary = chaos_binary();
    let dir = tempfile::tempdir().expect("temp dir");
    let mut node = NodeProcess::new(spec(&binary, dir.path())).expect("node");
    node.start().await.expect("licensed starts");
    assert!(
        node.wait_ready(Duration::from_secs(60)).await,
        "not ready: {}",
        node.log_tail(30)
    );

    let status = node.status().await.expect("status");
    assert_eq!(status.snapshots_installed, 0, "{status:?}");

    // The endpoint is behind the admin token, and knows the crash points.
    let raft_addr = node.raft_addr().to_string();
    let anonymous = AdminClient::new(&raft_addr, None).expect("client");
    let refused = anonymous.arm_failpoint("apply-before", "panic").await;
    assert!(refused.is_err(), "armed without the token: {refused:?}");
    assert!(node.arm_failpoint("no-such-point", "panic").await.is_err());
    assert!(node.arm_failpoint("apply-before", "bogus(").await.is_err());
    node.arm_failpoint("apply-after", "off").await.expect("arm");
    node.clear_failpoint("apply-after").await.expect("clear");

    node.arm_failpoint("apply-before", "panic")
        .await
        .expect("arm apply-before");
    let listed: serde_json::Value = reqwest::Client::builder()
        .no_proxy()
        .build()
        .expect("http client")
        .get(format!("http://{raft_addr}/debug/failpoints"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .expect("list the failpoints")
        .json()
        .await
        .expect("a JSON list");
    assert_eq!(listed, json!({"apply-before": "panic"}));

    // The borrow's apply reaches the point: the process dies there, unanswered.
    let borrow = json!({
        "jsonrpc": "2.0", "id": 1, "method": "BorrowLicenseV1",
        "params": {"feature": "MVTec_HALCON", "uuid": "halcon-3", "hostId": "MAC:2C549188C9E3",
                   "validUntil": null}
    });
    let answer = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(10))
        .build()
        .expect("http client")
        .post(format!("{}/licenses", node.api_url()))
        .json(&borrow)
        .send()
        .await;
    if let Ok(answer) = answer {
        panic!("the borrow was answered: {:?}", answer.text().await);
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while node.is_running() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "still running after the crash point: {}",
            node.log_tail(30)
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    use std::os::unix::process::ExitStatusExt;
    let exit = node.last_exit().expect("an exit status");
    assert_eq!(exit.signal(), Some(libc_sigabrt()), "{exit:?}");
    // The whole log: a backtrace (RUST_BACKTRACE) may follow the message.
    let log = std::fs::read_to_string(node.log_path()).expect("the node's log");
    assert!(
        log.contains("failpoint apply-before panic"),
        "the log does not name the point:\n{log}"
    );
}

/// A leader that crashes inside an addition, after the learner step and before the voter
/// step, leaves a learner no other node would promote; the new node notices it is a
/// learner, asks again, and the next leader makes it a voter.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_node_whose_addition_the_leader_crashed_in_still_becomes_a_voter() {
    chaos_binary();
    let mut cluster = Cluster::start(3, SAMPLE_POOL, &[]).await;
    let leader = cluster.leader().await;
    cluster.nodes[leader]
        .arm_failpoint("add-before-voter", "panic")
        .await
        .expect("arm add-before-voter");
    let via = (leader + 1) % 3;
    // Joins through a follower, which passes the addition to the leader; returns once the
    // new node announces readiness.
    let added = cluster.add_node(via).await;
    let added_id = cluster.nodes[added].id();
    assert!(
        !cluster.nodes[leader].is_running(),
        "the leader did not crash in the addition"
    );
    // Aborted by the crash point's panic (the cluster's nodes log to the test's stderr).
    use std::os::unix::process::ExitStatusExt;
    let exit = cluster.nodes[leader].last_exit().expect("an exit status");
    assert_eq!(exit.signal(), Some(libc_sigabrt()), "{exit:?}");
    cluster.restart(leader).await;

    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let status = cluster.status(via).await;
        let members = status["members"].as_array().cloned().unwrap_or_default();
        let voters: Vec<u64> = members
            .iter()
            .filter(|m| m["voter"] == json!(true))
            .filter_map(|m| m["id"].as_u64())
            .collect();
        if members.len() == 4 && voters.contains(&added_id) && voters.len() == 4 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "node {added_id} did not become a voter: {status}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // The cluster of four takes a borrow through the new node.
    let answer = cluster
        .call(
            added,
            "BorrowLicenseV1",
            json!({"feature": "MVTec_HALCON", "uuid": "halcon-3",
                   "hostId": "MAC:2C549188C9E3", "validUntil": null}),
        )
        .await;
    assert!(answer["result"]["borrowId"].is_string(), "{answer}");
}

/// SIGABRT: the panic hook of chaos builds aborts.
fn libc_sigabrt() -> i32 {
    6
}

#[tokio::test]
async fn an_unknown_broken_mode_refuses_to_start() {
    let binary = chaos_binary();
    let dir = tempfile::tempdir().expect("temp dir");
    let spec = spec(&binary, dir.path()).env("LICENSED_BROKEN", "no-such-mode");
    let mut node = NodeProcess::new(spec).expect("node");
    let error = node
        .start()
        .await
        .expect_err("started with an unknown mode");
    let message = error.to_string();
    assert!(
        message.contains("LICENSED_BROKEN=\"no-such-mode\" is not a known broken mode"),
        "{message}"
    );
}

/// Every broken mode starts, says loudly that it is broken, and still answers a borrow
/// (one node: the bugs need faults or followers to show).
#[tokio::test]
async fn every_broken_mode_starts_warns_and_answers() {
    let binary = chaos_binary();
    for mode in [
        "stale-reads",
        "ack-before-commit",
        "skip-dedup",
        "capacity-off-by-one",
        "skip-flush-wal",
        "apply-forwarded-twice",
    ] {
        let dir = tempfile::tempdir().expect("temp dir");
        let spec = spec(&binary, dir.path()).env("LICENSED_BROKEN", mode);
        let mut node = NodeProcess::new(spec).expect("node");
        node.start()
            .await
            .unwrap_or_else(|e| panic!("{mode}: did not start: {e}"));
        assert!(
            node.wait_ready(Duration::from_secs(60)).await,
            "{mode}: not ready: {}",
            node.log_tail(30)
        );
        let borrow = json!({
            "jsonrpc": "2.0", "id": 1, "method": "BorrowLicenseV1",
            "params": {"feature": "MVTec_HALCON", "uuid": "halcon-3",
                       "hostId": "MAC:2C549188C9E3", "validUntil": null, "requestId": "r-1"}
        });
        let answer: serde_json::Value = reqwest::Client::builder()
            .no_proxy()
            .timeout(Duration::from_secs(10))
            .build()
            .expect("http client")
            .post(format!("{}/licenses", node.api_url()))
            .json(&borrow)
            .send()
            .await
            .unwrap_or_else(|e| panic!("{mode}: borrow: {e}"))
            .json()
            .await
            .unwrap_or_else(|e| panic!("{mode}: borrow answer: {e}"));
        assert!(answer["result"]["borrowId"].is_string(), "{mode}: {answer}");
        let log = std::fs::read_to_string(node.log_path()).expect("the node's log");
        assert!(
            log.contains("DELIBERATELY BROKEN") && log.contains(mode),
            "{mode}: no warning in the log:\n{log}"
        );
        node.kill9().await.expect("kill");
    }
}
