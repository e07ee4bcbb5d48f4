//! The removal listener: every removal, with its cause, in the shard's
//! order, after the change is visible, never on a reader's thread; a
//! panicking listener does not stop the shard.

use coherent::{Cache, RemovalCause};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

type Log = Arc<Mutex<Vec<(u64, u64, RemovalCause)>>>;

fn logged(shards: usize, cap: Option<u64>) -> (Cache<u64, u64>, Log) {
    let log: Log = Arc::default();
    let seen = log.clone();
    let mut b = Cache::builder()
        .shards(shards)
        .removal_listener(move |k: &u64, v: &u64, cause| {
            seen.lock().unwrap().push((*k, *v, cause))
        });
    if let Some(cap) = cap {
        b = b.max_capacity(cap);
    }
    (b.build().unwrap(), log)
}

#[test]
fn every_cause_in_order() {
    use RemovalCause::*;
    let (c, log) = logged(1, None);
    c.insert(1, 10).unwrap();
    c.insert(1, 11).unwrap(); // replaces 10
    c.update(1, |v| v.map(|v| v + 1)).unwrap(); // replaces 11 with 12
    c.invalidate(&1).unwrap(); // removes 12
    c.invalidate(&1).unwrap(); // nothing there: nothing said
    c.insert_tagged(2, 20, ["t"]).unwrap();
    c.insert_tagged(3, 30, ["t"]).unwrap();
    c.invalidate_tag("t").unwrap();
    c.insert(4, 40).unwrap();
    c.transaction()
        .insert(4, 41)
        .invalidate(5)
        .commit()
        .unwrap();
    let mut got = log.lock().unwrap().clone();
    // The two tag removals happen in one shard step, in either order.
    got[3..5].sort_by_key(|&(k, _, _)| k);
    assert_eq!(
        got,
        [
            (1, 10, Replaced),
            (1, 11, Replaced),
            (1, 12, Invalidated),
            (2, 20, Invalidated),
            (3, 30, Invalidated),
            (4, 40, Replaced),
        ]
    );
}

#[test]
fn the_listener_runs_after_the_change_is_visible() {
    // From inside the listener, a read already misses the removed value.
    let cache: Arc<Mutex<Option<Cache<u64, u64>>>> = Arc::default();
    let inside = cache.clone();
    let checked = Arc::new(AtomicBool::new(false));
    let flag = checked.clone();
    let c = Cache::builder()
        .shards(1)
        .removal_listener(move |k: &u64, _: &u64, _| {
            if let Some(c) = inside.lock().unwrap().as_ref() {
                assert_eq!(c.get(k), None);
                flag.store(true, Ordering::Relaxed);
            }
        })
        .build()
        .unwrap();
    *cache.lock().unwrap() = Some(c.clone());
    c.insert(1, 1).unwrap();
    c.invalidate(&1).unwrap();
    assert!(checked.load(Ordering::Relaxed));
    cache.lock().unwrap().take();
}

#[test]
fn the_listener_never_runs_on_a_reader_thread() {
    let (c, _log) = logged(2, Some(16));
    let threads = Arc::new(Mutex::new(Vec::new()));
    let seen = threads.clone();
    let c2 = Cache::<u64, u64>::builder()
        .shards(2)
        .max_capacity(16)
        .removal_listener(move |_, _, _| seen.lock().unwrap().push(std::thread::current().id()))
        .build()
        .unwrap();
    drop(c);
    let done = Arc::new(AtomicBool::new(false));
    let reader = {
        let (c2, done) = (c2.clone(), done.clone());
        std::thread::spawn(move || {
            let mut reads = 0u64;
            while !done.load(Ordering::Relaxed) {
                for k in 0..64 {
                    std::hint::black_box(c2.get(&k));
                }
                reads += 1;
            }
            (std::thread::current().id(), reads)
        })
    };
    for k in 0..10_000u64 {
        c2.insert(k % 64, k).unwrap();
    }
    done.store(true, Ordering::Relaxed);
    let (reader_id, reads) = reader.join().unwrap();
    assert!(reads > 0);
    let threads = threads.lock().unwrap();
    assert!(!threads.is_empty(), "evictions were reported");
    assert!(threads.iter().all(|t| *t != reader_id));
}

#[test]
fn a_panicking_listener_does_not_stop_the_shard() {
    let c = Cache::<u64, u64>::builder()
        .shards(1)
        .max_capacity(4)
        .removal_listener(|_, _, _| panic!("listener failed"))
        .build()
        .unwrap();
    for k in 0..20 {
        c.insert(k, k).unwrap();
    }
    c.invalidate(&19).unwrap();
    assert!(c.len() <= 4);
    c.insert(100, 100).unwrap();
    assert_eq!(c.get(&100), Some(100));
}

#[test]
fn writing_to_the_cache_from_the_listener_is_refused_not_deadlocked() {
    let cache: Arc<Mutex<Option<Cache<u64, u64>>>> = Arc::default();
    let inside = cache.clone();
    let refused = Arc::new(AtomicBool::new(false));
    let flag = refused.clone();
    let c = Cache::builder()
        .shards(1)
        .removal_listener(move |_: &u64, _: &u64, _| {
            if let Some(c) = inside.lock().unwrap().as_ref() {
                let r = c.insert(99, 99);
                flag.store(
                    matches!(r, Err(coherent::Error::Reentrant)),
                    Ordering::Relaxed,
                );
            }
        })
        .build()
        .unwrap();
    *cache.lock().unwrap() = Some(c.clone());
    c.insert(1, 1).unwrap();
    c.insert(1, 2).unwrap();
    assert!(refused.load(Ordering::Relaxed));
    cache.lock().unwrap().take();
}
