//! The three single-key incident races, each as a forced interleaving and as a
//! free-running contention loop, against any [`IncidentCache`].

use crate::naive::{AckBeforeApply, NaiveCache};
use crate::wait_until;
use std::convert::Infallible;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Barrier};

/// What a scenario saw.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Outcome {
    /// Rounds (or operations) the scenario ran.
    pub rounds: u64,
    /// Stale or lost results it caught.
    pub anomalies: u64,
}

/// Something held to keep a cache's writes from being applied; dropping it
/// lets them through.
pub trait Held {}
impl<T> Held for T {}

/// A read-modify-write function, as the scenarios pass it.
pub type Modify<V> = Box<dyn FnOnce(Option<&V>) -> V + Send>;

/// The cache interface the scenarios drive.
pub trait IncidentCache<V>: Send + Sync + 'static {
    /// Name for tables.
    fn name(&self) -> &'static str;
    /// A read.
    fn get(&self, key: u64) -> Option<V>;
    /// A write of a value.
    fn insert(&self, key: u64, value: V);
    /// A removal.
    fn invalidate(&self, key: u64);
    /// A read-modify-write through the cache's own mechanism.
    fn update(&self, key: u64, f: Modify<V>);
    /// Read-through: on a miss, `loader` reads the source of truth.
    fn get_or_load(&self, key: u64, loader: Box<dyn FnOnce() -> V + Send>) -> V;
    /// Callers blocked inside the cache right now.
    fn waiting(&self) -> usize;
    /// Keeps writes to `key` from being applied until the result is dropped.
    fn stall(&self, key: u64) -> Box<dyn Held + '_>;
}

impl<V: Clone + Send + Sync + 'static> IncidentCache<V> for coherent::Cache<u64, V> {
    fn name(&self) -> &'static str {
        "coherent"
    }
    fn get(&self, key: u64) -> Option<V> {
        coherent::Cache::get(self, &key)
    }
    fn insert(&self, key: u64, value: V) {
        coherent::Cache::insert(self, key, value).expect("insert");
    }
    fn invalidate(&self, key: u64) {
        coherent::Cache::invalidate(self, &key).expect("invalidate");
    }
    fn update(&self, key: u64, f: Modify<V>) {
        coherent::Cache::update(self, key, move |v| Some(f(v))).expect("update");
    }
    fn get_or_load(&self, key: u64, loader: Box<dyn FnOnce() -> V + Send>) -> V {
        coherent::Cache::get_or_load(self, key, |_| Ok::<_, Infallible>(loader())).expect("load")
    }
    fn waiting(&self) -> usize {
        coherent::Cache::waiting(self)
    }
    fn stall(&self, key: u64) -> Box<dyn Held + '_> {
        // An update whose closure blocks holds the owner token of the key's
        // shard: nothing else is applied there until it returns.
        let (started_tx, started_rx) = mpsc::channel();
        let (release_tx, release_rx) = mpsc::channel::<()>();
        let cache = self.clone();
        let holder = std::thread::spawn(move || {
            coherent::Cache::update(&cache, key, move |v| {
                started_tx.send(()).expect("stall observer");
                let _ = release_rx.recv();
                v.cloned()
            })
            .expect("stalling update");
        });
        started_rx.recv().expect("stall started");
        struct Release(
            Option<mpsc::Sender<()>>,
            Option<std::thread::JoinHandle<()>>,
        );
        impl Drop for Release {
            fn drop(&mut self) {
                drop(self.0.take());
                if let Some(h) = self.1.take() {
                    h.join().expect("stall holder");
                }
            }
        }
        Box::new(Release(Some(release_tx), Some(holder)))
    }
}

impl<V: Clone + Send + Sync + 'static> IncidentCache<V> for NaiveCache<V> {
    fn name(&self) -> &'static str {
        "naive locked map"
    }
    fn get(&self, key: u64) -> Option<V> {
        NaiveCache::get(self, key)
    }
    fn insert(&self, key: u64, value: V) {
        self.write(key, Some(value));
    }
    fn invalidate(&self, key: u64) {
        self.write(key, None);
    }
    fn update(&self, key: u64, f: Modify<V>) {
        NaiveCache::update(self, key, f);
    }
    fn get_or_load(&self, key: u64, loader: Box<dyn FnOnce() -> V + Send>) -> V {
        NaiveCache::get_or_load(self, key, loader)
    }
    fn waiting(&self) -> usize {
        self.blocked()
    }
    fn stall(&self, _key: u64) -> Box<dyn Held + '_> {
        Box::new(NaiveCache::stall(self))
    }
}

impl<V: Clone + Send + Sync + 'static> IncidentCache<V> for AckBeforeApply<V> {
    fn name(&self) -> &'static str {
        "naive ack-before-apply"
    }
    fn get(&self, key: u64) -> Option<V> {
        AckBeforeApply::get(self, key)
    }
    fn insert(&self, key: u64, value: V) {
        self.write(key, Some(value));
    }
    fn invalidate(&self, key: u64) {
        self.write(key, None);
    }
    fn update(&self, key: u64, f: Modify<V>) {
        let current = self.get(key);
        self.write(key, Some(f(current.as_ref())));
    }
    fn get_or_load(&self, key: u64, loader: Box<dyn FnOnce() -> V + Send>) -> V {
        if let Some(v) = self.get(key) {
            return v;
        }
        let v = loader();
        self.write(key, Some(v.clone()));
        v
    }
    fn waiting(&self) -> usize {
        // Its callers never wait: that is its bug. (Its applier thread may
        // be blocked, but that is not a caller.)
        0
    }
    fn stall(&self, _key: u64) -> Box<dyn Held + '_> {
        Box::new(self.inner().stall())
    }
}

/// Seed 001: a loader reads the old database value, an update commits and
/// invalidates while it runs, and the loader's result must not be cached; a
/// caller that starts after the write must not get the old value.
pub mod incident_001 {
    use super::*;

    /// The interleaving of the incident, forced step by step.
    pub fn forced<C: IncidentCache<u64>>(cache: Arc<C>) -> Outcome {
        const KEY: u64 = 1;
        let db = Arc::new(AtomicU64::new(1));
        let (loaded_tx, loaded_rx) = mpsc::channel();
        let (go_tx, go_rx) = mpsc::channel::<()>();
        // R misses and loads the old value, then pauses before returning it.
        let early = {
            let (cache, db) = (cache.clone(), db.clone());
            std::thread::spawn(move || {
                cache.get_or_load(
                    KEY,
                    Box::new(move || {
                        let v = db.load(Ordering::SeqCst);
                        loaded_tx.send(()).expect("observer");
                        let _ = go_rx.recv();
                        v
                    }),
                )
            })
        };
        loaded_rx.recv().expect("loader ran");
        // The update commits: database first, then the cache invalidation.
        db.store(2, Ordering::SeqCst);
        cache.invalidate(KEY);
        // A caller that starts after the write returned.
        let late = {
            let (cache, db) = (cache.clone(), db.clone());
            std::thread::spawn(move || {
                cache.get_or_load(KEY, Box::new(move || db.load(Ordering::SeqCst)))
            })
        };
        // Let the late caller either finish or block behind the old load.
        wait_until(|| late.is_finished() || cache.waiting() > 0);
        go_tx.send(()).expect("release loader");
        let early_value = early.join().expect("early caller");
        let late_value = late.join().expect("late caller");
        let mut anomalies = 0;
        if late_value != 2 {
            anomalies += 1; // got a value loaded before the write it followed
        }
        if cache
            .get(KEY)
            .is_some_and(|v| v != db.load(Ordering::SeqCst))
        {
            anomalies += 1; // the stale load was installed
        }
        // The early caller overlapped the write: either value is correct.
        assert!(early_value == 1 || early_value == 2);
        Outcome {
            rounds: 1,
            anomalies,
        }
    }

    /// A writer bumps the database and invalidates, `rounds` times, while
    /// two readers load through the cache; a reader that starts after an
    /// invalidation returned must see that version or a newer one.
    pub fn free_running<C: IncidentCache<u64>>(cache: Arc<C>, rounds: u64) -> Outcome {
        const KEY: u64 = 7;
        let db = Arc::new(AtomicU64::new(0));
        let committed = Arc::new(AtomicU64::new(0));
        let done = Arc::new(AtomicBool::new(false));
        let start = Arc::new(Barrier::new(3));
        let readers: Vec<_> = (0..2)
            .map(|_| {
                let (cache, db, committed, done, start) = (
                    cache.clone(),
                    db.clone(),
                    committed.clone(),
                    done.clone(),
                    start.clone(),
                );
                std::thread::spawn(move || {
                    let mut anomalies = 0;
                    start.wait();
                    while !done.load(Ordering::SeqCst) {
                        let floor = committed.load(Ordering::SeqCst);
                        let db = db.clone();
                        let v = cache.get_or_load(KEY, Box::new(move || db.load(Ordering::SeqCst)));
                        if v < floor {
                            anomalies += 1;
                        }
                        let floor = committed.load(Ordering::SeqCst);
                        if cache.get(KEY).is_some_and(|v| v < floor) {
                            anomalies += 1;
                        }
                    }
                    anomalies
                })
            })
            .collect();
        start.wait();
        for _ in 0..rounds {
            let v = db.fetch_add(1, Ordering::SeqCst) + 1;
            cache.invalidate(KEY);
            committed.store(v, Ordering::SeqCst);
        }
        done.store(true, Ordering::SeqCst);
        let mut anomalies: u64 = readers.into_iter().map(|r| r.join().expect("reader")).sum();
        // Quiet now: whatever is cached must be the database's value.
        let final_db = db.load(Ordering::SeqCst);
        if cache.get(KEY).is_some_and(|v| v != final_db) {
            anomalies += 1;
        }
        Outcome { rounds, anomalies }
    }
}

/// Seed 002: a write is acknowledged, and an immediate read on another
/// thread must see it.
pub mod incident_002 {
    use super::*;

    /// Writes are held back; the writer's acknowledgement must not come
    /// before its write is visible.
    pub fn forced<C: IncidentCache<u64>>(cache: Arc<C>) -> Outcome {
        const KEY: u64 = 2;
        cache.insert(KEY, 1);
        wait_until(|| cache.get(KEY) == Some(1)); // settled (the naive one lags)
        let mut anomalies = 0;
        let read_elsewhere = |cache: &Arc<C>| {
            let cache = cache.clone();
            std::thread::spawn(move || cache.get(KEY))
                .join()
                .expect("reader")
        };
        let writer;
        {
            let _held = cache.stall(KEY);
            writer = {
                let cache = cache.clone();
                std::thread::spawn(move || cache.insert(KEY, 2))
            };
            // The write either returned (acknowledged) or is blocked inside.
            wait_until(|| writer.is_finished() || cache.waiting() > 0);
            if writer.is_finished() && read_elsewhere(&cache) != Some(2) {
                anomalies += 1; // acknowledged but not visible
            }
        }
        writer.join().expect("writer");
        if read_elsewhere(&cache) != Some(2) {
            anomalies += 1;
        }
        Outcome {
            rounds: 1,
            anomalies,
        }
    }

    /// A writer writes `rounds` versions, publishing each acknowledged
    /// version to a reader thread, which must never read an older one.
    pub fn free_running<C: IncidentCache<u64>>(cache: Arc<C>, rounds: u64) -> Outcome {
        const KEY: u64 = 3;
        let acked = Arc::new(AtomicU64::new(0));
        let done = Arc::new(AtomicBool::new(false));
        let reader = {
            let (cache, acked, done) = (cache.clone(), acked.clone(), done.clone());
            std::thread::spawn(move || {
                let mut anomalies = 0;
                while !done.load(Ordering::SeqCst) {
                    let floor = acked.load(Ordering::SeqCst);
                    if cache.get(KEY).unwrap_or(0) < floor {
                        anomalies += 1;
                    }
                }
                anomalies
            })
        };
        for v in 1..=rounds {
            cache.insert(KEY, v);
            acked.store(v, Ordering::SeqCst);
        }
        done.store(true, Ordering::SeqCst);
        Outcome {
            rounds,
            anomalies: reader.join().expect("reader"),
        }
    }
}

/// Seed 003: eight concurrent appends to one cached list; all eight must
/// be there.
pub mod incident_003 {
    use super::*;

    const WRITERS: u32 = 8;

    fn append(id: u32) -> Modify<Vec<u32>> {
        Box::new(move |cur| {
            let mut list = cur.cloned().unwrap_or_default();
            list.push(id);
            list
        })
    }

    /// One appender is paused in the middle of its read-modify-write while
    /// the seven others run theirs: the schedule that lost seven messages.
    pub fn forced<C: IncidentCache<Vec<u32>>>(cache: Arc<C>) -> Outcome {
        const KEY: u64 = 4;
        let (paused_tx, paused_rx) = mpsc::channel();
        let (go_tx, go_rx) = mpsc::channel::<()>();
        let first = {
            let cache = cache.clone();
            std::thread::spawn(move || {
                cache.update(
                    KEY,
                    Box::new(move |cur| {
                        let mut list = cur.cloned().unwrap_or_default();
                        paused_tx.send(()).expect("observer");
                        let _ = go_rx.recv();
                        list.push(0);
                        list
                    }),
                )
            })
        };
        paused_rx.recv().expect("first appender paused");
        let others: Vec<_> = (1..WRITERS)
            .map(|id| {
                let cache = cache.clone();
                std::thread::spawn(move || cache.update(KEY, append(id)))
            })
            .collect();
        // Each of the seven has finished or is blocked inside the cache.
        wait_until(|| {
            let finished = others.iter().filter(|t| t.is_finished()).count();
            finished + cache.waiting() >= (WRITERS - 1) as usize
        });
        go_tx.send(()).expect("release");
        first.join().expect("first appender");
        for t in others {
            t.join().expect("appender");
        }
        let list = cache.get(KEY).unwrap_or_default();
        Outcome {
            rounds: 1,
            anomalies: u64::from(WRITERS) - list.len() as u64,
        }
    }

    /// Eight threads each append their id to lists `0..rounds/8`, racing
    /// through them in the same order; every list must end with 8 items.
    pub fn free_running<C: IncidentCache<Vec<u32>>>(cache: Arc<C>, rounds: u64) -> Outcome {
        let lists = rounds.div_ceil(u64::from(WRITERS));
        let base = 1_000_000;
        let start = Arc::new(Barrier::new(WRITERS as usize));
        let threads: Vec<_> = (0..WRITERS)
            .map(|id| {
                let (cache, start) = (cache.clone(), start.clone());
                std::thread::spawn(move || {
                    start.wait();
                    for k in 0..lists {
                        cache.update(base + k, append(id));
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().expect("appender");
        }
        let mut anomalies = 0;
        for k in 0..lists {
            let n = cache.get(base + k).map_or(0, |l| l.len() as u64);
            anomalies += u64::from(WRITERS).saturating_sub(n);
        }
        Outcome {
            rounds: lists * u64::from(WRITERS),
            anomalies,
        }
    }
}
