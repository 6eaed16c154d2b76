//! The nemesis: injects one fault at a time into the running cluster, holds it, heals it,
//! and records both moments in the history. Every fault is real at the OS or network
//! level: signals to processes, proxies on the node-to-node links, a full tmpfs, a
//! shifted wall clock (libfaketime), crash points compiled into the server (`fail`).

use std::fmt;
use std::time::Duration;

use anyhow::{anyhow, bail, Context};
use rand::rngs::StdRng;
use rand::seq::SliceRandom;

use crate::cluster::{name, ChaosCluster};
use crate::history::{FaultEvent, HistoryRecorder};
use crate::proxy::Fault;
use crate::workload::Targets;

/// The server's crash points (see `fail::fail_point!` in the log and state machine stores).
pub const CRASH_POINTS: [&str; 7] = [
    "log-append-before",
    "log-append-after",
    "apply-before",
    "apply-after",
    "snapshot-build",
    "snapshot-install-before-persist",
    "snapshot-install-after-persist",
];

/// One kind of fault.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FaultKind {
    /// `kill -9` the leader, restart it after the hold.
    KillLeader,
    /// `kill -9` a random member, restart it after the hold.
    KillRandom,
    /// SIGSTOP a random member, SIGCONT after the hold.
    Pause,
    /// Blackhole every link of the leader: it is a minority of one.
    IsolateLeader,
    /// Blackhole every link of a random follower.
    IsolateNode,
    /// The leader's bytes no longer reach one follower; the follower's still reach it.
    OneWayCut,
    /// 20–60 ms more per chunk on every link.
    Delay,
    /// Connections on every link are reset with some probability per chunk.
    Drop,
    /// Isolate a follower until the leader's log is compacted past it, so it must catch
    /// up from a snapshot.
    PartitionUntilSnapshot,
    /// SIGTERM and restart every member, one at a time.
    RollingRestart,
    /// Add a member and remove another while every link is slowed down.
    MembershipChange,
    /// A follower's data dir is wiped: it is removed and rejoins as a new member.
    WipeRejoin,
    /// Restart a member with a crash point armed; it crashes there; restart it clean.
    CrashPoint(&'static str),
    /// A member's wall clock runs 10 minutes behind, and it becomes the leader.
    ClockSkew,
    /// The member on a small tmpfs finds its disk full.
    DiskFull,
}

impl fmt::Display for FaultKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let text = match self {
            FaultKind::KillLeader => "kill-leader",
            FaultKind::KillRandom => "kill-random",
            FaultKind::Pause => "pause",
            FaultKind::IsolateLeader => "isolate-leader",
            FaultKind::IsolateNode => "isolate-node",
            FaultKind::OneWayCut => "one-way-cut",
            FaultKind::Delay => "delay",
            FaultKind::Drop => "drop",
            FaultKind::PartitionUntilSnapshot => "partition-until-snapshot",
            FaultKind::RollingRestart => "rolling-restart",
            FaultKind::MembershipChange => "membership-change",
            FaultKind::WipeRejoin => "wipe-rejoin",
            FaultKind::CrashPoint(point) => return write!(f, "crash-point:{point}"),
            FaultKind::ClockSkew => "clock-skew",
            FaultKind::DiskFull => "disk-full",
        };
        f.write_str(text)
    }
}

impl FaultKind {
    /// Every kind, crash points included: the short profile runs each once.
    pub fn all() -> Vec<FaultKind> {
        let mut kinds = vec![
            FaultKind::KillLeader,
            FaultKind::KillRandom,
            FaultKind::Pause,
            FaultKind::IsolateLeader,
            FaultKind::IsolateNode,
            FaultKind::OneWayCut,
            FaultKind::Delay,
            FaultKind::Drop,
            FaultKind::PartitionUntilSnapshot,
            FaultKind::RollingRestart,
            FaultKind::MembershipChange,
            FaultKind::WipeRejoin,
            FaultKind::ClockSkew,
            FaultKind::DiskFull,
        ];
        kinds.extend(CRASH_POINTS.iter().map(|p| FaultKind::CrashPoint(p)));
        kinds
    }

    /// Parses a name as [`fmt::Display`] writes it.
    pub fn parse(text: &str) -> Option<FaultKind> {
        FaultKind::all().into_iter().find(|k| k.to_string() == text)
    }
}

/// What one fault did, for the report.
#[derive(Debug, Clone, serde::Serialize)]
pub struct FaultRecord {
    /// The fault.
    pub kind: String,
    /// What it hit.
    pub target: String,
    /// Seconds since the run started, injected and healed.
    pub start_s: f64,
    /// Healed.
    pub end_s: f64,
    /// Seconds from the heal until every member was ready again.
    pub ready_after_s: Option<f64>,
    /// What happened beyond the plan (e.g. "snapshot installed at 2400").
    pub note: String,
}

/// Injects faults into one cluster.
pub struct Nemesis<'a> {
    /// The cluster.
    pub cluster: &'a mut ChaosCluster,
    /// Where faults are recorded.
    pub recorder: HistoryRecorder,
    /// Randomness (seeded).
    pub rng: StdRng,
    /// How long a fault is held.
    pub hold: Duration,
    /// The nodes the workload uses.
    pub targets: Targets,
    /// What the current fault's injection record named as its target.
    pub injected_target: Option<String>,
}

impl Nemesis<'_> {
    /// Injects `kind`, holds it, heals it, waits for the cluster to be ready again.
    pub async fn run(&mut self, kind: &FaultKind) -> anyhow::Result<FaultRecord> {
        let start = self.recorder.now();
        let label = kind.to_string();
        // The target is known only once the fault picked it; record the injection with a
        // provisional target and the healed record with the real one.
        let (target, note) = self
            .inject_hold_heal(kind, start, &label)
            .await
            .with_context(|| format!("fault {label}"))?;
        let end = self.recorder.now();
        self.recorder.fault(FaultEvent {
            kind: label.clone(),
            // The heal must name the fault exactly as the injection did, or the two
            // records would not pair up.
            target: self
                .injected_target
                .take()
                .unwrap_or_else(|| target.clone()),
            start,
            end: Some(end),
        });
        self.cluster.revive_all().await?;
        let ready = self.cluster.wait_healthy(Duration::from_secs(90)).await;
        let ready_at = self.recorder.now();
        Ok(FaultRecord {
            kind: label,
            target,
            start_s: start as f64 / 1e9,
            end_s: end as f64 / 1e9,
            ready_after_s: ready.then(|| (ready_at - end) as f64 / 1e9),
            note,
        })
    }

    fn injected(&mut self, label: &str, target: &str, start: u64) {
        self.injected_target = Some(target.to_string());
        self.recorder.fault(FaultEvent {
            kind: label.to_string(),
            target: target.to_string(),
            start,
            end: None,
        });
    }

    async fn leader(&mut self) -> anyhow::Result<u64> {
        self.cluster
            .wait_leader(Duration::from_secs(30))
            .await
            .ok_or_else(|| anyhow!("no leader"))
    }

    async fn follower(&mut self) -> anyhow::Result<u64> {
        let leader = self.leader().await?;
        let followers: Vec<u64> = self
            .cluster
            .ids()
            .into_iter()
            .filter(|id| *id != leader)
            .collect();
        followers
            .choose(&mut self.rng)
            .copied()
            .ok_or_else(|| anyhow!("no follower"))
    }

    /// A follower that may leave the cluster for good: not the one on the tmpfs, which
    /// the full-disk fault needs, nor `keep` (a node just added).
    async fn removable_follower(&mut self, keep: Option<u64>) -> anyhow::Result<u64> {
        let leader = self.leader().await?;
        let candidates: Vec<u64> = self
            .cluster
            .nodes
            .iter()
            .filter(|(id, node)| {
                **id != leader && Some(**id) != keep && node.spec().tmpfs_bytes.is_none()
            })
            .map(|(id, _)| *id)
            .collect();
        candidates
            .choose(&mut self.rng)
            .copied()
            .ok_or_else(|| anyhow!("no removable follower"))
    }

    async fn inject_hold_heal(
        &mut self,
        kind: &FaultKind,
        start: u64,
        label: &str,
    ) -> anyhow::Result<(String, String)> {
        let hold = self.hold;
        match kind {
            FaultKind::KillLeader | FaultKind::KillRandom => {
                let id = if *kind == FaultKind::KillLeader {
                    self.leader().await?
                } else {
                    *self
                        .cluster
                        .ids()
                        .choose(&mut self.rng)
                        .ok_or_else(|| anyhow!("no member"))?
                };
                self.injected(label, &name(id), start);
                self.cluster.node(id)?.kill9().await?;
                tokio::time::sleep(hold).await;
                self.cluster.node(id)?.start().await?;
                Ok((name(id), String::new()))
            }
            FaultKind::Pause => {
                let id = *self
                    .cluster
                    .ids()
                    .choose(&mut self.rng)
                    .ok_or_else(|| anyhow!("no member"))?;
                self.injected(label, &name(id), start);
                self.cluster.node(id)?.sigstop()?;
                tokio::time::sleep(hold).await;
                self.cluster.node(id)?.sigcont()?;
                Ok((name(id), String::new()))
            }
            FaultKind::IsolateLeader | FaultKind::IsolateNode => {
                let id = if *kind == FaultKind::IsolateLeader {
                    self.leader().await?
                } else {
                    self.follower().await?
                };
                self.injected(label, &name(id), start);
                self.cluster.mesh.isolate(id);
                tokio::time::sleep(hold).await;
                self.cluster.mesh.heal();
                Ok((name(id), String::new()))
            }
            FaultKind::OneWayCut => {
                let leader = self.leader().await?;
                let follower = self.follower().await?;
                let target = format!("{}->{}", name(leader), name(follower));
                self.injected(label, &target, start);
                self.cluster.mesh.cut_one_way(leader, follower);
                tokio::time::sleep(hold).await;
                self.cluster.mesh.heal();
                Ok((target, String::new()))
            }
            FaultKind::Delay | FaultKind::Drop => {
                let fault = if *kind == FaultKind::Delay {
                    Fault::Delay {
                        base: Duration::from_millis(20),
                        jitter: Duration::from_millis(40),
                    }
                } else {
                    Fault::Drop { probability: 0.02 }
                };
                self.injected(label, "all links", start);
                self.cluster.mesh.set_all(fault);
                tokio::time::sleep(hold).await;
                self.cluster.mesh.heal();
                Ok(("all links".into(), String::new()))
            }
            FaultKind::PartitionUntilSnapshot => {
                let id = self.follower().await?;
                self.injected(label, &name(id), start);
                let note = self.partition_until_snapshot(id, None).await?;
                Ok((name(id), note))
            }
            FaultKind::CrashPoint(point) => self.crash_point(point, start, label).await,
            FaultKind::RollingRestart => {
                self.injected(label, "all", start);
                for id in self.cluster.ids() {
                    let node = self.cluster.node(id)?;
                    node.sigterm_and_wait(Duration::from_secs(15)).await?;
                    node.start().await?;
                    if !self.cluster.wait_healthy(Duration::from_secs(60)).await {
                        bail!("not ready after restarting {}", name(id));
                    }
                }
                Ok(("all".into(), String::new()))
            }
            FaultKind::MembershipChange => {
                self.injected(label, "all links slow", start);
                self.cluster.mesh.set_all(Fault::Delay {
                    base: Duration::from_millis(10),
                    jitter: Duration::from_millis(20),
                });
                let added = self.cluster.add_node().await;
                let removed = match &added {
                    Ok(new) => {
                        let old = self.removable_follower(Some(*new)).await?;
                        self.cluster.remove_node(old).await.map(|_| old)
                    }
                    Err(e) => Err(anyhow!("{e:#}")),
                };
                self.cluster.mesh.heal();
                let (added, removed) = (added?, removed?);
                Ok((
                    format!("+{} -{}", name(added), name(removed)),
                    String::new(),
                ))
            }
            FaultKind::WipeRejoin => {
                let id = self.removable_follower(None).await?;
                self.injected(label, &name(id), start);
                let mut node = self.cluster.remove_node(id).await?;
                node.wipe_data_dir()?;
                drop(node);
                let new = self.cluster.add_node().await?;
                Ok((
                    format!("{} as {}", name(id), name(new)),
                    "rejoined as a new member".into(),
                ))
            }
            FaultKind::ClockSkew => {
                let id = self.follower().await?;
                self.injected(label, &name(id), start);
                let live = self.cluster.node(id)?.set_clock_offset(-600)?;
                if !live {
                    self.cluster.node(id)?.restart().await?;
                }
                // Let the skewed node lead, so it stamps borrows with a clock 10 minutes
                // behind the ledger's.
                tokio::time::sleep(Duration::from_millis(1_500)).await;
                let via = self.leader().await?;
                let moved = self
                    .cluster
                    .node(via)?
                    .transfer_leader(id, Duration::from_secs(10))
                    .await
                    .map(|_| "the skewed node led".to_string())
                    .unwrap_or_else(|e| format!("transfer failed: {e}"));
                tokio::time::sleep(hold).await;
                let live = self.cluster.node(id)?.set_clock_offset(0)?;
                if !live {
                    self.cluster.node(id)?.restart().await?;
                }
                Ok((name(id), moved))
            }
            FaultKind::DiskFull => {
                let id = self
                    .cluster
                    .nodes
                    .iter()
                    .find(|(_, node)| node.spec().tmpfs_bytes.is_some())
                    .map(|(id, _)| *id)
                    .ok_or_else(|| anyhow!("no member runs on a tmpfs"))?;
                self.injected(label, &name(id), start);
                let filled = self.cluster.node(id)?.fill_disk()?;
                tokio::time::sleep(hold).await;
                self.cluster.node(id)?.free_disk()?;
                let node = self.cluster.node(id)?;
                let survived = node.is_running();
                // A store that failed a write stops its Raft core: restart it.
                node.restart().await?;
                Ok((
                    name(id),
                    format!(
                        "filled {} KiB; the node {}",
                        filled / 1024,
                        if survived { "kept running" } else { "exited" }
                    ),
                ))
            }
        }
    }

    /// Isolates `id` until the leader has compacted its log past what `id` holds, then
    /// heals. With `crash`, `id` is restarted with that crash point armed before the
    /// heal, so it crashes while installing the snapshot, and is then restarted clean.
    async fn partition_until_snapshot(
        &mut self,
        id: u64,
        crash: Option<&str>,
    ) -> anyhow::Result<String> {
        if let Some(point) = crash {
            // Armed while connected: an isolated node never reports ready. The point is
            // only on the snapshot install path, which nothing takes before the heal.
            let node = self.cluster.node(id)?;
            node.set_env("FAILPOINTS", Some(&format!("{point}=panic")));
            node.restart().await?;
        }
        let behind_at = self
            .cluster
            .node(id)?
            .status()
            .await?
            .last_log_index
            .unwrap_or(0);
        self.cluster.mesh.isolate(id);
        // Clients behind a health-checking balancer stop using the cut-off node; without
        // that, every client soon waits on it and the log barely grows.
        self.targets.set(
            self.cluster
                .targets()
                .into_iter()
                .filter(|(node, _)| *node != name(id))
                .collect(),
        );
        // Until the leader has compacted its log past what the cut-off node holds: from
        // then on it can only send that node a snapshot.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
        let (mut snapshot, mut purged) = (0, 0);
        while purged <= behind_at {
            if tokio::time::Instant::now() >= deadline {
                bail!("the leader never compacted past index {behind_at} (purged up to {purged})");
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
            let leader = self.leader().await?;
            let status = self.cluster.node(leader)?.status().await?;
            snapshot = status.snapshot.unwrap_or(0);
            purged = status.purged.unwrap_or(0);
        }
        self.cluster.mesh.heal();
        self.targets.set(self.cluster.targets());
        let mut note = format!(
            "node was at {behind_at}, leader purged up to {purged}, snapshot at {snapshot}"
        );
        if crash.is_some() {
            // Wait for the armed node to crash on the snapshot, then restart it clean.
            let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
            let node = self.cluster.node(id)?;
            while node.is_running() && tokio::time::Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            let crashed = !node.is_running();
            node.set_env("FAILPOINTS", None);
            node.restart().await?;
            note.push_str(if crashed {
                "; crashed at the crash point, restarted clean"
            } else {
                "; the crash point was not reached (no snapshot was sent: the node caught up from the log)"
            });
        }
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        loop {
            let installed = self
                .cluster
                .node(id)?
                .status()
                .await
                .ok()
                .and_then(|s| s.snapshot.filter(|at| *at >= snapshot.saturating_sub(1)));
            if let Some(at) = installed {
                note.push_str(&format!("; its snapshot is now at {at}"));
                return Ok(note);
            }
            if tokio::time::Instant::now() >= deadline {
                note.push_str("; its snapshot did not reach the leader's within 60 s");
                return Ok(note);
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Arms `point` on a member (the leader for the log and apply points, so it is
    /// sure to pass there), waits for the crash, restarts it clean.
    async fn crash_point(
        &mut self,
        point: &'static str,
        start: u64,
        label: &str,
    ) -> anyhow::Result<(String, String)> {
        if point.starts_with("snapshot-install") {
            let id = self.follower().await?;
            self.injected(label, &name(id), start);
            let note = self.partition_until_snapshot(id, Some(point)).await?;
            return Ok((name(id), note));
        }
        // A follower appends and applies too; any member builds snapshots.
        let id = self.follower().await?;
        self.injected(label, &name(id), start);
        let node = self.cluster.node(id)?;
        node.set_env("FAILPOINTS", Some(&format!("{point}=panic")));
        // Replaying the log at start may already pass the point: then the start fails.
        let started = node.restart().await.is_ok();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        while started && node.is_running() && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let crashed = !node.is_running();
        node.set_env("FAILPOINTS", None);
        node.restart().await?;
        Ok((
            name(id),
            if crashed {
                "crashed at the crash point, restarted clean".into()
            } else {
                "the crash point was not reached within 60 s".into()
            },
        ))
    }
}
