//! Seed 001: a loader caches data that an update invalidated meanwhile (G3).

use coherent_tests::incidents::incident_001;
use coherent_tests::{free_rounds, NaiveCache};
use std::sync::Arc;

fn coherent() -> Arc<coherent::Cache<u64, u64>> {
    Arc::new(coherent::Cache::builder().shards(4).build().unwrap())
}

#[test]
fn incident_001_stale_fill_is_never_installed_forced() {
    for _ in 0..50 {
        assert_eq!(incident_001::forced(coherent()).anomalies, 0);
    }
}

#[test]
fn incident_001_naive_cache_installs_the_stale_fill_forced() {
    // The checker can fail: the incident's "miss, load, set" cache is caught.
    let outcome = incident_001::forced(Arc::new(NaiveCache::<u64>::default()));
    assert!(outcome.anomalies > 0, "{outcome:?}");
}

#[test]
fn incident_001_no_stale_fill_under_contention() {
    let outcome = incident_001::free_running(coherent(), free_rounds());
    assert_eq!(outcome.rounds, free_rounds());
    assert_eq!(outcome.anomalies, 0, "{outcome:?}");
}

/// The same races on a bounded cache (G7 must not break G3).
#[test]
fn incident_001_holds_with_a_small_capacity() {
    let small = coherent_tests::small_coherent;
    for _ in 0..50 {
        assert_eq!(incident_001::forced(small()).anomalies, 0);
    }
    let outcome = incident_001::free_running(small(), free_rounds());
    assert_eq!(outcome.anomalies, 0, "{outcome:?}");
}
