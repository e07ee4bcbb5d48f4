//! G7, capacity: eviction never brings back an older value (checked on a
//! history, and shown to catch a naive cache that does), weights count,
//! scans do not flush hot keys, and evictions reach the listener. The write
//! flood is in `capacity_flood.rs` (its own process: it counts live values,
//! and other tests' readers would hold reclamation back).

use coherent::{Cache, RemovalCause};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// One write, as the history records it.
struct Write {
    key: u64,
    version: u64,
    returned: u64,
}

/// One read.
struct Read {
    key: u64,
    version: Option<u64>,
    invoked: u64,
}

/// What the history test needs of a cache.
trait Versioned: Send + Sync + 'static {
    fn put(&self, key: u64, version: u64);
    fn read(&self, key: u64) -> Option<u64>;
}

impl Versioned for Cache<u64, u64> {
    fn put(&self, key: u64, version: u64) {
        self.insert(key, version).unwrap();
    }
    fn read(&self, key: u64) -> Option<u64> {
        self.get(&key)
    }
}

/// A bounded map that, like a cache with a naive second tier, parks the
/// values it evicts in a victim map and serves misses from there; a later
/// write does not update a parked copy, so it can come back stale.
#[derive(Default)]
struct VictimTier {
    inner: Mutex<Tiers>,
}

/// The main map, the parked victims, and a write count.
type Tiers = (HashMap<u64, u64>, HashMap<u64, u64>, u64);

impl Versioned for VictimTier {
    fn put(&self, key: u64, version: u64) {
        let mut g = self.inner.lock().unwrap();
        let (main, victims, tick) = &mut *g;
        main.insert(key, version);
        *tick += 1;
        if main.len() > 16 {
            // Evict some other key; park its value unless one is parked.
            let victim = *main.keys().find(|&&k| k != key).unwrap();
            let v = main.remove(&victim).unwrap();
            victims.entry(victim).or_insert(v);
        }
    }
    fn read(&self, key: u64) -> Option<u64> {
        let g = self.inner.lock().unwrap();
        g.0.get(&key).or_else(|| g.1.get(&key)).copied()
    }
}

/// Runs one writer (versions rise per key) and two readers over 64 keys
/// on a cache that holds 16, and returns the reads that saw an older
/// version than one whose write had returned before the read began.
fn stale_reads<C: Versioned>(cache: Arc<C>, writes: u64) -> (usize, usize) {
    const KEYS: u64 = 64;
    let clock = Arc::new(AtomicU64::new(0));
    let done = Arc::new(AtomicBool::new(false));
    let readers: Vec<_> = (0..2u64)
        .map(|r| {
            let (cache, clock, done) = (cache.clone(), clock.clone(), done.clone());
            std::thread::spawn(move || {
                let mut out = Vec::new();
                let mut x = r + 7;
                while !done.load(Ordering::Relaxed) {
                    x = x.wrapping_mul(6364136223846793005).wrapping_add(1);
                    let key = (x >> 33) % KEYS;
                    let invoked = clock.fetch_add(1, Ordering::SeqCst);
                    let version = cache.read(key);
                    out.push(Read {
                        key,
                        version,
                        invoked,
                    });
                }
                out
            })
        })
        .collect();
    let mut log = Vec::new();
    let mut x = 11u64;
    for version in 1..=writes {
        x = x.wrapping_mul(6364136223846793005).wrapping_add(1);
        let key = (x >> 33) % KEYS;
        cache.put(key, version);
        let returned = clock.fetch_add(1, Ordering::SeqCst);
        log.push(Write {
            key,
            version,
            returned,
        });
    }
    done.store(true, Ordering::Relaxed);
    let reads: Vec<Read> = readers
        .into_iter()
        .flat_map(|r| r.join().unwrap())
        .collect();
    // For each key, the versions written and when each write returned.
    let mut by_key: HashMap<u64, Vec<(u64, u64)>> = HashMap::new();
    for w in &log {
        by_key
            .entry(w.key)
            .or_default()
            .push((w.returned, w.version));
    }
    let mut stale = 0;
    for r in &reads {
        let Some(v) = r.version else {
            continue; // a miss is always allowed: evicted
        };
        // The newest version of this key acknowledged before the read.
        let floor = by_key.get(&r.key).and_then(|ws| {
            ws.iter()
                .take_while(|(returned, _)| *returned < r.invoked)
                .last()
                .map(|&(_, v)| v)
        });
        if floor.is_some_and(|f| v < f) {
            stale += 1;
        }
    }
    (stale, reads.len())
}

#[test]
fn eviction_never_brings_back_an_older_value() {
    let cache = Arc::new(
        Cache::<u64, u64>::builder()
            .shards(4)
            .max_capacity(16)
            .build()
            .unwrap(),
    );
    let (stale, reads) = stale_reads(cache.clone(), 200_000);
    assert!(reads > 1_000, "the readers ran ({reads} reads)");
    assert_eq!(stale, 0, "{stale} of {reads} reads saw an older value");
    assert!(
        cache.stats().evictions > 100_000,
        "eviction was heavy: {:?}",
        cache.stats()
    );
}

#[test]
fn the_checker_catches_a_cache_that_serves_evicted_copies() {
    let (stale, reads) = stale_reads(Arc::new(VictimTier::default()), 200_000);
    assert!(
        stale > 0,
        "no stale read in {reads} reads of the naive tier"
    );
}

#[test]
fn a_weigher_bounds_the_total_weight() {
    let cache = Cache::<u64, String>::builder()
        .shards(1)
        .max_capacity(100)
        .weigher(|_, v: &String| v.len() as u32)
        .build()
        .unwrap();
    for k in 0..50 {
        cache.insert(k, "x".repeat(10 + (k as usize % 20))).unwrap();
        assert!(cache.weighted_size() <= 100, "{}", cache.weighted_size());
    }
    // An entry heavier than the whole budget is evicted at once.
    cache.insert(1_000, "y".repeat(500)).unwrap();
    assert_eq!(cache.get(&1_000), None);
    assert!(cache.weighted_size() <= 100);
}

#[test]
fn a_panicking_weigher_counts_one_and_the_shard_goes_on() {
    let cache = Cache::<u64, u64>::builder()
        .shards(1)
        .max_capacity(3)
        .weigher(|k, _| if *k == 7 { panic!("bad weigher") } else { 1 })
        .build()
        .unwrap();
    cache.insert(7, 7).unwrap();
    assert_eq!(cache.get(&7), Some(7));
    for k in 0..10 {
        cache.insert(k, k).unwrap();
    }
    assert!(cache.len() <= 3);
}

#[test]
fn frequently_read_keys_survive_a_scan() {
    // S3-FIFO's point: a one-pass scan of new keys does not flush the keys
    // that are being read.
    let cache = Cache::<u64, u64>::builder()
        .shards(1)
        .max_capacity(100)
        .build()
        .unwrap();
    for k in 0..50 {
        cache.insert(k, k).unwrap();
    }
    for _ in 0..3 {
        for k in 0..50 {
            assert_eq!(cache.get(&k), Some(k));
        }
    }
    for k in 1_000..11_000 {
        cache.insert(k, k).unwrap();
    }
    let kept = (0..50).filter(|k| cache.get(k).is_some()).count();
    assert!(kept >= 45, "only {kept} of 50 hot keys survived the scan");
}

#[test]
fn evictions_are_reported_to_the_listener() {
    let log = Arc::new(Mutex::new(Vec::new()));
    let seen = log.clone();
    let cache = Cache::<u64, u64>::builder()
        .shards(1)
        .max_capacity(10)
        .removal_listener(move |k, v, cause| seen.lock().unwrap().push((*k, *v, cause)))
        .build()
        .unwrap();
    for k in 0..30 {
        cache.insert(k, k * 10).unwrap();
    }
    let log = log.lock().unwrap();
    assert_eq!(log.len(), 20);
    for &(k, v, cause) in log.iter() {
        assert_eq!(cause, RemovalCause::Evicted);
        assert_eq!(v, k * 10);
        assert_eq!(cache.get(&k), None, "an evicted key is a miss");
    }
    assert_eq!(cache.stats().evictions, 20);
}

/// What a cache evicted, key and value, in order.
type EvictionLog = Arc<Mutex<Vec<(u64, u64)>>>;

/// A one-shard cache bounded to 1,000 (entries, or weight 1 each through
/// a weigher when `weighed`), and the log of what it evicted.
fn logging_cache(weighed: bool) -> (Cache<u64, u64>, EvictionLog) {
    let log = Arc::new(Mutex::new(Vec::new()));
    let seen = log.clone();
    let mut builder = Cache::<u64, u64>::builder()
        .shards(1)
        .max_capacity(1_000)
        .removal_listener(move |k, v, cause| {
            if cause == RemovalCause::Evicted {
                seen.lock().unwrap().push((*k, *v));
            }
        });
    if weighed {
        builder = builder.weigher(|_, _| 1);
    }
    (builder.build().unwrap(), log)
}

#[test]
fn eviction_order_survives_replacements_and_table_rebuilds() {
    // The policy's queues name entries by their slot in the read table. A
    // replacement keeps the slot (and the key's place in the queue); a
    // rebuild moves every entry, and the queues must follow. Growing from
    // the smallest table to 1,000 keys rebuilds it several times; with no
    // reads, S3-FIFO then evicts in insertion order.
    let (cache, log) = logging_cache(false);
    for k in 0..1_000 {
        cache.insert(k, k).unwrap();
    }
    for k in (0..1_000).rev() {
        cache.insert(k, k + 10_000).unwrap();
    }
    assert!(log.lock().unwrap().is_empty(), "nothing over budget yet");
    for k in 1_000..1_200 {
        cache.insert(k, k).unwrap();
    }
    let evicted = log.lock().unwrap().clone();
    let expected: Vec<(u64, u64)> = (0..200).map(|k| (k, k + 10_000)).collect();
    assert_eq!(
        evicted, expected,
        "evicted oldest first, with their latest values"
    );
    for k in 200..1_000 {
        assert_eq!(cache.get(&k), Some(k + 10_000));
    }
    for k in 1_000..1_200 {
        assert_eq!(cache.get(&k), Some(k));
    }
    assert_eq!(cache.len(), 1_000);
}

#[test]
fn eviction_order_survives_the_queues_compaction() {
    // A removed key leaves a hole in its queue; once holes are the
    // majority the queue is compacted and every entry left is told its new
    // place (without compaction, a shard that removed and rewrote keys
    // without going over budget would grow its queue for good).
    // After the compaction, removals and replacements go through those new
    // places: one that was not updated makes a removal hole another key,
    // which then is never evicted, or is evicted out of order.
    for weighed in [false, true] {
        let (cache, log) = logging_cache(weighed);
        for k in 0..1_000 {
            cache.insert(k, k).unwrap();
        }
        // 600 holes among 1,000 items: compacted (the odd keys, then
        // every fifth even one).
        let removed = |k: u64| k % 2 == 1 || k % 10 == 4;
        for k in (0..1_000).filter(|&k| removed(k)) {
            cache.invalidate(&k).unwrap();
        }
        // Through the new places: a removal and a replacement of keys
        // queued after the compaction's first live item.
        cache.invalidate(&40).unwrap();
        cache.insert(60, 60 + 10_000).unwrap();
        // The removed keys come back at the end of the queue.
        for k in (0..1_000).filter(|&k| removed(k) || k == 40) {
            cache.insert(k, k + 20_000).unwrap();
        }
        assert!(log.lock().unwrap().is_empty(), "nothing over budget yet");
        for k in 1_000..1_500 {
            cache.insert(k, k).unwrap();
        }
        let evicted = log.lock().unwrap().clone();
        // The 399 keys that were never removed, oldest first (60 with its
        // replacement's value), then the first of those written again.
        let mut expected: Vec<(u64, u64)> = (0..1_000)
            .filter(|&k| !removed(k) && k != 40)
            .map(|k| (k, if k == 60 { k + 10_000 } else { k }))
            .collect();
        assert_eq!(expected.len(), 399);
        expected.extend(
            (0..1_000)
                .filter(|&k| removed(k) || k == 40)
                .take(101)
                .map(|k| (k, k + 20_000)),
        );
        assert_eq!(
            evicted, expected,
            "weighed: {weighed}: evicted oldest first across the compaction"
        );
        assert_eq!(cache.len(), 1_000);
        assert_eq!(cache.weighted_size(), 1_000);
    }
}
