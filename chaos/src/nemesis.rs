//! The nemesis: injects one fault at a time (some kinds are two faults at once) into the
//! running cluster, holds it, heals it, and records both moments in the history. Every
//! fault is real at the OS or network level: signals to processes, proxies on every link
//! (node to node and client to node), a full tmpfs, a shifted wall clock (libfaketime),
//! crash points compiled into the server (`fail`), a power cut on a file system that
//! drops what was not fsynced.
//!
//! Every fault is verified to have taken effect (see [`Verification`]): bytes discarded on
//! the target's links, the process really exited, leadership really moved, a snapshot
//! really installed on the target, a write really hit ENOSPC, the crash point really
//! fired, the skewed node really led, the power cut really dropped data. A fault that did
//! nothing fails the run, with a message naming it.

use std::fmt;
use std::time::Duration;

use anyhow::{anyhow, bail, Context};
use licensed_powerfs::CutMode;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::Rng;

use crate::cluster::{name, ChaosCluster};
use crate::history::{FaultEvent, HistoryRecorder};
use crate::proxy::{Direction, Fault};
use crate::workload::Targets;

/// The server's crash points: the list its failpoint route accepts, so a crash point the
/// server gains is injected too.
pub use licensed::cluster::admin::failpoints::KNOWN as CRASH_POINTS;

/// How long a fault on the leader may take to move leadership before it counts as
/// ineffective (election timeouts are well under this).
const LEADER_MOVES_WITHIN: Duration = Duration::from_secs(20);
/// How long an armed crash point may take to fire under load.
const CRASH_FIRES_WITHIN: Duration = Duration::from_secs(60);

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
    /// Clients' requests to one node are delivered, its answers are lost: clients time
    /// out and retry elsewhere with the same `requestId`.
    ClientReplyDrop,
    /// Isolate a follower until the leader's log is compacted past it, so it must catch
    /// up from a snapshot.
    PartitionUntilSnapshot,
    /// SIGTERM and restart every member, one at a time.
    RollingRestart,
    /// Add a member and remove another while every link is slowed down.
    MembershipChange,
    /// Add a member and remove another, links at full speed.
    MembershipChangeFast,
    /// A follower loses its data dir and comes back under its own id.
    WipeRejoin,
    /// Arm a crash point on a running member (the leader under load, or a follower about
    /// to install a snapshot); it crashes there; restart it clean.
    CrashPoint(&'static str),
    /// A follower's wall clock runs 10 minutes behind, and it is made the leader.
    ClockSkewBehind,
    /// A follower's wall clock runs 10 minutes ahead, and it is made the leader.
    ClockSkewAhead,
    /// The member on a small tmpfs finds its disk full.
    DiskFull,
    /// A power cut on one member: what it had not fsynced is lost.
    PowerCutNode,
    /// A power cut on every member on a power-loss file system at once, unsynced
    /// writes torn at a page boundary.
    PowerCutAll,
    /// Two at once: a follower isolated while a member is added and another removed.
    PartitionDuringMembershipChange,
    /// Two at once: the leader killed while a follower installs its snapshot.
    KillDuringSnapshotInstall,
    /// Two at once: a member paused while another's clock is skewed.
    PauseWhileSkewed,
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
            FaultKind::ClientReplyDrop => "client-reply-drop",
            FaultKind::PartitionUntilSnapshot => "partition-until-snapshot",
            FaultKind::RollingRestart => "rolling-restart",
            FaultKind::MembershipChange => "membership-change",
            FaultKind::MembershipChangeFast => "membership-change-fast",
            FaultKind::WipeRejoin => "wipe-rejoin",
            FaultKind::CrashPoint(point) => return write!(f, "crash-point:{point}"),
            FaultKind::ClockSkewBehind => "clock-skew-behind",
            FaultKind::ClockSkewAhead => "clock-skew-ahead",
            FaultKind::DiskFull => "disk-full",
            FaultKind::PowerCutNode => "power-cut-node",
            FaultKind::PowerCutAll => "power-cut-all",
            FaultKind::PartitionDuringMembershipChange => "partition+membership-change",
            FaultKind::KillDuringSnapshotInstall => "kill-leader+snapshot-install",
            FaultKind::PauseWhileSkewed => "pause+clock-skew",
        };
        f.write_str(text)
    }
}

impl FaultKind {
    /// Every kind, crash points and power cuts included: the short profile runs each once.
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
            FaultKind::ClientReplyDrop,
            FaultKind::PartitionUntilSnapshot,
            FaultKind::RollingRestart,
            FaultKind::MembershipChange,
            FaultKind::MembershipChangeFast,
            FaultKind::WipeRejoin,
            FaultKind::ClockSkewBehind,
            FaultKind::ClockSkewAhead,
            FaultKind::DiskFull,
            FaultKind::PowerCutNode,
            FaultKind::PowerCutAll,
            FaultKind::PartitionDuringMembershipChange,
            FaultKind::KillDuringSnapshotInstall,
            FaultKind::PauseWhileSkewed,
        ];
        kinds.extend(CRASH_POINTS.iter().map(|p| FaultKind::CrashPoint(p)));
        kinds
    }

    /// The power-loss profile's mix: power cuts, most of the time, between crashes and
    /// the faults that make a node fall behind (so a cut hits a log being caught up).
    pub fn power_loss_mix() -> Vec<FaultKind> {
        vec![
            FaultKind::PowerCutNode,
            FaultKind::PowerCutNode,
            FaultKind::PowerCutNode,
            FaultKind::PowerCutAll,
            FaultKind::PowerCutAll,
            FaultKind::PowerCutAll,
            FaultKind::KillLeader,
            FaultKind::IsolateNode,
            FaultKind::PartitionUntilSnapshot,
            FaultKind::CrashPoint("log-append-after"),
            FaultKind::CrashPoint("apply-after"),
            FaultKind::CrashPoint("snapshot-install-after-persist"),
        ]
    }

    /// Parses a name as [`fmt::Display`] writes it.
    pub fn parse(text: &str) -> Option<FaultKind> {
        FaultKind::all().into_iter().find(|k| k.to_string() == text)
    }

    /// Whether the kind needs data dirs on the power-loss file system.
    pub fn needs_power_loss(&self) -> bool {
        matches!(self, FaultKind::PowerCutNode | FaultKind::PowerCutAll)
    }

    /// Whether the kind needs the clocks under libfaketime.
    pub fn needs_faketime(&self) -> bool {
        matches!(
            self,
            FaultKind::ClockSkewBehind | FaultKind::ClockSkewAhead | FaultKind::PauseWhileSkewed
        )
    }

    /// Whether the kind needs a chaos build of the server.
    pub fn needs_chaos_build(&self) -> bool {
        matches!(self, FaultKind::CrashPoint(_))
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
    /// The evidence that the fault took effect.
    pub verified: Vec<String>,
    /// Why the fault is judged to have done nothing (the run fails), if it is.
    pub ineffective: Option<String>,
}

/// Evidence, gathered while a fault is held, that it did what it is meant to.
#[derive(Debug, Default)]
pub struct Verification {
    /// What was seen to happen.
    pub evidence: Vec<String>,
    /// What was meant to happen and was not seen.
    pub missing: Vec<String>,
}

impl Verification {
    /// Records that `what` held (`seen`) or did not.
    pub fn expect(&mut self, seen: bool, what: impl Into<String>) {
        let what = what.into();
        if seen {
            self.evidence.push(what);
        } else {
            self.missing.push(what);
        }
    }
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
    /// A fault kind made ineffective on purpose (its injection is skipped), to show that
    /// verification catches a fault that did nothing.
    pub sabotage: Option<String>,
    /// The current fault's verification.
    pub verification: Verification,
}

/// What a fault hit: the target's description and the nodes that must serve again.
struct Hit {
    target: String,
    nodes: Vec<u64>,
    note: String,
}

impl Hit {
    fn node(id: u64) -> Hit {
        Hit {
            target: name(id),
            nodes: vec![id],
            note: String::new(),
        }
    }

    fn note(mut self, note: impl Into<String>) -> Hit {
        self.note = note.into();
        self
    }
}

impl Nemesis<'_> {
    /// Injects `kind`, holds it, heals it, waits for the cluster to be ready again.
    pub async fn run(&mut self, kind: &FaultKind) -> anyhow::Result<FaultRecord> {
        let start = self.recorder.now();
        let label = kind.to_string();
        self.verification = Verification::default();
        // The target is known only once the fault picked it; record the injection with a
        // provisional target and the healed record with the real one.
        let hit = self
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
                .unwrap_or_else(|| hit.target.clone()),
            start,
            end: Some(end),
            nodes: hit.nodes.iter().map(|id| name(*id)).collect(),
        });
        self.cluster.revive_all().await?;
        let ready = self.cluster.wait_healthy(Duration::from_secs(90)).await;
        let ready_at = self.recorder.now();
        let verification = std::mem::take(&mut self.verification);
        let ineffective = (!verification.missing.is_empty()).then(|| {
            format!(
                "{label} on {} did not take effect: {}",
                hit.target,
                verification.missing.join("; ")
            )
        });
        Ok(FaultRecord {
            kind: label,
            target: hit.target,
            start_s: start as f64 / 1e9,
            end_s: end as f64 / 1e9,
            ready_after_s: ready.then(|| (ready_at - end) as f64 / 1e9),
            note: hit.note,
            verified: verification.evidence,
            ineffective,
        })
    }

    fn injected(&mut self, label: &str, target: &str, start: u64) {
        self.injected_target = Some(target.to_string());
        self.recorder.fault(FaultEvent {
            kind: label.to_string(),
            target: target.to_string(),
            start,
            end: None,
            nodes: Vec::new(),
        });
    }

    /// Whether this fault's injection is to be skipped on purpose.
    fn sabotaged(&self, label: &str) -> bool {
        self.sabotage.as_deref() == Some(label)
    }

    fn expect(&mut self, seen: bool, what: impl Into<String>) {
        self.verification.expect(seen, what);
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

    fn any_member(&mut self) -> anyhow::Result<u64> {
        self.cluster
            .ids()
            .choose(&mut self.rng)
            .copied()
            .ok_or_else(|| anyhow!("no member"))
    }

    /// A follower that may lose its data or leave the cluster: not the one on the tmpfs,
    /// which the full-disk fault needs, nor `keep` (a node just added or cut off).
    async fn removable_follower(&mut self, keep: &[u64]) -> anyhow::Result<u64> {
        let leader = self.leader().await?;
        let candidates: Vec<u64> = self
            .cluster
            .nodes
            .iter()
            .filter(|(id, node)| {
                **id != leader && !keep.contains(id) && node.spec().tmpfs_bytes.is_none()
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
    ) -> anyhow::Result<Hit> {
        let hold = self.hold;
        let sabotaged = self.sabotaged(label);
        match kind {
            FaultKind::KillLeader | FaultKind::KillRandom => {
                let id = if *kind == FaultKind::KillLeader {
                    self.leader().await?
                } else {
                    self.any_member()?
                };
                self.injected(label, &name(id), start);
                let moved = self
                    .kill_and_hold(id, sabotaged, *kind == FaultKind::KillLeader)
                    .await?;
                Ok(Hit::node(id).note(moved))
            }
            FaultKind::Pause => {
                let id = self.any_member()?;
                self.injected(label, &name(id), start);
                if !sabotaged {
                    self.cluster.node(id)?.sigstop()?;
                }
                let stopped = self.wait_stopped(id).await?;
                self.expect(stopped, "the process is stopped (state T)");
                tokio::time::sleep(hold).await;
                self.cluster.node(id)?.sigcont()?;
                Ok(Hit::node(id))
            }
            FaultKind::IsolateLeader | FaultKind::IsolateNode => {
                let id = if *kind == FaultKind::IsolateLeader {
                    self.leader().await?
                } else {
                    self.follower().await?
                };
                self.injected(label, &name(id), start);
                let before = self.cluster.link_stats_around(id).bytes_discarded;
                if !sabotaged {
                    self.cluster.mesh.isolate(id);
                }
                let mut note = String::new();
                if *kind == FaultKind::IsolateLeader {
                    let moved = self.cluster.wait_new_leader(id, LEADER_MOVES_WITHIN).await;
                    self.expect(
                        moved.is_some(),
                        "leadership moved away from the isolated leader",
                    );
                    if let Some(new) = moved {
                        note = format!("{} took over", name(new));
                    }
                }
                tokio::time::sleep(hold).await;
                let discarded = self.cluster.link_stats_around(id).bytes_discarded - before;
                self.expect(
                    discarded > 0,
                    format!("{discarded} bytes discarded on the node's links"),
                );
                self.cluster.mesh.heal();
                Ok(Hit::node(id).note(note))
            }
            FaultKind::OneWayCut => {
                let leader = self.leader().await?;
                let follower = self.follower().await?;
                let target = format!("{}->{}", name(leader), name(follower));
                self.injected(label, &target, start);
                let discarded = |c: &ChaosCluster| {
                    c.mesh
                        .link(leader, follower)
                        .map_or(0, |p| p.stats().bytes_discarded)
                        + c.mesh
                            .link(follower, leader)
                            .map_or(0, |p| p.stats().bytes_discarded)
                };
                let before = discarded(self.cluster);
                if !sabotaged {
                    self.cluster.mesh.cut_one_way(leader, follower);
                }
                tokio::time::sleep(hold).await;
                let lost = discarded(self.cluster) - before;
                self.expect(
                    lost > 0,
                    format!("{lost} bytes from the leader to the follower discarded"),
                );
                self.cluster.mesh.heal();
                Ok(Hit {
                    target,
                    nodes: vec![leader, follower],
                    note: String::new(),
                })
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
                let before = self.cluster.link_stats_all();
                if !sabotaged {
                    self.cluster.mesh.set_all(fault);
                }
                tokio::time::sleep(hold).await;
                let after = self.cluster.link_stats_all();
                if *kind == FaultKind::Delay {
                    let n = after.chunks_delayed - before.chunks_delayed;
                    self.expect(n > 0, format!("{n} chunks delayed"));
                } else {
                    let n = after.resets - before.resets;
                    self.expect(n > 0, format!("{n} connections reset"));
                }
                self.cluster.mesh.heal();
                Ok(Hit {
                    target: "all links".into(),
                    nodes: self.cluster.ids(),
                    note: String::new(),
                })
            }
            FaultKind::ClientReplyDrop => {
                let id = self.any_member()?;
                self.injected(label, &name(id), start);
                let proxy_stats =
                    |c: &ChaosCluster| c.client_proxy(id).map(|p| p.stats()).unwrap_or_default();
                let before = proxy_stats(self.cluster);
                if !sabotaged {
                    if let Some(proxy) = self.cluster.client_proxy(id) {
                        proxy.set_fault(Fault::OneWay {
                            blocked: Direction::FromTarget,
                        });
                    }
                }
                tokio::time::sleep(hold).await;
                let after = proxy_stats(self.cluster);
                let delivered = after.bytes_to_target - before.bytes_to_target;
                let discarded = after.bytes_discarded - before.bytes_discarded;
                self.expect(
                    delivered > 0 && discarded > 0,
                    format!(
                        "{delivered} request bytes delivered, {discarded} answer bytes discarded"
                    ),
                );
                self.cluster.heal_clients();
                Ok(Hit::node(id))
            }
            FaultKind::PartitionUntilSnapshot => {
                let id = self.follower().await?;
                self.injected(label, &name(id), start);
                let note = self.partition_until_snapshot(id, None, false).await?;
                Ok(Hit::node(id).note(note))
            }
            FaultKind::CrashPoint(point) => self.crash_point(point, start, label).await,
            FaultKind::RollingRestart => {
                self.injected(label, "all", start);
                let ids = self.cluster.ids();
                for id in &ids {
                    let node = self.cluster.node(*id)?;
                    let starts = node.starts();
                    node.sigterm_and_wait(Duration::from_secs(15)).await?;
                    let exited = !node.is_running();
                    node.start().await?;
                    let restarted = node.starts() > starts;
                    self.expect(
                        exited && restarted,
                        format!("{} stopped and started again", name(*id)),
                    );
                    if !self.cluster.wait_healthy(Duration::from_secs(60)).await {
                        bail!("not ready after restarting {}", name(*id));
                    }
                }
                Ok(Hit {
                    target: "all".into(),
                    nodes: ids,
                    note: String::new(),
                })
            }
            FaultKind::MembershipChange | FaultKind::MembershipChangeFast => {
                let slow = *kind == FaultKind::MembershipChange;
                self.injected(
                    label,
                    if slow { "all links slow" } else { "members" },
                    start,
                );
                if slow {
                    self.cluster.mesh.set_all(Fault::Delay {
                        base: Duration::from_millis(10),
                        jitter: Duration::from_millis(20),
                    });
                }
                let changed = self.change_membership(&[]).await;
                self.cluster.mesh.heal();
                let (added, removed) = changed?;
                Ok(Hit {
                    target: format!("+{} -{}", name(added), name(removed)),
                    nodes: vec![added],
                    note: String::new(),
                })
            }
            FaultKind::PartitionDuringMembershipChange => {
                let cut = self.follower().await?;
                self.injected(label, &name(cut), start);
                let before = self.cluster.link_stats_around(cut).bytes_discarded;
                self.cluster.mesh.isolate(cut);
                let changed = self.change_membership(&[cut]).await;
                let discarded = self.cluster.link_stats_around(cut).bytes_discarded - before;
                self.expect(
                    discarded > 0,
                    format!("{discarded} bytes discarded on {}'s links", name(cut)),
                );
                self.cluster.mesh.heal();
                let (added, removed) = changed?;
                let nodes = if removed == cut {
                    vec![added]
                } else {
                    vec![cut, added]
                };
                Ok(Hit {
                    target: format!("{} cut, +{} -{}", name(cut), name(added), name(removed)),
                    nodes,
                    note: String::new(),
                })
            }
            FaultKind::WipeRejoin => {
                let id = self.removable_follower(&[]).await?;
                self.injected(label, &name(id), start);
                let note = self.wipe_rejoin(id).await?;
                Ok(Hit::node(id).note(note))
            }
            FaultKind::ClockSkewBehind | FaultKind::ClockSkewAhead => {
                let offset = if *kind == FaultKind::ClockSkewBehind {
                    -600
                } else {
                    600
                };
                let id = self.follower().await?;
                self.injected(label, &name(id), start);
                self.skew(id, offset).await?;
                let led = self.make_leader(id).await;
                self.expect(led.is_ok(), "the skewed node led");
                tokio::time::sleep(hold).await;
                self.unskew(id).await?;
                Ok(Hit::node(id).note(led.unwrap_or_else(|e| e)))
            }
            FaultKind::PauseWhileSkewed => {
                let skewed = self.follower().await?;
                let paused = {
                    let others: Vec<u64> = self
                        .cluster
                        .ids()
                        .into_iter()
                        .filter(|id| *id != skewed)
                        .collect();
                    *others
                        .choose(&mut self.rng)
                        .ok_or_else(|| anyhow!("no member"))?
                };
                let offset = if self.rng.gen_bool(0.5) { 600 } else { -600 };
                let target = format!(
                    "{} skewed {offset:+} s, {} paused",
                    name(skewed),
                    name(paused)
                );
                self.injected(label, &target, start);
                self.skew(skewed, offset).await?;
                self.cluster.node(paused)?.sigstop()?;
                let stopped = self.wait_stopped(paused).await?;
                self.expect(stopped, format!("{} is stopped", name(paused)));
                tokio::time::sleep(hold).await;
                self.cluster.node(paused)?.sigcont()?;
                self.unskew(skewed).await?;
                Ok(Hit {
                    target,
                    nodes: vec![skewed, paused],
                    note: String::new(),
                })
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
                let log_from = log_len(self.cluster, id);
                let filled = self.cluster.node(id)?.fill_disk()?;
                // The node must really be refused a write: wait for its log to say so
                // (the workload keeps writing; a snapshot or a log write soon needs space).
                let deadline = tokio::time::Instant::now() + hold.max(Duration::from_secs(30));
                let mut hit_enospc = false;
                let held_until = tokio::time::Instant::now() + hold;
                while tokio::time::Instant::now() < deadline {
                    hit_enospc = log_since(self.cluster, id, log_from)
                        .is_some_and(|log| log.contains("No space left on device"));
                    if hit_enospc && tokio::time::Instant::now() >= held_until {
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                self.expect(
                    hit_enospc,
                    "a write hit ENOSPC (\"No space left on device\" in its log)",
                );
                self.cluster.node(id)?.free_disk()?;
                let node = self.cluster.node(id)?;
                let survived = node.is_running();
                // A store that failed a write stops its Raft core: restart it.
                node.restart().await?;
                Ok(Hit::node(id).note(format!(
                    "filled {} KiB; the node {}",
                    filled / 1024,
                    if survived { "kept running" } else { "exited" }
                )))
            }
            FaultKind::PowerCutNode | FaultKind::PowerCutAll => {
                let on_disk: Vec<u64> = self
                    .cluster
                    .ids()
                    .into_iter()
                    .filter(|id| self.cluster.has_power_loss(*id))
                    .collect();
                let (ids, mode) = if *kind == FaultKind::PowerCutNode {
                    let id = *on_disk
                        .choose(&mut self.rng)
                        .ok_or_else(|| anyhow!("no member on a power-loss file system"))?;
                    (vec![id], CutMode::Clean)
                } else {
                    (
                        on_disk,
                        CutMode::Torn {
                            seed: self.rng.gen(),
                        },
                    )
                };
                let target = ids.iter().map(|id| name(*id)).collect::<Vec<_>>().join(",");
                self.injected(label, &target, start);
                let reports = self.cluster.power_cut(&ids, mode).await?;
                let mut notes = Vec::new();
                for (id, report) in &reports {
                    self.expect(
                        report.bytes_dropped > 0 || report.files_truncated > 0,
                        format!(
                            "{} lost {} unsynced bytes in {} files",
                            name(*id),
                            report.bytes_dropped,
                            report.files
                        ),
                    );
                    notes.push(format!("{}: -{} B", name(*id), report.bytes_dropped));
                }
                tokio::time::sleep(hold).await;
                Ok(Hit {
                    target,
                    nodes: ids,
                    note: notes.join(", "),
                })
            }
            FaultKind::KillDuringSnapshotInstall => {
                let id = self.follower().await?;
                self.injected(label, &name(id), start);
                let note = self.partition_until_snapshot(id, None, true).await?;
                Ok(Hit::node(id).note(note))
            }
        }
    }

    /// Whether `id`'s process shows as stopped within a second (a signal is delivered
    /// asynchronously).
    async fn wait_stopped(&mut self, id: u64) -> anyhow::Result<bool> {
        for _ in 0..20 {
            if self.cluster.node(id)?.proc_state() == Some('T') {
                return Ok(true);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Ok(false)
    }

    /// Kills `id`, holds, restarts it; with `leader`, verifies that leadership moved.
    async fn kill_and_hold(
        &mut self,
        id: u64,
        sabotaged: bool,
        leader: bool,
    ) -> anyhow::Result<String> {
        let hold = self.hold;
        if !sabotaged {
            self.cluster.node(id)?.kill9().await?;
        }
        let exited = !self.cluster.node(id)?.is_running();
        self.expect(exited, format!("{} exited", name(id)));
        let started = tokio::time::Instant::now();
        let mut note = String::new();
        if leader {
            let moved = self.cluster.wait_new_leader(id, LEADER_MOVES_WITHIN).await;
            self.expect(
                moved.is_some(),
                "leadership moved away from the killed leader",
            );
            if let Some(new) = moved {
                note = format!("{} took over", name(new));
            }
        }
        tokio::time::sleep(hold.saturating_sub(started.elapsed())).await;
        let node = self.cluster.node(id)?;
        if !node.is_running() {
            node.start().await?;
        }
        Ok(note)
    }

    /// Adds a member and removes another (not one of `keep`); returns (added, removed)
    /// and verifies both in the leader's membership.
    async fn change_membership(&mut self, keep: &[u64]) -> anyhow::Result<(u64, u64)> {
        let added = self.cluster.add_node(None).await?;
        let mut keep = keep.to_vec();
        keep.push(added);
        // Rather one of `keep` (a node cut off, say) than nothing: a partitioned member
        // may be removed too.
        let removed = match self.removable_follower(&keep).await {
            Ok(id) => id,
            Err(_) => self.removable_follower(&[added]).await?,
        };
        self.cluster.remove_node(removed).await?;
        let leader = self.leader().await?;
        let status = self.cluster.node(leader)?.status().await?;
        let is_voter = status.members.iter().any(|m| m.id == added && m.voter);
        let gone = status.members.iter().all(|m| m.id != removed);
        self.expect(is_voter, format!("{} is a voter", name(added)));
        self.expect(gone, format!("{} is no longer a member", name(removed)));
        Ok((added, removed))
    }

    /// Takes `id`'s data dir away and starts it again under its own id: it must come
    /// back as a new incarnation, admitted again by the leader, never voting as the
    /// member it no longer remembers being.
    async fn wipe_rejoin(&mut self, id: u64) -> anyhow::Result<String> {
        let before = incarnation(self.cluster, id);
        let node = self.cluster.node(id)?;
        node.kill9().await?;
        node.wipe_data_dir()?;
        let empty = std::fs::read_dir(&node.spec().data_dir)
            .map(|mut entries| entries.next().is_none())
            .unwrap_or(false);
        self.expect(empty, format!("{}'s data dir is empty", name(id)));
        tokio::time::sleep(self.hold).await;
        // A node that joined asks the member it joined through again; that one may have
        // left since: point it at the leader, as an operator would.
        let leader = self.leader().await?;
        let join = self.cluster.node(leader)?.raft_addr().to_string();
        let node = self.cluster.node(id)?;
        let mut args = node.spec().args.clone();
        if let Some(at) = args.iter().position(|arg| arg == "--join") {
            if let Some(target) = args.get_mut(at + 1) {
                *target = join;
            }
            node.set_args(args);
        }
        node.start().await?;
        let leader = self.leader().await?;
        self.cluster
            .wait_voter(id, leader, Duration::from_secs(60))
            .await?;
        let after = incarnation(self.cluster, id);
        let renewed = before.is_some() && after.is_some() && before != after;
        self.expect(
            renewed,
            format!("{} is a voter again as a new incarnation", name(id)),
        );
        Ok(format!(
            "incarnation {} -> {}",
            before.as_deref().unwrap_or("?"),
            after.as_deref().unwrap_or("?")
        ))
    }

    /// Sets `id`'s clock `offset` seconds off and verifies the node notices.
    async fn skew(&mut self, id: u64, offset: i64) -> anyhow::Result<()> {
        let live = self.cluster.node(id)?.set_clock_offset(offset)?;
        if !live {
            self.cluster.node(id)?.restart().await?;
        }
        // Peers learn the offset from the clock headers of the next requests.
        tokio::time::sleep(Duration::from_millis(1_500)).await;
        Ok(())
    }

    async fn unskew(&mut self, id: u64) -> anyhow::Result<()> {
        let live = self.cluster.node(id)?.set_clock_offset(0)?;
        if !live {
            self.cluster.node(id)?.restart().await?;
        }
        Ok(())
    }

    /// Moves leadership to `id`, and watches it lead (it may hand leadership on soon, as
    /// a skewed leader must).
    async fn make_leader(&mut self, id: u64) -> Result<String, String> {
        let via = self.leader().await.map_err(|e| e.to_string())?;
        if via == id {
            return Ok(format!("{} led", name(id)));
        }
        let node = self.cluster.node(via).map_err(|e| e.to_string())?;
        let transferred = node.transfer_leader(id, Duration::from_secs(10)).await;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while tokio::time::Instant::now() < deadline {
            if let Ok(node) = self.cluster.node(id) {
                if node.status().await.is_ok_and(|s| s.leader == Some(id)) {
                    return Ok(format!("{} led", name(id)));
                }
            }
            if transferred.is_ok() {
                return Ok(format!("{} led (transfer acknowledged)", name(id)));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Err(format!(
            "{} never led: {}",
            name(id),
            transferred
                .err()
                .map_or_else(String::new, |e| e.to_string())
        ))
    }

    /// Isolates `id` until the leader has compacted its log past what `id` holds, then
    /// heals, and verifies that `id` installed a snapshot sent by the leader. With
    /// `crash`, that crash point is armed on `id` before the heal, so it crashes while
    /// installing, and is then restarted clean. With `kill_leader`, the leader is killed
    /// just after the heal, while it sends the snapshot.
    async fn partition_until_snapshot(
        &mut self,
        id: u64,
        crash: Option<&str>,
        kill_leader: bool,
    ) -> anyhow::Result<String> {
        let installed_before = self.cluster.node(id)?.status().await?.snapshots_installed;
        let log_from = log_len(self.cluster, id);
        if let Some(point) = crash {
            // Armed while connected; only the snapshot install path passes the point,
            // and nothing takes it before the heal.
            self.cluster.node(id)?.arm_failpoint(point, "panic").await?;
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
        let (mut snapshot, mut purged, mut leader) = (0, 0, 0);
        while purged <= behind_at {
            if tokio::time::Instant::now() >= deadline {
                bail!("the leader never compacted past index {behind_at} (purged up to {purged})");
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
            leader = self.leader().await?;
            let status = self.cluster.node(leader)?.status().await?;
            snapshot = status.snapshot.unwrap_or(0);
            purged = status.purged.unwrap_or(0);
        }
        self.cluster.mesh.heal();
        self.targets.set(self.cluster.targets());
        let mut note = format!(
            "node was at {behind_at}, leader purged up to {purged}, snapshot at {snapshot}"
        );
        if kill_leader {
            let pause = Duration::from_millis(self.rng.gen_range(50..400));
            tokio::time::sleep(pause).await;
            self.cluster.node(leader)?.kill9().await?;
            let exited = !self.cluster.node(leader)?.is_running();
            self.expect(exited, format!("the leader {} exited", name(leader)));
            let moved = self
                .cluster
                .wait_new_leader(leader, LEADER_MOVES_WITHIN)
                .await;
            self.expect(
                moved.is_some(),
                "leadership moved away from the killed leader",
            );
            self.cluster.node(leader)?.start().await?;
            note.push_str(&format!(
                "; leader {} killed {} ms after the heal",
                name(leader),
                pause.as_millis()
            ));
        }
        if let Some(point) = crash {
            // The point lies on the install path: its firing shows that the node was
            // installing a snapshot sent by the leader. After the restart it installs
            // one again, or (crashed after persisting) already holds it.
            let fired = self.wait_crash(id, point, log_from).await?;
            note.push_str(if fired {
                "; crashed at the crash point, restarted clean"
            } else {
                "; the crash point did not fire"
            });
            return Ok(note);
        }
        // The node installed a snapshot it received (not one it built itself).
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        let mut installed = None;
        while tokio::time::Instant::now() < deadline {
            if let Ok(status) = self.cluster.node(id)?.status().await {
                if status.snapshots_installed > installed_before {
                    installed = Some(status.snapshot.unwrap_or(0));
                    break;
                }
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        self.expect(
            installed.is_some(),
            format!("{} installed a snapshot sent by the leader", name(id)),
        );
        if let Some(at) = installed {
            note.push_str(&format!("; it installed a snapshot at {at}"));
        }
        Ok(note)
    }

    /// Waits for `id` to crash at `point` (armed already), verifies from its log that it
    /// was that point, and restarts it clean. Returns whether it fired.
    async fn wait_crash(&mut self, id: u64, point: &str, log_from: u64) -> anyhow::Result<bool> {
        let deadline = tokio::time::Instant::now() + CRASH_FIRES_WITHIN;
        while self.cluster.node(id)?.is_running() && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let exited = !self.cluster.node(id)?.is_running();
        let named = log_since(self.cluster, id, log_from).is_some_and(|log| log.contains(point));
        self.expect(
            exited && named,
            format!("{} crashed at {point} (its log names the point)", name(id)),
        );
        let node = self.cluster.node(id)?;
        if node.is_running() {
            // Never fired: take the armed point away with the process.
            node.kill9().await?;
        }
        node.start().await?;
        Ok(exited && named)
    }

    /// Arms `point` on a running member — the leader under load for the log, apply and
    /// snapshot-build points; a follower about to install a snapshot for the install
    /// points — waits for the crash and restarts it clean.
    async fn crash_point(
        &mut self,
        point: &'static str,
        start: u64,
        label: &str,
    ) -> anyhow::Result<Hit> {
        if point.starts_with("snapshot-install") {
            let id = self.follower().await?;
            self.injected(label, &name(id), start);
            let note = self
                .partition_until_snapshot(id, Some(point), false)
                .await?;
            return Ok(Hit::node(id).note(note));
        }
        if point == "add-before-voter" {
            return self.crash_in_addition(point, start, label).await;
        }
        let id = self.leader().await?;
        self.injected(label, &name(id), start);
        let log_from = log_len(self.cluster, id);
        self.cluster.node(id)?.arm_failpoint(point, "panic").await?;
        let fired = self.wait_crash(id, point, log_from).await?;
        Ok(Hit::node(id).note(if fired {
            "the leader crashed at the crash point, restarted clean"
        } else {
            "the crash point did not fire"
        }))
    }

    /// Crashes the leader inside a node's addition, between its learner and its voter
    /// step: the new node must still end a voter (it asks again while it is a learner).
    /// Then removes a follower, so the cluster keeps its size.
    async fn crash_in_addition(
        &mut self,
        point: &'static str,
        start: u64,
        label: &str,
    ) -> anyhow::Result<Hit> {
        let id = self.leader().await?;
        self.injected(label, &name(id), start);
        let log_from = log_len(self.cluster, id);
        self.cluster.node(id)?.arm_failpoint(point, "panic").await?;
        // Joins through another member and waits until the node is a voter there.
        let added = self.cluster.add_node(Some(id)).await;
        let fired = self.wait_crash(id, point, log_from).await?;
        let added = added?;
        let removed = match self.removable_follower(&[added, id]).await {
            Ok(removed) => removed,
            Err(_) => self.removable_follower(&[added]).await?,
        };
        self.cluster.remove_node(removed).await?;
        Ok(Hit {
            target: format!("{} (+{} -{})", name(id), name(added), name(removed)),
            nodes: vec![id, added],
            note: if fired {
                "the leader crashed between the learner and the voter step; the new node became a voter"
            } else {
                "the crash point did not fire"
            }
            .into(),
        })
    }
}

/// The length of `id`'s log file now.
fn log_len(cluster: &mut ChaosCluster, id: u64) -> u64 {
    cluster
        .node(id)
        .ok()
        .and_then(|node| std::fs::metadata(node.log_path()).ok())
        .map_or(0, |m| m.len())
}

/// What `id` logged after byte `from`.
fn log_since(cluster: &mut ChaosCluster, id: u64, from: u64) -> Option<String> {
    let path = cluster.node(id).ok()?.log_path();
    let bytes = std::fs::read(path).ok()?;
    let from = (from as usize).min(bytes.len());
    Some(String::from_utf8_lossy(&bytes[from..]).into_owned())
}

/// The incarnation in `id`'s identity file, if it has one.
fn incarnation(cluster: &mut ChaosCluster, id: u64) -> Option<String> {
    let node = cluster.node(id).ok()?;
    let bytes = std::fs::read(node.spec().data_dir.join("identity.json")).ok()?;
    let identity: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
    Some(identity.get("incarnation")?.to_string())
}
