//! The `Cache` handle: routing keys to shards, reads, and writes.

use crate::builder::CacheBuilder;
use crate::error::Error;
use crate::sync::{Arc, Hasher, Ordering, Shards};
use crate::visibility::Watermark;
use coherent_shard::{Expiry, Op, Reply, Shard, Stats, SubmitError, Tag, TxnOp, Visible};
use std::borrow::Borrow;
use std::hash::{BuildHasher, Hash};

/// How many lock-free tries of [`Cache::get_many`] a commit may overtake
/// before it reads holding the commit lock. Two: beside 1,000 to 16,000
/// unrelated commits a second on this project's 2-core machine, reads of
/// 100,000 keys kept their p99 within 0.67-1.18x of the quiet p99 with
/// two (four runs), 1.26-1.61x with three (`--bin get_many`,
/// docs/benchmarks.md).
pub const GET_MANY_OPTIMISTIC_READS: u32 = 2;

/// Keys [`Cache::get_many`] reads between two looks at the watermark: a
/// commit ends a lock-free try within this many keys (a few microseconds).
const GET_MANY_CHUNK: usize = 256;

/// A concurrent cache that never serves stale data.
///
/// `Cache` is a cheap handle (`Clone` shares the same cache); the cache and
/// everything in it is freed when the last handle is dropped. There are no
/// background threads to stop: a shard's writer is whichever caller holds
/// its token at the moment.
///
/// Memory: an entry of up to 64 bytes (hash, key and value, plus eviction
/// and expiry bookkeeping when configured) lives in a cell its shard
/// carved and reuses once the entry is gone, so removing entries does not
/// shrink the cache's memory: it keeps the cells of as many entries as it
/// ever held at once, until the last handle is dropped (as a `Vec` keeps
/// its capacity). Larger entries are allocated and freed one by one.
///
/// ```
/// use coherent::Cache;
///
/// let cache: Cache<&str, u64> = Cache::new();
/// cache.insert("a", 1).unwrap();            // visible when it returns
/// assert_eq!(cache.get("a"), Some(1));      // lock-free, never waits
/// cache.update("a", |v| v.map(|n| n + 1)).unwrap(); // atomic read-modify-write
/// assert_eq!(cache.get("a"), Some(2));
/// cache.invalidate(&"a").unwrap();
/// assert_eq!(cache.get("a"), None);
/// ```
pub struct Cache<K, V> {
    /// What `get` reads, held in the handle itself: the shards and the
    /// hasher are one load away from `&self`, not two (through another `Arc`). A
    /// `get` is a chain of dependent loads (handle, shard, table, slot,
    /// entry), and each L1 hit in it is about 5 cycles of a ~90-cycle `get`.
    shards: Shards<K, V>,
    /// One hasher for routing and probing, seeded per cache so that keys
    /// chosen by an attacker cannot collide on purpose. foldhash's
    /// `quality` variant, not `fast`: the shard is chosen from the top 32
    /// bits and the slot tag from bits 40-63, and with `fast` some process
    /// seeds sent 100 sequential integer keys to only 7 of 8 shards (8 runs
    /// in 300; `quality` adds one multiply).
    hasher: Hasher,
    /// Which transactions readers see, and the lock that orders commits
    /// (`visibility.rs`, `txn.rs`); shared by every handle.
    watermark: Arc<Watermark>,
}

impl<K, V> Clone for Cache<K, V> {
    fn clone(&self) -> Self {
        Self {
            shards: self.shards.clone(),
            hasher: self.hasher.clone(),
            watermark: self.watermark.clone(),
        }
    }
}

impl<K, V> std::fmt::Debug for Cache<K, V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cache")
            .field("shards", &self.shards.len())
            .finish_non_exhaustive()
    }
}

impl<K, V> Default for Cache<K, V>
where
    K: Hash + Eq + Clone + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
{
    fn default() -> Self {
        Self::new()
    }
}

impl<K, V> Cache<K, V>
where
    K: Hash + Eq + Clone + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
{
    /// A cache with the default settings (see [`CacheBuilder`]).
    pub fn new() -> Self {
        Self::builder()
            .build()
            .expect("the default configuration is valid")
    }

    /// Starts configuring a cache.
    pub fn builder() -> CacheBuilder<K, V> {
        CacheBuilder::default()
    }

    /// A cache of one shard per config, or the first shard whose table
    /// could not be allocated (none is kept).
    pub(crate) fn from_configs(
        configs: Vec<coherent_shard::ShardConfig<K, V>>,
    ) -> Result<Self, coherent_shard::TableTooLarge> {
        let built = configs
            .into_iter()
            .map(Shard::try_with_config)
            .collect::<Result<Vec<_>, _>>()?;
        let shards = crate::sync::shards(built.into_iter());
        let hasher = crate::sync::hasher();
        Ok(Self {
            shards,
            hasher,
            watermark: Arc::new(Watermark::new()),
        })
    }

    /// Returns a clone of the value of `key`, if cached.
    ///
    /// Lock-free: it never waits, never takes a lock and never sends a
    /// message. It sees every write that returned before it started (G1).
    #[inline]
    pub fn get<Q>(&self, key: &Q) -> Option<V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let hash = self.hash(key);
        self.shard(hash)
            .get(hash, key, Visible::Live(self.watermark.current()))
    }

    /// Reads several keys at once, as one snapshot with respect to
    /// transactions: for every transaction, the result shows all of its
    /// effects on these keys or none of them (G2).
    ///
    /// It reads without a lock, like [`get`](Self::get), and checks that
    /// no transaction committed meanwhile; if one did, it reads again. A
    /// read overtaken [`GET_MANY_OPTIMISTIC_READS`] times in a row (a large
    /// read beside frequent commits) reads once more holding the commit
    /// lock, which no commit can overtake: it then waits for at most the
    /// commit in progress (microseconds), and commits wait for it. So it
    /// finishes in bounded time whatever the commit rate
    /// (docs/benchmarks.md, "get_many under commits"). Called from code a
    /// shard runs (an update closure, the listener), where taking the lock
    /// could wait on its own shard, it keeps reading without it.
    ///
    /// ```
    /// let cache = coherent::Cache::<u64, &str>::new();
    /// cache.transaction().insert(1, "a").insert(2, "b").commit().unwrap();
    /// assert_eq!(cache.get_many(&[1, 2, 3]), vec![Some("a"), Some("b"), None]);
    /// ```
    pub fn get_many<'a, Q, I>(&self, keys: I) -> Vec<Option<V>>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized + 'a,
        I: IntoIterator<Item = &'a Q>,
    {
        let keys: Vec<(u64, &Q)> = keys.into_iter().map(|k| (self.hash(k), k)).collect();
        let watermark = self.watermark.current();
        // Acquire: as in `get`; pairs with the committer's Release store.
        let mut seen = watermark.load(Ordering::Acquire);
        let mut tries = 0;
        // Held for the last read, once lock-free reads were overtaken.
        let mut turn = None;
        let mut values = Vec::with_capacity(keys.len());
        loop {
            values.clear();
            let mut overtaken = false;
            for chunk in keys.chunks(GET_MANY_CHUNK) {
                values.extend(
                    chunk
                        .iter()
                        .map(|&(hash, key)| self.shard(hash).get(hash, key, Visible::At(seen))),
                );
                if turn.is_some() {
                    continue;
                }
                // No transaction committed so far (each slot load is
                // Acquire, so one that saw a later commit's finalized
                // entry makes this load see that commit's watermark). A
                // commit ends this try at once rather than at its end.
                let now = watermark.load(Ordering::Acquire);
                if now != seen {
                    seen = now;
                    overtaken = true;
                    break;
                }
            }
            if !overtaken {
                return values;
            }
            tries += 1;
            if tries >= GET_MANY_OPTIMISTIC_READS && !coherent_shard::in_update_closure() {
                // Stamps are published only under the commit lock: holding
                // it, the watermark cannot move, and every intent in the
                // table is stamped at or below it, so one read at it is a
                // snapshot.
                turn = Some(self.watermark.lock_commit());
                seen = watermark.load(Ordering::Acquire);
            }
        }
    }

    /// Whether `key` is cached. Lock-free, like [`get`](Self::get).
    pub fn contains_key<Q>(&self, key: &Q) -> bool
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.get(key).is_some()
    }

    /// Sets `key` to `value`; returns once every `get` that starts
    /// afterwards, on any thread, sees it. A load of `key` in flight will
    /// not install its (older) value over this one.
    ///
    /// A value of one machine word (`u64`, `f64`, `usize`, `bool`...: no
    /// drop glue, 1, 2, 4 or 8 bytes aligned to its size) replacing the
    /// value of a cached key is stored in place with one atomic store,
    /// where the cache has no removal listener and no default expiry; the
    /// key keeps the key object it was first inserted with, as
    /// `HashMap::insert` does. Other values replace the whole entry.
    ///
    /// ```
    /// let cache = coherent::Cache::<u64, u64>::new();
    /// cache.insert(1, 10).unwrap();
    /// cache.insert(1, 11).unwrap(); // in place: a `u64` is one word
    /// assert_eq!(cache.get(&1), Some(11));
    /// ```
    pub fn insert(&self, key: K, value: V) -> Result<(), Error> {
        // No trace event here or in `invalidate`: a disabled one still
        // costs its callsite check, 5 instructions of a 250-instruction
        // write (callgrind; docs/design.md, "Instructions on the insert
        // path").
        let hash = self.hash(&key);
        self.write(hash, key, Some(value))
    }

    /// [`insert`](Self::insert) for async code: resolves once the value is
    /// visible. If the future is dropped after the write was queued, the
    /// write still happens.
    pub async fn insert_async(&self, key: K, value: V) -> Result<(), Error> {
        let hash = self.hash(&key);
        self.submit_async(hash, Op::Insert { key, value })
            .await
            .map(drop)
    }

    /// [`insert`](Self::insert), except that it does not wait for room when
    /// the key's shard is busy and its mailbox is full: it returns
    /// [`Error::Full`] and changes nothing. Otherwise it returns, like
    /// `insert`, once the value is visible.
    ///
    /// ```
    /// let cache = coherent::Cache::<u64, &str>::new();
    /// match cache.try_insert(1, "a") {
    ///     Ok(()) => assert_eq!(cache.get(&1), Some("a")),
    ///     Err(coherent::Error::Full) => { /* shed the write, or retry later */ }
    ///     Err(e) => panic!("{e}"),
    /// }
    /// ```
    pub fn try_insert(&self, key: K, value: V) -> Result<(), Error> {
        let hash = self.hash(&key);
        tracing::trace!(hash, "try_insert");
        self.try_submit(hash, Op::Insert { key, value }).map(drop)
    }

    /// Sets `key` to `value`, carrying `tags` (any strings or integers, see
    /// [`Tag`]); [`invalidate_tag`](Self::invalidate_tag) on any of them
    /// removes it. Replaces the tags the key had. Visible when it returns,
    /// like [`insert`](Self::insert).
    ///
    /// ```
    /// let cache = coherent::Cache::<&str, u64>::new();
    /// cache.insert_tagged("profile:42", 1, ["user:42"]).unwrap();
    /// cache.insert_tagged("feed:42", 2, ["user:42", "feeds"]).unwrap();
    /// cache.invalidate_tag("user:42").unwrap();
    /// assert_eq!(cache.get("profile:42"), None);
    /// assert_eq!(cache.get("feed:42"), None);
    /// ```
    pub fn insert_tagged<T>(&self, key: K, value: V, tags: T) -> Result<(), Error>
    where
        T: IntoIterator,
        T::Item: Into<Tag>,
    {
        let hash = self.hash(&key);
        tracing::trace!(hash, "insert_tagged");
        let tags = coherent_shard::tags(tags);
        self.submit(hash, Op::InsertTagged { key, value, tags })
            .map(drop)
    }

    /// [`insert_tagged`](Self::insert_tagged) for async code.
    pub async fn insert_tagged_async<T>(&self, key: K, value: V, tags: T) -> Result<(), Error>
    where
        T: IntoIterator,
        T::Item: Into<Tag>,
    {
        let hash = self.hash(&key);
        let tags = coherent_shard::tags(tags);
        self.submit_async(hash, Op::InsertTagged { key, value, tags })
            .await
            .map(drop)
    }

    /// Sets `key` to `value` with its own time to live and/or time to
    /// idle, overriding the cache's (see [`Expiry`](crate::Expiry)).
    /// Visible when it returns, like [`insert`](Self::insert). An
    /// [`update`](Self::update) keeps this expiry; a later `insert`,
    /// `insert_tagged` or transaction insert of the key replaces the entry,
    /// which then takes the cache's default.
    ///
    /// ```
    /// use std::time::Duration;
    /// use coherent::{Cache, Clock, Expiry};
    /// let clock = Clock::manual();
    /// let cache = Cache::<&str, u64>::builder().clock(clock.clone()).build().unwrap();
    /// cache.insert_with_expiry("session", 7, Expiry::ttl(Duration::from_secs(30))).unwrap();
    /// assert_eq!(cache.get("session"), Some(7));
    /// clock.advance(Duration::from_secs(30));
    /// assert_eq!(cache.get("session"), None); // expired: never returned
    /// ```
    pub fn insert_with_expiry(&self, key: K, value: V, expiry: Expiry) -> Result<(), Error> {
        let hash = self.hash(&key);
        tracing::trace!(hash, "insert_with_expiry");
        self.submit(hash, expiring(key, value, expiry)).map(drop)
    }

    /// [`insert_with_expiry`](Self::insert_with_expiry) for async code.
    pub async fn insert_with_expiry_async(
        &self,
        key: K,
        value: V,
        expiry: Expiry,
    ) -> Result<(), Error> {
        let hash = self.hash(&key);
        self.submit_async(hash, expiring(key, value, expiry))
            .await
            .map(drop)
    }

    /// Removes `key`; returns once no `get` that starts afterwards sees it,
    /// and no load that began before it can install its value.
    pub fn invalidate(&self, key: &K) -> Result<(), Error> {
        let hash = self.hash(key);
        self.write(hash, key.clone(), None)
    }

    /// [`invalidate`](Self::invalidate) for async code.
    pub async fn invalidate_async(&self, key: &K) -> Result<(), Error> {
        let hash = self.hash(key);
        self.submit_async(hash, Op::Invalidate { key: key.clone() })
            .await
            .map(drop)
    }

    /// [`invalidate`](Self::invalidate), reporting a full mailbox like
    /// [`try_insert`](Self::try_insert).
    pub fn try_invalidate(&self, key: &K) -> Result<(), Error> {
        let hash = self.hash(key);
        tracing::trace!(hash, "try_invalidate");
        self.try_submit(hash, Op::Invalidate { key: key.clone() })
            .map(drop)
    }

    /// Removes every entry carrying `tag`, in every shard, at one instant;
    /// returns once that is visible. A load that declared the tag and is
    /// in flight will not install its value. A transaction of one
    /// operation (see [`transaction`](Self::transaction)).
    pub fn invalidate_tag(&self, tag: impl Into<Tag>) -> Result<(), Error> {
        self.transaction().invalidate_tag(tag).commit()
    }

    /// [`invalidate_tag`](Self::invalidate_tag) for async code.
    pub async fn invalidate_tag_async(&self, tag: impl Into<Tag>) -> Result<(), Error> {
        self.transaction().invalidate_tag(tag).commit_async().await
    }

    /// Atomically replaces the value of `key` with `f(current)` and returns
    /// the new value. `f` runs inside the shard that owns `key`, after every
    /// earlier write to it and before any later one, so concurrent updates
    /// are applied one after another and none is lost (G4). Returning `None`
    /// removes the key.
    ///
    /// `f` should be short: writes to the same shard wait while it runs. It
    /// may read the cache but not write to it ([`Error::Reentrant`]). If it
    /// panics, or the new value's `Clone` does, nothing changes and this
    /// call returns [`Error::UpdatePanicked`].
    ///
    /// The key keeps its tags and its life: an entry that expires keeps
    /// its deadline (its own, from
    /// [`insert_with_expiry`](Self::insert_with_expiry), or the cache's
    /// default counted from the write that made it), and its time to idle
    /// restarts as on a read. `insert` and its forms, by contrast, make a
    /// new entry with the cache's default expiry.
    ///
    /// ```
    /// use std::time::Duration;
    /// use coherent::{Cache, Clock, Expiry};
    /// let clock = Clock::manual();
    /// let cache = Cache::<&str, u64>::builder().clock(clock.clone()).build().unwrap();
    /// cache.insert_with_expiry("hits", 1, Expiry::ttl(Duration::from_secs(30))).unwrap();
    /// clock.advance(Duration::from_secs(20));
    /// cache.update("hits", |n| n.map(|n| n + 1)).unwrap();
    /// clock.advance(Duration::from_secs(10));
    /// assert_eq!(cache.get("hits"), None); // still its own 30 s
    /// ```
    ///
    /// ```
    /// let cache = coherent::Cache::<&str, Vec<u32>>::new();
    /// cache.update("list", |v| {
    ///     let mut list = v.cloned().unwrap_or_default();
    ///     list.push(7);
    ///     Some(list)
    /// }).unwrap();
    /// assert_eq!(cache.get("list"), Some(vec![7]));
    /// ```
    pub fn update<F>(&self, key: K, f: F) -> Result<Option<V>, Error>
    where
        F: FnOnce(Option<&V>) -> Option<V> + Send + 'static,
    {
        let hash = self.hash(&key);
        tracing::trace!(hash, "update");
        updated(self.submit(hash, update_op(key, f))?)
    }

    /// [`update`](Self::update) for async code. `f` itself is synchronous:
    /// it runs inside the owning shard.
    pub async fn update_async<F>(&self, key: K, f: F) -> Result<Option<V>, Error>
    where
        F: FnOnce(Option<&V>) -> Option<V> + Send + 'static,
    {
        let hash = self.hash(&key);
        updated(self.submit_async(hash, update_op(key, f)).await?)
    }

    /// [`update`](Self::update), reporting a full mailbox like
    /// [`try_insert`](Self::try_insert) (then `f` is dropped without
    /// running).
    pub fn try_update<F>(&self, key: K, f: F) -> Result<Option<V>, Error>
    where
        F: FnOnce(Option<&V>) -> Option<V> + Send + 'static,
    {
        let hash = self.hash(&key);
        tracing::trace!(hash, "try_update");
        updated(self.try_submit(hash, update_op(key, f))?)
    }

    /// Closes the cache, for every handle: once this returns, every
    /// entry is gone, `get` finds nothing, and every write, update, load
    /// and transaction returns [`Error::Closed`] without changing anything.
    ///
    /// Nobody is left hanging: an operation queued in a shard before the
    /// close reached it is applied and answered as usual, one queued after
    /// is answered `Closed`, and a caller waiting on another caller's load
    /// of the key is answered `Closed` (the leader keeps the value it
    /// loaded; it is not cached). Readers still reading an entry are safe:
    /// entries are retired, not freed under them. The removal listener
    /// hears of each entry dropped (`Invalidated`, or `Expired`).
    ///
    /// Shards close one after another: a `get` racing the close may find a
    /// key of a closed shard gone and one of an open shard still there.
    /// Closing twice is harmless. Memory is given back when the last
    /// handle is dropped; a closed cache cannot be reopened.
    ///
    /// ```
    /// use coherent::{Cache, Error};
    ///
    /// let cache: Cache<u64, u64> = Cache::new();
    /// cache.insert(1, 10).unwrap();
    /// cache.close().unwrap();
    /// assert_eq!(cache.get(&1), None);
    /// assert_eq!(cache.insert(2, 20), Err(Error::Closed));
    /// assert_eq!(cache.transaction().insert(3, 30).commit(), Err(Error::Closed));
    /// ```
    ///
    /// Errors: [`Error::Reentrant`] from inside an update closure (nothing
    /// was closed).
    pub fn close(&self) -> Result<(), Error> {
        for shard in self.shards.iter() {
            match shard.close() {
                Ok(()) | Err(SubmitError::Closed) => {}
                Err(e) => return Err(submit_error(e)),
            }
        }
        tracing::debug!(shards = self.shards.len(), "cache closed");
        Ok(())
    }

    /// Entries in the cache, as of each shard's last change (expired
    /// entries not yet reclaimed included).
    pub fn len(&self) -> usize {
        self.shards.iter().map(Shard::len).sum()
    }

    /// Whether [`len`](Self::len) is 0.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The total weight of the entries, as of each shard's last change:
    /// what [`max_capacity`](crate::CacheBuilder::max_capacity) bounds.
    /// Without a capacity, the number of entries.
    pub fn weighted_size(&self) -> u64 {
        self.shards.iter().map(Shard::weighted_size).sum()
    }

    /// Statistics summed over the shards: hits, misses, loads, stale loads
    /// discarded, evictions, expirations. Hits and misses are counted when
    /// [`CacheBuilder::stats`](crate::CacheBuilder::stats) says so (by
    /// default in bounded caches), in per-thread rows (no locked
    /// instruction); the rest always.
    ///
    /// ```
    /// let cache = coherent::Cache::<u64, u64>::builder().stats(true).build().unwrap();
    /// cache.insert(1, 1).unwrap();
    /// cache.get(&1);
    /// cache.get(&2);
    /// let s = cache.stats();
    /// assert_eq!((s.hits, s.misses), (1, 1));
    /// ```
    pub fn stats(&self) -> Stats {
        let mut total = Stats::default();
        for shard in self.shards.iter() {
            total.add(&shard.stats());
        }
        total
    }

    /// Number of shards.
    pub fn shard_count(&self) -> usize {
        self.shards.len()
    }

    /// Which shard (`0..shard_count()`) owns `key`. A diagnostic, not part
    /// of the stable API: tests use
    /// it to place keys in the same or in different shards. Stable for the
    /// life of this cache; another cache places keys differently.
    #[doc(hidden)]
    pub fn shard_of<Q>(&self, key: &Q) -> usize
    where
        K: Borrow<Q>,
        Q: Hash + ?Sized,
    {
        self.shard_index(self.hash(key))
    }

    /// Callers currently waiting inside the cache, over all shards: writers
    /// waiting for their write to be applied, writers waiting for a
    /// transaction in flight that their write joined, and `get_or_load`
    /// callers waiting for another caller's load. A diagnostic (tests use it to know
    /// that a caller is blocked); a snapshot that may be stale when it
    /// returns. Not part of the stable API.
    #[doc(hidden)]
    pub fn waiting(&self) -> usize {
        let shards: usize = self.shards.iter().map(Shard::waiting).sum();
        shards + self.watermark.blocked()
    }

    #[inline]
    pub(crate) fn hash<Q: Hash + ?Sized>(&self, key: &Q) -> u64 {
        self.hasher.hash_one(key)
    }

    /// The shard of `hash`: its high 32 bits scaled to the shard count (the
    /// table probes with the low bits, so the two choices are independent).
    #[inline]
    pub(crate) fn shard(&self, hash: u64) -> &Shard<K, V> {
        &self.shards[self.shard_index(hash)]
    }

    /// The shard index of `hash` (see [`shard`](Self::shard)).
    pub(crate) fn shard_index(&self, hash: u64) -> usize {
        let n = self.shards.len() as u64;
        (((hash >> 32) * n) >> 32) as usize
    }

    /// Every shard, in index order.
    pub(crate) fn shards(&self) -> &[Shard<K, V>] {
        &self.shards
    }

    pub(crate) fn watermark(&self) -> &Watermark {
        &self.watermark
    }

    /// Applies `op` and returns its answer once the change is visible: a
    /// write folded into a transaction in flight (`DoneAt`, `UpdatedAt`)
    /// waits for the watermark to reach that transaction.
    /// A plain set or removal of one key (the shard's direct path), waiting
    /// for the watermark if the write joined a pending transaction.
    #[inline]
    fn write(&self, hash: u64, key: K, value: Option<V>) -> Result<(), Error> {
        match self.shard(hash).write(hash, key, value) {
            Ok(None) => Ok(()),
            Ok(Some(stamp)) => {
                self.watermark.wait_for(stamp);
                Ok(())
            }
            Err(e) => Err(submit_error(e)),
        }
    }

    fn submit(&self, hash: u64, op: Op<K, V>) -> Result<Reply<V>, Error> {
        let reply = self.shard(hash).submit(hash, op).map_err(submit_error)?;
        Ok(self.visible(reply))
    }

    /// [`submit`](Self::submit) with [`Shard::try_submit`].
    fn try_submit(&self, hash: u64, op: Op<K, V>) -> Result<Reply<V>, Error> {
        let reply = self
            .shard(hash)
            .try_submit(hash, op)
            .map_err(submit_error)?;
        Ok(self.visible(reply))
    }

    /// Waits until a write that joined a pending transaction is visible.
    fn visible(&self, reply: Reply<V>) -> Reply<V> {
        match reply {
            Reply::DoneAt(stamp) => {
                self.watermark.wait_for(stamp);
                Reply::Done
            }
            Reply::UpdatedAt(v, stamp) => {
                self.watermark.wait_for(stamp);
                Reply::Updated(v)
            }
            other => other,
        }
    }

    async fn submit_async(&self, hash: u64, op: Op<K, V>) -> Result<Reply<V>, Error> {
        let reply = self
            .shard(hash)
            .submit_async(hash, op)
            .await
            .map_err(submit_error)?;
        Ok(match reply {
            Reply::DoneAt(stamp) => {
                self.watermark.wait_for_async(stamp).await;
                Reply::Done
            }
            Reply::UpdatedAt(v, stamp) => {
                self.watermark.wait_for_async(stamp).await;
                Reply::Updated(v)
            }
            other => other,
        })
    }

    /// A transaction's op for `key`, with its hash and shard.
    pub(crate) fn txn_op(&self, key: K, value: Option<(V, Vec<Tag>)>) -> (usize, TxnOp<K, V>) {
        let hash = self.hash(&key);
        let op = match value {
            Some((value, tags)) => TxnOp::Insert {
                hash,
                key,
                value,
                tags,
            },
            None => TxnOp::Invalidate { hash, key },
        };
        (self.shard_index(hash), op)
    }
}

/// The message of an `update`.
fn update_op<K, V, F>(key: K, f: F) -> Op<K, V>
where
    F: FnOnce(Option<&V>) -> Option<V> + Send + 'static,
{
    Op::Update {
        key,
        f: Box::new(f),
    }
}

/// A plain insert with its own expiry (no tags).
fn expiring<K, V>(key: K, value: V, expiry: Expiry) -> Op<K, V> {
    Op::InsertExpiring {
        key,
        value,
        tags: Some(Vec::new()),
        expiry,
    }
}

pub(crate) fn submit_error<T>(e: SubmitError<T>) -> Error {
    match e {
        SubmitError::Reentrant(_) => Error::Reentrant,
        SubmitError::Lost => Error::Lost,
        SubmitError::Panicked(message) => Error::Panicked(message),
        SubmitError::Full(_) => Error::Full,
        SubmitError::Closed => Error::Closed,
    }
}

fn updated<V>(reply: Reply<V>) -> Result<Option<V>, Error> {
    match reply {
        Reply::Updated(v) => Ok(v),
        Reply::UpdatePanicked(msg) => Err(Error::UpdatePanicked(msg)),
        _ => unreachable!("a shard answers an update with Updated or UpdatePanicked"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_spread_over_all_shards() {
        let cache: Cache<u64, u64> = Cache::builder().shards(7).build().unwrap();
        let mut hits = [0usize; 7];
        for k in 0..7_000u64 {
            let shard = cache.shard(cache.hash(&k)) as *const _;
            let i = cache
                .shards
                .iter()
                .position(|s| std::ptr::eq(s, shard))
                .unwrap();
            hits[i] += 1;
        }
        // Each of 7 shards gets its share within a wide margin.
        assert!(hits.iter().all(|&n| (700..1300).contains(&n)), "{hits:?}");
    }

    #[test]
    fn clones_share_one_cache() {
        let a: Cache<u64, u64> = Cache::new();
        let b = a.clone();
        a.insert(1, 1).unwrap();
        assert_eq!(b.get(&1), Some(1));
        assert_eq!(b.len(), 1);
    }
}
