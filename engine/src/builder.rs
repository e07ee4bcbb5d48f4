//! Building a cache.

use crate::cache::Cache;
use crate::error::Error;
use coherent_shard::{Clock, Expiry, Listener, RemovalCause, ShardConfig, Weigher};
use std::hash::Hash;
use std::marker::PhantomData;
// `std`'s `Arc` on purpose: the closures are immutable configuration (sync.rs).
use std::sync::Arc;
use std::time::Duration;

/// The most shards a cache may have.
pub const MAX_SHARDS: usize = 1 << 16;

/// The deepest mailbox a shard may have
/// ([`CacheBuilder::mailbox_capacity`]): 65,536 messages, about 6 MiB a
/// shard for small keys and values, allocated when a writer first finds
/// that shard busy.
pub const MAX_MAILBOX_CAPACITY: usize = 1 << 16;

/// The most memory the mailboxes of one cache may take together, once
/// every shard's is allocated: 1 GiB. [`CacheBuilder::build`] refuses
/// `shards` and `mailbox_capacity` that need more together (the largest of
/// each, 65,536 shards of 65,536 messages, would need about 400 GiB for
/// small keys and values).
pub const MAX_MAILBOX_BYTES: usize = 1 << 30;

/// The smallest share of `max_capacity` a shard gets when the builder
/// picks the shard count.
const MIN_SHARE: u64 = 256;

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
    /// Whether `shards` was set by the caller (else it may be lowered to
    /// fit a small `max_capacity`).
    shards_set: bool,
    max_capacity: Option<u64>,
    weigher: Option<Weigher<K, V>>,
    expiry: Expiry,
    listener: Option<Listener<K, V>>,
    clock: Clock,
    /// Whether reads count hits and misses (`None`: when bounded).
    stats: Option<bool>,
    _types: PhantomData<fn(K, V)>,
}

impl<K, V> std::fmt::Debug for CacheBuilder<K, V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CacheBuilder")
            .field("shards", &self.shards)
            .field("mailbox_capacity", &self.mailbox_capacity)
            .field("initial_capacity", &self.initial_capacity)
            .field("max_capacity", &self.max_capacity)
            .field("weigher", &self.weigher.is_some())
            .field("expiry", &self.expiry)
            .field("listener", &self.listener.is_some())
            .finish()
    }
}

impl<K, V> Default for CacheBuilder<K, V> {
    fn default() -> Self {
        let cores = std::thread::available_parallelism().map_or(4, |n| n.get());
        Self {
            shards: (cores * 8).next_power_of_two().min(MAX_SHARDS),
            mailbox_capacity: 64,
            initial_capacity: 0,
            shards_set: false,
            max_capacity: None,
            weigher: None,
            expiry: Expiry::default(),
            listener: None,
            clock: Clock::system(),
            stats: None,
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
        self.shards_set = true;
        self
    }

    /// Bounds the cache to `n` entries, or to a total weight of `n` with a
    /// [`weigher`](Self::weigher). Each shard holds its share (`n` split
    /// evenly), evicting by S3-FIFO when a write takes it over (see
    /// `docs/guarantees.md`, G7, for the slack). Without a shard count of
    /// its own, a bounded cache gets at most one shard per 256 units of
    /// capacity (a power of two; a smaller share evicts worse); with one,
    /// `n` must be at least the shard count.
    ///
    /// ```
    /// let cache = coherent::Cache::<u64, u64>::builder().max_capacity(100).build().unwrap();
    /// for k in 0..1_000 {
    ///     cache.insert(k, k).unwrap();
    /// }
    /// assert!(cache.len() <= 100);
    /// ```
    pub fn max_capacity(mut self, n: u64) -> Self {
        self.max_capacity = Some(n);
        self
    }

    /// Weighs each entry against [`max_capacity`](Self::max_capacity)
    /// (default: every entry weighs 1). Runs in the shard, on each write;
    /// a panic in it is caught and the entry weighs 1.
    ///
    /// ```
    /// let cache = coherent::Cache::<u64, String>::builder()
    ///     .max_capacity(1_000) // bytes of values
    ///     .weigher(|_k, v: &String| v.len() as u32)
    ///     .build()
    ///     .unwrap();
    /// cache.insert(1, "x".repeat(600)).unwrap();
    /// cache.insert(2, "y".repeat(600)).unwrap();
    /// assert!(cache.weighted_size() <= 1_000);
    /// ```
    pub fn weigher(mut self, f: impl Fn(&K, &V) -> u32 + Send + Sync + 'static) -> Self {
        self.weigher = Some(Arc::new(f));
        self
    }

    /// Entries stop being returned `ttl` after they are written (default:
    /// never); the shard reclaims them. Per entry: `insert_with_expiry`.
    ///
    /// Times are whole milliseconds of the cache's [`clock`](Self::clock)
    /// (the system's advances every 1-4 ms), and one under 1 ms counts as
    /// 1 ms: an entry written with a zero time to live is still read until
    /// the clock next moves.
    ///
    /// ```
    /// use std::time::Duration;
    /// use coherent::{Cache, Clock};
    /// let clock = Clock::manual();
    /// let cache = Cache::<u64, u64>::builder()
    ///     .clock(clock.clone())
    ///     .time_to_live(Duration::ZERO)
    ///     .build()
    ///     .unwrap();
    /// cache.insert(1, 1).unwrap();
    /// assert_eq!(cache.get(&1), Some(1)); // the clock has not moved
    /// clock.advance(Duration::from_millis(1));
    /// assert_eq!(cache.get(&1), None);
    /// ```
    pub fn time_to_live(mut self, ttl: Duration) -> Self {
        self.expiry = self.expiry.with_ttl(ttl);
        self
    }

    /// Entries stop being returned once not read for `tti` (default:
    /// never); the shard reclaims them. Whole milliseconds, at least one,
    /// as for [`time_to_live`](Self::time_to_live).
    pub fn time_to_idle(mut self, tti: Duration) -> Self {
        self.expiry = self.expiry.with_tti(tti);
        self
    }

    /// Called for every entry that leaves the cache, with why: evicted,
    /// expired, invalidated or replaced. It runs in the shard that owned
    /// the entry, in the order of that shard's changes, after the change is
    /// visible, never on a reader's thread. Keep it short: the shard's
    /// writers wait for it. A panic in it is caught and logged; writing to
    /// the cache from it is refused (`Error::Reentrant`).
    ///
    /// ```
    /// use std::sync::{Arc, Mutex};
    /// use coherent::RemovalCause;
    /// let seen = Arc::new(Mutex::new(Vec::new()));
    /// let log = seen.clone();
    /// let cache = coherent::Cache::<u64, u64>::builder()
    ///     .removal_listener(move |k, v, cause| log.lock().unwrap().push((*k, *v, cause)))
    ///     .build()
    ///     .unwrap();
    /// cache.insert(1, 10).unwrap();
    /// cache.insert(1, 11).unwrap();
    /// cache.invalidate(&1).unwrap();
    /// assert_eq!(
    ///     *seen.lock().unwrap(),
    ///     [(1, 10, RemovalCause::Replaced), (1, 11, RemovalCause::Invalidated)]
    /// );
    /// ```
    pub fn removal_listener(
        mut self,
        f: impl Fn(&K, &V, RemovalCause) + Send + Sync + 'static,
    ) -> Self {
        self.listener = Some(Arc::new(f));
        self
    }

    /// Whether `get` counts hits and misses in [`Cache::stats`] (default:
    /// yes for a bounded cache, whose eviction policy tunes itself on them;
    /// no otherwise). Counting costs a `get` about 10% of its throughput
    /// on this project's machine (`docs/benchmarks.md`); the other
    /// statistics (loads, stale loads, evictions, expirations) are always
    /// counted, by the shards, at no cost to readers.
    ///
    /// ```
    /// let cache = coherent::Cache::<u64, u64>::builder().stats(true).build().unwrap();
    /// cache.insert(1, 1).unwrap();
    /// cache.get(&1);
    /// cache.get(&2);
    /// let s = cache.stats();
    /// assert_eq!((s.hits, s.misses), (1, 1));
    /// ```
    pub fn stats(mut self, on: bool) -> Self {
        self.stats = Some(on);
        self
    }

    /// The clock expiry is measured against (default: the system's
    /// monotonic clock; [`Clock::manual`] for tests).
    pub fn clock(mut self, clock: Clock) -> Self {
        self.clock = clock;
        self
    }

    /// Messages one shard queues before writers wait for room (default
    /// 64). Must be between 1 and [`MAX_MAILBOX_CAPACITY`], and the
    /// mailboxes of all shards together must fit in [`MAX_MAILBOX_BYTES`].
    /// No message is ever dropped. A shard's queue is allocated whole when
    /// a writer first finds the shard busy, about 100 bytes a message for
    /// small keys and values; a deeper one did not write faster from 16
    /// threads or 256 async tasks into one shard
    /// (`bench/profiling/mailbox_depth.rs`).
    ///
    /// ```
    /// use coherent::{Cache, MAX_MAILBOX_CAPACITY, MAX_SHARDS};
    /// let e = Cache::<u64, u64>::builder()
    ///     .shards(MAX_SHARDS)
    ///     .mailbox_capacity(MAX_MAILBOX_CAPACITY)
    ///     .build()
    ///     .unwrap_err();
    /// assert!(e.to_string().contains("mailboxes"), "{e}");
    /// ```
    ///
    /// ```
    /// use coherent::{Cache, MAX_MAILBOX_CAPACITY};
    /// assert!(Cache::<u64, u64>::builder().mailbox_capacity(256).build().is_ok());
    /// let e = Cache::<u64, u64>::builder()
    ///     .mailbox_capacity(MAX_MAILBOX_CAPACITY + 1)
    ///     .build()
    ///     .unwrap_err();
    /// assert!(e.to_string().contains("mailbox_capacity"), "{e}");
    /// ```
    pub fn mailbox_capacity(mut self, n: usize) -> Self {
        self.mailbox_capacity = n;
        self
    }

    /// Entries expected, spread over the shards (default 0: tables grow).
    /// A hint that sizes each shard's first table, so that filling the
    /// cache to `n` entries rebuilds none; tables still grow past it. A
    /// bounded cache without a weigher sizes for at most `max_capacity`
    /// entries. The tables are zeroed memory, which the system hands over
    /// as their slots are used. If it cannot hand over that much address
    /// space, [`build`](Self::build) says so, with
    /// [`Error::InvalidConfig`], rather than aborting.
    ///
    /// ```
    /// use coherent::{Cache, Error};
    /// let cache = Cache::<u64, u64>::builder().initial_capacity(100_000).build().unwrap();
    /// cache.insert(1, 1).unwrap();
    /// let e = Cache::<u64, u64>::builder().initial_capacity(usize::MAX).build().unwrap_err();
    /// assert!(matches!(e, Error::InvalidConfig(_)), "{e}");
    /// ```
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
        if self.mailbox_capacity == 0 || self.mailbox_capacity > MAX_MAILBOX_CAPACITY {
            return Err(Error::InvalidConfig(format!(
                "mailbox_capacity must be between 1 and {MAX_MAILBOX_CAPACITY}, got {}",
                self.mailbox_capacity
            )));
        }
        let mailboxes = coherent_shard::Shard::<K, V>::mailbox_bytes(self.mailbox_capacity)
            .saturating_mul(self.shards);
        if mailboxes > MAX_MAILBOX_BYTES {
            return Err(Error::InvalidConfig(format!(
                "{} shards with mailbox_capacity {} need {} MiB of mailboxes, more than the {} MiB allowed (MAX_MAILBOX_BYTES): use fewer shards or a smaller mailbox",
                self.shards,
                self.mailbox_capacity,
                mailboxes >> 20,
                MAX_MAILBOX_BYTES >> 20
            )));
        }
        let mut shards = self.shards;
        if let Some(cap) = self.max_capacity {
            if cap == 0 {
                return Err(Error::InvalidConfig(
                    "max_capacity must be at least 1".to_owned(),
                ));
            }
            if self.shards_set {
                if (cap as u128) < shards as u128 {
                    return Err(Error::InvalidConfig(format!(
                        "max_capacity ({cap}) must be at least the number of shards ({shards})"
                    )));
                }
            } else {
                // Each shard evicts within its own share, and a share of a
                // few entries evicts badly: keep shares of at least
                // MIN_SHARE (a small cache needs little write concurrency).
                let fit = usize::try_from(cap / MIN_SHARE)
                    .unwrap_or(usize::MAX)
                    .max(1);
                let fit = 1 << (usize::BITS - 1 - fit.leading_zeros()); // power of two below
                shards = shards.min(fit);
            }
        }
        let per_shard = self.initial_capacity.div_ceil(shards);
        let reads = coherent_shard::ReadCounts::new(shards);
        let configs = (0..shards)
            .map(|i| {
                let budget = self.max_capacity.map(|cap| {
                    let n = shards as u64;
                    cap / n + u64::from((i as u64) < cap % n)
                });
                // Without a weigher an entry weighs 1, so a shard holds
                // about its budget in entries at most (G7's slack aside):
                // a larger first table would stay mostly empty.
                let initial_capacity = match budget {
                    Some(b) if self.weigher.is_none() => {
                        per_shard.min(usize::try_from(b).unwrap_or(usize::MAX))
                    }
                    _ => per_shard,
                };
                ShardConfig {
                    mailbox_capacity: self.mailbox_capacity,
                    initial_capacity,
                    budget,
                    weigher: self.weigher.clone(),
                    expiry: self.expiry,
                    listener: self.listener.clone(),
                    clock: self.clock.clone(),
                    reads: Some((reads.clone(), i)),
                    count_reads: self.stats.unwrap_or(self.max_capacity.is_some()),
                }
            })
            .collect();
        Cache::from_configs(configs).map_err(|e| {
            Error::InvalidConfig(format!(
                "initial_capacity {} cannot be had: {e}",
                self.initial_capacity
            ))
        })
    }
}
