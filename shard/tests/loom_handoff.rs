//! loom models of the shard protocol (run with
//! `RUSTFLAGS="--cfg coherent_loom" cargo test -p coherent-shard --release --test loom_handoff`).
//!
//! Under `coherent_loom` the crate's sync facade swaps in loom's atomics,
//! fences, mutexes, threads and thread-locals, and a
//! mutex-guarded queue for the mailbox (crossbeam's lock-free queue is
//! invisible to loom; the models rely only on its being a linearizable
//! FIFO). The hand-off itself is the owner token's word (`token.rs`),
//! which loom sees whole. The models check the owner-token hand-off,
//! acknowledgement after visibility, and the lease check, over every
//! interleaving loom finds with the configured preemption bound.
#![cfg(coherent_loom)]

use coherent_shard::{Op, Reply, Shard, Visible};
use loom::sync::atomic::{AtomicBool, Ordering};
use loom::sync::Arc;
use loom::thread;

/// Runs `f` under loom and prints how many interleavings it explored.
fn model(name: &str, f: impl Fn() + Sync + Send + 'static) {
    use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
    let runs = std::sync::Arc::new(AtomicUsize::new(0));
    let counted = runs.clone();
    let started = std::time::Instant::now();
    loom::model(move || {
        counted.fetch_add(1, Relaxed);
        f();
    });
    eprintln!(
        "loom model {name}: {} interleavings in {:?}",
        runs.load(Relaxed),
        started.elapsed()
    );
}

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
/// thread that starts after it learned of the acknowledgement.
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
        if acked.load(Ordering::Acquire) {
            assert_eq!(s.get(1, &1, Visible::At(0)), Some(10));
        }
        writer.join().unwrap();
        assert_eq!(s.get(1, &1, Visible::At(0)), Some(10));
    });
}

/// G3: a load whose lease is doomed by a racing write never installs; the
/// cache ends with the write's value whatever the order.
#[test]
fn a_write_racing_a_load_always_wins() {
    model("write_beats_racing_load", || {
        let s = Arc::new(Shard::<u64, u64>::new(4, 2));
        let Some(Reply::Lead(token)) = s.load_begin(1, 1, Vec::new()).unwrap().wait() else {
            panic!("first caller leads");
        };
        let writer = {
            let s = s.clone();
            thread::spawn(move || insert(&s, 1, 2))
        };
        let installed = s
            .submit(
                1,
                Op::Install {
                    key: 1,
                    value: 1,
                    token,
                },
            )
            .unwrap();
        writer.join().unwrap();
        // Installed before the write (then overwritten) or discarded after:
        // either way the write is what remains.
        assert!(matches!(installed, Reply::Installed | Reply::Discarded));
        assert_eq!(s.get(1, &1, Visible::At(0)), Some(2));
    });
}
