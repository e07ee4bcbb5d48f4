//! Criterion contention benchmarks: every cache in the same group, by
//! thread count, read/write mix and key distribution.
//!
//! ```sh
//! cargo bench -p coherent-bench --bench contention            # all groups
//! cargo bench -p coherent-bench --bench contention -- 2t/95   # a subset
//! COHERENT_BENCH_THREADS=1,2,4,8,16 cargo bench -p coherent-bench --bench contention
//! ```
//!
//! A group is `{threads}t/{read share}-{write share}/{distribution}`, e.g.
//! `2t/95-5/zipf1.0`; its members are coherent, quick_cache, moka and
//! dashmap (the unbounded-map ceiling), each prefilled with the 100k keys
//! (every read hits). An iteration is one operation; `iters` operations are
//! split over the threads, which start together, and the time is from the
//! start to the last thread's end. Writes insert the key just read-to-be
//! (an `insert` of coherent returns once the value is visible).

use coherent_bench::{keys_of, prefilled, Dist, Target, Walk};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

const KEYS: u64 = 100_000;

/// 1, 2, then powers of two up to the cores, or `COHERENT_BENCH_THREADS`.
fn thread_counts() -> Vec<usize> {
    if let Ok(list) = std::env::var("COHERENT_BENCH_THREADS") {
        return list
            .split(',')
            .map(|t| t.trim().parse().expect("COHERENT_BENCH_THREADS: numbers"))
            .collect();
    }
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
    let mut counts = vec![1];
    let mut t = 2;
    while t <= cores.max(2) {
        counts.push(t);
        t *= 2;
    }
    counts
}

/// `iters` operations over `threads` threads; returns the wall time.
fn run(
    target: &Arc<dyn Target>,
    keys: &Arc<Vec<u64>>,
    threads: usize,
    write_per_mille: u32,
    iters: u64,
) -> Duration {
    let start = Barrier::new(threads + 1);
    std::thread::scope(|s| {
        for t in 0..threads {
            let (start, target, keys) = (&start, target.clone(), keys.clone());
            s.spawn(move || {
                let mut walk = Walk::new(&keys, t, threads, write_per_mille);
                let n = iters / threads as u64 + u64::from((t as u64) < iters % threads as u64);
                start.wait();
                for _ in 0..n {
                    walk.step(&*target, &keys);
                }
            });
        }
        start.wait();
        let t0 = Instant::now();
        // The scope joins every thread before returning.
        t0
    })
    .elapsed()
}

fn contention(c: &mut Criterion) {
    let targets = prefilled(KEYS);
    for threads in thread_counts() {
        for (mix, writes) in [("100-0", 0u32), ("95-5", 50), ("80-20", 200)] {
            for dist in [Dist::Zipf(1.0), Dist::Zipf(0.8), Dist::Uniform] {
                let keys = Arc::new(keys_of(dist, KEYS, 1 << 20, 11));
                let mut group = c.benchmark_group(format!("{threads}t/{mix}/{dist}"));
                group.throughput(Throughput::Elements(1));
                for target in &targets {
                    group.bench_function(target.name(), |b| {
                        b.iter_custom(|iters| run(target, &keys, threads, writes, iters))
                    });
                }
                group.finish();
            }
        }
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_millis(200))
        .measurement_time(Duration::from_millis(600));
    targets = contention
}
criterion_main!(benches);
