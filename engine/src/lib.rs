//! `coherent`: an in-process cache that never serves stale data under
//! concurrency, with lock-free reads.
//!
//! Keys are hashed to shards. A shard owns its entries and applies writes,
//! updates and load completions as messages, one at a time; readers never
//! talk to shards, they read the table the shard publishes, without locks
//! or locked instructions. A write returns only once it is visible.
//!
//! ```
//! use coherent::Cache;
//!
//! let cache: Cache<u64, String> = Cache::builder().shards(8).build()?;
//! cache.insert(1, "one".to_owned())?;
//! assert_eq!(cache.get(&1).as_deref(), Some("one"));
//!
//! // Loads are single-flight and never install a value an update raced.
//! let v = cache.get_or_load(2, |k| Ok::<_, std::io::Error>(format!("loaded {k}")))?;
//! assert_eq!(v, "loaded 2");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Guarantees
//!
//! - **G1** a write (`insert`, `invalidate`, `update`, `invalidate_tag`, a
//!   transaction's `commit`) is visible to every `get` that starts after it
//!   returns; single-key operations are linearizable.
//! - **G2** a [`Transaction`] (inserts, removals, tag invalidations, on any
//!   keys in any shards) becomes visible at one instant; `get_many` is a
//!   snapshot with respect to transactions.
//! - **G3** `get_or_load` never installs a value loaded before a write to the
//!   same key (or an invalidation of a tag the load declared) committed, and
//!   never hands such a value to a call that started after the write.
//! - **G4** `update` is an atomic read-modify-write; none is lost.
//! - **G5** `get` takes no lock, sends no message and never waits.
//! - **G6** a panicking or failing closure reaches only its own caller;
//!   [`Cache::close`] answers every operation in flight and refuses the rest.
//! - **G8** (cargo feature `redis`) across the replicas of a service joined
//!   through one Redis server (`replica::Replica`), a write that returned
//!   `Ok` on any replica is seen by every read that starts afterwards on
//!   any replica.
//!
//! `docs/guarantees.md` in the repository states each precisely and names the
//! test that checks it.
//!
//! # Code the cache runs for you
//!
//! Some of your code runs inside a shard, while the shard applies a change:
//! `update` closures, the removal listener, the weigher, and the `Drop` of
//! the keys and values a shard lets go of (the key of a write that replaced
//! a value, a replaced or removed entry). That code may read the cache. A
//! write from it is refused with [`Error::Reentrant`], because it could wait
//! for the shard it runs in. A key's `Hash`, `Eq` and `Clone` also run inside
//! the shard, and must not write to the cache at all.
//!
//! # Blocking and async
//!
//! Every operation that may wait (for a busy shard, a loader, a
//! transaction's watermark) has a blocking form and an `_async` form that
//! yields to the executor instead; the two sit next to each other in
//! [`Cache`]'s methods. Reads never wait, so they have one form.
//!
//! | blocking | async | non-blocking (fails with [`Error::Full`]) |
//! |---|---|---|
//! | [`Cache::insert`] | [`Cache::insert_async`] | [`Cache::try_insert`] |
//! | [`Cache::insert_tagged`] | [`Cache::insert_tagged_async`] | |
//! | [`Cache::insert_with_expiry`] | [`Cache::insert_with_expiry_async`] | |
//! | [`Cache::invalidate`] | [`Cache::invalidate_async`] | [`Cache::try_invalidate`] |
//! | [`Cache::invalidate_tag`] | [`Cache::invalidate_tag_async`] | |
//! | [`Cache::update`] | [`Cache::update_async`] | [`Cache::try_update`] |
//! | [`Cache::get_or_load`] | [`Cache::get_or_load_async`] | |
//! | [`Cache::get_or_load_tagged`] | [`Cache::get_or_load_tagged_async`] | |
//! | [`Transaction::commit`] | [`Transaction::commit_async`] | |
//!
//! [`Cache::get`], [`Cache::get_many`] and [`Cache::contains_key`] never
//! wait. The async forms need no particular runtime.

mod builder;
mod cache;
mod error;
mod load;
#[cfg(feature = "redis")]
pub mod replica;
mod sync;
mod txn;
mod visibility;

pub use crate::builder::{CacheBuilder, MAX_MAILBOX_BYTES, MAX_MAILBOX_CAPACITY, MAX_SHARDS};
pub use crate::cache::{Cache, GET_MANY_OPTIMISTIC_READS};
pub use crate::error::{Error, LoadError};
pub use crate::txn::Transaction;
pub use coherent_shard::{Clock, Expiry, RemovalCause, Stats, Tag};

/// The README's code blocks, compiled and run as doc-tests so that they
/// cannot drift from the API.
#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
struct ReadmeDoctests;
