//! The history of a chaos run: every operation the workload invoked and how it ended,
//! the faults the nemesis injected, the licenses under test and the final reads taken
//! after healing.
//!
//! A run records its history with a [`HistoryRecorder`], which appends one JSON object
//! per line ([`Event`]) to a file as the run goes, so that a failed run can be checked
//! again offline with [`load`]. Invocations and completions are separate events: an
//! operation whose completion never got recorded (the run ended first) is loaded as
//! indeterminate.
//!
//! Times are nanoseconds since the recorder was created, from a monotonic clock, so they
//! order events across all workers of one run; the recorder also notes the wall clock
//! (Unix milliseconds) at that instant, so that a history time can be compared with a
//! date the server stamped. Borrow intervals are Unix seconds, the server's own unit.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::io::{self, BufRead, BufReader, BufWriter, Write};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context};
use licensed::borrow::time::{parse_instant, DateRole};
use licensed::client::{BorrowedInterval, BorrowedLicense, LicenseInfo, RpcCallError};
use serde::{Deserialize, Serialize};

/// Identifies a workload client (one worker).
pub type ClientId = u64;
/// Identifies one operation, i.e. one attempt: a retry is a new operation.
pub type OpId = u64;
/// Nanoseconds since the start of the run, from a monotonic clock.
pub type Time = u64;
/// Unix seconds, UTC: the unit of borrow intervals on the server.
pub use licensed::borrow::time::UnixSeconds;
/// The client id final reads carry when they are turned into operations
/// ([`History::final_read_ops`]).
pub const FINAL_READ_CLIENT: ClientId = ClientId::MAX;

/// JSON-RPC code of a borrow refused for lack of capacity.
pub const NOT_AVAILABLE: i64 = licensed::rpc::error::NOT_AVAILABLE;
/// JSON-RPC code of an unknown borrow id (and of an unknown license).
pub const UNKNOWN_BORROW: i64 = licensed::rpc::error::NO_SUCH_LICENSE;
/// JSON-RPC code of "the server cannot answer" (no leader, no quorum, timeout): the
/// request may or may not have taken effect.
pub const INTERNAL_ERROR: i64 = licensed::rpc::error::INTERNAL_ERROR;

/// The key the history uses for a license: `feature/uuid`.
pub fn license_key(feature: &str, uuid: &str) -> String {
    format!("{feature}/{uuid}")
}

/// What an operation asked for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "call", rename_all = "snake_case")]
pub enum OpKind {
    /// `BorrowLicenseV1`.
    Borrow {
        /// The license, as [`license_key`] spells it.
        license: String,
        /// Start of the interval, inclusive; `None` when no `validFrom` was sent, so
        /// that the server starts the borrow at its own clock ("near now") and the
        /// answer's license string says when.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        from: Option<UnixSeconds>,
        /// End of the interval, exclusive.
        until: UnixSeconds,
        /// The borrowing host.
        host: String,
        /// The idempotency key; every retry of one logical borrow carries the same one.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        request_id: Option<String>,
    },
    /// `ReturnLicenseV1`.
    Return {
        /// The borrow to end.
        borrow_id: String,
    },
    /// `GetBorrowedLicenseV1`.
    Get {
        /// The borrow to read.
        borrow_id: String,
    },
    /// `ListLicensesV1`.
    List,
}

impl OpKind {
    /// Whether this is a borrow without `validFrom`, started by the server's clock.
    pub fn is_near_now(&self) -> bool {
        matches!(self, OpKind::Borrow { from: None, .. })
    }

    /// A short name for reports: `borrow`, `return`, `get` or `list`.
    pub fn name(&self) -> &'static str {
        match self {
            OpKind::Borrow { .. } => "borrow",
            OpKind::Return { .. } => "return",
            OpKind::Get { .. } => "get",
            OpKind::List => "list",
        }
    }
}

/// One borrow as `ListLicensesV1` showed it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListedBorrow {
    /// The borrow's id.
    pub borrow_id: String,
    /// The borrowing host.
    pub host_id: String,
    /// Start of the interval, inclusive.
    pub from: UnixSeconds,
    /// End of the interval, exclusive.
    pub until: UnixSeconds,
}

impl ListedBorrow {
    /// Reads one `borrowedIntervals` entry, parsing its dates the way the server does.
    pub fn from_interval(interval: &BorrowedInterval) -> anyhow::Result<ListedBorrow> {
        Ok(ListedBorrow {
            borrow_id: interval.borrow_id.clone(),
            host_id: interval.host_id.clone(),
            from: parse_instant(&interval.valid_from, DateRole::Start, "validFrom")?,
            until: parse_instant(&interval.valid_until, DateRole::End, "validUntil")?,
        })
    }
}

/// How an operation ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "result", rename_all = "snake_case")]
pub enum OpResult {
    /// A borrow succeeded.
    BorrowOk {
        /// The id the server gave the borrow.
        borrow_id: String,
        /// The signed license string.
        license: String,
    },
    /// A borrow was refused with code 32: the license is fully borrowed.
    Conflict,
    /// A get or return named a borrow the server does not know (code 34).
    NotFound,
    /// A return succeeded.
    ReturnOk,
    /// A get found the borrow.
    GetOk {
        /// The signed license string it answered.
        license: String,
    },
    /// A list answered: every license the server listed, with its borrows (an empty
    /// list for a license without borrows).
    ListOk {
        /// License key to its listed borrows.
        licenses: BTreeMap<String, Vec<ListedBorrow>>,
    },
    /// No usable answer (timeout, transport error, -32603): the operation may or may
    /// not have taken effect.
    Indeterminate {
        /// What happened, for the report.
        reason: String,
    },
    /// A definite refusal other than the ones above: the operation had no effect.
    Failed {
        /// The JSON-RPC code.
        code: i64,
        /// The server's message.
        reason: String,
    },
}

impl OpResult {
    /// A short name for reports, e.g. `borrow_ok` or `indeterminate`.
    pub fn name(&self) -> &'static str {
        match self {
            OpResult::BorrowOk { .. } => "borrow_ok",
            OpResult::Conflict => "conflict",
            OpResult::NotFound => "not_found",
            OpResult::ReturnOk => "return_ok",
            OpResult::GetOk { .. } => "get_ok",
            OpResult::ListOk { .. } => "list_ok",
            OpResult::Indeterminate { .. } => "indeterminate",
            OpResult::Failed { .. } => "failed",
        }
    }

    /// Whether the operation may or may not have taken effect.
    pub fn is_indeterminate(&self) -> bool {
        matches!(self, OpResult::Indeterminate { .. })
    }

    /// The result of a successful borrow or get call, as [`OpResult::BorrowOk`] for a
    /// borrow and [`OpResult::GetOk`] for a get.
    pub fn borrowed(call: &OpKind, answer: &BorrowedLicense) -> OpResult {
        match call {
            OpKind::Get { .. } => OpResult::GetOk {
                license: answer.license.clone(),
            },
            _ => OpResult::BorrowOk {
                borrow_id: answer.borrow_id.clone(),
                license: answer.license.clone(),
            },
        }
    }

    /// The result of a successful list call. A date the checker cannot read makes the
    /// answer unusable, so it becomes indeterminate rather than a wrong observation.
    pub fn listed(licenses: &[LicenseInfo]) -> OpResult {
        let mut listed = BTreeMap::new();
        for info in licenses {
            let borrows: anyhow::Result<Vec<ListedBorrow>> = info
                .borrowed_intervals
                .iter()
                .map(ListedBorrow::from_interval)
                .collect();
            match borrows {
                Ok(borrows) => {
                    listed.insert(license_key(&info.feature, &info.uuid), borrows);
                }
                Err(error) => {
                    return OpResult::Indeterminate {
                        reason: format!("unreadable list answer: {error:#}"),
                    }
                }
            }
        }
        OpResult::ListOk { licenses: listed }
    }

    /// Classifies a failed call. Only a JSON-RPC error object is a definite answer; a
    /// missing or garbled answer, or -32603, may hide an applied write.
    pub fn from_error(call: &OpKind, error: &RpcCallError) -> OpResult {
        match error {
            RpcCallError::Rpc(object) => match (call, object.code) {
                (OpKind::Borrow { .. }, NOT_AVAILABLE) => OpResult::Conflict,
                (OpKind::Get { .. } | OpKind::Return { .. }, UNKNOWN_BORROW) => OpResult::NotFound,
                (_, INTERNAL_ERROR) => OpResult::Indeterminate {
                    reason: object.to_string(),
                },
                (_, code) => OpResult::Failed {
                    code,
                    reason: object.to_string(),
                },
            },
            other => OpResult::Indeterminate {
                reason: other.to_string(),
            },
        }
    }
}

/// One operation of a history: an invocation and, when it was recorded, its completion.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Op {
    /// The operation's id, unique in the history.
    pub id: OpId,
    /// The worker that issued it.
    pub client: ClientId,
    /// The node it was sent to.
    pub node: String,
    /// What it asked for.
    pub kind: OpKind,
    /// When it was invoked.
    pub invoke: Time,
    /// When its answer arrived; `None` when the run ended first.
    pub complete: Option<Time>,
    /// How it ended; [`OpResult::Indeterminate`] when no completion was recorded.
    pub result: OpResult,
}

impl Op {
    /// The borrow's idempotency key, for a borrow that has one.
    pub fn request_id(&self) -> Option<&str> {
        match &self.kind {
            OpKind::Borrow { request_id, .. } => request_id.as_deref(),
            _ => None,
        }
    }

    /// The latest time the operation can have taken effect: its completion, or never
    /// (`None`) for an indeterminate operation, which may still take effect any time.
    pub fn effect_deadline(&self) -> Option<Time> {
        if self.result.is_indeterminate() {
            None
        } else {
            self.complete
        }
    }
}

/// A fault the nemesis injected. Recorded once when injected (`end: None`) and once more
/// when healed (`end: Some`); [`History`] keeps the healed record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FaultEvent {
    /// What kind of fault, e.g. `partition`, `kill`, `pause`, `clock-skew`.
    pub kind: String,
    /// What it hit, e.g. a node name or `n1|n2,n3`.
    pub target: String,
    /// When it was injected.
    pub start: Time,
    /// When it was healed, if it was.
    pub end: Option<Time>,
    /// The nodes the fault hit directly that are expected to serve again after the heal
    /// (names like `n2`); each must answer an operation soon after `end`. Filled on the
    /// healed record; empty in histories recorded before it existed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub nodes: Vec<String>,
}

/// When a final read was sent and when its answer arrived (history times).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReadWindow {
    /// Taken right before the request was sent.
    pub invoke: Time,
    /// Taken right after the answer (or the failure) arrived.
    pub complete: Time,
}

/// What one node answered when read after the cluster healed.
///
/// Record each read with [`NodeFinalRead::record_get`] and
/// [`NodeFinalRead::record_list`], taking the times with [`HistoryRecorder::now`] right
/// around the call: the checks then place the reads in the linearizability search like
/// any other operation. Reads without a window (histories recorded before windows
/// existed) are placed after everything else the history holds.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeFinalRead {
    /// The node read.
    pub node: String,
    /// `GetBorrowedLicenseV1` for every acknowledged borrow id: [`OpResult::GetOk`],
    /// [`OpResult::NotFound`] or a failure.
    pub gets: BTreeMap<String, OpResult>,
    /// `ListLicensesV1`: [`OpResult::ListOk`] or a failure; `None` when not read.
    pub list: Option<OpResult>,
    /// When each get of `gets` was sent and answered.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub get_windows: BTreeMap<String, ReadWindow>,
    /// When the list was sent and answered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub list_window: Option<ReadWindow>,
}

impl NodeFinalRead {
    /// No reads of `node` yet.
    pub fn new(node: &str) -> NodeFinalRead {
        NodeFinalRead {
            node: node.to_string(),
            ..NodeFinalRead::default()
        }
    }

    /// Records the get of `borrow_id`, sent at `invoke` and answered at `complete`.
    pub fn record_get(&mut self, borrow_id: &str, invoke: Time, complete: Time, result: OpResult) {
        self.gets.insert(borrow_id.to_string(), result);
        self.get_windows
            .insert(borrow_id.to_string(), ReadWindow { invoke, complete });
    }

    /// Records the list, sent at `invoke` and answered at `complete`.
    pub fn record_list(&mut self, invoke: Time, complete: Time, result: OpResult) {
        self.list = Some(result);
        self.list_window = Some(ReadWindow { invoke, complete });
    }
}

/// The final reads of every node.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FinalReads {
    /// One entry per node.
    pub nodes: Vec<NodeFinalRead>,
}

/// One line of a history file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Event {
    /// An operation was sent.
    Invoke {
        /// The operation's id.
        op: OpId,
        /// The worker that sent it.
        client: ClientId,
        /// The node it went to.
        node: String,
        /// When.
        time: Time,
        /// What it asked for.
        call: OpKind,
    },
    /// An operation's answer arrived (or its failure was established).
    Complete {
        /// The operation's id.
        op: OpId,
        /// When.
        time: Time,
        /// How it ended.
        result: OpResult,
    },
    /// A fault was injected or healed.
    Fault(FaultEvent),
    /// A license under test and its count.
    License {
        /// The license key.
        key: String,
        /// How many borrows may overlap.
        count: u64,
    },
    /// One node's final reads.
    FinalRead(NodeFinalRead),
    /// The wall clock when the recorder started, i.e. at history time 0.
    Started {
        /// Unix milliseconds.
        unix_ms: i64,
    },
}

/// A whole run, ready to check.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct History {
    /// Every operation, ordered by invocation time (then id).
    pub ops: Vec<Op>,
    /// Every fault, ordered by start time.
    pub faults: Vec<FaultEvent>,
    /// The licenses under test, as recorded.
    pub licenses: Vec<(String, u64)>,
    /// The final reads, as recorded.
    pub final_reads: FinalReads,
    /// The wall clock at history time 0, Unix milliseconds; `None` in histories
    /// recorded before it was noted.
    pub started_unix_ms: Option<i64>,
}

impl History {
    /// Assembles a history from events in any order. Fails on a completion without an
    /// invocation or an operation id used twice.
    pub fn from_events(events: impl IntoIterator<Item = Event>) -> anyhow::Result<History> {
        let mut ops: BTreeMap<OpId, Op> = BTreeMap::new();
        let mut completions: Vec<(OpId, Time, OpResult)> = Vec::new();
        let mut faults: Vec<FaultEvent> = Vec::new();
        let mut licenses: BTreeMap<String, u64> = BTreeMap::new();
        let mut final_reads = FinalReads::default();
        let mut started_unix_ms = None;
        for event in events {
            match event {
                Event::Invoke {
                    op,
                    client,
                    node,
                    time,
                    call,
                } => {
                    let previous = ops.insert(
                        op,
                        Op {
                            id: op,
                            client,
                            node,
                            kind: call,
                            invoke: time,
                            complete: None,
                            result: OpResult::Indeterminate {
                                reason: "no completion recorded".into(),
                            },
                        },
                    );
                    if previous.is_some() {
                        bail!("operation {op} is invoked twice");
                    }
                }
                Event::Complete { op, time, result } => completions.push((op, time, result)),
                Event::Fault(fault) => faults.push(fault),
                Event::License { key, count } => {
                    licenses.insert(key, count);
                }
                Event::FinalRead(read) => final_reads.nodes.push(read),
                Event::Started { unix_ms } => started_unix_ms = Some(unix_ms),
            }
        }
        for (id, time, result) in completions {
            let Some(op) = ops.get_mut(&id) else {
                bail!("operation {id} completes but was never invoked");
            };
            if op.complete.is_some() {
                bail!("operation {id} completes twice");
            }
            op.complete = Some(time);
            op.result = result;
        }
        let mut ops: Vec<Op> = ops.into_values().collect();
        ops.sort_by_key(|op| (op.invoke, op.id));
        Ok(History {
            ops,
            faults: merge_faults(faults),
            licenses: licenses.into_iter().collect(),
            final_reads,
            started_unix_ms,
        })
    }

    /// The events that rebuild this history, e.g. to save a reduced or synthetic one.
    pub fn to_events(&self) -> Vec<Event> {
        let mut events = Vec::new();
        if let Some(unix_ms) = self.started_unix_ms {
            events.push(Event::Started { unix_ms });
        }
        for (key, count) in &self.licenses {
            events.push(Event::License {
                key: key.clone(),
                count: *count,
            });
        }
        for op in &self.ops {
            events.push(Event::Invoke {
                op: op.id,
                client: op.client,
                node: op.node.clone(),
                time: op.invoke,
                call: op.kind.clone(),
            });
            if let Some(time) = op.complete {
                events.push(Event::Complete {
                    op: op.id,
                    time,
                    result: op.result.clone(),
                });
            }
        }
        events.extend(self.faults.iter().cloned().map(Event::Fault));
        events.extend(self.final_reads.nodes.iter().cloned().map(Event::FinalRead));
        events
    }

    /// Writes the history as JSON Lines, the format [`load`] reads.
    pub fn save(&self, path: impl AsRef<Path>) -> anyhow::Result<()> {
        let path = path.as_ref();
        let file = File::create(path).with_context(|| format!("creating {}", path.display()))?;
        let mut out = BufWriter::new(file);
        for event in self.to_events() {
            write_event(&mut out, &event)?;
        }
        out.flush()
            .with_context(|| format!("writing {}", path.display()))?;
        Ok(())
    }

    /// Every borrow id some borrow was acknowledged with: what the final reads must get
    /// from every node.
    pub fn acknowledged_borrow_ids(&self) -> BTreeSet<String> {
        self.ops
            .iter()
            .filter_map(|op| match &op.result {
                OpResult::BorrowOk { borrow_id, .. } => Some(borrow_id.clone()),
                _ => None,
            })
            .collect()
    }

    /// The last time anything happened: an invocation, a completion, a fault change or
    /// a final read with a recorded window.
    pub fn end_time(&self) -> Time {
        let workload = self.workload_end_time();
        let finals = self
            .final_reads
            .nodes
            .iter()
            .flat_map(|read| read.get_windows.values().chain(&read.list_window))
            .map(|window| window.complete.max(window.invoke));
        finals.fold(workload, Time::max)
    }

    /// The last invocation, completion or fault change, final reads left out.
    pub fn workload_end_time(&self) -> Time {
        let ops = self
            .ops
            .iter()
            .map(|op| op.complete.unwrap_or(op.invoke).max(op.invoke));
        let faults = self
            .faults
            .iter()
            .map(|fault| fault.end.unwrap_or(fault.start).max(fault.start));
        ops.chain(faults).max().unwrap_or(0)
    }

    /// The wall clock (Unix milliseconds) at history time `time`, when the history
    /// noted its start.
    pub fn wall_ms(&self, time: Time) -> Option<i64> {
        let since = i64::try_from(time / 1_000_000).ok()?;
        self.started_unix_ms?.checked_add(since)
    }

    /// The final reads as operations, so that they can be checked like every other
    /// read: one get per borrow id and one list per node, sent to that node by client
    /// [`FINAL_READ_CLIENT`], with ids after the workload's. A read with a recorded
    /// window keeps it; one without is taken to start right after everything else in
    /// the history and to have no known completion.
    pub fn final_read_ops(&self) -> Vec<Op> {
        let last = self.ops.iter().map(|op| op.id).max().unwrap_or(0);
        self.final_reads
            .to_ops(last + 1, self.workload_end_time() + 1)
    }
}

impl FinalReads {
    /// The final reads as operations with ids from `first_id` on; a read without a
    /// recorded window is taken to be invoked at `after` and to have no known
    /// completion. See [`History::final_read_ops`].
    pub fn to_ops(&self, first_id: OpId, after: Time) -> Vec<Op> {
        let mut next = first_id;
        let mut ops = Vec::new();
        let mut push =
            |node: &str, kind: OpKind, window: Option<&ReadWindow>, result: &OpResult| {
                let id = next;
                next += 1;
                let (invoke, complete) = match window {
                    Some(window) => (window.invoke, Some(window.complete.max(window.invoke))),
                    None => (after, None),
                };
                ops.push(Op {
                    id,
                    client: FINAL_READ_CLIENT,
                    node: node.to_string(),
                    kind,
                    invoke,
                    complete,
                    result: result.clone(),
                });
            };
        for read in &self.nodes {
            for (borrow_id, result) in &read.gets {
                let kind = OpKind::Get {
                    borrow_id: borrow_id.clone(),
                };
                push(&read.node, kind, read.get_windows.get(borrow_id), result);
            }
            if let Some(result) = &read.list {
                push(&read.node, OpKind::List, read.list_window.as_ref(), result);
            }
        }
        ops.sort_by_key(|op| (op.invoke, op.id));
        ops
    }
}

/// Keeps one record per injected fault, the healed one when there is one, with the
/// nodes either record names.
fn merge_faults(faults: Vec<FaultEvent>) -> Vec<FaultEvent> {
    let mut merged: BTreeMap<(Time, String, String), FaultEvent> = BTreeMap::new();
    for mut fault in faults {
        let key = (fault.start, fault.kind.clone(), fault.target.clone());
        match merged.get_mut(&key) {
            Some(kept) if kept.end.is_some() || fault.end.is_none() => {
                for node in fault.nodes {
                    if !kept.nodes.contains(&node) {
                        kept.nodes.push(node);
                    }
                }
            }
            Some(kept) => {
                for node in std::mem::take(&mut kept.nodes) {
                    if !fault.nodes.contains(&node) {
                        fault.nodes.push(node);
                    }
                }
                *kept = fault;
            }
            None => {
                merged.insert(key, fault);
            }
        }
    }
    merged.into_values().collect()
}

/// Reads a history file written by [`HistoryRecorder`] or [`History::save`]. A last line
/// cut short (the run died mid-write) is ignored; any other unreadable line is an error.
pub fn load(path: impl AsRef<Path>) -> anyhow::Result<History> {
    let path = path.as_ref();
    let file = File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mut events = Vec::new();
    let mut pending_error: Option<anyhow::Error> = None;
    for (number, line) in BufReader::new(file).lines().enumerate() {
        let line = line.with_context(|| format!("reading {}", path.display()))?;
        if let Some(error) = pending_error.take() {
            // An unreadable line followed by more lines is corruption, not a cut.
            return Err(error);
        }
        if line.trim().is_empty() {
            continue;
        }
        match serde_json::from_str::<Event>(&line) {
            Ok(event) => events.push(event),
            Err(error) => {
                pending_error = Some(anyhow::anyhow!(
                    "{} line {}: {error}",
                    path.display(),
                    number + 1
                ))
            }
        }
    }
    History::from_events(events)
}

fn write_event(out: &mut impl Write, event: &Event) -> anyhow::Result<()> {
    serde_json::to_writer(&mut *out, event)?;
    out.write_all(b"\n")?;
    Ok(())
}

/// What the recorder's writer thread receives.
#[derive(Debug)]
enum Message {
    Event(Box<Event>),
    Finish,
}

/// Records a run's history. Clones share one recorder, so every worker task gets its own
/// handle; recording never blocks on I/O (events go through a channel to a writer
/// thread, which flushes whenever it runs out of work, so a crashed run leaves all but
/// its last few events on disk).
///
/// Take a time stamp as close to the call as possible: [`HistoryRecorder::invoke`]
/// right before sending the request and [`HistoryRecorder::complete`] right after the
/// answer (or the failure) arrived. Events recorded after [`HistoryRecorder::finish`]
/// are dropped.
#[derive(Debug, Clone)]
pub struct HistoryRecorder {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    epoch: Instant,
    /// The wall clock at `epoch`, Unix milliseconds.
    epoch_unix_ms: i64,
    next_op: AtomicU64,
    sender: mpsc::Sender<Message>,
    writer: Mutex<Option<JoinHandle<io::Result<Vec<Event>>>>>,
}

impl HistoryRecorder {
    /// A recorder that writes to a new file at `path` (truncating an existing one).
    pub fn create(path: impl AsRef<Path>) -> anyhow::Result<HistoryRecorder> {
        let path = path.as_ref();
        let file = File::create(path).with_context(|| format!("creating {}", path.display()))?;
        HistoryRecorder::start(Some(BufWriter::new(file)))
    }

    /// A recorder that only keeps the history in memory.
    pub fn in_memory() -> anyhow::Result<HistoryRecorder> {
        HistoryRecorder::start(None)
    }

    fn start(out: Option<BufWriter<File>>) -> anyhow::Result<HistoryRecorder> {
        let (sender, receiver) = mpsc::channel();
        let writer = std::thread::Builder::new()
            .name("history-writer".into())
            .spawn(move || write_events(receiver, out))
            .context("starting the history writer")?;
        // Taken back to back, so that history times convert to wall clock times.
        let epoch = Instant::now();
        let epoch_unix_ms = unix_ms_now();
        let recorder = HistoryRecorder {
            shared: Arc::new(Shared {
                epoch,
                epoch_unix_ms,
                next_op: AtomicU64::new(1),
                sender,
                writer: Mutex::new(Some(writer)),
            }),
        };
        recorder.send(Event::Started {
            unix_ms: epoch_unix_ms,
        });
        Ok(recorder)
    }

    /// The wall clock at history time 0, Unix milliseconds.
    pub fn started_unix_ms(&self) -> i64 {
        self.shared.epoch_unix_ms
    }

    /// Nanoseconds since the recorder was created.
    pub fn now(&self) -> Time {
        u64::try_from(self.shared.epoch.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }

    fn send(&self, event: Event) {
        // Fails only after `finish`, when events are dropped by design.
        let _ = self.shared.sender.send(Message::Event(Box::new(event)));
    }

    /// Records that `client` is about to send `call` to `node`; returns the new
    /// operation's id for [`HistoryRecorder::complete`].
    pub fn invoke(&self, client: ClientId, node: &str, call: OpKind) -> OpId {
        let op = self.shared.next_op.fetch_add(1, Ordering::Relaxed);
        self.send(Event::Invoke {
            op,
            client,
            node: node.to_string(),
            time: self.now(),
            call,
        });
        op
    }

    /// Records how operation `op` ended.
    pub fn complete(&self, op: OpId, result: OpResult) {
        self.send(Event::Complete {
            op,
            time: self.now(),
            result,
        });
    }

    /// Records a fault being injected (`end: None`) or healed (`end: Some`, same `kind`,
    /// `target` and `start` as when injected).
    pub fn fault(&self, fault: FaultEvent) {
        self.send(Event::Fault(fault));
    }

    /// Records a license under test.
    pub fn license(&self, key: &str, count: u64) {
        self.send(Event::License {
            key: key.to_string(),
            count,
        });
    }

    /// Records one node's final reads.
    pub fn final_read(&self, read: NodeFinalRead) {
        self.send(Event::FinalRead(read));
    }

    /// Stops recording, flushes the file and returns the history. Blocks until the
    /// writer is done (briefly: it only has to drain its queue); from async code call it
    /// once the workload has stopped. Later calls, from any clone, fail.
    pub fn finish(&self) -> anyhow::Result<History> {
        let writer = self
            .shared
            .writer
            .lock()
            .map_err(|_| anyhow::anyhow!("the history writer lock is poisoned"))?
            .take();
        let Some(writer) = writer else {
            bail!("the history recorder is already finished");
        };
        // The writer holds the receiver until it has seen this message.
        let _ = self.shared.sender.send(Message::Finish);
        let events = writer
            .join()
            .map_err(|_| anyhow::anyhow!("the history writer panicked"))?
            .context("writing the history")?;
        History::from_events(events)
    }
}

/// This machine's wall clock, Unix milliseconds.
pub fn unix_ms_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|since| i64::try_from(since.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// The writer thread: appends events to the file and keeps them for `finish`. Flushes
/// whenever the queue is empty, so the file trails the run by little.
fn write_events(
    receiver: mpsc::Receiver<Message>,
    mut out: Option<BufWriter<File>>,
) -> io::Result<Vec<Event>> {
    let mut events = Vec::new();
    let mut first_error: Option<io::Error> = None;
    let mut message = receiver.recv();
    while let Ok(Message::Event(event)) = message {
        if first_error.is_none() {
            if let Some(file) = out.as_mut() {
                let written = serde_json::to_writer(&mut *file, &*event)
                    .map_err(io::Error::from)
                    .and_then(|()| file.write_all(b"\n"));
                first_error = written.err();
            }
        }
        events.push(*event);
        message = match receiver.try_recv() {
            Ok(next) => Ok(next),
            Err(mpsc::TryRecvError::Empty) => {
                // Idle: a good moment to get what we have onto the disk.
                if first_error.is_none() {
                    if let Some(file) = out.as_mut() {
                        first_error = file.flush().err();
                    }
                }
                receiver.recv()
            }
            Err(mpsc::TryRecvError::Disconnected) => break,
        };
    }
    if first_error.is_none() {
        if let Some(file) = out.as_mut() {
            first_error = file.flush().err();
        }
    }
    match first_error {
        Some(error) => Err(error),
        None => Ok(events),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn borrow(request_id: &str) -> OpKind {
        OpKind::Borrow {
            license: "F/1".into(),
            from: Some(1_900_000_000),
            until: 1_900_003_600,
            host: "h1".into(),
            request_id: Some(request_id.into()),
        }
    }

    #[test]
    fn recorder_round_trips_through_a_file() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("history.jsonl");
        let recorder = HistoryRecorder::create(&path).expect("recorder");
        recorder.license("F/1", 2);
        let worker = recorder.clone();
        let a = worker.invoke(1, "n1", borrow("r1"));
        let b = worker.invoke(2, "n2", OpKind::List);
        worker.complete(
            a,
            OpResult::BorrowOk {
                borrow_id: "b1".into(),
                license: "L".into(),
            },
        );
        recorder.fault(FaultEvent {
            kind: "kill".into(),
            target: "n3".into(),
            start: 5,
            end: None,
            nodes: Vec::new(),
        });
        recorder.fault(FaultEvent {
            kind: "kill".into(),
            target: "n3".into(),
            start: 5,
            end: Some(9),
            nodes: vec!["n3".into()],
        });
        let recorded = recorder.finish().expect("finish");
        assert!(recorder.finish().is_err(), "finishing twice is refused");
        let loaded = load(&path).expect("load");
        assert_eq!(recorded, loaded);
        assert_eq!(loaded.licenses, vec![("F/1".to_string(), 2)]);
        assert_eq!(
            loaded.acknowledged_borrow_ids(),
            BTreeSet::from(["b1".to_string()])
        );
        assert_eq!(loaded.ops.len(), 2);
        assert_eq!(loaded.ops[0].id, a);
        assert!(loaded.ops[0].complete.is_some());
        let pending = &loaded.ops[1];
        assert_eq!(pending.id, b);
        assert!(pending.complete.is_none() && pending.result.is_indeterminate());
        assert_eq!(loaded.faults.len(), 1, "injection and heal merge");
        assert_eq!(loaded.faults[0].end, Some(9));
        assert_eq!(loaded.faults[0].nodes, ["n3"]);
        assert_eq!(loaded.started_unix_ms, Some(recorder.started_unix_ms()));
        assert!(loaded
            .wall_ms(2_000_000)
            .is_some_and(|ms| ms == recorder.started_unix_ms() + 2));
    }

    #[test]
    fn final_reads_keep_their_windows_and_become_operations() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("history.jsonl");
        let recorder = HistoryRecorder::create(&path).expect("recorder");
        let borrowed = recorder.invoke(1, "n1", borrow("r1"));
        recorder.complete(
            borrowed,
            OpResult::BorrowOk {
                borrow_id: "b1".into(),
                license: "L".into(),
            },
        );
        let mut read = NodeFinalRead::new("n2");
        read.record_get(
            "b1",
            100,
            110,
            OpResult::GetOk {
                license: "L".into(),
            },
        );
        read.record_list(
            120,
            130,
            OpResult::ListOk {
                licenses: BTreeMap::new(),
            },
        );
        recorder.final_read(read);
        recorder.finish().expect("finish");
        let loaded = load(&path).expect("load");
        let finals = loaded.final_read_ops();
        let shape: Vec<String> = finals
            .iter()
            .map(|op| {
                let client = if op.client == FINAL_READ_CLIENT {
                    "final"
                } else {
                    "?"
                };
                let complete = op.complete.map_or("-".to_string(), |t| t.to_string());
                let (id, node, kind) = (op.id - borrowed, &op.node, op.kind.name());
                format!("{id} {node} {kind} {}..{complete} {client}", op.invoke)
            })
            .collect();
        assert_eq!(
            shape,
            ["1 n2 get 100..110 final", "2 n2 list 120..130 final"]
        );
        assert_eq!(loaded.end_time(), loaded.workload_end_time().max(130));
    }

    #[test]
    fn the_recorder_can_be_shared_across_tasks() {
        fn shareable<T: Clone + Send + Sync + 'static>() {}
        shareable::<HistoryRecorder>();
    }

    #[test]
    fn load_ignores_a_cut_last_line_only() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("history.jsonl");
        let mut history = History::default();
        history.licenses.push(("F/1".into(), 1));
        history.save(&path).expect("save");
        let mut text = std::fs::read_to_string(&path).expect("read");
        text.push_str("{\"type\":\"invo");
        std::fs::write(&path, &text).expect("write");
        assert_eq!(load(&path).expect("cut line ignored"), history);
        text.push_str("\n{\"type\":\"license\",\"key\":\"F/2\",\"count\":1}\n");
        std::fs::write(&path, &text).expect("write");
        assert!(load(&path).is_err(), "a bad line in the middle is an error");
    }

    #[test]
    fn errors_are_classified_by_call() {
        let rpc = |code: i64| {
            RpcCallError::Rpc(licensed::client::RpcErrorObject {
                code,
                message: "m".into(),
                reason: None,
                data: None,
            })
        };
        let get = OpKind::Get {
            borrow_id: "b".into(),
        };
        assert_eq!(
            OpResult::from_error(&borrow("r"), &rpc(32)),
            OpResult::Conflict
        );
        assert_eq!(OpResult::from_error(&get, &rpc(34)), OpResult::NotFound);
        assert!(OpResult::from_error(&get, &rpc(-32603)).is_indeterminate());
        assert!(matches!(
            OpResult::from_error(&borrow("r"), &rpc(34)),
            OpResult::Failed { code: 34, .. }
        ));
    }
}
