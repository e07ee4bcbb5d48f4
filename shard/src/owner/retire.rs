//! Growing the table and retiring what readers may still hold: the
//! rebuild, the garbage batches and their frees (reclaim.rs decides when).

use super::*;

/// Frees a batch of retired items that no reader can hold any more,
/// giving entries' cells back to `cells` for later writes. Keys and values
/// are dropped flagged as a closure (see `Owner::retire`); types without
/// drop glue run no user code here, and skip the flag.
///
/// A retired key or value belongs to no caller any more, so a panic of its
/// `Drop` here reaches none: it is caught and logged, and the rest of the
/// batch is freed (the panicking entry's cell is not reused).
pub(super) fn free_batch<K, V>(cells: &mut Cells, batch: &mut Vec<Retired<K, V>>) {
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

impl<K, V> Owner<K, V>
where
    K: Hash + Eq + Clone,
    V: Clone,
{
    /// Keeps at least a third of the slots empty after one more insert,
    /// rebuilding (bigger, or just without tombstones) when needed. Loads
    /// between 1/3 and 2/3 keep hits at about 1.5 probes; at 80% a `get`
    /// ran 40% more instructions and missed L1 50% more often, measured
    /// with cachegrind (docs/design.md). Returns whether it rebuilt (slot
    /// numbers from before no longer hold).
    #[inline(always)]
    pub(super) fn reserve(&mut self, published: &Published<K, V>) -> bool {
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
    pub(super) fn rebuild(&mut self, published: &Published<K, V>) {
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
    pub(super) fn retire(&mut self, item: Retired<K, V>) {
        let cells = &mut self.cells;
        self.garbage
            .retire_with(item, &mut |batch| free_batch(cells, batch));
    }

    /// Retires what a slot held (entries and intents readers may hold).
    #[inline(always)]
    pub(super) fn retire_was(&mut self, was: Was<K, V>) {
        match was {
            Was::Live(e) => self.retire(Retired::entry(e)),
            Was::Intent(it) => self.retire_intent(it),
            Was::Empty | Was::Tomb => {}
        }
    }

    /// Retires an intent and both its entries (off the common path).
    #[cold]
    pub(super) fn retire_intent(&mut self, intent: OwnedIntent<K, V>) {
        let (new, old, shell) = intent.split();
        for e in [new, old].into_iter().flatten() {
            self.retire(Retired::entry(e));
        }
        self.retire(Retired::Intent(shell));
    }
}
