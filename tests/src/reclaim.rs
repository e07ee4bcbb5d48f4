//! The reclamation stress scenario, run by `tests/reclaim.rs` and
//! `tests/reclaim_symmetric.rs` (one per fence strategy: the strategy is
//! chosen once per process).

use crate::canary::{Canary, SlowKey};
use std::sync::atomic::{AtomicBool, AtomicIsize, AtomicU64, Ordering};
use std::sync::Arc;

/// Two readers `get` keys that one writer keeps inserting, updating and
/// invalidating in a single small shard (so growth and tombstone rebuilds
/// replace the table under them too). Panics if a reader clones a value
/// that was freed or reused for another key, or if a value leaks or is
/// freed twice.
pub fn readers_race_writers() {
    let live = Arc::new(AtomicIsize::new(0));
    {
        // One shard, starting tiny: every write lands in the table the
        // readers probe, and growth and tombstone rebuilds replace it often.
        let cache: coherent::Cache<SlowKey, Canary> = coherent::Cache::builder()
            .shards(1)
            .initial_capacity(0)
            .build()
            .unwrap();
        let done = Arc::new(AtomicBool::new(false));
        let hits = Arc::new(AtomicU64::new(0));
        let readers: Vec<_> = (0..2u64)
            .map(|r| {
                let (cache, done, hits) = (cache.clone(), done.clone(), hits.clone());
                std::thread::spawn(move || {
                    let mut k = r;
                    while !done.load(Ordering::Relaxed) {
                        let key = k % 256;
                        if let Some(v) = cache.get(&SlowKey(key)) {
                            assert_eq!(v.key, key, "got another key's value");
                            hits.fetch_add(1, Ordering::Relaxed);
                        }
                        k = k.wrapping_add(7);
                    }
                })
            })
            .collect();
        // At least the free rounds, and on until a reader has hit (under
        // Valgrind threads take turns, and the writer may finish its
        // rounds before a reader first runs).
        for i in 1.. {
            if i > crate::free_rounds() && hits.load(Ordering::Relaxed) > 0 {
                break;
            }
            let k = i % 256;
            match i % 5 {
                0 => cache.invalidate(&SlowKey(k)).unwrap(),
                1 => {
                    let live = live.clone();
                    cache
                        .update(SlowKey(k), move |old| {
                            Some(Canary::new(k, old.map_or(i, |v| v.version + 1), &live))
                        })
                        .map(drop)
                        .unwrap();
                }
                _ => cache.insert(SlowKey(k), Canary::new(k, i, &live)).unwrap(),
            }
        }
        done.store(true, Ordering::Relaxed);
        for r in readers {
            r.join().expect("a reader read a freed or reused value");
        }
        assert!(hits.load(Ordering::Relaxed) > 0, "readers never hit");
        assert!(live.load(Ordering::Relaxed) > 0);
    }
    assert_eq!(
        live.load(Ordering::Relaxed),
        0,
        "values leaked or freed twice"
    );
}
