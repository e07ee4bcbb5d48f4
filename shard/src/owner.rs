//! The state a shard owns, and how it applies one message.
//!
//! Only the current holder of the shard's owner token (see `shard.rs`) can
//! reach an `Owner`, so nothing here is shared: plain fields, plain maps.
//! Every change is published to readers by one slot store in the read table
//! before the message is answered (G1).

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

/// Frees a batch of retired items that no reader can hold any more,
/// giving entries' cells back to `cells` for later writes. Keys and values
/// are dropped flagged as a closure (see `Owner::retire`); types without
/// drop glue run no user code here, and skip the flag.
///
/// A retired key or value belongs to no caller any more, so a panic of its
/// `Drop` here reaches none: it is caught and logged, and the rest of the
/// batch is freed (the panicking entry's cell is not reused).
fn free_batch<K, V>(cells: &mut Cells, batch: &mut Vec<Retired<K, V>>) {
    if std::mem::needs_drop::<K>() || std::mem::needs_drop::<V>() {
        as_closure(|| {
            for item in batch.drain(..) {
                let freed = catch_unwind(AssertUnwindSafe(|| match item {
                    Retired::Entry(e) => e.free(cells),
                    other => drop(other),
                }));
                if let Err(payload) = freed {
                    let message = panic_message(&*payload);
                    tracing::warn!(%message, "a retired key's or value's drop panicked");
                    let _ = catch_unwind(AssertUnwindSafe(move || drop(payload)));
                }
            }
        });
    } else {
        for item in batch.drain(..) {
            match item {
                Retired::Entry(e) => e.free(cells),
                other => drop(other),
            }
        }
    }
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
    /// The tags the loaded value will carry; invalidating one dooms it.
    tags: Vec<Tag>,
    /// A write to the key committed since the load began: the leader's value
    /// will be discarded, and the waiters will be served by a fresh load.
    doomed: bool,
    /// Callers that asked for the key while the load ran.
    waiters: Vec<Responder<Reply<V>>>,
}

/// A transaction's part in this shard, between `Prepare` and `Finalize`.
///
/// Every key here has an intent in the table. Any later change to such a
/// key, or a write carrying one of `tags`, is folded into an intent with
/// the same stamp (it is ordered after the transaction and becomes visible
/// with it), and its caller waits for the watermark.
struct Pending<K> {
    stamp: u64,
    /// Keys with an intent of this stamp, with their hashes.
    keys: HashMap<K, u64>,
    /// Keys whose intent holds a later plain write: a rollback keeps them.
    folded: HashSet<K>,
    /// Tags the transaction invalidates here.
    tags: HashSet<Tag>,
    /// Tags each key takes when its intent resolves with a value (a key
    /// not listed keeps the tags it had).
    new_tags: HashMap<K, Vec<Tag>>,
}

impl<K: Hash + Eq> Pending<K> {
    fn covers(&self, key: &K, tags: &[Tag]) -> bool {
        self.keys.contains_key(key) || tags.iter().any(|t| self.tags.contains(t))
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

/// Slots examined for expired entries per write, once entries can expire.
const SWEEP: usize = 8;

/// A bounded shard's policy observes the read statistics once per this
/// many writes.
const OBSERVE_EVERY: u32 = 64;

/// The weight of `e` against the budget (1 without a weigher; 1 too if
/// the weigher panics, which is logged). Inline, with the weigher's call
/// out of line: a bounded write without a weigher paid the call's
/// register saves for a `1` (15 instructions, callgrind).
#[inline(always)]
fn weigh<K, V>(settings: &Settings<K, V>, e: EntryRef<'_, K, V>) -> u32 {
    match &settings.weigher {
        None => 1,
        Some(w) => weigh_with(w, e),
    }
}

/// [`weigh`] with a weigher.
#[inline(never)]
fn weigh_with<K, V>(w: &Weigher<K, V>, e: EntryRef<'_, K, V>) -> u32 {
    // SAFETY: weighing is the owner's (under the token): no in-place
    // replacement runs while the reference lives.
    let value = unsafe { e.value.get() };
    let weigh = || catch_unwind(AssertUnwindSafe(|| as_closure(|| w(&e.key, value))));
    weigh().unwrap_or_else(|payload| {
        let message = panic_message(&*payload);
        tracing::warn!(%message, "weigher panicked; the entry weighs 1");
        1
    })
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

    /// Sets (`Some`) or removes (`None`) `key`. `tags`: the tags the value
    /// carries from now on (`None`: keep the current ones). Applied and
    /// visible at once, unless the key or one of the tags is part of the
    /// transaction pending here: then it is folded into that transaction
    /// and its stamp returned (visible when the watermark reaches it).
    #[inline]
    pub(crate) fn write(
        &mut self,
        hash: u64,
        key: K,
        value: Option<V>,
        tags: Option<Vec<Tag>>,
        expiry: Option<Expiry>,
        published: &Published<K, V>,
    ) -> Option<u64> {
        // The common case, checked first: no transaction pending here, no
        // load in flight, nothing tagged. Then a write is one slot change.
        if self.quiet() && tags.as_ref().is_none_or(Vec::is_empty) {
            match value {
                Some(v) => self.put(hash, key, v, expiry, published),
                None => self.remove(hash, &key),
            }
            self.maintain();
            return None;
        }
        let stamp = self.write_in_context(hash, key, value, tags, expiry, published);
        self.maintain();
        stamp
    }

    /// [`write`](Self::write) of a plain insert (`Op::Insert`): sets
    /// `key` and clears its tags. The tags and expiry arguments are built
    /// only off the common path.
    #[inline]
    pub(crate) fn insert(
        &mut self,
        hash: u64,
        key: K,
        value: V,
        published: &Published<K, V>,
    ) -> Option<u64> {
        if self.quiet() {
            self.put(hash, key, value, None, published);
            self.maintain();
            return None;
        }
        let stamp =
            self.write_in_context(hash, key, Some(value), Some(Vec::new()), None, published);
        self.maintain();
        stamp
    }

    /// No transaction pending here, no load in flight, nothing tagged: a
    /// write is then one slot change.
    #[inline(always)]
    fn quiet(&self) -> bool {
        self.pending.is_none() && self.leases.is_empty() && self.tags_of.is_empty()
    }

    /// `write` when a transaction, a load or a tag may be involved.
    #[inline(never)]
    fn write_in_context(
        &mut self,
        hash: u64,
        key: K,
        value: Option<V>,
        tags: Option<Vec<Tag>>,
        expiry: Option<Expiry>,
        published: &Published<K, V>,
    ) -> Option<u64> {
        let fold = self
            .pending
            .as_ref()
            .filter(|p| p.covers(&key, tags.as_deref().unwrap_or(&[])))
            .map(|p| p.stamp);
        if let Some(stamp) = fold {
            // The waiters must not get a value before it is visible: the
            // load is doomed and they load afresh.
            self.doom_lease(&key);
            self.fold(hash, key, value, tags, stamp, published);
            return Some(stamp);
        }
        self.cancel_lease(&key, value.as_ref());
        let present = value.is_some();
        match value {
            Some(v) => self.put(hash, key.clone(), v, expiry, published),
            None => self.remove(hash, &key),
        }
        if self.tags_of.is_empty() && tags.as_ref().is_none_or(Vec::is_empty) {
            return None; // the common case: nothing here is tagged
        }
        match (present, tags) {
            (false, _) => self.clear_tags(&key),
            (true, Some(tags)) => self.set_tags(hash, &key, tags),
            (true, None) => {}
        }
        None
    }

    /// Folds a write into the pending transaction (see `write`).
    fn fold(
        &mut self,
        hash: u64,
        key: K,
        value: Option<V>,
        tags: Option<Vec<Tag>>,
        stamp: u64,
        published: &Published<K, V>,
    ) {
        self.reserve(published);
        let entry = value.map(|v| self.new_entry(hash, key.clone(), v, None));
        let present = entry.is_some();
        // Whether the key has an intent of this stamp once the write is in.
        let staged = match self.slots().probe(hash, &key) {
            Probe::Found(i) if matches!(self.slots().view(i), View::Intent(_)) => {
                let vacancy = self.vacancy(i);
                let tomb = matches!(vacancy, Put::Tomb);
                let (superseded, shell, staged) = self.slots().restage(i, entry, vacancy);
                if let Some(e) = superseded {
                    self.retire(Retired::entry(e));
                }
                self.retire(Retired::Intent(shell));
                if !staged {
                    // Absent before the transaction and absent after this
                    // write: the slot was emptied rather than restaged.
                    self.live -= 1;
                    self.tombs += usize::from(tomb);
                    if let Some(p) = self.pending.as_mut() {
                        p.keys.remove(&key);
                    }
                }
                staged
            }
            probe => self.stage_at(probe, hash, stamp, entry),
        };
        if let Some(p) = self.pending.as_mut() {
            if staged {
                p.keys.insert(key.clone(), hash);
                p.folded.insert(key.clone());
            }
            match (present, tags) {
                (true, Some(tags)) => {
                    p.new_tags.insert(key, tags);
                }
                (false, _) => {
                    p.new_tags.remove(&key);
                }
                (true, None) => {}
            }
        }
    }

    /// Stages `new` (None: a removal) for transaction `stamp` where `probe`
    /// found the key's plain entry or its vacancy: the entry leaves the
    /// eviction queues while it is staged, a vacancy filled counts as live.
    /// Returns whether an intent was placed (see `Slots::stage`).
    fn stage_at(
        &mut self,
        probe: Probe,
        hash: u64,
        stamp: u64,
        new: Option<OwnedEntry<K, V>>,
    ) -> bool {
        match probe {
            Probe::Found(i) => {
                self.untrack(i);
                self.slots().stage(i, hash, stamp, new)
            }
            Probe::Vacant(i) => {
                let was_tomb = matches!(self.slots().view(i), View::Tomb);
                let staged = self.slots().stage(i, hash, stamp, new);
                if staged {
                    self.live += 1;
                    self.tombs -= usize::from(was_tomb);
                }
                staged
            }
        }
    }

    /// Stages this shard's part of transaction `stamp` (see `Op::Prepare`).
    fn prepare(&mut self, stamp: u64, ops: Vec<TxnOp<K, V>>, published: &Published<K, V>) {
        if let Some(stale) = self.pending.as_ref().map(|p| p.stamp) {
            // The committer finalizes (or rolls back) before it lets the
            // next transaction prepare, so this is not reached; if it were,
            // the earlier stamp is already visible.
            self.resolve_pending(stale, true);
        }
        // The transaction's net effect per key, in order of first touch.
        let mut order: Vec<K> = Vec::new();
        let mut staged: HashMap<K, (u64, Option<V>, Vec<Tag>)> = HashMap::default();
        let mut invalidated: HashSet<Tag> = HashSet::default();
        for op in ops {
            match op {
                TxnOp::Insert {
                    hash,
                    key,
                    value,
                    tags,
                } => {
                    if !staged.contains_key(&key) {
                        order.push(key.clone());
                    }
                    staged.insert(key, (hash, Some(value), tags));
                }
                TxnOp::Invalidate { hash, key } => {
                    if !staged.contains_key(&key) {
                        order.push(key.clone());
                    }
                    staged.insert(key, (hash, None, Vec::new()));
                }
                TxnOp::InvalidateTag(tag) => {
                    for (key, &hash) in self.keys_of.get(&tag).into_iter().flatten() {
                        if !staged.contains_key(key) {
                            order.push(key.clone());
                            staged.insert(key.clone(), (hash, None, Vec::new()));
                        }
                    }
                    for (_, value, tags) in staged.values_mut() {
                        if tags.contains(&tag) {
                            *value = None;
                            tags.clear();
                        }
                    }
                    invalidated.insert(tag);
                }
            }
        }
        for lease in self.leases.values_mut() {
            if lease.tags.iter().any(|t| invalidated.contains(t)) {
                lease.doomed = true;
            }
        }
        self.pending = Some(Pending {
            stamp,
            keys: HashMap::default(),
            folded: HashSet::default(),
            tags: invalidated,
            new_tags: HashMap::default(),
        });
        for key in order {
            let Some((hash, value, tags)) = staged.remove(&key) else {
                continue;
            };
            self.doom_lease(&key);
            self.reserve(published);
            let present = value.is_some();
            let entry = value.map(|v| self.new_entry(hash, key.clone(), v, None));
            let probe = self.slots().probe(hash, &key);
            let staged_here = self.stage_at(probe, hash, stamp, entry);
            if let (true, Some(p)) = (staged_here, self.pending.as_mut()) {
                p.keys.insert(key.clone(), hash);
                if present {
                    p.new_tags.insert(key, tags);
                }
            }
        }
    }

    /// Ends the pending transaction `stamp`: each intent resolves to its
    /// new value (`commit`), or back to its old one (a rollback; keys with
    /// folded later writes keep those).
    fn resolve_pending(&mut self, stamp: u64, commit: bool) {
        if self.pending.as_ref().is_none_or(|p| p.stamp != stamp) {
            return;
        }
        let Some(mut p) = self.pending.take() else {
            return;
        };
        for (key, hash) in std::mem::take(&mut p.keys) {
            let Probe::Found(i) = self.slots().probe(hash, &key) else {
                continue;
            };
            if !matches!(self.slots().view(i), View::Intent(_)) {
                continue;
            }
            let keep_new = commit || p.folded.contains(&key);
            let vacancy = self.vacancy(i);
            let tomb = matches!(vacancy, Put::Tomb);
            let (other, shell, vacant) = self.slots().resolve(i, keep_new, vacancy);
            if let Some(e) = other {
                // Committed: `e` was the value readers saw until now. Rolled
                // back: `e` was staged and never seen; nobody is told.
                if keep_new {
                    let cause = if vacant {
                        RemovalCause::Invalidated
                    } else {
                        RemovalCause::Replaced
                    };
                    self.notify(e.get(), cause);
                }
                self.retire(Retired::entry(e));
            }
            self.retire(Retired::Intent(shell));
            if vacant {
                self.live -= 1;
                self.tombs += usize::from(tomb);
                self.clear_tags(&key);
            } else {
                self.track(i);
                if keep_new {
                    if let Some(tags) = p.new_tags.remove(&key) {
                        self.set_tags(hash, &key, tags);
                    }
                }
            }
        }
        self.maintain();
    }

    /// What a slot becomes when its key goes: empty if that cannot break a
    /// probe chain (the next slot is empty), else a tombstone.
    fn vacancy(&self, i: usize) -> Put<K, V> {
        if self.slots().is_empty_at(self.slots().next(i)) {
            Put::Empty
        } else {
            Put::Tomb
        }
    }

    /// Gives `key` these tags (replacing any it had).
    fn set_tags(&mut self, hash: u64, key: &K, tags: Vec<Tag>) {
        self.clear_tags(key);
        if tags.is_empty() {
            return;
        }
        for t in &tags {
            self.keys_of
                .entry(t.clone())
                .or_default()
                .insert(key.clone(), hash);
        }
        self.tags_of.insert(key.clone(), tags.into_boxed_slice());
    }

    /// Removes `key` from the tag index.
    fn clear_tags(&mut self, key: &K) {
        if self.tags_of.is_empty() {
            return; // the common case: nothing here is tagged
        }
        if let Some(tags) = self.tags_of.remove(key) {
            for t in tags.iter() {
                if let Some(keys) = self.keys_of.get_mut(t) {
                    keys.remove(key);
                    if keys.is_empty() {
                        self.keys_of.remove(t);
                    }
                }
            }
        }
    }

    /// Whether `key`, or a value carrying `tags`, would join the pending
    /// transaction.
    fn pending_covers(&self, key: &K, tags: &[Tag]) -> bool {
        self.pending.as_ref().is_some_and(|p| p.covers(key, tags))
    }

    /// Dooms the load of `key` in flight, if any, without answering its
    /// waiters (they load afresh).
    fn doom_lease(&mut self, key: &K) {
        if self.leases.is_empty() {
            return;
        }
        if let Some(lease) = self.leases.get_mut(key) {
            lease.doomed = true;
        }
    }

    /// A new entry, in a freed entry's cell when there is one. `expiry`
    /// overrides the cache's default time to live and time to idle.
    #[inline]
    fn new_entry(
        &mut self,
        hash: u64,
        key: K,
        value: V,
        expiry: Option<Expiry>,
    ) -> OwnedEntry<K, V> {
        if expiry.is_none() && !self.extras {
            // The common case, a plain entry: no clock, no policy.
            return OwnedEntry::new(
                hash,
                key,
                value,
                Life::default(),
                false,
                &mut self.cells,
                &mut self.blocks,
            );
        }
        self.new_entry_extended(hash, key, value, expiry)
    }

    /// [`new_entry`](Self::new_entry) when an expiry is given or the
    /// cache has extras: the entry may need the extended layout.
    #[inline(never)]
    fn new_entry_extended(
        &mut self,
        hash: u64,
        key: K,
        value: V,
        expiry: Option<Expiry>,
    ) -> OwnedEntry<K, V> {
        let life = self.life(expiry);
        // Extended (eviction bookkeeping) when bounded; with a clock too
        // when it can expire.
        let bounded = self.policy.is_some();
        OwnedEntry::new(
            hash,
            key,
            value,
            life,
            bounded,
            &mut self.cells,
            &mut self.blocks,
        )
    }

    /// How long a new entry lives (no clock read when nothing expires).
    /// Called only off `new_entry`'s plain path, which has already handled
    /// "no expiry given and no extras".
    #[inline]
    fn life(&mut self, expiry: Option<Expiry>) -> Life {
        let (ttl, tti) = match expiry {
            None => (self.settings.ttl, self.settings.tti),
            Some(e) => (
                e.time_to_live().map_or(self.settings.ttl, millis),
                e.time_to_idle().map_or(self.settings.tti, millis),
            ),
        };
        if ttl == 0 && tti == 0 {
            return Life::default();
        }
        self.mortal = true;
        self.extras = true;
        let now = self.settings.clock.now_ms();
        Life {
            expires: if ttl == 0 { 0 } else { now.saturating_add(ttl) },
            idle: tti,
            now,
        }
    }

    /// The life left to the entry in slot `i`, as the expiry a write that
    /// keeps it gives its new entry (`None`: it cannot expire).
    fn life_left(&self, i: usize) -> Option<Expiry> {
        match self.slots().view(i) {
            View::Live(e) if e.mortal() => {
                let (ttl, tti) = e.life_left(self.settings.clock.now_ms())?;
                Some(Expiry::ttl(ttl).with_tti(tti))
            }
            _ => None,
        }
    }

    /// The value in slot `i` as a caller may be given it now: none if
    /// expired (an intent's staged value counts as current, see
    /// `Slots::value_at`).
    fn value_now(&self, i: usize) -> Option<&V> {
        match self.slots().view(i) {
            View::Live(e) if e.mortal() && !e.alive_at(self.settings.clock.now_ms()) => None,
            _ => self.slots().value_at(i),
        }
    }

    /// Starts tracking the entry in slot `i` for eviction (it just became
    /// a plain entry).
    fn track(&mut self, i: usize) {
        let Some(p) = self.policy.as_mut() else {
            return;
        };
        let table = self.table.as_ref().expect("an owner always has a table");
        if let View::Live(e) = table.get().view(i) {
            p.insert(i, e, weigh(&self.settings, e));
        }
    }

    /// Stops tracking the entry in slot `i` (it is about to be unlinked or
    /// staged by a transaction).
    fn untrack(&mut self, i: usize) {
        let Some(p) = self.policy.as_mut() else {
            return;
        };
        let table = self.table.as_ref().expect("an owner always has a table");
        if let View::Live(e) = table.get().view(i) {
            p.remove(e, table.get());
        }
    }

    /// Tells the listener that `e` left, and counts it.
    fn notify(&self, e: EntryRef<'_, K, V>, cause: RemovalCause) {
        match cause {
            RemovalCause::Evicted => ShardStats::bump(&self.stats.evictions),
            RemovalCause::Expired => ShardStats::bump(&self.stats.expirations),
            RemovalCause::Invalidated | RemovalCause::Replaced => {}
        }
        let Some(listener) = &self.settings.listener else {
            return;
        };
        // SAFETY: notifying is the owner's (under the token): no in-place
        // replacement runs while the reference lives.
        let value = unsafe { e.value.get() };
        let call = || {
            catch_unwind(AssertUnwindSafe(|| {
                as_closure(|| listener(&e.key, value, cause))
            }))
        };
        if let Err(payload) = call() {
            let message = panic_message(&*payload);
            tracing::warn!(%message, "removal listener panicked; the shard goes on");
        }
    }

    /// The cause for an entry that is leaving: `Expired` if it had.
    fn cause(&self, e: EntryRef<'_, K, V>, otherwise: RemovalCause) -> RemovalCause {
        if e.mortal() && !e.alive_at(self.settings.clock.now_ms()) {
            RemovalCause::Expired
        } else {
            otherwise
        }
    }

    /// After a change: evicts while over budget, sweeps a few slots for
    /// expired entries, and lets the climber look at the statistics.
    #[inline]
    fn maintain(&mut self) {
        if !self.extras {
            return;
        }
        // A bounded shard's steady state, inline: nothing can expire, no
        // observation is due and the budget holds, so `maintain_slow`
        // would only count the write and publish the weight (its call and
        // register saves were about 39 instructions of a 328-instruction
        // bounded insert: callgrind, docs/design.md).
        if let Some(p) = self.policy.as_deref() {
            if !self.mortal && self.since_observe + 1 < OBSERVE_EVERY && !p.over() {
                self.since_observe += 1;
                // Relaxed: a statistic (`Shard::weighted_size`).
                self.stats
                    .weight
                    .store(p.weight(), std::sync::atomic::Ordering::Relaxed);
                return;
            }
        }
        self.maintain_slow();
    }

    #[inline(never)]
    fn maintain_slow(&mut self) {
        if self.policy.is_none() && !self.mortal {
            return;
        }
        if self.mortal {
            self.sweep();
        }
        let Some(policy) = self.policy.as_mut() else {
            return;
        };
        self.since_observe += 1;
        if self.since_observe >= OBSERVE_EVERY {
            self.since_observe = 0;
            let (hits, misses) = self.stats.reads();
            policy.observe(hits, misses);
        }
        while let Some(p) = self.policy.as_mut().filter(|p| p.over()) {
            let table = self.table.as_ref().expect("an owner always has a table");
            let Some(i) = p.victim(table.get()) else {
                break;
            };
            self.unlink(i, RemovalCause::Evicted);
        }
        if let Some(p) = &self.policy {
            // Relaxed: a statistic (`Shard::weighted_size`).
            self.stats
                .weight
                .store(p.weight(), std::sync::atomic::Ordering::Relaxed);
        }
    }

    /// Removes expired entries among the next few slots.
    fn sweep(&mut self) {
        let now = self.settings.clock.now_ms();
        let n = self.slots().slot_count();
        for _ in 0..SWEEP.min(n) {
            let i = self.sweep % n;
            self.sweep = self.sweep.wrapping_add(1);
            if let View::Live(e) = self.slots().view(i) {
                if e.mortal() && !e.alive_at(now) {
                    self.untrack(i);
                    self.unlink(i, RemovalCause::Expired);
                }
            }
        }
    }

    /// Unlinks the plain entry in slot `i` (already untracked by the
    /// policy), tells the listener, and retires it.
    fn unlink(&mut self, i: usize, cause: RemovalCause) {
        self.live -= 1;
        let vacancy = self.vacancy(i);
        if matches!(vacancy, Put::Tomb) {
            self.tombs += 1;
        }
        match self.slots().publish(i, vacancy) {
            Was::Live(e) => {
                self.clear_tags(&e.get().key);
                let cause = self.cause(e.get(), cause);
                self.notify(e.get(), cause);
                self.retire(Retired::entry(e));
            }
            other => self.retire_was(other),
        }
    }

    fn load_begin(&mut self, hash: u64, key: K, tags: Vec<Tag>, waiter: Responder<Reply<V>>) {
        // A key in the pending transaction has no value a caller may be
        // given yet (its new value is not visible, its old one is about to
        // be replaced): the caller loads, and its value will be discarded.
        let pending = self.pending_covers(&key, &tags);
        if !pending {
            if let Probe::Found(i) = self.slots().probe(hash, &key) {
                if let Some(v) = self.value_now(i) {
                    let _ = waiter.send(Reply::Hit(v.clone()));
                    return;
                }
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
                    tags,
                    doomed: pending,
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
        if self.leases.get(&key).is_some_and(|l| l.token == token) {
            ShardStats::bump(&self.stats.loads);
        }
        match self.leases.get_mut(&key) {
            // `coherent_loom_break_lease`: deliberately broken (a doomed
            // lease installs anyway), to show the G3 model catches it.
            Some(lease)
                if lease.token == token && (!lease.doomed || cfg!(coherent_loom_break_lease)) =>
            {
                // Not doomed, so neither the key nor its tags are pending:
                // this applies now (`write` would not fold it). The lease
                // stays in the map until the value is placed, so that a
                // panic on the way ends it (`forget_lease`) instead of
                // dropping its waiters unanswered.
                let tags = std::mem::take(&mut lease.tags);
                self.put(hash, key.clone(), value.clone(), None, published);
                self.set_tags(hash, &key, tags);
                let lease = self.leases.remove(&key).expect("lease was just found");
                self.maintain();
                let mut waiters = lease.waiters.into_iter();
                let answered = catch_unwind(AssertUnwindSafe(|| {
                    for w in waiters.by_ref() {
                        let _ = w.send(Reply::Hit(value.clone()));
                    }
                }));
                if let Err(payload) = answered {
                    // The value's `Clone` panicked: the rest ask again.
                    for w in waiters {
                        let _ = w.send(Reply::Retry);
                    }
                    std::panic::resume_unwind(payload);
                }
                Reply::Installed
            }
            Some(lease) if lease.token == token => {
                tracing::debug!(token, "load raced a write; value discarded");
                ShardStats::bump(&self.stats.stale_loads);
                self.promote(key);
                Reply::Discarded
            }
            _ => Reply::Discarded,
        }
    }

    /// The message of a panic that user code raised while this owner
    /// applied a message (`Holding::apply`, `Holding::write`), to answer
    /// its caller with. A leader's `Install` or `Abandon` (`lease`) ends
    /// its lease as well: its waiters ask again.
    #[cold]
    #[inline(never)]
    pub(crate) fn panicked(
        &mut self,
        payload: Box<dyn std::any::Any + Send>,
        lease: Option<u64>,
    ) -> String {
        let message = panic_message(&*payload);
        tracing::warn!(%message, "user code panicked in a shard; only its caller is told");
        if let Some(token) = lease {
            self.forget_lease(token);
        }
        // A payload's own `Drop` could panic too; it is nobody's to hear.
        let _ = catch_unwind(AssertUnwindSafe(move || drop(payload)));
        message
    }

    /// Ends the lease of `key` and hands the load to its first waiter that
    /// is still there, under a fresh token.
    fn promote(&mut self, key: K) {
        let Some(lease) = self.leases.remove(&key) else {
            return;
        };
        let doomed = self.pending_covers(&key, &lease.tags);
        let mut waiters = lease.waiters.into_iter();
        while let Some(w) = waiters.next() {
            let token = self.token();
            if w.send(Reply::Lead(token)).is_ok() {
                self.leases.insert(
                    key,
                    Lease {
                        token,
                        tags: lease.tags,
                        doomed,
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

    #[inline]
    fn put(
        &mut self,
        hash: u64,
        key: K,
        value: V,
        expiry: Option<Expiry>,
        published: &Published<K, V>,
    ) {
        if Value::<V>::IN_PLACE && expiry.is_none() && self.in_place {
            // A word value (`value.rs`): the key's entry takes the new value
            // in place, with no new entry and nothing to retire, when the
            // new entry would be just like it (extended exactly when the
            // shard is bounded, and unable to expire). The probe hands back
            // the entry it compared, and the table's growth check waits
            // until a slot may be taken: an in-place write takes none.
            let table = self.table.as_ref().expect("an owner always has a table");
            let (probe, found) = table.get().probe_entry(hash, &key);
            if let (Probe::Found(i), Some(e)) = (probe, found) {
                if e.marks() == self.in_place_marks {
                    // SAFETY: `V` is in place, and we hold the token of the
                    // shard whose table holds `e`.
                    unsafe { e.value.replace(value) };
                    if let Some(p) = self.policy.as_mut() {
                        p.rewritten(i, e, weigh(&self.settings, e));
                    }
                    return;
                }
            }
            let probe = if self.reserve(published) {
                // Rebuilt: the slot numbers changed.
                self.slots().probe(hash, &key)
            } else {
                probe
            };
            let entry = self.new_entry(hash, key, value, expiry);
            self.place(probe, entry);
            return;
        }
        self.reserve(published);
        // The new entry first, then the probe: its stores (a write miss on
        // a reused cell, often) then complete while the probe waits for its
        // loads, instead of holding up the token release, which must drain
        // the store buffer. perf put 28% of a mixed-workload insert on that
        // release before this order.
        let entry = self.new_entry(hash, key, value, expiry);
        let probe = self.slots().probe(hash, &entry.get().key);
        self.place(probe, entry);
    }

    /// Puts `entry` where `probe` (its key's, in the current slots) says:
    /// over the key's current entry, retiring it, or into a vacant slot.
    #[inline(always)]
    fn place(&mut self, probe: Probe, entry: OwnedEntry<K, V>) {
        let slots = self.slots();
        match probe {
            Probe::Found(i) if self.extras => self.replace_extras(i, entry),
            Probe::Found(i) => {
                let was = slots.publish(i, Put::Entry(entry));
                self.retire_was(was);
            }
            Probe::Vacant(i) => {
                if let Was::Tomb = slots.publish(i, Put::Entry(entry)) {
                    self.tombs -= 1;
                }
                self.live += 1;
                if self.extras {
                    self.track(i);
                }
            }
        }
    }

    /// `put`'s replacement of the entry in slot `i` when the eviction
    /// policy or the removal listener must hear of it.
    #[inline(never)]
    fn replace_extras(&mut self, i: usize, entry: OwnedEntry<K, V>) {
        if self.policy.is_some() {
            self.replace_tracked(i, &entry);
        }
        let was = self.slots().publish(i, Put::Entry(entry));
        if let Was::Live(old) = &was {
            let cause = self.cause(old.get(), RemovalCause::Replaced);
            self.notify(old.get(), cause);
        }
        self.retire_was(was);
    }

    /// The policy's side of `new` replacing the entry in slot `i`.
    #[inline(never)]
    fn replace_tracked(&mut self, i: usize, new: &OwnedEntry<K, V>) {
        let w = weigh(&self.settings, new.get());
        let table = self.table.as_ref().expect("an owner always has a table");
        if let (Some(p), View::Live(old)) = (self.policy.as_mut(), table.get().view(i)) {
            p.replace(i, old, new.get(), w);
        }
    }

    fn remove(&mut self, hash: u64, key: &K) {
        if let Probe::Found(i) = self.slots().probe(hash, key) {
            self.untrack(i);
            // Nothing was ever placed past an empty slot on this chain since
            // the last rebuild, so if the next slot is empty the chain may
            // end here; otherwise leave a tombstone for readers to probe past.
            self.unlink(i, RemovalCause::Invalidated);
        }
    }

    /// Keeps at least a third of the slots empty after one more insert,
    /// rebuilding (bigger, or just without tombstones) when needed. Loads
    /// between 1/3 and 2/3 keep hits at about 1.5 probes; at 80% a `get`
    /// ran 40% more instructions and missed L1 50% more often, measured
    /// with cachegrind (docs/design.md). Returns whether it rebuilt (slot
    /// numbers from before no longer hold).
    #[inline(always)]
    fn reserve(&mut self, published: &Published<K, V>) -> bool {
        let used = self.live + self.tombs + 1;
        if used * 3 > self.slots().slot_count() * 2 {
            self.rebuild(published);
            return true;
        }
        false
    }

    /// Builds fresh slots with the live entries and no tombstones, sized for
    /// the live count, publishes them, and retires the old array.
    #[cold]
    #[inline(never)]
    fn rebuild(&mut self, published: &Published<K, V>) {
        let size = ((self.live + 1) * 2).next_power_of_two().max(MIN_SLOTS);
        let fresh = OwnedSlots::new(Slots::with_slots(size));
        self.slots().move_into(fresh.get());
        if let Some(p) = self.policy.as_mut() {
            // The policy names entries by slot: tell it where each went.
            let slots = fresh.get();
            for j in 0..slots.slot_count() {
                if let View::Live(e) = slots.view(j) {
                    p.moved(j, e);
                }
            }
        }
        tracing::trace!(
            from = self.slots().slot_count(),
            to = size,
            "read table rebuilt"
        );
        self.tombs = 0;
        // Release: every entry was placed before readers can see the array.
        published.publish(fresh.get());
        if let Some(old) = self.table.replace(fresh) {
            self.retire(Retired::Slots(old));
            // Sealed now, not after `BATCH` more retirements: an array is as
            // big as the table, and a cache that only grows retires nothing
            // else, so it would keep every array it outgrew (about as many
            // bytes again as the current one). A rebuild is O(n) already;
            // one more fence is nothing beside it.
            let cells = &mut self.cells;
            self.garbage
                .collect_with(&mut |batch| free_batch(cells, batch));
        }
    }

    /// Hands `item`, just unlinked, to the garbage; freed entries' cells
    /// go back to `cells`. Values are dropped here, under the token, so their
    /// `Drop` runs flagged as a closure: a cache write from it is refused
    /// (`Error::Reentrant`) instead of waiting on this very shard.
    #[inline]
    fn retire(&mut self, item: Retired<K, V>) {
        let cells = &mut self.cells;
        self.garbage
            .retire_with(item, &mut |batch| free_batch(cells, batch));
    }

    /// Retires what a slot held (entries and intents readers may hold).
    #[inline(always)]
    fn retire_was(&mut self, was: Was<K, V>) {
        match was {
            Was::Live(e) => self.retire(Retired::entry(e)),
            Was::Intent(it) => self.retire_intent(it),
            Was::Empty | Was::Tomb => {}
        }
    }

    /// Retires an intent and both its entries (off the common path).
    #[cold]
    fn retire_intent(&mut self, intent: OwnedIntent<K, V>) {
        let (new, old, shell) = intent.split();
        for e in [new, old].into_iter().flatten() {
            self.retire(Retired::entry(e));
        }
        self.retire(Retired::Intent(shell));
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

impl<K, V> Owner<K, V> {
    /// Ends the lease `token` without hashing or comparing its key (whose
    /// `Hash` or `Eq` may be what failed): its waiters are told to ask
    /// again (`Reply::Retry`), and the next to ask leads a fresh load.
    pub(crate) fn forget_lease(&mut self, token: u64) {
        let mut waiters = Vec::new();
        // `retain` visits every lease without hashing a key. A key's `Drop`
        // (run as its lease is removed) that panics strands nobody: the
        // waiters are already out, and are answered below.
        let _ = catch_unwind(AssertUnwindSafe(|| {
            self.leases.retain(|_, l| {
                if l.token != token {
                    return true;
                }
                waiters.append(&mut l.waiters);
                false
            })
        }));
        if !waiters.is_empty() {
            tracing::debug!(token, "lease ended by a panic; its waiters ask again");
        }
        for w in waiters {
            let _ = w.send(Reply::Retry);
        }
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
