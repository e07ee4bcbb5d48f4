//! The messages a shard applies, and its answers.

use crate::completion::Responder;

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
}

impl<K, V> std::fmt::Debug for Op<K, V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Op::Insert { .. } => "Insert",
            Op::Invalidate { .. } => "Invalidate",
            Op::Update { .. } => "Update",
            Op::LoadBegin { .. } => "LoadBegin",
            Op::Install { .. } => "Install",
            Op::Abandon { .. } => "Abandon",
        })
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
}
