//! A node serves clients from the moment it starts, with or without a quorum: clear
//! `-32603` answers and a 503 `/readyz` while it waits, never a hang and never an exit.

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

/// GET `path` on node `i`: status and JSON body, or `None` when nothing answers.
async fn get(cluster: &Cluster, i: usize, path: &str) -> Option<(u16, Value)> {
    let response = reqwest::Client::new()
        .get(format!("{}{path}", cluster.nodes[i].api_url()))
        .timeout(Duration::from_secs(5))
        .send()
        .await
        .ok()?;
    let status = response.status().as_u16();
    let text = response.text().await.ok()?;
    Some((
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    ))
}

/// Waits until node `i`'s client port answers `/healthz`.
async fn wait_served(cluster: &Cluster, i: usize) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while get(cluster, i, "/healthz").await.map(|(status, _)| status) != Some(200) {
        assert!(
            Instant::now() < deadline,
            "node {i} does not serve its client port without a quorum"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_restarted_node_without_a_quorum_serves_clear_errors_until_one_returns() {
    let mut cluster = Cluster::start(3, POOL, &["--request-timeout-ms", "1000"]).await;
    let before = cluster.call(0, "BorrowLicenseV1", borrow()).await;
    assert!(before["result"]["borrowId"].is_string(), "{before}");
    for i in 0..3 {
        cluster.kill9(i).await;
    }

    // One node back: alone it has no quorum.
    let _first = cluster.restart_no_wait(0).await;
    wait_served(&cluster, 0).await;
    let (status, ready) = get(&cluster, 0, "/readyz").await.expect("readyz answers");
    assert_eq!(status, 503, "{ready}");
    assert_eq!(ready["ready"], false, "{ready}");
    assert!(
        !ready["reason"].as_str().unwrap_or("").is_empty(),
        "{ready}"
    );
    for (method, params) in [("BorrowLicenseV1", borrow()), ("ListLicensesV1", json!([]))] {
        let started = Instant::now();
        let answer = cluster.call(0, method, params).await;
        assert_eq!(answer["error"]["code"], -32603, "{method}: {answer}");
        assert!(
            answer["error"]["data"]["reason"]
                .as_str()
                .is_some_and(|reason| reason.contains("quorum")),
            "{method}: {answer}"
        );
        // Bounded by the request timeout (1 s), with room for a busy machine.
        assert!(started.elapsed() < Duration::from_secs(15), "{method} hung");
    }

    // Still waiting, still alive, still answering: the wait has no deadline.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let (status, _) = get(&cluster, 0, "/healthz").await.expect("healthz answers");
    assert_eq!(status, 200);

    // A second node makes a quorum: the first becomes ready and lost nothing.
    let second = cluster.restart_no_wait(1).await;
    second
        .wait(Duration::from_secs(60))
        .await
        .expect("the second node became ready");
    let deadline = Instant::now() + Duration::from_secs(60);
    while get(&cluster, 0, "/readyz").await.map(|(status, _)| status) != Some(200) {
        assert!(Instant::now() < deadline, "node 0 never became ready");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let list = cluster.call(0, "ListLicensesV1", json!([])).await;
    let listed = list["result"][0]["borrowedIntervals"]
        .as_array()
        .map(Vec::len);
    assert_eq!(listed, Some(1), "{list}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_new_node_waiting_for_its_peers_serves_and_says_why() {
    // A lone member of a three-node --peers list whose peers never come.
    let mut waiting = Cluster::unstarted(3, POOL, &["--request-timeout-ms", "1000"]);
    let _rx = waiting.spawn_node(1);
    wait_served(&waiting, 1).await;
    let (status, ready) = get(&waiting, 1, "/readyz").await.expect("readyz answers");
    assert_eq!(status, 503, "{ready}");
    let answer = waiting.call(1, "ListLicensesV1", json!([])).await;
    assert_eq!(answer["error"]["code"], -32603, "{answer}");
}
