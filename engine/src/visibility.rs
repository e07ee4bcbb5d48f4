//! The visibility watermark: which transactions readers see, and the lock
//! that orders commits.
//!
//! Every transaction gets a stamp, one more than the watermark, while it
//! holds the commit lock (so stamps are consecutive and commits do not
//! interleave). Its shards stage its changes as intents stamped with it;
//! then one Release store of the stamp into the watermark makes all of
//! them visible at once, in every shard (G2). A reader loads the watermark
//! only when it meets an intent, so a `get` of a key no transaction is
//! touching never reads it. See docs/design.md, "The watermark: transactions at one instant".

use crate::sync::{
    fence, spin_loop, AtomicU64, AtomicUsize, Condvar, Mutex, MutexGuard, Ordering, SPINS,
};
use crossbeam_utils::CachePadded;

pub(crate) struct Watermark {
    /// The newest stamp readers see.
    visible: CachePadded<AtomicU64>,
    /// Held (true) by the committing transaction.
    committing: Mutex<bool>,
    commit_turn: Condvar,
    /// Writers blocked until the watermark reaches their stamp.
    waiters: AtomicUsize,
    wait_lock: Mutex<()>,
    advanced: Condvar,
}

/// The commit lock, held; released on drop.
pub(crate) struct CommitTurn<'a>(&'a Watermark);

impl Drop for CommitTurn<'_> {
    fn drop(&mut self) {
        *lock(&self.0.committing) = false;
        self.0.commit_turn.notify_one();
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Nothing a panic could leave half-done is guarded here.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Watermark {
    pub(crate) fn new() -> Self {
        Self {
            visible: CachePadded::new(AtomicU64::new(0)),
            committing: Mutex::new(false),
            commit_turn: Condvar::new(),
            waiters: AtomicUsize::new(0),
            wait_lock: Mutex::new(()),
            advanced: Condvar::new(),
        }
    }

    /// The watermark itself, for readers.
    #[inline]
    pub(crate) fn current(&self) -> &AtomicU64 {
        &self.visible
    }

    /// Waits (blocking) for the commit lock.
    pub(crate) fn lock_commit(&self) -> CommitTurn<'_> {
        let mut committing = lock(&self.committing);
        while *committing {
            committing = self
                .commit_turn
                .wait(committing)
                .unwrap_or_else(|e| e.into_inner());
        }
        *committing = true;
        CommitTurn(self)
    }

    /// Waits for the commit lock without blocking the executor.
    pub(crate) async fn lock_commit_async(&self) -> CommitTurn<'_> {
        loop {
            {
                let mut committing = lock(&self.committing);
                if !*committing {
                    *committing = true;
                    return CommitTurn(self);
                }
            }
            coherent_shard::yield_now().await;
        }
    }

    /// The stamp of the next transaction (call with the commit lock held).
    pub(crate) fn next_stamp(&self, _turn: &CommitTurn<'_>) -> u64 {
        // Relaxed: only commit-lock holders store it, and we hold it.
        self.visible.load(Ordering::Relaxed) + 1
    }

    /// Makes every intent stamped up to `stamp` visible, and wakes the
    /// writers waiting for it.
    pub(crate) fn publish(&self, stamp: u64, _turn: &CommitTurn<'_>) {
        // Release: every intent of the transaction was stored before this,
        // so a reader that loads `stamp` (Acquire) sees all of them.
        self.visible.store(stamp, Ordering::Release);
        // SeqCst fence: pairs with the waiter's SeqCst `fetch_add` in
        // `wait_for` (store buffering): either we see its count, or it sees
        // the new watermark before it sleeps.
        fence(Ordering::SeqCst);
        if self.waiters.load(Ordering::Relaxed) > 0 {
            let _g = lock(&self.wait_lock);
            self.advanced.notify_all();
        }
    }

    fn reached(&self, stamp: u64) -> bool {
        // Acquire: the caller goes on to read what the commit published.
        self.visible.load(Ordering::Acquire) >= stamp
    }

    /// Blocks until the watermark reaches `stamp` (a write folded into a
    /// transaction in flight: the committer is publishing it right now).
    /// Cold: kept out of every write's fast path.
    #[cold]
    #[inline(never)]
    pub(crate) fn wait_for(&self, stamp: u64) {
        for _ in 0..SPINS {
            if self.reached(stamp) {
                return;
            }
            spin_loop();
        }
        self.waiters.fetch_add(1, Ordering::SeqCst);
        let mut g = lock(&self.wait_lock);
        while self.visible.load(Ordering::SeqCst) < stamp {
            g = self.advanced.wait(g).unwrap_or_else(|e| e.into_inner());
        }
        drop(g);
        self.waiters.fetch_sub(1, Ordering::Relaxed);
    }

    /// Writers blocked right now until a transaction becomes visible.
    pub(crate) fn blocked(&self) -> usize {
        self.waiters.load(Ordering::Relaxed)
    }

    /// [`wait_for`](Self::wait_for) without blocking the executor.
    pub(crate) async fn wait_for_async(&self, stamp: u64) {
        while !self.reached(stamp) {
            coherent_shard::yield_now().await;
        }
    }
}
