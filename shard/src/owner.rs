//! The state a shard owns, and how it applies one message.
//!
//! Only the current holder of the shard's owner token (see `shard.rs`) can
//! reach an `Owner`, so nothing here is shared: plain fields, plain maps.
//! Every change is published to readers by one slot store in the read table
//! before the message is answered (G1).

use crate::completion::Responder;
use crate::message::{Op, Reply};
use crate::reclaim::Garbage;
use crate::sync::{AtomicPtr, Ordering};
use crate::table::{EntryAlloc, OwnedEntry, OwnedSlots, Probe, Retired, Slots, Was};
use std::cell::Cell;
use std::collections::HashMap;
use std::hash::Hash;
use std::panic::{catch_unwind, AssertUnwindSafe};

/// The smallest read table a shard keeps.
pub(crate) const MIN_SLOTS: usize = 16;

/// Freed entries' memory an owner keeps for its next writes, at most.
const POOL_MAX: usize = 2 * crate::reclaim::BATCH;

/// Where a shard publishes its current slot array to readers.
pub(crate) type Published<K, V> = AtomicPtr<Slots<K, V>>;

#[cfg(not(coherent_loom))]
thread_local! {
    /// True while this thread runs a user closure under a shard's token. A
    /// cache write from there would wait on a shard this thread may be
    /// holding: it is refused instead (`Error::Reentrant`).
    static IN_CLOSURE: Cell<bool> = const { Cell::new(false) };
}

#[cfg(coherent_loom)]
loom::thread_local! {
    static IN_CLOSURE: Cell<bool> = Cell::new(false);
}

/// Whether the current thread is inside an update closure.
pub(crate) fn in_closure() -> bool {
    IN_CLOSURE.with(Cell::get)
}

/// Runs `f` with the reentrancy flag set, restoring it even if `f` panics.
fn as_closure<R>(f: impl FnOnce() -> R) -> R {
    struct Reset(bool);
    impl Drop for Reset {
        fn drop(&mut self) {
            IN_CLOSURE.with(|c| c.set(self.0));
        }
    }
    let _reset = Reset(IN_CLOSURE.with(|c| c.replace(true)));
    f()
}

/// Turns a panic payload into the message it carried.
pub(crate) fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "non-string panic payload".to_owned()
    }
}

/// A load in flight for one key (the memcache lease idea).
struct Lease<V> {
    /// Identifies this lease; an `Install` must bring the same token.
    token: u64,
    /// A write to the key committed since the load began: the leader's value
    /// will be discarded, and the waiters will be served by a fresh load.
    doomed: bool,
    /// Callers that asked for the key while the load ran.
    waiters: Vec<Responder<Reply<V>>>,
}

pub(crate) struct Owner<K, V> {
    /// The slot array readers see (the shard publishes the same pointer).
    table: Option<OwnedSlots<K, V>>,
    /// Live entries in `table`.
    live: usize,
    /// Tombstones in `table`; they lengthen probes until the next rebuild.
    tombs: usize,
    /// What was unlinked from `table` (or was `table`) and readers may
    /// still hold; freed once they cannot (reclaim.rs).
    garbage: Garbage<Retired<K, V>>,
    /// Memory of freed entries, reused by the next writes.
    pool: Vec<EntryAlloc<K, V>>,
    /// Loads in flight, by key. Touched on the load path only.
    leases: HashMap<K, Lease<V>>,
    /// Source of lease tokens; never reused within a shard.
    next_token: u64,
}

impl<K, V> std::fmt::Debug for Owner<K, V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Owner")
            .field("live", &self.live)
            .field("tombs", &self.tombs)
            .field("leases", &self.leases.len())
            .finish_non_exhaustive()
    }
}

impl<K, V> Owner<K, V>
where
    K: Hash + Eq + Clone,
    V: Clone,
{
    /// An owner of `table`, whose pointer the shard publishes.
    pub(crate) fn new(table: OwnedSlots<K, V>) -> Self {
        Self {
            table: Some(table),
            live: 0,
            tombs: 0,
            garbage: Garbage::new(),
            pool: Vec::new(),
            leases: HashMap::new(),
            next_token: 0,
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.live
    }

    /// Applies one message. `None` means the answer goes (or went) through
    /// the responder carried inside the message.
    pub(crate) fn apply(
        &mut self,
        hash: u64,
        op: Op<K, V>,
        published: &Published<K, V>,
    ) -> Option<Reply<V>> {
        match op {
            Op::Insert { key, value } => {
                self.cancel_lease(&key, Some(&value));
                self.put(hash, key, value, published);
                Some(Reply::Done)
            }
            Op::Invalidate { key } => {
                self.cancel_lease(&key, None);
                self.remove(hash, &key);
                Some(Reply::Done)
            }
            Op::Update { key, f } => {
                let result = {
                    let current = match self.slots().probe(hash, &key) {
                        Probe::Found(i) => self.slots().value_at(i),
                        Probe::Vacant(_) => None,
                    };
                    catch_unwind(AssertUnwindSafe(|| as_closure(|| f(current))))
                };
                match result {
                    Err(payload) => {
                        let message = panic_message(&*payload);
                        tracing::warn!(%message, "update closure panicked; nothing changed");
                        Some(Reply::UpdatePanicked(message))
                    }
                    Ok(new) => {
                        self.cancel_lease(&key, new.as_ref());
                        match &new {
                            Some(v) => self.put(hash, key, v.clone(), published),
                            None => self.remove(hash, &key),
                        }
                        Some(Reply::Updated(new))
                    }
                }
            }
            Op::LoadBegin { key, waiter } => {
                self.load_begin(hash, key, waiter);
                None
            }
            Op::Install { key, value, token } => {
                Some(self.install(hash, key, value, token, published))
            }
            Op::Abandon { key, token } => {
                if self.leases.get(&key).is_some_and(|l| l.token == token) {
                    tracing::debug!(token, "load abandoned; next waiter leads");
                    self.promote(key);
                }
                Some(Reply::Done)
            }
        }
    }

    fn load_begin(&mut self, hash: u64, key: K, waiter: Responder<Reply<V>>) {
        if let Probe::Found(i) = self.slots().probe(hash, &key) {
            if let Some(v) = self.slots().value_at(i) {
                let _ = waiter.send(Reply::Hit(v.clone()));
                return;
            }
        }
        if let Some(lease) = self.leases.get_mut(&key) {
            lease.waiters.push(waiter);
            return;
        }
        let token = self.token();
        if waiter.send(Reply::Lead(token)).is_ok() {
            self.leases.insert(
                key,
                Lease {
                    token,
                    doomed: false,
                    waiters: Vec::new(),
                },
            );
        }
    }

    fn install(
        &mut self,
        hash: u64,
        key: K,
        value: V,
        token: u64,
        published: &Published<K, V>,
    ) -> Reply<V> {
        match self.leases.get(&key) {
            Some(lease) if lease.token == token && !lease.doomed => {
                let lease = self.leases.remove(&key).expect("lease was just found");
                self.put(hash, key, value.clone(), published);
                for w in lease.waiters {
                    let _ = w.send(Reply::Hit(value.clone()));
                }
                Reply::Installed
            }
            Some(lease) if lease.token == token => {
                tracing::debug!(token, "load raced a write; value discarded");
                self.promote(key);
                Reply::Discarded
            }
            _ => Reply::Discarded,
        }
    }

    /// Ends the lease of `key` and hands the load to its first waiter that
    /// is still there, under a fresh token.
    fn promote(&mut self, key: K) {
        let Some(lease) = self.leases.remove(&key) else {
            return;
        };
        let mut waiters = lease.waiters.into_iter();
        while let Some(w) = waiters.next() {
            let token = self.token();
            if w.send(Reply::Lead(token)).is_ok() {
                self.leases.insert(
                    key,
                    Lease {
                        token,
                        doomed: false,
                        waiters: waiters.collect(),
                    },
                );
                return;
            }
        }
    }

    /// A write to `key` commits: a load in flight can no longer install.
    /// If the write leaves a value, the waiters are answered with it.
    fn cancel_lease(&mut self, key: &K, new_value: Option<&V>) {
        if self.leases.is_empty() {
            return; // the common case: no load in flight, no hashing
        }
        if let Some(lease) = self.leases.get_mut(key) {
            lease.doomed = true;
            if let Some(v) = new_value {
                for w in lease.waiters.drain(..) {
                    let _ = w.send(Reply::Hit(v.clone()));
                }
            }
        }
    }

    fn token(&mut self) -> u64 {
        self.next_token += 1;
        self.next_token
    }

    fn put(&mut self, hash: u64, key: K, value: V, published: &Published<K, V>) {
        self.reserve(published);
        let probe = self.slots().probe(hash, &key);
        let entry = Some(match self.pool.pop() {
            Some(alloc) => OwnedEntry::new_in(alloc, hash, key, value),
            None => OwnedEntry::new(hash, key, value),
        });
        match probe {
            Probe::Found(i) => {
                if let Was::Live(old) = self.slots().publish(i, entry, false) {
                    self.retire(Retired::Entry(old));
                }
            }
            Probe::Vacant(i) => {
                if let Was::Tomb = self.slots().publish(i, entry, false) {
                    self.tombs -= 1;
                }
                self.live += 1;
            }
        }
    }

    fn remove(&mut self, hash: u64, key: &K) {
        if let Probe::Found(i) = self.slots().probe(hash, key) {
            self.live -= 1;
            // Nothing was ever placed past an empty slot on this chain since
            // the last rebuild, so if the next slot is empty the chain may
            // end here; otherwise leave a tombstone for readers to probe past.
            let tomb = !self.slots().is_empty_at(self.slots().next(i));
            if tomb {
                self.tombs += 1;
            }
            if let Was::Live(old) = self.slots().publish(i, None, tomb) {
                self.retire(Retired::Entry(old));
            }
        }
    }

    /// Keeps at least a third of the slots empty after one more insert,
    /// rebuilding (bigger, or just without tombstones) when needed. Loads
    /// between 1/3 and 2/3 keep hits at about 1.5 probes; at 80% a `get`
    /// ran 40% more instructions and missed L1 50% more often, measured
    /// with cachegrind (docs/design.md).
    fn reserve(&mut self, published: &Published<K, V>) {
        let used = self.live + self.tombs + 1;
        if used * 3 > self.slots().slot_count() * 2 {
            self.rebuild(published);
        }
    }

    /// Builds fresh slots with the live entries and no tombstones, sized for
    /// the live count, publishes them, and retires the old array.
    fn rebuild(&mut self, published: &Published<K, V>) {
        let size = ((self.live + 1) * 2).next_power_of_two().max(MIN_SLOTS);
        let fresh = OwnedSlots::new(Slots::with_slots(size));
        self.slots().move_into(fresh.get());
        tracing::trace!(
            from = self.slots().slot_count(),
            to = size,
            "read table rebuilt"
        );
        self.tombs = 0;
        // Release: every entry was placed before readers can see the array.
        published.store(fresh.as_ptr(), Ordering::Release);
        if let Some(old) = self.table.replace(fresh) {
            self.retire(Retired::Slots(old));
        }
    }

    /// Hands `item`, just unlinked, to the garbage; freed entries' memory
    /// goes to the pool. Values are dropped here, under the token, so their
    /// `Drop` runs flagged as a closure: a cache write from it is refused
    /// (`Error::Reentrant`) instead of waiting on this very shard.
    fn retire(&mut self, item: Retired<K, V>) {
        let pool = &mut self.pool;
        self.garbage.retire_with(item, &mut |freed| {
            as_closure(|| match freed {
                Retired::Entry(e) if pool.len() < POOL_MAX => pool.push(e.into_alloc()),
                other => drop(other),
            })
        });
    }

    /// The current slot array.
    pub(crate) fn slots(&self) -> &Slots<K, V> {
        self.table
            .as_ref()
            .expect("an owner always has a table")
            .get()
    }

    /// Unlinked items not yet freed (tests).
    #[cfg(all(test, not(coherent_loom)))]
    pub(crate) fn garbage_pending(&self) -> usize {
        self.garbage.pending()
    }
}

impl<K, V> Drop for Owner<K, V> {
    fn drop(&mut self) {
        // The shard is going: no reader is left (they borrow the shard), so
        // the current array and its entries go now; the garbage drops with
        // the owner.
        if let Some(table) = self.table.take() {
            table.free_with_entries();
        }
    }
}
