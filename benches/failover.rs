//! Leader failover, measured the same way on `licensed` and on etcd: `kill -9` of the
//! leader of a 3-node cluster on loopback while clients keep writing through every
//! member, then the time until the first write *sent after the kill* succeeds through a
//! survivor. The killed member is restarted and the cluster settles between trials.
//!
//! ```sh
//! cargo bench --profile dev --bench failover -- --trials 7            # both systems
//! cargo bench --profile dev --bench failover -- --system licensed --election 600-1200 --steady 60
//! ```
//! Before the trials, 64 writers load the cluster for `--steady` seconds (default 20) and
//! the elections meanwhile are counted: timeouts tight enough for a fast failover must not
//! cause spurious elections under load (this machine's fsync stalls reach ~100 ms).
//! etcd 3.4 (`apt-get install etcd-server`) must be on the PATH for the etcd half.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine;
use licensed_testkit::{free_port, peers_arg, NodeProcess, NodeSpec, Process};
use serde_json::{json, Value};

const POOL: &str = r#"[{"feature":"MVTec_HALCON","uuid":"bench","version":"26.05","edition":"Steady","modules":"fc","count":100000000}]"#;
/// Writers per surviving member.
const WRITERS_PER_NODE: usize = 2;
/// Each write gives up after this long (then the writer tries again at once).
const WRITE_TIMEOUT: Duration = Duration::from_millis(500);

/// A free loopback port.
fn port() -> u16 {
    free_port().expect("free port")
}

/// One etcd member process and how to start it again.
struct Member {
    command: Vec<String>,
    process: Process,
    /// Client base URL.
    url: String,
}

impl Member {
    fn spawn(&mut self) {
        let mut command = tokio::process::Command::new(&self.command[0]);
        command.args(&self.command[1..]);
        self.process
            .spawn(command, None)
            .unwrap_or_else(|e| panic!("{e}"));
    }

    async fn kill9(&mut self) {
        self.process.kill9().await.unwrap_or_else(|e| panic!("{e}"));
    }
}

/// What differs between the two systems.
trait System {
    fn name(&self) -> &'static str;
    /// SIGKILL member `i` and reap it.
    async fn kill9(&mut self, i: usize);
    /// Starts member `i` again on its ports and data, without waiting for it.
    fn respawn(&mut self, i: usize);
    /// Index of the current leader, if every running member agrees on one.
    async fn leader(&self, http: &reqwest::Client) -> Option<usize>;
    /// One write through member `i`; `Ok` only for a confirmed success.
    async fn write(&self, http: &reqwest::Client, i: usize, n: u64) -> Result<(), String>;
    /// The Raft term member `i` is in.
    async fn term(&self, http: &reqwest::Client, i: usize) -> Option<u64>;
}

struct Licensed {
    nodes: Vec<NodeProcess>,
}

impl Licensed {
    /// Spawns three nodes of a new cluster (static bootstrap); does not wait for them.
    fn start(dir: &Path, binary: &Path, election: Option<&str>) -> Licensed {
        let pool = dir.join("pool.json");
        std::fs::write(&pool, POOL).expect("pool");
        let specs: Vec<NodeSpec> = (1..=3)
            .map(|id| {
                NodeSpec::new(id, binary, dir.join(format!("n{id}")).join("data"))
                    .expect("free ports")
                    .arg(format!("--pool={}", pool.display()))
                    .env("RUST_LOG", "warn")
            })
            .collect();
        let peers = peers_arg(&specs);
        let nodes = specs
            .into_iter()
            .map(|spec| {
                let mut spec = spec.arg(format!("--peers={peers}"));
                if let Some((min, max)) = election.and_then(|e| e.split_once('-')) {
                    spec = spec.args([
                        format!("--election-min-ms={min}"),
                        format!("--election-max-ms={max}"),
                    ]);
                }
                let mut node = NodeProcess::new(spec).unwrap_or_else(|e| panic!("{e}"));
                node.spawn().unwrap_or_else(|e| panic!("{e}"));
                node
            })
            .collect();
        Licensed { nodes }
    }
}

impl Licensed {
    /// Member `i`'s cluster status.
    async fn status(&self, http: &reqwest::Client, i: usize) -> Option<Value> {
        let url = format!("http://{}/cluster/admin/status", self.nodes[i].raft_addr());
        http.get(url)
            .timeout(Duration::from_secs(1))
            .send()
            .await
            .ok()?
            .json()
            .await
            .ok()
    }
}

impl System for Licensed {
    fn name(&self) -> &'static str {
        "licensed"
    }

    async fn kill9(&mut self, i: usize) {
        self.nodes[i]
            .kill9()
            .await
            .unwrap_or_else(|e| panic!("{e}"));
    }

    fn respawn(&mut self, i: usize) {
        self.nodes[i].spawn().unwrap_or_else(|e| panic!("{e}"));
    }

    async fn leader(&self, http: &reqwest::Client) -> Option<usize> {
        let mut seen = None;
        for (i, node) in self.nodes.iter().enumerate() {
            if !node.is_started() {
                continue;
            }
            let status = self.status(http, i).await?;
            let leader = status["leader"].as_u64()? as usize - 1;
            if seen.is_some_and(|s| s != leader) {
                return None;
            }
            seen = Some(leader);
        }
        seen
    }

    async fn term(&self, http: &reqwest::Client, i: usize) -> Option<u64> {
        self.status(http, i).await?["term"].as_u64()
    }

    async fn write(&self, http: &reqwest::Client, i: usize, n: u64) -> Result<(), String> {
        let from = chrono::Utc::now() + chrono::Duration::seconds(60);
        let until = from + chrono::Duration::seconds(3600);
        // A host per write: one host may hold only 32 outstanding borrows of a license.
        let host = format!("MAC:{:012X}", n & 0xFFFF_FFFF_FFFF);
        let body = json!({"jsonrpc":"2.0","method":"BorrowLicenseV1","id":n,"params":{
            "feature":"MVTec_HALCON","uuid":"bench","hostId":host,
            "validFrom": from.format("%Y-%m-%dT%H:%M:%SZ").to_string(),
            "validUntil": until.format("%Y-%m-%dT%H:%M:%SZ").to_string()}});
        let answer: Value = http
            .post(format!("{}/licenses", self.nodes[i].api_url()))
            .timeout(WRITE_TIMEOUT)
            .json(&body)
            .send()
            .await
            .map_err(|e| e.to_string())?
            .json()
            .await
            .map_err(|e| e.to_string())?;
        if answer.get("result").is_some() {
            Ok(())
        } else {
            Err(answer.to_string())
        }
    }
}

struct Etcd {
    members: Vec<Member>,
}

impl Etcd {
    fn start(dir: &Path) -> Etcd {
        let ports: Vec<(u16, u16)> = (0..3).map(|_| (port(), port())).collect();
        let cluster = ports
            .iter()
            .enumerate()
            .map(|(i, (_, peer))| format!("e{}=http://127.0.0.1:{peer}", i + 1))
            .collect::<Vec<_>>()
            .join(",");
        let mut members = Vec::new();
        for (i, (client, peer)) in ports.iter().enumerate() {
            let command = vec![
                "etcd".to_string(),
                format!("--name=e{}", i + 1),
                format!("--data-dir={}", dir.join(format!("e{}", i + 1)).display()),
                format!("--listen-client-urls=http://127.0.0.1:{client}"),
                format!("--advertise-client-urls=http://127.0.0.1:{client}"),
                format!("--listen-peer-urls=http://127.0.0.1:{peer}"),
                format!("--initial-advertise-peer-urls=http://127.0.0.1:{peer}"),
                format!("--initial-cluster={cluster}"),
                "--initial-cluster-state=new".to_string(),
                "--initial-cluster-token=failover-bench".to_string(),
                "--log-level=error".to_string(),
            ];
            let mut member = Member {
                command,
                process: Process::new(
                    format!("etcd member e{}", i + 1),
                    dir.join(format!("e{}.log", i + 1)),
                ),
                url: format!("http://127.0.0.1:{client}"),
            };
            member.spawn();
            members.push(member);
        }
        Etcd { members }
    }
}

impl Etcd {
    /// A member's `/v3/maintenance/status`.
    async fn status(http: &reqwest::Client, member: &Member) -> Option<Value> {
        http.post(format!("{}/v3/maintenance/status", member.url))
            .timeout(Duration::from_secs(1))
            .json(&json!({}))
            .send()
            .await
            .ok()?
            .json()
            .await
            .ok()
    }
}

impl System for Etcd {
    fn name(&self) -> &'static str {
        "etcd"
    }

    async fn kill9(&mut self, i: usize) {
        self.members[i].kill9().await;
    }

    fn respawn(&mut self, i: usize) {
        self.members[i].spawn();
    }

    async fn leader(&self, http: &reqwest::Client) -> Option<usize> {
        let mut ids = Vec::new();
        let mut seen = None;
        for member in &self.members {
            if !member.process.is_started() {
                ids.push(None);
                continue;
            }
            let status = Etcd::status(http, member).await?;
            ids.push(Some(status["header"]["member_id"].as_str()?.to_string()));
            let leader = status["leader"].as_str()?.to_string();
            if seen.as_ref().is_some_and(|s| *s != leader) {
                return None;
            }
            seen = Some(leader);
        }
        let leader = seen?;
        ids.iter()
            .position(|id| id.as_deref() == Some(leader.as_str()))
    }

    async fn term(&self, http: &reqwest::Client, i: usize) -> Option<u64> {
        let status = Etcd::status(http, &self.members[i]).await?;
        status["raftTerm"].as_str()?.parse().ok()
    }

    async fn write(&self, http: &reqwest::Client, i: usize, n: u64) -> Result<(), String> {
        let b64 = |s: String| base64::engine::general_purpose::STANDARD.encode(s);
        let body = json!({"key": b64(format!("failover/{n}/{}", uuid::Uuid::new_v4())), "value": b64("x".into())});
        let answer: Value = http
            .post(format!("{}/v3/kv/put", self.members[i].url))
            .timeout(WRITE_TIMEOUT)
            .json(&body)
            .send()
            .await
            .map_err(|e| e.to_string())?
            .json()
            .await
            .map_err(|e| e.to_string())?;
        if answer.get("header").is_some() && answer.get("error").is_none() {
            Ok(())
        } else {
            Err(answer.to_string())
        }
    }
}

/// Waits until all members run, agree on a leader and accept a write through each.
async fn settle<S: System>(system: &S, http: &reqwest::Client) -> usize {
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut n = 0;
    loop {
        assert!(Instant::now() < deadline, "{} never settled", system.name());
        if let Some(leader) = system.leader(http).await {
            let mut all = true;
            for i in 0..3 {
                n += 1;
                all &= system.write(http, i, n).await.is_ok();
            }
            if all {
                return leader;
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// One trial: returns the failover time.
async fn trial<S: System + Sync>(system: &mut S, http: &reqwest::Client) -> Duration {
    let leader = settle(system, http).await;
    // Steady state for a moment, as in production.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let killed_at: Arc<Mutex<Option<Instant>>> = Arc::new(Mutex::new(None));
    let first_success: Arc<Mutex<Option<Instant>>> = Arc::new(Mutex::new(None));
    let stop = Arc::new(AtomicBool::new(false));
    let survivors: Vec<usize> = (0..3).filter(|i| *i != leader).collect();
    system.kill9(leader).await;
    *killed_at.lock().expect("lock") = Some(Instant::now());
    let system_ref = &*system;
    let writers = survivors.iter().flat_map(|&i| {
        (0..WRITERS_PER_NODE).map({
            let first_success = first_success.clone();
            let stop = stop.clone();
            move |w| {
                let first_success = first_success.clone();
                let stop = stop.clone();
                async move {
                    let mut n = (i * 1_000_000 + w * 100_000) as u64;
                    while !stop.load(Ordering::Relaxed) {
                        n += 1;
                        match system_ref.write(http, i, n).await {
                            Ok(()) => {
                                let mut first = first_success.lock().expect("lock");
                                first.get_or_insert_with(Instant::now);
                                stop.store(true, Ordering::Relaxed);
                            }
                            // Refused fast (no leader yet): do not spin.
                            Err(_) => tokio::time::sleep(Duration::from_millis(5)).await,
                        }
                    }
                }
            }
        })
    });
    let guard = tokio::time::timeout(Duration::from_secs(30), futures::future::join_all(writers));
    guard
        .await
        .expect("no write succeeded within 30 s of the kill");
    let killed = killed_at.lock().expect("lock").expect("kill time");
    let first = first_success.lock().expect("lock").expect("a success");
    system.respawn(leader);
    first.duration_since(killed)
}

/// Runs `clients` writers through all members for `secs` and counts elections (term
/// changes) meanwhile: a loaded cluster should elect nobody.
async fn steady_load<S: System + Sync>(
    system: &S,
    http: &reqwest::Client,
    clients: usize,
    secs: u64,
) -> (u64, u64, usize) {
    settle(system, http).await;
    let before = system.term(http, 0).await.unwrap_or(0);
    let deadline = Instant::now() + Duration::from_secs(secs);
    let writers = (0..clients).map(|c| async move {
        let mut n = (c as u64) << 32;
        let (mut ok, mut failed) = (0u64, 0u64);
        while Instant::now() < deadline {
            n += 1;
            match system.write(http, c % 3, n).await {
                Ok(()) => ok += 1,
                Err(_) => failed += 1,
            }
        }
        (ok, failed)
    });
    let counts = futures::future::join_all(writers).await;
    let after = system.term(http, 0).await.unwrap_or(0);
    let ok: u64 = counts.iter().map(|c| c.0).sum();
    let failed: u64 = counts.iter().map(|c| c.1).sum();
    (ok / secs.max(1), failed, (after - before) as usize)
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

async fn measure<S: System + Sync>(mut system: S, trials: usize, steady_secs: u64) -> Vec<f64> {
    let http = reqwest::Client::builder()
        .no_proxy()
        .tcp_nodelay(true)
        .build()
        .expect("http client");
    if steady_secs > 0 {
        let (rate, failed, elections) = steady_load(&system, &http, 64, steady_secs).await;
        println!(
            "{} steady load, 64 writers for {steady_secs} s: {rate} writes/s, {failed} failed, \
             {elections} election(s)",
            system.name()
        );
    }
    let mut times = Vec::new();
    for t in 1..=trials {
        let took = trial(&mut system, &http).await.as_secs_f64() * 1e3;
        println!("{} trial {t}: {took:.0} ms", system.name());
        times.push(took);
    }
    times
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    // `cargo test --benches` runs bench targets without `--bench`: do nothing then.
    if !args.iter().any(|a| a == "--bench") {
        return;
    }
    let value = |flag: &str| {
        args.iter()
            .position(|a| a == flag)
            .and_then(|i| args.get(i + 1))
            .cloned()
    };
    let trials: usize = value("--trials").and_then(|t| t.parse().ok()).unwrap_or(5);
    let system = value("--system").unwrap_or_else(|| "both".to_string());
    let election = value("--election");
    let steady: u64 = value("--steady").and_then(|s| s.parse().ok()).unwrap_or(20);
    let binary = licensed_testkit::licensed_binary().unwrap_or_else(|e| panic!("{e}"));
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let mut summary = Vec::new();
    if system == "both" || system == "licensed" {
        let dir = tempfile::tempdir().expect("temp dir");
        // Spawned inside the runtime (the kit's processes are tokio's), on this thread.
        let mut times = runtime.block_on(async {
            let cluster = Licensed::start(dir.path(), &binary, election.as_deref());
            measure(cluster, trials, steady).await
        });
        let election = election.unwrap_or_else(|| "server default".to_string());
        summary.push(format!(
            "licensed (election {election} ms): median {:.0} ms over {trials} trials {times:.0?}",
            median(&mut times)
        ));
    }
    if system == "both" || system == "etcd" {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut times = runtime.block_on(async {
            let cluster = Etcd::start(dir.path());
            measure(cluster, trials, steady).await
        });
        summary.push(format!(
            "etcd (defaults): median {:.0} ms over {trials} trials {times:.0?}",
            median(&mut times)
        ));
    }
    for line in summary {
        println!("{line}");
    }
}
