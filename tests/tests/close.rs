//! `Cache::close`: every operation after it fails with `Error::Closed` and
//! changes nothing; operations in flight are answered, none hangs; a caller
//! waiting on another caller's load is told the cache closed.

use coherent::{Cache, Error, LoadError, RemovalCause};
use coherent_tests::wait_until;
use std::sync::{mpsc, Arc, Mutex};

#[test]
fn everything_after_close_is_refused_and_nothing_is_left() {
    let removed = Arc::new(Mutex::new(Vec::new()));
    let heard = removed.clone();
    let cache: Cache<u64, u64> = Cache::builder()
        .shards(4)
        .removal_listener(move |k, _v, cause| heard.lock().unwrap().push((*k, cause)))
        .build()
        .unwrap();
    for k in 0..100 {
        cache.insert(k, k).unwrap();
    }
    cache.insert_tagged(100, 1, ["t"]).unwrap();
    cache.close().unwrap();
    let mut removed = std::mem::take(&mut *removed.lock().unwrap());
    removed.sort_by_key(|(k, _)| *k);
    let expected: Vec<_> = (0..=100).map(|k| (k, RemovalCause::Invalidated)).collect();
    assert_eq!(
        removed, expected,
        "the listener hears of every entry dropped"
    );

    assert_eq!(cache.len(), 0);
    assert!((0..=100).all(|k| cache.get(&k).is_none()));
    assert_eq!(cache.get_many(&[1, 2]), vec![None, None]);
    assert_eq!(cache.insert(1, 1), Err(Error::Closed));
    assert_eq!(cache.insert_tagged(1, 1, ["t"]), Err(Error::Closed));
    assert_eq!(cache.invalidate(&1), Err(Error::Closed));
    assert_eq!(cache.invalidate_tag("t"), Err(Error::Closed));
    assert_eq!(cache.try_insert(1, 1), Err(Error::Closed));
    let ran = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flag = ran.clone();
    let updated = cache.update(1, move |_| {
        flag.store(true, std::sync::atomic::Ordering::Relaxed);
        Some(1)
    });
    assert_eq!(updated, Err(Error::Closed));
    assert!(
        !ran.load(std::sync::atomic::Ordering::Relaxed),
        "a refused update's closure does not run"
    );
    let loaded = cache.get_or_load(1, |_| Ok::<u64, ()>(1));
    assert_eq!(loaded, Err(LoadError::Cache(Error::Closed)));
    let committed = cache.transaction().insert(1, 1).insert(2, 2).commit();
    assert_eq!(committed, Err(Error::Closed));
    // A second handle sees the same closed cache; closing again is fine.
    let other = cache.clone();
    assert_eq!(other.insert(5, 5), Err(Error::Closed));
    other.close().unwrap();
    assert_eq!(cache.len(), 0);
    assert!((0..=100).all(|k| cache.get(&k).is_none()));
}

#[test]
fn async_operations_after_close_are_refused() {
    let cache: Cache<u64, u64> = Cache::new();
    cache.insert(1, 1).unwrap();
    cache.close().unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    rt.block_on(async {
        assert_eq!(cache.insert_async(1, 2).await, Err(Error::Closed));
        assert_eq!(cache.invalidate_async(&1).await, Err(Error::Closed));
        assert_eq!(cache.update_async(1, |_| Some(3)).await, Err(Error::Closed));
        let loaded = cache.get_or_load_async(1, async { Ok::<u64, ()>(4) }).await;
        assert_eq!(loaded, Err(LoadError::Cache(Error::Closed)));
        let committed = cache.transaction().insert(1, 1).commit_async().await;
        assert_eq!(committed, Err(Error::Closed));
    });
    assert_eq!(cache.get(&1), None);
}

#[test]
fn a_caller_waiting_on_a_load_is_answered_when_the_cache_closes() {
    let cache: Cache<u64, u64> = Cache::builder().shards(1).build().unwrap();
    let (release, hold) = mpsc::channel::<()>();
    let (started, loading) = mpsc::channel::<()>();
    let leader = {
        let cache = cache.clone();
        std::thread::spawn(move || {
            cache.get_or_load(7, |_| {
                started.send(()).unwrap();
                hold.recv().unwrap();
                Ok::<u64, ()>(70)
            })
        })
    };
    loading.recv().unwrap();
    let waiter = {
        let cache = cache.clone();
        std::thread::spawn(move || cache.get_or_load(7, |_| Ok::<u64, ()>(71)))
    };
    // The waiter is parked on the leader's lease.
    wait_until(|| cache.waiting() == 1);
    cache.close().unwrap();
    assert_eq!(
        waiter.join().unwrap(),
        Err(LoadError::Cache(Error::Closed)),
        "the waiter is told the cache closed"
    );
    release.send(()).unwrap();
    // The leader keeps what it loaded; the closed cache does not keep it.
    assert_eq!(leader.join().unwrap(), Ok(70));
    assert_eq!(cache.get(&7), None);
}

/// Writers hammer a one-slot-mailbox cache (so most writes queue) while it
/// closes: every call returns `Ok` or `Closed` (none hangs: the joins
/// return), and once `close` returned nothing is left and every write is
/// refused. (Shards close one after another, so while `close` runs a
/// writer refused by one shard may still be served by another.)
#[test]
fn writers_in_flight_are_all_answered_when_the_cache_closes() {
    let cache: Cache<u64, u64> = Cache::builder()
        .shards(2)
        .mailbox_capacity(1)
        .build()
        .unwrap();
    let threads: Vec<_> = (0..4u64)
        .map(|t| {
            let cache = cache.clone();
            std::thread::spawn(move || {
                let mut ok = 0u64;
                for i in 0.. {
                    let k = t * 1_000_000 + i;
                    let result = match i % 3 {
                        0 => cache.insert(k % 64, i),
                        1 => cache.update(k % 64, |v| v.map(|n| n + 1)).map(drop),
                        _ => cache.invalidate(&(k % 64)),
                    };
                    match result {
                        Ok(()) => ok += 1,
                        Err(Error::Closed) => break,
                        Err(e) => panic!("writer {t}: {e}"),
                    }
                }
                ok
            })
        })
        .collect();
    wait_until(|| !cache.is_empty());
    cache.close().unwrap();
    assert_eq!(cache.len(), 0);
    let applied: u64 = threads.into_iter().map(|t| t.join().unwrap()).sum();
    assert!(applied > 0);
    assert!((0..64).all(|k| cache.get(&k).is_none()));
    assert!((0..64).all(|k| cache.insert(k, 1) == Err(Error::Closed)));
    assert_eq!(cache.len(), 0);
}
