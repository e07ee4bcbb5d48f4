//! Filling a fresh cache with new keys: `THREADS` threads (default 2) each
//! insert a million distinct `u64` keys into an empty 16-shard cache; the
//! best of five fills, in ns per insert until visible. Every insert takes
//! a new entry's memory (nothing is freed yet), so this times where new
//! entries come from: each shard's own cells (docs/design.md, "Entries in
//! cells", has the figures, and glibc's for comparison).
//!
//! `THREADS=2 cargo run --release -p coherent-bench --example fill`

use std::time::Instant;

const PER_THREAD: u64 = 1_000_000;

fn main() {
    let threads: u64 = std::env::var("THREADS").map_or(2, |v| match v.parse() {
        Ok(n) if n > 0 => n,
        _ => {
            eprintln!("THREADS must be a number above 0, not {v:?}");
            std::process::exit(2);
        }
    });
    let mut best = f64::MAX;
    for _ in 0..5 {
        let cache = coherent::Cache::<u64, u64>::builder()
            .shards(16)
            .build()
            .expect("a valid configuration");
        let start = Instant::now();
        std::thread::scope(|s| {
            for t in 0..threads {
                let cache = &cache;
                s.spawn(move || {
                    for k in t * PER_THREAD..(t + 1) * PER_THREAD {
                        cache.insert(k, k).expect("insert");
                    }
                });
            }
        });
        let ns = start.elapsed().as_nanos() as f64 / (threads * PER_THREAD) as f64;
        best = best.min(ns);
        assert_eq!(cache.len() as u64, threads * PER_THREAD);
    }
    println!("{threads} thread(s): {best:.1} ns per insert (best of 5 fills)");
}
