//! `get_or_load`: single-flight loads that never install stale data (G3).
//!
//! The loader runs on the caller's thread or task, never inside a shard. The
//! shard that owns the key keeps a lease per load in flight: the first caller
//! gets a token and runs its loader, later callers wait for its value. Any
//! write to the key dooms the lease, and the shard then refuses the value the
//! leader brings back: it was read before the write, so it may be stale. The
//! leader still returns its own value to its own caller (that call overlapped
//! the write), but nobody else gets it: callers waiting on a doomed lease are
//! served by a fresh load, run by the first of them.

use crate::cache::{submit_error, Cache};
use crate::error::{Error, LoadError};
use coherent_shard::{panic_message, Completion, Op, Reply, Shard, SubmitError, Tag, Visible};
use std::future::Future;
use std::hash::Hash;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::pin::Pin;
use std::task::{Context, Poll};

impl<K, V> Cache<K, V>
where
    K: Hash + Eq + Clone + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
{
    /// Returns the value of `key`, loading it with `loader` on a miss.
    ///
    /// - At most one loader runs per key at a time; callers that arrive
    ///   meanwhile wait for its value.
    /// - The loaded value is cached only if no write to `key` committed
    ///   while the loader ran (G3). A call that starts after a write to
    ///   `key` returned never gets a value loaded before that write.
    /// - A loader error or panic reaches only this caller; a waiting caller
    ///   then runs its own loader.
    ///
    /// ```
    /// let cache = coherent::Cache::<u64, String>::new();
    /// let v = cache.get_or_load(7, |k| Ok::<_, std::io::Error>(format!("row {k}"))).unwrap();
    /// assert_eq!(v, "row 7");
    /// assert_eq!(cache.get(&7).as_deref(), Some("row 7"));
    ///
    /// let err = cache.get_or_load(8, |_| Err::<String, _>("db down")).unwrap_err();
    /// assert_eq!(err, coherent::LoadError::Loader("db down"));
    /// assert_eq!(cache.get(&8), None);
    /// ```
    pub fn get_or_load<E, F>(&self, key: K, loader: F) -> Result<V, LoadError<E>>
    where
        F: FnOnce(&K) -> Result<V, E>,
    {
        self.load(key, Vec::new(), loader)
    }

    /// [`get_or_load`](Self::get_or_load) for a value that carries `tags`
    /// once installed. Invalidating one of the tags while the loader runs
    /// dooms the load like a write to `key` does: its value is returned to
    /// this caller but not cached (G3 extended to tags).
    ///
    /// ```
    /// let cache = coherent::Cache::<u64, String>::new();
    /// let v = cache
    ///     .get_or_load_tagged(7, ["user:7"], |k| Ok::<_, ()>(format!("row {k}")))
    ///     .unwrap();
    /// assert_eq!(v, "row 7");
    /// cache.invalidate_tag("user:7").unwrap();
    /// assert_eq!(cache.get(&7), None);
    /// ```
    pub fn get_or_load_tagged<T, E, F>(&self, key: K, tags: T, loader: F) -> Result<V, LoadError<E>>
    where
        T: IntoIterator,
        T::Item: Into<Tag>,
        F: FnOnce(&K) -> Result<V, E>,
    {
        self.load(key, coherent_shard::tags(tags), loader)
    }

    fn load<E, F>(&self, key: K, tags: Vec<Tag>, loader: F) -> Result<V, LoadError<E>>
    where
        F: FnOnce(&K) -> Result<V, E>,
    {
        let hash = self.hash(&key);
        let shard = self.shard(hash);
        if let Some(v) = shard.get(hash, &key, Visible::Live(self.watermark().current())) {
            return Ok(v);
        }
        let token = loop {
            let waiting = shard
                .load_begin(hash, key.clone(), tags.clone())
                .map_err(submit_error)?;
            let answer = {
                let _waiting = shard.waiter();
                waiting.wait()
            };
            match wait_turn(answer)? {
                Turn::Hit(v) => return Ok(v),
                Turn::Lead(token) => break token,
                Turn::Retry => continue,
            }
        };
        let lease = Lease::new(shard, hash, key, token);
        let loaded = catch_unwind(AssertUnwindSafe(|| loader(lease.key())));
        match loaded {
            Ok(Ok(value)) => lease.install(value),
            Ok(Err(e)) => Err(LoadError::Loader(e)),
            Err(payload) => Err(LoadError::LoaderPanicked(panic_message(&*payload))),
        }
    }

    /// [`get_or_load`](Self::get_or_load) with a loader that cannot fail
    /// (it can still panic, which is reported as
    /// [`LoadError::LoaderPanicked`]).
    ///
    /// ```
    /// let cache = coherent::Cache::<u64, u64>::new();
    /// assert_eq!(cache.get_with(4, |k| k * 10).unwrap(), 40);
    /// ```
    pub fn get_with<F>(&self, key: K, init: F) -> Result<V, LoadError<std::convert::Infallible>>
    where
        F: FnOnce(&K) -> V,
    {
        self.get_or_load(key, |k| Ok(init(k)))
    }

    /// [`get_or_load`](Self::get_or_load) for async code: `loader` is a
    /// future, polled only if this call leads the load. Dropping the
    /// returned future is safe at any point: a dropped leader hands the load
    /// to the next waiter, a dropped waiter simply leaves.
    ///
    /// ```
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// let cache = coherent::Cache::<u64, u64>::new();
    /// let v = cache.get_or_load_async(3, async { Ok::<_, ()>(9) }).await.unwrap();
    /// assert_eq!(v, 9);
    /// assert_eq!(cache.get(&3), Some(9));
    /// # });
    /// ```
    pub async fn get_or_load_async<E, F>(&self, key: K, loader: F) -> Result<V, LoadError<E>>
    where
        F: Future<Output = Result<V, E>>,
    {
        self.load_async(key, Vec::new(), loader).await
    }

    /// [`get_or_load_tagged`](Self::get_or_load_tagged) for async code.
    pub async fn get_or_load_tagged_async<T, E, F>(
        &self,
        key: K,
        tags: T,
        loader: F,
    ) -> Result<V, LoadError<E>>
    where
        T: IntoIterator,
        T::Item: Into<Tag>,
        F: Future<Output = Result<V, E>>,
    {
        self.load_async(key, coherent_shard::tags(tags), loader)
            .await
    }

    async fn load_async<E, F>(&self, key: K, tags: Vec<Tag>, loader: F) -> Result<V, LoadError<E>>
    where
        F: Future<Output = Result<V, E>>,
    {
        let hash = self.hash(&key);
        let shard = self.shard(hash);
        if let Some(v) = shard.get(hash, &key, Visible::Live(self.watermark().current())) {
            return Ok(v);
        }
        let mut key = key;
        let (token, key) = loop {
            let waiting = shard
                .load_begin(hash, key.clone(), tags.clone())
                .map_err(submit_error)?;
            let mut waiting = WaitTurn {
                shard,
                hash,
                key: Some(key),
                completion: waiting,
            };
            let answer = {
                let _waiting = shard.waiter();
                (&mut waiting.completion).await
            };
            // The answer is taken, so the guard has nothing left to abandon:
            // the key comes back for the lease or for the next ask. No await
            // point from here to the lease guard, so this future cannot be
            // dropped in between.
            let back = waiting.key.take().expect("the guard holds the key");
            match wait_turn(answer)? {
                Turn::Hit(v) => return Ok(v),
                Turn::Lead(token) => break (token, back),
                Turn::Retry => key = back,
            }
        };
        let lease = Lease::new(shard, hash, key, token);
        match (CatchUnwind(Box::pin(loader))).await {
            Ok(Ok(value)) => lease.install(value),
            Ok(Err(e)) => Err(LoadError::Loader(e)),
            Err(msg) => Err(LoadError::LoaderPanicked(msg)),
        }
    }
}

enum Turn<V> {
    Hit(V),
    Lead(u64),
    /// The load waited for ended without a value (its leader's install
    /// panicked in the shard): ask again.
    Retry,
}

fn wait_turn<V>(reply: Option<Reply<V>>) -> Result<Turn<V>, Error> {
    match reply {
        Some(Reply::Hit(v)) => Ok(Turn::Hit(v)),
        Some(Reply::Lead(token)) => Ok(Turn::Lead(token)),
        Some(Reply::Retry) => Ok(Turn::Retry),
        Some(Reply::Closed) => Err(Error::Closed),
        Some(_) => unreachable!("a load is answered with Hit, Lead, Retry or Closed"),
        None => Err(Error::Lost),
    }
}

/// A lease this caller leads. Until its `Install` message is handed to the
/// shard, dropping it (loader error, panic, a dropped future, or a value
/// whose `Clone` panicked) abandons the load, so the next waiter leads
/// instead of waiting forever. Once the `Install` is handed over, the
/// shard ends the lease whatever becomes of the message: it installs,
/// discards, or (a panic there) tells the waiters to ask again.
struct Lease<'a, K: Hash + Eq + Clone, V: Clone> {
    shard: &'a Shard<K, V>,
    hash: u64,
    /// `None` once the `Install` message took it.
    key: Option<K>,
    token: u64,
}

impl<'a, K: Hash + Eq + Clone, V: Clone> Lease<'a, K, V> {
    fn new(shard: &'a Shard<K, V>, hash: u64, key: K, token: u64) -> Self {
        Self {
            shard,
            hash,
            key: Some(key),
            token,
        }
    }

    fn key(&self) -> &K {
        self.key.as_ref().expect("the key is taken only by install")
    }

    /// Brings the value to the shard; returns it to the leader whether or
    /// not the shard kept it, unless the leader's own key or value panicked
    /// on the way (`Error::Panicked`).
    fn install<E>(mut self, value: V) -> Result<V, LoadError<E>> {
        // The value's `Clone` is user code: if it panics, the key is still
        // here and `drop` abandons the lease.
        let copy = catch_unwind(AssertUnwindSafe(|| value.clone()))
            .map_err(|payload| LoadError::Cache(Error::Panicked(panic_message(&*payload))))?;
        let op = Op::Install {
            key: self.key.take().expect("install runs once"),
            value: copy,
            token: self.token,
        };
        match self.shard.submit(self.hash, op) {
            Ok(Reply::Installed) => tracing::trace!(token = self.token, "load installed"),
            Ok(_) => tracing::debug!(token = self.token, "load raced a write; not cached"),
            Err(SubmitError::Closed) => {
                tracing::debug!(token = self.token, "cache closed; value not cached")
            }
            Err(SubmitError::Panicked(message)) => {
                return Err(LoadError::Cache(Error::Panicked(message)));
            }
            Err(_) => tracing::warn!(token = self.token, "install lost; value not cached"),
        }
        Ok(value)
    }
}

impl<K: Hash + Eq + Clone, V: Clone> Drop for Lease<'_, K, V> {
    fn drop(&mut self) {
        if let Some(key) = self.key.take() {
            let op = Op::Abandon {
                key,
                token: self.token,
            };
            self.shard.send_oneway(self.hash, op);
        }
    }
}

/// An async caller waiting for its turn. If it is dropped after the shard
/// made it the leader but before it saw that, it abandons the lease.
struct WaitTurn<'a, K: Hash + Eq + Clone, V: Clone> {
    shard: &'a Shard<K, V>,
    hash: u64,
    key: Option<K>,
    completion: Completion<Reply<V>>,
}

impl<K: Hash + Eq + Clone, V: Clone> Drop for WaitTurn<'_, K, V> {
    fn drop(&mut self) {
        if let (Some(Reply::Lead(token)), Some(key)) = (self.completion.close(), self.key.take()) {
            self.shard
                .send_oneway(self.hash, Op::Abandon { key, token });
        }
    }
}

/// Polls a future, turning a panic into an error with its message.
struct CatchUnwind<F>(Pin<Box<F>>);

impl<F: Future> Future for CatchUnwind<F> {
    type Output = Result<F::Output, String>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match catch_unwind(AssertUnwindSafe(|| self.0.as_mut().poll(cx))) {
            Ok(Poll::Ready(v)) => Poll::Ready(Ok(v)),
            Ok(Poll::Pending) => Poll::Pending,
            Err(payload) => Poll::Ready(Err(panic_message(&*payload))),
        }
    }
}
