//! One shard: a logical actor with a mailbox and an owner token.
//!
//! The shard is not a thread. Whoever holds its owner token is its one writer
//! for that moment: it applies the queued messages in order, then its own,
//! answering each caller once the change is visible, releases the token, and
//! looks at the mailbox again so that no message is stranded. A writer that
//! finds the token free applies its own message at once (no thread to wake,
//! no channel round trip); a plain write (`write`) that finds it taken
//! polls it a little first (the holder is most often in the middle of one
//! write); one that still finds it taken queues its message, tries the
//! token once more, and waits for its answer (spinning first: the holder is
//! running and answers within microseconds). Two writers never run inside
//! a shard at the same time, and readers never touch any of this.
//!
//! # The hand-off (why no message is stranded)
//!
//! The token and the count of queued messages share one atomic word
//! (`token.rs`). A writer that queues a message counts it in with a
//! `fetch_add` and, if that showed the token free, takes the token itself;
//! a holder releases with a `compare_exchange` that fails while anything is
//! counted, and drains what is. Both are read-modify-writes of one
//! location, so one of them comes first: either the writer sees the token
//! free or the holder sees the count. The loom models in
//! `tests/loom_handoff.rs` of this crate check this over every interleaving.

use crate::clock::Clock;
use crate::completion::{completion, Completion, Responder};
use crate::limits::{ReadCounter, ReadCounts, ShardConfig, ShardStats, Stats};
use crate::mailbox::{Full, Mailbox};
use crate::message::{Op, Reply};
use crate::owner::{in_closure, HeldFlag, Owner, Published, MIN_SLOTS};
use crate::reclaim::{self, Pin};
use crate::sync::{AtomicPtr, AtomicUsize, Ordering};
use crate::table::{Entry, Found, OwnedSlots, Slots, Visible};
use crate::tag::Tag;
use crate::token::{Held, Release, Token};
use crossbeam_utils::CachePadded;
use std::borrow::Borrow;
use std::hash::Hash;
use std::mem::ManuallyDrop;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;

mod holding;
use holding::Holding;

/// Why a message could not be applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SubmitError<T> {
    /// Called from inside an update closure running in a shard: waiting on a
    /// shard from there could wait on itself. Nothing was queued.
    Reentrant(T),
    /// The shard failed before answering: the message was dropped
    /// unapplied (only a panic outside user code, a bug, gets here; a
    /// `LoadBegin` whose own key panicked loses its answer this way). The
    /// change may or may not be applied.
    Lost,
    /// User code run by the shard for this message (its key's or value's
    /// `Hash`, `Eq`, `Clone` or `Drop`) panicked; the message is kept. The
    /// change may or may not be applied; the shard goes on serving, and no
    /// other caller sees the panic.
    Panicked(String),
    /// From [`Shard::try_submit`]: the token was taken and the mailbox full.
    /// Nothing was queued or changed.
    Full(T),
    /// The shard is closed ([`Shard::close`]): nothing was changed.
    Closed,
}

/// From [`Shard::try_with_config`]: the first table, sized for
/// `initial_capacity` entries, could not be allocated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableTooLarge {
    /// The entries the table was to have room for.
    pub entries: usize,
    /// The slots that takes (a power of two).
    pub slots: usize,
}

impl std::fmt::Display for TableTooLarge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let bytes = self.slots.checked_mul(std::mem::size_of::<usize>());
        write!(
            f,
            "a shard's first table for {} entries ({} slots, ",
            self.entries, self.slots
        )?;
        match bytes {
            Some(b) => write!(f, "{b} bytes")?,
            None => f.write_str("more bytes than a usize counts")?,
        }
        f.write_str(") could not be allocated")
    }
}

impl std::error::Error for TableTooLarge {}

/// A closed shard's refusal, or a panic the message's own user code
/// raised in the shard, as an error.
fn refused<V, T>(reply: Reply<V>) -> Result<Reply<V>, SubmitError<T>> {
    match reply {
        Reply::Closed => Err(SubmitError::Closed),
        Reply::Panicked(message) => Err(SubmitError::Panicked(message)),
        other => Ok(other),
    }
}

/// Returns `Pending` once (waking itself at once), so that a task waiting
/// for mailbox room lets the executor run others.
struct YieldNow(bool);

/// Lets the executor run other tasks once: a future that is pending on its
/// first poll (waking itself at once) and ready on the next. For async code
/// waiting on a condition it polls, without depending on a runtime.
pub async fn yield_now() {
    YieldNow(false).await;
}

impl std::future::Future for YieldNow {
    type Output = ();

    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<()> {
        if self.0 {
            return std::task::Poll::Ready(());
        }
        self.0 = true;
        cx.waker().wake_by_ref();
        std::task::Poll::Pending
    }
}

/// Counts one waiting caller while it lives (see [`Shard::waiter`]).
#[derive(Debug)]
pub struct WaiterGuard<'a>(&'a AtomicUsize);

impl Drop for WaiterGuard<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A message with where its answer goes.
struct Envelope<K, V> {
    hash: u64,
    op: Op<K, V>,
    reply: Option<Responder<Reply<V>>>,
}

/// What `get` reads besides the table, kept on the published pointer's
/// cache line: whether to count reads for eviction, the clock expiry is
/// measured against, and where reads are counted.
struct ReadSide<K, V> {
    table: Published<K, V>,
    bounded: bool,
    clock: Clock,
    /// Where this shard's reads are counted.
    reads: ReadCounter,
    /// Whether reads are counted (`ShardConfig::count_reads`).
    count: bool,
    stats: Arc<ShardStats>,
}

impl<K, V> std::ops::Deref for ReadSide<K, V> {
    type Target = Published<K, V>;
    fn deref(&self) -> &Published<K, V> {
        &self.table
    }
}

/// How many times a writer that found the token held polls it before it
/// queues its write ([`Shard::take_idle_polling`]). Under loom, 1: one more
/// try, which is all a model needs to cover the path.
const TAKE_POLLS: u32 = if cfg!(coherent_loom) { 1 } else { 64 };

/// One shard of the cache. See the module docs for the protocol.
/// `repr(C)`: `slots` (readers) on its own lines, then the token word and
/// the owner's hot fields together (`token.rs`, `owner/mod.rs`).
#[repr(C)]
pub struct Shard<K, V> {
    /// The slot array readers see (owned by the owner; replaced only when
    /// it rebuilds the table). Padded to its own cache line: writers update
    /// the counters below on every write, and readers must not pay for that.
    slots: CachePadded<ReadSide<K, V>>,
    /// The owner token (with the count of queued messages) and the state
    /// only its holder may touch.
    owner: Token<Owner<K, V>>,
    /// Messages from writers that found the token taken.
    mailbox: Mailbox<Envelope<K, V>>,
    /// Callers waiting for an answer right now (diagnostics and tests).
    waiting: AtomicUsize,
    /// Live entries, as of the owner's last change (for `len`).
    len: AtomicUsize,
}

impl<K, V> std::fmt::Debug for Shard<K, V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shard")
            .field("mailbox", &self.mailbox)
            .field("waiting", &self.waiting())
            .finish_non_exhaustive()
    }
}

impl<K, V> Shard<K, V> {
    /// Callers waiting for an answer from this shard right now.
    pub fn waiting(&self) -> usize {
        self.waiting.load(Ordering::Relaxed)
    }

    /// Counts the caller as waiting on this shard until the guard is
    /// dropped (for callers that wait on a [`Completion`] themselves).
    pub fn waiter(&self) -> WaiterGuard<'_> {
        // Relaxed: a statistic; it orders nothing.
        self.waiting.fetch_add(1, Ordering::Relaxed);
        WaiterGuard(&self.waiting)
    }

    /// Live entries, as of the last change applied.
    pub fn len(&self) -> usize {
        // Relaxed: a statistic; it orders nothing.
        self.len.load(Ordering::Relaxed)
    }

    /// Whether the shard holds no entry, as of the last change applied.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Messages queued in the mailbox right now (counted in and not yet
    /// taken out by a holder).
    pub fn queued(&self) -> usize {
        self.owner.queued()
    }

    /// Takes the owner token if it is free. A holder that panicked outside
    /// any user closure (those are caught) released it on the way out; the
    /// table is still consistent, since every change is one slot store.
    fn try_own(&self) -> Option<Held<'_, Owner<K, V>>> {
        self.owner.take()
    }
}

impl<K, V> Shard<K, V>
where
    K: Hash + Eq + Clone,
    V: Clone,
{
    /// A shard whose mailbox holds `mailbox_capacity` messages and whose
    /// read table starts with room for about `initial_capacity` entries;
    /// unbounded, nothing expires.
    pub fn new(mailbox_capacity: usize, initial_capacity: usize) -> Self {
        Self::with_config(ShardConfig {
            mailbox_capacity,
            initial_capacity,
            ..ShardConfig::default()
        })
    }

    /// A shard configured by `config` (capacity, expiry, listener).
    ///
    /// # Panics
    /// If the first table, sized by `config.initial_capacity`, cannot be
    /// allocated; [`try_with_config`](Self::try_with_config) says so
    /// instead. And as `try_with_config` does for the mailbox.
    pub fn with_config(config: ShardConfig<K, V>) -> Self {
        Self::try_with_config(config).unwrap_or_else(|e| panic!("{e}"))
    }

    /// A shard configured by `config`, or [`TableTooLarge`] if the memory
    /// for a first table with room for `config.initial_capacity` entries
    /// cannot be had (its size does not fit in `isize`, or the allocator
    /// has none). The table is zeroed memory, taken from the system as
    /// its slots are used.
    ///
    /// The mailbox is allocated whole, [`mailbox_bytes`](Self::mailbox_bytes)
    /// of it, when a writer first finds the shard busy; a capacity too
    /// large for crossbeam to lay out panics or aborts then, so bound it
    /// first (the `coherent` builder refuses more than 65,536 messages a
    /// shard, and more than 1 GiB of mailboxes in all).
    ///
    /// ```
    /// use coherent_shard::{Shard, ShardConfig};
    /// let config = ShardConfig { initial_capacity: usize::MAX / 2, ..ShardConfig::default() };
    /// let e = Shard::<u64, u64>::try_with_config(config).unwrap_err();
    /// assert!(e.to_string().contains("could not be allocated"), "{e}");
    /// ```
    pub fn try_with_config(config: ShardConfig<K, V>) -> Result<Self, TableTooLarge> {
        // Room for `initial_capacity` at half load (growth comes at 2/3).
        let slots = (config.initial_capacity.saturating_mul(2))
            .checked_next_power_of_two()
            .unwrap_or(1 << (usize::BITS - 1))
            .max(MIN_SLOTS);
        let table = OwnedSlots::new(Slots::try_with_slots(slots).ok_or(TableTooLarge {
            entries: config.initial_capacity,
            slots,
        })?);
        let (reads, index) = config
            .reads
            .clone()
            .unwrap_or_else(|| (ReadCounts::new(1), 0));
        let stats = Arc::new(ShardStats::new(reads.clone(), index));
        Ok(Self {
            slots: CachePadded::new(ReadSide {
                table: Published::new(table.get()),
                bounded: config.budget.is_some(),
                clock: config.clock.clone(),
                reads: reads.counter(index),
                count: config.count_reads,
                stats: stats.clone(),
            }),
            owner: Token::new(Owner::new(table, &config, stats)),
            mailbox: Mailbox::bounded(config.mailbox_capacity.max(1)),
            waiting: AtomicUsize::new(0),
            len: AtomicUsize::new(0),
        })
    }

    /// The bytes a mailbox of `capacity` messages takes once allocated:
    /// a slot (a message and crossbeam's stamp) per message.
    pub fn mailbox_bytes(capacity: usize) -> usize {
        let slot = std::mem::size_of::<Envelope<K, V>>() + std::mem::size_of::<usize>();
        capacity.saturating_mul(slot)
    }

    /// This shard's statistics so far.
    pub fn stats(&self) -> Stats {
        self.slots.stats.snapshot()
    }

    /// The total weight of the entries (bounded shards), or their number.
    pub fn weighted_size(&self) -> u64 {
        if self.slots.bounded {
            // Relaxed: a statistic the owner stores after each change.
            self.slots.stats.weight.load(Ordering::Relaxed)
        } else {
            self.len() as u64
        }
    }

    /// Reads `key`: a pin, one pointer load, a probe, a clone. Never
    /// waits, and writes nothing any other thread reads on its own path.
    /// `visible` says which transactions it sees (the cache's watermark,
    /// loaded only if the key has a transaction's intent).
    ///
    /// Every way off the common path is one call at the end that takes the
    /// pin along, so nothing here lives across a call. (The register saves
    /// stay all the same: the probe loop keeps more values live than there
    /// are caller-saved registers.)
    #[inline]
    pub fn get<Q>(&self, hash: u64, key: &Q, visible: Visible<'_>) -> Option<V>
    where
        K: Borrow<Q>,
        Q: Eq + ?Sized,
    {
        let Some(pin) = reclaim::try_pin() else {
            return self.get_pinning(hash, key, visible);
        };
        let read = &*self.slots;
        // SAFETY: we are pinned. The published array is always a live one
        // (set in `new`, replaced only by `Owner::rebuild` and `close`, which
        // retire the old one to be freed only after every reader pinned
        // before its replacement has unpinned: reclaim.rs). The owner frees
        // the current one only when the shard drops, and `&self` borrows
        // the shard. The Acquire load inside pairs with the owner's Release
        // publication, so the entries placed in the array are visible.
        let slots = unsafe { read.table.read() };
        match Slots::find(slots, hash, key) {
            // The common case, a plain entry of a shard that does not count
            // reads: nothing to check, nothing to record.
            Found::Entry(e) if e.extra().is_none() && !read.count => {
                let value = e.value.read();
                drop(pin);
                Some(value)
            }
            // A bounded shard's entry that cannot expire: nothing to check
            // against the clock; it marks itself read and the read is
            // counted, here rather than in `get_rest`, whose call and
            // register saves were about a third of a bounded `get`'s
            // instructions (docs/design.md, "The bounded `get` and the
            // bounded write").
            Found::Entry(e) if !e.mortal() => {
                if let Some(x) = e.extra() {
                    x.count_read();
                }
                let value = e.value.read();
                drop(pin);
                if read.count {
                    read.reads.count(true);
                }
                Some(value)
            }
            found => Self::get_rest(pin, read, slots, hash, key, visible, found),
        }
    }

    /// [`get`](Self::get) for a thread that `try_pin` did not pin: its
    /// first read, the symmetric fences, or a thread being torn down.
    #[cold]
    #[inline(never)]
    fn get_pinning<Q>(&self, hash: u64, key: &Q, visible: Visible<'_>) -> Option<V>
    where
        K: Borrow<Q>,
        Q: Eq + ?Sized,
    {
        let pin = reclaim::pin();
        let read = &*self.slots;
        // SAFETY: as in `get`.
        let slots = unsafe { read.table.read() };
        let found = Slots::find(slots, hash, key);
        Self::get_rest(pin, read, slots, hash, key, visible, found)
    }

    /// The rest of [`get`](Self::get), out of line so that the common
    /// case keeps its registers: a chain that goes on past an untagged
    /// entry or an intent, a miss, an entry that can expire or that the
    /// eviction policy watches, a shard that counts reads. `pin` is the
    /// caller's (`slots` and `found` are valid while it stands); it ends
    /// here, after the clone.
    #[inline(never)]
    fn get_rest<Q>(
        pin: Pin,
        read: &ReadSide<K, V>,
        slots: &[AtomicPtr<Entry<K, V>>],
        hash: u64,
        key: &Q,
        visible: Visible<'_>,
        found: Found<'_, K, V>,
    ) -> Option<V>
    where
        K: Borrow<Q>,
        Q: Eq + ?Sized,
    {
        let found = match found {
            Found::Entry(e) => Some(e),
            Found::Absent => None,
            Found::Rest(i) => Slots::find_from(slots, i, hash, key, visible),
        };
        let value = match found {
            Some(e) if e.extra().is_none() => Some(e.value.read()),
            Some(e) => {
                // Checked against the clock only when the entry can expire.
                let now = if e.mortal() { read.clock.now_ms() } else { 0 };
                e.alive_at(now).then(|| {
                    e.touch(now);
                    e.value.read()
                })
            }
            None => None,
        };
        drop(pin);
        if read.count {
            read.reads.count(value.is_some());
        }
        value
    }

    /// Applies `op` and returns once its effect is visible to every `get`
    /// that starts afterwards.
    pub fn submit(&self, hash: u64, op: Op<K, V>) -> Result<Reply<V>, SubmitError<Op<K, V>>> {
        self.submit_or_not(hash, op, true)
    }

    /// [`submit`](Self::submit), except that it never waits for room in the
    /// mailbox: when the token is taken and the mailbox is full it returns
    /// [`SubmitError::Full`] with `op`, having queued and changed nothing.
    /// Once `op` is applied or queued, it waits for the answer like
    /// `submit` (an answer comes once the owner reaches it).
    pub fn try_submit(&self, hash: u64, op: Op<K, V>) -> Result<Reply<V>, SubmitError<Op<K, V>>> {
        self.submit_or_not(hash, op, false)
    }

    /// `submit` (`wait_for_room`) or `try_submit`.
    fn submit_or_not(
        &self,
        hash: u64,
        op: Op<K, V>,
        wait_for_room: bool,
    ) -> Result<Reply<V>, SubmitError<Op<K, V>>> {
        if in_closure() {
            return Err(SubmitError::Reentrant(op));
        }
        if let Some(owner) = self.try_own() {
            return refused(
                self.serve(owner, Some((hash, op)))
                    .ok_or(SubmitError::Lost)?,
            );
        }
        let (tx, rx) = completion();
        let envelope = Envelope {
            hash,
            op,
            reply: Some(tx),
        };
        if wait_for_room {
            self.mailbox.push(envelope);
        } else if let Err(Full(envelope)) = self.mailbox.try_push(envelope) {
            return Err(SubmitError::Full(envelope.op));
        }
        self.after_push();
        self.wait(rx)
    }

    /// Sets `key` to `value` (`Some`) or removes it (`None`), like
    /// `submit` with [`Op::Insert`] or [`Op::Invalidate`], and returns once
    /// the change is visible; `Ok(Some(stamp))` if it joined a pending
    /// transaction, and is visible once the cache's watermark reaches
    /// `stamp`. When the token is free and nothing is queued (the common
    /// case) the write is applied at once, without building a message.
    #[inline]
    pub fn write(
        &self,
        hash: u64,
        key: K,
        value: Option<V>,
    ) -> Result<Option<u64>, SubmitError<Op<K, V>>> {
        if !in_closure() {
            if let Some(owner) = self.take_idle_polling() {
                return match self.write_idle(owner, hash, key, value) {
                    Ok(stamp) => Ok(stamp),
                    Err(None) => Err(SubmitError::Closed),
                    Err(Some(message)) => Err(SubmitError::Panicked(*message)),
                };
            }
        }
        let op = match value {
            Some(value) => Op::Insert { key, value },
            None => Op::Invalidate { key },
        };
        match self.submit(hash, op)? {
            Reply::DoneAt(stamp) => Ok(Some(stamp)),
            _ => Ok(None),
        }
    }

    /// The async form of [`submit`](Self::submit). If the future is dropped
    /// after the message was queued, the message is still applied.
    pub async fn submit_async(
        &self,
        hash: u64,
        op: Op<K, V>,
    ) -> Result<Reply<V>, SubmitError<Op<K, V>>> {
        if in_closure() {
            return Err(SubmitError::Reentrant(op));
        }
        if let Some(owner) = self.try_own() {
            return refused(
                self.serve(owner, Some((hash, op)))
                    .ok_or(SubmitError::Lost)?,
            );
        }
        let (tx, rx) = completion();
        let mut envelope = Envelope {
            hash,
            op,
            reply: Some(tx),
        };
        // Backpressure without blocking the executor: while the mailbox is
        // full, help drain it if the token is free, else let other tasks run.
        loop {
            match self.mailbox.try_push(envelope) {
                Ok(()) => break,
                Err(Full(back)) => {
                    envelope = back;
                    // The guard must not live across the await below.
                    let helped = match self.try_own() {
                        Some(owner) => {
                            self.serve(owner, None);
                            true
                        }
                        None => false,
                    };
                    if !helped {
                        YieldNow(false).await;
                    }
                }
            }
        }
        // No await point between the push and this hand-off, so a dropped
        // future cannot skip it.
        self.after_push();
        let _waiting = self.waiter();
        refused(rx.await.ok_or(SubmitError::Lost)?)
    }

    /// Closes the shard once every message queued before this one is
    /// applied and answered: answers every caller waiting on a load here
    /// with [`Reply::Closed`], drops every entry (readers still reading
    /// one are safe: it is retired, not freed), and refuses every later
    /// message with [`SubmitError::Closed`] (a `get` finds nothing).
    /// Closing a closed shard does nothing.
    pub fn close(&self) -> Result<(), SubmitError<Op<K, V>>> {
        self.submit(0, Op::Close).map(drop)
    }

    /// Starts a load of `key`: the returned completion answers `Hit` (the
    /// value is there, or another caller's load brought it) or `Lead` (run
    /// the loader and `Install` with the token). `tags` are the tags the
    /// loaded value will carry (invalidating one dooms the load).
    pub fn load_begin(
        &self,
        hash: u64,
        key: K,
        tags: Vec<Tag>,
    ) -> Result<Completion<Reply<V>>, SubmitError<K>> {
        if in_closure() {
            return Err(SubmitError::Reentrant(key));
        }
        let (tx, rx) = completion();
        self.send_oneway(
            hash,
            Op::LoadBegin {
                key,
                tags,
                waiter: tx,
            },
        );
        Ok(rx)
    }

    /// Applies `op` without waiting for its answer (used to abandon a load
    /// from a destructor, where nobody could wait).
    pub fn send_oneway(&self, hash: u64, op: Op<K, V>) {
        if let Some(owner) = self.try_own() {
            self.serve(owner, Some((hash, op)));
            return;
        }
        self.mailbox.push(Envelope {
            hash,
            op,
            reply: None,
        });
        self.after_push();
    }

    fn wait(&self, rx: Completion<Reply<V>>) -> Result<Reply<V>, SubmitError<Op<K, V>>> {
        let _waiting = self.waiter();
        refused(rx.wait().ok_or(SubmitError::Lost)?)
    }

    /// The writer's half of the hand-off: after a push, count the message
    /// in; if the token was free, take it and drain (module docs).
    fn after_push(&self) {
        if let Some(owner) = self.owner.count_in() {
            self.serve(owner, None);
        }
    }

    /// Runs as the owner: drains the mailbox, applies `own` (whose answer is
    /// returned rather than sent), and releases the token, draining again
    /// for as long as the release finds messages counted.
    fn serve(
        &self,
        owner: Held<'_, Owner<K, V>>,
        own: Option<(u64, Op<K, V>)>,
    ) -> Option<Reply<V>> {
        let queued = owner.queued();
        let mut holding = Holding::new(self, owner);
        // Queued messages first: one of them may be this thread's own
        // earlier one-way message, which must not be overtaken.
        if queued > 0 {
            let applied = holding.drain(queued);
            tracing::trace!(applied, "shard drained its mailbox");
        }
        let answer = own.and_then(|(hash, op)| holding.apply(hash, op));
        holding.release();
        answer
    }

    /// Takes the token idle, polling it a little while another writer
    /// holds it: that holder is most often in the middle of one write,
    /// tens of nanoseconds, where queuing costs this writer about a
    /// microsecond (an answer slot, the mailbox, the holder's hand-back)
    /// and the holder the time to apply it (docs/design.md, "Sharing the
    /// heavy fence, and polling a held token"). Polls by plain loads, so that the holder keeps its
    /// line; gives up after [`TAKE_POLLS`], or at once if messages are
    /// queued (they go first).
    #[inline]
    fn take_idle_polling(&self) -> Option<Held<'_, Owner<K, V>>> {
        // The token biased to this thread: no locked instruction (`token.rs`).
        if let Some(owner) = self.owner.take_biased() {
            return Some(owner);
        }
        if let Some(owner) = self.owner.take_idle() {
            return Some(owner);
        }
        self.take_idle_polled()
    }

    /// The polling half of [`take_idle_polling`](Self::take_idle_polling).
    #[cold]
    #[inline(never)]
    fn take_idle_polled(&self) -> Option<Held<'_, Owner<K, V>>> {
        for _ in 0..TAKE_POLLS {
            crate::sync::spin_loop();
            match self.owner.looks_idle() {
                Some(true) => {
                    if let Some(owner) = self.owner.take_idle() {
                        return Some(owner);
                    }
                }
                Some(false) => {}
                None => return None,
            }
        }
        None
    }

    /// [`write`](Self::write) holding a token that was taken idle, so with
    /// nothing to drain first: the common write, kept free of the drain
    /// loop and of any answer bigger than two words. `Err(None)`: the shard
    /// is closed; `Err(Some(message))`: the write's key or value panicked.
    // A thin `Box<String>` keeps the answer at two words, returned in
    // registers; a `String` would make it four, returned through memory.
    #[allow(clippy::box_collection)]
    #[inline(always)]
    fn write_idle(
        &self,
        owner: Held<'_, Owner<K, V>>,
        hash: u64,
        key: K,
        value: Option<V>,
    ) -> Result<Option<u64>, Option<Box<String>>> {
        let mut holding = Holding::new(self, owner);
        let answer = holding.write(hash, key, value);
        holding.release();
        answer
    }
}

#[cfg(all(test, not(coherent_loom)))]
mod tests;
