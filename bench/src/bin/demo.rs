//! The main demo: reproduces the incident races against the naive caches the
//! incidents' services used and against `coherent`, prints the anomalies each showed, then
//! the speed figures. Runs in under a minute.
//!
//! `cargo run --release -p coherent-bench --bin demo`

use coherent_tests::incident_000::{self, TwoStep};
use coherent_tests::incidents::{incident_001, incident_002, incident_003, Outcome};
use coherent_tests::{free_rounds, AckBeforeApply, NaiveCache};
use std::sync::Arc;

fn cache<V: Clone + Send + Sync + 'static>() -> Arc<coherent::Cache<u64, V>> {
    Arc::new(coherent::Cache::builder().shards(4).build().expect("valid"))
}

fn row(incident: &str, how: &str, naive_name: &str, naive: Outcome, ours: Outcome) {
    println!(
        "{:<34} {:<10} {:>9} | {:<24} {:>9} | {:>9}",
        incident, how, naive.rounds, naive_name, naive.anomalies, ours.anomalies
    );
}

fn main() {
    let rounds = free_rounds();
    println!("Incident races: anomalies found (a stale or lost result each)\n");
    println!(
        "{:<34} {:<10} {:>9} | {:<24} {:>9} | {:>9}",
        "incident", "schedule", "rounds", "naive cache", "naive", "coherent"
    );
    let eight = || {
        coherent::Cache::<u64, u64>::builder()
            .shards(8)
            .build()
            .expect("valid")
    };
    row(
        "000 set, then invalidate related",
        "forced",
        "set, then invalidate",
        incident_000::forced(Arc::new(TwoStep(eight()))),
        incident_000::forced(Arc::new(eight())),
    );
    row(
        "000 set, then invalidate related",
        "free",
        "set, then invalidate",
        incident_000::free_running(Arc::new(TwoStep(eight())), rounds),
        incident_000::free_running(Arc::new(eight()), rounds),
    );
    row(
        "001 stale fill after invalidate",
        "forced",
        "miss-load-set map",
        incident_001::forced(Arc::new(NaiveCache::<u64>::default())),
        incident_001::forced(cache()),
    );
    row(
        "001 stale fill after invalidate",
        "free",
        "miss-load-set map",
        incident_001::free_running(Arc::new(NaiveCache::<u64>::default()), rounds),
        incident_001::free_running(cache(), rounds),
    );
    row(
        "002 ack before visible",
        "forced",
        "ack-before-apply",
        incident_002::forced(Arc::new(AckBeforeApply::<u64>::default())),
        incident_002::forced(cache()),
    );
    row(
        "002 ack before visible",
        "free",
        "ack-before-apply",
        incident_002::free_running(Arc::new(AckBeforeApply::<u64>::default()), rounds),
        incident_002::free_running(cache(), rounds),
    );
    row(
        "003 lost read-modify-write (x8)",
        "forced",
        "read-then-write map",
        incident_003::forced(Arc::new(NaiveCache::<Vec<u32>>::default())),
        incident_003::forced(cache()),
    );
    row(
        "003 lost read-modify-write (x8)",
        "free",
        "read-then-write map",
        incident_003::free_running(Arc::new(NaiveCache::<Vec<u32>>::default()), rounds),
        incident_003::free_running(cache(), rounds),
    );
    println!();
    coherent_bench::compare::run(true, None);
}
