//! The state a shard owns, and how it applies one message.
//!
//! Only the current holder of the shard's owner token (see `shard.rs`) can
//! reach an `Owner`, so nothing here is shared: plain fields, plain maps.
//! Every change is published to readers by one slot store in the read table
//! before the message is answered (G1).
//!
//! # Files
//!
//! This file holds the state and the dispatch of one message (`apply`);
//! each kind of work has its own file, all of them `impl Owner` blocks
//! that touch only the owner's fields and the table it publishes:
//!
//! - `write.rs`: plain writes, writes in the context of a transaction or
//!   lease, building entries, putting them in the table;
//! - `txn.rs`: a transaction's part (staging intents, folding later
//!   writes, finalize and rollback);
//! - `tags.rs`: the owner-side tag index;
//! - `lease.rs`: leases for loads in flight;
//! - `evict.rs`: eviction and expiry bookkeeping, unlinking with a cause;
//! - `retire.rs`: growing the table and retiring what readers may hold.

use crate::cells::{Blocks, Cells};
use crate::clock::Clock;
use crate::completion::Responder;
use crate::limits::{millis, Expiry, Listener, RemovalCause, ShardConfig, ShardStats, Weigher};
use crate::message::{Op, Reply, TxnOp};
use crate::policy::Policy;
use crate::reclaim::Garbage;
use crate::table::{
    marks_of_a_lasting_entry, EntryRef, Life, OwnedEntry, OwnedIntent, OwnedSlots, Probe, Put,
    Retired, Slots, View, Was,
};
use crate::tag::Tag;
use crate::value::Value;
use std::cell::Cell;
use std::sync::Arc;
/// The owner's own maps (leases, tags, a transaction's keys): foldhash,
/// seeded per process, rather than std's SipHash, which was the largest
/// single cost of a 10,000-entry tag invalidation.
type HashMap<K, V> = std::collections::HashMap<K, V, foldhash::fast::RandomState>;
type HashSet<K> = std::collections::HashSet<K, foldhash::fast::RandomState>;
use std::hash::Hash;
use std::panic::{catch_unwind, AssertUnwindSafe};

/// The smallest read table a shard keeps. Under loom, 4: a model with
/// three keys then rebuilds its table while readers hold the old one.
pub(crate) const MIN_SLOTS: usize = if cfg!(coherent_loom) { 4 } else { 16 };

pub(crate) use crate::table::Published;

mod evict;
mod lease;
mod retire;
mod tags;
mod txn;
mod write;

use evict::weigh;
use lease::Lease;
use txn::Pending;

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

/// What a write's answer is: done now, or done once the watermark reaches
/// the stamp of the transaction it was folded into.
fn done<V>(stamp: Option<u64>) -> Reply<V> {
    stamp.map_or(Reply::Done, Reply::DoneAt)
}

/// Whether the current thread is inside an update closure.
#[inline]
pub(crate) fn in_closure() -> bool {
    IN_CLOSURE.with(Cell::get)
}

/// The reentrancy flag, raised for as long as a shard's token is held when
/// `K` or `V` has drop glue: the owner drops keys and values under the
/// token (the key of a write that replaced a word value in place, a
/// queued message's, a replaced entry's), and a cache write from such a
/// `Drop` would wait for a token this thread holds (or, from two threads,
/// for each other's). It is refused instead (`Error::Reentrant`), like a
/// write from an update closure. Types without drop glue run no user code
/// there and pay nothing (tests/tests/drop_writes.rs).
#[derive(Clone, Copy)]
#[must_use]
pub(crate) struct HeldFlag(Option<bool>);

impl HeldFlag {
    /// Raises the flag if `K` or `V` has drop glue, remembering what it was.
    #[inline(always)]
    pub(crate) fn raise<K, V>() -> Self {
        // `coherent_break_held_flag`: deliberately broken (the flag is never
        // raised), to show that
        // `tests/tests/drop_writes.rs` catches the hang (`.ci/run`).
        if cfg!(coherent_break_held_flag) {
            return HeldFlag(None);
        }
        if std::mem::needs_drop::<K>() || std::mem::needs_drop::<V>() {
            HeldFlag(Some(IN_CLOSURE.with(|c| c.replace(true))))
        } else {
            HeldFlag(None)
        }
    }

    /// Puts the flag back as [`raise`](Self::raise) found it.
    #[inline(always)]
    pub(crate) fn lower(self) {
        if let Some(was) = self.0 {
            IN_CLOSURE.with(|c| c.set(was));
        }
    }
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

/// `repr(C)`, hot fields first: a plain write reads and writes `table`,
/// `cells`, `live`, `tombs` and the open garbage batch, which (after the
/// token word, `token.rs`) fill the first cache line and spill into the
/// second; it then only checks that `pending`, `leases` and `tags_of` are
/// empty.
#[repr(C)]
pub(crate) struct Owner<K, V> {
    /// The slot array readers see (the shard publishes the same pointer).
    table: Option<OwnedSlots<K, V>>,
    /// The cells of freed entries, which the next writes reuse before
    /// cutting new ones from `blocks`.
    cells: Cells,
    /// Live entries in `table`.
    live: usize,
    /// Tombstones in `table`; they lengthen probes until the next rebuild.
    tombs: usize,
    /// Whether anything beyond the plain write is configured or present:
    /// a capacity, a listener, default expiry, or an entry that expires.
    /// One flag on the hot line, so a plain cache's write skips the rest.
    extras: bool,
    /// Whether a word value (`value.rs`) may be replaced in place: no
    /// removal listener (it must be handed the replaced value) and no
    /// default expiry (a replacement restarts the entry's clock).
    in_place: bool,
    /// The marks of an entry a word value may replace in place: one that
    /// cannot expire, extended exactly when the shard is bounded
    /// ([`marks_of_a_lasting_entry`]); compared in one instruction.
    in_place_marks: u64,
    /// Closed (`Op::Close`): every message is refused with `Reply::Closed`.
    closed: bool,
    /// What was unlinked from `table` (or was `table`) and readers may
    /// still hold; freed once they cannot (reclaim.rs).
    garbage: Garbage<Retired<K, V>>,
    /// The transaction staged in this shard and not yet finalized.
    pending: Option<Pending<K>>,
    /// Loads in flight, by key. Touched on the load path only.
    leases: HashMap<K, Lease<V>>,
    /// The tags of each tagged key (owner side only: readers never see
    /// tags), and the keys (with their hashes) carrying each tag.
    tags_of: HashMap<K, Box<[Tag]>>,
    keys_of: HashMap<Tag, HashMap<K, u64>>,
    /// Source of lease tokens; never reused within a shard.
    next_token: u64,
    /// Capacity: which entries to evict (`None`: unbounded).
    policy: Option<Box<Policy>>,
    /// Expiry, weights and the removal listener.
    settings: Settings<K, V>,
    /// Whether an entry that can expire was ever written here (then writes
    /// sweep a few slots for expired entries).
    mortal: bool,
    /// Where the next sweep starts.
    sweep: usize,
    /// Writes since the climber last looked at the statistics.
    since_observe: u32,
    /// The shard's statistics (readers count hits and misses there).
    stats: Arc<ShardStats>,
    /// The memory `cells` are cut from. Last: fields drop in order, so
    /// its blocks go after everything that can hold an entry (`table`,
    /// `garbage`), even when a key's or value's `drop` panics on the way.
    blocks: Blocks,
}

/// What the owner needs of the configuration.
struct Settings<K, V> {
    clock: Clock,
    /// Default time to live and time to idle, in ms (0: none).
    ttl: u64,
    tti: u64,
    weigher: Option<Weigher<K, V>>,
    listener: Option<Listener<K, V>>,
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
    pub(crate) fn new(
        table: OwnedSlots<K, V>,
        config: &ShardConfig<K, V>,
        stats: Arc<ShardStats>,
    ) -> Self {
        Self {
            table: Some(table),
            live: 0,
            tombs: 0,
            garbage: Garbage::new(),
            cells: Cells::new(),
            blocks: Blocks::default(),
            leases: HashMap::default(),
            tags_of: HashMap::default(),
            keys_of: HashMap::default(),
            pending: None,
            next_token: 0,
            policy: config
                .budget
                .map(|b| Box::new(Policy::new(b, config.weigher.is_some()))),
            settings: Settings {
                clock: config.clock.clone(),
                ttl: config.expiry.time_to_live().map_or(0, millis),
                tti: config.expiry.time_to_idle().map_or(0, millis),
                weigher: config.weigher.clone(),
                listener: config.listener.clone(),
            },
            mortal: false,
            closed: false,
            in_place: config.listener.is_none() && config.expiry == Expiry::default(),
            in_place_marks: marks_of_a_lasting_entry(config.budget.is_some()),
            extras: config.budget.is_some()
                || config.listener.is_some()
                || config.expiry != Expiry::default(),
            sweep: 0,
            since_observe: 0,
            stats,
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.live
    }

    /// Whether the shard was closed (`Op::Close`).
    #[inline]
    pub(crate) fn is_closed(&self) -> bool {
        self.closed
    }

    /// The answer of a closed shard to `op`: refused, and any load waiter
    /// in it told so. A leader's `Abandon` has nothing left to abandon.
    #[cold]
    fn refuse(op: Op<K, V>) -> Option<Reply<V>> {
        match op {
            Op::LoadBegin { waiter, .. } => {
                let _ = waiter.send(Reply::Closed);
                None
            }
            Op::Abandon { .. } | Op::Finalize { .. } | Op::Rollback { .. } | Op::Close => {
                Some(Reply::Done)
            }
            _ => Some(Reply::Closed),
        }
    }

    /// Closes the shard: every caller waiting on a load here is answered
    /// `Closed` (none is left waiting: the lease map is never looked at
    /// again), every entry is unlinked (a fresh empty table is published,
    /// and the old one and its entries are retired: readers still on them
    /// are safe), and from now on every message is refused.
    #[cold]
    fn close(&mut self, published: &Published<K, V>) {
        self.closed = true;
        if !cfg!(coherent_loom_break_close) {
            for (_, lease) in self.leases.drain() {
                for w in lease.waiters {
                    let _ = w.send(Reply::Closed);
                }
            }
        }
        // `coherent_loom_break_close`: deliberately broken (the waiters of
        // loads in flight are kept, never answered), to show that the
        // shutdown model catches a caller left hanging.
        self.pending = None;
        self.tags_of.clear();
        self.keys_of.clear();
        if let Some(p) = self.policy.as_mut() {
            p.clear(); // the slots it names go with the table
        }
        let fresh = OwnedSlots::new(Slots::with_slots(MIN_SLOTS));
        // Release: as in `rebuild` (the empty array is initialised).
        published.publish(fresh.get());
        let Some(old) = self.table.replace(fresh) else {
            return;
        };
        let mut taken = Vec::with_capacity(self.live);
        old.get().disown_all(|was| taken.push(was));
        self.live = 0;
        self.tombs = 0;
        self.sweep = 0;
        for was in taken {
            if let Was::Live(e) = &was {
                let cause = self.cause(e.get(), RemovalCause::Invalidated);
                self.notify(e.get(), cause);
            }
            self.retire_was(was);
        }
        self.retire(Retired::Slots(old));
        tracing::debug!("shard closed");
    }

    /// Applies one message. `None` means the answer goes (or went) through
    /// the responder carried inside the message.
    pub(crate) fn apply(
        &mut self,
        hash: u64,
        op: Op<K, V>,
        published: &Published<K, V>,
    ) -> Option<Reply<V>> {
        if self.closed {
            return Self::refuse(op);
        }
        match op {
            Op::Insert { key, value } => Some(done(self.insert(hash, key, value, published))),
            Op::InsertTagged { key, value, tags } => Some(done(self.write(
                hash,
                key,
                Some(value),
                Some(tags),
                None,
                published,
            ))),
            Op::InsertExpiring {
                key,
                value,
                tags,
                expiry,
            } => Some(done(self.write(
                hash,
                key,
                Some(value),
                tags,
                Some(expiry),
                published,
            ))),
            Op::Invalidate { key } => {
                Some(done(self.write(hash, key, None, None, None, published)))
            }
            Op::Update { key, f } => {
                // The new value keeps the entry's life: its deadline stays,
                // its time to idle carries over (docs/guarantees.md, G7).
                let mut life = None;
                let result = {
                    let current = match self.slots().probe(hash, &key) {
                        Probe::Found(i) => {
                            let current = self.value_now(i);
                            if current.is_some() {
                                life = self.life_left(i);
                            }
                            current
                        }
                        Probe::Vacant(_) => None,
                    };
                    // The clone handed back runs here too: a value whose
                    // `Clone` panics changes nothing either.
                    catch_unwind(AssertUnwindSafe(|| {
                        as_closure(|| {
                            let new = f(current);
                            let back = new.clone();
                            (new, back)
                        })
                    }))
                };
                match result {
                    Err(payload) => {
                        let message = panic_message(&*payload);
                        tracing::warn!(%message, "update closure panicked; nothing changed");
                        Some(Reply::UpdatePanicked(message))
                    }
                    Ok((new, back)) => {
                        Some(match self.write(hash, key, new, None, life, published) {
                            None => Reply::Updated(back),
                            Some(stamp) => Reply::UpdatedAt(back, stamp),
                        })
                    }
                }
            }
            Op::LoadBegin { key, tags, waiter } => {
                self.load_begin(hash, key, tags, waiter);
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
            Op::Prepare { stamp, ops } => {
                self.prepare(stamp, ops, published);
                Some(Reply::Prepared)
            }
            Op::Finalize { stamp } => {
                self.resolve_pending(stamp, true);
                Some(Reply::Done)
            }
            Op::Rollback { stamp } => {
                self.resolve_pending(stamp, false);
                Some(Reply::Done)
            }
            Op::Close => {
                self.close(published);
                Some(Reply::Done)
            }
        }
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

    /// Cells taken and not given back (tests).
    #[cfg(all(test, not(coherent_loom)))]
    pub(crate) fn cells_out(&self) -> usize {
        self.cells.out()
    }

    /// Checks that every cell taken and not given back holds an entry the
    /// owner still reaches: in its table (in a slot or an intent) or in
    /// its garbage. A path that dropped an entry instead of retiring it
    /// would keep its cell until the shard goes (tests).
    #[cfg(all(test, not(coherent_loom)))]
    pub(crate) fn assert_no_cell_lost(&self) {
        let retired = self
            .garbage
            .items()
            .filter(|item| matches!(item, Retired::Entry(e) if e.in_cell()))
            .count();
        let reached = self.slots().entries_in_cells() + retired;
        assert_eq!(self.cells.out(), reached, "cells in use vs entries reached");
    }
}

impl<K, V> Drop for Owner<K, V> {
    fn drop(&mut self) {
        // The shard is going: no reader is left (they borrow the shard), so
        // the current array and its entries go now; the garbage drops with
        // the owner.
        if let Some(p) = self.policy.as_mut() {
            p.clear(); // the slots it names go with the table
        }
        if let Some(table) = self.table.take() {
            table.free_with_entries();
        }
    }
}
