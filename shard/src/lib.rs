//! One shard of the [`coherent`](https://docs.rs/coherent) cache.
//!
//! A shard owns a set of entries outright. Changes reach it as messages
//! ([`Op`]) applied one at a time by whoever holds its owner token; readers
//! never talk to it and read its published table without locks. Most users
//! want the `coherent` crate, which routes keys to shards and offers the
//! public `Cache` API; this crate is its building block.
//!
//! **Internal**: this crate's API (`Op`, `Reply`, `Responder` and the rest)
//! is shaped by what `coherent` needs and changes with it, with no
//! stability promise. Depend on `coherent`.
//!
//! ```
//! use coherent_shard::{Op, Reply, Shard, Visible};
//!
//! let shard: Shard<u64, &str> = Shard::new(64, 16);
//! let hash = 42; // the caller hashes the key (the engine uses one hasher)
//! assert_eq!(shard.submit(hash, Op::Insert { key: 1, value: "one" }).unwrap(), Reply::Done);
//! assert_eq!(shard.get(hash, &1, Visible::At(0)), Some("one"));
//! ```
//!
//! # Guarantees
//!
//! A change is visible to every `get` that starts after `submit` returns;
//! single-key operations are linearizable; a load installs its value only if
//! no write to the key committed while it ran. See `docs/guarantees.md` in
//! the repository for the full contract and the tests behind each promise.

mod cells;
mod clock;
mod completion;
mod limits;
mod mailbox;
mod message;
mod owner;
mod policy;
mod reclaim;
mod shard;
mod sync;
mod table;
mod tag;
mod token;
mod value;

pub use crate::clock::Clock;
pub use crate::completion::{Completion, Responder};
pub use crate::limits::{Expiry, Listener, ReadCounts, RemovalCause, ShardConfig, Stats, Weigher};
pub use crate::message::{Op, Reply, TxnOp, UpdateFn};
pub use crate::shard::{yield_now, Shard, SubmitError, TableTooLarge, WaiterGuard};
pub use crate::table::Visible;
pub use crate::tag::{tags, Tag};

/// Whether the current thread is running an update closure inside a shard
/// (where waiting on a shard could wait on itself).
pub fn in_update_closure() -> bool {
    owner::in_closure()
}

/// The message of a panic payload, for errors that report a caught panic.
pub fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    owner::panic_message(payload)
}

#[cfg(coherent_loom)]
#[doc(hidden)]
pub use crate::token::loom_bias;

/// Runs `f` under `loom::model` and prints how many interleavings it
/// explored and how long that took (the figures in docs/guarantees.md).
/// For the loom models of this crate and of the engine.
#[cfg(coherent_loom)]
#[doc(hidden)]
pub fn loom_model(name: &str, f: impl Fn() + Sync + Send + 'static) {
    use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
    let runs = std::sync::Arc::new(AtomicUsize::new(0));
    let counted = runs.clone();
    let started = std::time::Instant::now();
    loom::model(move || {
        counted.fetch_add(1, Relaxed);
        f();
    });
    eprintln!(
        "loom model {name}: {} interleavings in {:?}",
        runs.load(Relaxed),
        started.elapsed()
    );
}
