//! The incident scenarios (`docs/incidents.md`), written once and run against
//! `coherent` and against deliberately naive caches used the way the incidents' services
//! used theirs. A scenario returns the anomalies it found; the tests in
//! `tests/` assert zero for `coherent` and at least one for the naive cache
//! (so each check is known to be able to fail), and the demo prints both.

pub mod canary;
pub mod history;
pub mod incident_000;
pub mod incidents;
pub mod naive;
pub mod reclaim;
pub mod redis_server;
pub mod replicas;

pub use incidents::{IncidentCache, Outcome};
pub use naive::{AckBeforeApply, NaiveCache};

/// Whether the tests run at a small size: `COHERENT_TEST_SMALL` set, as
/// `.ci/run` sets it for the runs under Valgrind's memcheck, where each
/// operation costs fifty times more and threads take turns.
pub fn small() -> bool {
    std::env::var_os("COHERENT_TEST_SMALL").is_some()
}

/// `full` operations, or `small` at the small size ([`small`]).
pub fn sized(full: u64, small: u64) -> u64 {
    if self::small() {
        small
    } else {
        full
    }
}

/// Rounds for the free-running phases: at least 10^5 in release builds (the
/// bar the scenarios are held to), fewer in debug builds so that a plain
/// `cargo test` stays quick, and 2,000 at the small size.
pub fn free_rounds() -> u64 {
    if cfg!(debug_assertions) {
        sized(10_000, 2_000)
    } else {
        sized(100_000, 2_000)
    }
}

/// A cache small enough that the incident scenarios run under heavy eviction
/// (4 shards, 16 entries): bounding must not break G1-G4.
pub fn small_coherent<K, V>() -> std::sync::Arc<coherent::Cache<K, V>>
where
    K: std::hash::Hash + Eq + Clone + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
{
    std::sync::Arc::new(
        coherent::Cache::builder()
            .shards(4)
            .max_capacity(16)
            .build()
            .expect("a valid configuration"),
    )
}

/// Spins (yielding) until `cond` holds. Used to wait for a state another
/// thread reaches through the code under test, such as "this caller is now
/// blocked inside the cache": a condition, not a timed sleep.
pub fn wait_until(mut cond: impl FnMut() -> bool) {
    while !cond() {
        std::thread::yield_now();
    }
}
