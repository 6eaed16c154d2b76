//! Requests to the same destination sent together: a follower forwards the writes its
//! clients made while earlier forwards were in flight as one request to the leader, and
//! concurrent linearizable reads share one read-index round.
//!
//! Each forwarded write used to be its own HTTP request, parsed and answered on the
//! leader, which is the busiest node. Here a caller queues its item; up to
//! [`MAX_IN_FLIGHT`] sender tasks each take everything queued for one destination (at
//! most [`MAX_BATCH`] items), send it as one request and hand every caller its own
//! answer. Alone, an item is sent at once; under load, batches grow with the time a
//! batch takes, like a group commit. A batch is taken from the queue when it is sent, so
//! every item's request starts after the item was queued: what a read needs from its
//! read index.

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};

use std::time::Duration;

use tokio::sync::oneshot;

/// Sender tasks at most at any time.
pub const MAX_IN_FLIGHT: usize = 2;
/// Items per request at most.
pub const MAX_BATCH: usize = 256;
/// How long a sender task waits for its batch before it moves on to the next one. A
/// batch normally answers within a commit (milliseconds); one sent into a dead link
/// hangs until its timeout, and must not hold back the batches behind it once the link
/// is back. The late batch still answers its own callers when it ends.
pub const MAX_HOLD: Duration = Duration::from_millis(100);

/// Sends one batch to a destination: one answer per item, in order, or one error for
/// the whole batch.
pub type SendBatch<K, P, R, E> =
    Arc<dyn Fn(K, Vec<P>) -> Pin<Box<dyn Future<Output = Result<Vec<R>, E>> + Send>> + Send + Sync>;

/// Batches items per destination `K`; each caller gets `Result<R, E>` for its item.
pub struct Batcher<K, P, R, E> {
    send: SendBatch<K, P, R, E>,
    queue: Arc<Mutex<Queue<K, P, R, E>>>,
}

type Reply<R, E> = oneshot::Sender<Result<R, E>>;

struct Queue<K, P, R, E> {
    in_flight: usize,
    waiting: VecDeque<(K, P, Reply<R, E>)>,
}

impl<K, P, R, E> Batcher<K, P, R, E>
where
    K: Clone + PartialEq + Send + 'static,
    P: Send + 'static,
    R: Send + 'static,
    E: Clone + Send + 'static,
{
    /// A batcher sending with `send`.
    pub fn new(send: SendBatch<K, P, R, E>) -> Self {
        Batcher {
            send,
            queue: Arc::new(Mutex::new(Queue {
                in_flight: 0,
                waiting: VecDeque::new(),
            })),
        }
    }

    /// Sends `item` to `to` within some batch; `None` if the sender task died (treat as
    /// an unknown outcome: the item may have been sent).
    pub async fn call(&self, to: K, item: P) -> Option<Result<R, E>> {
        let (tx, rx) = oneshot::channel();
        let start_sender = {
            let mut queue = self.queue.lock().unwrap_or_else(PoisonError::into_inner);
            queue.waiting.push_back((to, item, tx));
            if queue.in_flight < MAX_IN_FLIGHT {
                queue.in_flight += 1;
                true
            } else {
                false
            }
        };
        if start_sender {
            // A task of its own: a caller that gives up must not strand the batch.
            tokio::spawn(send_all(self.send.clone(), self.queue.clone()));
        }
        rx.await.ok()
    }
}

/// Sends batches until nothing is queued.
async fn send_all<K, P, R, E>(send: SendBatch<K, P, R, E>, queue: Arc<Mutex<Queue<K, P, R, E>>>)
where
    K: Clone + PartialEq + Send + 'static,
    P: Send + 'static,
    R: Send + 'static,
    E: Clone + Send + 'static,
{
    // A panicking send ends this task: give its slot back and let the queued callers
    // see `None` rather than wait for a task that will not come.
    struct Release<K, P, R, E>(Arc<Mutex<Queue<K, P, R, E>>>);
    impl<K, P, R, E> Drop for Release<K, P, R, E> {
        fn drop(&mut self) {
            if std::thread::panicking() {
                let mut queue = self.0.lock().unwrap_or_else(PoisonError::into_inner);
                queue.in_flight = queue.in_flight.saturating_sub(1);
                if queue.in_flight == 0 {
                    queue.waiting.clear();
                }
            }
        }
    }
    let _release = Release(queue.clone());
    loop {
        let (to, items, replies) = {
            let mut queue = queue.lock().unwrap_or_else(PoisonError::into_inner);
            let Some(to) = queue.waiting.front().map(|(to, _, _)| to.clone()) else {
                queue.in_flight -= 1;
                return;
            };
            // Everything for the first item's destination, in arrival order.
            let mut items = Vec::new();
            let mut replies = Vec::new();
            let mut rest = VecDeque::with_capacity(queue.waiting.len());
            while let Some((key, item, reply)) = queue.waiting.pop_front() {
                if key == to && items.len() < MAX_BATCH {
                    items.push(item);
                    replies.push(reply);
                } else {
                    rest.push_back((key, item, reply));
                }
            }
            queue.waiting = rest;
            (to, items, replies)
        };
        let delivery = tokio::spawn(deliver(send(to, items), replies));
        // Dropping the handle after the hold leaves the delivery running on its own.
        let _ = tokio::time::timeout(MAX_HOLD, delivery).await;
    }
}

/// Awaits one batch's answers and hands each caller its own.
async fn deliver<R, E: Clone>(
    answers: impl Future<Output = Result<Vec<R>, E>>,
    replies: Vec<Reply<R, E>>,
) {
    let sent = replies.len();
    match answers.await {
        Ok(answers) if answers.len() == sent => {
            for (reply, answer) in replies.into_iter().zip(answers) {
                let _ = reply.send(Ok(answer));
            }
        }
        // A reply of the wrong length cannot be matched to callers: dropping their
        // senders tells them the outcome is unknown.
        Ok(_) => drop(replies),
        Err(error) => {
            for reply in replies {
                let _ = reply.send(Err(error.clone()));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    use super::*;

    /// How long a batch or round on a dead link hangs in the tests: 20 times the hold.
    const HUNG: Duration = Duration::from_secs(2);

    /// Echoes each item doubled after a pause; records every batch's destination and size.
    fn doubling(
        batches: Arc<Mutex<Vec<(u8, usize)>>>,
        pause: Duration,
    ) -> SendBatch<u8, u64, u64, String> {
        Arc::new(move |to, items: Vec<u64>| {
            let batches = batches.clone();
            Box::pin(async move {
                batches.lock().expect("lock").push((to, items.len()));
                tokio::time::sleep(pause).await;
                if to == 9 {
                    return Err("destination 9 is down".to_string());
                }
                Ok(items.into_iter().map(|item| item * 2).collect())
            })
        })
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn every_caller_gets_its_own_answer_and_batches_form_under_load() {
        let batches = Arc::new(Mutex::new(Vec::new()));
        let batcher = Arc::new(Batcher::new(doubling(
            batches.clone(),
            Duration::from_millis(10),
        )));
        let mut callers = Vec::new();
        for item in 0..300u64 {
            let batcher = batcher.clone();
            callers.push(tokio::spawn(async move {
                let to = (item % 2) as u8;
                (item, batcher.call(to, item).await)
            }));
        }
        for caller in callers {
            let (item, answer) = caller.await.expect("caller");
            assert_eq!(answer, Some(Ok(item * 2)));
        }
        let batches = batches.lock().expect("lock");
        let sent: usize = batches.iter().map(|(_, size)| size).sum();
        assert_eq!(sent, 300, "every item sent exactly once");
        assert!(
            batches.len() < 60,
            "300 concurrent items took {} batches",
            batches.len()
        );
        assert!(batches.iter().all(|(_, size)| *size <= MAX_BATCH));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn every_batch_is_sent_after_each_of_its_items_was_queued() {
        // Each send answers its own number for every item: an item must get the number
        // of a send that started after the item was queued.
        let started = Arc::new(AtomicUsize::new(0));
        let counted = started.clone();
        let send: SendBatch<(), (), usize, String> = Arc::new(move |(), items: Vec<()>| {
            let number = counted.fetch_add(1, Ordering::SeqCst) + 1;
            Box::pin(async move {
                tokio::time::sleep(Duration::from_millis(20)).await;
                Ok(vec![number; items.len()])
            })
        });
        let batcher = Arc::new(Batcher::new(send));
        let mut callers = Vec::new();
        for n in 0..200u64 {
            let (batcher, started) = (batcher.clone(), started.clone());
            callers.push(tokio::spawn(async move {
                tokio::time::sleep(Duration::from_millis(n % 50)).await;
                let before = started.load(Ordering::SeqCst);
                let number = batcher.call((), ()).await.expect("answered").expect("ok");
                (before, number)
            }));
        }
        for caller in callers {
            let (before, number) = caller.await.expect("caller");
            assert!(
                number > before,
                "answered by send {number}, which started before the call (sends started then: {before})"
            );
        }
        let sends = started.load(Ordering::SeqCst);
        assert!(
            (1..50).contains(&sends),
            "200 callers over 50 ms with 20 ms sends took {sends} sends"
        );
    }

    #[tokio::test]
    async fn a_failed_batch_fails_each_of_its_callers_and_no_other() {
        let batches = Arc::new(Mutex::new(Vec::new()));
        let batcher = Arc::new(Batcher::new(doubling(batches, Duration::from_millis(5))));
        let (down, up) = tokio::join!(batcher.call(9, 1), batcher.call(1, 2));
        assert_eq!(down, Some(Err("destination 9 is down".to_string())));
        assert_eq!(up, Some(Ok(4)));
    }

    #[tokio::test]
    async fn senders_stop_when_the_queue_is_empty() {
        let batches = Arc::new(Mutex::new(Vec::new()));
        let batcher = Batcher::new(doubling(batches.clone(), Duration::ZERO));
        assert_eq!(batcher.call(1, 21).await, Some(Ok(42)));
        for _ in 0..10 {
            tokio::task::yield_now().await;
        }
        let queue = batcher.queue.lock().expect("lock");
        assert_eq!(queue.in_flight, 0);
        assert!(queue.waiting.is_empty());
        assert_eq!(batches.lock().expect("lock").len(), 1);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_batch_stuck_on_a_dead_link_does_not_hold_back_later_ones() {
        // Batches holding one of the first items hang for two seconds (sent into a
        // blackholed link); the link then works again, and a later item must not wait for
        // the hung batches. Whether the first items went out in one batch or in two
        // depends on scheduling; the hang follows the items, so either way is covered.
        let hung_sent = Arc::new(AtomicUsize::new(0));
        let counted = hung_sent.clone();
        let send: SendBatch<u8, u64, u64, String> = Arc::new(move |_, items: Vec<u64>| {
            let first = items
                .iter()
                .filter(|item| **item < MAX_IN_FLIGHT as u64)
                .count();
            counted.fetch_add(first, Ordering::SeqCst);
            let hangs = first > 0;
            Box::pin(async move {
                if hangs {
                    tokio::time::sleep(HUNG).await;
                }
                Ok(items)
            })
        });
        let batcher = Arc::new(Batcher::new(send));
        let hung: Vec<_> = (0..MAX_IN_FLIGHT as u64)
            .map(|item| {
                let batcher = batcher.clone();
                tokio::spawn(async move { batcher.call(1, item).await })
            })
            .collect();
        // The later item comes after the first ones were sent.
        while hung_sent.load(Ordering::SeqCst) < MAX_IN_FLIGHT {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let started = tokio::time::Instant::now();
        assert_eq!(batcher.call(1, 99).await, Some(Ok(99)));
        assert!(
            started.elapsed() < HUNG / 2,
            "waited {:?} behind hung batches",
            started.elapsed()
        );
        for caller in hung {
            assert!(matches!(caller.await.expect("caller"), Some(Ok(_))));
        }
    }

    #[tokio::test]
    async fn a_caller_that_gives_up_leaves_the_rest_of_its_batch_answered() {
        let calls = Arc::new(AtomicUsize::new(0));
        let counted = calls.clone();
        let send: SendBatch<u8, u64, u64, String> = Arc::new(move |_, items: Vec<u64>| {
            counted.fetch_add(1, Ordering::SeqCst);
            Box::pin(async move {
                tokio::time::sleep(Duration::from_millis(20)).await;
                Ok(items)
            })
        });
        let batcher = Arc::new(Batcher::new(send));
        let impatient = tokio::time::timeout(Duration::from_millis(1), batcher.call(1, 7));
        let patient = batcher.call(1, 8);
        let (impatient, patient) = tokio::join!(impatient, patient);
        assert!(impatient.is_err());
        assert_eq!(patient, Some(Ok(8)));
        assert!(calls.load(Ordering::SeqCst) >= 1);
    }
}
