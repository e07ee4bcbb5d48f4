//! The held token (`Holding`): applying messages under it, each under
//! `catch_unwind`, draining the mailbox before the release, and failing
//! what is queued if a panic escapes the owner.

use super::*;

/// The token held. Every message is applied under `catch_unwind`: a panic
/// of user code run for it (a key's or value's `Hash`, `Eq`, `Clone` or
/// `Drop`; closures are caught closer still) answers that message's caller
/// with the panic, and the holder goes on with the next message (G6,
/// docs/guarantees.md). The clean-up in `drop` is for a panic outside user
/// code (a bug): then the queued messages are failed rather than stranded,
/// each caller gets `Lost`, and the leases their loads held end.
pub(super) struct Holding<'a, K, V> {
    pub(super) shard: &'a Shard<K, V>,
    /// Taken out only by `release` (which then forgets `self`) or `drop`.
    pub(super) owner: ManuallyDrop<Held<'a, Owner<K, V>>>,
    /// Raised while the token is held: a write from a key's or value's
    /// `Drop` run by the owner is refused, not deadlocked (`HeldFlag`).
    pub(super) flag: HeldFlag,
}

impl<'a, K, V> Holding<'a, K, V>
where
    K: Hash + Eq + Clone,
    V: Clone,
{
    pub(super) fn new(shard: &'a Shard<K, V>, owner: Held<'a, Owner<K, V>>) -> Self {
        Self {
            shard,
            owner: ManuallyDrop::new(owner),
            flag: HeldFlag::raise::<K, V>(),
        }
    }

    pub(super) fn owner(&mut self) -> &mut Owner<K, V> {
        &mut self.owner
    }

    /// Releases the token, draining first for as long as the release finds
    /// messages counted (out of line: the common release finds none).
    #[inline]
    pub(super) fn release(self) {
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
    pub(super) fn drain_and_release(mut self, mut queued: usize) {
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
    pub(super) fn apply(&mut self, hash: u64, op: Op<K, V>) -> Option<Reply<V>> {
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
    pub(super) fn write(
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
    pub(super) fn drain(&mut self, queued: usize) -> usize {
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
    pub(super) fn take_out(&self) -> Option<Envelope<K, V>> {
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
    pub(super) fn fail_queued(&self, mut owner: Held<'a, Owner<K, V>>) {
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
