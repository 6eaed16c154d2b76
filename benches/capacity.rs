//! Cost of the capacity check on one license holding 10, 1 000 and 100 000 borrows:
//! `max_overlap` and `fits` for a new borrow (random ones, and one repeated), and
//! `insert` + `remove` of one borrow.
//! The query cost should grow only with the tree's depth and, once the index outgrows the
//! caches, with the misses on its two root-to-leaf paths; `max_overlap_hot` shows the
//! cost without the misses.
//! Run: `cargo bench --profile dev --bench capacity` (the release profile would rebuild
//! RocksDB).

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use licensed::borrow::capacity::CapacityIndex;

const HOUR: i64 = 3600;
const DAY: i64 = 24 * HOUR;
/// 2026-01-01T00:00:00Z: borrows start somewhere in the year after.
const YEAR_START: i64 = 1_767_225_600;
const SIZES: [usize; 3] = [10, 1_000, 100_000];
/// Distinct prepared queries, cycled so that each call looks at another part of the year.
const QUERIES: usize = 4096;

/// xorshift64: deterministic and good enough to scatter borrows over a year.
struct Rng(u64);

impl Rng {
    fn below(&mut self, bound: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % bound
    }

    /// A borrow as engineers make them: starting in the year, 1 hour to 30 days long.
    fn borrow(&mut self) -> (i64, i64) {
        let from = YEAR_START + self.below(365 * DAY as u64) as i64;
        let length = HOUR + self.below((30 * DAY - HOUR) as u64 + 1) as i64;
        (from, from + length)
    }
}

fn filled(size: usize, rng: &mut Rng) -> CapacityIndex {
    let mut index = CapacityIndex::new();
    for _ in 0..size {
        let (from, until) = rng.borrow();
        index.insert(from, until);
    }
    index
}

fn queries(rng: &mut Rng) -> Vec<(i64, i64)> {
    (0..QUERIES).map(|_| rng.borrow()).collect()
}

fn capacity(c: &mut Criterion) {
    let mut group = c.benchmark_group("capacity");
    group.measurement_time(Duration::from_secs(3));
    for size in SIZES {
        let mut rng = Rng(0x2545_f491_4f6c_dd1d ^ size as u64);
        let mut index = filled(size, &mut rng);
        let asks = queries(&mut rng);
        // A count that lets about half of the asks fit, so `fits` answers both ways.
        let mut overlaps: Vec<u32> = asks.iter().map(|&(f, u)| index.max_overlap(f, u)).collect();
        overlaps.sort_unstable();
        let count = overlaps[QUERIES / 2] + 1;

        group.bench_with_input(BenchmarkId::new("max_overlap", size), &size, |b, _| {
            let mut i = 0;
            b.iter(|| {
                let (from, until) = asks[i % QUERIES];
                i += 1;
                black_box(index.max_overlap(black_box(from), black_box(until)))
            });
        });
        // One query over and over: everything cached and every branch learned. The gap
        // to `max_overlap` is what cache misses and mispredictions cost.
        group.bench_with_input(BenchmarkId::new("max_overlap_hot", size), &size, |b, _| {
            let (from, until) = asks[0];
            b.iter(|| black_box(index.max_overlap(black_box(from), black_box(until))));
        });
        group.bench_with_input(BenchmarkId::new("fits", size), &size, |b, _| {
            let mut i = 0;
            b.iter(|| {
                let (from, until) = asks[i % QUERIES];
                i += 1;
                black_box(index.fits(black_box(from), black_box(until), count))
            });
        });
        group.bench_with_input(BenchmarkId::new("insert_remove", size), &size, |b, _| {
            let mut i = 0;
            b.iter(|| {
                let (from, until) = asks[i % QUERIES];
                i += 1;
                index.insert(black_box(from), black_box(until));
                black_box(index.remove(from, until))
            });
        });
        assert_eq!(
            index.len(),
            size,
            "insert + remove must leave the index as it was"
        );
    }
    group.finish();
}

criterion_group!(benches, capacity);
criterion_main!(benches);
