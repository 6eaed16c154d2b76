//! This node's part in the write and read paths: proposals it made as leader (committed,
//! failed, pending), write batches it forwarded to the leader, read-index rounds, and
//! how long entries take from append to commit and from commit to apply.
//!
//! The two latencies are sampled from the Raft metrics stream: the moment this node's
//! last log index first reached `i` (a leader appends its own proposals; a follower
//! receives them) and the moment its committed index reached `i`, then its applied index.
//! The stream coalesces updates, so under load these are samples, not every entry.

use std::collections::VecDeque;
use std::sync::LazyLock;
use std::time::Instant;

use prometheus::{Histogram, IntCounter, IntCounterVec, IntGauge, Opts};

use super::{counter, gauge, histogram, registered};

/// Latency buckets for Raft work, seconds: 0.5 ms to about 8 s.
pub(super) const LATENCY_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.002, 0.004, 0.008, 0.016, 0.032, 0.064, 0.128, 0.256, 0.512, 1.024, 2.048,
    4.096, 8.192,
];
const BATCH_BUCKETS: &[f64] = &[1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0];

struct ProposalMetrics {
    committed: IntCounter,
    failed: IntCounter,
    pending: IntGauge,
    forwarded_ok: IntCounter,
    forwarded_error: IntCounter,
    forward_batch_size: Histogram,
    read_index_rounds: IntCounter,
    read_index_batch_size: Histogram,
    append_to_commit: Histogram,
    commit_to_apply: Histogram,
}

static PROPOSALS: LazyLock<ProposalMetrics> = LazyLock::new(|| {
    const FORWARDED: &str = "licensed_forward_batches_total";
    let forwarded = registered(
        FORWARDED,
        IntCounterVec::new(
            Opts::new(FORWARDED, "Batches of writes this node forwarded to the leader, by outcome (ok: the leader answered; error: no answer, the writes were retried)"),
            &["outcome"],
        ),
    );
    ProposalMetrics {
        committed: counter(
            "licensed_raft_proposals_committed_total",
            "Proposals this node appended as leader that were committed and applied",
        ),
        failed: counter(
            "licensed_raft_proposals_failed_total",
            "Proposals this node appended as leader that were not confirmed: an error, a lost leadership or the request timeout (the entry may still commit later)",
        ),
        pending: gauge(
            "licensed_raft_proposals_pending",
            "Proposals this node appended as leader that wait for commit and apply now",
        ),
        forwarded_ok: forwarded.with_label_values(&["ok"]),
        forwarded_error: forwarded.with_label_values(&["error"]),
        forward_batch_size: histogram(
            "licensed_forward_batch_size",
            "Writes per batch this node forwarded to the leader",
            BATCH_BUCKETS,
        ),
        read_index_rounds: counter(
            "licensed_read_index_rounds_total",
            "Read-index rounds this node started for linearizable reads (one confirms leadership with a quorum for a whole batch of reads)",
        ),
        read_index_batch_size: histogram(
            "licensed_read_index_batch_size",
            "Reads served by one read-index round of this node",
            BATCH_BUCKETS,
        ),
        append_to_commit: histogram(
            "licensed_raft_propose_commit_seconds",
            "Time from an entry reaching this node's log (a leader's own proposal, a follower's replicated entry) to this node seeing it committed; sampled",
            LATENCY_BUCKETS,
        ),
        commit_to_apply: histogram(
            "licensed_raft_commit_apply_seconds",
            "Time from this node seeing an entry committed to applying it to its ledger; sampled",
            LATENCY_BUCKETS,
        ),
    }
});

/// Makes every series of this module exist from the start.
pub(super) fn init() {
    LazyLock::force(&PROPOSALS);
}

/// One proposal this node appends as leader; counted as committed on [`Self::committed`],
/// else as failed when dropped (an error, or a timeout that abandoned the wait).
pub struct ProposalInFlight {
    done: bool,
}

impl ProposalInFlight {
    /// Starts counting a proposal as pending.
    pub fn start() -> ProposalInFlight {
        PROPOSALS.pending.inc();
        ProposalInFlight { done: false }
    }

    /// The proposal was committed and applied.
    pub fn committed(mut self) {
        self.done = true;
        PROPOSALS.committed.inc();
    }

    /// The proposal never entered the log (this node did not lead): neither outcome.
    pub fn not_proposed(mut self) {
        self.done = true;
    }
}

impl Drop for ProposalInFlight {
    fn drop(&mut self) {
        PROPOSALS.pending.dec();
        if !self.done {
            PROPOSALS.failed.inc();
        }
    }
}

/// Counts a batch of `size` writes forwarded to the leader, and whether it answered.
pub fn observe_forward(size: usize, answered: bool) {
    let m = &*PROPOSALS;
    m.forward_batch_size.observe(size as f64);
    if answered {
        m.forwarded_ok.inc();
    } else {
        m.forwarded_error.inc();
    }
}

/// Counts a read-index round serving `reads` reads.
pub fn observe_read_index_round(reads: usize) {
    PROPOSALS.read_index_rounds.inc();
    PROPOSALS.read_index_batch_size.observe(reads as f64);
}

/// Samples append → commit and commit → apply latencies from successive states of the
/// Raft metrics stream.
#[derive(Default)]
pub(super) struct CommitLatencies {
    appended: Marks,
    committed: Marks,
}

impl CommitLatencies {
    /// One state: last log, committed and applied index as this node has them now.
    pub(super) fn observe(&mut self, last: Option<u64>, commit: Option<u64>, applied: Option<u64>) {
        let now = Instant::now();
        self.appended.reached(last, now);
        self.committed.reached(commit, now);
        if let Some(at) = self.appended.passed(commit) {
            PROPOSALS.append_to_commit.observe((now - at).as_secs_f64());
        }
        if let Some(at) = self.committed.passed(applied) {
            PROPOSALS.commit_to_apply.observe((now - at).as_secs_f64());
        }
    }
}

/// When an index first reached each value seen, oldest first (bounded).
#[derive(Default)]
struct Marks {
    seen: Option<u64>,
    marks: VecDeque<(u64, Instant)>,
}

impl Marks {
    /// At most this many marks wait; a stalled commit drops the oldest.
    const LIMIT: usize = 1_024;

    fn reached(&mut self, index: Option<u64>, now: Instant) {
        let Some(index) = index else { return };
        if self.seen.is_some_and(|seen| index <= seen) {
            if self.seen.is_some_and(|seen| index < seen) {
                // Truncated (a new leader overwrote a suffix): forget marks past it.
                self.marks.retain(|(mark, _)| *mark <= index);
                self.seen = Some(index);
            }
            return;
        }
        self.seen = Some(index);
        if self.marks.len() == Self::LIMIT {
            self.marks.pop_front();
        }
        self.marks.push_back((index, now));
    }

    /// Takes the marks at or below `index`: the newest of them is the sample (the others
    /// were coalesced into the same update).
    fn passed(&mut self, index: Option<u64>) -> Option<Instant> {
        let index = index?;
        let mut newest = None;
        while let Some(&(mark, at)) = self.marks.front() {
            if mark > index {
                break;
            }
            newest = Some(at);
            self.marks.pop_front();
        }
        newest
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn marks_give_the_time_since_an_index_was_first_reached() {
        let t0 = Instant::now();
        let mut marks = Marks::default();
        marks.reached(Some(5), t0);
        marks.reached(Some(5), t0 + Duration::from_millis(3));
        marks.reached(Some(7), t0 + Duration::from_millis(4));
        assert_eq!(marks.passed(Some(4)), None);
        // Commit at 6 covers the mark at 5 only.
        assert_eq!(marks.passed(Some(6)), Some(t0));
        assert_eq!(marks.passed(Some(9)), Some(t0 + Duration::from_millis(4)));
        assert_eq!(marks.passed(Some(9)), None);
    }

    #[test]
    fn a_truncated_log_forgets_the_marks_past_it() {
        let t0 = Instant::now();
        let mut marks = Marks::default();
        marks.reached(Some(5), t0);
        marks.reached(Some(8), t0 + Duration::from_millis(1));
        marks.reached(Some(6), t0 + Duration::from_millis(2));
        marks.reached(Some(7), t0 + Duration::from_millis(3));
        assert_eq!(marks.passed(Some(7)), Some(t0 + Duration::from_millis(3)));
        assert!(marks.marks.is_empty());
    }
}
