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

use crate::sync::{AtomicUsize, MutPtr, Ordering, UnsafeCell};
use std::mem::ManuallyDrop;
use std::ops::{Deref, DerefMut};

const HELD: usize = 1;
const ONE: usize = 2;

/// The token and the state only its holder may touch. `repr(C)`: the word
/// and the start of `value` share a cache line (a write touches both).
#[repr(C)]
pub(crate) struct Token<T> {
    state: AtomicUsize,
    value: UnsafeCell<T>,
}

// SAFETY: `value` is reached only through `Held`, and at most one `Held`
// exists at a time (it is created only by a successful take of the HELD
// bit and clears the bit when dropped), so sharing the token shares no
// `&mut T` between threads; `T: Send` because the holder may be any thread.
unsafe impl<T: Send> Sync for Token<T> {}
// SAFETY: sending the token sends the `T` it owns.
unsafe impl<T: Send> Send for Token<T> {}

/// What a release attempt found.
pub(crate) enum Release<'a, T> {
    /// The token is free; nothing was counted.
    Done,
    /// Messages were counted: the token is still held, drain this many.
    Queued(Held<'a, T>, usize),
}

impl<T> Token<T> {
    pub(crate) fn new(value: T) -> Self {
        Self {
            state: AtomicUsize::new(0),
            value: UnsafeCell::new(value),
        }
    }

    /// Takes the token if it is free and no message is queued: the common
    /// write, which then has nothing to drain first.
    #[inline]
    pub(crate) fn take_idle(&self) -> Option<Held<'_, T>> {
        if cfg!(coherent_loom_break_owner) {
            return self.take();
        }
        // Acquire: the previous holder's changes (released with Release)
        // are visible to us.
        self.state
            .compare_exchange(0, HELD, Ordering::Acquire, Ordering::Relaxed)
            .ok()
            .map(|_| self.held())
    }

    /// What the token looks like, by a plain load (no write, so a thread
    /// polling it does not take the line from the holder): `Some(true)`
    /// free with nothing queued, `Some(false)` held with nothing queued,
    /// `None` messages queued. A hint; only [`take_idle`](Self::take_idle)
    /// decides.
    #[inline]
    pub(crate) fn looks_idle(&self) -> Option<bool> {
        // Relaxed: a hint; `take_idle` orders what it takes.
        match self.state.load(Ordering::Relaxed) {
            0 => Some(true),
            HELD => Some(false),
            _ => None,
        }
    }

    /// Takes the token if it is free, whatever is queued.
    pub(crate) fn take(&self) -> Option<Held<'_, T>> {
        // Acquire: as in `take_idle`; also makes counted messages' pushes
        // visible (they were counted with Release).
        let was = self.state.fetch_or(HELD, Ordering::Acquire);
        // `coherent_loom_break_owner`: deliberately broken (no mutual
        // exclusion: a second writer takes a held token), to show that the
        // models catch two owners in one shard (docs/guarantees.md).
        (was & HELD == 0 || cfg!(coherent_loom_break_owner)).then(|| self.held())
    }

    /// Counts in one message that was just queued; returns the token if it
    /// was free and this call took it (the caller must then drain).
    pub(crate) fn count_in(&self) -> Option<Held<'_, T>> {
        // Release: the holder that reads this count (Acquire) finds the
        // message in the queue.
        let was = self.state.fetch_add(ONE, Ordering::Release);
        if was & HELD == 0 {
            self.take()
        } else {
            None
        }
    }

    /// Messages counted in and not yet taken out.
    pub(crate) fn queued(&self) -> usize {
        self.state.load(Ordering::Relaxed) / ONE
    }

    fn held(&self) -> Held<'_, T> {
        Held {
            token: self,
            value: ManuallyDrop::new(self.value.get_mut()),
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
}

impl<'a, T> Held<'a, T> {
    /// Releases the token unless messages are counted, in which case it is
    /// handed back with how many there are to take out.
    pub(crate) fn release(mut self) -> Release<'a, T> {
        let token = self.token;
        // SAFETY: `value` is not used again before it is replaced below or
        // `self` is forgotten.
        unsafe { ManuallyDrop::drop(&mut self.value) };
        // Release on success: our changes reach the next holder. Acquire on
        // failure: the counted messages' pushes are visible to our pops.
        let failure = if cfg!(coherent_loom_break_handoff) {
            // Deliberately broken (see module docs): ignores the count.
            token.state.fetch_and(!HELD, Ordering::Release);
            None
        } else {
            token
                .state
                .compare_exchange(HELD, 0, Ordering::Release, Ordering::Acquire)
                .err()
        };
        match failure {
            None => {
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
        self.token.state.fetch_and(!HELD, Ordering::Release);
    }
}

#[cfg(all(test, not(coherent_loom)))]
mod tests {
    use super::*;

    #[test]
    fn a_counted_message_keeps_the_token_from_being_released() {
        let t = Token::new(5u32);
        let mut held = t.take_idle().expect("free and idle");
        *held += 1;
        assert!(t.take().is_none(), "held: nobody else takes it");
        // A writer counts a message in while we hold the token: it does not
        // get the token, and our release hands it back with the count.
        assert!(t.count_in().is_none());
        assert_eq!(t.queued(), 1);
        let held = match held.release() {
            Release::Queued(held, n) => {
                assert_eq!(n, 1);
                held
            }
            Release::Done => panic!("released over a counted message"),
        };
        held.count_out();
        assert!(matches!(held.release(), Release::Done));
        // Released: the next taker sees our change.
        assert_eq!(*t.take_idle().expect("free again"), 6);
    }

    #[test]
    fn a_message_counted_while_free_brings_the_token_with_it() {
        let t = Token::new(());
        let held = t
            .count_in()
            .expect("the token was free: the writer takes it");
        assert_eq!(held.queued(), 1);
        assert!(t.take_idle().is_none() && t.take().is_none());
        held.count_out();
        assert!(matches!(held.release(), Release::Done));
        assert!(t.take_idle().is_some());
    }

    #[test]
    fn dropping_the_held_token_frees_it_but_keeps_the_count() {
        let t = Token::new(());
        let held = t.take().expect("free");
        assert!(t.count_in().is_none());
        drop(held); // the unwinding path
        assert_eq!(t.queued(), 1);
        assert!(t.take_idle().is_none(), "not idle: a message is counted");
        let held = t.take().expect("free, with one message counted");
        held.count_out();
        assert!(matches!(held.release(), Release::Done));
    }
}
