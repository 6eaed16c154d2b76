//! `/metrics` on a 3-node cluster of real processes after a known workload: the counts
//! that come from the replicated ledger are exact on every node, exactly one node leads,
//! every node knows a leader, and every scrape passes `promtool check metrics`.

mod common;

use std::collections::BTreeMap;
use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::Cluster;
use serde_json::{json, Value};

const POOL: &str = r#"[
  {"feature":"MVTec_HALCON","uuid":"m-two","version":"26.05","edition":"Steady","modules":"fc","count":2},
  {"feature":"MVTec_HDevelop","uuid":"m-one","version":"26.05","edition":"Steady","modules":"fc","count":1}
]"#;

/// One sample: metric name and labels as written, and the value.
fn samples(text: &str) -> Vec<(String, BTreeMap<String, String>, f64)> {
    text.lines()
        .filter(|line| !line.starts_with('#') && !line.trim().is_empty())
        .filter_map(|line| {
            let (series, value) = line.rsplit_once(' ')?;
            let value: f64 = value.parse().ok()?;
            let (name, labels) = match series.split_once('{') {
                Some((name, rest)) => {
                    let labels = rest
                        .trim_end_matches('}')
                        .split(',')
                        .filter(|pair| !pair.is_empty())
                        .filter_map(|pair| {
                            let (key, value) = pair.split_once('=')?;
                            Some((key.to_string(), value.trim_matches('"').to_string()))
                        })
                        .collect();
                    (name.to_string(), labels)
                }
                None => (series.to_string(), BTreeMap::new()),
            };
            Some((name, labels, value))
        })
        .collect()
}

/// The sum of `name`'s samples whose labels include every pair of `with`.
fn total(text: &str, name: &str, with: &[(&str, &str)]) -> f64 {
    samples(text)
        .into_iter()
        .filter(|(n, labels, _)| {
            n == name
                && with
                    .iter()
                    .all(|(k, v)| labels.get(*k).map(String::as_str) == Some(*v))
        })
        .map(|(_, _, value)| value)
        .sum()
}

/// `promtool check metrics` on a scrape (Debian's `prometheus` package; `.ci/run`
/// installs it): exposition format and naming conventions.
fn promtool_check(node: usize, text: &str) {
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| {
            panic!("promtool (Debian package prometheus) must be installed to check /metrics: {e}")
        });
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(text.as_bytes())
        .expect("write to promtool");
    let output = child.wait_with_output().expect("promtool runs");
    assert!(
        output.status.success(),
        "promtool check metrics on node {node}'s scrape: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

fn borrow(uuid: &str, host: &str, from: i64, until: i64) -> Value {
    let feature = if uuid == "m-one" {
        "MVTec_HDevelop"
    } else {
        "MVTec_HALCON"
    };
    json!({"feature": feature, "uuid": uuid, "hostId": host,
           "validFrom": common::at(from), "validUntil": common::at(until)})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_node_shows_the_workload_counts_one_leader_and_valid_metrics() {
    let cluster = Cluster::start(3, POOL, &["--request-timeout-ms", "5000"]).await;
    let leader = cluster.leader().await;
    let follower = (leader + 1) % 3;
    let other = (leader + 2) % 3;

    // N = 5 borrows granted: both seats of m-two and the one of m-one in the same hour
    // (through different nodes: followers forward), and m-two twice more later on.
    let granted = [
        (leader, borrow("m-two", "MAC:0A0000000001", 3_600, 7_200)),
        (follower, borrow("m-two", "MAC:0A0000000002", 3_600, 7_200)),
        (other, borrow("m-one", "MAC:0A0000000003", 3_600, 7_200)),
        (
            follower,
            borrow("m-two", "MAC:0A0000000004", 86_400, 90_000),
        ),
        (other, borrow("m-two", "MAC:0A0000000005", 86_400, 90_000)),
    ];
    let mut tokens = Vec::new();
    for (node, params) in granted {
        let answer = cluster.call(node, "BorrowLicenseV1", params).await;
        let id = answer["result"]["borrowId"].as_str().map(str::to_string);
        let token = answer["result"]["returnToken"].as_str().map(str::to_string);
        match (id, token) {
            (Some(id), Some(token)) => tokens.push((id, token)),
            _ => panic!("borrow refused: {answer}"),
        }
    }
    // M = 3 refused with 32: every seat of both licenses is taken in that hour.
    let refused = [
        (leader, borrow("m-two", "MAC:0B0000000001", 3_600, 5_400)),
        (follower, borrow("m-one", "MAC:0B0000000002", 5_400, 7_200)),
        (other, borrow("m-two", "MAC:0B0000000003", 88_000, 89_000)),
    ];
    for (node, params) in refused {
        let answer = cluster.call(node, "BorrowLicenseV1", params).await;
        assert_eq!(answer["error"]["code"], 32, "expected 32: {answer}");
    }
    // K = 2 returns (one of them repeated: a repeat is no second return).
    for (node, (id, token)) in [(follower, &tokens[0]), (other, &tokens[3])] {
        let params = json!({"borrowId": id, "returnToken": token});
        for _ in 0..2 {
            let answer = cluster.call(node, "ReturnLicenseV1", params.clone()).await;
            assert!(answer.get("result").is_some(), "return: {answer}");
        }
    }
    // One borrow sent twice with the same requestId: granted once, replayed once.
    let mut with_id = borrow("m-two", "MAC:0C0000000001", 200_000, 203_600);
    with_id["requestId"] = json!("metrics-test-1");
    for node in [follower, leader] {
        let answer = cluster.call(node, "BorrowLicenseV1", with_id.clone()).await;
        assert!(answer["result"]["borrowId"].is_string(), "{answer}");
    }

    // One linearizable read on a follower: a read-index round through the leader.
    let listed = cluster.call(follower, "ListLicensesV1", json!([])).await;
    assert!(listed.get("result").is_some(), "list: {listed}");

    // Every node applies every entry: wait until the counts have reached all three.
    let deadline = Instant::now() + Duration::from_secs(30);
    let scrapes = loop {
        let mut scrapes = Vec::new();
        for node in 0..3 {
            scrapes.push(cluster.scrape(node).await);
        }
        let applied_everywhere = scrapes
            .iter()
            .all(|text| total(text, "licensed_borrow_replays_total", &[]) >= 1.0);
        if applied_everywhere || Instant::now() > deadline {
            break scrapes;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };

    let mut leaders = 0.0;
    for (node, text) in scrapes.iter().enumerate() {
        let node = node + 1;
        let count = |name: &str, with: &[(&str, &str)]| total(text, name, with);
        assert_eq!(
            count("licensed_borrows_total", &[]),
            6.0,
            "node {node}: N+1 granted"
        );
        assert_eq!(
            count("licensed_borrows_total", &[("feature", "MVTec_HALCON")]),
            5.0,
            "node {node}"
        );
        assert_eq!(
            count("licensed_borrows_total", &[("feature", "MVTec_HDevelop")]),
            1.0,
            "node {node}"
        );
        assert_eq!(
            count("licensed_borrow_rejections_total", &[("code", "32")]),
            3.0,
            "node {node}: M refused with 32"
        );
        assert_eq!(
            count("licensed_borrow_rejections_total", &[]),
            3.0,
            "node {node}: no other refusal"
        );
        assert_eq!(
            count("licensed_returns_total", &[]),
            2.0,
            "node {node}: K returns"
        );
        assert_eq!(
            count("licensed_borrow_replays_total", &[]),
            1.0,
            "node {node}"
        );
        assert_eq!(
            count(
                "licensed_license_seats",
                &[("feature", "MVTec_HALCON"), ("uuid", "m-two")]
            ),
            2.0,
            "node {node}"
        );
        assert_eq!(count("licensed_feature_seats", &[]), 3.0, "node {node}");
        // Upcoming at the scrape: 5 granted + 1 with a requestId, less the returned one
        // that had not started (an upcoming borrow returned is empty).
        assert_eq!(
            count("licensed_feature_borrows_upcoming", &[]),
            4.0,
            "node {node}"
        );
        assert_eq!(count("licensed_raft_has_leader", &[]), 1.0, "node {node}");
        assert_eq!(
            count("licensed_raft_members", &[("role", "voter")]),
            3.0,
            "node {node}"
        );
        assert!(
            count("licensed_raft_leader_changes_seen_total", &[]) >= 1.0,
            "node {node} saw a leader"
        );
        assert!(
            count("licensed_raft_log_fsyncs_total", &[]) >= 1.0,
            "node {node}"
        );
        leaders += count("licensed_raft_is_leader", &[]);
        promtool_check(node, text);
    }
    assert_eq!(leaders, 1.0, "exactly one node leads");

    // The write path: 6 writes went to `follower` and 5 to `other` (borrows, refusals,
    // returns, the replay), each forwarded to the leader in a batch; the leader appended
    // every write (14), and nothing failed or waits.
    let on = |node: usize, name: &str, with: &[(&str, &str)]| total(&scrapes[node], name, with);
    let forwarded: f64 = [follower, other]
        .iter()
        .map(|&node| on(node, "licensed_forward_batch_size_sum", &[]))
        .sum();
    assert_eq!(forwarded, 11.0, "writes forwarded by the followers");
    for node in [follower, other] {
        assert!(
            on(node, "licensed_forward_batches_total", &[("outcome", "ok")]) >= 1.0,
            "node {} forwarded",
            node + 1
        );
        assert_eq!(
            on(
                node,
                "licensed_forward_batches_total",
                &[("outcome", "error")]
            ),
            0.0
        );
        assert_eq!(
            on(node, "licensed_raft_proposals_committed_total", &[]),
            0.0
        );
    }
    assert!(on(leader, "licensed_raft_proposals_committed_total", &[]) >= 14.0);
    assert_eq!(on(leader, "licensed_raft_proposals_failed_total", &[]), 0.0);
    assert_eq!(on(leader, "licensed_raft_proposals_pending", &[]), 0.0);
    assert!(on(follower, "licensed_read_index_rounds_total", &[]) >= 1.0);
    assert!(on(follower, "licensed_read_index_batch_size_sum", &[]) >= 1.0);
    // The leader's view of its followers: both reachable, lag and round trips shown.
    for node in [follower, other] {
        let peer = (node + 1).to_string();
        let peer = [("peer", peer.as_str())];
        assert_eq!(
            on(leader, "licensed_raft_peer_up", &peer),
            1.0,
            "peer {peer:?}"
        );
        assert!(
            on(leader, "licensed_raft_peer_replication_lag_entries", &peer) >= 0.0
                && scrapes[leader].contains(&format!(
                    "licensed_raft_peer_replication_lag_entries{{peer=\"{}\"}}",
                    node + 1
                )),
            "lag of peer {peer:?}"
        );
        let rpc_peer = [("peer", peer[0].1), ("rpc", "append")];
        assert!(
            on(
                leader,
                "licensed_raft_peer_rpc_duration_seconds_count",
                &rpc_peer
            ) >= 1.0
        );
        assert!(scrapes[leader].contains(&format!(
            "licensed_peer_clock_offset_seconds{{peer=\"{}\"}}",
            node + 1
        )));
    }
    for node in [follower, other] {
        assert!(
            !scrapes[node].contains("licensed_raft_peer_up{"),
            "only the leader reports its followers"
        );
    }
    for (node, text) in scrapes.iter().enumerate() {
        let count = |name: &str, with: &[(&str, &str)]| total(text, name, with);
        let node = node + 1;
        assert!(
            count("licensed_raft_propose_commit_seconds_count", &[]) >= 1.0,
            "node {node}"
        );
        assert!(
            count("licensed_raft_commit_apply_seconds_count", &[]) >= 1.0,
            "node {node}"
        );
        assert!(
            count("licensed_raft_log_fsync_duration_seconds_count", &[]) >= 1.0,
            "node {node}"
        );
        assert!(
            count("licensed_data_dir_bytes", &[("part", "raft")]) > 0.0,
            "node {node}"
        );
        assert!(
            count("process_resident_memory_bytes", &[]) > 0.0,
            "node {node}"
        );
        assert!(count("process_open_fds", &[]) > 0.0, "node {node}");
    }

    // This node's traffic, summed over the nodes: every call counted where it arrived.
    let rpc = |method: &str, code: &str| -> f64 {
        scrapes
            .iter()
            .map(|text| {
                total(
                    text,
                    "licensed_rpc_requests_total",
                    &[("method", method), ("code", code)],
                )
            })
            .sum()
    };
    assert_eq!(rpc("BorrowLicenseV1", "ok"), 7.0);
    assert_eq!(rpc("BorrowLicenseV1", "32"), 3.0);
    assert_eq!(rpc("ReturnLicenseV1", "ok"), 4.0);
}
