//! The history checker (`coherent_tests::history`) over real runs: mixed
//! transactions (1 key, 2 keys, all keys, removals, tag invalidations)
//! committed by one thread while two threads `get` and `get_many`.

use coherent_tests::history::{check, record, OneKeyAtATime};
use std::sync::Arc;

fn transactions() -> u64 {
    if cfg!(debug_assertions) {
        2_000
    } else {
        20_000
    }
}

fn coherent() -> coherent::Cache<u64, u64> {
    coherent::Cache::builder().shards(8).build().unwrap()
}

#[test]
fn coherent_histories_have_no_partial_transaction_and_are_linearizable() {
    for seed in 1..=3 {
        let history = record(Arc::new(coherent()), transactions(), 2, seed);
        let multi = history
            .reads
            .iter()
            .filter(|r| r.many && r.results.iter().filter(|(_, v)| v.is_some()).count() > 1)
            .count();
        assert!(
            multi > 0,
            "no get_many saw two values: the run checked little"
        );
        let violations = check(&history);
        assert!(
            violations.is_empty(),
            "{} of {} reads unexplained, first: {:?}",
            violations.len(),
            history.reads.len(),
            violations.first()
        );
    }
}

#[test]
fn the_checker_rejects_a_cache_that_applies_transactions_key_by_key() {
    // A race: the broken cache shows a partial transaction in almost every
    // run; allow a few runs before calling the checker blind.
    let found = (1..=5).any(|seed| {
        let history = record(Arc::new(OneKeyAtATime(coherent())), transactions(), 2, seed);
        !check(&history).is_empty()
    });
    assert!(found, "the checker never caught the key-by-key cache");
}
