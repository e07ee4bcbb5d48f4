//! Seed 000: "set this, and invalidate everything related" done as two
//! steps. A reader sees the new value next to a related entry derived from
//! the old one. `coherent` does it as one transaction (G2).
//!
//! The data: a user record (key [`USER`], its value the version) and
//! entries derived from it, some found by tag (`"user"`), some by explicit
//! key, placed in shards other than the user's. A writer moves the user to
//! version `r` and invalidates what was derived from `r - 1`, then derives
//! the entries again from `r`. A reader reads the user, then the related
//! entries: if it saw version `u` of the user, a related entry it reads
//! afterwards must be absent or derived from `u` or later.

use crate::incidents::Outcome;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Arc};

/// The user record's key.
pub const USER: u64 = 0;

/// The tag the derived entries carry.
pub const TAG: &str = "user";

/// How a cache under test does the incident's write.
pub trait RelatedCache: Send + Sync + 'static {
    /// Name for tables.
    fn name(&self) -> &'static str;
    /// A read.
    fn get(&self, key: u64) -> Option<u64>;
    /// A snapshot read of several keys, if the cache has one.
    fn get_many(&self, keys: &[u64]) -> Vec<Option<u64>>;
    /// Stores a derived entry (tagged, or found by its key).
    fn derive(&self, key: u64, version: u64, tagged: bool);
    /// Sets the user to `version` and invalidates the tagged entries and
    /// the `explicit` keys, the cache's way. `between` runs where a
    /// two-step writer is between its steps (for an atomic writer: after).
    fn set_and_invalidate(&self, version: u64, explicit: &[u64], between: &mut dyn FnMut());
    /// The shard that owns `key`.
    fn shard_of(&self, key: u64) -> usize;
}

/// `coherent`, doing the write as one transaction.
impl RelatedCache for coherent::Cache<u64, u64> {
    fn name(&self) -> &'static str {
        "coherent"
    }
    fn get(&self, key: u64) -> Option<u64> {
        coherent::Cache::get(self, &key)
    }
    fn get_many(&self, keys: &[u64]) -> Vec<Option<u64>> {
        coherent::Cache::get_many(self, keys)
    }
    fn derive(&self, key: u64, version: u64, tagged: bool) {
        if tagged {
            self.insert_tagged(key, version, [TAG]).expect("insert");
        } else {
            self.insert(key, version).expect("insert");
        }
    }
    fn set_and_invalidate(&self, version: u64, explicit: &[u64], between: &mut dyn FnMut()) {
        let mut t = self.transaction().insert(USER, version).invalidate_tag(TAG);
        for &k in explicit {
            t = t.invalidate(k);
        }
        t.commit().expect("commit");
        between();
    }
    fn shard_of(&self, key: u64) -> usize {
        coherent::Cache::shard_of(self, &key)
    }
}

/// The seed's writer: the same cache, used the way the incident's service used its
/// cache: set, then invalidate the related entries, as separate steps.
#[derive(Debug, Clone)]
pub struct TwoStep(pub coherent::Cache<u64, u64>);

impl RelatedCache for TwoStep {
    fn name(&self) -> &'static str {
        "set, then invalidate"
    }
    fn get(&self, key: u64) -> Option<u64> {
        self.0.get(&key)
    }
    fn get_many(&self, keys: &[u64]) -> Vec<Option<u64>> {
        keys.iter().map(|k| self.0.get(k)).collect()
    }
    fn derive(&self, key: u64, version: u64, tagged: bool) {
        self.0.derive(key, version, tagged);
    }
    fn set_and_invalidate(&self, version: u64, explicit: &[u64], between: &mut dyn FnMut()) {
        self.0.insert(USER, version).expect("insert");
        between();
        self.0.invalidate_tag(TAG).expect("invalidate_tag");
        for k in explicit {
            self.0.invalidate(k).expect("invalidate");
        }
    }
    fn shard_of(&self, key: u64) -> usize {
        self.0.shard_of(&key)
    }
}

/// Related keys in shards other than the user's: `tagged` found by tag,
/// then `explicit` found by key.
fn related<C: RelatedCache>(cache: &C, tagged: usize, explicit: usize) -> (Vec<u64>, Vec<u64>) {
    let home = cache.shard_of(USER);
    let mut keys = (1..).filter(|&k| cache.shard_of(k) != home);
    let t = keys.by_ref().take(tagged).collect();
    let e = keys.take(explicit).collect();
    (t, e)
}

fn derive_all<C: RelatedCache>(cache: &C, tagged: &[u64], explicit: &[u64], version: u64) {
    for &k in tagged {
        cache.derive(k, version, true);
    }
    for &k in explicit {
        cache.derive(k, version, false);
    }
}

/// Counts related entries older than the user version read before them.
fn stale(user: Option<u64>, related: &[Option<u64>]) -> u64 {
    let u = user.unwrap_or(0);
    related.iter().flatten().filter(|&&v| v < u).count() as u64
}

/// The incident's interleaving, forced: the writer sets version 1; where a
/// two-step writer has set the user but not yet invalidated, a reader reads
/// the user and then every related entry.
pub fn forced<C: RelatedCache>(cache: Arc<C>) -> Outcome {
    let (tagged, explicit) = related(&*cache, 3, 2);
    cache.set_and_invalidate(0, &explicit, &mut || {});
    derive_all(&*cache, &tagged, &explicit, 0);
    let all: Vec<u64> = tagged.iter().chain(&explicit).copied().collect();
    let (go_tx, go_rx) = mpsc::channel::<()>();
    let (done_tx, done_rx) = mpsc::channel::<u64>();
    let reader = {
        let (cache, all) = (cache.clone(), all.clone());
        std::thread::spawn(move || {
            go_rx.recv().expect("writer");
            let user = cache.get(USER);
            let related: Vec<_> = all.iter().map(|&k| cache.get(k)).collect();
            done_tx.send(stale(user, &related)).expect("writer");
        })
    };
    let mut anomalies = 0;
    cache.set_and_invalidate(1, &explicit, &mut || {
        go_tx.send(()).expect("reader");
        anomalies = done_rx.recv().expect("reader");
    });
    reader.join().expect("reader");
    Outcome {
        rounds: 1,
        anomalies,
    }
}

/// `rounds` versions written while two readers read the user and then its
/// related entries (one with separate `get`s, one with `get_many`).
pub fn free_running<C: RelatedCache>(cache: Arc<C>, rounds: u64) -> Outcome {
    let (tagged, explicit) = related(&*cache, 3, 2);
    cache.set_and_invalidate(0, &explicit, &mut || {});
    derive_all(&*cache, &tagged, &explicit, 0);
    let all: Vec<u64> = tagged.iter().chain(&explicit).copied().collect();
    let done = Arc::new(AtomicBool::new(false));
    let anomalies = Arc::new(AtomicU64::new(0));
    let readers: Vec<_> = [false, true]
        .into_iter()
        .map(|snapshot| {
            let (cache, all, done, anomalies) =
                (cache.clone(), all.clone(), done.clone(), anomalies.clone());
            std::thread::spawn(move || {
                let mut keys = vec![USER];
                keys.extend(&all);
                while !done.load(Ordering::Relaxed) {
                    let found = if snapshot {
                        let v = cache.get_many(&keys);
                        // In a snapshot a derived entry is the user's own
                        // version (or absent), never older.
                        stale(v[0], &v[1..])
                    } else {
                        let user = cache.get(USER);
                        let related: Vec<_> = all.iter().map(|&k| cache.get(k)).collect();
                        stale(user, &related)
                    };
                    anomalies.fetch_add(found, Ordering::Relaxed);
                }
            })
        })
        .collect();
    for r in 1..=rounds {
        cache.set_and_invalidate(r, &explicit, &mut || {});
        derive_all(&*cache, &tagged, &explicit, r);
    }
    done.store(true, Ordering::Relaxed);
    for r in readers {
        r.join().expect("reader");
    }
    Outcome {
        rounds,
        anomalies: anomalies.load(Ordering::Relaxed),
    }
}
