//! A bounded cache with expiry and a removal listener. The clock is a
//! manual one, so that the example shows expiry without sleeping.
//!
//! `cargo run --release -p coherent --example bounded`

use coherent::{Cache, Clock, Expiry, RemovalCause};
use std::sync::{Arc, Mutex};
use std::time::Duration;

fn main() -> Result<(), coherent::Error> {
    let clock = Clock::manual();
    let removed = Arc::new(Mutex::new(Vec::new()));
    let log = removed.clone();
    let cache: Cache<u64, String> = Cache::builder()
        .max_capacity(1_000)
        .time_to_live(Duration::from_secs(60))
        .clock(clock.clone())
        .removal_listener(move |key, _value, cause| log.lock().unwrap().push((*key, cause)))
        .build()?;

    // More keys than the capacity: the cache evicts to stay within it.
    for key in 0..5_000 {
        cache.insert(key, format!("value {key}"))?;
    }
    println!("holds {} of 5000 entries (capacity 1000)", cache.len());
    assert!(cache.weighted_size() <= 1_000);

    // One entry with its own, shorter time to live.
    cache.insert_with_expiry(
        9_999,
        "short-lived".to_owned(),
        Expiry::ttl(Duration::from_secs(1)),
    )?;
    assert!(cache.get(&9_999).is_some());
    clock.advance(Duration::from_secs(2));
    assert_eq!(cache.get(&9_999), None, "expired after its own 1 s");

    // A minute later everything has expired.
    clock.advance(Duration::from_secs(60));
    let survivors = (0..5_000).filter(|k| cache.get(k).is_some()).count();
    assert_eq!(survivors, 0);

    // The listener heard of every eviction. An expired entry is reported
    // when a shard's writes sweep it, so here, with no write since the
    // clock moved, none is yet.
    let removed = removed.lock().unwrap();
    let evicted = removed
        .iter()
        .filter(|(_, c)| *c == RemovalCause::Evicted)
        .count();
    println!(
        "listener: {evicted} evicted, {} removals in all",
        removed.len()
    );
    assert!(evicted >= 4_000);
    Ok(())
}
