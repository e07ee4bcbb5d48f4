//! A transaction's part in a shard: staging intents (`prepare`), folding
//! later writes into them, and resolving them at the commit's stamp
//! (finalize or roll back).

use super::*;

/// A transaction's part in this shard, between `Prepare` and `Finalize`.
///
/// Every key here has an intent in the table. Any later change to such a
/// key, or a write carrying one of `tags`, is folded into an intent with
/// the same stamp (it is ordered after the transaction and becomes visible
/// with it), and its caller waits for the watermark.
pub(super) struct Pending<K> {
    pub(super) stamp: u64,
    /// Keys with an intent of this stamp, with their hashes.
    pub(super) keys: HashMap<K, u64>,
    /// Keys whose intent holds a later plain write: a rollback keeps them.
    pub(super) folded: HashSet<K>,
    /// Tags the transaction invalidates here.
    pub(super) tags: HashSet<Tag>,
    /// Tags each key takes when its intent resolves with a value (a key
    /// not listed keeps the tags it had).
    pub(super) new_tags: HashMap<K, Vec<Tag>>,
}

impl<K: Hash + Eq> Pending<K> {
    pub(super) fn covers(&self, key: &K, tags: &[Tag]) -> bool {
        self.keys.contains_key(key) || tags.iter().any(|t| self.tags.contains(t))
    }
}

impl<K, V> Owner<K, V>
where
    K: Hash + Eq + Clone,
    V: Clone,
{
    /// Folds a write into the pending transaction (see `write`).
    pub(super) fn fold(
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
    pub(super) fn stage_at(
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
    pub(super) fn prepare(
        &mut self,
        stamp: u64,
        ops: Vec<TxnOp<K, V>>,
        published: &Published<K, V>,
    ) {
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
    pub(super) fn resolve_pending(&mut self, stamp: u64, commit: bool) {
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

    /// Whether `key`, or a value carrying `tags`, would join the pending
    /// transaction.
    pub(super) fn pending_covers(&self, key: &K, tags: &[Tag]) -> bool {
        self.pending.as_ref().is_some_and(|p| p.covers(key, tags))
    }
}
