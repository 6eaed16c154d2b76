//! Clock agreement between nodes: a leader stamps only while its clock agrees with a
//! quorum's.
//!
//! The ledger clock is the maximum of the leader stamps applied, and it never goes back.
//! One leader whose wall clock runs ahead would therefore drag it forward for good: every
//! real-dated borrow would look "in the past" (35) and live borrows would be forgotten
//! early. So every node-to-node request and answer carries the sender's wall clock
//! ([`CLOCK_HEADER`]); each node keeps the latest offset it saw for each peer, and:
//!
//! - a leader stamps a write or a read point only while the voters whose clocks are within
//!   `--max-clock-offset-ms` of its own (itself included) form a quorum;
//! - a leader that does not hands leadership to the follower whose clock is most typical
//!   ([`ClockBook::successor`]);
//! - `/readyz` and the `licensed_clock_ok` metric say whether this node's clock agrees
//!   (a follower judges by the leader it follows).
//!
//! Offsets from answers are estimated NTP-style (`peer − (sent + received) / 2`, with half
//! the round trip as the error); offsets from requests are one-way (the latency counts
//! against the sender). Samples older than [`FRESH_FOR`] are ignored.
//!
//! An offset is relative to this node's wall clock when it was taken. If this node's own
//! clock steps afterwards (an operator sets it, NTP steps it), an older sample would still
//! say the peer agrees with a clock that no longer exists: a node whose clock just jumped
//! an hour ahead, elected before every peer has answered it again, would stamp an hour
//! ahead. So every sample remembers both clocks at the time, and its offset is corrected
//! by how far the wall clock moved apart from the monotonic clock since.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::extract::{Request, State};
use axum::http::HeaderValue;
use axum::middleware::Next;
use axum::response::Response;

use super::NodeId;

/// The sender's wall clock, Unix milliseconds, on every node-to-node request and answer.
pub const CLOCK_HEADER: &str = "x-licensed-clock-ms";
/// The sending node's id, on node-to-node requests.
pub const NODE_HEADER: &str = "x-licensed-node";
/// Default `--max-clock-offset-ms`.
pub const DEFAULT_MAX_OFFSET: Duration = Duration::from_millis(1_000);
/// A sample older than this says nothing about a peer's clock now.
pub const FRESH_FOR: Duration = Duration::from_secs(10);

/// This node's wall clock in Unix milliseconds.
pub fn wall_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

#[derive(Debug, Clone, Copy)]
struct Sample {
    /// Peer clock minus ours, ms.
    offset_ms: i64,
    /// How far the estimate may be off, ms.
    error_ms: i64,
    /// Our wall clock when the sample was taken, Unix ms.
    our_wall_ms: i64,
    at: std::time::Instant,
}

impl Sample {
    /// The offset against our wall clock now: our clock's steps since the sample (wall
    /// time elapsed beyond monotonic time elapsed) are taken off it.
    fn offset_now(&self, wall_now_ms: i64) -> i64 {
        let monotonic_ms = self.at.elapsed().as_millis().min(i64::MAX as u128) as i64;
        let our_step_ms = (wall_now_ms - self.our_wall_ms) - monotonic_ms;
        self.offset_ms - our_step_ms
    }

    fn is_fresh(&self) -> bool {
        self.at.elapsed() < FRESH_FOR
    }
}

/// The latest clock offset seen for each peer, and the bound they must keep.
#[derive(Debug)]
pub struct ClockBook {
    max_offset_ms: i64,
    samples: Mutex<HashMap<NodeId, Sample>>,
}

impl ClockBook {
    /// A book with the `--max-clock-offset-ms` bound.
    pub fn new(max_offset: Duration) -> Arc<ClockBook> {
        Arc::new(ClockBook {
            max_offset_ms: max_offset.as_millis().min(i64::MAX as u128) as i64,
            samples: Mutex::new(HashMap::new()),
        })
    }

    /// The bound, ms.
    pub fn max_offset_ms(&self) -> i64 {
        self.max_offset_ms
    }

    /// Records an answer from `peer` carrying its clock `peer_ms`, received at
    /// `received_ms` (our wall clock) after `round_trip` (monotonic). The round trip is
    /// measured on the monotonic clock: had our wall clock stepped while the request was
    /// out, a wall-clock round trip would be as long as the step, and the error bound it
    /// widens would let a clock off by that step pass as agreeing.
    pub fn observe_answer(
        &self,
        peer: NodeId,
        peer_ms: i64,
        round_trip: Duration,
        received_ms: i64,
    ) {
        let half_ms = (round_trip.as_millis() / 2).min(i64::MAX as u128) as i64;
        self.record(
            peer,
            peer_ms - (received_ms - half_ms),
            half_ms,
            received_ms,
        );
    }

    /// Records a request from `peer` carrying its clock `peer_ms`, received at
    /// `received_ms`: a one-way sample, the transit time shows as the peer being behind.
    pub fn observe_request(&self, peer: NodeId, peer_ms: i64, received_ms: i64) {
        self.record(peer, peer_ms - received_ms, 0, received_ms);
    }

    fn record(&self, peer: NodeId, offset_ms: i64, error_ms: i64, our_wall_ms: i64) {
        let sample = Sample {
            offset_ms,
            error_ms,
            our_wall_ms,
            at: std::time::Instant::now(),
        };
        self.samples
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(peer, sample);
    }

    /// Fresh offsets (peer − us now, ms) by peer.
    pub fn offsets(&self) -> HashMap<NodeId, i64> {
        let now = wall_ms();
        self.samples
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .filter(|(_, sample)| sample.is_fresh())
            .map(|(peer, sample)| (*peer, sample.offset_now(now)))
            .collect()
    }

    fn agrees(&self, peer: NodeId) -> Option<bool> {
        self.agrees_at(peer, wall_ms())
    }

    /// Whether `peer`'s clock agrees with ours when ours reads `now_ms`.
    fn agrees_at(&self, peer: NodeId, now_ms: i64) -> Option<bool> {
        let samples = self.samples.lock().unwrap_or_else(PoisonError::into_inner);
        let sample = samples.get(&peer).filter(|s| s.is_fresh())?;
        Some(sample.offset_now(now_ms).abs() <= self.max_offset_ms + sample.error_ms)
    }

    /// Whether this node, leading `voters`, may stamp: the voters whose clocks agree with
    /// its own, itself included, form a quorum. `Err` says why not.
    pub fn may_stamp(&self, me: NodeId, voters: &BTreeSet<NodeId>) -> Result<(), String> {
        self.may_stamp_at(me, voters, wall_ms())
    }

    /// [`ClockBook::may_stamp`] for the stamp `now_ms`, our clock as read for the stamp
    /// itself: checked and stamped from one reading, a clock that steps in between (an
    /// NTP step, a VM resumed) cannot slip an unchecked time into the ledger.
    pub fn may_stamp_at(
        &self,
        me: NodeId,
        voters: &BTreeSet<NodeId>,
        now_ms: i64,
    ) -> Result<(), String> {
        let agreeing = voters
            .iter()
            .filter(|&&id| id == me || self.agrees_at(id, now_ms) == Some(true))
            .count();
        let quorum = voters.len() / 2 + 1;
        if voters.len() <= 1 || agreeing >= quorum {
            return Ok(());
        }
        Err(format!(
            "this node's clock is off from the other voters' by more than --max-clock-offset-ms ({} ms): {}; only {agreeing} of {} voters agree, a quorum is {quorum}",
            self.max_offset_ms,
            self.describe(),
            voters.len()
        ))
    }

    /// Whether a follower's clock agrees with its leader's (`Err` says why not). Unknown
    /// (no fresh sample yet) counts as agreeing.
    pub fn agrees_with_leader(&self, leader: NodeId) -> Result<(), String> {
        match self.agrees(leader) {
            Some(false) => Err(format!(
                "this node's clock is off from the leader's by more than --max-clock-offset-ms ({} ms): {}",
                self.max_offset_ms,
                self.describe()
            )),
            _ => Ok(()),
        }
    }

    /// The voter other than `me` whose clock is most typical of the others: the one
    /// closest to the median offset. `None` without fresh samples.
    pub fn successor(&self, me: NodeId, voters: &BTreeSet<NodeId>) -> Option<NodeId> {
        let offsets = self.offsets();
        let mut candidates: Vec<(NodeId, i64)> = voters
            .iter()
            .filter(|&&id| id != me)
            .filter_map(|id| offsets.get(id).map(|offset| (*id, *offset)))
            .collect();
        if candidates.is_empty() {
            return None;
        }
        candidates.sort_by_key(|(_, offset)| *offset);
        let median = candidates[candidates.len() / 2].1;
        candidates
            .iter()
            .min_by_key(|(id, offset)| ((offset - median).abs(), *id))
            .map(|(id, _)| *id)
    }

    /// `peer 2: -3600.0 s, peer 3: +0.0 s`.
    fn describe(&self) -> String {
        let mut offsets: Vec<(NodeId, i64)> = self.offsets().into_iter().collect();
        offsets.sort();
        if offsets.is_empty() {
            return "no peer clock seen yet".to_string();
        }
        offsets
            .iter()
            .map(|(peer, ms)| format!("peer {peer}: {:+.1} s", *ms as f64 / 1000.0))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// Middleware of the node-to-node router: records the sender's clock of each request
/// and puts ours on each answer.
pub async fn exchange(
    State(book): State<Arc<ClockBook>>,
    request: Request,
    next: Next,
) -> Response {
    let received = wall_ms();
    let peer_ms = number_header(&request, CLOCK_HEADER);
    let peer = number_header(&request, NODE_HEADER).and_then(|id| NodeId::try_from(id).ok());
    if let (Some(peer_ms), Some(peer)) = (peer_ms, peer) {
        book.observe_request(peer, peer_ms, received);
    }
    let mut response = next.run(request).await;
    if let Ok(value) = HeaderValue::from_str(&wall_ms().to_string()) {
        response.headers_mut().insert(CLOCK_HEADER, value);
    }
    response
}

fn number_header(request: &Request, name: &str) -> Option<i64> {
    request
        .headers()
        .get(name)
        .and_then(|value| value.to_str().ok())
        .and_then(|text| text.parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The round trip of a request sent at `sent_ms` and answered at `received_ms`.
    fn rtt(sent_ms: i64, received_ms: i64) -> Duration {
        Duration::from_millis((received_ms - sent_ms).max(0) as u64)
    }

    fn voters(ids: &[NodeId]) -> BTreeSet<NodeId> {
        ids.iter().copied().collect()
    }

    #[test]
    fn a_leader_an_hour_ahead_may_not_stamp() {
        let book = ClockBook::new(Duration::from_secs(1));
        let now = wall_ms();
        // Both followers answer with clocks an hour behind ours.
        book.observe_answer(2, now - 3_600_000, rtt(now, now + 2), now + 2);
        book.observe_answer(3, now - 3_600_000, rtt(now, now + 2), now + 2);
        let refusal = book.may_stamp(1, &voters(&[1, 2, 3])).unwrap_err();
        assert!(refusal.contains("-3600.0 s"), "{refusal}");
    }

    #[test]
    fn one_skewed_follower_does_not_stop_a_good_leader() {
        let book = ClockBook::new(Duration::from_secs(1));
        let now = wall_ms();
        book.observe_answer(2, now + 10, rtt(now, now + 4), now + 4);
        book.observe_answer(3, now - 3_600_000, rtt(now, now + 4), now + 4);
        assert!(book.may_stamp(1, &voters(&[1, 2, 3])).is_ok());
        // Five voters: the leader and one agreeing follower are not a quorum.
        assert!(book.may_stamp(1, &voters(&[1, 2, 3, 4, 5])).is_err());
        // Alone, a node always stamps.
        assert!(book.may_stamp(1, &voters(&[1])).is_ok());
    }

    #[test]
    fn the_round_trip_widens_the_bound() {
        let book = ClockBook::new(Duration::from_millis(100));
        let now = wall_ms();
        // 150 ms off, but the answer took 200 ms: within 100 + 100.
        book.observe_answer(2, now + 50, rtt(now - 200, now), now);
        assert!(book.agrees_with_leader(2).is_ok());
        book.observe_answer(2, now + 5_000, rtt(now - 200, now), now);
        assert!(book.agrees_with_leader(2).is_err());
    }

    #[test]
    fn a_sample_taken_before_our_own_clock_jumped_counts_the_jump() {
        let book = ClockBook::new(Duration::from_secs(1));
        let now = wall_ms();
        // Both peers agreed with our clock when it read ten minutes earlier than now; it
        // has since jumped ten minutes ahead (no monotonic time passed in between).
        let before_jump = now - 600_000;
        book.observe_answer(2, before_jump, rtt(before_jump, before_jump), before_jump);
        book.observe_request(3, before_jump, before_jump);
        let refusal = book.may_stamp(1, &voters(&[1, 2, 3])).unwrap_err();
        assert!(refusal.contains("peer 2: -600.0 s"), "{refusal}");
        assert!(refusal.contains("peer 3: -600.0 s"), "{refusal}");
        // A sample taken at the clock as it reads now agrees again.
        book.observe_answer(2, now, rtt(now, now), now);
        assert!(book.may_stamp(1, &voters(&[1, 2, 3])).is_ok());
    }

    #[test]
    fn our_clock_stepping_during_a_request_does_not_widen_the_bound() {
        let book = ClockBook::new(Duration::from_secs(1));
        let now = wall_ms();
        // Sent when our clock read ten minutes earlier; it jumped ten minutes ahead while
        // the request was out (2 ms of real time). The peer's clock is the unstepped one.
        let sent = now - 600_000;
        book.observe_answer(2, sent + 1, Duration::from_millis(2), now);
        book.observe_answer(3, sent + 1, Duration::from_millis(2), now);
        let refusal = book.may_stamp(1, &voters(&[1, 2, 3])).unwrap_err();
        assert!(refusal.contains("peer 2: -600.0 s"), "{refusal}");
    }

    #[test]
    fn the_successor_has_the_most_typical_clock() {
        let book = ClockBook::new(Duration::from_secs(1));
        let now = wall_ms();
        book.observe_answer(2, now - 3_600_000, rtt(now, now), now);
        book.observe_answer(3, now - 3_600_100, rtt(now, now), now);
        book.observe_answer(4, now - 10, rtt(now, now), now);
        assert_eq!(book.successor(1, &voters(&[1, 2, 3, 4])), Some(2));
        assert_eq!(book.successor(1, &voters(&[1])), None);
    }
}
