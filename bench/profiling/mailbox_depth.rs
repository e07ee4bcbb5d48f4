//! Does the mailbox's capacity matter? Acknowledged inserts per second into
//! a one-shard cache (so every writer contends for the same owner), by
//! mailbox capacity: from 4 and 16 OS threads, and from 256 async tasks on
//! a two-worker tokio runtime. Rounds interleave the capacities; compare
//! within a round. `cargo run --release -p coherent-bench --example
//! mailbox_depth` (docs/design.md, "Combining and the mailbox").

use std::time::{Duration, Instant};

const CAPACITIES: [usize; 4] = [16, 64, 128, 1024];
const KEYS: u64 = 4096;

fn cache(capacity: usize) -> coherent::Cache<u64, u64> {
    coherent::Cache::builder()
        .shards(1)
        .mailbox_capacity(capacity)
        .build()
        .expect("valid")
}

/// Inserts per second from `threads` threads writing for `run`.
fn threads(capacity: usize, threads: u64, run: Duration) -> f64 {
    let cache = cache(capacity);
    let t0 = Instant::now();
    let total: u64 = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let cache = &cache;
                s.spawn(move || {
                    let mut n = 0u64;
                    while t0.elapsed() < run {
                        for i in 0..64 {
                            let k = (t * 7919 + n + i) % KEYS;
                            cache.insert(k, n).expect("insert");
                        }
                        n += 64;
                    }
                    n
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().expect("writer")).sum()
    });
    total as f64 / t0.elapsed().as_secs_f64()
}

/// Inserts per second from `tasks` async tasks, `per_task` inserts each.
fn tasks(rt: &tokio::runtime::Runtime, capacity: usize, tasks: u64, per_task: u64) -> f64 {
    let cache = cache(capacity);
    let t0 = Instant::now();
    rt.block_on(async {
        let handles: Vec<_> = (0..tasks)
            .map(|t| {
                let cache = cache.clone();
                tokio::spawn(async move {
                    for i in 0..per_task {
                        let k = (t * 7919 + i) % KEYS;
                        cache.insert_async(k, i).await.expect("insert");
                    }
                })
            })
            .collect();
        for h in handles {
            h.await.expect("task");
        }
    });
    (tasks * per_task) as f64 / t0.elapsed().as_secs_f64()
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .build()
        .expect("runtime");
    println!("acknowledged inserts, M/s, one shard, by mailbox capacity");
    print!("{:<24}", "round / writers");
    for c in CAPACITIES {
        print!("{c:>8}");
    }
    println!();
    let run = Duration::from_millis(200);
    for round in 1..=3 {
        for (name, case) in [("4 threads", 0), ("16 threads", 1), ("256 async tasks", 2)] {
            print!("{:<24}", format!("{round} / {name}"));
            for c in CAPACITIES {
                let rate = match case {
                    0 => threads(c, 4, run),
                    1 => threads(c, 16, run),
                    _ => tasks(&rt, c, 256, 2_000),
                };
                print!("{:>8.2}", rate / 1e6);
            }
            println!();
        }
    }
}
