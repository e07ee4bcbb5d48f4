//! loom models of the shard protocol (run with
//! `RUSTFLAGS="--cfg coherent_loom" cargo test -p coherent-shard --release --test loom_handoff`).
//!
//! Under `coherent_loom` the crate's sync facade swaps in loom's atomics,
//! fences, mutexes, threads and thread-locals, and a
//! mutex-guarded queue for the mailbox (crossbeam's lock-free queue is
//! invisible to loom; the models rely only on its being a linearizable
//! FIFO). The hand-off itself is the owner token's word (`token.rs`),
//! which loom sees whole. The models check the owner-token hand-off,
//! acknowledgement after visibility, readers racing replacement and
//! reclamation, and the lease check, over every interleaving loom finds
//! with the configured preemption bound.
//!
//! One habit the models keep: the thread whose stores a race is about
//! (the writer) runs on the model's main thread, the racing reader is
//! spawned. loom's partial-order reduction remembers one last access per
//! atomic, so a spawned writer that loads a slot just before it stores it
//! (a probe, then a publish) hides the reader's earlier load of that slot,
//! and the race is never scheduled: with the roles the other way round, a
//! model of one `get` racing one write explored a single interleaving.
//! Each model has a broken build that loom must catch (docs/guarantees.md).
#![cfg(coherent_loom)]

use coherent_shard::{Op, Reply, Shard, Visible};
use loom::cell::UnsafeCell;
use loom::sync::atomic::{AtomicBool, Ordering};
use loom::sync::Arc;
use loom::thread;

use coherent_shard::loom_model as model;

fn insert(s: &Shard<u64, u64>, k: u64, v: u64) {
    assert_eq!(
        s.submit(k, Op::Insert { key: k, value: v }).unwrap(),
        Reply::Done
    );
}

/// Two writers race for one shard: each is applied, each caller is answered
/// (nobody is stranded in the mailbox), and each sees its own write.
#[test]
fn contended_writers_are_all_applied_and_answered() {
    model("contended_writers", || {
        let s = Arc::new(Shard::<u64, u64>::new(4, 2));
        let other = {
            let s = s.clone();
            thread::spawn(move || {
                insert(&s, 1, 10);
                s.get(1, &1, Visible::At(0))
            })
        };
        insert(&s, 2, 20);
        assert_eq!(s.get(2, &2, Visible::At(0)), Some(20));
        assert_eq!(other.join().unwrap(), Some(10));
        assert_eq!(s.get(1, &1, Visible::At(0)), Some(10));
        assert_eq!(s.queued(), 0);
    });
}

/// The same race through the direct write path (`Shard::write`, which
/// takes the token only when it is free and nothing is queued, and falls
/// back to the mailbox otherwise), against a writer using `submit`, and a
/// removal racing both: all applied, all answered, nothing stranded.
#[test]
fn direct_writes_race_queued_ones_and_none_is_stranded() {
    model("direct_writes", || {
        let s = Arc::new(Shard::<u64, u64>::new(4, 2));
        let other = {
            let s = s.clone();
            thread::spawn(move || {
                assert_eq!(s.write(1, 1, Some(10)).unwrap(), None);
                assert_eq!(s.write(3, 3, None).unwrap(), None);
                s.get(1, &1, Visible::At(0))
            })
        };
        insert(&s, 2, 20);
        assert_eq!(s.write(3, 3, Some(30)).unwrap(), None);
        assert_eq!(s.get(2, &2, Visible::At(0)), Some(20));
        assert_eq!(other.join().unwrap(), Some(10));
        assert_eq!(s.get(1, &1, Visible::At(0)), Some(10));
        assert_eq!(s.queued(), 0);
    });
}

/// G1: a write acknowledged to its caller is seen by a `get` on another
/// thread that starts after it learned of the acknowledgement. A second
/// writer contends for the shard, so the write is applied either by its
/// own caller or, queued, by the other writer, which answers it. Building
/// with `--cfg coherent_loom_break_ack` answers a queued write before
/// applying it (seed 003's incident), and loom finds the stale read.
#[test]
fn acknowledged_write_is_visible_to_other_threads() {
    model("acknowledged_write_visible", || {
        let s = Arc::new(Shard::<u64, u64>::new(4, 2));
        let acked = Arc::new(AtomicBool::new(false));
        let writer = {
            let (s, acked) = (s.clone(), acked.clone());
            thread::spawn(move || {
                insert(&s, 1, 10);
                acked.store(true, Ordering::Release);
            })
        };
        let reader = {
            let (s, acked) = (s.clone(), acked.clone());
            thread::spawn(move || {
                if acked.load(Ordering::Acquire) {
                    assert_eq!(
                        s.get(1, &1, Visible::At(0)),
                        Some(10),
                        "acknowledged, not seen"
                    );
                }
            })
        };
        insert(&s, 2, 20);
        writer.join().unwrap();
        reader.join().unwrap();
        assert_eq!(s.get(1, &1, Visible::At(0)), Some(10));
    });
}

/// A value whose every read and whose drop loom checks: dropping it is a
/// write to a loom cell, so a drop (the entry being freed) that is not
/// ordered after a reader's clone is reported as a race, and a clone of
/// freed or reused memory reads a value no writer stored.
struct Tracked(UnsafeCell<u64>);

impl Tracked {
    fn new(v: u64) -> Self {
        Self(UnsafeCell::new(v))
    }
    fn read(&self) -> u64 {
        // SAFETY: the read loom checks against the drop's write.
        self.0.with(|p| unsafe { *p })
    }
}

impl Clone for Tracked {
    fn clone(&self) -> Self {
        Self::new(self.read())
    }
}

impl Drop for Tracked {
    fn drop(&mut self) {
        // SAFETY: `&mut self`; the write loom checks against readers.
        self.0.with_mut(|p| unsafe { *p = 0 });
    }
}

// SAFETY: a `Tracked` is only read through `&self` once shared; the one
// write is its drop, and whether that drop can race a read is exactly what
// loom checks here.
unsafe impl Sync for Tracked {}

fn put(s: &Shard<u64, Tracked>, k: u64, v: u64) {
    assert_eq!(s.write(k, k, Some(Tracked::new(v))).unwrap(), None);
}

/// G5's safety half: a `get` racing the replacement of its entry sees the
/// old value or the new one, whole, and never memory that was freed or
/// reused; a reader still on the old table while the owner rebuilds it
/// (the third key outgrows loom's 4-slot table) is safe too. Under loom a
/// batch of garbage is 2 items, so the owner seals and tries to free the
/// replaced entry and the old table while the reader may hold either.
/// Building with `--cfg coherent_loom_break_reclaim` (the owner ignores
/// pinned readers) makes loom report the free racing the reader's clone.
#[test]
fn a_racing_get_sees_old_or_new_never_freed() {
    // About reclamation, with one writer: the bias would only add its
    // uncontended fast take, and it reorders loom's search so that the
    // broken reclaimer's use after free shows first as a garbage loom
    // object index rather than as the race on the value it frees.
    coherent_shard::loom_bias(false);
    model("get_vs_replace_and_rebuild", || {
        let s = Arc::new(Shard::<u64, Tracked>::new(4, 1));
        put(&s, 1, 1);
        let reader = {
            let s = s.clone();
            thread::spawn(move || s.get(1, &1, Visible::At(0)).map(|v| v.read()))
        };
        put(&s, 1, 2);
        put(&s, 2, 20);
        put(&s, 3, 30);
        let seen = reader.join().unwrap();
        assert!(matches!(seen, Some(1) | Some(2)), "read {seen:?}");
        assert_eq!(s.get(1, &1, Visible::At(0)).map(|v| v.read()), Some(2));
        assert_eq!(s.get(3, &3, Visible::At(0)).map(|v| v.read()), Some(30));
    });
}

/// A `get` racing `Shard::close` sees the value or nothing, and never
/// memory that was freed: closing publishes an empty table and retires the
/// old one with its entries (`Slots::disown_all`), freed only once no
/// reader can hold them (a second entry fills the 2-item garbage batch, so
/// the owner tries to free while the reader may be pinned). Building with
/// `--cfg coherent_loom_break_reclaim` makes loom report the free racing
/// the reader's clone.
#[test]
fn a_get_racing_close_sees_the_value_or_nothing_never_freed() {
    model("get_vs_close", || {
        let s = Arc::new(Shard::<u64, Tracked>::new(4, 1));
        put(&s, 1, 1);
        put(&s, 2, 2);
        let reader = {
            let s = s.clone();
            thread::spawn(move || s.get(1, &1, Visible::At(0)).map(|v| v.read()))
        };
        s.close().unwrap();
        let seen = reader.join().unwrap();
        assert!(matches!(seen, Some(1) | None), "read {seen:?}");
        assert!(s.get(1, &1, Visible::At(0)).is_none());
        assert!(s.is_empty());
    });
}

/// G3: a load whose lease is doomed by a racing write never installs, and
/// a caller waiting on that load is answered (a value, or the lead of a
/// fresh load): the cache ends with the write's value whatever the order.
/// Building with `--cfg coherent_loom_break_lease` lets a doomed lease
/// install, and loom finds the stale value left in the cache.
#[test]
fn a_write_racing_a_load_always_wins() {
    model("write_beats_racing_load", || {
        let s = Arc::new(Shard::<u64, u64>::new(4, 2));
        let Some(Reply::Lead(token)) = s.load_begin(1, 1, Vec::new()).unwrap().wait() else {
            panic!("first caller leads");
        };
        let waiter = {
            let s = s.clone();
            thread::spawn(
                move || match s.load_begin(1, 1, Vec::new()).unwrap().wait() {
                    // A fresh load, begun after the first was doomed or ended:
                    // it reads the source, which the write already changed.
                    Some(Reply::Lead(token)) => {
                        let op = Op::Install {
                            key: 1,
                            value: 2,
                            token,
                        };
                        assert!(matches!(
                            s.submit(1, op).unwrap(),
                            Reply::Installed | Reply::Discarded
                        ));
                        None
                    }
                    Some(Reply::Hit(v)) => Some(v),
                    other => panic!("a waiter got {other:?}"),
                },
            )
        };
        let writer = {
            let s = s.clone();
            thread::spawn(move || insert(&s, 1, 2))
        };
        let op = Op::Install {
            key: 1,
            value: 1,
            token,
        };
        let installed = s.submit(1, op).unwrap();
        writer.join().unwrap();
        let hit = waiter.join().unwrap();
        assert!(
            matches!(hit, None | Some(1) | Some(2)),
            "waiter got {hit:?}"
        );
        // Installed before the write (then overwritten) or discarded after:
        // either way the write is what remains.
        assert!(matches!(installed, Reply::Installed | Reply::Discarded));
        assert_eq!(
            s.get(1, &1, Visible::At(0)),
            Some(2),
            "a doomed load installed"
        );
    });
}
