//! Seed 002: a write acknowledged before it is visible (G1).

use coherent_tests::incidents::incident_002;
use coherent_tests::{free_rounds, AckBeforeApply};
use std::sync::Arc;

fn coherent() -> Arc<coherent::Cache<u64, u64>> {
    Arc::new(coherent::Cache::builder().shards(4).build().unwrap())
}

#[test]
fn incident_002_write_then_read_is_never_stale_forced() {
    for _ in 0..50 {
        assert_eq!(incident_002::forced(coherent()).anomalies, 0);
    }
}

#[test]
fn incident_002_ack_before_apply_cache_is_caught_forced() {
    let outcome = incident_002::forced(Arc::new(AckBeforeApply::<u64>::default()));
    assert!(outcome.anomalies > 0, "{outcome:?}");
}

#[test]
fn incident_002_write_then_read_is_never_stale_under_contention() {
    let outcome = incident_002::free_running(coherent(), free_rounds());
    assert_eq!(outcome.rounds, free_rounds());
    assert_eq!(outcome.anomalies, 0, "{outcome:?}");
}

/// The same races on a bounded cache (G7 must not break G1).
#[test]
fn incident_002_holds_with_a_small_capacity() {
    let small = coherent_tests::small_coherent;
    assert_eq!(incident_002::forced(small()).anomalies, 0);
    let outcome = incident_002::free_running(small(), free_rounds());
    assert_eq!(outcome.anomalies, 0, "{outcome:?}");
}
