//! Writes: a plain insert or removal, a write in the context of a
//! transaction, load or tags, building entries and putting them in the
//! table. Touches the table, the cells and the policy's bookkeeping
//! through `Owner`; readers see each change by one slot store.

use super::*;

impl<K, V> Owner<K, V>
where
    K: Hash + Eq + Clone,
    V: Clone,
{
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
    pub(super) fn quiet(&self) -> bool {
        self.pending.is_none() && self.leases.is_empty() && self.tags_of.is_empty()
    }

    /// `write` when a transaction, a load or a tag may be involved.
    #[inline(never)]
    pub(super) fn write_in_context(
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

    /// What a slot becomes when its key goes: empty if that cannot break a
    /// probe chain (the next slot is empty), else a tombstone.
    pub(super) fn vacancy(&self, i: usize) -> Put<K, V> {
        if self.slots().is_empty_at(self.slots().next(i)) {
            Put::Empty
        } else {
            Put::Tomb
        }
    }

    /// A new entry, in a freed entry's cell when there is one. `expiry`
    /// overrides the cache's default time to live and time to idle.
    #[inline]
    pub(super) fn new_entry(
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
    pub(super) fn new_entry_extended(
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
    pub(super) fn life(&mut self, expiry: Option<Expiry>) -> Life {
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
    pub(super) fn life_left(&self, i: usize) -> Option<Expiry> {
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
    pub(super) fn value_now(&self, i: usize) -> Option<&V> {
        match self.slots().view(i) {
            View::Live(e) if e.mortal() && !e.alive_at(self.settings.clock.now_ms()) => None,
            _ => self.slots().value_at(i),
        }
    }

    #[inline]
    pub(super) fn put(
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
    pub(super) fn place(&mut self, probe: Probe, entry: OwnedEntry<K, V>) {
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
    pub(super) fn replace_extras(&mut self, i: usize, entry: OwnedEntry<K, V>) {
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
    pub(super) fn replace_tracked(&mut self, i: usize, new: &OwnedEntry<K, V>) {
        let w = weigh(&self.settings, new.get());
        let table = self.table.as_ref().expect("an owner always has a table");
        if let (Some(p), View::Live(old)) = (self.policy.as_mut(), table.get().view(i)) {
            p.replace(i, old, new.get(), w);
        }
    }

    pub(super) fn remove(&mut self, hash: u64, key: &K) {
        if let Probe::Found(i) = self.slots().probe(hash, key) {
            self.untrack(i);
            // Nothing was ever placed past an empty slot on this chain since
            // the last rebuild, so if the next slot is empty the chain may
            // end here; otherwise leave a tombstone for readers to probe past.
            self.unlink(i, RemovalCause::Invalidated);
        }
    }
}
