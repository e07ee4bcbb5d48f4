//! The public API: configuration, errors, containment of failing closures,
//! single-flight loads, backpressure and clean shutdown.

use coherent::{Cache, Error, LoadError};
use coherent_tests::wait_until;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Barrier};

#[test]
fn builder_rejects_bad_settings_with_a_reason() {
    let e = Cache::<u64, u64>::builder().shards(0).build().unwrap_err();
    assert!(
        matches!(&e, Error::InvalidConfig(m) if m.contains("shards")),
        "{e}"
    );
    let e = Cache::<u64, u64>::builder()
        .shards(coherent::MAX_SHARDS + 1)
        .build()
        .unwrap_err();
    assert!(matches!(e, Error::InvalidConfig(_)));
    let e = Cache::<u64, u64>::builder()
        .mailbox_capacity(0)
        .build()
        .unwrap_err();
    assert!(e.to_string().contains("mailbox_capacity"), "{e}");
    let e = Cache::<u64, u64>::builder()
        .max_capacity(0)
        .build()
        .unwrap_err();
    assert!(
        matches!(&e, Error::InvalidConfig(m) if m.contains("max_capacity")),
        "{e}"
    );
    let c = Cache::<u64, u64>::builder().shards(3).build().unwrap();
    assert_eq!(c.shard_count(), 3);
    assert!(Cache::<u64, u64>::new().shard_count() >= 1);
}

#[test]
fn oversized_mailbox_and_initial_capacity_are_errors_not_panics_or_aborts() {
    // `usize::MAX` panicked inside crossbeam; now it is refused.
    for n in [coherent::MAX_MAILBOX_CAPACITY + 1, usize::MAX] {
        let e = Cache::<u64, u64>::builder()
            .mailbox_capacity(n)
            .build()
            .unwrap_err();
        assert!(
            matches!(&e, Error::InvalidConfig(m) if m.contains("mailbox_capacity") && m.contains(&n.to_string())),
            "{e}"
        );
    }
    let c = Cache::<u64, u64>::builder()
        .shards(1)
        .mailbox_capacity(coherent::MAX_MAILBOX_CAPACITY)
        .build()
        .unwrap();
    c.insert(1, 1).unwrap();
    assert_eq!(c.get(&1), Some(1));
    // `usize::MAX` panicked on the table's layout, 2^40 (1 TiB of slots)
    // aborted the process in the allocator.
    for n in [usize::MAX, usize::MAX / 2, 1 << 40] {
        let e = Cache::<u64, u64>::builder()
            .initial_capacity(n)
            .build()
            .unwrap_err();
        assert!(
            matches!(&e, Error::InvalidConfig(m) if m.contains("initial_capacity") && m.contains("could not be allocated")),
            "{e}"
        );
    }
}

/// This process's resident memory in bytes (Linux: `/proc/self/statm`).
fn resident_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").expect("Linux /proc");
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|f| f.parse().ok())
        .expect("statm's resident field");
    pages * 4096
}

#[test]
fn a_large_initial_capacity_is_taken_only_as_used_and_works() {
    // 2^25 slots a shard at 8 bytes: 256 MiB of address space per shard,
    // 4 GiB in all. Zeroed memory comes from the system as it is used, so
    // building the cache must not make the process 4 GiB bigger (as it
    // would if the tables were written slot by slot when built).
    let before = resident_bytes();
    let c = Cache::<u64, u64>::builder()
        .shards(16)
        .initial_capacity(1 << 28)
        .build()
        .unwrap();
    let grew = resident_bytes().saturating_sub(before);
    assert!(grew < 512 << 20, "building took {grew} bytes of memory");
    for k in 0..10_000 {
        c.insert(k, k * 2).unwrap();
    }
    assert_eq!(c.len(), 10_000);
    assert!((0..10_000).all(|k| c.get(&k) == Some(k * 2)));
    assert_eq!(c.get(&10_000), None);
    // A bounded cache without a weigher sizes for its budget at most: this
    // first table would not fit in memory otherwise, and build would fail.
    let b = Cache::<u64, u64>::builder()
        .max_capacity(1_000)
        .initial_capacity(usize::MAX / 4)
        .build()
        .unwrap();
    for k in 0..2_000 {
        b.insert(k, k).unwrap();
    }
    assert!(b.len() <= 1_000, "{}", b.len());
}

#[test]
fn borrowed_lookups_and_len() {
    let c: Cache<String, u64> = Cache::new();
    c.insert("a".to_owned(), 1).unwrap();
    c.insert("b".to_owned(), 2).unwrap();
    assert_eq!(c.get("a"), Some(1));
    assert!(c.contains_key("b"));
    assert!(!c.contains_key("c"));
    assert_eq!(c.len(), 2);
    c.invalidate(&"a".to_owned()).unwrap();
    assert_eq!(c.get("a"), None);
    assert_eq!(c.len(), 1);
}

#[test]
fn update_returning_none_removes_the_key() {
    let c: Cache<u64, u64> = Cache::new();
    c.insert(1, 1).unwrap();
    assert_eq!(c.update(1, |_| None).unwrap(), None);
    assert_eq!(c.get(&1), None);
    assert_eq!(
        c.update(1, |v| Some(v.copied().unwrap_or(0) + 5)).unwrap(),
        Some(5)
    );
}

#[test]
fn panicking_update_changes_nothing_and_reaches_only_its_caller() {
    let c: Cache<u64, u64> = Cache::builder().shards(1).build().unwrap();
    c.insert(1, 10).unwrap();
    let e = c.update(1, |_| panic!("bad closure")).unwrap_err();
    assert_eq!(e, Error::UpdatePanicked("bad closure".to_owned()));
    assert_eq!(c.get(&1), Some(10));
    // The shard goes on serving.
    c.insert(2, 20).unwrap();
    assert_eq!(c.update(1, |v| v.map(|n| n + 1)).unwrap(), Some(11));
}

#[test]
fn writes_from_inside_an_update_are_refused_not_deadlocked() {
    let c: Cache<u64, u64> = Cache::builder().shards(1).build().unwrap();
    c.insert(5, 50).unwrap();
    let inner = c.clone();
    let seen = Arc::new(std::sync::Mutex::new(None));
    let seen2 = seen.clone();
    c.update(1, move |_| {
        // Reads are fine; writes and loads are refused.
        assert_eq!(inner.get(&5), Some(50));
        *seen2.lock().unwrap() =
            Some((inner.insert(2, 2), inner.get_or_load(3, |_| Ok::<_, ()>(3))));
        Some(1)
    })
    .unwrap();
    let (insert, load) = seen.lock().unwrap().take().unwrap();
    assert_eq!(insert, Err(Error::Reentrant));
    assert_eq!(load, Err(LoadError::Cache(Error::Reentrant)));
    assert_eq!(c.get(&1), Some(1));
    assert_eq!(c.get(&2), None);
}

#[test]
fn loader_error_and_panic_reach_only_their_caller_and_cache_nothing() {
    let c: Cache<u64, String> = Cache::new();
    let e = c
        .get_or_load(1, |_| Err::<String, _>("db down"))
        .unwrap_err();
    assert_eq!(e, LoadError::Loader("db down"));
    assert_eq!(c.get(&1), None);
    let e = c
        .get_or_load(1, |_| -> Result<String, ()> { panic!("loader bug") })
        .unwrap_err();
    assert_eq!(e, LoadError::LoaderPanicked("loader bug".to_owned()));
    // The lease was released: the next caller loads normally.
    assert_eq!(
        c.get_or_load(1, |_| Ok::<_, ()>("ok".to_owned())).unwrap(),
        "ok"
    );
    assert_eq!(c.get(&1).as_deref(), Some("ok"));
}

#[test]
fn get_or_load_is_single_flight() {
    const CALLERS: usize = 6;
    let c: Cache<u64, u64> = Cache::builder().shards(2).build().unwrap();
    let calls = Arc::new(AtomicUsize::new(0));
    let start = Arc::new(Barrier::new(CALLERS));
    let threads: Vec<_> = (0..CALLERS)
        .map(|_| {
            let (c, calls, start) = (c.clone(), calls.clone(), start.clone());
            std::thread::spawn(move || {
                start.wait();
                let probe = c.clone();
                c.get_or_load(9, move |_| {
                    calls.fetch_add(1, Ordering::SeqCst);
                    // Hold the load until every other caller waits on it.
                    wait_until(|| probe.waiting() == CALLERS - 1);
                    Ok::<_, ()>(99)
                })
                .unwrap()
            })
        })
        .collect();
    for t in threads {
        assert_eq!(t.join().unwrap(), 99);
    }
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}

#[test]
fn when_the_leader_fails_a_waiter_loads_and_others_share_its_value() {
    let c: Cache<u64, u64> = Cache::builder().shards(1).build().unwrap();
    let (started_tx, started_rx) = mpsc::channel();
    let (fail_tx, fail_rx) = mpsc::channel::<()>();
    let leader = {
        let c = c.clone();
        std::thread::spawn(move || {
            c.get_or_load(1, move |_| {
                started_tx.send(()).unwrap();
                fail_rx.recv().unwrap();
                Err::<u64, _>("leader failed")
            })
        })
    };
    started_rx.recv().unwrap();
    let waiters: Vec<_> = (0..3)
        .map(|i| {
            let c = c.clone();
            std::thread::spawn(move || c.get_or_load(1, move |_| Ok::<_, &str>(100 + i)))
        })
        .collect();
    wait_until(|| c.waiting() == 3);
    fail_tx.send(()).unwrap();
    assert_eq!(
        leader.join().unwrap(),
        Err(LoadError::Loader("leader failed"))
    );
    let values: Vec<u64> = waiters
        .into_iter()
        .map(|w| w.join().unwrap().unwrap())
        .collect();
    // Exactly one waiter ran its loader; every waiter got that value.
    assert!(values.iter().all(|v| *v == values[0]), "{values:?}");
    assert_eq!(c.get(&1), Some(values[0]));
}

#[test]
fn a_full_mailbox_applies_backpressure_and_drops_nothing() {
    let c: Cache<u64, u64> = Cache::builder()
        .shards(1)
        .mailbox_capacity(1)
        .build()
        .unwrap();
    let per = if cfg!(debug_assertions) {
        2_000
    } else {
        20_000
    };
    let threads: Vec<_> = (0..4u64)
        .map(|t| {
            let c = c.clone();
            std::thread::spawn(move || {
                for i in 0..per {
                    c.insert(t * per + i, i).unwrap();
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    assert_eq!(c.len() as u64, 4 * per);
    for k in 0..4 * per {
        assert_eq!(c.get(&k), Some(k % per));
    }
}

#[test]
fn try_writes_report_a_full_mailbox_and_change_nothing() {
    let c: Cache<u64, u64> = Cache::builder()
        .shards(1)
        .mailbox_capacity(1)
        .build()
        .unwrap();
    c.insert(1, 10).unwrap();
    // Hold the shard's token: an update whose closure waits for us.
    let (entered_tx, entered_rx) = mpsc::channel();
    let (release_tx, release_rx) = mpsc::channel::<()>();
    let holder = {
        let c = c.clone();
        std::thread::spawn(move || {
            c.update(1, move |v| {
                entered_tx.send(()).unwrap();
                release_rx.recv().unwrap();
                v.map(|n| n + 1)
            })
            .unwrap()
        })
    };
    entered_rx.recv().unwrap();
    // Fill the mailbox (room for one) with another thread's insert; it is
    // queued once that thread waits for its answer.
    let queued = {
        let c = c.clone();
        std::thread::spawn(move || c.insert(2, 20).unwrap())
    };
    wait_until(|| c.waiting() == 1);
    assert_eq!(c.try_insert(3, 30), Err(Error::Full));
    assert_eq!(c.try_invalidate(&1), Err(Error::Full));
    let ran = Arc::new(AtomicUsize::new(0));
    let counted = ran.clone();
    let full = c.try_update(1, move |_| {
        counted.fetch_add(1, Ordering::SeqCst);
        Some(0)
    });
    assert_eq!(full, Err(Error::Full));
    assert!(Error::Full.to_string().contains("mailbox is full"));
    // Nothing changed, nothing ran, and nothing is left to run later.
    release_tx.send(()).unwrap();
    assert_eq!(holder.join().unwrap(), Some(11));
    queued.join().unwrap();
    assert_eq!(ran.load(Ordering::SeqCst), 0, "a refused update ran");
    assert_eq!(c.get(&1), Some(11));
    assert_eq!(c.get(&2), Some(20));
    assert_eq!(c.get(&3), None);
    // With room again, try_ writes go through and are visible on return.
    c.try_insert(3, 30).unwrap();
    assert_eq!(c.get(&3), Some(30));
    c.try_invalidate(&2).unwrap();
    assert_eq!(c.get(&2), None);
    assert_eq!(c.try_update(1, |v| v.map(|n| n * 2)), Ok(Some(22)));
    assert_eq!(c.get(&1), Some(22));
    // Like the other writes, they are refused inside an update closure.
    let inner = c.clone();
    let refused = c
        .update(1, move |v| {
            assert_eq!(inner.try_insert(4, 4), Err(Error::Reentrant));
            v.copied()
        })
        .unwrap();
    assert_eq!(refused, Some(22));
}

/// Counts live instances, to show that dropping the cache frees every value.
#[derive(Debug)]
struct Tracked(Arc<AtomicUsize>);

impl Tracked {
    fn new(live: &Arc<AtomicUsize>) -> Self {
        live.fetch_add(1, Ordering::SeqCst);
        Tracked(live.clone())
    }
}

impl Clone for Tracked {
    fn clone(&self) -> Self {
        Tracked::new(&self.0)
    }
}

impl Drop for Tracked {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

#[test]
fn dropping_the_last_handle_frees_everything() {
    let live = Arc::new(AtomicUsize::new(0));
    {
        let c: Cache<u64, Tracked> = Cache::builder().shards(4).build().unwrap();
        let readers: Vec<_> = (0..2)
            .map(|_| {
                let c = c.clone();
                std::thread::spawn(move || {
                    for k in 0..20_000u64 {
                        drop(c.get(&(k % 500)));
                    }
                })
            })
            .collect();
        // Replacements and removals retire entries while readers read.
        for round in 0..20u64 {
            for k in 0..500u64 {
                if (k + round) % 7 == 0 {
                    c.invalidate(&k).unwrap();
                } else {
                    c.insert(k, Tracked::new(&live)).unwrap();
                }
            }
        }
        for r in readers {
            r.join().unwrap();
        }
        assert!(live.load(Ordering::SeqCst) > 0);
    }
    assert_eq!(live.load(Ordering::SeqCst), 0, "values leaked");
}

#[test]
fn writes_are_linearizable_per_key_under_contention() {
    // Each writer owns its keys and writes increasing versions; a reader
    // that saw version v must never later see an older one (G1), and after
    // a writer's insert returns, the writer itself reads its own version.
    let c: Cache<u64, u64> = Cache::builder().shards(2).build().unwrap();
    let rounds = if cfg!(debug_assertions) {
        5_000
    } else {
        50_000
    };
    let writers: Vec<_> = (0..2u64)
        .map(|w| {
            let c = c.clone();
            std::thread::spawn(move || {
                for v in 1..=rounds {
                    let k = w * 16 + v % 16;
                    c.insert(k, v).unwrap();
                    assert!(c.get(&k).unwrap() >= v);
                }
            })
        })
        .collect();
    let reader = {
        let c = c.clone();
        std::thread::spawn(move || {
            let mut last = [0u64; 32];
            for i in 0..rounds * 2 {
                let k = i % 32;
                let v = c.get(&k).unwrap_or(0);
                assert!(
                    v >= last[k as usize],
                    "key {k} went back from {} to {v}",
                    last[k as usize]
                );
                last[k as usize] = v;
            }
        })
    };
    for w in writers {
        w.join().unwrap();
    }
    reader.join().unwrap();
}

#[test]
fn settings_that_need_too_much_mailbox_together_are_refused_not_aborted() {
    let e = Cache::<u64, u64>::builder()
        .shards(coherent::MAX_SHARDS)
        .mailbox_capacity(coherent::MAX_MAILBOX_CAPACITY)
        .build()
        .unwrap_err();
    assert!(matches!(e, Error::InvalidConfig(_)), "{e}");
    assert!(e.to_string().contains("MAX_MAILBOX_BYTES"), "{e}");
    // Each at its largest alone is fine, and so is the default mailbox
    // with the most shards.
    for (shards, depth) in [
        (coherent::MAX_SHARDS, 64),
        (1, coherent::MAX_MAILBOX_CAPACITY),
    ] {
        let c = Cache::<u64, u64>::builder()
            .shards(shards)
            .mailbox_capacity(depth)
            .build()
            .unwrap();
        c.insert(7, 7).unwrap();
        assert_eq!(c.get(&7), Some(7));
    }
}
