//! G7, capacity: the bound holds under a write flood from several threads,
//! and evicted values are freed (memory does not grow with the writes).
//! Alone in its file, so in its own process: it counts live values, and
//! readers of other tests would legitimately hold reclamation back.

use coherent::Cache;
use coherent_tests::canary::Canary;
use std::sync::atomic::{AtomicBool, AtomicIsize, Ordering};
use std::sync::{Arc, Barrier};

#[test]
fn capacity_holds_under_a_write_flood_from_several_threads() {
    const CAP: u64 = 1_000;
    let live = Arc::new(AtomicIsize::new(0));
    let cache: Arc<Cache<u64, Canary>> = Arc::new(
        Cache::builder()
            .shards(8)
            .max_capacity(CAP)
            .build()
            .unwrap(),
    );
    let threads = 4;
    let start = Arc::new(Barrier::new(threads + 1));
    let done = Arc::new(AtomicBool::new(false));
    let writers: Vec<_> = (0..threads as u64)
        .map(|t| {
            let (cache, live, start) = (cache.clone(), live.clone(), start.clone());
            std::thread::spawn(move || {
                start.wait();
                let mut x = t + 1;
                for i in 0..50_000u64 {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    let k = x % 1_000_000;
                    cache.insert(k, Canary::new(k, i, &live)).unwrap();
                }
            })
        })
        .collect();
    // While the flood runs, every observation stays within the bound (each
    // shard holds its share once each write has returned).
    let watcher = {
        let (cache, start, done) = (cache.clone(), start.clone(), done.clone());
        std::thread::spawn(move || {
            start.wait();
            let mut seen = 0;
            while !done.load(Ordering::Relaxed) {
                let len = cache.len() as u64;
                assert!(len <= CAP, "len {len} over capacity {CAP}");
                assert!(cache.weighted_size() <= CAP);
                seen += 1;
            }
            seen
        })
    };
    for w in writers {
        w.join().unwrap();
    }
    done.store(true, Ordering::Relaxed);
    assert!(watcher.join().unwrap() > 0);
    assert!(cache.len() as u64 <= CAP);
    assert!(
        cache.len() as u64 >= CAP * 9 / 10,
        "a full cache stays about full: {}",
        cache.len()
    );
    let stats = cache.stats();
    // Nearly every insert is of a key not cached (1M keys, 1,000 cached),
    // and each such insert past the bound evicts one entry.
    assert!(
        stats.evictions >= 190_000,
        "inserts of new keys past the bound evict: {stats:?}"
    );
    // Memory does not grow without bound: of the 200,000 values written,
    // only the cached ones and a few unreclaimed batches are alive.
    let alive = live.load(Ordering::Relaxed);
    assert!(
        alive <= (CAP + 8 * 3 * 128) as isize,
        "{alive} values alive for a capacity of {CAP}"
    );
}
