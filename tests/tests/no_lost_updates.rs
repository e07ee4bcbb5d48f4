//! Seed 003: concurrent read-modify-writes that lose updates (G4).

use coherent_tests::incidents::incident_003;
use coherent_tests::{free_rounds, NaiveCache};
use std::sync::Arc;

fn coherent() -> Arc<coherent::Cache<u64, Vec<u32>>> {
    Arc::new(coherent::Cache::builder().shards(4).build().unwrap())
}

#[test]
fn incident_003_eight_appenders_lose_nothing_forced() {
    for _ in 0..50 {
        assert_eq!(incident_003::forced(coherent()).anomalies, 0);
    }
}

#[test]
fn incident_003_naive_read_modify_write_loses_updates_forced() {
    let outcome = incident_003::forced(Arc::new(NaiveCache::<Vec<u32>>::default()));
    // The paused appender writes back the list it read before the others.
    assert_eq!(outcome.anomalies, 7, "{outcome:?}");
}

#[test]
fn incident_003_eight_appenders_lose_nothing_under_contention() {
    // 8 appenders over 12,500 lists in release: 10^5 updates, 200+ rounds.
    let outcome = incident_003::free_running(coherent(), free_rounds());
    assert!(outcome.rounds >= free_rounds());
    assert_eq!(outcome.anomalies, 0, "{outcome:?}");
}

/// The same races on a bounded cache (G7 must not break G4). The forced
/// run uses one list; the free-running one needs room for all of its
/// lists (an evicted list would lose its items by design).
#[test]
fn incident_003_holds_with_a_bounded_capacity() {
    let bounded = |cap| {
        Arc::new(
            coherent::Cache::builder()
                .shards(4)
                .max_capacity(cap)
                .build()
                .unwrap(),
        )
    };
    assert_eq!(incident_003::forced(bounded(16)).anomalies, 0);
    let outcome = incident_003::free_running(bounded(65_536), free_rounds());
    assert_eq!(outcome.anomalies, 0, "{outcome:?}");
}
