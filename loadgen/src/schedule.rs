//! Time in a run: the warm-up and measured phases, and the fixed-rate schedule of the
//! open loop.
//!
//! In the open loop every worker owns an evenly spaced slice of the total rate: with `R`
//! ops/s over `N` workers, worker `i` is due at `i/R + k·N/R` seconds for `k = 0, 1, ...`,
//! so the merged stream is one request every `1/R` seconds. A request's latency runs from
//! the moment it was *due*, not from when it was sent: a server that stalls makes the
//! requests queued behind the stall late, and that lateness is part of what a client at
//! that rate would see (measuring from the send instead hides it: "coordinated omission").

use std::time::Duration;

use tokio::time::Instant;

/// The phases of a run, shared by all workers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Phases {
    /// When the first requests are due; every schedule counts from here.
    pub origin: Instant,
    /// End of the warm-up: requests due from here on are measured.
    pub measure_from: Instant,
    /// End of the run: no request due from here on is sent.
    pub end: Instant,
}

impl Phases {
    /// Phases starting at `origin`: `warmup`, then `duration` measured.
    pub fn new(origin: Instant, warmup: Duration, duration: Duration) -> Phases {
        let measure_from = origin + warmup;
        Phases {
            origin,
            measure_from,
            end: measure_from + duration,
        }
    }

    /// Whether a request that was due (or started) at `at` counts in the results.
    pub fn is_measured(&self, at: Instant) -> bool {
        at >= self.measure_from && at < self.end
    }
}

/// One worker's share of a fixed total rate.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Schedule {
    /// Nanoseconds between two requests of this worker.
    interval_nanos: f64,
    /// Nanoseconds from the origin to this worker's first request.
    offset_nanos: f64,
}

impl Schedule {
    /// Worker `worker` of `workers` sharing `rate` requests per second. `rate` must be
    /// positive and finite and `worker < workers` (the engine checks both first).
    pub fn new(rate: f64, workers: usize, worker: usize) -> Schedule {
        let gap_nanos = 1e9 / rate;
        Schedule {
            interval_nanos: gap_nanos * workers as f64,
            offset_nanos: gap_nanos * worker as f64,
        }
    }

    /// When request `k` of this worker is due, counted from the origin.
    pub fn due(&self, k: u64) -> Duration {
        nanos(self.offset_nanos + k as f64 * self.interval_nanos)
    }

    /// How many of this worker's requests are due in `[from, to)`, counted from the origin.
    pub fn count_due_between(&self, from: Duration, to: Duration) -> u64 {
        let first = self.first_due_at_or_after(from);
        let past_last = self.first_due_at_or_after(to);
        past_last.saturating_sub(first)
    }

    /// The index of the first request due at or after `at`, counted from the origin.
    pub fn first_due_at_or_after(&self, at: Duration) -> u64 {
        let since_first = at.as_nanos() as f64 - self.offset_nanos;
        if since_first <= 0.0 {
            return 0;
        }
        let mut k = (since_first / self.interval_nanos).ceil() as u64;
        // Float rounding can land one off; `due` is the definition, so settle on it.
        while k > 0 && self.due(k - 1) >= at {
            k -= 1;
        }
        while self.due(k) < at {
            k += 1;
        }
        k
    }
}

fn nanos(value: f64) -> Duration {
    Duration::from_nanos(value.round() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn workers_interleave_into_one_even_stream() {
        // 1000 ops/s over 4 workers: each every 4 ms, staggered by 1 ms.
        let schedules: Vec<Schedule> = (0..4).map(|w| Schedule::new(1000.0, 4, w)).collect();
        assert_eq!(schedules[0].due(0), Duration::ZERO);
        assert_eq!(schedules[1].due(0), Duration::from_millis(1));
        assert_eq!(schedules[3].due(2), Duration::from_millis(11));
        let mut all: Vec<Duration> = schedules
            .iter()
            .flat_map(|s| (0..25).map(|k| s.due(k)))
            .collect();
        all.sort();
        for (index, due) in all.iter().enumerate() {
            assert_eq!(*due, Duration::from_millis(index as u64));
        }
    }

    #[test]
    fn due_requests_are_counted_per_window() {
        let schedule = Schedule::new(1000.0, 4, 1); // due at 1, 5, 9, 13, ... ms
        let ms = Duration::from_millis;
        assert_eq!(schedule.count_due_between(ms(0), ms(1)), 0);
        assert_eq!(schedule.count_due_between(ms(0), ms(2)), 1);
        assert_eq!(
            schedule.count_due_between(ms(1), ms(5)),
            1,
            "[1, 5) holds 1 only"
        );
        assert_eq!(schedule.count_due_between(ms(1), ms(6)), 2);
        assert_eq!(schedule.count_due_between(ms(2), ms(1002)), 250);
        assert_eq!(schedule.count_due_between(ms(10), ms(10)), 0);
        assert_eq!(schedule.count_due_between(ms(20), ms(10)), 0);
        // A whole second at 1000 ops/s over 4 workers is 250 requests for each of them.
        for worker in 0..4 {
            let s = Schedule::new(1000.0, 4, worker);
            assert_eq!(s.count_due_between(ms(3000), ms(4000)), 250);
        }
    }

    #[test]
    fn odd_rates_keep_exact_counts() {
        // 3 ops/s over 7 workers: intervals of 2.333 s that do not divide evenly.
        let total: u64 = (0..7)
            .map(|w| {
                Schedule::new(3.0, 7, w).count_due_between(Duration::ZERO, Duration::from_secs(70))
            })
            .sum();
        assert_eq!(total, 210);
    }

    #[test]
    fn phases_bound_what_is_measured() {
        let origin = Instant::now();
        let phases = Phases::new(origin, Duration::from_secs(2), Duration::from_secs(10));
        assert!(!phases.is_measured(origin));
        assert!(!phases.is_measured(origin + Duration::from_millis(1999)));
        assert!(phases.is_measured(origin + Duration::from_secs(2)));
        assert!(phases.is_measured(origin + Duration::from_millis(11_999)));
        assert!(!phases.is_measured(origin + Duration::from_secs(12)));
    }
}
