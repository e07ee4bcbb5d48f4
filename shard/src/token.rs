//! A shard's owner token and its mailbox count, in one atomic word.
//!
//! Bit 0 says whether the token is held; the bits above count the messages
//! queued in the mailbox and not yet taken out by a holder. Keeping both in
//! one word makes the hand-off a matter of read-modify-writes on a single
//! location, which are totally ordered (every RMW reads the latest value),
//! so no fence is needed and the argument is short:
//!
//! - A writer queues its message, then counts it in with `fetch_add`. If the
//!   value it replaced shows the token free, it tries to take it
//!   (`fetch_or`); if the token was held, the holder will see the count.
//! - A holder releases with `compare_exchange(HELD, 0)`: it succeeds only if
//!   nothing is counted. If a writer's `fetch_add` comes first, the release
//!   fails and the holder drains; if the release comes first, the writer's
//!   `fetch_add` reads the free token and the writer takes it itself.
//!
//! So a counted message always has a holder that will see it: none is
//! stranded. The uncontended write costs two atomic RMWs (take, release)
//! and nothing else; a `Mutex` plus a separate counter needed a `swap`, a
//! `SeqCst` fence and a load on another cache line. The loom models in
//! `tests/loom_handoff.rs` check the hand-off over every interleaving
//! (`--cfg coherent_loom_break_handoff` releases with a plain store instead,
//! and the models catch the stranded message).
//!
//! # The bias: a token its one writer takes without a locked instruction
//!
//! Taking and releasing the token are two locked instructions, and each
//! drains the store buffer: about a quarter of a one-thread insert's time
//! (docs/design.md, "The owner token and its bias"). Most shards, most of the time, are
//! written by one thread at a time. So a thread that took the token
//! [`Grant::need`] times in a row is *granted the bias* when it releases
//! it: the release leaves `HELD` set and adds `BIASED`, and `bias` names
//! the thread. From then on that thread takes the token by
//!
//! 1. storing the token's address in its own *flag* (a plain store to a
//!    line only it writes; see [`Flag`]), then the light fence,
//! 2. checking that the word is still exactly `HELD | BIASED` and `bias`
//!    is itself (plain loads), and on the way out
//! 3. clearing its flag (a Release store),
//!
//! with no read-modify-write. Any other taker (a `take`, `take_idle` or
//! `count_in` that finds `BIASED`) *revokes* the bias: it clears `BIASED`
//! with a read-modify-write, which makes it the holder (`HELD` stays set:
//! only one RMW can clear the bit), runs the heavy fence, and then waits
//! while the flag of the thread `bias` names holds this token. This is
//! the asymmetric store-buffering pattern of `reclaim.rs` once more:
//! either the biased thread's flag store is visible to the revoker after
//! the heavy fence (which then waits for its Release clearing, and sees
//! what it did), or the biased thread's check comes after the fence and
//! sees `BIASED` cleared, and it backs off (clears its flag) and takes the
//! token the ordinary way. The light fence is a compiler fence and the
//! heavy one `membarrier`, so the bias is granted only where those are in
//! use ([`reclaim::asymmetric`]); under loom both are `fence(SeqCst)`, and
//! the models in this file check the bias (`--cfg coherent_loom_break_bias`
//! revokes without waiting, and the model catches two holders).
//!
//! Why a flag per thread and not one per token (a `busy` flag in the
//! token, measured and rejected): the first look (step 2's check, done once
//! before step 1 so that other threads publish nothing) can be stale. A
//! thread that saw the token biased to itself and then stalled may store
//! its flag after its bias was revoked and granted to another thread,
//! fail its check, and back off. With one flag per token its back-off
//! cleared the flag the newly biased thread had set while that thread was
//! inside, and the next revoker found it clear and took the token beside
//! it: two holders. The loom model
//! `a_stale_fast_take_never_clears_the_next_biased_threads_flag` finds
//! that interleaving (`--cfg coherent_loom_break_stale` puts the shared
//! flag back). A thread's own flag is written only by that thread, so a
//! stale back-off clears nothing but its own.
//!
//! A revocation costs the revoker a `membarrier` (a few microseconds), so
//! each one by another thread doubles the streak the next grant needs
//! ([`Grant::need`], up to [`MAX_NEED`]); a bias is never granted to
//! threads that take turns. The biased thread revoking its own bias (from
//! a path other than the plain write, which alone uses the fast take) needs
//! no fence: its flag does not name the token.
//!
//! While the token is biased, a message is counted in only by a writer
//! that then revokes (or by the biased thread itself, re-entering from a
//! destructor inside its fast take, which its own release then finds: see
//! [`Held::release`]), so a counted message still always has a holder that
//! will see it. (The shard refuses a cache write from a destructor it runs
//! under the token, `HeldFlag` in `owner/mod.rs`, so that re-entry does
//! not come from a write; the token does not rely on it.)

use crate::reclaim;
#[cfg(coherent_loom)]
use crate::sync::fence;
use crate::sync::{AtomicUsize, MutPtr, Ordering, UnsafeCell};
use std::cell::Cell;
use std::mem::ManuallyDrop;
use std::ops::{Deref, DerefMut};

const HELD: usize = 1;
/// Set (with `HELD`) while the token is biased to the thread `bias` names.
const BIASED: usize = 2;
const ONE: usize = 4;

/// The word of a token biased and idle: what the biased thread's fast take
/// checks for.
const BIASED_IDLE: usize = HELD | BIASED;

/// Consecutive takes by one thread that earn it the bias, at first. Under
/// loom 1, so that the models' first release grants it and the rest of
/// each model races the bias (unless the model turned that off:
/// [`loom_bias`]).
const FIRST_NEED: u32 = if cfg!(coherent_loom) { 1 } else { 64 };

#[cfg(coherent_loom)]
std::thread_local! {
    /// Whether tokens made on this thread from now on can be biased (loom
    /// runs a model's threads on the thread that called `loom::model`).
    static MODEL_BIAS: Cell<bool> = const { Cell::new(true) };
}

/// Under loom, whether tokens created from now on by this test can ever be
/// granted the bias. The shutdown model (four threads) turns it off: with
/// the bias its interleavings grow past what CI can run, and the token
/// models here and the shard-level models check the bias instead.
#[cfg(coherent_loom)]
pub fn loom_bias(on: bool) {
    MODEL_BIAS.with(|b| b.set(on));
}

/// The streak a new token's first grant needs.
fn first_need() -> u32 {
    #[cfg(coherent_loom)]
    if !MODEL_BIAS.with(Cell::get) {
        return u32::MAX;
    }
    FIRST_NEED
}

/// The most [`Grant::need`] grows to (doubling per revocation by another
/// thread): a pair of threads that take turns pay at most one heavy fence
/// per this many takes.
const MAX_NEED: u32 = 1 << 16;

/// The token and the state only its holder may touch. `repr(C)`: the word,
/// the biased thread's flag and the start of `value` share a cache line (a
/// write touches them all).
#[repr(C)]
pub(crate) struct Token<T> {
    state: AtomicUsize,
    /// The thread the token is biased to ([`thread_id`]: the address of
    /// its [`Flag`]); meaningful while `BIASED` is set, written only by a
    /// holder before it sets `BIASED`.
    bias: AtomicUsize,
    /// `coherent_loom_break_stale`: one flag per token, written by every
    /// thread that passes the fast take's first look, as the twelfth
    /// round had it (module docs: what goes wrong).
    #[cfg(coherent_loom_break_stale)]
    shared: AtomicUsize,
    /// The holder's bookkeeping for granting the bias.
    grant: UnsafeCell<Grant>,
    value: UnsafeCell<T>,
}

/// Who took the token last and how many times in a row: the holder's.
struct Grant {
    last: usize,
    streak: u32,
    /// The streak that earns the bias ([`FIRST_NEED`], doubled per
    /// revocation by another thread).
    need: u32,
}

// SAFETY: `value` and `grant` are reached only through `Held`, and at most
// one `Held` exists at a time: one is created only by a successful take
// of the HELD bit (which it clears when dropped), by a revocation that
// cleared `BIASED` and waited for the biased thread to leave (module
// docs), or by the biased thread's fast take, which holds while its
// flag names the token. So sharing the token shares no `&mut T` between threads;
// `T: Send` because the holder may be any thread.
unsafe impl<T: Send> Sync for Token<T> {}
// SAFETY: sending the token sends the `T` it owns.
unsafe impl<T: Send> Send for Token<T> {}

/// What a release attempt found.
pub(crate) enum Release<'a, T> {
    /// The token is free (or biased and idle); nothing was counted.
    Done,
    /// Messages were counted: the token is still held, drain this many.
    Queued(Held<'a, T>, usize),
}

/// A thread's published fast take: the address of the token it holds by
/// its fast take, 0 if none. Only its thread writes it; a revoker reads
/// the flag of the thread a token's `bias` names, and waits while it
/// names that token (module docs). A thread's id ([`thread_id`]) is its
/// flag's address. Flags are never freed: a thread's flag goes back to
/// [`FREE_FLAGS`] when the thread exits and is given to a later thread,
/// which then inherits the biases it had (harmless: the old thread holds
/// nothing, and the free list's lock orders its writes before the new
/// thread's), so any flag a `bias` ever named can be read. Its own cache
/// line: only its thread writes it.
#[repr(align(64))]
struct Flag {
    // Unread only in the `coherent_loom_break_stale` build, which waits on
    // the token's shared flag instead.
    #[cfg_attr(coherent_loom_break_stale, allow(dead_code))]
    inside: AtomicUsize,
}

/// The flags of exited threads, for the next threads that need one.
#[cfg(not(coherent_loom))]
static FREE_FLAGS: std::sync::Mutex<Vec<usize>> = std::sync::Mutex::new(Vec::new());

#[cfg(not(coherent_loom))]
std::thread_local! {
    /// Hands this thread's flag back to [`FREE_FLAGS`] when it exits.
    static RECYCLE: Recycle = const { Recycle(Cell::new(0)) };
}

/// This thread's flag, to be handed back when the thread exits.
#[cfg(not(coherent_loom))]
struct Recycle(Cell<usize>);

#[cfg(not(coherent_loom))]
impl Drop for Recycle {
    fn drop(&mut self) {
        let flag = self.0.get();
        if flag == 0 {
            return;
        }
        // From here on this thread has no id (and no bias): a destructor
        // that writes to a cache later takes tokens the ordinary way.
        let _ = THREAD.try_with(|t| t.set(0));
        free_flags().push(flag);
    }
}

#[cfg(not(coherent_loom))]
fn free_flags() -> std::sync::MutexGuard<'static, Vec<usize>> {
    // A panic while the lock was held left a valid `Vec`.
    FREE_FLAGS.lock().unwrap_or_else(|e| e.into_inner())
}

/// A flag for this thread: a free one, or a new one (leaked: see
/// [`Flag`]); 0 if this thread's thread-locals are being torn down.
#[cfg(not(coherent_loom))]
fn new_flag() -> usize {
    let flag = free_flags().pop().unwrap_or_else(|| {
        let flag: &'static Flag = Box::leak(Box::new(Flag {
            inside: AtomicUsize::new(0),
        }));
        flag as *const Flag as usize
    });
    if RECYCLE.try_with(|r| r.0.set(flag)).is_err() {
        free_flags().push(flag);
        return 0;
    }
    flag
}

/// Under loom a flag per model thread, leaked (a model's threads are few).
#[cfg(coherent_loom)]
fn new_flag() -> usize {
    let flag: &'static Flag = Box::leak(Box::new(Flag {
        inside: AtomicUsize::new(0),
    }));
    flag as *const Flag as usize
}

#[cfg(not(coherent_loom))]
std::thread_local! {
    /// This thread's id (0 until it first released a token; the address
    /// of its [`Flag`], so 64-aligned), with bit 0 set once it was
    /// granted a bias. Const-initialised, no destructor: one load from
    /// the thread's TLS block.
    static THREAD: Cell<usize> = const { Cell::new(0) };
}

#[cfg(not(coherent_loom))]
std::thread_local! {
    /// The address of the token this thread holds by its fast take, 0 if
    /// none: a revocation of that very token by this thread (re-entering
    /// from a destructor) must not wait for itself, and a thread takes
    /// one token at a time by its fast take (its [`Flag`] names one).
    static FAST: Cell<usize> = const { Cell::new(0) };
}

#[cfg(coherent_loom)]
loom::thread_local! {
    static FAST: Cell<usize> = Cell::new(0);
}

#[cfg(coherent_loom)]
loom::thread_local! {
    static THREAD: Cell<usize> = Cell::new(0);
}

/// Bit 0 of [`THREAD`].
const GRANTED: usize = 1;

/// This thread's word ([`THREAD`]), `GONE` if its thread-locals are gone.
#[inline]
fn thread_word() -> usize {
    THREAD.try_with(Cell::get).unwrap_or(0)
}

/// This thread's id, its [`Flag`]'s address, given out on first use; 0
/// where it cannot have one (thread-locals being torn down), which no
/// bias names.
fn thread_id() -> usize {
    let word = thread_word();
    if word != 0 {
        return word & !GRANTED;
    }
    let id = new_flag();
    if id != 0 && THREAD.try_with(|t| t.set(id)).is_err() {
        return 0;
    }
    id
}

/// The light fence of the bias (module docs): with `membarrier` a
/// compiler fence; under loom the symmetric `fence(SeqCst)`.
#[inline(always)]
fn light_fence() {
    #[cfg(coherent_loom)]
    fence(Ordering::SeqCst);
    #[cfg(not(coherent_loom))]
    std::sync::atomic::compiler_fence(Ordering::SeqCst);
}

impl<T> Token<T> {
    pub(crate) fn new(value: T) -> Self {
        Self {
            state: AtomicUsize::new(0),
            bias: AtomicUsize::new(0),
            #[cfg(coherent_loom_break_stale)]
            shared: AtomicUsize::new(0),
            grant: UnsafeCell::new(Grant {
                last: 0,
                streak: 0,
                need: first_need(),
            }),
            value: UnsafeCell::new(value),
        }
    }

    /// The biased thread's take (module docs): no read-modify-write, and
    /// `None` at once for a thread that was never granted a bias.
    #[inline]
    pub(crate) fn take_biased(&self) -> Option<Held<'_, T>> {
        let word = thread_word();
        if word & GRANTED == 0 {
            return None;
        }
        let me = word & !GRANTED;
        // Relaxed: a first look, so that a thread the token is not biased
        // to publishes nothing; the check below decides. One fast take at
        // a time: a take inside one (from a destructor) is ordinary.
        if !self.is_biased_to(me, Ordering::Relaxed) || FAST.try_with(Cell::get).unwrap_or(1) != 0 {
            return None;
        }
        let address = self as *const Self as usize;
        let flag = self.flag_of(me);
        flag.store(address, Ordering::Relaxed);
        // Orders the store above before the loads below against a
        // revoker's heavy fence (module docs).
        light_fence();
        // Acquire: pairs with the grant's Release, so `bias` reads that
        // grant's thread or a later one's.
        if self.is_biased_to(me, Ordering::Acquire) {
            let _ = FAST.try_with(|f| f.set(address));
            return Some(self.held(me));
        }
        // Revoked meanwhile: we touched nothing. Our own flag, so this
        // clears nobody else's (module docs).
        flag.store(0, Ordering::Release);
        None
    }

    /// The flag thread `id` publishes its fast take in (its own; under
    /// `coherent_loom_break_stale` the token's one shared flag).
    #[inline(always)]
    fn flag_of(&self, id: usize) -> &AtomicUsize {
        #[cfg(coherent_loom_break_stale)]
        {
            let _ = id;
            &self.shared
        }
        // SAFETY: `id` is a thread id, the address of a `Flag`, and flags
        // are never freed (`Flag`).
        #[cfg(not(coherent_loom_break_stale))]
        unsafe {
            &(*(id as *const Flag)).inside
        }
    }

    /// Whether the token is biased to `me` and nothing is counted.
    #[inline(always)]
    fn is_biased_to(&self, me: usize, order: Ordering) -> bool {
        self.state.load(order) == BIASED_IDLE && self.bias.load(Ordering::Relaxed) == me
    }

    /// Takes the token if it is free and no message is queued: the common
    /// write, which then has nothing to drain first. Revokes a bias held
    /// by another thread (module docs).
    #[inline]
    pub(crate) fn take_idle(&self) -> Option<Held<'_, T>> {
        if cfg!(coherent_loom_break_owner) {
            return self.take();
        }
        // Acquire: the previous holder's changes (released with Release)
        // are visible to us.
        match self
            .state
            .compare_exchange(0, HELD, Ordering::Acquire, Ordering::Relaxed)
        {
            Ok(_) => Some(self.held(0)),
            Err(BIASED_IDLE) => self.revoke(),
            Err(_) => None,
        }
    }

    /// What the token looks like, by a plain load (no write, so a thread
    /// polling it does not take the line from the holder): `Some(true)`
    /// free with nothing queued, `Some(false)` held with nothing queued,
    /// `None` messages queued or biased. A hint; only
    /// [`take_idle`](Self::take_idle) decides.
    #[inline]
    pub(crate) fn looks_idle(&self) -> Option<bool> {
        // Relaxed: a hint; `take_idle` orders what it takes.
        match self.state.load(Ordering::Relaxed) {
            0 => Some(true),
            HELD => Some(false),
            _ => None,
        }
    }

    /// Takes the token if it is free, whatever is queued; revokes a bias.
    pub(crate) fn take(&self) -> Option<Held<'_, T>> {
        // Acquire: as in `take_idle`; also makes counted messages' pushes
        // visible (they were counted with Release).
        let was = self.state.fetch_or(HELD, Ordering::Acquire);
        // `coherent_loom_break_owner`: deliberately broken (no mutual
        // exclusion: a second writer takes a held token), to show that the
        // models catch two owners in one shard (docs/guarantees.md).
        if was & HELD == 0 || cfg!(coherent_loom_break_owner) {
            Some(self.held(0))
        } else if was & BIASED != 0 {
            self.revoke()
        } else {
            None
        }
    }

    /// Counts in one message that was just queued; returns the token if it
    /// was free (or biased, and this call revoked the bias) and this call
    /// took it: the caller must then drain.
    pub(crate) fn count_in(&self) -> Option<Held<'_, T>> {
        // Release: the holder that reads this count (Acquire) finds the
        // message in the queue.
        let was = self.state.fetch_add(ONE, Ordering::Release);
        if was & HELD == 0 {
            self.take()
        } else if was & BIASED != 0 {
            self.revoke()
        } else {
            None
        }
    }

    /// Ends the bias and returns the token held, if this call is the one
    /// that cleared `BIASED` (module docs); `None` if another taker did
    /// (it holds the token and will see what is counted), or if the biased
    /// thread itself re-enters inside its fast take (its release will).
    #[cold]
    #[inline(never)]
    fn revoke(&self) -> Option<Held<'_, T>> {
        let address = self as *const Self as usize;
        if FAST.try_with(Cell::get).unwrap_or(0) == address {
            // We are the biased thread, inside our own fast take of this
            // token (a destructor run by the write): waiting would wait on
            // ourselves. The release of that take settles the count.
            return None;
        }
        // Acquire: the grant's holder's changes (the biased thread's own
        // come with its flag below), and `bias` as that grant wrote it.
        let was = self.state.fetch_and(!BIASED, Ordering::Acquire);
        if was & BIASED == 0 {
            return None;
        }
        // We hold the token now; no grant can follow until we release it,
        // so `bias` names the thread whose bias we just ended.
        let me = thread_word() & !GRANTED;
        let mine = me != 0 && self.bias.load(Ordering::Relaxed) == me;
        if !mine && !cfg!(coherent_loom_break_bias) {
            // Another thread's bias: after the heavy fence, its flag store
            // is visible if it got past its check (module docs).
            // (`coherent_loom_break_bias_fence`: no fence, only the wait;
            // the models catch the biased thread's check and the wait
            // both passing.)
            while !cfg!(coherent_loom_break_bias_fence) && !reclaim::heavy_fence() {
                crate::sync::thread::yield_now();
            }
            // Acquire: pairs with its Release clearing of its flag; what it
            // did as holder is visible to us. `bias` is a thread's id (a
            // grant wrote it, and grants need an id).
            let flag = self.flag_of(self.bias.load(Ordering::Relaxed));
            let mut spins = 0u32;
            while flag.load(Ordering::Acquire) == address {
                spins += 1;
                if spins % 64 == 0 {
                    crate::sync::thread::yield_now();
                } else {
                    crate::sync::spin_loop();
                }
            }
        }
        // `mine`: we are the biased thread, not in a fast take of this
        // token (checked above), so our flag does not name it.
        let held = self.held(0);
        if !mine {
            held.grant(|g| g.need = g.need.saturating_mul(2).min(MAX_NEED));
        }
        Some(held)
    }

    /// Messages counted in and not yet taken out.
    pub(crate) fn queued(&self) -> usize {
        self.state.load(Ordering::Relaxed) / ONE
    }

    fn held(&self, fast: usize) -> Held<'_, T> {
        Held {
            token: self,
            value: ManuallyDrop::new(self.value.get_mut()),
            fast,
        }
    }
}

/// The token, held: the one `&mut T` there is. Dropping it releases the
/// token whatever is counted (used when unwinding after the queue was
/// failed); the normal way out is [`Held::release`].
pub(crate) struct Held<'a, T> {
    token: &'a Token<T>,
    /// Ended (dropped) before the token is released, so that under loom
    /// the access ends before the release that orders it.
    value: ManuallyDrop<MutPtr<T>>,
    /// The taking thread's id if taken by its fast take (released by
    /// clearing that thread's flag), 0 otherwise.
    fast: usize,
}

impl<'a, T> Held<'a, T> {
    /// Runs `f` on the holder's bias bookkeeping.
    fn grant<R>(&self, f: impl FnOnce(&mut Grant) -> R) -> R {
        // SAFETY: we hold the token, and `grant` is reached only by its
        // holder (see `Sync` above), for the length of this call.
        self.token.grant.get_mut().with(|g| f(unsafe { &mut *g }))
    }

    /// Whether this release should leave the token biased to this thread
    /// (`Some(id)`): it took the token [`Grant::need`] times in a row and
    /// the asymmetric fences are in use.
    #[inline]
    fn earns_bias(&self) -> Option<usize> {
        let me = thread_id();
        let earned = self.grant(|g| {
            if g.last == me {
                g.streak = g.streak.saturating_add(1);
            } else {
                g.last = me;
                g.streak = 1;
            }
            g.streak >= g.need
        });
        (earned && me != 0 && (cfg!(coherent_loom) || reclaim::asymmetric())).then_some(me)
    }

    /// Releases the token unless messages are counted, in which case it is
    /// handed back with how many there are to take out. A release after
    /// [`Grant::need`] takes in a row by this thread leaves the token
    /// biased to it. The biased thread's release clears its flag;
    /// should it find messages counted with the bias still standing (it
    /// counted one itself, from a destructor), it revokes its own bias and
    /// hands the token back to drain them like any holder.
    ///
    /// The biased thread's release is inline (a few instructions, where
    /// the call alone took 14 for its register saves: callgrind); the
    /// locked release is [`release_locked`](Self::release_locked), out of
    /// line.
    #[inline(always)]
    pub(crate) fn release(mut self) -> Release<'a, T> {
        let token = self.token;
        let me = self.fast;
        if me != 0 {
            // SAFETY: as below.
            unsafe { ManuallyDrop::drop(&mut self.value) };
            std::mem::forget(self);
            // Release: a revoker that reads this (Acquire) sees our changes.
            token.flag_of(me).store(0, Ordering::Release);
            let _ = FAST.try_with(|f| f.set(0));
            if token.state.load(Ordering::Relaxed) == BIASED_IDLE {
                return Release::Done;
            }
            return token.settle();
        }
        self.release_locked()
    }

    /// [`release`](Self::release) of a token taken with a locked
    /// instruction.
    #[inline(never)]
    fn release_locked(mut self) -> Release<'a, T> {
        let token = self.token;
        let grant = self.earns_bias();
        // SAFETY: `value` is not used again before it is replaced below or
        // `self` is forgotten.
        unsafe { ManuallyDrop::drop(&mut self.value) };
        let released = match grant {
            Some(me) => {
                // Relaxed: published by the Release of the exchange below.
                token.bias.store(me, Ordering::Relaxed);
                BIASED_IDLE
            }
            None => 0,
        };
        // Release on success: our changes reach the next holder. Acquire on
        // failure: the counted messages' pushes are visible to our pops.
        let failure = if cfg!(coherent_loom_break_handoff) {
            // Deliberately broken (see module docs): ignores the count.
            token.state.fetch_and(!HELD, Ordering::Release);
            None
        } else {
            token
                .state
                .compare_exchange(HELD, released, Ordering::Release, Ordering::Acquire)
                .err()
        };
        match failure {
            None => {
                if grant.is_some() {
                    let _ = THREAD.try_with(|t| t.set(t.get() | GRANTED));
                }
                std::mem::forget(self);
                Release::Done
            }
            Some(state) => {
                self.value = ManuallyDrop::new(token.value.get_mut());
                Release::Queued(self, state / ONE)
            }
        }
    }

    /// Messages counted in and not yet taken out; the pushes of that many
    /// are visible to the holder's pops.
    pub(crate) fn queued(&self) -> usize {
        // Acquire: pairs with the Release in `count_in`.
        self.token.state.load(Ordering::Acquire) / ONE
    }

    /// Counts out one message the holder took from the queue.
    pub(crate) fn count_out(&self) {
        // Relaxed: only the holder decrements, and the count is re-read
        // (Acquire) before it is relied on again.
        self.token.state.fetch_sub(ONE, Ordering::Relaxed);
    }
}

impl<'a, T> Token<T> {
    /// After the biased thread's release found the word changed: either a
    /// revoker cleared `BIASED` (it holds the token and will drain), or
    /// messages are counted under the bias, which only this thread can
    /// have done inside its fast take (`revoke`); then it ends its own bias and
    /// drains them.
    #[cold]
    #[inline(never)]
    fn settle(&'a self) -> Release<'a, T> {
        let state = self.state.load(Ordering::Relaxed);
        if state & BIASED == 0 || state / ONE == 0 {
            return Release::Done;
        }
        match self.revoke() {
            Some(held) => {
                let queued = held.queued();
                Release::Queued(held, queued)
            }
            None => Release::Done,
        }
    }
}

impl<T> Deref for Held<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        let p = self.value.with(|p| p.cast_const());
        // SAFETY: we hold the token, so no other `Held` exists and nothing
        // else reaches `value` (see `Sync` above); only shared borrows are
        // made through `&self`, and the access lasts while `self.value`
        // (loom's record of it) does.
        unsafe { &*p }
    }
}

impl<T> DerefMut for Held<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        let p = self.value.with(|p| p);
        // SAFETY: as in `deref`; `&mut self` makes this the only borrow.
        unsafe { &mut *p }
    }
}

impl<T> Drop for Held<'_, T> {
    fn drop(&mut self) {
        // Reached only on the unwinding path (or `release` would have
        // forgotten us): clear HELD, keep the count. A message counted in
        // meanwhile found the token held and waits for a holder; the
        // unwinding owner (`shard.rs`) re-takes the token if so.
        // SAFETY: `value` is not used again.
        unsafe { ManuallyDrop::drop(&mut self.value) };
        if self.fast != 0 {
            // The bias stands; a revoker (who counted its message in
            // first) waits for this.
            self.token.flag_of(self.fast).store(0, Ordering::Release);
            let _ = FAST.try_with(|f| f.set(0));
            return;
        }
        self.token.state.fetch_and(!HELD, Ordering::Release);
    }
}

#[cfg(all(test, not(coherent_loom)))]
mod tests;

#[cfg(all(test, coherent_loom))]
mod loom_tests;
