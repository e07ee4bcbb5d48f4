//! What bounds a shard: capacity, expiry, the removal listener, and the
//! statistics that describe it.

use crate::clock::Clock;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Why an entry left the cache (given to the removal listener).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RemovalCause {
    /// Evicted to keep the cache within its capacity.
    Evicted,
    /// Its time to live or time to idle ran out.
    Expired,
    /// Removed by `invalidate`, `invalidate_tag` or a transaction.
    Invalidated,
    /// Replaced by a new value for the same key.
    Replaced,
}

/// How long one entry lives, overriding the cache's defaults.
///
/// ```
/// use std::time::Duration;
/// let e = coherent_shard::Expiry::ttl(Duration::from_secs(60)).with_tti(Duration::from_secs(5));
/// assert_eq!(e.time_to_live(), Some(Duration::from_secs(60)));
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Expiry {
    ttl: Option<Duration>,
    tti: Option<Duration>,
}

impl Expiry {
    /// Expires `ttl` after it is written: whole milliseconds of the
    /// cache's clock, at least one.
    pub fn ttl(ttl: Duration) -> Self {
        Self {
            ttl: Some(ttl),
            tti: None,
        }
    }

    /// Expires once not read for `tti` (whole milliseconds, at least one).
    pub fn tti(tti: Duration) -> Self {
        Self {
            ttl: None,
            tti: Some(tti),
        }
    }

    /// Adds a time to idle.
    pub fn with_tti(mut self, tti: Duration) -> Self {
        self.tti = Some(tti);
        self
    }

    /// Adds a time to live.
    pub fn with_ttl(mut self, ttl: Duration) -> Self {
        self.ttl = Some(ttl);
        self
    }

    /// The time to live, if any.
    pub fn time_to_live(&self) -> Option<Duration> {
        self.ttl
    }

    /// The time to idle, if any.
    pub fn time_to_idle(&self) -> Option<Duration> {
        self.tti
    }
}

/// Weighs an entry against the cache's budget.
pub type Weigher<K, V> = Arc<dyn Fn(&K, &V) -> u32 + Send + Sync>;

/// Told of every removal, with its cause.
pub type Listener<K, V> = Arc<dyn Fn(&K, &V, RemovalCause) + Send + Sync>;

/// A shard's configuration.
pub struct ShardConfig<K, V> {
    /// Messages the mailbox holds before writers wait for room.
    pub mailbox_capacity: usize,
    /// Entries the read table starts with room for.
    pub initial_capacity: usize,
    /// This shard's weight budget (`None`: unbounded).
    pub budget: Option<u64>,
    /// Each entry's weight (default: 1).
    pub weigher: Option<Weigher<K, V>>,
    /// Default time to live and time to idle.
    pub expiry: Expiry,
    /// Told of every removal.
    pub listener: Option<Listener<K, V>>,
    /// What expiry is measured against.
    pub clock: Clock,
    /// Where readers count this shard's hits and misses, and its index
    /// there (`None`: counters of its own).
    pub reads: Option<(Arc<ReadCounts>, usize)>,
    /// Whether readers count hits and misses (the eviction policy's hill
    /// climber needs them).
    pub count_reads: bool,
}

impl<K, V> Default for ShardConfig<K, V> {
    fn default() -> Self {
        Self {
            mailbox_capacity: 64,
            initial_capacity: 0,
            budget: None,
            weigher: None,
            expiry: Expiry::default(),
            listener: None,
            clock: Clock::system(),
            reads: None,
            count_reads: false,
        }
    }
}

impl<K, V> std::fmt::Debug for ShardConfig<K, V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ShardConfig")
            .field("mailbox_capacity", &self.mailbox_capacity)
            .field("initial_capacity", &self.initial_capacity)
            .field("budget", &self.budget)
            .field("weigher", &self.weigher.is_some())
            .field("expiry", &self.expiry)
            .field("listener", &self.listener.is_some())
            .finish()
    }
}

/// Milliseconds in `d`, at least 1.
pub(crate) fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX).max(1)
}

/// The hits and misses of a cache's shards, counted by readers: one row
/// per thread stripe, each row holding a (hits, misses) pair per shard.
/// A thread counts into its own row with a relaxed load and store (no
/// locked instruction, no line another thread writes unless more threads
/// than rows read at once, when a count may be lost), and touches one line
/// per eight shards rather than one per shard.
#[derive(Debug)]
pub struct ReadCounts {
    /// log2 of a row's length in counters (a power of two with a spare
    /// line, so that rows never share a cache line).
    row_shift: u32,
    rows_mask: usize,
    counts: Arc<[AtomicU64]>,
}

/// The row of the current thread: threads take the next index in turn.
#[inline]
fn stripe_index() -> usize {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    std::thread_local! {
        static INDEX: std::cell::Cell<usize> = const { std::cell::Cell::new(usize::MAX) };
    }
    INDEX.with(|i| {
        let v = i.get();
        if v != usize::MAX {
            return v;
        }
        let v = NEXT.fetch_add(1, Ordering::Relaxed);
        i.set(v);
        v
    })
}

impl ReadCounts {
    /// Counters for `shards` shards.
    pub fn new(shards: usize) -> Arc<Self> {
        let cores = std::thread::available_parallelism().map_or(4, |n| n.get());
        let rows = (cores * 2).next_power_of_two();
        // A (hits, misses) pair per shard, then a spare line of 16.
        let row = (shards * 2 + 16).next_power_of_two();
        Arc::new(Self {
            row_shift: row.trailing_zeros(),
            rows_mask: rows - 1,
            counts: (0..rows * row).map(|_| AtomicU64::new(0)).collect(),
        })
    }

    /// Where shard `shard`'s readers count, held by the shard itself
    /// ([`ReadCounter`]).
    pub(crate) fn counter(&self, shard: usize) -> ReadCounter {
        ReadCounter {
            counts: self.counts.clone(),
            row_shift: self.row_shift,
            rows_mask: self.rows_mask,
            pair: shard * 2,
        }
    }

    /// Hits and misses of shard `shard` so far.
    pub(crate) fn of(&self, shard: usize) -> (u64, u64) {
        (0..=self.rows_mask).fold((0, 0), |(hits, misses), r| {
            let at = (r << self.row_shift) + shard * 2;
            (
                hits + self.counts[at].load(Ordering::Relaxed),
                misses + self.counts[at + 1].load(Ordering::Relaxed),
            )
        })
    }
}

/// One shard's way into its cache's [`ReadCounts`], kept in the shard's
/// read side so that counting a read loads nothing but the counter: the
/// counters' address and length, the row arithmetic and the shard's pair
/// sit beside the table pointer `get` has just read. Going through the
/// shared `ReadCounts` instead costs one more dependent load, and its
/// fields: counting was then about 13% of a bounded `get` (docs/design.md, "The bounded `get` and the bounded
/// write").
#[derive(Debug)]
pub(crate) struct ReadCounter {
    counts: Arc<[AtomicU64]>,
    row_shift: u32,
    rows_mask: usize,
    /// Where this shard's (hits, misses) pair starts in a row.
    pair: usize,
}

impl ReadCounter {
    /// Counts one read, a hit or a miss.
    #[inline]
    pub(crate) fn count(&self, hit: bool) {
        let i =
            ((stripe_index() & self.rows_mask) << self.row_shift) + self.pair + usize::from(!hit);
        if let Some(c) = self.counts.get(i) {
            // Relaxed load and store, not `fetch_add`: a statistic, written
            // by this thread's row alone in the common case (`ReadCounts`).
            c.store(c.load(Ordering::Relaxed) + 1, Ordering::Relaxed);
        }
    }
}

/// A shard's statistics: hits and misses from the cache's [`ReadCounts`],
/// the rest counted by the owner.
#[derive(Debug)]
pub(crate) struct ShardStats {
    pub(crate) reads: Arc<ReadCounts>,
    pub(crate) index: usize,
    pub(crate) evictions: AtomicU64,
    pub(crate) expirations: AtomicU64,
    pub(crate) loads: AtomicU64,
    pub(crate) stale_loads: AtomicU64,
    /// The bounded shard's total weight, as of its last change.
    pub(crate) weight: AtomicU64,
}

impl ShardStats {
    pub(crate) fn new(reads: Arc<ReadCounts>, index: usize) -> Self {
        Self {
            reads,
            index,
            evictions: AtomicU64::new(0),
            expirations: AtomicU64::new(0),
            loads: AtomicU64::new(0),
            stale_loads: AtomicU64::new(0),
            weight: AtomicU64::new(0),
        }
    }

    /// Hits and misses so far.
    pub(crate) fn reads(&self) -> (u64, u64) {
        self.reads.of(self.index)
    }

    /// Adds one to an owner-side count.
    pub(crate) fn bump(c: &AtomicU64) {
        // Relaxed: a statistic; only the owner writes it.
        c.fetch_add(1, Ordering::Relaxed);
    }
}

/// A snapshot of a shard's statistics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    /// Reads that found a value.
    pub hits: u64,
    /// Reads that found none (absent, or expired).
    pub misses: u64,
    /// Loads completed (`get_or_load` loaders that returned a value, kept
    /// or discarded).
    pub loads: u64,
    /// Loaded values discarded because a write raced the load (G3).
    pub stale_loads: u64,
    /// Entries evicted for capacity.
    pub evictions: u64,
    /// Entries removed because they expired.
    pub expirations: u64,
}

impl Stats {
    /// Adds `other` to these.
    pub fn add(&mut self, other: &Stats) {
        self.hits += other.hits;
        self.misses += other.misses;
        self.loads += other.loads;
        self.stale_loads += other.stale_loads;
        self.evictions += other.evictions;
        self.expirations += other.expirations;
    }

    /// Hits over reads (0 when there were none).
    pub fn hit_ratio(&self) -> f64 {
        let reads = self.hits + self.misses;
        if reads == 0 {
            0.0
        } else {
            self.hits as f64 / reads as f64
        }
    }
}

impl ShardStats {
    pub(crate) fn snapshot(&self) -> Stats {
        let (hits, misses) = self.reads();
        Stats {
            hits,
            misses,
            loads: self.loads.load(Ordering::Relaxed),
            stale_loads: self.stale_loads.load(Ordering::Relaxed),
            evictions: self.evictions.load(Ordering::Relaxed),
            expirations: self.expirations.load(Ordering::Relaxed),
        }
    }
}
