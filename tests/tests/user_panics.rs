//! Panics in user code that a shard runs (a key's `Hash`, `Eq` or `Clone`, a
//! value's `Clone` or `Drop`) reach only the caller whose operation ran it,
//! as an error (G6, docs/guarantees.md): a caller whose operation was
//! applied is told so, a message queued beside the panicking one is applied
//! and answered, and no `get_or_load` waiter is left on a load that cannot
//! finish.
//!
//! The panics come from `Trap` keys and `Val` values that can be armed to
//! panic once, in one trait, for one id. The global arming makes these tests
//! take turns. A watchdog fails a test if a caller does not return within
//! `USER_PANICS_WATCHDOG_S` seconds (30 unless set): it detects a hang, it
//! orders nothing; the test's ordering comes from `Cache::waiting` and
//! channels.

use coherent::{Cache, Error, LoadError};
use coherent_tests::wait_until;
use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq)]
enum Trait {
    KeyHash,
    KeyEq,
    KeyClone,
    ValueClone,
    ValueDrop,
}

/// The one armed trap: the next time this trait runs for this id, it
/// panics (and disarms).
static ARMED: Mutex<Option<(Trait, u64)>> = Mutex::new(None);
static SERIAL: Mutex<()> = Mutex::new(());
/// Armed drops that fired.
static DROPS_FIRED: AtomicUsize = AtomicUsize::new(0);

fn serial() -> MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

fn arm(t: Trait, id: u64) {
    *ARMED.lock().unwrap_or_else(|e| e.into_inner()) = Some((t, id));
}

fn disarm() {
    *ARMED.lock().unwrap_or_else(|e| e.into_inner()) = None;
}

fn armed() -> Option<(Trait, u64)> {
    *ARMED.lock().unwrap_or_else(|e| e.into_inner())
}

/// Panics if `t` is armed for `id`, disarming it first.
fn spring(t: Trait, id: u64) {
    let mut armed = ARMED.lock().unwrap_or_else(|e| e.into_inner());
    if *armed == Some((t, id)) {
        *armed = None;
        drop(armed);
        if t == Trait::ValueDrop {
            DROPS_FIRED.fetch_add(1, Ordering::SeqCst);
        }
        panic!("{t:?} of {id} panicked");
    }
}

#[derive(Debug)]
struct Trap(u64);

impl Hash for Trap {
    fn hash<H: Hasher>(&self, state: &mut H) {
        spring(Trait::KeyHash, self.0);
        self.0.hash(state);
    }
}

impl PartialEq for Trap {
    fn eq(&self, other: &Self) -> bool {
        if self.0 == other.0 {
            spring(Trait::KeyEq, self.0);
        }
        self.0 == other.0
    }
}

impl Eq for Trap {}

impl Clone for Trap {
    fn clone(&self) -> Self {
        spring(Trait::KeyClone, self.0);
        Trap(self.0)
    }
}

#[derive(Debug, PartialEq)]
struct Val(u64);

impl Clone for Val {
    fn clone(&self) -> Self {
        spring(Trait::ValueClone, self.0);
        Val(self.0)
    }
}

impl Drop for Val {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            spring(Trait::ValueDrop, self.0);
        }
    }
}

type C = Arc<Cache<Trap, Val>>;

fn one_shard() -> C {
    disarm();
    Arc::new(Cache::builder().shards(1).build().unwrap())
}

fn watchdog() -> Duration {
    let s = std::env::var("USER_PANICS_WATCHDOG_S").map_or(30, |v| v.parse().unwrap());
    Duration::from_secs(s)
}

/// Runs `f` on a thread; `join` waits for its result, failing the test if
/// it panicked or did not return within the watchdog's time.
struct Call<T>(mpsc::Receiver<std::thread::Result<T>>, &'static str);

fn call<T: Send + 'static>(what: &'static str, f: impl FnOnce() -> T + Send + 'static) -> Call<T> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)));
    });
    Call(rx, what)
}

impl<T> Call<T> {
    fn join(self) -> T {
        match self.0.recv_timeout(watchdog()) {
            Ok(Ok(v)) => v,
            Ok(Err(p)) => panic!(
                "{}: panicked: {}",
                self.1,
                p.downcast_ref::<String>()
                    .cloned()
                    .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_default()
            ),
            Err(_) => panic!("{}: did not return within {:?} (hung)", self.1, watchdog()),
        }
    }
}

type Loaded = Result<Val, LoadError<String>>;

/// A leader's load of `key` whose loader waits for `go` and then returns
/// what `go` sends; `started` fires when the loader runs.
fn gated_leader(c: &C, key: u64) -> (Call<Loaded>, mpsc::Sender<Result<Val, String>>) {
    let (started_tx, started) = mpsc::channel();
    let (go, go_rx) = mpsc::channel::<Result<Val, String>>();
    let leader = {
        let c = c.clone();
        call("the leader", move || {
            c.get_or_load(Trap(key), move |_| {
                started_tx.send(()).unwrap();
                go_rx.recv().unwrap()
            })
        })
    };
    started.recv().unwrap();
    (leader, go)
}

/// A second caller of `key`, which waits on the leader's load (its own
/// loader returns `Val(value)` if it comes to lead).
fn waiter(c: &C, key: u64, value: u64) -> Call<Loaded> {
    let before = c.waiting();
    let w = {
        let c = c.clone();
        call("the waiter", move || {
            c.get_or_load(Trap(key), move |_| Ok(Val(value)))
        })
    };
    wait_until(|| c.waiting() > before);
    w
}

fn is_panicked<T: std::fmt::Debug>(r: &Result<T, LoadError<String>>) -> bool {
    matches!(r, Err(LoadError::Cache(Error::Panicked(_))))
}

/// A leader of key 1 and a waiter; `trap` armed when the leader's value
/// (10) arrives. The leader is told of the panic, the waiter leads a fresh
/// load (20), and later callers find it cached: no lease is left behind.
fn the_waiter_loads_afresh_when(trap: Trait, id: u64) {
    let _serial = serial();
    let c = one_shard();
    let (leader, go) = gated_leader(&c, 1);
    let waiter = waiter(&c, 1, 20);
    arm(trap, id);
    go.send(Ok(Val(10))).unwrap();
    assert_eq!(waiter.join(), Ok(Val(20)), "the waiter led a fresh load");
    let led = leader.join();
    assert!(is_panicked(&led), "the leader is told: {led:?}");
    assert_eq!(c.get(&Trap(1)), Some(Val(20)));
    assert_eq!(
        c.get_or_load(Trap(1), |_| Ok::<_, String>(Val(99))),
        Ok(Val(20)),
        "no lease is left behind for later callers to join"
    );
}

#[test]
fn a_waiter_is_not_stranded_when_the_leaders_key_hash_panics_at_install() {
    // The shard hashes the key when the leader's value arrives.
    the_waiter_loads_afresh_when(Trait::KeyHash, 1);
}

#[test]
fn a_waiter_is_not_stranded_when_the_loaded_values_clone_panics() {
    the_waiter_loads_afresh_when(Trait::ValueClone, 10);
}

#[test]
fn a_waiter_is_not_stranded_when_the_leaders_key_clone_panics_after_loading() {
    let _serial = serial();
    let c = one_shard();
    let (leader, go) = gated_leader(&c, 1);
    let waiter = waiter(&c, 1, 20);
    // The next clone of the key, wherever the install path makes it.
    arm(Trait::KeyClone, 1);
    go.send(Ok(Val(10))).unwrap();
    let waited = waiter.join();
    let led = leader.join();
    match &led {
        // The clone was in the shard: the waiter was told to ask again.
        Err(LoadError::Cache(Error::Panicked(_))) => assert_eq!(waited, Ok(Val(20))),
        // No clone on the way: installed, and the waiter was handed it.
        Ok(v) => {
            assert_eq!(v, &Val(10));
            assert_eq!(waited, Ok(Val(10)));
        }
        other => panic!("the leader: {other:?}"),
    }
    disarm();
    assert_eq!(c.get(&Trap(1)), waited.ok());
}

/// The shard held by an `update` of key 3 whose closure waits for the
/// returned sender; `held` is that update's call.
fn hold(c: &C) -> (Call<Result<Option<Val>, Error>>, mpsc::Sender<()>) {
    let (in_tx, in_rx) = mpsc::channel();
    let (release, release_rx) = mpsc::channel::<()>();
    let held = {
        let c = c.clone();
        call("the holder", move || {
            c.update(Trap(3), move |_| {
                in_tx.send(()).unwrap();
                release_rx.recv().unwrap();
                Some(Val(30))
            })
        })
    };
    in_rx.recv().unwrap();
    (held, release)
}

/// An insert of key 2 (already cached) whose `Eq` panics, queued while the
/// shard is held.
fn queue_panicking_insert(c: &C) -> Call<Result<(), Error>> {
    let before = c.waiting();
    arm(Trait::KeyEq, 2);
    let p = {
        let c = c.clone();
        call("the panicking insert", move || c.insert(Trap(2), Val(21)))
    };
    wait_until(|| c.waiting() > before);
    p
}

/// A leader of key 1 (its loader waiting for `go`) with a waiter, the
/// shard held by an update of key 3 (until `release`), and an insert of
/// key 2 whose `Eq` panics queued behind it.
struct Queued {
    leader: Call<Loaded>,
    go: mpsc::Sender<Result<Val, String>>,
    waiter: Call<Loaded>,
    held: Call<Result<Option<Val>, Error>>,
    release: mpsc::Sender<()>,
    panicking: Call<Result<(), Error>>,
}

fn queued_behind_a_panic(c: &C) -> Queued {
    c.insert(Trap(2), Val(2)).unwrap();
    let (leader, go) = gated_leader(c, 1);
    let waiter = waiter(c, 1, 20);
    let (held, release) = hold(c);
    let panicking = queue_panicking_insert(c);
    Queued {
        leader,
        go,
        waiter,
        held,
        release,
        panicking,
    }
}

#[test]
fn an_install_queued_behind_a_panicking_message_is_applied_and_the_holder_is_not_told_the_panic() {
    let _serial = serial();
    let c = one_shard();
    let q = queued_behind_a_panic(&c);
    // The leader's value arrives: its install queues behind the insert.
    let before = c.waiting();
    q.go.send(Ok(Val(10))).unwrap();
    wait_until(|| c.waiting() > before);
    q.release.send(()).unwrap();

    assert_eq!(
        q.held.join(),
        Ok(Some(Val(30))),
        "the holder's update was applied, and it is told so"
    );
    assert_eq!(c.get(&Trap(3)), Some(Val(30)));
    let p = q.panicking.join();
    assert!(
        matches!(&p, Err(Error::Panicked(m)) if m.contains("KeyEq of 2")),
        "the panicking insert's own caller is told: {p:?}"
    );
    assert_eq!(q.leader.join(), Ok(Val(10)));
    assert_eq!(
        q.waiter.join(),
        Ok(Val(10)),
        "the waiter is handed the value"
    );
    assert_eq!(c.get(&Trap(1)), Some(Val(10)), "the install was applied");
    assert_eq!(armed(), None);
}

#[test]
fn an_abandon_queued_behind_a_panicking_message_hands_the_load_to_the_waiter() {
    let _serial = serial();
    let c = one_shard();
    let q = queued_behind_a_panic(&c);
    // The leader's loader fails: it returns at once, its `Abandon` queued
    // (one-way) behind the insert.
    q.go.send(Err("db down".to_owned())).unwrap();
    assert_eq!(
        q.leader.join(),
        Err(LoadError::Loader("db down".to_owned()))
    );
    q.release.send(()).unwrap();

    assert_eq!(q.held.join(), Ok(Some(Val(30))));
    assert!(matches!(q.panicking.join(), Err(Error::Panicked(_))));
    assert_eq!(q.waiter.join(), Ok(Val(20)), "the waiter led the next load");
    assert_eq!(c.get(&Trap(1)), Some(Val(20)));
}

#[test]
fn an_update_whose_new_values_clone_panics_is_an_error_and_changes_nothing() {
    let _serial = serial();
    let c = one_shard();
    c.insert(Trap(5), Val(1)).unwrap();
    arm(Trait::ValueClone, 2);
    let c2 = c.clone();
    let r = call("the update", move || c2.update(Trap(5), |_| Some(Val(2)))).join();
    assert!(
        matches!(&r, Err(Error::UpdatePanicked(m)) if m.contains("ValueClone of 2")),
        "{r:?}"
    );
    assert_eq!(c.get(&Trap(5)), Some(Val(1)), "nothing changed");
    assert_eq!(c.update(Trap(5), |_| Some(Val(3))), Ok(Some(Val(3))));
}

#[test]
fn a_plain_write_whose_key_panics_in_its_shard_is_an_error_to_its_caller() {
    let _serial = serial();
    let c = one_shard();
    c.insert(Trap(2), Val(2)).unwrap();
    arm(Trait::KeyEq, 2);
    let c2 = c.clone();
    let r = call("the insert", move || c2.insert(Trap(2), Val(22))).join();
    assert!(
        matches!(&r, Err(Error::Panicked(m)) if m.contains("KeyEq of 2")),
        "{r:?}"
    );
    c.insert(Trap(2), Val(23)).unwrap();
    assert_eq!(c.get(&Trap(2)), Some(Val(23)), "the shard goes on");
}

#[test]
fn a_retired_values_panicking_drop_reaches_no_caller() {
    let _serial = serial();
    let c = one_shard();
    let fired = DROPS_FIRED.load(Ordering::SeqCst);
    c.insert(Trap(7), Val(70)).unwrap();
    arm(Trait::ValueDrop, 70);
    c.insert(Trap(7), Val(71)).unwrap(); // retires Val(70)
                                         // The retired value is dropped once no reader can hold it, during some
                                         // later write: every one of those writes succeeds.
    let mut writes = 0u64;
    while DROPS_FIRED.load(Ordering::SeqCst) == fired {
        assert!(writes < 1_000_000, "the retired value was never dropped");
        c.insert(Trap(100 + writes % 64), Val(1000 + writes))
            .expect("a write that frees a panicking value is not told of it");
        writes += 1;
    }
    assert_eq!(c.get(&Trap(7)), Some(Val(71)));
}
