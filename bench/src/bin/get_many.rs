//! `get_many` latency, on a quiet cache and beside a thread that commits
//! one-key transactions on other keys at a fixed rate: p50 and p99 of
//! reads of 10,000 and 100,000 keys, and each cell's p99 as a ratio of
//! the quiet p99 of the same size, measured in the same run.
//!
//! `cargo run --release -p coherent-bench --bin get_many [-- SECONDS]`
//! (SECONDS per cell, default 2; about 30 s in all).
//!
//! A `get_many` re-reads when a transaction commits while it reads; after
//! `coherent::GET_MANY_OPTIMISTIC_READS` overtaken reads it reads holding
//! the commit lock, so its latency under commits stays within a small
//! factor of the quiet one however fast transactions commit.

use coherent::Cache;
use hdrhistogram::Histogram;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Keys read; the committer writes keys from `WRITTEN_FROM` on.
const WRITTEN_FROM: u64 = 1 << 40;

#[derive(Clone, Copy)]
struct Cell {
    p50: Duration,
    p99: Duration,
    max: Duration,
    reads: u64,
    /// Commits a second, over the cell's whole time.
    commit_rate: f64,
}

fn measure(cache: &Arc<Cache<u64, u64>>, keys: &[u64], rate: u64, secs: f64) -> Cell {
    let stop = Arc::new(AtomicBool::new(false));
    let commits = Arc::new(AtomicU64::new(0));
    let committer = (rate > 0).then(|| {
        let (cache, stop, commits) = (cache.clone(), stop.clone(), commits.clone());
        std::thread::spawn(move || {
            let every = Duration::from_nanos(1_000_000_000 / rate);
            let start = Instant::now();
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                // Paced, not synchronised: the n-th commit goes at n/rate s.
                let due = start + every * n as u32;
                let now = Instant::now();
                if now < due {
                    std::thread::sleep(due - now);
                }
                let k = WRITTEN_FROM + n % 4096;
                cache.transaction().insert(k, n).commit().unwrap();
                n += 1;
                commits.fetch_add(1, Ordering::Relaxed);
            }
        })
    });
    let mut h = Histogram::<u64>::new(3).unwrap();
    let start = Instant::now();
    let mut reads = 0u64;
    while start.elapsed().as_secs_f64() < secs || reads < 20 {
        let t = Instant::now();
        let got = cache.get_many(keys);
        let ns = t.elapsed().as_nanos() as u64;
        assert_eq!(got.len(), keys.len());
        assert!(got[0].is_some(), "the read set is cached");
        h.record(ns.max(1)).unwrap();
        reads += 1;
    }
    let took = start.elapsed().as_secs_f64();
    stop.store(true, Ordering::Relaxed);
    if let Some(c) = committer {
        c.join().unwrap();
    }
    let d = |q: f64| Duration::from_nanos(h.value_at_quantile(q));
    Cell {
        p50: d(0.5),
        p99: d(0.99),
        max: Duration::from_nanos(h.max()),
        reads,
        commit_rate: commits.load(Ordering::Relaxed) as f64 / took,
    }
}

fn main() {
    let secs: f64 = std::env::args()
        .nth(1)
        .map_or(2.0, |a| a.parse().expect("usage: get_many [SECONDS]"));
    println!(
        "get_many latency, one reader beside one committer of one-key transactions on other keys"
    );
    println!("({secs} s a cell; p99 ratio against the quiet p99 of the same size, same run)\n");
    println!(
        "| keys | commits/s asked | commits/s done | reads | p50 | p99 | max | p99 / quiet p99 |"
    );
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|");
    for size in [10_000u64, 100_000] {
        let cache = Arc::new(Cache::<u64, u64>::builder().build().unwrap());
        for k in 0..size {
            cache.insert(k, k).unwrap();
        }
        let keys: Vec<u64> = (0..size).collect();
        let quiet = measure(&cache, &keys, 0, secs);
        for rate in [0u64, 1_000, 4_000, 16_000] {
            let cell = if rate == 0 {
                quiet
            } else {
                measure(&cache, &keys, rate, secs)
            };
            println!(
                "| {size} | {rate} | {:.0} | {} | {:.2?} | {:.2?} | {:.2?} | {:.2}x |",
                cell.commit_rate,
                cell.reads,
                cell.p50,
                cell.p99,
                cell.max,
                cell.p99.as_secs_f64() / quiet.p99.as_secs_f64()
            );
        }
    }
}
