//! G7, expiry: an expired entry is never returned (time to live, time to
//! idle, builder-wide and per entry), the shard reclaims it, and the
//! listener hears `Expired`. A manual clock moves time: no sleeps.

use coherent::{Cache, Clock, Expiry, RemovalCause};
use std::sync::{Arc, Mutex};
use std::time::Duration;

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

#[test]
fn time_to_live_hides_the_entry_at_its_deadline() {
    let clock = Clock::manual();
    let cache = Cache::<u64, u64>::builder()
        .time_to_live(secs(10))
        .clock(clock.clone())
        .stats(true)
        .build()
        .unwrap();
    cache.insert(1, 1).unwrap();
    clock.advance(secs(9));
    assert_eq!(cache.get(&1), Some(1));
    cache.insert(2, 2).unwrap(); // written at 9 s: lives until 19 s
    clock.advance(secs(1));
    assert_eq!(cache.get(&1), None, "expired at 10 s");
    assert_eq!(cache.get(&2), Some(2));
    assert_eq!(cache.get_many(&[1, 2]), vec![None, Some(2)]);
    clock.advance(secs(9));
    assert_eq!(cache.get(&2), None);
    // Reads do not refresh a time to live.
    let s = cache.stats();
    assert_eq!((s.hits, s.misses), (3, 3));
}

#[test]
fn time_to_idle_counts_from_the_last_read() {
    let clock = Clock::manual();
    let cache = Cache::<u64, u64>::builder()
        .time_to_idle(secs(5))
        .clock(clock.clone())
        .build()
        .unwrap();
    cache.insert(1, 1).unwrap();
    cache.insert(2, 2).unwrap();
    for _ in 0..3 {
        clock.advance(secs(4));
        assert_eq!(cache.get(&1), Some(1), "read within 5 s of the last read");
    }
    assert_eq!(cache.get(&2), None, "not read for 12 s");
    clock.advance(secs(5));
    assert_eq!(cache.get(&1), None);
}

#[test]
fn per_entry_expiry_overrides_the_default() {
    let clock = Clock::manual();
    let cache = Cache::<&str, u64>::builder()
        .time_to_live(secs(100))
        .clock(clock.clone())
        .build()
        .unwrap();
    cache.insert("default", 1).unwrap();
    cache
        .insert_with_expiry("short", 2, Expiry::ttl(secs(5)))
        .unwrap();
    cache
        .insert_with_expiry("idle", 3, Expiry::tti(secs(3)))
        .unwrap();
    clock.advance(secs(4));
    assert_eq!(cache.get("short"), Some(2));
    assert_eq!(cache.get("idle"), None, "idle for 4 s > 3 s");
    clock.advance(secs(1));
    assert_eq!(cache.get("short"), None);
    assert_eq!(cache.get("default"), Some(1));
    clock.advance(secs(95));
    assert_eq!(cache.get("default"), None);
    // A plain insert in a cache without defaults never expires.
    let plain = Cache::<u64, u64>::builder()
        .clock(clock.clone())
        .build()
        .unwrap();
    plain.insert(1, 1).unwrap();
    clock.advance(secs(1_000_000));
    assert_eq!(plain.get(&1), Some(1));
}

#[test]
fn update_and_loads_treat_an_expired_entry_as_absent() {
    let clock = Clock::manual();
    let cache = Cache::<u64, u64>::builder()
        .time_to_live(secs(1))
        .clock(clock.clone())
        .build()
        .unwrap();
    cache.insert(1, 10).unwrap();
    clock.advance(secs(2));
    let seen = cache
        .update(1, |v| Some(v.copied().unwrap_or(0) + 1))
        .unwrap();
    assert_eq!(seen, Some(1), "the update saw no value");
    clock.advance(secs(2));
    let loaded = cache
        .get_or_load(1, |_| Ok::<_, std::io::Error>(99))
        .unwrap();
    assert_eq!(loaded, 99, "an expired entry is reloaded, not served");
}

#[test]
fn the_shard_reclaims_expired_entries_and_says_why() {
    let clock = Clock::manual();
    let log = Arc::new(Mutex::new(Vec::new()));
    let seen = log.clone();
    let cache = Cache::<u64, u64>::builder()
        .shards(1)
        .time_to_live(secs(10))
        .clock(clock.clone())
        .removal_listener(move |k, _, cause| seen.lock().unwrap().push((*k, cause)))
        .build()
        .unwrap();
    for k in 0..100 {
        cache.insert(k, k).unwrap();
    }
    clock.advance(secs(10));
    // Writes sweep a few slots each; enough of them cover the table.
    for k in 1_000..1_200 {
        cache.insert(k, k).unwrap();
    }
    assert_eq!(
        cache.len(),
        200,
        "the 200 new entries are left, the expired 100 gone: {:?}",
        cache.stats()
    );
    assert_eq!(cache.stats().expirations, 100);
    let log = log.lock().unwrap();
    assert_eq!(log.len(), 100);
    assert!(log
        .iter()
        .all(|&(k, c)| k < 100 && c == RemovalCause::Expired));
}

#[test]
fn replacing_an_expired_entry_reports_it_expired() {
    let clock = Clock::manual();
    let log = Arc::new(Mutex::new(Vec::new()));
    let seen = log.clone();
    let cache = Cache::<u64, u64>::builder()
        .time_to_live(secs(1))
        .clock(clock.clone())
        .removal_listener(move |k, v, cause| seen.lock().unwrap().push((*k, *v, cause)))
        .build()
        .unwrap();
    cache.insert(1, 1).unwrap();
    cache.insert(1, 2).unwrap();
    clock.advance(secs(1));
    cache.insert(1, 3).unwrap();
    assert_eq!(
        *log.lock().unwrap(),
        [
            (1, 1, RemovalCause::Replaced),
            (1, 2, RemovalCause::Expired)
        ]
    );
}
