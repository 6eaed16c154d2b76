//! One chaos run: start a cluster, run the workload, inject the profile's faults one after
//! another, heal, take the final reads on every node, check the history, report.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use licensed::client::RpcClient;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::SeedableRng;
use serde::Serialize;

use crate::checker::{check_recorded, CheckConfig, CheckReport};
use crate::cluster::{name, ChaosCluster, ClusterConfig};
use crate::history::{NodeFinalRead, OpKind, OpResult};
use crate::nemesis::{FaultKind, FaultRecord, Nemesis};
use crate::workload::{self, Acknowledged, Targets, WorkloadConfig};

/// Entries between snapshots in chaos runs: small, so snapshots, compaction and snapshot
/// installs happen often.
pub const SNAPSHOT_EVERY: u64 = 300;
/// Ids beyond the first voters that joining nodes may take (and give back).
const SPARE_IDS: usize = 2;
/// Size of the tmpfs data dir of the node that gets the full-disk fault.
const TMPFS_BYTES: u64 = 256 * 1024 * 1024;

/// What a run does.
#[derive(Debug, Clone)]
pub struct RunConfig {
    /// Voters at the start.
    pub nodes: usize,
    /// Concurrent clients.
    pub clients: usize,
    /// The faults, in order; with `duration`, random picks from this list until it ends.
    pub faults: Vec<FaultKind>,
    /// Run random faults from `faults` for this long instead of each once.
    pub duration: Option<Duration>,
    /// How long each fault is held.
    pub hold: Duration,
    /// Quiet time between faults.
    pub gap: Duration,
    /// Seed of every random choice (workload and nemesis).
    pub seed: u64,
    /// The `licensed` executable.
    pub binary: PathBuf,
    /// Where data dirs, logs, the history and the report go.
    pub out: PathBuf,
    /// Run the server in a deliberately broken mode (`LICENSED_BROKEN`), e.g. `stale-reads`.
    pub broken: Option<String>,
    /// Put the data dirs on the power-loss file system (needed by the power cuts; on
    /// whenever they are among `faults`).
    pub power_loss: bool,
    /// Make this fault kind ineffective on purpose: the run must then fail, naming it.
    pub sabotage: Option<String>,
}

impl RunConfig {
    /// A run of `faults` with the short profile's timings and no mutant.
    pub fn new(binary: PathBuf, out: PathBuf, faults: Vec<FaultKind>, seed: u64) -> RunConfig {
        RunConfig {
            nodes: 3,
            clients: 8,
            faults,
            duration: None,
            hold: Duration::from_secs(3),
            gap: Duration::from_secs(1),
            seed,
            binary,
            out,
            broken: None,
            power_loss: false,
            sabotage: None,
        }
    }
}

/// What a run found.
#[derive(Debug, Serialize)]
pub struct RunReport {
    /// The seed, to reproduce the run.
    pub seed: u64,
    /// Wall time of the run, seconds.
    pub seconds: f64,
    /// Every fault injected, in order.
    pub faults: Vec<FaultRecord>,
    /// Faults per kind.
    pub fault_kinds: BTreeMap<String, usize>,
    /// Faults per kind that were verified to have taken effect.
    pub verified_kinds: BTreeMap<String, usize>,
    /// Faults that did not take effect, each naming the fault and what was missing.
    pub ineffective: Vec<String>,
    /// The history file.
    pub history: PathBuf,
    /// The checks.
    pub check: CheckReport,
    /// Whether the run passed every check.
    pub passed: bool,
}

impl std::fmt::Display for RunReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "chaos run: seed {}, {:.0} s, history {}",
            self.seed,
            self.seconds,
            self.history.display()
        )?;
        writeln!(f, "faults injected: {}", self.faults.len())?;
        for (kind, n) in &self.fault_kinds {
            let verified = self.verified_kinds.get(kind).copied().unwrap_or(0);
            writeln!(f, "  {kind:<36} x{n}  verified effective x{verified}")?;
        }
        for fault in &self.faults {
            writeln!(
                f,
                "  {:>7.1}s {:<36} {:<14} ready {} after heal  {}",
                fault.start_s,
                fault.kind,
                fault.target,
                fault
                    .ready_after_s
                    .map_or_else(|| "never".to_string(), |s| format!("{s:.1}s")),
                fault.note
            )?;
            writeln!(f, "           verified: {}", fault.verified.join("; "))?;
        }
        for reason in &self.ineffective {
            writeln!(f, "INEFFECTIVE FAULT: {reason}")?;
        }
        write!(f, "{}", self.check)?;
        writeln!(
            f,
            "result: {}",
            if self.passed { "PASSED" } else { "FAILED" }
        )
    }
}

/// The checks' settings for a history of `ops` operations: the linearizability search
/// gets a budget that grows with the history (a 30-minute run has ~150 000 operations
/// per license).
pub fn check_config(ops: usize) -> CheckConfig {
    let defaults = CheckConfig::default();
    CheckConfig {
        search_budget: defaults.search_budget.max(ops as u64 * 100),
        ..defaults
    }
}

/// Runs one chaos run end to end.
pub async fn run(config: RunConfig) -> anyhow::Result<RunReport> {
    let started = Instant::now();
    // A cluster dir from an earlier run would bring its ledger into this one.
    anyhow::ensure!(
        !config.out.join("cluster").exists(),
        "{} holds an earlier run: choose another --out or remove it",
        config.out.display()
    );
    let needs_chaos_build =
        config.broken.is_some() || config.faults.iter().any(FaultKind::needs_chaos_build);
    if needs_chaos_build {
        let version = std::process::Command::new(&config.binary)
            .arg("--version")
            .output()
            .with_context(|| format!("running {} --version", config.binary.display()))?;
        anyhow::ensure!(
            String::from_utf8_lossy(&version.stdout).contains("failpoints"),
            "{} is not a chaos build (crash points need the `failpoints` feature): \
             build it with `cargo build --workspace`",
            config.binary.display()
        );
    }
    std::fs::create_dir_all(&config.out)?;
    let history_path = config.out.join("history.jsonl");
    let recorder = crate::history::HistoryRecorder::create(&history_path)?;
    let licenses = workload::default_licenses();
    for license in &licenses {
        recorder.license(&license.key(), license.count);
    }
    let mut env = vec![(
        "RUST_LOG".to_string(),
        std::env::var("CHAOS_NODE_LOG").unwrap_or_else(|_| "warn".to_string()),
    )];
    if let Some(mode) = &config.broken {
        env.push(("LICENSED_BROKEN".to_string(), mode.clone()));
    }
    let needs = |kind: &FaultKind| config.faults.contains(kind);
    let mut cluster = ChaosCluster::start(ClusterConfig {
        size: config.nodes,
        binary: config.binary.clone(),
        dir: config.out.join("cluster"),
        pool: workload::pool_json(&licenses),
        args: vec![
            "--request-timeout-ms".into(),
            "2000".into(),
            "--snapshot-every".into(),
            SNAPSHOT_EVERY.to_string(),
        ],
        env,
        spare_ids: SPARE_IDS,
        tmpfs_node: needs(&FaultKind::DiskFull).then_some((config.nodes as u64, TMPFS_BYTES)),
        faketime: config.faults.iter().any(FaultKind::needs_faketime),
        power_loss: config.power_loss || config.faults.iter().any(FaultKind::needs_power_loss),
    })
    .await
    .context("starting the cluster")?;

    let targets = Targets::default();
    targets.set(cluster.targets());
    let stop = Arc::new(AtomicBool::new(false));
    let acknowledged = Acknowledged::default();
    let workload = tokio::spawn(workload::run(
        WorkloadConfig {
            clients: config.clients,
            licenses: licenses.clone(),
            call_timeout: Duration::from_secs(3),
            attempts: 3,
            think: Duration::from_millis(2),
            seed: config.seed,
        },
        targets.clone(),
        recorder.clone(),
        stop.clone(),
        acknowledged.clone(),
    ));

    let outcome = nemesis_phase(&config, &mut cluster, &recorder, &targets).await;
    stop.store(true, Ordering::Relaxed);
    workload.await??;
    let faults = outcome?;

    // Heal everything, then read every borrow back from every member.
    cluster.mesh.heal();
    cluster.heal_clients();
    cluster.revive_all().await?;
    if !cluster.wait_healthy(Duration::from_secs(120)).await {
        tracing::warn!("the cluster was not ready 120 s after the last heal");
    }
    final_reads(&cluster, &recorder, &acknowledged.all()).await?;
    let history = recorder.finish()?;
    cluster.shutdown().await;

    let check = check_recorded(&history, &check_config(history.ops.len()));
    let mut fault_kinds = BTreeMap::new();
    let mut verified_kinds = BTreeMap::new();
    let mut ineffective = Vec::new();
    for fault in &faults {
        *fault_kinds.entry(fault.kind.clone()).or_insert(0) += 1;
        match &fault.ineffective {
            None => *verified_kinds.entry(fault.kind.clone()).or_insert(0) += 1,
            Some(reason) => ineffective.push(format!("{:.1}s {reason}", fault.start_s)),
        }
    }
    let report = RunReport {
        seed: config.seed,
        seconds: started.elapsed().as_secs_f64(),
        passed: check.passed() && ineffective.is_empty(),
        faults,
        fault_kinds,
        verified_kinds,
        ineffective,
        history: history_path,
        check,
    };
    std::fs::write(
        config.out.join("report.json"),
        serde_json::to_string_pretty(&report)?,
    )?;
    Ok(report)
}

async fn nemesis_phase(
    config: &RunConfig,
    cluster: &mut ChaosCluster,
    recorder: &crate::history::HistoryRecorder,
    targets: &Targets,
) -> anyhow::Result<Vec<FaultRecord>> {
    let mut rng = StdRng::seed_from_u64(config.seed ^ 0x006e_656d_6573_6973);
    // Let the workload build some state first.
    tokio::time::sleep(config.gap).await;
    let schedule: Box<dyn Iterator<Item = FaultKind>> = match config.duration {
        None => Box::new(config.faults.clone().into_iter()),
        Some(_) => {
            let faults = config.faults.clone();
            let mut pick = StdRng::seed_from_u64(config.seed.wrapping_mul(31));
            Box::new(std::iter::repeat_with(move || {
                faults
                    .choose(&mut pick)
                    .cloned()
                    .unwrap_or(FaultKind::KillLeader)
            }))
        }
    };
    let deadline = config.duration.map(|d| Instant::now() + d);
    let mut records = Vec::new();
    for kind in schedule {
        if deadline.is_some_and(|d| Instant::now() >= d) {
            break;
        }
        let mut nemesis = Nemesis {
            cluster,
            recorder: recorder.clone(),
            rng: StdRng::seed_from_u64(rand::Rng::gen(&mut rng)),
            hold: config.hold,
            targets: targets.clone(),
            injected_target: None,
            sabotage: config.sabotage.clone(),
            verification: Default::default(),
        };
        let record = nemesis.run(&kind).await?;
        tracing::info!(kind = %record.kind, target = %record.target, note = %record.note, "fault healed");
        if let Some(reason) = &record.ineffective {
            eprintln!("INEFFECTIVE FAULT: {reason}");
        }
        eprintln!(
            "[{:>7.1}s] {} on {} healed; ready after {}  {}",
            record.start_s,
            record.kind,
            record.target,
            record
                .ready_after_s
                .map_or_else(|| "never".to_string(), |s| format!("{s:.1}s")),
            record.note
        );
        records.push(record);
        targets.set(cluster.targets());
        tokio::time::sleep(config.gap).await;
    }
    Ok(records)
}

/// Reads every acknowledged borrow and the license list from every member.
async fn final_reads(
    cluster: &ChaosCluster,
    recorder: &crate::history::HistoryRecorder,
    acknowledged: &[String],
) -> anyhow::Result<()> {
    let http = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(10))
        .build()?;
    for (id, url) in cluster.direct_targets() {
        let client = RpcClient::with_http_client(&url, http.clone())?;
        let mut read = NodeFinalRead::new(&name(id));
        for chunk in acknowledged.chunks(32) {
            let answers = futures::future::join_all(chunk.iter().map(|borrow_id| {
                let client = &client;
                async move {
                    let kind = OpKind::Get {
                        borrow_id: borrow_id.clone(),
                    };
                    let invoke = recorder.now();
                    let result = match client.get_borrowed_license(borrow_id).await {
                        Ok(answer) => OpResult::borrowed(&kind, &answer),
                        Err(error) => OpResult::from_error(&kind, &error),
                    };
                    (borrow_id.clone(), invoke, recorder.now(), result)
                }
            }))
            .await;
            for (borrow_id, invoke, complete, result) in answers {
                read.record_get(&borrow_id, invoke, complete, result);
            }
        }
        let invoke = recorder.now();
        let list = match client.list_licenses().await {
            Ok(licenses) => OpResult::listed(&licenses),
            Err(error) => OpResult::from_error(&OpKind::List, &error),
        };
        read.record_list(invoke, recorder.now(), list);
        recorder.final_read(read);
    }
    Ok(())
}
