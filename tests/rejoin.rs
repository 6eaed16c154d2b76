//! A member restarted on an empty data dir (a lost disk or Kubernetes volume) never votes
//! or acknowledges as the member it was: it rejoins as a new incarnation once a quorum of
//! the others can remove the old one, and waits (saying why) until then.

mod common;

use std::time::{Duration, Instant};

use common::Cluster;
use serde_json::{json, Value};

const POOL: &str = r#"[
  {"feature":"MVTec_HALCON","uuid":"five","version":"26.05","edition":"Steady","modules":"fc","count":5}
]"#;

fn borrow() -> Value {
    json!({"feature": "MVTec_HALCON", "uuid": "five", "hostId": "MAC:0A0B0C0D0E0F",
           "validFrom": common::at(60), "validUntil": common::at(3_600)})
}

/// The borrow ids node `i` lists, or `None` when it cannot answer (no quorum).
async fn listed(cluster: &Cluster, i: usize) -> Option<Vec<String>> {
    let body = json!({"jsonrpc": "2.0", "method": "ListLicensesV1", "params": [], "id": 1});
    let answer = cluster.try_call(i, &body).await.ok()?;
    let result = answer.get("result")?;
    Some(
        result[0]["borrowedIntervals"]
            .as_array()
            .map(|intervals| {
                intervals
                    .iter()
                    .filter_map(|i| i["borrowId"].as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_wiped_member_does_not_help_elect_a_leader_that_lost_an_entry() {
    let (a, b, c) = (0, 1, 2);
    let mut cluster = Cluster::start(3, POOL, &["--request-timeout-ms", "3000"]).await;

    // An entry committed on {A, B} only: C is down (a paused C would still find the
    // entry in its socket buffer when it wakes up).
    cluster.kill9(c).await;
    let answer = cluster.call(a, "BorrowLicenseV1", borrow()).await;
    let id = answer["result"]["borrowId"]
        .as_str()
        .unwrap_or_else(|| panic!("borrow on {{A, B}}: {answer}"))
        .to_string();

    // B loses its disk and comes back with its usual flags; A dies; C comes back.
    cluster.kill9(b).await;
    cluster.wipe(b);
    let _b_ready = cluster.restart_no_wait(b).await;
    cluster.kill9(a).await;
    let _c_ready = cluster.restart_no_wait(c).await;

    // B and C must not form a quorum that lost the entry: they answer -32603 (or, never,
    // a listing without the borrow).
    let deadline = Instant::now() + Duration::from_secs(8);
    while Instant::now() < deadline {
        for node in [b, c] {
            if let Some(ids) = listed(&cluster, node).await {
                assert!(
                    ids.contains(&id),
                    "node {node} answers without the acknowledged borrow: {ids:?}"
                );
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // A comes back: A and C elect a leader, B rejoins as a new incarnation.
    let a_ready = cluster.restart_no_wait(a).await;
    a_ready
        .wait(Duration::from_secs(60))
        .await
        .expect("A became ready");
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let status = cluster.status(a).await;
        let b_is_voter = status["members"].as_array().is_some_and(|members| {
            members
                .iter()
                .any(|m| m["id"] == cluster.nodes[b].id() && m["voter"] == true)
        });
        let b_has_it = listed(&cluster, b)
            .await
            .is_some_and(|ids| ids.contains(&id));
        if b_is_voter && b_has_it {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "B did not rejoin as a voter with the entry: {status}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    for node in [a, b, c] {
        let ids = listed(&cluster, node).await.expect("answers");
        assert!(ids.contains(&id), "node {node}: {ids:?}");
    }
}

/// The creator of the cluster (the lowest id of `--peers`) loses its disk after another
/// first voter left for good: it asks every peer, finds the running cluster through the
/// ones still there, and rejoins — it does not wait for the one that is gone.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_wiped_creator_rejoins_while_another_first_voter_is_gone_for_good() {
    let (a, b) = (0, 1);
    let mut cluster = Cluster::start(3, POOL, &["--request-timeout-ms", "3000"]).await;
    let d = cluster.add_node(2).await;
    let answer = cluster.call(a, "BorrowLicenseV1", borrow()).await;
    let id = answer["result"]["borrowId"]
        .as_str()
        .unwrap_or_else(|| panic!("borrow: {answer}"))
        .to_string();

    // B is removed and stays down: voters A, C, D.
    let leader = cluster.leader().await;
    let b_id = cluster.nodes[b].id();
    cluster
        .remove_member(leader, b_id, false)
        .await
        .unwrap_or_else(|e| panic!("removing node {b_id}: {e}"));
    cluster.kill9(b).await;

    // A loses its disk and comes back with its usual flags (`--peers` naming B first).
    cluster.kill9(a).await;
    cluster.wipe(a);
    let a_ready = cluster.restart_no_wait(a).await;
    a_ready
        .wait(Duration::from_secs(60))
        .await
        .expect("the wiped creator rejoined and became ready without the removed peer");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if listed(&cluster, a)
            .await
            .is_some_and(|ids| ids.contains(&id))
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "A does not list the acknowledged borrow after rejoining"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let ids = listed(&cluster, d).await.expect("D answers");
    assert!(ids.contains(&id), "node D: {ids:?}");
}
