//! Rounds shared by concurrent callers: many linearizable reads, one read index.
//!
//! A linearizable read needs a read index obtained *after* the read arrived. Concurrent
//! reads can share one: a caller joins the queue for the next round, and a round takes
//! everyone queued when it starts, so every caller's round starts after its call. While
//! a round runs, newcomers queue for the one after it. Under load the number of rounds
//! no longer grows with the number of reads (a follower sends one read-index request to
//! the leader per round instead of one per read); alone, a read waits for exactly one
//! round, as before.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};

use std::time::Duration;

use tokio::sync::oneshot;

/// How long the driver waits for a round before it starts the next one for the reads
/// queued since. A round normally takes a round trip; one stuck on a dead link hangs
/// until its timeout, and must not hold back the reads after it once the link is back.
/// The late round still answers its own callers when it ends.
pub const MAX_HOLD: Duration = Duration::from_millis(100);

/// One round: an async function whose answer every caller queued for it receives.
pub type Round<T> = Arc<dyn Fn() -> Pin<Box<dyn Future<Output = T> + Send>> + Send + Sync>;

/// Runs `round` once for each batch of concurrent callers.
pub struct Coalescer<T> {
    round: Round<T>,
    queue: Arc<Mutex<Queue<T>>>,
}

struct Queue<T> {
    /// A driver task is running rounds.
    running: bool,
    /// Callers waiting for the next round to start.
    waiting: Vec<oneshot::Sender<T>>,
}

impl<T: Clone + Send + 'static> Coalescer<T> {
    /// A coalescer running `round`.
    pub fn new(round: Round<T>) -> Self {
        Coalescer {
            round,
            queue: Arc::new(Mutex::new(Queue {
                running: false,
                waiting: Vec::new(),
            })),
        }
    }

    /// The answer of a round that started after this call. `None` only if the round
    /// panicked (its driver task died); callers treat that like a failed attempt.
    pub async fn call(&self) -> Option<T> {
        let (tx, rx) = oneshot::channel();
        let start_driver = {
            let mut queue = self.queue.lock().unwrap_or_else(PoisonError::into_inner);
            queue.waiting.push(tx);
            !std::mem::replace(&mut queue.running, true)
        };
        if start_driver {
            // A task of its own, so that a caller giving up (a timeout, a dropped
            // connection) cannot strand the others queued behind it.
            tokio::spawn(drive(self.round.clone(), self.queue.clone()));
        }
        rx.await.ok()
    }
}

/// Runs rounds until nobody waits.
async fn drive<T: Clone + Send + 'static>(round: Round<T>, queue: Arc<Mutex<Queue<T>>>) {
    // If a round panics, this task ends with the queue still marked running: make sure
    // the next caller starts a new driver, and that everyone waiting sees `None` (and
    // retries) instead of waiting for a round that no task will run.
    struct Reset<T>(Arc<Mutex<Queue<T>>>);
    impl<T> Drop for Reset<T> {
        fn drop(&mut self) {
            if std::thread::panicking() {
                let mut queue = self.0.lock().unwrap_or_else(PoisonError::into_inner);
                queue.running = false;
                queue.waiting.clear();
            }
        }
    }
    let _reset = Reset(queue.clone());
    loop {
        let batch = {
            let mut queue = queue.lock().unwrap_or_else(PoisonError::into_inner);
            if queue.waiting.is_empty() {
                queue.running = false;
                return;
            }
            std::mem::take(&mut queue.waiting)
        };
        let this_round = round();
        let answering = tokio::spawn(async move {
            let answer = this_round.await;
            for waiter in batch {
                // A waiter that gave up dropped its receiver; nothing to do for it.
                let _ = waiter.send(answer.clone());
            }
        });
        // Dropping the handle after the hold leaves the round running on its own.
        let _ = tokio::time::timeout(MAX_HOLD, answering).await;
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::time::Duration;

    use super::*;

    /// How long a batch or round on a dead link hangs in the tests: 20 times the hold.
    const HUNG: Duration = Duration::from_secs(2);

    /// A round that sleeps and answers its own number, counting rounds started.
    fn numbered_rounds(started: Arc<AtomicU64>, pause: Duration) -> Round<u64> {
        Arc::new(move || {
            let number = started.fetch_add(1, Ordering::SeqCst) + 1;
            Box::pin(async move {
                tokio::time::sleep(pause).await;
                number
            })
        })
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_callers_share_rounds_that_start_after_their_call() {
        let started = Arc::new(AtomicU64::new(0));
        let coalescer = Arc::new(Coalescer::new(numbered_rounds(
            started.clone(),
            Duration::from_millis(20),
        )));
        let mut callers = Vec::new();
        for n in 0..200u64 {
            let (coalescer, started) = (coalescer.clone(), started.clone());
            callers.push(tokio::spawn(async move {
                tokio::time::sleep(Duration::from_millis(n % 50)).await;
                let before = started.load(Ordering::SeqCst);
                let round = coalescer.call().await.expect("a round answers");
                (before, round)
            }));
        }
        for caller in callers {
            let (before, round) = caller.await.expect("caller");
            assert!(
                round > before,
                "answered by round {round}, which started before the call (rounds started then: {before})"
            );
        }
        let rounds = started.load(Ordering::SeqCst);
        assert!(
            (1..50).contains(&rounds),
            "200 callers over 50 ms with 20 ms rounds took {rounds} rounds"
        );
    }

    #[tokio::test]
    async fn a_lone_caller_gets_one_round_and_the_driver_stops() {
        let started = Arc::new(AtomicU64::new(0));
        let coalescer = Coalescer::new(numbered_rounds(started.clone(), Duration::ZERO));
        assert_eq!(coalescer.call().await, Some(1));
        assert_eq!(coalescer.call().await, Some(2));
        assert_eq!(started.load(Ordering::SeqCst), 2);
        tokio::task::yield_now().await;
        let queue = coalescer.queue.lock().expect("lock");
        assert!(queue.waiting.is_empty());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_round_stuck_on_a_dead_link_does_not_hold_back_later_reads() {
        // The first round hangs for two seconds; a read queued after it must get a round of
        // its own long before that, and the hung round still answers its reader.
        let started = Arc::new(AtomicU64::new(0));
        let counted = started.clone();
        let round: Round<u64> = Arc::new(move || {
            let number = counted.fetch_add(1, Ordering::SeqCst) + 1;
            Box::pin(async move {
                if number == 1 {
                    tokio::time::sleep(HUNG).await;
                }
                number
            })
        });
        let coalescer = Arc::new(Coalescer::new(round));
        let first = {
            let coalescer = coalescer.clone();
            tokio::spawn(async move { coalescer.call().await })
        };
        tokio::time::sleep(Duration::from_millis(10)).await;
        let waited = tokio::time::Instant::now();
        assert_eq!(coalescer.call().await, Some(2));
        assert!(
            waited.elapsed() < HUNG / 2,
            "waited {:?} behind a hung round",
            waited.elapsed()
        );
        assert_eq!(first.await.expect("first reader"), Some(1));
    }

    #[tokio::test]
    async fn a_caller_that_gives_up_does_not_strand_the_others() {
        let started = Arc::new(AtomicU64::new(0));
        let coalescer = Arc::new(Coalescer::new(numbered_rounds(
            started.clone(),
            Duration::from_millis(30),
        )));
        let impatient = tokio::time::timeout(Duration::from_millis(1), coalescer.call()).await;
        assert!(
            impatient.is_err(),
            "the round takes longer than the timeout"
        );
        let patient = coalescer.call().await;
        assert_eq!(patient, Some(2));
    }
}
