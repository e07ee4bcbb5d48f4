//! Transactions, tags and `get_many` (G2, and G3 for tags).

use coherent::{Cache, Error};
use coherent_tests::wait_until;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Arc};

fn cache() -> Cache<u64, u64> {
    Cache::builder().shards(8).build().unwrap()
}

/// `n` keys, each in a different shard from the others while shards last.
fn spread(c: &Cache<u64, u64>, n: usize) -> Vec<u64> {
    let mut seen = std::collections::HashSet::new();
    (0..)
        .filter(|k| seen.insert(c.shard_of(k)))
        .take(n)
        .collect()
}

#[test]
fn transactions_on_one_two_and_all_shards_apply_entirely() {
    let c = cache();
    // One shard: two keys that share it.
    let home = c.shard_of(&0);
    let same = (1..).find(|k| c.shard_of(k) == home).unwrap();
    c.transaction()
        .insert(0, 1)
        .insert(same, 1)
        .commit()
        .unwrap();
    assert_eq!(c.get_many(&[0, same]), vec![Some(1), Some(1)]);
    // Two shards.
    let two = spread(&c, 2);
    c.transaction()
        .insert(two[0], 2)
        .insert(two[1], 2)
        .commit()
        .unwrap();
    assert_eq!(c.get_many(&two), vec![Some(2), Some(2)]);
    // All shards.
    let all = spread(&c, c.shard_count());
    assert_eq!(all.len(), c.shard_count());
    let mut t = c.transaction();
    for &k in &all {
        t = t.insert(k, 3);
    }
    assert_eq!(t.len(), all.len());
    t.commit().unwrap();
    assert!(c.get_many(&all).iter().all(|v| *v == Some(3)));
    // And removal across all of them.
    let mut t = c.transaction();
    for &k in &all {
        t = t.invalidate(k);
    }
    t.commit().unwrap();
    assert!(c.get_many(&all).iter().all(Option::is_none));
}

#[test]
fn operations_apply_in_order_within_a_transaction() {
    let c = cache();
    c.transaction()
        .insert(1, 10)
        .invalidate(1)
        .insert(2, 20)
        .insert(2, 21)
        .commit()
        .unwrap();
    assert_eq!(c.get(&1), None);
    assert_eq!(c.get(&2), Some(21));
    // A tag invalidation removes what earlier operations tagged, not what
    // later ones add.
    c.transaction()
        .insert_tagged(3, 30, ["t"])
        .invalidate_tag("t")
        .insert_tagged(4, 40, ["t"])
        .commit()
        .unwrap();
    assert_eq!(c.get(&3), None);
    assert_eq!(c.get(&4), Some(40));
    assert!(c.transaction().is_empty());
    c.transaction().commit().unwrap(); // an empty transaction is fine
}

#[test]
fn invalidate_tag_removes_tagged_entries_in_every_shard_and_nothing_else() {
    let c = cache();
    // At least 200 keys, and on until the "user:42" keys (k % 4 < 2) have
    // reached every shard (which shards they land in depends on the hash).
    let mut tagged_shards = std::collections::HashSet::new();
    let mut n = 0u64;
    while n < 200 || tagged_shards.len() < c.shard_count() {
        let k = n;
        match k % 4 {
            0 => c.insert_tagged(k, k, ["user:42"]).unwrap(),
            1 => c.insert_tagged(k, k, ["user:42", "7"]).unwrap(),
            2 => c.insert_tagged(k, k, [7u64]).unwrap(),
            _ => c.insert(k, k).unwrap(),
        }
        if k % 4 < 2 {
            tagged_shards.insert(c.shard_of(&k));
        }
        n += 1;
    }
    c.invalidate_tag("user:42").unwrap();
    for k in 0..n {
        let expect = (k % 4 >= 2).then_some(k);
        assert_eq!(c.get(&k), expect, "key {k}");
    }
    // The integer tag 7 and the string tag "7" are different tags.
    c.invalidate_tag("7").unwrap();
    assert_eq!(c.get(&2), Some(2));
    c.invalidate_tag(7u64).unwrap();
    assert_eq!(c.get(&2), None);
    assert_eq!(c.get(&3), Some(3));
    // Invalidating a tag nobody carries changes nothing.
    c.invalidate_tag("nobody").unwrap();
    assert_eq!(c.get(&3), Some(3));
}

#[test]
fn a_key_carries_the_tags_of_its_last_write() {
    let c = cache();
    c.insert_tagged(1, 1, ["a"]).unwrap();
    c.insert(1, 2).unwrap(); // no tags now
    c.invalidate_tag("a").unwrap();
    assert_eq!(c.get(&1), Some(2));
    c.insert_tagged(1, 3, ["a", "b"]).unwrap();
    c.insert_tagged(1, 4, ["b"]).unwrap(); // "a" dropped
    c.invalidate_tag("a").unwrap();
    assert_eq!(c.get(&1), Some(4));
    c.update(1, |v| v.map(|n| n + 1)).unwrap(); // an update keeps the tags
    c.invalidate_tag("b").unwrap();
    assert_eq!(c.get(&1), None);
    // A removed key leaves its tags: re-inserting it untagged is safe.
    c.insert_tagged(2, 1, ["c"]).unwrap();
    c.invalidate(&2).unwrap();
    c.insert(2, 2).unwrap();
    c.invalidate_tag("c").unwrap();
    assert_eq!(c.get(&2), Some(2));
}

/// Starts a load of key 1 declaring `tag`, and returns once its loader
/// runs; sending on the returned channel lets the loader return 100.
fn tagged_load_in_flight(
    c: &Cache<u64, u64>,
    tag: &'static str,
) -> (
    std::thread::JoinHandle<Result<u64, coherent::LoadError<()>>>,
    mpsc::Sender<()>,
) {
    let (loading_tx, loading_rx) = mpsc::channel();
    let (go_tx, go_rx) = mpsc::channel::<()>();
    let leader = {
        let c = c.clone();
        std::thread::spawn(move || {
            c.get_or_load_tagged(1, [tag], |_| {
                loading_tx.send(()).unwrap();
                go_rx.recv().unwrap();
                Ok(100)
            })
        })
    };
    loading_rx.recv().unwrap();
    (leader, go_tx)
}

#[test]
fn a_tag_invalidated_while_a_tagged_load_runs_dooms_the_load() {
    let c = cache();
    let (leader, go) = tagged_load_in_flight(&c, "user:1");
    // The loader read its 100 before this invalidation.
    c.invalidate_tag("user:1").unwrap();
    // A caller that starts after the invalidation returned.
    let late = {
        let c = c.clone();
        std::thread::spawn(move || c.get_or_load_tagged(1, ["user:1"], |_| Ok::<_, ()>(200)))
    };
    wait_until(|| late.is_finished() || c.waiting() > 0);
    go.send(()).unwrap();
    assert_eq!(
        leader.join().unwrap(),
        Ok(100),
        "the leader gets its own value"
    );
    assert_eq!(
        late.join().unwrap(),
        Ok(200),
        "never the value loaded before"
    );
    assert_eq!(c.get(&1), Some(200), "the doomed load was not installed");
}

#[test]
fn a_load_that_did_not_declare_the_tag_is_not_doomed() {
    let c = cache();
    let (leader, go) = tagged_load_in_flight(&c, "user:2");
    c.invalidate_tag("user:1").unwrap();
    go.send(()).unwrap();
    assert_eq!(leader.join().unwrap(), Ok(100));
    assert_eq!(c.get(&1), Some(100), "installed: its tag was not touched");
    c.invalidate_tag("user:2").unwrap();
    assert_eq!(c.get(&1), None, "and it carries its declared tag");
}

#[test]
fn commit_from_inside_an_update_is_refused() {
    let c = cache();
    let inner = c.clone();
    let seen = Arc::new(std::sync::Mutex::new(None));
    let seen2 = seen.clone();
    c.update(1, move |_| {
        *seen2.lock().unwrap() = Some(inner.transaction().insert(2, 2).commit());
        Some(1)
    })
    .unwrap();
    assert_eq!(*seen.lock().unwrap(), Some(Err(Error::Reentrant)));
    assert_eq!(c.get(&2), None, "nothing of it was applied");
}

#[test]
fn get_many_during_transactions_is_a_snapshot() {
    // Every transaction sets all keys (one per shard) to its number; a
    // snapshot holds one number throughout. Separate `get`s of the same keys
    // do show mixes, so the check can fail.
    let c = cache();
    let keys = spread(&c, 8);
    let mut t = c.transaction();
    for &k in &keys {
        t = t.insert(k, 0);
    }
    t.commit().unwrap();
    let done = Arc::new(AtomicBool::new(false));
    let (torn_many, torn_single) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let readers: Vec<_> = [true, false]
        .into_iter()
        .map(|many| {
            let (c, keys, done) = (c.clone(), keys.clone(), done.clone());
            let torn = if many {
                torn_many.clone()
            } else {
                torn_single.clone()
            };
            std::thread::spawn(move || {
                let mut reads = 0u64;
                while !done.load(Ordering::Relaxed) || reads == 0 {
                    let values: Vec<_> = if many {
                        c.get_many(&keys)
                    } else {
                        keys.iter().map(|k| c.get(k)).collect()
                    };
                    if values.iter().any(|v| *v != values[0]) {
                        torn.fetch_add(1, Ordering::Relaxed);
                    }
                    reads += 1;
                }
            })
        })
        .collect();
    for r in 1..=coherent_tests::free_rounds() / 10 {
        let mut t = c.transaction();
        for &k in &keys {
            t = t.insert(k, r);
        }
        t.commit().unwrap();
    }
    done.store(true, Ordering::Relaxed);
    for r in readers {
        r.join().unwrap();
    }
    assert_eq!(
        torn_many.load(Ordering::Relaxed),
        0,
        "a get_many saw a partial transaction"
    );
    assert!(
        torn_single.load(Ordering::Relaxed) > 0,
        "separate gets never saw a mix: the scenario does not exercise the race"
    );
}

#[test]
fn async_commit_and_tag_invalidation() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    rt.block_on(async {
        let c = cache();
        c.insert_tagged_async(1, 1, ["t"]).await.unwrap();
        c.transaction()
            .insert(2, 2)
            .insert(3, 3)
            .commit_async()
            .await
            .unwrap();
        assert_eq!(c.get_many(&[1, 2, 3]), vec![Some(1), Some(2), Some(3)]);
        c.invalidate_tag_async("t").await.unwrap();
        assert_eq!(c.get(&1), None);
        let v = c
            .get_or_load_tagged_async(4, ["u"], async { Ok::<_, ()>(4) })
            .await
            .unwrap();
        assert_eq!(v, 4);
        c.invalidate_tag("u").unwrap();
        assert_eq!(c.get(&4), None);
    });
}

#[test]
fn writes_racing_transactions_on_the_same_keys_are_neither_lost_nor_torn() {
    // Two threads commit transactions that set a pair of keys (in different
    // shards) to one number and, every 16th time, invalidate the tag
    // "counter". A third thread counts with `update` on a key that carries
    // that tag and lives in the pair's first shard, so its updates often
    // meet a transaction in flight there and are folded into it. Checks:
    // `get_many` never sees the pair split; each update returns the
    // previous count + 1, or 1 when an invalidation removed the counter
    // (none is lost); a `get` after an update never sees an older count.
    let c = cache();
    let pair = spread(&c, 2);
    let counter = (0..)
        .find(|k| !pair.contains(k) && c.shard_of(k) == c.shard_of(&pair[0]))
        .unwrap();
    c.insert_tagged(counter, 0, ["counter"]).unwrap();
    let done = Arc::new(AtomicBool::new(false));
    let committers: Vec<_> = (0..2u64)
        .map(|id| {
            let (c, pair) = (c.clone(), pair.clone());
            std::thread::spawn(move || {
                for r in 0..coherent_tests::free_rounds() / 20 {
                    let v = r * 2 + id;
                    let mut t = c.transaction().insert(pair[0], v).insert(pair[1], v);
                    if r % 16 == 0 {
                        t = t.invalidate_tag("counter");
                    }
                    t.commit().unwrap();
                }
            })
        })
        .collect();
    let updater = {
        let (c, done) = (c.clone(), done.clone());
        std::thread::spawn(move || {
            let (mut last, mut updates) = (0, 0u64);
            while !done.load(Ordering::Relaxed) {
                let now = c
                    .update(counter, |v| Some(v.map_or(1, |n| n + 1)))
                    .unwrap()
                    .unwrap();
                assert!(
                    now == last + 1 || now == 1,
                    "an update was lost: {last} -> {now}"
                );
                if now == 1 {
                    // Recreated untagged by the update: tag it again.
                    c.insert_tagged(counter, 1, ["counter"]).unwrap();
                }
                assert!(
                    c.get(&counter).is_none_or(|v| v >= now),
                    "read an older count"
                );
                last = now;
                updates += 1;
            }
            updates
        })
    };
    let reader = {
        let (c, pair, done) = (c.clone(), pair.clone(), done.clone());
        std::thread::spawn(move || {
            let mut torn = 0;
            while !done.load(Ordering::Relaxed) {
                let v = c.get_many(&pair);
                if v[0] != v[1] {
                    torn += 1;
                }
            }
            torn
        })
    };
    for t in committers {
        t.join().unwrap();
    }
    done.store(true, Ordering::Relaxed);
    assert!(updater.join().unwrap() > 0);
    assert_eq!(reader.join().unwrap(), 0, "a get_many saw the pair split");
}

/// A key that, each time a `get_many` compares it with itself (reads it),
/// commits a transaction on another key if it can do so without waiting:
/// every lock-free read of it is overtaken by a commit.
#[derive(Debug, Clone, Copy)]
struct Overtaken(u64);

thread_local! {
    static OVERTAKE: std::cell::RefCell<Option<(Cache<Overtaken, u64>, u32)>> =
        const { std::cell::RefCell::new(None) };
    static READS: std::cell::Cell<u32> = const { std::cell::Cell::new(0) };
}

impl PartialEq for Overtaken {
    fn eq(&self, other: &Self) -> bool {
        if self.0 == 0 && other.0 == 0 {
            READS.with(|r| r.set(r.get() + 1));
            OVERTAKE.with(|o| {
                if let Some((cache, left)) = o.borrow_mut().as_mut() {
                    if *left > 0 {
                        // Poll the commit once: it takes the commit lock
                        // and commits at once if the lock is free, and is
                        // dropped unapplied if it is held (by this thread's
                        // own get_many).
                        let commit = cache
                            .transaction()
                            .insert(Overtaken(1_000 + u64::from(*left)), 1)
                            .commit_async();
                        let mut commit = std::pin::pin!(commit);
                        let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
                        if std::future::Future::poll(commit.as_mut(), &mut cx).is_ready() {
                            *left -= 1;
                        }
                    }
                }
            });
        }
        self.0 == other.0
    }
}

impl Eq for Overtaken {}

impl std::hash::Hash for Overtaken {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.0.hash(state);
    }
}

#[test]
fn get_many_overtaken_by_every_commit_finishes_after_a_bounded_number_of_reads() {
    let cache: Cache<Overtaken, u64> = Cache::builder().shards(4).build().unwrap();
    let keys: Vec<Overtaken> = (0..512).map(Overtaken).collect();
    for k in &keys {
        cache.insert(*k, k.0).unwrap();
    }
    // Up to 1,000 commits, one per read of key 0 that is not under the
    // commit lock: a get_many that only retries reads 1,001 times.
    OVERTAKE.with(|o| *o.borrow_mut() = Some((cache.clone(), 1_000)));
    READS.with(|r| r.set(0));
    let got = cache.get_many(&keys);
    let left = OVERTAKE.with(|o| o.borrow_mut().take().map(|(_, left)| left));
    let reads = READS.with(|r| r.get());
    assert_eq!(got, keys.iter().map(|k| Some(k.0)).collect::<Vec<_>>());
    assert_eq!(
        reads,
        coherent::GET_MANY_OPTIMISTIC_READS + 1,
        "each lock-free read overtaken, then one read under the commit lock"
    );
    assert_eq!(
        left,
        Some(1_000 - coherent::GET_MANY_OPTIMISTIC_READS),
        "the read under the lock could not be overtaken"
    );
}
