//! Leases for loads in flight (`get_or_load`): who leads, who waits,
//! which loads a write dooms, and how a lease ends when its leader
//! installs, abandons or panics.

use super::*;

/// A load in flight for one key (the memcache lease idea).
pub(super) struct Lease<V> {
    /// Identifies this lease; an `Install` must bring the same token.
    pub(super) token: u64,
    /// The tags the loaded value will carry; invalidating one dooms it.
    pub(super) tags: Vec<Tag>,
    /// A write to the key committed since the load began: the leader's value
    /// will be discarded, and the waiters will be served by a fresh load.
    pub(super) doomed: bool,
    /// Callers that asked for the key while the load ran.
    pub(super) waiters: Vec<Responder<Reply<V>>>,
}

impl<K, V> Owner<K, V>
where
    K: Hash + Eq + Clone,
    V: Clone,
{
    /// Dooms the load of `key` in flight, if any, without answering its
    /// waiters (they load afresh).
    pub(super) fn doom_lease(&mut self, key: &K) {
        if self.leases.is_empty() {
            return;
        }
        if let Some(lease) = self.leases.get_mut(key) {
            lease.doomed = true;
        }
    }

    pub(super) fn load_begin(
        &mut self,
        hash: u64,
        key: K,
        tags: Vec<Tag>,
        waiter: Responder<Reply<V>>,
    ) {
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

    pub(super) fn install(
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
    pub(super) fn promote(&mut self, key: K) {
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
    pub(super) fn cancel_lease(&mut self, key: &K, new_value: Option<&V>) {
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

    pub(super) fn token(&mut self) -> u64 {
        self.next_token += 1;
        self.next_token
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
