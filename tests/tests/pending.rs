//! Forced interleavings inside a commit: a transaction staged in one shard
//! and not yet in another (so not yet visible), with writes to its keys
//! arriving meanwhile, and a transaction that fails half-way.
//!
//! The pause comes from the key type itself: `GateKey`'s `Eq` can be armed
//! to stop (or panic) the next time it compares a given key, which happens
//! when the shard owning that key stages it. These tests run in their own
//! binary because the gate is global.

use coherent::{Cache, Error};
use coherent_tests::wait_until;
use std::hash::{Hash, Hasher};
use std::sync::{Condvar, Mutex};

#[derive(Debug, Clone, Copy)]
struct GateKey(u64);

#[derive(Debug, Clone, Copy, PartialEq)]
enum Gate {
    Open,
    /// The next comparison involving this key stops until opened.
    Stop(u64),
    Stopped,
    /// The next comparison involving this key panics.
    Panic(u64),
}

static GATE: Mutex<Gate> = Mutex::new(Gate::Open);
/// The gate is global: these tests take turns.
static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}
static CHANGED: Condvar = Condvar::new();

fn set_gate(g: Gate) {
    *GATE.lock().unwrap_or_else(|e| e.into_inner()) = g;
    CHANGED.notify_all();
}

fn wait_gate(want: Gate) {
    let mut g = GATE.lock().unwrap();
    while *g != want {
        g = CHANGED.wait(g).unwrap();
    }
}

impl PartialEq for GateKey {
    fn eq(&self, other: &Self) -> bool {
        let mut g = GATE.lock().unwrap_or_else(|e| e.into_inner());
        match *g {
            Gate::Stop(k) if k == self.0 || k == other.0 => {
                *g = Gate::Stopped;
                CHANGED.notify_all();
                while *g == Gate::Stopped {
                    g = CHANGED.wait(g).unwrap();
                }
            }
            Gate::Panic(k) if k == self.0 || k == other.0 => {
                *g = Gate::Open;
                drop(g);
                panic!("GateKey({k}) refused to compare");
            }
            _ => {}
        }
        self.0 == other.0
    }
}

impl Eq for GateKey {}

impl Hash for GateKey {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.0.hash(state);
    }
}

/// A cache and two keys, `a` staged before `b` (shards stage in order).
fn setup() -> (Cache<GateKey, u64>, GateKey, GateKey) {
    set_gate(Gate::Open);
    let c: Cache<GateKey, u64> = Cache::builder().shards(8).build().unwrap();
    let a = (0..).map(GateKey).find(|k| c.shard_of(k) == 0).unwrap();
    let b = (0..).map(GateKey).find(|k| c.shard_of(k) == 1).unwrap();
    // Both present, so staging `b` compares it with its entry.
    c.insert(a, 1).unwrap();
    c.insert(b, 1).unwrap();
    (c, a, b)
}

/// Starts committing {a = 2, b = 2}, stopped after `a` is staged.
fn commit_stopped_at_b(
    c: &Cache<GateKey, u64>,
    a: GateKey,
    b: GateKey,
) -> std::thread::JoinHandle<Result<(), Error>> {
    set_gate(Gate::Stop(b.0));
    let committer = {
        let c = c.clone();
        std::thread::spawn(move || c.transaction().insert(a, 2).insert(b, 2).commit())
    };
    wait_gate(Gate::Stopped);
    committer
}

#[test]
fn a_write_to_a_key_of_a_transaction_in_flight_waits_and_lands_after_it() {
    let _serial = serial();
    let (c, a, b) = setup();
    let committer = commit_stopped_at_b(&c, a, b);
    // `a` is staged, the transaction not visible: readers see the old value.
    assert_eq!(c.get(&a), Some(1));
    assert_eq!(c.get_many(&[a, b]), vec![Some(1), Some(1)]);
    // A write to `a` now is ordered after the transaction: it waits for it.
    let writer = {
        let c = c.clone();
        std::thread::spawn(move || c.insert(a, 3))
    };
    wait_until(|| c.waiting() > 0);
    assert!(
        !writer.is_finished(),
        "the write returned before it was visible"
    );
    assert_eq!(
        c.get(&a),
        Some(1),
        "neither the transaction nor the write shows yet"
    );
    set_gate(Gate::Open);
    committer.join().unwrap().unwrap();
    writer.join().unwrap().unwrap();
    assert_eq!(c.get_many(&[a, b]), vec![Some(3), Some(2)]);
}

#[test]
fn an_update_of_a_key_in_flight_sees_the_transaction_s_value() {
    let _serial = serial();
    let (c, a, b) = setup();
    let committer = commit_stopped_at_b(&c, a, b);
    let updater = {
        let c = c.clone();
        std::thread::spawn(move || c.update(a, |v| v.map(|n| n * 10)))
    };
    wait_until(|| c.waiting() > 0);
    assert_eq!(c.get(&a), Some(1));
    set_gate(Gate::Open);
    committer.join().unwrap().unwrap();
    assert_eq!(
        updater.join().unwrap().unwrap(),
        Some(20),
        "ran on the transaction's 2"
    );
    assert_eq!(c.get(&a), Some(20));
}

#[test]
fn a_tagged_write_during_a_tag_invalidation_in_flight_lands_after_it() {
    let _serial = serial();
    let (c, a, b) = setup();
    c.insert_tagged(a, 5, ["t"]).unwrap();
    set_gate(Gate::Stop(b.0));
    let committer = {
        let c = c.clone();
        std::thread::spawn(move || c.transaction().invalidate_tag("t").insert(b, 2).commit())
    };
    wait_gate(Gate::Stopped);
    // A write carrying the tag joins the invalidation: it must not be
    // visible before it, nor removed by it (it comes after).
    let other = (100..).map(GateKey).find(|k| c.shard_of(k) == 0).unwrap();
    let writer = {
        let c = c.clone();
        std::thread::spawn(move || c.insert_tagged(other, 7, ["t"]))
    };
    wait_until(|| c.waiting() > 0);
    assert_eq!(c.get(&other), None);
    assert_eq!(c.get(&a), Some(5));
    set_gate(Gate::Open);
    committer.join().unwrap().unwrap();
    writer.join().unwrap().unwrap();
    assert_eq!(c.get(&a), None, "removed by the invalidation");
    assert_eq!(c.get(&other), Some(7), "written after it");
    assert_eq!(c.get(&b), Some(2));
}

#[test]
fn a_transaction_that_fails_half_way_applies_nothing() {
    let _serial = serial();
    let (c, a, b) = setup();
    // `a` stages, then comparing `b` panics in its shard.
    set_gate(Gate::Panic(b.0));
    let result = c.transaction().insert(a, 2).insert(b, 2).commit();
    assert!(
        matches!(result, Err(Error::Panicked(ref m)) if m.contains("refused to compare")),
        "{result:?}"
    );
    assert_eq!(
        c.get_many(&[a, b]),
        vec![Some(1), Some(1)],
        "nothing applied"
    );
    // The shards go on serving, and the next transaction applies.
    c.transaction().insert(a, 4).insert(b, 4).commit().unwrap();
    assert_eq!(c.get_many(&[a, b]), vec![Some(4), Some(4)]);
    c.insert(a, 5).unwrap();
    assert_eq!(c.get(&a), Some(5));
}
