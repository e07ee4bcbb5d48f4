//! Building a cache.

use crate::cache::Cache;
use crate::error::Error;
use std::hash::Hash;
use std::marker::PhantomData;

/// The most shards a cache may have.
pub const MAX_SHARDS: usize = 1 << 16;

/// Configures and builds a [`Cache`].
///
/// ```
/// let cache = coherent::Cache::<u64, String>::builder()
///     .shards(16)
///     .mailbox_capacity(256)
///     .initial_capacity(10_000)
///     .build()
///     .expect("valid configuration");
/// cache.insert(1, "one".to_owned()).unwrap();
/// assert_eq!(cache.get(&1).as_deref(), Some("one"));
///
/// // Bad settings are errors, not panics.
/// assert!(coherent::Cache::<u64, u64>::builder().shards(0).build().is_err());
/// ```
#[must_use]
pub struct CacheBuilder<K, V> {
    /// Shards bound write concurrency: writes to different shards never wait
    /// on each other. Reads do not care.
    shards: usize,
    /// Messages a shard queues before writers feel backpressure.
    mailbox_capacity: usize,
    /// Expected entries, so that early inserts do not rebuild tables.
    initial_capacity: usize,
    _types: PhantomData<fn(K, V)>,
}

impl<K, V> std::fmt::Debug for CacheBuilder<K, V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CacheBuilder")
            .field("shards", &self.shards)
            .field("mailbox_capacity", &self.mailbox_capacity)
            .field("initial_capacity", &self.initial_capacity)
            .finish()
    }
}

impl<K, V> Default for CacheBuilder<K, V> {
    fn default() -> Self {
        let cores = std::thread::available_parallelism().map_or(4, |n| n.get());
        Self {
            shards: (cores * 8).next_power_of_two().min(MAX_SHARDS),
            mailbox_capacity: 1024,
            initial_capacity: 0,
            _types: PhantomData,
        }
    }
}

impl<K, V> CacheBuilder<K, V>
where
    K: Hash + Eq + Clone + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
{
    /// Number of shards (default: 8 per core, rounded up to a power of two).
    /// Must be between 1 and [`MAX_SHARDS`].
    pub fn shards(mut self, n: usize) -> Self {
        self.shards = n;
        self
    }

    /// Messages one shard queues before writers wait for room (default
    /// 1024). Must be at least 1. No message is ever dropped.
    pub fn mailbox_capacity(mut self, n: usize) -> Self {
        self.mailbox_capacity = n;
        self
    }

    /// Entries expected, spread over the shards (default 0: tables grow).
    pub fn initial_capacity(mut self, n: usize) -> Self {
        self.initial_capacity = n;
        self
    }

    /// Builds the cache, or says which setting is wrong.
    pub fn build(self) -> Result<Cache<K, V>, Error> {
        if self.shards == 0 || self.shards > MAX_SHARDS {
            return Err(Error::InvalidConfig(format!(
                "shards must be between 1 and {MAX_SHARDS}, got {}",
                self.shards
            )));
        }
        if self.mailbox_capacity == 0 {
            return Err(Error::InvalidConfig(
                "mailbox_capacity must be at least 1".to_owned(),
            ));
        }
        let per_shard = self.initial_capacity.div_ceil(self.shards);
        Ok(Cache::from_parts(
            self.shards,
            self.mailbox_capacity,
            per_shard,
        ))
    }
}
