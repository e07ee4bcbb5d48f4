//! Eviction and expiry: the policy's bookkeeping for each entry, the
//! sweep for expired entries, and unlinking an entry with the cause the
//! removal listener hears.

use super::*;

/// Slots examined for expired entries per write, once entries can expire.
pub(super) const SWEEP: usize = 8;

/// A bounded shard's policy observes the read statistics once per this
/// many writes.
pub(super) const OBSERVE_EVERY: u32 = 64;

/// The weight of `e` against the budget (1 without a weigher; 1 too if
/// the weigher panics, which is logged). Inline, with the weigher's call
/// out of line: a bounded write without a weigher paid the call's
/// register saves for a `1` (15 instructions, callgrind).
#[inline(always)]
pub(super) fn weigh<K, V>(settings: &Settings<K, V>, e: EntryRef<'_, K, V>) -> u32 {
    match &settings.weigher {
        None => 1,
        Some(w) => weigh_with(w, e),
    }
}

/// [`weigh`] with a weigher.
#[inline(never)]
pub(super) fn weigh_with<K, V>(w: &Weigher<K, V>, e: EntryRef<'_, K, V>) -> u32 {
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

impl<K, V> Owner<K, V>
where
    K: Hash + Eq + Clone,
    V: Clone,
{
    /// Starts tracking the entry in slot `i` for eviction (it just became
    /// a plain entry).
    pub(super) fn track(&mut self, i: usize) {
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
    pub(super) fn untrack(&mut self, i: usize) {
        let Some(p) = self.policy.as_mut() else {
            return;
        };
        let table = self.table.as_ref().expect("an owner always has a table");
        if let View::Live(e) = table.get().view(i) {
            p.remove(e, table.get());
        }
    }

    /// Tells the listener that `e` left, and counts it.
    pub(super) fn notify(&self, e: EntryRef<'_, K, V>, cause: RemovalCause) {
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
    pub(super) fn cause(&self, e: EntryRef<'_, K, V>, otherwise: RemovalCause) -> RemovalCause {
        if e.mortal() && !e.alive_at(self.settings.clock.now_ms()) {
            RemovalCause::Expired
        } else {
            otherwise
        }
    }

    /// After a change: evicts while over budget, sweeps a few slots for
    /// expired entries, and lets the climber look at the statistics.
    #[inline]
    pub(super) fn maintain(&mut self) {
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
    pub(super) fn maintain_slow(&mut self) {
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
    pub(super) fn sweep(&mut self) {
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
    pub(super) fn unlink(&mut self, i: usize, cause: RemovalCause) {
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
}
