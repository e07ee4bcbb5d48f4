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
/// the owner's hot fields together (`token.rs`, `owner.rs`).
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
    /// are caller-saved registers; docs/design.md, "A leaner `get`".)
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

/// The token held. Every message is applied under `catch_unwind`: a panic
/// of user code run for it (a key's or value's `Hash`, `Eq`, `Clone` or
/// `Drop`; closures are caught closer still) answers that message's caller
/// with the panic, and the holder goes on with the next message (G6,
/// docs/guarantees.md). The clean-up in `drop` is for a panic outside user
/// code (a bug): then the queued messages are failed rather than stranded,
/// each caller gets `Lost`, and the leases their loads held end.
struct Holding<'a, K, V> {
    shard: &'a Shard<K, V>,
    /// Taken out only by `release` (which then forgets `self`) or `drop`.
    owner: ManuallyDrop<Held<'a, Owner<K, V>>>,
    /// Raised while the token is held: a write from a key's or value's
    /// `Drop` run by the owner is refused, not deadlocked (`HeldFlag`).
    flag: HeldFlag,
}

impl<'a, K, V> Holding<'a, K, V>
where
    K: Hash + Eq + Clone,
    V: Clone,
{
    fn new(shard: &'a Shard<K, V>, owner: Held<'a, Owner<K, V>>) -> Self {
        Self {
            shard,
            owner: ManuallyDrop::new(owner),
            flag: HeldFlag::raise::<K, V>(),
        }
    }

    fn owner(&mut self) -> &mut Owner<K, V> {
        &mut self.owner
    }

    /// Releases the token, draining first for as long as the release finds
    /// messages counted (out of line: the common release finds none).
    #[inline]
    fn release(self) {
        let mut this = ManuallyDrop::new(self);
        // SAFETY: `this` is never dropped, so `owner` is taken out once.
        let owner = unsafe { ManuallyDrop::take(&mut this.owner) };
        // Every drop under the token is done; a release runs no user code.
        this.flag.lower();
        if let Release::Queued(owner, queued) = owner.release() {
            Holding::new(this.shard, owner).drain_and_release(queued);
        }
    }

    /// The rest of [`release`](Self::release): messages were counted in
    /// while the token was held.
    #[cold]
    #[inline(never)]
    fn drain_and_release(mut self, mut queued: usize) {
        let mut applied = 0;
        loop {
            applied += self.drain(queued);
            let mut this = ManuallyDrop::new(self);
            // SAFETY: as in `release`.
            let owner = unsafe { ManuallyDrop::take(&mut this.owner) };
            this.flag.lower();
            match owner.release() {
                Release::Done => break,
                Release::Queued(owner, more) => {
                    self = Holding::new(this.shard, owner);
                    queued = more;
                }
            }
        }
        tracing::trace!(applied, "shard drained its mailbox");
    }

    /// Applies one message as the owner. A panic of the user code it runs
    /// is caught here and becomes its answer (`Reply::Panicked`); if the
    /// message was a leader's `Install` or `Abandon`, its lease ends too,
    /// so no waiter is left on a load that cannot finish.
    fn apply(&mut self, hash: u64, op: Op<K, V>) -> Option<Reply<V>> {
        let shard = self.shard;
        let owner = self.owner();
        let before = owner.len();
        let lease = op.lease_token();
        let answer = match catch_unwind(AssertUnwindSafe(|| owner.apply(hash, op, &shard.slots))) {
            Ok(answer) => answer,
            Err(payload) => Some(Reply::Panicked(owner.panicked(payload, lease))),
        };
        if owner.len() != before {
            shard.len.store(owner.len(), Ordering::Relaxed);
        }
        answer
    }

    /// A plain insert (`Some`) or invalidation (`None`) applied by the
    /// holder itself, a panic caught as in [`apply`](Self::apply); errors
    /// as in [`Shard::write_idle`].
    #[allow(clippy::box_collection)] // as in `Shard::write_idle`
    #[inline(always)]
    fn write(
        &mut self,
        hash: u64,
        key: K,
        value: Option<V>,
    ) -> Result<Option<u64>, Option<Box<String>>> {
        let shard = self.shard;
        let owner = self.owner();
        if owner.is_closed() {
            return Err(None);
        }
        let before = owner.len();
        let written = catch_unwind(AssertUnwindSafe(|| match value {
            Some(value) => owner.insert(hash, key, value, &shard.slots),
            None => owner.write(hash, key, None, None, None, &shard.slots),
        }));
        // Only on a change: a replacing write leaves `len`'s cache line
        // alone.
        if owner.len() != before {
            shard.len.store(owner.len(), Ordering::Relaxed);
        }
        written.map_err(|payload| Some(Box::new(owner.panicked(payload, None))))
    }

    /// Takes out and applies `queued` counted messages.
    fn drain(&mut self, queued: usize) -> usize {
        for _ in 0..queued {
            let Some(Envelope {
                hash,
                op,
                mut reply,
            }) = self.take_out()
            else {
                return 0;
            };
            if cfg!(coherent_loom_break_ack) && matches!(op, Op::Insert { .. }) {
                // Deliberately broken: a queued write is acknowledged before
                // it is applied (seed 003's incident), to show that the G1
                // model catches it (docs/guarantees.md).
                if let Some(early) = reply.take() {
                    let _ = early.send(Reply::Done);
                }
            }
            let answer = self.apply(hash, op);
            if let (Some(reply), Some(answer)) = (reply, answer) {
                // The caller may have gone away (a dropped future): fine,
                // though the answer then drops here, and a value's `Drop`
                // may panic; that panic is nobody's to hear.
                let _ = catch_unwind(AssertUnwindSafe(|| {
                    let _ = reply.send(answer);
                }));
            }
        }
        queued
    }

    /// One counted message out of the queue.
    fn take_out(&self) -> Option<Envelope<K, V>> {
        let owner = &self.owner;
        // A counted message was pushed before it was counted, and the count
        // was read with Acquire: the queue has it.
        let envelope = self.shard.mailbox.pop();
        debug_assert!(envelope.is_some(), "a counted message is queued");
        if envelope.is_some() {
            owner.count_out();
        }
        envelope
    }
}

impl<K, V> Drop for Holding<'_, K, V> {
    #[inline]
    fn drop(&mut self) {
        // Reached only when unwinding: the normal path releases (and
        // forgets `self`).
        // SAFETY: `drop` runs once and `owner` is not used after it.
        let owner = unsafe { ManuallyDrop::take(&mut self.owner) };
        // The failed messages' keys and values drop under the token too.
        self.fail_queued(owner);
        self.flag.lower();
    }
}

impl<'a, K, V> Holding<'a, K, V> {
    /// Fails every queued message (each caller gets `Lost`) and releases
    /// the token: the way out when a panic escapes the owner.
    #[cold]
    #[inline(never)]
    fn fail_queued(&self, mut owner: Held<'a, Owner<K, V>>) {
        loop {
            for _ in 0..owner.queued() {
                match self.shard.mailbox.pop() {
                    Some(envelope) => {
                        owner.count_out();
                        // A leader's `Install` or `Abandon` failed here
                        // would leave its waiters on a lease nobody ends.
                        if let Some(token) = envelope.op.lease_token() {
                            owner.forget_lease(token);
                        }
                        drop(envelope); // its responder wakes the caller with `Lost`
                    }
                    None => break,
                }
            }
            match owner.release() {
                Release::Done => return,
                Release::Queued(again, _) => owner = again,
            }
        }
    }
}

#[cfg(all(test, not(coherent_loom)))]
mod tests {
    use super::*;
    use std::sync::Barrier;

    fn h(k: u64) -> u64 {
        // Tests choose hashes directly: collisions on purpose.
        k.wrapping_mul(0x9E37_79B9_7F4A_7C15)
    }

    /// Every cell the shard's owner has in use holds an entry it still
    /// reaches (`Owner::assert_no_cell_lost`): no path dropped an entry
    /// instead of retiring it. Each test below ends with it.
    fn assert_no_cell_lost<K, V>(s: &Shard<K, V>)
    where
        K: Hash + Eq + Clone + Send + Sync + 'static,
        V: Clone + Send + Sync + 'static,
    {
        s.owner
            .take()
            .expect("nobody else holds the token")
            .assert_no_cell_lost();
    }

    #[test]
    fn insert_get_invalidate_round_trip() {
        let s: Shard<u64, u64> = Shard::new(8, 0);
        assert_eq!(s.get(h(1), &1, Visible::At(0)), None);
        assert_eq!(
            s.submit(h(1), Op::Insert { key: 1, value: 10 }).unwrap(),
            Reply::Done
        );
        assert_eq!(s.get(h(1), &1, Visible::At(0)), Some(10));
        assert_eq!(s.len(), 1);
        s.submit(h(1), Op::Invalidate { key: 1 }).unwrap();
        assert_eq!(s.get(h(1), &1, Visible::At(0)), None);
        assert!(s.is_empty());
        assert_no_cell_lost(&s);
    }

    /// `(cells out, retired entries waiting)` of `s`'s owner.
    fn owner_counts<K, V>(s: &Shard<K, V>) -> (usize, usize)
    where
        K: Hash + Eq + Clone + Send + Sync + 'static,
        V: Clone + Send + Sync + 'static,
    {
        let owner = s.owner.take().expect("nobody else holds the token");
        (owner.cells_out(), owner.garbage_pending())
    }

    #[test]
    fn a_word_value_is_replaced_in_place_and_any_other_by_a_new_entry() {
        // A word (`value.rs`): no new cell, nothing retired.
        let s: Shard<u64, u64> = Shard::new(8, 0);
        s.write(h(1), 1, Some(10)).unwrap();
        let first = owner_counts(&s);
        for v in 11..=500 {
            s.write(h(1), 1, Some(v)).unwrap();
            assert_eq!(s.get(h(1), &1, Visible::At(0)), Some(v));
        }
        assert_eq!(first, (1, 0));
        if crate::value::Value::<u64>::IN_PLACE {
            assert_eq!(owner_counts(&s), (1, 0), "replaced in place");
        }
        // An entry that can expire is not plain: it is replaced by a new
        // entry, the old one retired.
        s.submit(
            h(1),
            Op::InsertExpiring {
                key: 1,
                value: 7,
                tags: None,
                expiry: crate::Expiry::ttl(std::time::Duration::from_secs(3600)),
            },
        )
        .unwrap();
        let (_, retired) = owner_counts(&s);
        s.write(h(1), 1, Some(8)).unwrap();
        assert_eq!(
            owner_counts(&s).1,
            retired + 1,
            "the expiring entry retired"
        );
        assert_eq!(s.get(h(1), &1, Visible::At(0)), Some(8));
        s.write(h(1), 1, Some(9)).unwrap();
        assert_eq!(s.get(h(1), &1, Visible::At(0)), Some(9));
        if crate::value::Value::<u64>::IN_PLACE {
            assert_eq!(owner_counts(&s).1, retired + 1, "plain again: in place");
        }
        assert_no_cell_lost(&s);
        // Bounded, weighed by value: in place too, and the new weight
        // counts against the budget.
        let b: Shard<u64, u64> = Shard::with_config(ShardConfig {
            budget: Some(100),
            weigher: Some(Arc::new(|_: &u64, v: &u64| *v as u32)),
            ..ShardConfig::default()
        });
        b.write(h(1), 1, Some(10)).unwrap();
        b.write(h(2), 2, Some(20)).unwrap();
        assert_eq!(b.weighted_size(), 30);
        let (cells, retired) = owner_counts(&b);
        b.write(h(1), 1, Some(70)).unwrap();
        assert_eq!(b.weighted_size(), 90);
        assert_eq!(b.get(h(1), &1, Visible::At(0)), Some(70));
        if crate::value::Value::<u64>::IN_PLACE {
            assert_eq!(owner_counts(&b), (cells, retired), "replaced in place");
        }
        // Over the budget now: something is evicted.
        b.write(h(1), 1, Some(90)).unwrap();
        assert!(b.weighted_size() <= 100, "{}", b.weighted_size());
        assert!(b.len() < 2);
        assert_no_cell_lost(&b);
        // Not a word: every replacement is a new entry, the old retired.
        let t: Shard<u64, String> = Shard::new(8, 0);
        t.write(h(1), 1, Some("a".into())).unwrap();
        for v in 0..5 {
            t.write(h(1), 1, Some(v.to_string())).unwrap();
        }
        assert_eq!(owner_counts(&t).1, 5);
        assert_eq!(t.get(h(1), &1, Visible::At(0)).as_deref(), Some("4"));
        assert_no_cell_lost(&t);
    }

    #[test]
    fn colliding_keys_survive_removals_and_growth() {
        let s: Shard<u64, u64> = Shard::new(8, 0);
        // Every key has the same hash: one long probe chain.
        for k in 0..200 {
            s.submit(
                7,
                Op::Insert {
                    key: k,
                    value: k * 2,
                },
            )
            .unwrap();
        }
        for k in (0..200).step_by(2) {
            s.submit(7, Op::Invalidate { key: k }).unwrap();
        }
        for k in 0..200 {
            let want = (k % 2 == 1).then_some(k * 2);
            assert_eq!(s.get(7, &k, Visible::At(0)), want, "key {k}");
        }
        // Reinsert over tombstones, then grow well past the first table.
        for k in 0..2000 {
            s.submit(
                h(k),
                Op::Insert {
                    key: k + 1000,
                    value: k,
                },
            )
            .unwrap();
        }
        for k in 0..2000 {
            assert_eq!(s.get(h(k), &(k + 1000), Visible::At(0)), Some(k));
        }
        assert_eq!(s.len(), 100 + 2000);
        assert_no_cell_lost(&s);
    }

    #[test]
    fn churn_does_not_grow_the_table_without_bound() {
        let s: Shard<u64, u64> = Shard::new(8, 0);
        for k in 0..100_000u64 {
            s.submit(h(k), Op::Insert { key: k, value: k }).unwrap();
            s.submit(h(k), Op::Invalidate { key: k }).unwrap();
        }
        assert!(s.is_empty());
        let owner = s.owner.take().expect("nobody else holds the token");
        assert!(
            owner.slots().slot_count() <= 64,
            "tombstones were not cleaned"
        );
        // 100,000 entries were unlinked; all but the last few batches are
        // freed (a reader on another test's thread can hold back a batch or
        // two, never most of them).
        assert!(
            owner.garbage_pending() < 10 * crate::reclaim::BATCH,
            "unlinked entries are not being freed: {}",
            owner.garbage_pending()
        );
        owner.assert_no_cell_lost();
    }

    #[test]
    fn update_panic_changes_nothing_and_shard_keeps_serving() {
        let s: Shard<u64, u64> = Shard::new(8, 0);
        s.submit(h(1), Op::Insert { key: 1, value: 1 }).unwrap();
        let r = s
            .submit(
                h(1),
                Op::Update {
                    key: 1,
                    f: Box::new(|_| panic!("boom")),
                },
            )
            .unwrap();
        assert_eq!(r, Reply::UpdatePanicked("boom".into()));
        assert_eq!(s.get(h(1), &1, Visible::At(0)), Some(1));
        s.submit(h(1), Op::Insert { key: 1, value: 2 }).unwrap();
        assert_eq!(s.get(h(1), &1, Visible::At(0)), Some(2));
        assert_no_cell_lost(&s);
    }

    #[test]
    fn write_from_inside_an_update_is_refused_not_deadlocked() {
        let s = std::sync::Arc::new(Shard::<u64, u64>::new(8, 0));
        let inner = s.clone();
        let r = s
            .submit(
                h(1),
                Op::Update {
                    key: 1,
                    f: Box::new(move |_| {
                        let nested = inner.submit(h(2), Op::Insert { key: 2, value: 2 });
                        assert!(matches!(nested, Err(SubmitError::Reentrant(_))));
                        Some(1)
                    }),
                },
            )
            .unwrap();
        assert_eq!(r, Reply::Updated(Some(1)));
        assert_eq!(s.get(h(2), &2, Visible::At(0)), None);
        assert_no_cell_lost(&*s);
    }

    #[test]
    fn contended_writers_are_all_applied_and_answered() {
        let s = std::sync::Arc::new(Shard::<u64, u64>::new(4, 0));
        let threads = 4;
        let per = 5_000u64;
        let start = std::sync::Arc::new(Barrier::new(threads));
        let handles: Vec<_> = (0..threads as u64)
            .map(|t| {
                let s = s.clone();
                let start = start.clone();
                std::thread::spawn(move || {
                    start.wait();
                    for i in 0..per {
                        let k = t * per + i;
                        s.submit(h(k), Op::Insert { key: k, value: k }).unwrap();
                        // Visible when acknowledged (G1), even on the slow path.
                        assert_eq!(s.get(h(k), &k, Visible::At(0)), Some(k));
                    }
                })
            })
            .collect();
        for t in handles {
            t.join().unwrap();
        }
        assert_eq!(s.len(), threads * per as usize);
        assert_eq!(s.queued(), 0);
        assert_no_cell_lost(&*s);
    }

    #[test]
    fn bounded_expiring_and_closed_shards_lose_no_cell() {
        // Values replaced by new entries, and word values replaced in
        // place where they can be (`value.rs`).
        churn_loses_no_cell(|k, round| format!("{k}/{round}"));
        churn_loses_no_cell(|k, round| k * 10 + round);
    }

    fn churn_loses_no_cell<V>(value_of: impl Fn(u64, u64) -> V)
    where
        V: Clone + Send + Sync + 'static,
    {
        use crate::limits::Expiry;
        use std::time::Duration;
        let clock = Clock::manual();
        for (budget, expiry) in [
            (Some(64), Expiry::default()),
            (Some(64), Expiry::ttl(Duration::from_millis(10))),
            (None, Expiry::tti(Duration::from_millis(10))),
            (None, Expiry::default()),
        ] {
            let s: Shard<u64, V> = Shard::with_config(ShardConfig {
                budget,
                expiry,
                clock: clock.clone(),
                ..ShardConfig::default()
            });
            for round in 0..5u64 {
                for k in 0..200u64 {
                    let value = value_of(k, round);
                    let op = if k % 7 == 0 {
                        // Entries of both layouts in one shard: this one
                        // can expire whatever the defaults.
                        Op::InsertExpiring {
                            key: k,
                            value,
                            tags: None,
                            expiry: Expiry::ttl(Duration::from_millis(5)),
                        }
                    } else {
                        Op::Insert { key: k, value }
                    };
                    s.submit(h(k), op).unwrap();
                    if k % 5 == 0 {
                        s.submit(h(k), Op::Invalidate { key: k }).unwrap();
                    }
                }
                // Expired entries are swept, replaced or read as gone.
                clock.advance(Duration::from_millis(20));
                assert_no_cell_lost(&s);
            }
            assert!(budget.is_none_or(|b| s.len() as u64 <= b));
            s.submit(0, Op::Close).unwrap();
            assert!(s.is_empty());
            assert_no_cell_lost(&s);
        }
    }

    #[test]
    fn lease_is_doomed_by_a_write_and_the_waiter_leads_next() {
        let s: Shard<u64, u64> = Shard::new(8, 0);
        let lead = s.load_begin(h(1), 1, Vec::new()).unwrap().wait();
        let Some(Reply::Lead(t1)) = lead else {
            panic!("{lead:?}")
        };
        let waiter = s.load_begin(h(1), 1, Vec::new()).unwrap(); // joins the lease
        s.submit(h(1), Op::Invalidate { key: 1 }).unwrap(); // dooms it
        let r = s
            .submit(
                h(1),
                Op::Install {
                    key: 1,
                    value: 5,
                    token: t1,
                },
            )
            .unwrap();
        assert_eq!(r, Reply::Discarded);
        assert_eq!(s.get(h(1), &1, Visible::At(0)), None);
        let Some(Reply::Lead(t2)) = waiter.wait() else {
            panic!("waiter should lead")
        };
        assert_ne!(t1, t2);
        let r = s
            .submit(
                h(1),
                Op::Install {
                    key: 1,
                    value: 6,
                    token: t2,
                },
            )
            .unwrap();
        assert_eq!(r, Reply::Installed);
        assert_eq!(s.get(h(1), &1, Visible::At(0)), Some(6));
        assert_no_cell_lost(&s);
    }

    #[test]
    fn insert_during_a_load_answers_its_waiters_with_the_new_value() {
        let s: Shard<u64, u64> = Shard::new(8, 0);
        let Some(Reply::Lead(t)) = s.load_begin(h(1), 1, Vec::new()).unwrap().wait() else {
            panic!()
        };
        let waiter = s.load_begin(h(1), 1, Vec::new()).unwrap();
        s.submit(h(1), Op::Insert { key: 1, value: 9 }).unwrap();
        assert_eq!(waiter.wait(), Some(Reply::Hit(9)));
        let r = s
            .submit(
                h(1),
                Op::Install {
                    key: 1,
                    value: 1,
                    token: t,
                },
            )
            .unwrap();
        assert_eq!(r, Reply::Discarded);
        assert_eq!(s.get(h(1), &1, Visible::At(0)), Some(9));
        assert_no_cell_lost(&s);
    }

    #[test]
    fn abandoned_lease_passes_to_a_waiter_and_skips_departed_ones() {
        let s: Shard<u64, u64> = Shard::new(8, 0);
        let Some(Reply::Lead(t)) = s.load_begin(h(1), 1, Vec::new()).unwrap().wait() else {
            panic!()
        };
        let mut gone = s.load_begin(h(1), 1, Vec::new()).unwrap();
        let stays = s.load_begin(h(1), 1, Vec::new()).unwrap();
        assert_eq!(gone.close(), None);
        s.submit(h(1), Op::Abandon { key: 1, token: t }).unwrap();
        assert!(matches!(stays.wait(), Some(Reply::Lead(_))));
        assert_no_cell_lost(&s);
    }

    fn txn_insert(k: u64, v: u64, tags: &[&str]) -> crate::message::TxnOp<u64, u64> {
        crate::message::TxnOp::Insert {
            hash: h(k),
            key: k,
            value: v,
            tags: tags.iter().map(|&t| Tag::from(t)).collect(),
        }
    }

    #[test]
    fn an_intent_shows_the_old_value_until_its_stamp_then_finalizes() {
        let s: Shard<u64, u64> = Shard::new(8, 0);
        s.submit(h(1), Op::Insert { key: 1, value: 10 }).unwrap();
        let ops = vec![
            txn_insert(1, 11, &[]),
            txn_insert(2, 21, &[]),
            crate::message::TxnOp::Invalidate { hash: h(3), key: 3 }, // absent: no-op
        ];
        assert_eq!(
            s.submit(0, Op::Prepare { stamp: 5, ops }).unwrap(),
            Reply::Prepared
        );
        let at = |w, k: u64| s.get(h(k), &k, Visible::At(w));
        assert_eq!((at(4, 1), at(4, 2), at(4, 3)), (Some(10), None, None));
        assert_eq!((at(5, 1), at(5, 2), at(5, 3)), (Some(11), Some(21), None));
        // A plain write to a staged key joins the transaction.
        assert_eq!(
            s.submit(h(2), Op::Insert { key: 2, value: 22 }).unwrap(),
            Reply::DoneAt(5)
        );
        assert_eq!((at(4, 2), at(5, 2)), (None, Some(22)));
        // Another key is not held back.
        assert_eq!(
            s.submit(h(4), Op::Insert { key: 4, value: 40 }).unwrap(),
            Reply::Done
        );
        assert_eq!(at(0, 4), Some(40));
        s.submit(0, Op::Finalize { stamp: 5 }).unwrap();
        assert_eq!(
            (at(0, 1), at(0, 2)),
            (Some(11), Some(22)),
            "plain entries now"
        );
        assert_eq!(s.len(), 3);
        assert_eq!(
            s.submit(h(2), Op::Insert { key: 2, value: 23 }).unwrap(),
            Reply::Done
        );
        assert_no_cell_lost(&s);
    }

    #[test]
    fn a_rollback_restores_the_old_values_and_keeps_folded_writes() {
        let s: Shard<u64, u64> = Shard::new(8, 0);
        s.submit(h(1), Op::Insert { key: 1, value: 10 }).unwrap();
        s.submit(h(2), Op::Insert { key: 2, value: 20 }).unwrap();
        let ops = vec![
            txn_insert(1, 11, &[]),
            txn_insert(2, 21, &[]),
            txn_insert(3, 31, &[]),
        ];
        s.submit(0, Op::Prepare { stamp: 1, ops }).unwrap();
        assert_eq!(
            s.submit(h(2), Op::Invalidate { key: 2 }).unwrap(),
            Reply::DoneAt(1)
        );
        s.submit(0, Op::Rollback { stamp: 1 }).unwrap();
        let now = |k: u64| s.get(h(k), &k, Visible::At(1));
        assert_eq!((now(1), now(2), now(3)), (Some(10), None, None));
        assert_eq!(s.len(), 1);
        assert_no_cell_lost(&s);
    }

    #[test]
    fn a_staged_tag_invalidation_removes_tagged_keys_and_holds_tagged_writes() {
        let s: Shard<u64, u64> = Shard::new(8, 0);
        for k in 0..6 {
            let tags = if k % 2 == 0 {
                vec![Tag::from("even")]
            } else {
                Vec::new()
            };
            s.submit(
                h(k),
                Op::InsertTagged {
                    key: k,
                    value: k,
                    tags,
                },
            )
            .unwrap();
        }
        let ops = vec![crate::message::TxnOp::InvalidateTag(Tag::from("even"))];
        s.submit(0, Op::Prepare { stamp: 1, ops }).unwrap();
        let at = |w, k: u64| s.get(h(k), &k, Visible::At(w));
        assert!((0..6).all(|k| at(0, k) == Some(k)), "nothing visible yet");
        assert!((0..6).all(|k| at(1, k) == (k % 2 == 1).then_some(k)));
        // A write carrying the tag is ordered after the invalidation.
        let tagged = Op::InsertTagged {
            key: 10,
            value: 10,
            tags: vec![Tag::from("even")],
        };
        assert_eq!(s.submit(h(10), tagged).unwrap(), Reply::DoneAt(1));
        assert_eq!((at(0, 10), at(1, 10)), (None, Some(10)));
        s.submit(0, Op::Finalize { stamp: 1 }).unwrap();
        assert_eq!(s.len(), 4);
        // Key 10 kept its tag: the next invalidation removes it.
        let ops = vec![crate::message::TxnOp::InvalidateTag(Tag::from("even"))];
        s.submit(0, Op::Prepare { stamp: 2, ops }).unwrap();
        s.submit(0, Op::Finalize { stamp: 2 }).unwrap();
        assert_eq!(at(2, 10), None);
        assert_eq!(s.len(), 3);
        assert_no_cell_lost(&s);
    }
}
