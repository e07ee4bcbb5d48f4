//! The messages a shard applies, and its answers.

use crate::completion::Responder;
use crate::tag::Tag;

/// An update function: runs inside the owning shard on the current value and
/// returns the new one (`None` removes the key).
pub type UpdateFn<V> = Box<dyn FnOnce(Option<&V>) -> Option<V> + Send>;

/// A change or load step addressed to one shard. The shard applies its
/// messages one at a time, in the order it takes them from its mailbox.
pub enum Op<K, V> {
    /// Set `key` to `value`.
    Insert {
        /// The key.
        key: K,
        /// The new value.
        value: V,
    },
    /// Set `key` to `value`, carrying `tags` (replacing the tags it had).
    InsertTagged {
        /// The key.
        key: K,
        /// The new value.
        value: V,
        /// Its tags.
        tags: Vec<Tag>,
    },
    /// Set `key` to `value`, with its own expiry and optional tags.
    InsertExpiring {
        /// The key.
        key: K,
        /// The new value.
        value: V,
        /// Its tags (`None`: keep those it had).
        tags: Option<Vec<Tag>>,
        /// How long it lives (overrides the cache's defaults).
        expiry: crate::limits::Expiry,
    },
    /// Remove `key`.
    Invalidate {
        /// The key.
        key: K,
    },
    /// Replace the value of `key` with `f(current)`.
    Update {
        /// The key.
        key: K,
        /// Runs inside the shard; a panic is caught and answered as
        /// [`Reply::UpdatePanicked`].
        f: UpdateFn<V>,
    },
    /// Ask to load `key`: the answer ([`Reply::Hit`] or [`Reply::Lead`]) goes
    /// to `waiter`, possibly much later (when another caller's load ends).
    LoadBegin {
        /// The key.
        key: K,
        /// The tags the loaded value will carry: invalidating one of them
        /// while the load runs dooms it, like a write to `key` does.
        tags: Vec<Tag>,
        /// Where the answer goes.
        waiter: Responder<Reply<V>>,
    },
    /// The leader of a load brings its value: installed only if the lease
    /// `token` is still live (no write to `key` since the load began).
    Install {
        /// The key.
        key: K,
        /// What the loader returned.
        value: V,
        /// The lease the leader was given.
        token: u64,
    },
    /// The leader of a load gives up (its loader failed, panicked, or its
    /// future was dropped): the next waiter, if any, leads instead.
    Abandon {
        /// The key.
        key: K,
        /// The lease the leader was given.
        token: u64,
    },
    /// This shard's part of transaction `stamp`: stage `ops` (in order) as
    /// intents that readers see only once the cache's visibility watermark
    /// reaches `stamp`. Answered with [`Reply::Prepared`]. The hash of the
    /// envelope is unused; each op carries its own.
    Prepare {
        /// The transaction's stamp: the watermark value that makes it
        /// visible.
        stamp: u64,
        /// This shard's operations, in the transaction's order.
        ops: Vec<TxnOp<K, V>>,
    },
    /// The watermark reached `stamp`: replace its intents by plain entries.
    Finalize {
        /// The transaction.
        stamp: u64,
    },
    /// Close the shard: answer every load waiting here with
    /// [`Reply::Closed`], drop every entry, and from then on refuse every
    /// message with [`Reply::Closed`]. Messages queued before it are
    /// applied and answered as usual.
    Close,
    /// Transaction `stamp` will not commit: undo its intents (writes folded
    /// into them by later plain operations are kept and become visible
    /// when the watermark reaches `stamp`, which the committer still does).
    Rollback {
        /// The transaction.
        stamp: u64,
    },
}

/// One operation of a transaction, as the shard that applies it sees it.
pub enum TxnOp<K, V> {
    /// Set `key` to `value` with `tags` (empty: no tags).
    Insert {
        /// The key's hash.
        hash: u64,
        /// The key.
        key: K,
        /// The new value.
        value: V,
        /// Its tags.
        tags: Vec<Tag>,
    },
    /// Remove `key`.
    Invalidate {
        /// The key's hash.
        hash: u64,
        /// The key.
        key: K,
    },
    /// Remove every entry of this shard carrying the tag (as of this point
    /// in the transaction).
    InvalidateTag(Tag),
}

impl<K, V> std::fmt::Debug for TxnOp<K, V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TxnOp::Insert { tags, .. } => f
                .debug_struct("Insert")
                .field("tags", tags)
                .finish_non_exhaustive(),
            TxnOp::Invalidate { .. } => f.write_str("Invalidate"),
            TxnOp::InvalidateTag(t) => f.debug_tuple("InvalidateTag").field(t).finish(),
        }
    }
}

impl<K, V> std::fmt::Debug for Op<K, V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Op::Insert { .. } => "Insert",
            Op::InsertTagged { .. } => "InsertTagged",
            Op::InsertExpiring { .. } => "InsertExpiring",
            Op::Invalidate { .. } => "Invalidate",
            Op::Update { .. } => "Update",
            Op::LoadBegin { .. } => "LoadBegin",
            Op::Install { .. } => "Install",
            Op::Abandon { .. } => "Abandon",
            Op::Prepare { .. } => "Prepare",
            Op::Finalize { .. } => "Finalize",
            Op::Rollback { .. } => "Rollback",
            Op::Close => "Close",
        })
    }
}

impl<K, V> Op<K, V> {
    /// The lease a leader's `Install` or `Abandon` names: if applying the
    /// message panics, the shard ends that lease (`Owner::forget_lease`).
    pub(crate) fn lease_token(&self) -> Option<u64> {
        match self {
            Op::Install { token, .. } | Op::Abandon { token, .. } => Some(*token),
            _ => None,
        }
    }
}

/// A shard's answer to one message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply<V> {
    /// The change is applied and visible.
    Done,
    /// The update is applied and visible; this is the new value.
    Updated(Option<V>),
    /// The update function panicked; nothing was changed.
    UpdatePanicked(String),
    /// The key has this value (present, or just installed by the leader).
    Hit(V),
    /// Run the loader yourself; bring the value back with this token.
    Lead(u64),
    /// The loaded value is installed and visible.
    Installed,
    /// A write to the key committed while the load ran: the value was not
    /// cached.
    Discarded,
    /// The change is applied but joins a transaction in flight on this
    /// key (or tag): it becomes visible, with that transaction, once the
    /// cache's visibility watermark reaches this stamp. The caller waits for
    /// that before returning.
    DoneAt(u64),
    /// [`Reply::Updated`], visible once the watermark reaches the stamp.
    UpdatedAt(Option<V>, u64),
    /// This shard's part of the transaction is staged.
    Prepared,
    /// The shard is closed ([`Op::Close`]): nothing was applied.
    Closed,
    /// User code run by the shard for this message (a key's or value's
    /// `Hash`, `Eq`, `Clone` or `Drop`) panicked; the panic's message is
    /// kept. It reaches only this message's caller; the shard goes on.
    Panicked(String),
    /// To a caller waiting on a load: the load it waited for could not be
    /// installed (the leader's `Install` or `Abandon` panicked in the
    /// shard), and its lease is gone. Ask again (`LoadBegin`).
    Retry,
}
