//! The Helm chart's StatefulSet, run for real: `licensed` processes started with exactly
//! the command, arguments and environment the chart renders (through the real Helm
//! library), one per pod, each with its own address, hostname, read-only root, volumes and
//! user, the headless Service's DNS names resolving to the pods (see
//! `licensed_testkit::pods`). In the order of the README's "Deploy on Kubernetes":
//!
//! 1. install: the pods start together and form one cluster, which loads the pool;
//! 2. a rolling restart (highest ordinal first) under a borrowing load loses no
//!    acknowledged borrow and never grants more overlapping borrows than a license has;
//! 3. scaling 3 → 5 with `helm upgrade --set replicas=5`; then 5 → 3 by the documented
//!    steps (`licensectl cluster remove` 5 and 4, `replicas=3`, delete their claims);
//! 4. ordinal 0 started again on an empty volume rejoins the running cluster instead of
//!    creating a second one;
//! 5. a changed pool ConfigMap, updated in the pods' volumes as the kubelet does, is
//!    applied by the cluster once.
//!
//! Needs root (network and mount namespaces), iproute2 and util-linux; the chart is
//! rendered by `deploy/validate.sh --render`, which installs helm-python-sdk on first use.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use licensed_testkit::pods::{self, Release, StatefulSet};
use licensed_testkit::{at, licensed_binary};
use serde_json::{json, Value};

const ADMIN_TOKEN: &str = "kubernetes-test-admin-token";
/// The license the load competes for: 20 seats.
const FEATURE: &str = "MVTec_HALCON";
const UUID: &str = "halcon-load";
const SEATS: usize = 20;
/// Borrow windows the load picks from: 40 ten-minute slots in the next hours, room for
/// 800 borrows (below the server's 64 upcoming borrows per seat), so the load borrows
/// through the whole restart and then contends for the last seats.
const SLOTS: i64 = 40;
const SLOT_SECS: i64 = 600;
/// Pause of each load client between calls.
const PACE: Duration = Duration::from_millis(40);
/// Pods must be ready within this (a joining node may catch up from a snapshot).
const READY: Duration = Duration::from_secs(120);

const POOL: &str = r#"[
  {"feature":"MVTec_HALCON","uuid":"halcon-load","version":"26.05","edition":"Steady","modules":"fc","count":20},
  {"feature":"MVTec_HDevelop","uuid":"118cf2e7b3d20001","version":"26.05","edition":"Progress","modules":"fc","count":1}
]"#;
const CHANGED_POOL: &str = r#"[
  {"feature":"MVTec_HALCON","uuid":"halcon-load","version":"26.05","edition":"Steady","modules":"fc","count":20},
  {"feature":"MVTec_HDevelop","uuid":"118cf2e7b3d20001","version":"26.05","edition":"Progress","modules":"fc","count":1},
  {"feature":"MVTec_HALCON","uuid":"halcon-added","version":"26.05","edition":"Steady","modules":"fc","count":2}
]"#;

#[test]
fn the_rendered_statefulset_forms_rolls_scales_rejoins_and_takes_a_new_pool() {
    // SAFETY: plain system call.
    assert_eq!(
        unsafe { libc::geteuid() },
        0,
        "the pods need network and mount namespaces: run the tests as root"
    );
    pods::enter_pod_network().expect("pod network");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(scenario());
}

/// Renders the chart with the test's values on top of `extra` (YAML).
fn render(dir: &Path, name: &str, extra: &str) -> Release {
    let pool_values = |pool: &str| {
        let mut text = String::from("pool:\n  json: |\n");
        for line in pool.lines() {
            text.push_str("    ");
            text.push_str(line);
            text.push('\n');
        }
        text
    };
    let base = format!(
        "auth:\n  adminToken: {ADMIN_TOKEN}\n  clusterSecret: kubernetes-test-cluster-secret\n\
         # Shorter than the default 10 s, to keep the test short; the order is the chart's.\n\
         minReadySeconds: 2\n{}",
        pool_values(POOL)
    );
    std::fs::write(dir.join("base.yaml"), base).expect("values");
    let extra = extra.replace("{CHANGED_POOL}", &pool_values(CHANGED_POOL));
    let file = dir.join(format!("{name}.yaml"));
    std::fs::write(&file, extra).expect("values");
    let objects = pods::render(&[&dir.join("base.yaml"), &file]).expect("the chart renders");
    Release::new(objects).expect("a StatefulSet")
}

fn step(started: Instant, what: &str) {
    eprintln!("[{:>6.1} s] {what}", started.elapsed().as_secs_f64());
}

async fn scenario() {
    let started = Instant::now();
    let values = tempfile::tempdir().expect("values dir");
    let release = render(values.path(), "install", "");
    assert_eq!(release.replicas(), 3);
    let mut set = StatefulSet::new(release.clone()).expect("controller");
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .expect("client");

    // 1. Install: every pod at once (podManagementPolicy: Parallel).
    set.apply(release, READY).await.expect("pods ready");
    step(started, "installed: 3 pods ready");
    let status = wait_for_voters(&client, &set, 3).await;
    let the_cluster = cluster_id(&client, &set, 0).await;
    for ordinal in 1..3 {
        assert_eq!(
            cluster_id(&client, &set, ordinal).await,
            the_cluster,
            "one cluster"
        );
    }
    let licenses = rpc(&client, &set, 2, "ListLicensesV1", json!({})).await;
    assert_eq!(
        licenses["result"].as_array().map(Vec::len),
        Some(2),
        "the pool from the ConfigMap: {licenses}"
    );
    step(
        started,
        &format!("one cluster, leader {:?}, pool loaded", status["leader"]),
    );

    // 2. A rolling restart under load.
    let load = Load::start(client.clone(), set.release().port("api"), 3, 6);
    tokio::time::sleep(Duration::from_secs(1)).await;
    let before_restart = load.acknowledged();
    set.rolling_restart(READY).await.expect("rolling restart");
    let during_restart = load.acknowledged() - before_restart;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (acknowledged, answers) = load.stop().await;
    step(
        started,
        &format!(
            "rolling restart done: {} borrows acknowledged ({during_restart} while pods \
             were replaced); answers: {answers:?}",
            acknowledged.len()
        ),
    );
    assert!(
        during_restart > 0,
        "the load borrowed nothing during the restart"
    );
    check_ledger(&client, &set, 1, &acknowledged).await;

    // 3. Scale 3 -> 5: the new pods join, the old ones roll with the new --peers.
    let five = render(values.path(), "five", "replicas: 5\n");
    set.apply(five, READY).await.expect("scaled to 5");
    wait_for_voters(&client, &set, 5).await;
    step(started, "scaled to 5: 5 voters");
    check_ledger(&client, &set, 4, &acknowledged).await;

    // Scale 5 -> 3 by the documented steps: remove ids 5 and 4 (ordinals 4 and 3) from
    // the cluster, lower replicas, delete the removed ordinals' claims.
    for id in [5, 4] {
        licensectl_remove(&set, id).await;
    }
    let three = render(values.path(), "three", "replicas: 3\n");
    set.apply(three, READY).await.expect("scaled to 3");
    for ordinal in [3, 4] {
        set.delete_claim(ordinal).expect("claim deleted");
    }
    wait_for_voters(&client, &set, 3).await;
    assert_eq!(set.ordinals(), vec![0, 1, 2]);
    for ordinal in 0..3 {
        assert!(
            set.is_ready(ordinal).await,
            "pod {ordinal} ready after scaling down"
        );
    }
    step(
        started,
        "scaled back to 3 by the documented steps: 3 voters, all ready",
    );
    check_ledger(&client, &set, 0, &acknowledged).await;

    // 4. Ordinal 0 (the id that creates a new cluster) on an empty volume rejoins.
    set.delete_pod(0).await.expect("pod 0 deleted");
    set.delete_claim(0).expect("claim 0 deleted");
    set.replace(0, READY)
        .await
        .expect("pod 0 back on an empty volume");
    wait_for_voters(&client, &set, 3).await;
    assert_eq!(
        cluster_id(&client, &set, 0).await,
        the_cluster,
        "ordinal 0 on an empty volume joined the running cluster"
    );
    check_ledger(&client, &set, 0, &acknowledged).await;
    step(
        started,
        "ordinal 0 rejoined from an empty volume: same cluster, every borrow there",
    );

    // 5. A changed pool ConfigMap: the kubelet updates every pod's file; applied once.
    let applies_before = pool_applies(&client, &set).await;
    let changed = render(values.path(), "pool", "{CHANGED_POOL}");
    set.apply(changed, READY).await.expect("new pool");
    assert_eq!(
        set.ordinals(),
        vec![0, 1, 2],
        "no pod restarted for a pool change"
    );
    let deadline = Instant::now() + Duration::from_secs(60);
    for ordinal in 0..3 {
        loop {
            let licenses = rpc(&client, &set, ordinal, "ListLicensesV1", json!({})).await;
            if licenses["result"].as_array().map(Vec::len) == Some(3) {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "pod {ordinal} did not apply the new pool: {licenses}\n{}",
                set.log_tail(ordinal, 20)
            );
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
    // Every node reads the file every 10 s: after two rounds each has seen the change.
    tokio::time::sleep(Duration::from_secs(21)).await;
    let applies_after = pool_applies(&client, &set).await;
    assert_eq!(
        applies_after,
        applies_before + 1,
        "the changed pool was applied exactly once"
    );
    step(started, "the changed pool ConfigMap was applied once");
}

/// A JSON-RPC call to pod `ordinal`'s client port.
async fn rpc(
    client: &reqwest::Client,
    set: &StatefulSet,
    ordinal: usize,
    method: &str,
    params: Value,
) -> Value {
    call(
        client,
        &set.addr(ordinal, "api").to_string(),
        method,
        params,
        None,
    )
    .await
    .unwrap_or_else(|e| panic!("{method} on pod {ordinal}: {e}"))
}

async fn call(
    client: &reqwest::Client,
    addr: &str,
    method: &str,
    params: Value,
    token: Option<&str>,
) -> Result<Value, String> {
    let body = json!({"jsonrpc": "2.0", "method": method, "params": params, "id": 1});
    let mut request = client.post(format!("http://{addr}/licenses")).json(&body);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request.send().await.map_err(|e| e.to_string())?;
    response.json().await.map_err(|e| e.to_string())
}

/// The cluster status pod `ordinal` reports on its Raft port.
async fn cluster_status(
    client: &reqwest::Client,
    set: &StatefulSet,
    ordinal: usize,
) -> Option<Value> {
    let url = format!("http://{}/cluster/admin/status", set.addr(ordinal, "raft"));
    client.get(url).send().await.ok()?.json().await.ok()
}

/// The cluster id pod `ordinal` belongs to.
async fn cluster_id(client: &reqwest::Client, set: &StatefulSet, ordinal: usize) -> String {
    let url = format!("http://{}/cluster/info", set.addr(ordinal, "raft"));
    let info: Value = client
        .get(url)
        .send()
        .await
        .expect("info")
        .json()
        .await
        .expect("info JSON");
    info["clusterId"]
        .as_str()
        .or_else(|| info["cluster_id"].as_str())
        .unwrap_or_else(|| panic!("pod {ordinal} has no cluster id: {info}"))
        .to_string()
}

/// Waits until the leader reports exactly `voters` voters (ids 1..=voters), no learner,
/// and every pod agrees on the leader; returns the leader's status.
async fn wait_for_voters(client: &reqwest::Client, set: &StatefulSet, voters: u64) -> Value {
    let deadline = Instant::now() + READY;
    let mut last = Value::Null;
    loop {
        let mut leaders = Vec::new();
        for ordinal in set.ordinals() {
            if let Some(status) = cluster_status(client, set, ordinal).await {
                leaders.push(status["leader"].clone());
                last = status;
            }
        }
        let agreed = leaders.len() == set.ordinals().len()
            && leaders.iter().all(|l| *l == leaders[0] && l.is_u64());
        if agreed {
            let leader = leaders[0].as_u64().unwrap_or(1);
            let ordinal = usize::try_from(leader - 1).unwrap_or(0);
            if let Some(status) = cluster_status(client, set, ordinal).await {
                let ids: Vec<(u64, bool)> = status["members"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|m| {
                        (
                            m["id"].as_u64().unwrap_or(0),
                            m["voter"].as_bool().unwrap_or(false),
                        )
                    })
                    .collect();
                let want: Vec<(u64, bool)> = (1..=voters).map(|id| (id, true)).collect();
                if ids == want {
                    return status;
                }
                last = status;
            }
        }
        assert!(
            Instant::now() < deadline,
            "the cluster did not settle on {voters} voters: {last}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// `licensectl cluster --node POD-0:RAFT remove ID`, as the README's scale-down says.
async fn licensectl_remove(set: &StatefulSet, id: u64) {
    let licensectl = licensed_binary()
        .expect("licensed binary")
        .with_file_name("licensectl");
    let output = tokio::process::Command::new(licensectl)
        .args([
            "cluster",
            "--node",
            &set.addr(0, "raft").to_string(),
            "remove",
            &id.to_string(),
        ])
        .env("LICENSED_ADMIN_TOKEN", ADMIN_TOKEN)
        .output()
        .await
        .expect("licensectl runs");
    assert!(
        output.status.success(),
        "licensectl cluster remove {id}: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// How many `pool-apply` entries the audit trail holds.
async fn pool_applies(client: &reqwest::Client, set: &StatefulSet) -> usize {
    let answer = call(
        client,
        &set.addr(0, "api").to_string(),
        "ListAuditV1",
        json!({"kind": "pool-apply", "limit": 1000}),
        Some(ADMIN_TOKEN),
    )
    .await
    .expect("audit");
    answer["result"]["entries"]
        .as_array()
        .unwrap_or_else(|| panic!("audit answer: {answer}"))
        .len()
}

/// Every acknowledged borrow is in the ledger (read through pod `ordinal`) with its
/// window, and at no instant does the license hold more overlapping borrows than seats.
async fn check_ledger(
    client: &reqwest::Client,
    set: &StatefulSet,
    ordinal: usize,
    acknowledged: &Acknowledged,
) {
    let mut listed: BTreeMap<String, (String, String)> = BTreeMap::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut params = json!({"feature": FEATURE, "uuid": UUID, "limit": 1000});
        if let Some(cursor) = &cursor {
            params["cursor"] = json!(cursor);
        }
        let page = rpc(client, set, ordinal, "ListBorrowsV1", params).await;
        let result = &page["result"];
        for borrow in result["borrows"]
            .as_array()
            .unwrap_or_else(|| panic!("{page}"))
        {
            let text = |k: &str| borrow[k].as_str().unwrap_or_default().to_string();
            listed.insert(text("borrowId"), (text("validFrom"), text("validUntil")));
        }
        match result["nextCursor"].as_str() {
            Some(next) => cursor = Some(next.to_string()),
            None => break,
        }
    }
    for (id, window) in acknowledged {
        assert_eq!(
            listed.get(id),
            Some(window),
            "acknowledged borrow {id} is missing or changed (read through pod {ordinal})"
        );
    }
    // Overlap: sweep the window edges.
    let mut edges: Vec<(String, i32)> = Vec::new();
    for (from, until) in listed.values() {
        edges.push((from.clone(), 1));
        edges.push((until.clone(), -1));
    }
    // RFC 3339 UTC strings sort by time; an end sorts before a start at the same instant.
    edges.sort();
    let mut current = 0i32;
    for (_, delta) in edges {
        current += delta;
        assert!(
            usize::try_from(current).unwrap_or(0) <= SEATS,
            "more than {SEATS} overlapping borrows of {FEATURE}/{UUID}"
        );
    }
}

/// Clients borrowing through the pods the client Service would pick (any pod that
/// answers; a refused connection or an unavailable node makes the client try another),
/// recording every acknowledged borrow.
struct Load {
    stop: Arc<AtomicBool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    acknowledged: Arc<Mutex<Acknowledged>>,
    answers: Arc<Mutex<BTreeMap<String, u64>>>,
}

/// Acknowledged borrows: id → (validFrom, validUntil).
type Acknowledged = BTreeMap<String, (String, String)>;

impl Load {
    fn start(client: reqwest::Client, port: u16, pods: usize, clients: usize) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let acknowledged = Arc::new(Mutex::new(BTreeMap::new()));
        let answers = Arc::new(Mutex::new(BTreeMap::new()));
        let serial = Arc::new(AtomicU64::new(0));
        let tasks = (0..clients)
            .map(|c| {
                let (client, stop, acknowledged, answers, serial) = (
                    client.clone(),
                    stop.clone(),
                    acknowledged.clone(),
                    answers.clone(),
                    serial.clone(),
                );
                tokio::spawn(async move {
                    let mut pick = c;
                    while !stop.load(Ordering::Relaxed) {
                        let n = serial.fetch_add(1, Ordering::Relaxed);
                        let slot = i64::try_from(n).unwrap_or(0) % SLOTS;
                        let from = at(3_600 + slot * SLOT_SECS);
                        let until = at(3_600 + (slot + 1) * SLOT_SECS);
                        let params = json!({"feature": FEATURE, "uuid": UUID,
                            "hostId": format!("MAC:{:012X}", 0x0A00_0000_0000u64 + n),
                            "validFrom": from.clone(), "validUntil": until.clone()});
                        pick = (pick + 1) % pods;
                        let addr = format!("{}:{port}", pods::pod_ip(pick));
                        let outcome =
                            match call(&client, &addr, "BorrowLicenseV1", params, None).await {
                                Ok(answer) => {
                                    if let Some(id) = answer["result"]["borrowId"].as_str() {
                                        acknowledged
                                            .lock()
                                            .expect("acknowledged")
                                            .insert(id.to_string(), (from, until));
                                        "ok".to_string()
                                    } else {
                                        format!("error {}", answer["error"]["code"])
                                    }
                                }
                                Err(_) => "no answer (pod down)".to_string(),
                            };
                        *answers.lock().expect("answers").entry(outcome).or_insert(0) += 1;
                        tokio::time::sleep(PACE).await;
                    }
                })
            })
            .collect();
        Load {
            stop,
            tasks,
            acknowledged,
            answers,
        }
    }

    /// How many borrows were acknowledged so far.
    fn acknowledged(&self) -> usize {
        self.acknowledged.lock().expect("acknowledged").len()
    }

    /// Stops the clients; returns the acknowledged borrows (id → window) and how many
    /// answers of each kind they got.
    async fn stop(self) -> (Acknowledged, BTreeMap<String, u64>) {
        self.stop.store(true, Ordering::Relaxed);
        for task in self.tasks {
            task.await.expect("load task");
        }
        let acknowledged = self.acknowledged.lock().expect("acknowledged").clone();
        let answers = self.answers.lock().expect("answers").clone();
        (acknowledged, answers)
    }
}
