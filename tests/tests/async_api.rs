//! The async front: same guarantees, and cancellation never strands others.

use coherent::{Cache, LoadError};

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .build()
        .unwrap()
}

#[test]
fn async_writes_are_visible_when_they_resolve() {
    runtime().block_on(async {
        let c: Cache<u64, u64> = Cache::new();
        c.insert_async(1, 10).await.unwrap();
        assert_eq!(c.get(&1), Some(10));
        assert_eq!(
            c.update_async(1, |v| v.map(|n| n * 2)).await.unwrap(),
            Some(20)
        );
        assert_eq!(c.get(&1), Some(20));
        c.invalidate_async(&1).await.unwrap();
        assert_eq!(c.get(&1), None);
        let v = c
            .get_or_load_async(2, async { Ok::<_, ()>(7) })
            .await
            .unwrap();
        assert_eq!((v, c.get(&2)), (7, Some(7)));
    });
}

#[test]
fn concurrent_async_appends_lose_nothing_even_with_a_tiny_mailbox() {
    runtime().block_on(async {
        let c: Cache<u64, Vec<u32>> = Cache::builder()
            .shards(1)
            .mailbox_capacity(1)
            .build()
            .unwrap();
        let tasks: Vec<_> = (0..64u32)
            .map(|id| {
                let c = c.clone();
                tokio::spawn(async move {
                    for _ in 0..50 {
                        c.update_async(1, move |v| {
                            let mut l = v.cloned().unwrap_or_default();
                            l.push(id);
                            Some(l)
                        })
                        .await
                        .unwrap();
                    }
                })
            })
            .collect();
        for t in tasks {
            t.await.unwrap();
        }
        assert_eq!(c.get(&1).unwrap().len(), 64 * 50);
    });
}

#[test]
fn async_loader_panic_reaches_only_its_caller() {
    runtime().block_on(async {
        let c: Cache<u64, u64> = Cache::new();
        let e = c
            .get_or_load_async(1, async {
                if c.shard_count() > 0 {
                    panic!("async loader bug");
                }
                Ok::<u64, ()>(0)
            })
            .await
            .unwrap_err();
        assert_eq!(e, LoadError::LoaderPanicked("async loader bug".to_owned()));
        assert_eq!(
            c.get_or_load_async(1, async { Ok::<_, ()>(3) })
                .await
                .unwrap(),
            3
        );
    });
}

#[test]
fn a_dropped_leader_future_lets_the_waiters_go_on() {
    runtime().block_on(async {
        let c: Cache<u64, u64> = Cache::builder().shards(1).build().unwrap();
        let (started_tx, started_rx) = tokio::sync::oneshot::channel();
        let leader = {
            let c = c.clone();
            tokio::spawn(async move {
                c.get_or_load_async(1, async move {
                    started_tx.send(()).unwrap();
                    std::future::pending::<Result<u64, ()>>().await
                })
                .await
            })
        };
        started_rx.await.unwrap();
        let waiter = {
            let c = c.clone();
            tokio::spawn(async move { c.get_or_load_async(1, async { Ok::<_, ()>(5) }).await })
        };
        let probe = c.clone();
        tokio::task::spawn_blocking(move || coherent_tests::wait_until(|| probe.waiting() == 1))
            .await
            .unwrap();
        leader.abort(); // drops the leader's future mid-load
        assert!(leader.await.unwrap_err().is_cancelled());
        assert_eq!(waiter.await.unwrap().unwrap(), 5);
        assert_eq!(c.get(&1), Some(5));
    });
}

#[test]
fn a_dropped_waiter_is_skipped_when_the_load_passes_on() {
    runtime().block_on(async {
        let c: Cache<u64, u64> = Cache::builder().shards(1).build().unwrap();
        let (started_tx, started_rx) = tokio::sync::oneshot::channel();
        let (fail_tx, fail_rx) = tokio::sync::oneshot::channel::<()>();
        let leader = {
            let c = c.clone();
            tokio::spawn(async move {
                c.get_or_load_async(1, async move {
                    started_tx.send(()).unwrap();
                    fail_rx.await.unwrap();
                    Err::<u64, _>("leader failed")
                })
                .await
            })
        };
        started_rx.await.unwrap();
        let dropped = {
            let c = c.clone();
            tokio::spawn(async move { c.get_or_load_async(1, async { Ok::<_, &str>(1) }).await })
        };
        let probe = c.clone();
        let p = probe.clone();
        tokio::task::spawn_blocking(move || coherent_tests::wait_until(|| p.waiting() == 1))
            .await
            .unwrap();
        let kept = {
            let c = c.clone();
            tokio::spawn(async move { c.get_or_load_async(1, async { Ok::<_, &str>(2) }).await })
        };
        let p = probe.clone();
        tokio::task::spawn_blocking(move || coherent_tests::wait_until(|| p.waiting() == 2))
            .await
            .unwrap();
        dropped.abort();
        assert!(dropped.await.unwrap_err().is_cancelled());
        fail_tx.send(()).unwrap();
        assert_eq!(
            leader.await.unwrap(),
            Err(LoadError::Loader("leader failed"))
        );
        assert_eq!(kept.await.unwrap().unwrap(), 2);
    });
}
