//! Seed 000: a set and its related invalidations done in two steps (G2).

use coherent_tests::free_rounds;
use coherent_tests::incident_000::{self, TwoStep};
use std::sync::Arc;

fn coherent() -> coherent::Cache<u64, u64> {
    coherent::Cache::builder().shards(8).build().unwrap()
}

#[test]
fn incident_000_no_reader_sees_the_new_value_with_stale_related_entries_forced() {
    for _ in 0..50 {
        assert_eq!(incident_000::forced(Arc::new(coherent())).anomalies, 0);
    }
}

#[test]
fn incident_000_two_step_writer_is_caught_forced() {
    // The checker can fail: the incident's set-then-invalidate is caught.
    let outcome = incident_000::forced(Arc::new(TwoStep(coherent())));
    assert!(outcome.anomalies > 0, "{outcome:?}");
}

#[test]
fn incident_000_atomic_under_contention() {
    let outcome = incident_000::free_running(Arc::new(coherent()), free_rounds());
    assert_eq!(outcome.rounds, free_rounds());
    assert_eq!(outcome.anomalies, 0, "{outcome:?}");
}

#[test]
fn incident_000_two_step_writer_is_caught_under_contention() {
    let outcome = incident_000::free_running(Arc::new(TwoStep(coherent())), free_rounds());
    assert!(outcome.anomalies > 0, "{outcome:?}");
}

/// The same race on a bounded cache (G7 must not break G2's atomicity).
#[test]
fn incident_000_atomic_under_contention_with_a_small_capacity() {
    let small = coherent::Cache::builder()
        .shards(4)
        .max_capacity(64)
        .build()
        .unwrap();
    let outcome = incident_000::free_running(Arc::new(small), free_rounds());
    assert_eq!(outcome.rounds, free_rounds());
    assert_eq!(outcome.anomalies, 0, "{outcome:?}");
}
