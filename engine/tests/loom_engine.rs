//! loom models of whole caches: the public API (`Cache`, `Transaction`,
//! `get_many`, `update`, `close`) run under loom, with the engine's and
//! the shard crate's sync facades (`sync.rs`) swapped for loom's types.
//!
//! Run with `RUSTFLAGS="--cfg coherent_loom" LOOM_MAX_PREEMPTIONS=3 cargo
//! test -p coherent --release --test loom_engine --target-dir target/loom`.
//! Each model prints how many interleavings it explored and how long it
//! took (`docs/guarantees.md` keeps the figures).
#![cfg(coherent_loom)]

use coherent::{Cache, Error, LoadError};
use loom::thread;

use coherent_shard::loom_model as model;

/// A small cache of one shard.
fn one_shard() -> Cache<u64, u64> {
    Cache::builder()
        .shards(1)
        .initial_capacity(4)
        .mailbox_capacity(4)
        .build()
        .unwrap()
}

/// A cache of two shards, with two keys that live in different shards.
fn two_shards() -> (Cache<u64, u64>, u64, u64) {
    let cache: Cache<u64, u64> = Cache::builder()
        .shards(2)
        .initial_capacity(4)
        .mailbox_capacity(4)
        .build()
        .unwrap();
    let a = 0;
    let b = (1..64)
        .find(|k| cache.shard_of(k) != cache.shard_of(&a))
        .expect("a key in the other shard");
    (cache, a, b)
}

/// G2: a transaction over two shards, raced by a reader doing two `get`s
/// in a row and then a `get_many` of both keys. Having seen the
/// transaction in one shard, the next `get` sees it in the other; the
/// `get_many` sees both writes or neither. (The committer runs on the
/// model's main thread: see `shard/tests/loom_handoff.rs` on why the
/// writer of a race does.) Building with `--cfg
/// coherent_loom_break_watermark` shows intents before the watermark
/// reaches them, and loom finds the torn read.
#[test]
fn get_pairs_and_get_many_see_a_transaction_whole_or_not_at_all() {
    model("transaction_vs_get_and_get_many", || {
        let (cache, a, b) = two_shards();
        cache.insert(a, 0).unwrap();
        cache.insert(b, 0).unwrap();
        let reader = {
            let cache = cache.clone();
            thread::spawn(move || {
                let first = cache.get(&a);
                let second = cache.get(&b);
                if first == Some(1) {
                    assert_eq!(second, Some(1), "get saw the transaction in one shard only");
                }
                let both = cache.get_many(&[a, b]);
                assert_eq!(both[0], both[1], "get_many saw part of the transaction");
            })
        };
        cache
            .transaction()
            .insert(a, 1)
            .insert(b, 1)
            .commit()
            .unwrap();
        reader.join().unwrap();
        assert_eq!(cache.get_many(&[a, b]), vec![Some(1), Some(1)]);
    });
}

/// G4: two `update`s of one key racing: both are applied, each sees the
/// other's result or the start, and the key ends at 2. Building with
/// `--cfg coherent_loom_break_owner` lets a second writer take a shard's
/// owner token while it is held, and loom finds the lost update (or the
/// two owners touching the shard's state at once).
#[test]
fn racing_updates_are_both_applied() {
    // About the owner's mutual exclusion through `update`: the bias would
    // reorder loom's search so that the broken build's two owners show
    // first as a panic while unwinding rather than as the race they are.
    coherent_shard::loom_bias(false);
    model("racing_updates", || {
        let cache = one_shard();
        let bump = |v: Option<&u64>| Some(v.copied().unwrap_or(0) + 1);
        let other = {
            let cache = cache.clone();
            thread::spawn(move || cache.update(7, bump))
        };
        let mine = cache.update(7, bump).unwrap();
        let theirs = other.join().unwrap().unwrap();
        let mut seen = [mine, theirs];
        seen.sort();
        assert_eq!(seen, [Some(1), Some(2)], "an update was lost");
        assert_eq!(cache.get(&7), Some(2));
    });
}

/// Shutdown with operations in flight: two callers load one key (one
/// leads, the other may wait on it) and a third writes, while the cache is
/// closed. Every caller gets an answer (a value, or `Error::Closed`), none
/// hangs (loom reports a deadlock if one would), nothing is left in the
/// cache, and everything after the close is refused. Building with
/// `--cfg coherent_loom_break_close` leaves the waiters of a load in
/// flight unanswered at close, and loom finds the caller hanging.
#[test]
fn close_answers_every_caller_in_flight() {
    // Four threads: with the owner token's bias as well, more
    // interleavings than CI can run (the token and shard models check it).
    coherent_shard::loom_bias(false);
    model("close_with_operations_in_flight", || {
        let cache = one_shard();
        let load = |cache: Cache<u64, u64>, v: u64| {
            thread::spawn(move || match cache.get_or_load(1, |_| Ok::<_, ()>(v)) {
                Ok(got) => assert!(got == 5 || got == 6, "loaded {got}"),
                Err(e) => assert_eq!(e, LoadError::Cache(Error::Closed)),
            })
        };
        let first = load(cache.clone(), 5);
        let second = load(cache.clone(), 6);
        let writer = {
            let cache = cache.clone();
            thread::spawn(move || match cache.insert(2, 20) {
                Ok(()) | Err(Error::Closed) => {}
                Err(e) => panic!("insert: {e}"),
            })
        };
        cache.close().unwrap();
        assert_eq!(cache.get(&1), None);
        assert_eq!(cache.insert(3, 30), Err(Error::Closed));
        first.join().unwrap();
        second.join().unwrap();
        writer.join().unwrap();
        assert_eq!(cache.get_many(&[1, 2, 3]), vec![None, None, None]);
        assert_eq!(cache.len(), 0);
    });
}
