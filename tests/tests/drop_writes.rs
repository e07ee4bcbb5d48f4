//! Keys and values whose `Drop` writes to the cache they live in.
//!
//! A shard drops the keys and values it no longer needs while it holds its
//! owner token: the key of a write that replaced a word value in place, a
//! replaced or invalidated entry once no reader can hold it. A write from
//! such a `Drop` would wait for the token its own thread holds (or, with
//! two threads, for each other's). It must be refused with
//! `Error::Reentrant`, like a write from an update closure, or run; never
//! hang. A watchdog fails the test if an operation does not return within
//! `DROP_WRITES_WATCHDOG_S` seconds (60 unless set): it detects a hang, it
//! orders nothing.
//!
//! The naive variant is the shard without its held flag: `.ci/run` builds
//! it (`--cfg coherent_break_held_flag`) and requires the in-place and
//! crossed cases to fail by their watchdog.

use coherent::{Cache, Error};
use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Barrier, Mutex};
use std::time::Duration;

/// A write to the cache under test, of the key given.
type Write = Arc<dyn Fn(u64) -> Result<(), Error> + Send + Sync>;

/// What an armed key's or value's drop did: the result of its write.
#[derive(Default)]
struct Log {
    /// Writes to the cache the drops write to (taken out before the cache
    /// is dropped).
    write: Mutex<Option<Write>>,
    ok: AtomicUsize,
    refused: AtomicUsize,
    /// Any other answer: a failure.
    other: Mutex<Vec<String>>,
    /// Where set, each drop waits here before it writes, so that two
    /// threads are inside their drops (holding their shards) at once.
    meet: Mutex<Option<Arc<Barrier>>>,
}

impl Log {
    /// Writes key `to`, and counts the answer.
    fn fire(&self, to: u64) {
        let meet = self.meet.lock().unwrap().clone();
        if let Some(meet) = meet {
            meet.wait();
        }
        // Out of the lock: the write may drop another armed key here.
        let Some(write) = self.write.lock().unwrap().clone() else {
            return;
        };
        let answer = write(to);
        match answer {
            Ok(()) => self.ok.fetch_add(1, Ordering::Relaxed),
            Err(Error::Reentrant) => self.refused.fetch_add(1, Ordering::Relaxed),
            Err(e) => {
                self.other.lock().unwrap().push(e.to_string());
                0
            }
        };
    }

    fn fired(&self) -> usize {
        self.ok.load(Ordering::Relaxed) + self.refused.load(Ordering::Relaxed)
    }
}

/// Where armed drops write unless told otherwise.
const TARGET: u64 = 1_000_000;

/// A key that, when armed (`log` set), writes key `to` as it drops.
/// Clones are unarmed: only the instance handed to the cache fires.
struct Key {
    id: u64,
    to: u64,
    log: Option<Arc<Log>>,
}

impl Clone for Key {
    fn clone(&self) -> Self {
        key(self.id)
    }
}

impl PartialEq for Key {
    fn eq(&self, other: &Self) -> bool {
        self.id == other.id
    }
}

impl Eq for Key {}

impl Hash for Key {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.id.hash(state);
    }
}

impl Drop for Key {
    fn drop(&mut self) {
        if let Some(log) = self.log.take() {
            log.fire(self.to);
        }
    }
}

/// A value that, when armed, writes to the cache as it drops. Clones (what
/// readers get) are unarmed.
struct Val {
    n: u64,
    log: Option<Arc<Log>>,
}

impl Clone for Val {
    fn clone(&self) -> Self {
        Val {
            n: self.n,
            log: None,
        }
    }
}

impl Drop for Val {
    fn drop(&mut self) {
        if let Some(log) = self.log.take() {
            log.fire(TARGET);
        }
    }
}

impl From<u64> for Val {
    fn from(n: u64) -> Self {
        val(n)
    }
}

fn armed_key(id: u64, log: &Arc<Log>) -> Key {
    armed_key_to(id, TARGET, log)
}

fn armed_key_to(id: u64, to: u64, log: &Arc<Log>) -> Key {
    Key {
        id,
        to,
        log: Some(log.clone()),
    }
}

fn key(id: u64) -> Key {
    Key {
        id,
        to: TARGET,
        log: None,
    }
}

fn val(n: u64) -> Val {
    Val { n, log: None }
}

fn armed_val(n: u64, log: &Arc<Log>) -> Val {
    Val {
        n,
        log: Some(log.clone()),
    }
}

/// Runs `ops` on a cache of `shards` shards whose armed drops write to it,
/// on another thread with a watchdog, checks what the drops did, and
/// returns their log.
fn check<V>(
    name: &str,
    shards: usize,
    ops: impl FnOnce(&Cache<Key, V>, &Arc<Log>) + Send + 'static,
) -> Arc<Log>
where
    V: From<u64> + Clone + Send + Sync + 'static,
{
    let log = Arc::new(Log::default());
    let cache = Cache::<Key, V>::builder().shards(shards).build().unwrap();
    let c = cache.clone();
    *log.write.lock().unwrap() = Some(Arc::new(move |to| c.insert(key(to), V::from(7))));
    let (done, finished) = mpsc::channel();
    let (l, c) = (log.clone(), cache.clone());
    let worker = std::thread::spawn(move || {
        ops(&c, &l);
        // Retires every entry (armed ones among them): their drops run
        // under the token too, once no reader can hold them.
        c.close().unwrap();
        drop(c);
        let _ = done.send(());
    });
    let watchdog = std::env::var("DROP_WRITES_WATCHDOG_S")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(60);
    match finished.recv_timeout(Duration::from_secs(watchdog)) {
        Ok(()) => worker.join().unwrap(),
        // The worker panicked: its own message says why.
        Err(mpsc::RecvTimeoutError::Disconnected) => {
            if let Err(panic) = worker.join() {
                std::panic::resume_unwind(panic);
            }
        }
        Err(mpsc::RecvTimeoutError::Timeout) => {
            panic!(
                "{name}: an operation did not return within {watchdog} s: a write from a drop deadlocked"
            )
        }
    }
    log.write.lock().unwrap().take();
    drop(cache);
    assert!(
        log.fired() > 0,
        "{name}: no armed drop ran, so nothing was checked"
    );
    assert!(
        log.other.lock().unwrap().is_empty(),
        "{name}: a write from a drop failed otherwise: {:?}",
        log.other.lock().unwrap()
    );
    log
}

/// Asserts that every armed drop ran under a token (`fired` of them) and
/// had its write refused, as docs/guarantees.md promises.
fn all_refused(log: &Log, fired: usize) {
    assert_eq!(log.refused.load(Ordering::Relaxed), fired, "refused");
    assert_eq!(log.ok.load(Ordering::Relaxed), 0, "written from a drop");
}

#[test]
fn a_key_dropped_by_an_in_place_replacement_cannot_deadlock_its_shard() {
    // The key of a write that finds its entry is dropped under the token.
    // A `u64` value is a word value, replaced in place.
    let log = check("in place", 1, |c: &Cache<Key, u64>, log| {
        c.insert(key(1), 1).unwrap();
        for n in 0..100 {
            c.insert(armed_key(1, log), n).unwrap();
            assert_eq!(c.get(&key(1)), Some(n));
        }
    });
    // The entry keeps its first (unarmed) key; each armed one was dropped
    // under the token, and its write refused.
    all_refused(&log, 100);
}

#[test]
fn replaced_and_invalidated_entries_dropping_cannot_deadlock_their_shard() {
    check("replaced", 1, |c: &Cache<Key, Val>, log| {
        for n in 0..2_000 {
            c.insert(armed_key(n % 8, log), armed_val(n, log)).unwrap();
            if n % 3 == 0 {
                c.invalidate(&key(n % 8)).unwrap();
            }
        }
        c.insert(key(3), val(3)).unwrap();
        assert_eq!(c.get(&key(3)).map(|v| v.n), Some(3));
    });
}

#[test]
fn an_update_with_an_armed_key_cannot_deadlock() {
    // Each update's key goes into its new entry; the replaced entries'
    // keys drop once no reader can hold them, a batch at a time.
    check("update", 2, |c: &Cache<Key, Val>, log| {
        for n in 0..4_000 {
            let v = c
                .update(armed_key(n % 4, log), |v| {
                    Some(val(v.map_or(0, |v| v.n) + 1))
                })
                .unwrap();
            assert_eq!(v.map(|v| v.n), Some(n / 4 + 1));
        }
    });
}

/// A transaction over three keys whose keys and values
/// are armed.
fn armed_transaction(c: &Cache<Key, Val>, n: u64, log: &Arc<Log>) {
    c.transaction()
        .insert(armed_key(n % 4, log), armed_val(n, log))
        .insert(armed_key(100 + n % 4, log), val(n))
        .invalidate(armed_key(200, log))
        .commit()
        .unwrap();
}

#[test]
fn a_transaction_with_armed_keys_and_values_cannot_deadlock() {
    check("transaction", 2, |c: &Cache<Key, Val>, log| {
        for n in 0..500 {
            armed_transaction(c, n, log);
            assert_eq!(c.get(&key(n % 4)).map(|v| v.n), Some(n));
        }
    });
}

#[test]
fn a_load_with_an_armed_key_and_value_cannot_deadlock() {
    check("load", 2, |c: &Cache<Key, Val>, log| {
        for n in 0..500 {
            let got = c
                .get_with(armed_key(300 + n % 4, log), |_| armed_val(n, log))
                .unwrap();
            // The value the key's latest load installed.
            assert!(got.n <= n && got.n % 4 == n % 4, "{} for {n}", got.n);
            if n % 7 == 0 {
                c.invalidate(&key(300 + n % 4)).unwrap();
            }
        }
    });
}

#[test]
fn all_of_them_mixed_cannot_deadlock() {
    check("mixed", 2, |c: &Cache<Key, Val>, log| {
        for n in 0..2_000 {
            let l = log.clone();
            c.update(armed_key(n % 4, log), move |v| {
                Some(armed_val(v.map_or(0, |v| v.n) + 1, &l))
            })
            .unwrap();
            armed_transaction(c, n, log);
            let got = c
                .get_with(armed_key(300 + n % 4, log), |_| armed_val(n, log))
                .unwrap();
            assert!(got.n <= n);
            c.insert(armed_key(n % 8, log), armed_val(n, log)).unwrap();
            c.invalidate(&key(300 + n % 3)).unwrap();
        }
    });
}

#[test]
fn two_threads_whose_drops_write_to_each_others_shard_cannot_deadlock() {
    // Each thread overwrites its own key in place (so each shard's token
    // may be biased to its thread) with keys whose drop writes to the
    // other's shard, and the drops meet at a barrier: both threads hold
    // their shard when they write. Two holders each waiting for the other
    // would hang (they did, before the owner raised the reentrancy flag
    // while it holds the token).
    let log = check("crossed", 2, |c: &Cache<Key, u64>, log| {
        let a = (0..).find(|&k| c.shard_of(&key(k)) == 0).unwrap();
        let b = (0..).find(|&k| c.shard_of(&key(k)) == 1).unwrap();
        c.insert(key(a), 0).unwrap();
        c.insert(key(b), 0).unwrap();
        *log.meet.lock().unwrap() = Some(Arc::new(Barrier::new(2)));
        let other = c.clone();
        let l = log.clone();
        let t = std::thread::spawn(move || {
            for n in 0..1_000 {
                other.insert(armed_key_to(b, a, &l), n).unwrap();
            }
        });
        for n in 0..1_000 {
            c.insert(armed_key_to(a, b, log), n).unwrap();
        }
        t.join().unwrap();
        // The drops' writes (of 7) were refused; the last write was 999.
        assert_eq!(c.get(&key(a)), Some(999));
        assert_eq!(c.get(&key(b)), Some(999));
        *log.meet.lock().unwrap() = None;
    });
    // Every drop ran while its thread held its own shard: all refused.
    all_refused(&log, 2_000);
}
