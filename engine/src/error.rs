//! Errors.

use std::fmt;

/// Why a cache operation failed.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Error {
    /// The builder was given a setting it cannot honour; the message says
    /// which and why.
    InvalidConfig(String),
    /// A write or load was called from code the cache runs as the owner
    /// of a shard: an `update` closure, the removal listener, the weigher,
    /// or the `Drop` of a key or value the shard is letting go of (the key
    /// of a write that replaced a value in place, a replaced or removed
    /// entry). Waiting on a shard from there could wait on itself, or on a
    /// thread waiting on this one; nothing was changed. Reads (`get`) are
    /// fine there.
    Reentrant,
    /// The `update` closure panicked (the panic's message is kept). Nothing
    /// was changed and the cache goes on serving.
    UpdatePanicked(String),
    /// This operation's own key or value panicked inside its shard (its
    /// `Hash`, `Eq`, `Clone` or `Drop`; the panic's message is kept). Only
    /// this caller is told: operations queued beside it are applied and
    /// answered as usual, and the cache goes on serving. The operation may
    /// or may not have been applied (read the key to know); a transaction
    /// that fails this way applied nothing.
    Panicked(String),
    /// The shard dropped this operation unanswered. A `get_or_load` whose
    /// own key's `Hash` or `Eq` panicked in its shard ends this way;
    /// otherwise only a bug in the cache does. The operation may or may not
    /// have been applied; the cache goes on serving.
    Lost,
    /// A `try_` write ([`Cache::try_insert`](crate::Cache::try_insert) and
    /// the like) found its shard busy and the shard's mailbox full: nothing
    /// was queued and nothing changed. The plain and async forms wait for
    /// room instead (backpressure); the mailbox's size is
    /// [`CacheBuilder::mailbox_capacity`](crate::CacheBuilder::mailbox_capacity).
    Full,
    /// The cache was closed ([`Cache::close`](crate::Cache::close)):
    /// nothing was changed or queued. Every later write, update, load and
    /// transaction fails this way; `get` finds nothing.
    Closed,
    /// A write on a replicated cache ([`Replica`](crate::replica::Replica),
    /// feature `redis`) could not be confirmed: the other replicas may
    /// still serve the value it replaced or invalidated. The change stands
    /// on this replica, which stops serving, keeps the invalidation, and
    /// publishes it again before it serves again. Retry the write (it is
    /// idempotent) if the others must see it now; the message says what
    /// failed. If this process ends before it publishes, the others keep
    /// the old value until it expires: give replicated entries a time to
    /// live as the backstop.
    Unconfirmed(String),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::InvalidConfig(why) => write!(f, "invalid cache configuration: {why}"),
            Error::Reentrant => f.write_str(
                "cache write called from inside an update closure, listener or drop run by a shard (would wait on its own shard)",
            ),
            Error::UpdatePanicked(msg) => {
                write!(f, "update closure panicked, nothing was changed: {msg}")
            }
            Error::Panicked(msg) => write!(
                f,
                "this operation's key or value panicked in its shard (may or may not be applied): {msg}"
            ),
            Error::Lost => f.write_str("a shard dropped this operation unanswered"),
            Error::Full => f.write_str(
                "the shard is busy and its mailbox is full; nothing was queued or changed",
            ),
            Error::Unconfirmed(why) => write!(
                f,
                "the write stands here but could not be confirmed on the other replicas: {why}"
            ),
            Error::Closed => f.write_str("the cache is closed; nothing was changed"),
        }
    }
}

impl std::error::Error for Error {}

/// Why `get_or_load` produced no value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LoadError<E> {
    /// The loader returned this error. It reaches only the caller whose
    /// loader it was; other callers waiting for the key run their own.
    Loader(E),
    /// The loader panicked (the panic's message is kept). Like an error, it
    /// reaches only this caller.
    LoaderPanicked(String),
    /// The cache itself refused or failed the operation.
    Cache(Error),
}

impl<E: fmt::Display> fmt::Display for LoadError<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LoadError::Loader(e) => write!(f, "loader failed: {e}"),
            LoadError::LoaderPanicked(msg) => write!(f, "loader panicked: {msg}"),
            LoadError::Cache(e) => e.fmt(f),
        }
    }
}

impl<E: std::error::Error + 'static> std::error::Error for LoadError<E> {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            LoadError::Loader(e) => Some(e),
            LoadError::Cache(e) => Some(e),
            LoadError::LoaderPanicked(_) => None,
        }
    }
}

impl<E> From<Error> for LoadError<E> {
    fn from(e: Error) -> Self {
        LoadError::Cache(e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_say_what_happened() {
        assert!(Error::Reentrant
            .to_string()
            .contains("inside an update closure"));
        assert!(Error::UpdatePanicked("x".into())
            .to_string()
            .contains("nothing was changed: x"));
        let e: LoadError<std::io::Error> = LoadError::Loader(std::io::Error::other("db down"));
        assert_eq!(e.to_string(), "loader failed: db down");
        assert!(std::error::Error::source(&e).is_some());
        let e: LoadError<std::io::Error> = Error::Lost.into();
        assert!(matches!(e, LoadError::Cache(Error::Lost)));
    }
}
