//! The load engine: N workers, each a tokio task with its own connection, driving a
//! [`Target`] in a closed or a fixed-rate open loop, then one merged [`Report`].
//!
//! - **Closed loop**: a worker sends its next request as soon as the previous one is
//!   answered. Throughput is what the server sustains at that concurrency; latency is
//!   measured from the send.
//! - **Open loop** (`rate`): requests are due at fixed instants (see [`Schedule`]) whatever
//!   the server does; latency is measured from the due instant, so time spent waiting for
//!   a busy client counts. Requests still due when the run ends are reported as `unsent`.
//!
//! Requests due (open loop) or sent (closed loop) during the warm-up are not recorded, and
//! an open-loop client still behind schedule when the warm-up ends skips what is left of
//! it. Requests sent before the end are waited for and recorded even if they finish after
//! it. In the open loop each client has one request in flight, so a rate needs at least
//! `rate × latency` clients; with fewer, requests queue and latency grows, as it would
//! for real clients.

use std::time::Duration;

use rand::rngs::StdRng;
use rand::SeedableRng;
use tokio::time::Instant;

use super::report::{Mode, Report, RunInfo};
use super::schedule::{Phases, Schedule};
use super::stats::{MergeError, Recorder};
use super::target::{Step, Target, TargetError, Worker};

/// Delay between creating the workers and the first request, so that every task is
/// spawned and waiting before the clock starts.
const START_DELAY: Duration = Duration::from_millis(20);

/// How a run is shaped.
#[derive(Debug, Clone, PartialEq)]
pub struct EngineConfig {
    /// Concurrent workers (simulated clients), each with its own connection.
    pub clients: usize,
    /// Time before measuring starts: connections open, caches warm.
    pub warmup: Duration,
    /// Measured time.
    pub duration: Duration,
    /// Total requests per second for the open loop; `None` for the closed loop.
    pub rate: Option<f64>,
    /// Seed of the workers' random choices (worker `i` uses `seed + i`).
    pub seed: u64,
}

/// Why a run could not be carried out.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// The configuration cannot describe a run.
    #[error("invalid run configuration: {0}")]
    Config(&'static str),
    /// A worker could not be set up.
    #[error(transparent)]
    Target(#[from] TargetError),
    /// A worker task panicked or was cancelled.
    #[error("a worker stopped abnormally: {0}")]
    Worker(#[from] tokio::task::JoinError),
    /// Statistics could not be recorded or merged.
    #[error(transparent)]
    Stats(#[from] MergeError),
}

/// Runs `config` against `target` and reports the measured phase.
pub async fn run<T: Target>(target: &T, config: &EngineConfig) -> Result<Report, EngineError> {
    validate(config)?;
    let workers = (0..config.clients)
        .map(|index| target.worker(index))
        .collect::<Result<Vec<_>, _>>()?;
    let phases = Phases::new(Instant::now() + START_DELAY, config.warmup, config.duration);
    let mut tasks = Vec::with_capacity(workers.len());
    for (index, worker) in workers.into_iter().enumerate() {
        let rng = StdRng::seed_from_u64(config.seed.wrapping_add(index as u64));
        let schedule = config
            .rate
            .map(|rate| Schedule::new(rate, config.clients, index));
        tasks.push(tokio::spawn(drive(worker, rng, phases, schedule)));
    }
    let mut merged = Recorder::default();
    for task in tasks {
        merged.merge(&task.await??)?;
    }
    let info = RunInfo {
        target: target.name().to_string(),
        workload: target.workload(),
        mode: match config.rate {
            Some(rate) => Mode::Open { rate },
            None => Mode::Closed,
        },
        clients: config.clients,
        urls: target.urls().to_vec(),
        warmup: config.warmup,
        duration: config.duration,
        seed: config.seed,
        notes: target.notes(),
    };
    Ok(Report::new(info, &merged)?)
}

fn validate(config: &EngineConfig) -> Result<(), EngineError> {
    if config.clients == 0 {
        return Err(EngineError::Config("at least one client is needed"));
    }
    if config.duration.is_zero() {
        return Err(EngineError::Config(
            "the measured duration must be positive",
        ));
    }
    if let Some(rate) = config.rate {
        if !(rate.is_finite() && rate > 0.0) {
            return Err(EngineError::Config("the rate must be a positive number"));
        }
    }
    Ok(())
}

/// One worker's loop; its recorder is merged by the caller.
async fn drive<W: Worker>(
    mut worker: W,
    mut rng: StdRng,
    phases: Phases,
    schedule: Option<Schedule>,
) -> Result<Recorder, MergeError> {
    let mut recorder = Recorder::default();
    let mut steps = Vec::new();
    tokio::time::sleep_until(phases.origin).await;
    match schedule {
        None => {
            while Instant::now() < phases.end {
                steps.clear();
                worker.run_op(&mut rng, &mut steps).await;
                record_steps(&mut recorder, &steps, None, &phases)?;
            }
        }
        Some(schedule) => {
            let mut k = 0;
            loop {
                let mut due = phases.origin + schedule.due(k);
                if due < phases.measure_from && Instant::now() >= phases.measure_from {
                    // Behind when the warm-up ends: its backlog is dropped rather than
                    // carried over, or a rate too high for the clients would leave the
                    // measured phase sending nothing but warm-up requests.
                    k = schedule.first_due_at_or_after(phases.measure_from - phases.origin);
                    due = phases.origin + schedule.due(k);
                }
                if due >= phases.end {
                    break;
                }
                if Instant::now() >= phases.end {
                    // Behind schedule at the end: what was due in the window is unsent.
                    let from = due.max(phases.measure_from) - phases.origin;
                    let to = phases.end - phases.origin;
                    recorder.unsent += schedule.count_due_between(from, to);
                    break;
                }
                tokio::time::sleep_until(due).await;
                steps.clear();
                worker.run_op(&mut rng, &mut steps).await;
                record_steps(&mut recorder, &steps, Some(due), &phases)?;
                k += 1;
            }
        }
    }
    Ok(recorder)
}

/// Records the steps of one operation. The first step's latency runs from `due` when the
/// operation had a due time (open loop), so the wait for a busy client is included; any
/// further steps are timed from their own start. Steps outside the measured window
/// are dropped.
fn record_steps(
    recorder: &mut Recorder,
    steps: &[Step],
    due: Option<Instant>,
    phases: &Phases,
) -> Result<(), MergeError> {
    for (index, step) in steps.iter().enumerate() {
        let since = match due {
            Some(due) if index == 0 => due.min(step.started),
            _ => step.started,
        };
        if phases.is_measured(since) {
            recorder.record(step.op, step.finished - since, &step.result)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::outcome::{ErrorCode, Failure};
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::Arc;

    fn step(op: &'static str, started: Instant, millis: u64) -> Step {
        Step {
            op,
            started,
            finished: started + Duration::from_millis(millis),
            result: Ok(()),
        }
    }

    #[test]
    fn open_loop_latency_counts_from_the_due_time() {
        let origin = Instant::now();
        let phases = Phases::new(origin, Duration::from_secs(1), Duration::from_secs(10));
        let due = origin + Duration::from_secs(2);
        // Sent 300 ms late because the client was busy, answered in 5 ms, followed by a
        // 4 ms second step.
        let sent = due + Duration::from_millis(300);
        let steps = [
            step("borrow", sent, 5),
            step("return", sent + Duration::from_millis(5), 4),
        ];
        let mut recorder = Recorder::default();
        record_steps(&mut recorder, &steps, Some(due), &phases).unwrap();
        let borrow = recorder.ops["borrow"].latency.max();
        assert!((304_000..=306_000).contains(&borrow), "{borrow} µs");
        let ret = recorder.ops["return"].latency.max();
        assert!((3_990..=4_010).contains(&ret), "{ret} µs");

        let mut closed = Recorder::default();
        record_steps(&mut closed, &steps[..1], None, &phases).unwrap();
        let borrow = closed.ops["borrow"].latency.max();
        assert!((4_990..=5_010).contains(&borrow), "{borrow} µs");
    }

    #[test]
    fn warm_up_and_late_steps_are_not_recorded() {
        let origin = Instant::now();
        let phases = Phases::new(origin, Duration::from_secs(1), Duration::from_secs(1));
        let mut recorder = Recorder::default();
        let early = [step("get", origin + Duration::from_millis(999), 5)];
        record_steps(&mut recorder, &early, None, &phases).unwrap();
        let late = [step("get", origin + Duration::from_secs(2), 5)];
        record_steps(&mut recorder, &late, None, &phases).unwrap();
        assert!(recorder.ops.is_empty());
        // Due in the warm-up but sent after it: its due time decides.
        let sent_after = [step("get", origin + Duration::from_millis(1100), 5)];
        let due = origin + Duration::from_millis(900);
        record_steps(&mut recorder, &sent_after, Some(due), &phases).unwrap();
        assert!(recorder.ops.is_empty());
    }

    /// A target whose operation takes a fixed time and fails every fourth time.
    struct Sleeper {
        urls: Vec<String>,
        latency: Duration,
        calls: Arc<AtomicU64>,
    }

    struct SleeperWorker {
        latency: Duration,
        calls: Arc<AtomicU64>,
    }

    impl Target for Sleeper {
        type Worker = SleeperWorker;
        fn name(&self) -> &'static str {
            "sleeper"
        }
        fn workload(&self) -> String {
            "sleep".into()
        }
        fn urls(&self) -> &[String] {
            &self.urls
        }
        fn worker(&self, _index: usize) -> Result<SleeperWorker, TargetError> {
            Ok(SleeperWorker {
                latency: self.latency,
                calls: self.calls.clone(),
            })
        }
    }

    impl Worker for SleeperWorker {
        async fn run_op(&mut self, _rng: &mut StdRng, steps: &mut Vec<Step>) {
            let latency = self.latency;
            let call = self.calls.fetch_add(1, Ordering::Relaxed);
            crate::target::timed("sleep", steps, async move {
                tokio::time::sleep(latency).await;
                if call % 4 == 3 {
                    Err(Failure::new(ErrorCode::Refused("fourth"), "every fourth"))
                } else {
                    Ok(())
                }
            })
            .await;
        }
    }

    fn sleeper(latency: Duration) -> Sleeper {
        Sleeper {
            urls: vec!["memory".into()],
            latency,
            calls: Arc::new(AtomicU64::new(0)),
        }
    }

    // These run on the real clock, so their bounds leave room for a busy machine; the
    // open-loop counts are exact because every due request is either recorded or unsent.

    #[tokio::test]
    async fn closed_loop_throughput_follows_latency() {
        // 4 clients, 10 ms per op, 300 ms measured: at most 4 × 30 ops (+ one in flight each).
        let config = EngineConfig {
            clients: 4,
            warmup: Duration::from_millis(50),
            duration: Duration::from_millis(300),
            rate: None,
            seed: 1,
        };
        let report = run(&sleeper(Duration::from_millis(10)), &config)
            .await
            .unwrap();
        assert!((40..=124).contains(&report.ops), "{} ops", report.ops);
        assert_eq!(report.unsent, 0);
        assert!(report.errors > 0 && report.errors_by_code["fourth"] == report.errors);
        assert!(
            report.latency_ms.p50 >= 10.0 && report.latency_ms.p50 < 50.0,
            "{:?}",
            report.latency_ms
        );
    }

    #[tokio::test]
    async fn open_loop_keeps_the_rate_and_shows_queueing() {
        // 100 ops/s over 2 clients for 1 s: each client is due every 20 ms, 100 in all.
        let config = EngineConfig {
            clients: 2,
            warmup: Duration::ZERO,
            duration: Duration::from_secs(1),
            rate: Some(100.0),
            seed: 1,
        };
        let fast = run(&sleeper(Duration::from_millis(5)), &config)
            .await
            .unwrap();
        assert_eq!(fast.ops + fast.unsent, 100);
        assert!(fast.ops >= 90, "{} ops", fast.ops);
        assert!(fast.latency_ms.p50 >= 5.0, "{:?}", fast.latency_ms);

        // 40 ms per op at 20 ms spacing: each client falls further behind, the latency
        // measured from the due time grows with it, and about half never goes out.
        let slow = run(&sleeper(Duration::from_millis(40)), &config)
            .await
            .unwrap();
        assert_eq!(slow.ops + slow.unsent, 100);
        assert!((30..=60).contains(&slow.ops), "{} ops", slow.ops);
        assert!(slow.latency_ms.max > 300.0, "{:?}", slow.latency_ms);

        // The backlog of a too-slow warm-up does not spill into the measured phase.
        let warmed = EngineConfig {
            warmup: Duration::from_millis(500),
            ..config
        };
        let slow = run(&sleeper(Duration::from_millis(40)), &warmed)
            .await
            .unwrap();
        assert_eq!(slow.ops + slow.unsent, 100);
        assert!((30..=60).contains(&slow.ops), "{} ops", slow.ops);
    }

    #[tokio::test]
    async fn configurations_that_cannot_run_are_refused() {
        let mut config = EngineConfig {
            clients: 0,
            warmup: Duration::ZERO,
            duration: Duration::from_secs(1),
            rate: None,
            seed: 0,
        };
        let target = sleeper(Duration::ZERO);
        assert!(matches!(
            run(&target, &config).await,
            Err(EngineError::Config(_))
        ));
        config.clients = 1;
        config.rate = Some(0.0);
        assert!(matches!(
            run(&target, &config).await,
            Err(EngineError::Config(_))
        ));
        config.rate = Some(f64::NAN);
        assert!(matches!(
            run(&target, &config).await,
            Err(EngineError::Config(_))
        ));
    }
}
