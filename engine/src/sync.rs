//! The one place this crate takes its synchronisation primitives from.
//!
//! Every atomic, fence, `Arc`, lock, condition variable and spin hint the
//! engine uses is imported from here, never from `std` directly, so that a
//! model checker can swap them: under `--cfg coherent_loom` they come from
//! loom, as the shard crate's do (`coherent-shard`'s `sync.rs`), and the
//! engine's loom models (`engine/tests/loom_engine.rs`) run whole caches,
//! transactions and `get_many` under loom.
//!
//! There is no `ArcSwap` to stand in for: readers load each shard's
//! published table through an `AtomicPtr` from the shard crate's facade
//! (loom's under the cfg) and are protected by its reclamation scheme
//! (`docs/design.md`, "Reclamation and the pin").
//!
//! Two things deliberately stay `std`, because they order nothing: the
//! `Arc`s of the weigher and removal listener (immutable closures handed
//! to the shards at build; loom's `Arc` cannot hold a `dyn Fn`), and the
//! per-cache hash seed (under loom a fixed one, since a model must run the
//! same way every time it is replayed).

#[cfg(not(coherent_loom))]
mod imp {
    pub(crate) use std::sync::atomic::{fence, AtomicU64, AtomicUsize, Ordering};
    pub(crate) use std::sync::{Arc, Condvar, Mutex, MutexGuard};

    /// The shards a cache handle shares: one allocation, one load from the
    /// handle to the slice.
    pub(crate) type Shards<K, V> = Arc<[coherent_shard::Shard<K, V>]>;

    /// Builds [`Shards`].
    pub(crate) fn shards<K, V>(
        shards: impl Iterator<Item = coherent_shard::Shard<K, V>>,
    ) -> Shards<K, V> {
        shards.collect()
    }

    /// The routing and probing hasher: seeded per cache.
    pub(crate) type Hasher = foldhash::quality::RandomState;

    /// A fresh per-cache seed.
    pub(crate) fn hasher() -> Hasher {
        Hasher::default()
    }

    /// Polls of a condition before a waiter blocks.
    pub(crate) const SPINS: u32 = 1024;

    /// A hint to the processor that we are in a spin loop.
    #[inline]
    pub(crate) fn spin_loop() {
        std::hint::spin_loop();
    }
}

#[cfg(coherent_loom)]
mod imp {
    pub(crate) use loom::sync::atomic::{fence, AtomicU64, AtomicUsize, Ordering};
    pub(crate) use loom::sync::{Arc, Condvar, Mutex, MutexGuard};

    /// loom's `Arc` holds sized values only: a vector stands in for the
    /// slice (one more indirection, under the model only).
    pub(crate) type Shards<K, V> = Arc<Vec<coherent_shard::Shard<K, V>>>;

    /// Builds [`Shards`].
    pub(crate) fn shards<K, V>(
        shards: impl Iterator<Item = coherent_shard::Shard<K, V>>,
    ) -> Shards<K, V> {
        Arc::new(shards.collect())
    }

    /// A fixed seed: every replay of a model routes keys the same way.
    pub(crate) type Hasher = foldhash::quality::FixedState;

    /// The fixed seed.
    pub(crate) fn hasher() -> Hasher {
        Hasher::with_seed(0x5EED)
    }

    /// Under loom every poll is a scheduling point: poll once, then block.
    pub(crate) const SPINS: u32 = 1;

    /// Under loom a spin must yield so the model can run the other side.
    #[inline]
    pub(crate) fn spin_loop() {
        loom::thread::yield_now();
    }
}

pub(crate) use imp::*;
