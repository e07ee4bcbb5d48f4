//! Replicas of a service kept coherent through one Redis server (G8,
//! cargo feature `redis`).
//!
//! Each process of a service builds its own [`Cache`] and joins it to a
//! namespace on a Redis server with [`Replica::join`]. A write on any
//! replica (`insert`, `invalidate`, `invalidate_tag`, a transaction's
//! `commit`) applies locally, appends the keys and tags it changed to the
//! namespace's log, and returns `Ok` only once every other replica has
//! applied that entry or has surely stopped serving (its lease ran out).
//! Values never cross the wire: the other replicas drop the keys, and
//! their next reads load from the source of truth.
//!
//! ```no_run
//! use coherent::{replica::Replica, Cache};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let users = Replica::join(Cache::<String, String>::new(), "redis://127.0.0.1/", "users")?;
//! let name = users.get_or_load("7".to_owned(), |id| Ok::<_, std::io::Error>(format!("user {id}")))?;
//! // ...the row changes in the database; then, on whichever replica wrote it:
//! users.invalidate(&"7".to_owned())?; // returns once no replica can serve the old row
//! # let _ = name;
//! # Ok(())
//! # }
//! ```
//!
//! A replica serves cached values only while it holds a lease that Redis
//! granted it and renews every third of its length. Readers check the
//! lease's deadline against the monotonic clock on every read, so a
//! process stopped past its lease (`SIGSTOP`, a VM pause) serves nothing
//! stale when it continues, even before its own threads run. A replica
//! that cannot be sure it is current (its lease ran out, its connection
//! dropped, it found a gap in the log, Redis lost its state) serves no
//! cached value: reads miss and go to the loader, nothing is cached, and
//! it drops its entries and joins again before serving.
//!
//! The files: `store.rs` (the Redis keys and scripts), `link.rs` (each
//! replica's thread: join, renew, apply the log, ack), `acks.rs` (what
//! writers wait on), `batch.rs` (writes in flight share a log entry),
//! `wire.rs` and `key.rs` (what crosses the wire).

mod acks;
mod batch;
mod key;
mod link;
mod store;
mod wire;

pub use key::ReplicaKey;

use crate::{Cache, Clock, Error, LoadError, Tag};
use acks::Acks;
use std::hash::Hash;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use store::{Keys, Scripts};
use wire::Invalidation;

/// How a replica holds its lease and how long writers wait for the
/// others.
#[derive(Debug, Clone)]
pub struct ReplicaConfig {
    /// The lease a replica holds, renewed every third of it. A replica
    /// that stops answering costs writers at most `ack_deadline` plus
    /// this, once; a replica cut off from Redis stops serving within it.
    /// Every replica of a namespace should use the same lease.
    pub lease: Duration,
    /// How long a writer waits for the other replicas' acks before it
    /// revokes those that have not answered (and then waits their leases
    /// out).
    pub ack_deadline: Duration,
    /// The log keeps about this many entries; a replica that falls
    /// further behind finds a gap, drops its entries and joins again.
    pub max_log: u64,
}

impl Default for ReplicaConfig {
    fn default() -> Self {
        Self {
            lease: Duration::from_secs(3),
            ack_deadline: Duration::from_millis(500),
            max_log: 100_000,
        }
    }
}

/// What a replica has been through (counters since it joined first).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReplicaStats {
    /// Joins, the first one included.
    pub joins: u64,
    /// Times it stopped serving because its lease could not be renewed
    /// (refused, or Redis unreachable).
    pub lease_losses: u64,
    /// Gaps found in the log (entries trimmed before this replica read
    /// them, or lost).
    pub gaps: u64,
    /// Times it found the namespace in a new epoch (Redis flushed or
    /// restarted without its data).
    pub epochs: u64,
    /// Other replicas this one revoked as a writer, because they had not
    /// acked in time.
    pub revocations: u64,
    /// Writes that returned [`Error::Unconfirmed`].
    pub unconfirmed: u64,
}

#[derive(Default)]
struct Counters {
    joins: AtomicU64,
    lease_losses: AtomicU64,
    gaps: AtomicU64,
    epochs: AtomicU64,
    revocations: AtomicU64,
    unconfirmed: AtomicU64,
}

/// The membership writers publish under.
#[derive(Clone)]
struct Member {
    id: String,
    epoch: String,
    /// When the epoch began (Redis ms): a write confirmed before every
    /// lease of an earlier epoch can have run out waits for that.
    epoch_began: u64,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

struct Inner<K, V> {
    cache: Cache<K, V>,
    config: ReplicaConfig,
    client: redis::Client,
    keys: Keys,
    scripts: Scripts,
    clock: Clock,
    /// The monotonic ms (`Clock::system`) until which this replica may
    /// serve; 0 while it may not.
    serving_until: AtomicU64,
    /// Bumped whenever serving stops; every entry this replica caches
    /// carries the tag of the generation it was cached in, so that one
    /// `invalidate_tag` drops them all and dooms the loads in flight.
    generation: AtomicU64,
    member: Mutex<Option<Member>>,
    /// Invalidations a writer could not confirm: published again before
    /// this replica serves again.
    pending: Mutex<Vec<Vec<u8>>>,
    /// Keys an `update` created (the closure found no entry): their entries
    /// carry no generation tag, so the next drop removes them by key.
    untagged: Mutex<Vec<K>>,
    /// Set by a writer that could not confirm: the link thread joins again.
    rejoin: AtomicBool,
    /// Connections for writers.
    pool: Mutex<Vec<redis::Connection>>,
    acks: Acks,
    /// Writes in flight share log entries.
    batcher: batch::Batcher,
    stop: AtomicBool,
    /// Notified when the replica starts serving.
    serving_changed: Condvar,
    serving_lock: Mutex<()>,
    counters: Counters,
    /// This process's part of every member id.
    base_id: String,
    incarnation: AtomicU64,
}

/// A cache joined to a namespace on a Redis server: see the [module
/// docs](self).
pub struct Replica<K, V> {
    inner: Arc<Inner<K, V>>,
    threads: Vec<JoinHandle<()>>,
}

impl<K, V> std::fmt::Debug for Replica<K, V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Replica")
            .field("serving", &self.inner.serving())
            .finish_non_exhaustive()
    }
}

/// The tag every entry of generation `g` carries. A string no user tag is
/// expected to take (it starts with a NUL byte).
fn generation_tag(g: u64) -> Tag {
    Tag::from(format!("\u{0}coherent:generation:{g}"))
}

/// A member id no other process or incarnation shares.
fn process_id() -> String {
    use std::hash::BuildHasher;
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let r = std::collections::hash_map::RandomState::new().hash_one((std::process::id(), nanos));
    format!("{:x}-{:016x}", std::process::id(), r)
}

impl<K, V> Inner<K, V> {
    /// Whether this replica may serve a cached value now.
    #[inline]
    fn serving(&self) -> bool {
        // Acquire: pairs with the link thread's Release store after it
        // joined and dropped what came before.
        let until = self.serving_until.load(Ordering::Acquire);
        // `coherent_break_lease_clock`: deliberately broken (the reader
        // trusts the flag the link thread clears and skips the clock), to
        // show that `tests/tests/replica_process.rs` catches a process
        // stopped past its lease (`.ci/run`).
        if cfg!(coherent_break_lease_clock) {
            return until != 0;
        }
        until != 0 && self.clock.now_ms() < until
    }

    fn stats(&self) -> ReplicaStats {
        let c = &self.counters;
        let r = |a: &AtomicU64| a.load(Ordering::Relaxed);
        ReplicaStats {
            joins: r(&c.joins),
            lease_losses: r(&c.lease_losses),
            gaps: r(&c.gaps),
            epochs: r(&c.epochs),
            revocations: r(&c.revocations),
            unconfirmed: r(&c.unconfirmed),
        }
    }

    fn connection(&self) -> redis::RedisResult<redis::Connection> {
        if let Some(c) = lock(&self.pool).pop() {
            return Ok(c);
        }
        let c = self
            .client
            .get_connection_with_timeout(self.config.ack_deadline)?;
        c.set_read_timeout(Some(self.config.ack_deadline))?;
        c.set_write_timeout(Some(self.config.ack_deadline))?;
        Ok(c)
    }

    /// What writers add to the lease waits: the coarse clock's tick, and
    /// a tenth of the lease for the drift between Redis's clock and ours.
    fn margin(&self) -> Duration {
        Duration::from_millis(20) + self.config.lease / 10
    }

    /// Publishes `payload` and waits until every other replica applied it
    /// or surely stopped serving. On failure the payload is kept for the
    /// next join and this replica stops serving until then.
    fn confirm(&self, payload: Vec<u8>) -> Result<(), Error> {
        let member = lock(&self.member).clone();
        let outcome = match &member {
            Some(m) => self.try_confirm(m, &payload),
            None => Err("not joined".to_owned()),
        };
        outcome.map_err(|why| {
            self.counters.unconfirmed.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(%why, "replicated write unconfirmed");
            lock(&self.pending).push(payload);
            self.stop_serving_now();
            Error::Unconfirmed(why)
        })
    }

    fn try_confirm(&self, m: &Member, payload: &[u8]) -> Result<(), String> {
        let mut c = self.connection().map_err(|e| e.to_string())?;
        let outcome = self.batcher.publish(payload, |batch| {
            self.scripts
                .publish(
                    &mut c,
                    &self.keys,
                    m,
                    batch,
                    self.config.max_log,
                    self.margin().as_millis() as u64,
                )
                .map_err(|e| e.to_string())
                .map(|published| {
                    published.map(|(seq, now, leases)| batch::Entry {
                        seq,
                        now,
                        leases,
                        origin: m.id.clone(),
                        epoch_began: m.epoch_began,
                    })
                })
        });
        let Some(entry) = outcome.as_ref().clone()? else {
            return Err("the namespace's epoch changed (Redis lost its state)".to_owned());
        };
        let (seq, now) = (entry.seq, entry.now);
        let deadline = Instant::now() + self.config.ack_deadline;
        let others: Vec<&str> = entry
            .leases
            .iter()
            .map(|(id, _)| id.as_str())
            .filter(|id| *id != entry.origin)
            .collect();
        let behind = self.acks.wait(&others, seq, deadline);
        let mut wait = Duration::ZERO;
        if !behind.is_empty() {
            let acked = store::acked(&mut c, &self.keys, &behind).map_err(|e| e.to_string())?;
            for (id, a) in behind.iter().zip(acked) {
                if a >= seq {
                    continue;
                }
                let left = self
                    .scripts
                    .revoke(&mut c, &self.keys, id, seq)
                    .map_err(|e| e.to_string())?;
                self.counters.revocations.fetch_add(1, Ordering::Relaxed);
                tracing::info!(member = %id, seq, "revoked a replica that did not ack");
                // Unknown to Redis (it lost its state after the publish):
                // the member may have renewed just before, so a whole
                // lease from now.
                let left = left.map_or(self.config.lease, Duration::from_millis);
                wait = wait.max(left + self.margin());
            }
        }
        // Leases of an earlier epoch (granted by a Redis that lost its
        // state) run out by the epoch's start plus a lease.
        let young = (entry.epoch_began + self.config.lease.as_millis() as u64).saturating_sub(now);
        if young > 0 {
            wait = wait.max(Duration::from_millis(young) + self.margin());
        }
        lock(&self.pool).push(c);
        if !wait.is_zero() {
            // The lease protocol: the revoked replicas' leases (or the
            // earlier epoch's) end by then, and they serve nothing after.
            std::thread::sleep(wait);
        }
        Ok(())
    }

    /// Stops serving at once; the link thread joins again. Under
    /// `serving_lock`, so that a renewal in flight cannot start serving
    /// again in between (`link::serve_until` takes it too).
    fn stop_serving_now(&self) {
        let _g = lock(&self.serving_lock);
        self.rejoin.store(true, Ordering::Release);
        self.serving_until.store(0, Ordering::Release);
    }
}

impl<K, V> Inner<K, V>
where
    K: Hash + Eq + Clone + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
{
    /// Drops every entry cached under the current generation and dooms its
    /// loads; later writes cache under the next one.
    fn drop_generation(&self) {
        let g = self.generation.fetch_add(1, Ordering::AcqRel);
        let created = std::mem::take(&mut *lock(&self.untagged));
        let mut t = self.cache.transaction().invalidate_tag(generation_tag(g));
        for k in created {
            t = t.invalidate(k);
        }
        let _ = t.commit();
    }

    /// Applies `inv` to the local cache as one transaction.
    fn apply(&self, inv: Invalidation<K>) -> Result<(), Error> {
        if inv.is_empty() {
            return Ok(());
        }
        let mut t = self.cache.transaction();
        for k in inv.keys {
            t = t.invalidate(k);
        }
        for tag in inv.tags {
            t = t.invalidate_tag(tag);
        }
        t.commit()
    }
}

impl<K, V> Replica<K, V>
where
    K: ReplicaKey + Hash + Eq + Clone + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
{
    /// Joins `cache` to `namespace` on the Redis server at `redis_url`
    /// (`redis://host:port/db`), with the default [`ReplicaConfig`].
    pub fn join(cache: Cache<K, V>, redis_url: &str, namespace: &str) -> Result<Self, Error> {
        Self::join_with(cache, redis_url, namespace, ReplicaConfig::default())
    }

    /// [`join`](Self::join) with a configuration. Returns once the replica
    /// serves, or after one lease if Redis cannot be reached: the replica
    /// then passes reads through to the loader, caches nothing, and keeps
    /// trying in the background ([`is_serving`](Self::is_serving)).
    pub fn join_with(
        cache: Cache<K, V>,
        redis_url: &str,
        namespace: &str,
        config: ReplicaConfig,
    ) -> Result<Self, Error> {
        if config.lease < Duration::from_millis(30) || config.ack_deadline.is_zero() {
            return Err(Error::InvalidConfig(format!(
                "a replica needs a lease of at least 30 ms and a nonzero ack deadline (got {:?}, {:?})",
                config.lease, config.ack_deadline
            )));
        }
        let client = redis::Client::open(redis_url)
            .map_err(|e| Error::InvalidConfig(format!("redis url {redis_url:?}: {e}")))?;
        let inner = Arc::new(Inner {
            cache,
            client,
            keys: Keys::new(namespace),
            scripts: Scripts::new(),
            clock: Clock::system(),
            serving_until: AtomicU64::new(0),
            generation: AtomicU64::new(0),
            member: Mutex::new(None),
            pending: Mutex::new(Vec::new()),
            untagged: Mutex::new(Vec::new()),
            rejoin: AtomicBool::new(false),
            pool: Mutex::new(Vec::new()),
            acks: Acks::default(),
            batcher: batch::Batcher::default(),
            stop: AtomicBool::new(false),
            serving_changed: Condvar::new(),
            serving_lock: Mutex::new(()),
            counters: Counters::default(),
            base_id: process_id(),
            incarnation: AtomicU64::new(0),
            config,
        });
        let threads = vec![
            link::spawn_watcher(inner.clone()),
            link::spawn_link(inner.clone()),
        ];
        let replica = Self { inner, threads };
        replica.wait_until_serving(replica.inner.config.lease);
        Ok(replica)
    }

    /// Whether this replica serves cached values now (it holds a lease and
    /// has applied the log up to it).
    pub fn is_serving(&self) -> bool {
        self.inner.serving()
    }

    /// Waits up to `timeout` for this replica to serve; returns whether it
    /// does.
    pub fn wait_until_serving(&self, timeout: Duration) -> bool {
        let end = Instant::now() + timeout;
        let mut g = lock(&self.inner.serving_lock);
        while !self.inner.serving() {
            let now = Instant::now();
            if now >= end {
                return false;
            }
            g = self
                .inner
                .serving_changed
                .wait_timeout(g, (end - now).min(Duration::from_millis(50)))
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
        true
    }

    /// What the replica has been through.
    pub fn stats(&self) -> ReplicaStats {
        self.inner.stats()
    }

    /// The cached value of `key`, if this replica serves and has it. Never
    /// a value that a write acknowledged on any replica before this call
    /// began replaced or invalidated (G8).
    #[inline]
    pub fn get<Q>(&self, key: &Q) -> Option<V>
    where
        K: std::borrow::Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        if !self.inner.serving() {
            return None;
        }
        self.inner.cache.get(key)
    }

    /// The values of `keys`, read as one snapshot of this replica's cache
    /// (`Cache::get_many`); all misses while it does not serve.
    pub fn get_many<'a, Q, I>(&self, keys: I) -> Vec<Option<V>>
    where
        K: std::borrow::Borrow<Q>,
        Q: Hash + Eq + ?Sized + 'a,
        I: IntoIterator<Item = &'a Q>,
    {
        if !self.inner.serving() {
            return keys.into_iter().map(|_| None).collect();
        }
        self.inner.cache.get_many(keys)
    }

    /// The value of `key`, loaded by `loader` on a miss (single-flight in
    /// this process). Nothing a load returns is cached if a write to `key`
    /// on any replica was applied here while it ran, or if this replica
    /// stopped serving meanwhile; while it does not serve, every call runs
    /// the loader and caches nothing.
    pub fn get_or_load<E, F>(&self, key: K, loader: F) -> Result<V, LoadError<E>>
    where
        F: FnOnce(&K) -> Result<V, E>,
    {
        let inner = &self.inner;
        if !inner.serving() {
            return loader(&key).map_err(LoadError::Loader);
        }
        let g = inner.generation.load(Ordering::Acquire);
        let probe = key.clone();
        let v = inner
            .cache
            .get_or_load_tagged(key, [generation_tag(g)], loader)?;
        if inner.generation.load(Ordering::Acquire) != g {
            // Serving stopped while this ran: whatever it cached may have
            // missed an invalidation.
            let _ = inner.cache.invalidate(&probe);
        }
        Ok(v)
    }

    /// Sets `key` to `value` here and drops it on every other replica;
    /// returns once no replica can serve the value it replaced.
    pub fn insert(&self, key: K, value: V) -> Result<(), Error> {
        self.insert_tagged(key, value, std::iter::empty::<Tag>())
    }

    /// [`insert`](Self::insert), the entry carrying `tags` here.
    pub fn insert_tagged<T>(&self, key: K, value: V, tags: T) -> Result<(), Error>
    where
        T: IntoIterator,
        T::Item: Into<Tag>,
    {
        let inner = &self.inner;
        let payload = wire::encode(&Invalidation {
            keys: vec![key.clone()],
            tags: Vec::new(),
        });
        self.cache_locally(key, value, tags)?;
        inner.confirm(payload)
    }

    /// Caches `key -> value` under the current generation if this replica
    /// serves; otherwise drops `key` here.
    fn cache_locally<T>(&self, key: K, value: V, tags: T) -> Result<(), Error>
    where
        T: IntoIterator,
        T::Item: Into<Tag>,
    {
        let inner = &self.inner;
        if !inner.serving() {
            return inner.cache.invalidate(&key);
        }
        let g = inner.generation.load(Ordering::Acquire);
        let tags: Vec<Tag> = tags
            .into_iter()
            .map(Into::into)
            .chain([generation_tag(g)])
            .collect();
        let probe = key.clone();
        inner.cache.insert_tagged(key, value, tags)?;
        if inner.generation.load(Ordering::Acquire) != g {
            inner.cache.invalidate(&probe)?;
        }
        Ok(())
    }

    /// Drops `key` on every replica; returns once none can serve it.
    pub fn invalidate(&self, key: &K) -> Result<(), Error> {
        let inner = &self.inner;
        inner.cache.invalidate(key)?;
        inner.confirm(wire::encode(&Invalidation {
            keys: vec![key.clone()],
            tags: Vec::new(),
        }))
    }

    /// Runs `f` on this replica's cached value of `key` inside its shard,
    /// as [`Cache::update`] does (atomic among the updates of this
    /// process, not across replicas: values do not cross the wire), then
    /// drops `key` on every other replica; returns the new value once no
    /// replica can serve the value it replaced. While this replica does not
    /// serve, `f` sees no value and its result is not cached here.
    pub fn update<F>(&self, key: K, f: F) -> Result<Option<V>, Error>
    where
        F: FnOnce(Option<&V>) -> Option<V> + Send + 'static,
    {
        let inner = &self.inner;
        let payload = wire::encode(&Invalidation {
            keys: vec![key.clone()],
            tags: Vec::new(),
        });
        let new = if inner.serving() {
            let g = inner.generation.load(Ordering::Acquire);
            let created = Arc::new(AtomicBool::new(false));
            let mark = created.clone();
            let new = inner.cache.update(key.clone(), move |old| {
                let new = f(old);
                mark.store(old.is_none() && new.is_some(), Ordering::Release);
                new
            })?;
            if created.load(Ordering::Acquire) {
                // No tag on a created entry: the next drop removes it by
                // key. Recorded before the generation is read again, so a
                // drop that took the list before this is seen below.
                lock(&inner.untagged).push(key.clone());
            }
            if inner.generation.load(Ordering::Acquire) != g {
                inner.cache.invalidate(&key)?;
            }
            new
        } else {
            inner.cache.invalidate(&key)?;
            f(None)
        };
        inner.confirm(payload)?;
        Ok(new)
    }

    /// Drops every entry carrying `tag` on every replica; returns once none
    /// can serve one.
    pub fn invalidate_tag(&self, tag: impl Into<Tag>) -> Result<(), Error> {
        let inner = &self.inner;
        let tag = tag.into();
        inner.cache.invalidate_tag(tag.clone())?;
        inner.confirm(wire::encode::<K>(&Invalidation {
            keys: Vec::new(),
            tags: vec![tag],
        }))
    }

    /// A transaction: applied here at one instant, and on every other
    /// replica as one entry of the log, applied there at one instant too.
    pub fn transaction(&self) -> ReplicaTransaction<'_, K, V> {
        ReplicaTransaction {
            replica: self,
            steps: Vec::new(),
            invalidation: Invalidation::default(),
        }
    }
}

/// A transaction on a [`Replica`]: see [`Replica::transaction`].
/// Operations apply in the order given, as in [`Transaction`](crate::Transaction).
pub struct ReplicaTransaction<'a, K, V> {
    replica: &'a Replica<K, V>,
    steps: Vec<Step<K, V>>,
    invalidation: Invalidation<K>,
}

impl<K, V> std::fmt::Debug for ReplicaTransaction<'_, K, V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReplicaTransaction")
            .field("steps", &self.steps.len())
            .finish_non_exhaustive()
    }
}

enum Step<K, V> {
    Insert(K, V, Vec<Tag>),
    Invalidate(K),
    InvalidateTag(Tag),
}

impl<K, V> ReplicaTransaction<'_, K, V>
where
    K: ReplicaKey + Hash + Eq + Clone + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
{
    /// Sets `key` to `value` here (dropped on the other replicas).
    pub fn insert(self, key: K, value: V) -> Self {
        self.insert_tagged(key, value, std::iter::empty::<Tag>())
    }

    /// Sets `key` to `value` here, carrying `tags`.
    pub fn insert_tagged<T>(mut self, key: K, value: V, tags: T) -> Self
    where
        T: IntoIterator,
        T::Item: Into<Tag>,
    {
        self.invalidation.keys.push(key.clone());
        let tags = tags.into_iter().map(Into::into).collect();
        self.steps.push(Step::Insert(key, value, tags));
        self
    }

    /// Drops `key`.
    pub fn invalidate(mut self, key: K) -> Self {
        self.invalidation.keys.push(key.clone());
        self.steps.push(Step::Invalidate(key));
        self
    }

    /// Drops every entry carrying `tag`.
    pub fn invalidate_tag(mut self, tag: impl Into<Tag>) -> Self {
        let tag = tag.into();
        self.invalidation.tags.push(tag.clone());
        self.steps.push(Step::InvalidateTag(tag));
        self
    }

    /// Applies the transaction here at one instant, then publishes it as
    /// one log entry and returns once every other replica applied it (at
    /// one instant there too) or surely stopped serving. While this
    /// replica does not serve, its inserts drop their keys here instead
    /// of caching them.
    pub fn commit(self) -> Result<(), Error> {
        let inner = &self.replica.inner;
        let payload = wire::encode(&self.invalidation);
        let serving = inner.serving();
        let g = inner.generation.load(Ordering::Acquire);
        let mut t = inner.cache.transaction();
        for s in self.steps {
            t = match s {
                Step::Invalidate(k) => t.invalidate(k),
                Step::InvalidateTag(tag) => t.invalidate_tag(tag),
                Step::Insert(k, v, mut tags) if serving => {
                    tags.push(generation_tag(g));
                    t.insert_tagged(k, v, tags)
                }
                Step::Insert(k, _, _) => t.invalidate(k),
            };
        }
        t.commit()?;
        if serving && inner.generation.load(Ordering::Acquire) != g {
            // Serving stopped while this ran: drop what it cached.
            for k in &self.invalidation.keys {
                inner.cache.invalidate(k)?;
            }
        }
        inner.confirm(payload)
    }
}

impl<K, V> Drop for Replica<K, V> {
    fn drop(&mut self) {
        self.inner.stop.store(true, Ordering::Release);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}
