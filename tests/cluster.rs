//! Cluster behaviour against real `licensed` processes on loopback: any node answers,
//! reads are linearizable, a minority can die, pause, lag or be replaced without losing an
//! acknowledged borrow or over-borrowing a license.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::Cluster;
use licensed::cluster::admin::AdminError;
use serde_json::{json, Value};

const POOL: &str = r#"[
  {"feature":"MVTec_HALCON","uuid":"five","version":"26.05","edition":"Steady","modules":"fc","count":5},
  {"feature":"MVTec_HALCON","uuid":"bulk","version":"26.05","edition":"Steady","modules":"fc","count":1000000},
  {"feature":"MVTec_HDevelop","uuid":"one","version":"26.05","edition":"Progress","modules":"f","count":1}
]"#;

/// Requests wait for the cluster at most this long before a clear -32603.
const TIMEOUT_MS: &str = "2000";

fn at(secs: i64) -> String {
    common::at(secs)
}

fn borrow_params(uuid: &str, from: i64, until: i64) -> Value {
    json!({"feature": "MVTec_HALCON", "uuid": uuid, "hostId": "MAC:0A0B0C0D0E0F",
           "validFrom": at(from), "validUntil": at(until)})
}

async fn start3() -> Cluster {
    Cluster::start(3, POOL, &["--request-timeout-ms", TIMEOUT_MS]).await
}

async fn borrowed_ids(cluster: &Cluster, i: usize, uuid: &str) -> BTreeSet<String> {
    let response = cluster.call(i, "ListLicensesV1", json!([])).await;
    let licenses = response["result"].as_array().expect("list result").clone();
    let license = licenses
        .iter()
        .find(|l| l["uuid"] == uuid)
        .expect("license listed");
    license["borrowedIntervals"]
        .as_array()
        .map(|intervals| {
            intervals
                .iter()
                .map(|i| i["borrowId"].as_str().expect("id").to_string())
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_borrow_through_one_node_is_immediately_visible_on_the_others() {
    let cluster = start3().await;
    for via in 0..3 {
        let response = cluster
            .call(via, "BorrowLicenseV1", borrow_params("bulk", 60, 3600))
            .await;
        let result = &response["result"];
        let id = result["borrowId"].as_str().expect("borrowId").to_string();
        let license = result["license"].as_str().expect("license").to_string();
        for other in 0..3 {
            let got = cluster
                .call(other, "GetBorrowedLicenseV1", json!({"borrowId": id}))
                .await;
            assert_eq!(
                got["result"]["license"],
                license.as_str(),
                "node {other}: {got}"
            );
            assert!(borrowed_ids(&cluster, other, "bulk").await.contains(&id));
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_hundred_racing_borrows_of_five_seats_through_three_nodes_give_exactly_five() {
    let cluster = Arc::new(start3().await);
    let mut tasks = Vec::new();
    for n in 0..100 {
        let cluster = cluster.clone();
        tasks.push(tokio::spawn(async move {
            cluster
                .call(n % 3, "BorrowLicenseV1", borrow_params("five", 600, 7200))
                .await
        }));
    }
    let mut won = BTreeSet::new();
    let mut refused = 0;
    for task in tasks {
        let response = task.await.expect("task");
        if let Some(id) = response["result"]["borrowId"].as_str() {
            won.insert(id.to_string());
        } else {
            assert_eq!(response["error"]["code"], 32, "{response}");
            refused += 1;
        }
    }
    assert_eq!((won.len(), refused), (5, 95));
    for i in 0..3 {
        assert_eq!(borrowed_ids(&cluster, i, "five").await, won, "node {i}");
    }
}

/// Keeps `workers` clients borrowing from `bulk` through the nodes marked up, until stopped.
struct Load {
    stop: Arc<AtomicBool>,
    acked: Arc<Mutex<BTreeMap<String, String>>>,
    unexpected: Arc<Mutex<Vec<String>>>,
    retriable: Arc<AtomicUsize>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    /// Client URL per node index; `None` while the node is down.
    targets: Arc<Mutex<Vec<Option<String>>>>,
}

impl Load {
    fn start(cluster: &Cluster, workers: usize) -> Load {
        let mut load = Load {
            stop: Arc::new(AtomicBool::new(false)),
            acked: Arc::default(),
            unexpected: Arc::default(),
            retriable: Arc::default(),
            tasks: Vec::new(),
            targets: Arc::new(Mutex::new(
                cluster.nodes.iter().map(|n| Some(n.api_url())).collect(),
            )),
        };
        for w in 0..workers {
            let (stop, acked, unexpected, retriable, targets) = (
                load.stop.clone(),
                load.acked.clone(),
                load.unexpected.clone(),
                load.retriable.clone(),
                load.targets.clone(),
            );
            load.tasks.push(tokio::spawn(async move {
                let client = reqwest::Client::builder()
                    .timeout(Duration::from_secs(10))
                    .build()
                    .unwrap();
                let mut n = w;
                while !stop.load(Ordering::Relaxed) {
                    n += 1;
                    let up: Vec<String> =
                        targets.lock().unwrap().iter().flatten().cloned().collect();
                    if up.is_empty() {
                        tokio::time::sleep(Duration::from_millis(20)).await;
                        continue;
                    }
                    let url = &up[n % up.len()];
                    // A host of its own per borrow: one host may hold only 32 current
                    // and upcoming borrows of a license.
                    let mut params = borrow_params("bulk", 60, 7200);
                    params["hostId"] = json!(format!("MAC:{:012X}", (w << 32) + n));
                    let body = json!({"jsonrpc":"2.0","method":"BorrowLicenseV1",
                        "params": params, "id": n});
                    let answer = match client
                        .post(format!("{url}/licenses"))
                        .json(&body)
                        .send()
                        .await
                    {
                        Ok(response) => response.json::<Value>().await.ok(),
                        Err(_) => None,
                    };
                    match answer {
                        Some(answer) => {
                            if let Some(id) = answer["result"]["borrowId"].as_str() {
                                let license = answer["result"]["license"].as_str().unwrap_or("");
                                acked
                                    .lock()
                                    .unwrap()
                                    .insert(id.to_string(), license.to_string());
                            } else if answer["error"]["code"] == -32603 {
                                retriable.fetch_add(1, Ordering::Relaxed);
                            } else {
                                unexpected.lock().unwrap().push(answer.to_string());
                            }
                        }
                        None => {
                            // Connection refused or cut: the node is going down or coming up.
                            retriable.fetch_add(1, Ordering::Relaxed);
                            tokio::time::sleep(Duration::from_millis(20)).await;
                        }
                    }
                }
            }));
        }
        load
    }

    fn set_target(&self, i: usize, url: Option<String>) {
        let mut targets = self.targets.lock().unwrap();
        if targets.len() <= i {
            targets.resize(i + 1, None);
        }
        targets[i] = url;
    }

    fn acked_count(&self) -> usize {
        self.acked.lock().unwrap().len()
    }

    async fn wait_for_more(&self, more: usize) {
        let target = self.acked_count() + more;
        let deadline = Instant::now() + Duration::from_secs(60);
        while self.acked_count() < target {
            assert!(Instant::now() < deadline, "load made no progress");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    async fn stop(self) -> (BTreeMap<String, String>, Vec<String>, usize) {
        self.stop.store(true, Ordering::Relaxed);
        for task in self.tasks {
            task.await.expect("load task");
        }
        let acked = self.acked.lock().unwrap().clone();
        let unexpected = self.unexpected.lock().unwrap().clone();
        (acked, unexpected, self.retriable.load(Ordering::Relaxed))
    }
}

/// Every acknowledged borrow is listed on every given node, and its license string is
/// identical there (checked for a sample, every 50th and the last).
async fn assert_all_present(cluster: &Cluster, nodes: &[usize], acked: &BTreeMap<String, String>) {
    for &i in nodes {
        let listed = borrowed_ids(cluster, i, "bulk").await;
        let missing: Vec<&String> = acked.keys().filter(|id| !listed.contains(*id)).collect();
        assert!(
            missing.is_empty(),
            "node {i} lacks {} acknowledged borrows, e.g. {:?}",
            missing.len(),
            missing.first()
        );
        for (n, (id, license)) in acked.iter().enumerate() {
            if n % 50 != 0 && n + 1 != acked.len() {
                continue;
            }
            let got = cluster
                .call(i, "GetBorrowedLicenseV1", json!({"borrowId": id}))
                .await;
            assert_eq!(
                got["result"]["license"].as_str(),
                Some(license.as_str()),
                "node {i} {id}"
            );
        }
    }
}

/// Waits until node `i` reports its own id in `/readyz` as ready.
async fn wait_ready(cluster: &Cluster, i: usize) {
    let url = format!("{}/readyz", cluster.nodes[i].api_url());
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(response) = reqwest::get(&url).await {
            if response.status().as_u16() == 200 {
                return;
            }
        }
        assert!(Instant::now() < deadline, "node {i} not ready");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn killing_the_leader_under_load_loses_nothing() {
    let mut cluster = start3().await;
    let load = Load::start(&cluster, 8);
    load.wait_for_more(100).await;
    let leader = cluster.leader().await;
    load.set_target(leader, None);
    let before = load.acked_count();
    let killed_at = Instant::now();
    cluster.kill9(leader).await;
    load.wait_for_more(1).await;
    eprintln!(
        "failover: kill -9 of the leader to the next acknowledged borrow: {:?}",
        killed_at.elapsed()
    );
    load.wait_for_more(200).await;
    assert!(load.acked_count() > before);
    // The old leader comes back and catches up while the load goes on.
    cluster.restart(leader).await;
    load.set_target(leader, Some(cluster.nodes[leader].api_url()));
    load.wait_for_more(200).await;
    let (acked, unexpected, retriable) = load.stop().await;
    assert!(unexpected.is_empty(), "unexpected answers: {unexpected:?}");
    eprintln!(
        "acknowledged {} borrows, {retriable} retriable failures",
        acked.len()
    );
    assert_all_present(&cluster, &[0, 1, 2], &acked).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn without_a_quorum_a_node_refuses_clearly_and_recovers_after() {
    let mut cluster = start3().await;
    let seat = cluster
        .call(0, "BorrowLicenseV1", borrow_params("five", 60, 3600))
        .await;
    let seat_id = seat["result"]["borrowId"]
        .as_str()
        .expect("borrow")
        .to_string();
    cluster.pause(1);
    cluster.pause(2);
    for (method, params) in [
        ("BorrowLicenseV1", borrow_params("five", 60, 3600)),
        ("ListLicensesV1", json!([])),
        ("GetBorrowedLicenseV1", json!({"borrowId": seat_id})),
    ] {
        let started = Instant::now();
        let answer = cluster.call(0, method, params).await;
        let took = started.elapsed();
        assert_eq!(answer["error"]["code"], -32603, "{method}: {answer}");
        let reason = answer["error"]["data"]["reason"].as_str().unwrap_or("");
        assert!(
            reason.contains("quorum") || reason.contains("leader"),
            "{method}: {reason}"
        );
        // Bounded: the configured 2 s plus slack for a loaded machine, never a hang.
        assert!(took < Duration::from_secs(10), "{method} took {took:?}");
    }
    cluster.resume(1);
    cluster.resume(2);
    // Service resumes: the earlier borrow is there and capacity still holds (5 seats).
    // The borrow refused during the outage had an unknown outcome: it may have been
    // applied once the quorum came back, and then fills a seat too.
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut granted = BTreeSet::from([seat_id.clone()]);
    while granted.len() < 5 {
        let answer = cluster
            .call(0, "BorrowLicenseV1", borrow_params("five", 60, 3600))
            .await;
        if let Some(id) = answer["result"]["borrowId"].as_str() {
            granted.insert(id.to_string());
        } else if answer["error"]["code"] == 32 {
            break;
        } else {
            assert_eq!(answer["error"]["code"], -32603, "{answer}");
            assert!(Instant::now() < deadline, "service did not resume");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    let sixth = cluster
        .call(1, "BorrowLicenseV1", borrow_params("five", 60, 3600))
        .await;
    // A borrow refused during the outage may still have been applied later (its outcome
    // was unknown), so the license is full either way: never a sixth seat.
    assert_eq!(sixth["error"]["code"], 32, "{sixth}");
    for i in 0..3 {
        let listed = borrowed_ids(&cluster, i, "five").await;
        assert_eq!(
            listed.len(),
            5,
            "node {i} lists {} borrows of a 5-seat license",
            listed.len()
        );
        assert!(granted.is_subset(&listed), "node {i} lost a borrow");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_node_that_missed_many_borrows_catches_up_from_a_snapshot() {
    let mut cluster = Cluster::start(
        3,
        POOL,
        &[
            "--request-timeout-ms",
            TIMEOUT_MS,
            "--snapshot-every",
            "500",
        ],
    )
    .await;
    let leader = cluster.leader().await;
    let lagging = (leader + 1) % 3;
    let lagging_had = cluster.status(lagging).await["lastLogIndex"]
        .as_u64()
        .unwrap_or(0);
    cluster.kill9(lagging).await;
    let load = Load::start(&cluster, 16);
    load.set_target(lagging, None);
    // Until the leader has compacted away what the lagging node lacks: openraft defers a
    // purge while a replication request to the dead node reads those entries, so the
    // snapshot alone does not mean the log is gone.
    let deadline = Instant::now() + Duration::from_secs(240);
    loop {
        let purged = cluster.status(leader).await["purged"].as_u64().unwrap_or(0);
        if load.acked_count() >= 5_000 && purged > lagging_had {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "5 000 borrows and a purge past index {lagging_had} took too long (purged {purged})"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let (acked, unexpected, _) = load.stop().await;
    assert!(unexpected.is_empty(), "{unexpected:?}");
    let status = cluster.status(leader).await;
    let purged_past = status["snapshot"].as_u64().unwrap_or(0);
    assert!(
        purged_past > 1_000,
        "the leader should have snapshotted: {status}"
    );
    assert!(
        status["snapshotsBuilt"].as_u64().unwrap_or(0) >= 1,
        "the leader built its snapshots itself: {status}"
    );
    cluster.restart(lagging).await;
    wait_ready(&cluster, lagging).await;
    let status = cluster.status(lagging).await;
    assert!(
        status["snapshot"].as_u64().unwrap_or(0) > 0,
        "caught up without a snapshot? {status}"
    );
    assert!(
        status["snapshotsInstalled"].as_u64().unwrap_or(0) >= 1,
        "the lagging node should have installed the leader's snapshot: {status}"
    );
    assert_all_present(&cluster, &[lagging], &acked).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn growing_to_five_and_shrinking_to_three_under_load_loses_nothing() {
    let mut cluster = start3().await;
    let load = Load::start(&cluster, 8);
    load.wait_for_more(100).await;
    let fourth = cluster.add_node(0).await;
    load.set_target(fourth, Some(cluster.nodes[fourth].api_url()));
    let fifth = cluster.add_node(1).await;
    load.set_target(fifth, Some(cluster.nodes[fifth].api_url()));
    load.wait_for_more(100).await;
    let status = cluster.status(0).await;
    let voters = status["members"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["voter"] == true)
        .count();
    assert_eq!(voters, 5, "{status}");
    // Shrink back to three: remove two of the original nodes.
    for i in [1usize, 2] {
        let id = cluster.nodes[i].id();
        load.set_target(i, None);
        let answer = cluster.remove_member(0, id, false).await;
        assert!(answer.is_ok(), "{answer:?}");
        cluster.kill9(i).await;
        load.wait_for_more(50).await;
    }
    let status = cluster.status(0).await;
    assert_eq!(status["members"].as_array().unwrap().len(), 3, "{status}");
    load.wait_for_more(100).await;
    let (acked, unexpected, _) = load.stop().await;
    assert!(unexpected.is_empty(), "{unexpected:?}");
    assert_all_present(&cluster, &[0, fourth, fifth], &acked).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn removing_a_voter_that_would_leave_no_quorum_needs_force() {
    let mut cluster = start3().await;
    let leader = cluster.leader().await;
    let (dead, alive) = ((leader + 1) % 3, (leader + 2) % 3);
    cluster.kill9(dead).await;
    // Wait until the leader has noticed that the dead node stopped acknowledging.
    let dead_id = cluster.nodes[dead].id();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let status = cluster.status(leader).await;
        let silent_ms = status["members"]
            .as_array()
            .and_then(|m| m.iter().find(|m| m["id"] == dead_id))
            .and_then(|m| m["lastAckMs"].as_u64())
            .unwrap_or(0);
        if silent_ms > 1_500 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "leader never noticed the dead node: {status}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Removing the live follower would leave {leader, dead}: one healthy voter of two.
    let refused = cluster
        .remove_member(leader, cluster.nodes[alive].id(), false)
        .await;
    assert!(
        matches!(&refused, Err(AdminError::Refused(reason)) if reason.contains("--force")),
        "{refused:?}"
    );
    // The refusal changed nothing: the two live voters still serve.
    let answer = cluster
        .call(alive, "BorrowLicenseV1", borrow_params("bulk", 60, 3600))
        .await;
    assert!(answer["result"]["borrowId"].is_string(), "{answer}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_rolling_restart_under_load_loses_nothing() {
    let mut cluster = start3().await;
    let load = Load::start(&cluster, 8);
    load.wait_for_more(100).await;
    for i in 0..3 {
        load.set_target(i, None);
        cluster.terminate(i).await;
        load.wait_for_more(50).await;
        cluster.restart(i).await;
        load.set_target(i, Some(cluster.nodes[i].api_url()));
        load.wait_for_more(50).await;
    }
    let (acked, unexpected, retriable) = load.stop().await;
    assert!(
        unexpected.is_empty(),
        "only retriable errors are allowed: {unexpected:?}"
    );
    eprintln!(
        "rolling restart: {} borrows acknowledged, {retriable} retriable failures",
        acked.len()
    );
    assert_all_present(&cluster, &[0, 1, 2], &acked).await;
}
