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

/// A cache on a manual clock, with `ttl` as its default time to live.
fn manual<V: Clone + Send + Sync + 'static>(ttl: Option<Duration>) -> (Clock, Cache<u64, V>) {
    let clock = Clock::manual();
    let mut builder = Cache::builder().clock(clock.clone());
    if let Some(ttl) = ttl {
        builder = builder.time_to_live(ttl);
    }
    (clock, builder.build().unwrap())
}

#[test]
fn an_update_keeps_the_entrys_own_expiry() {
    let (clock, cache) = manual::<u64>(None);
    cache
        .insert_with_expiry(1, 1, Expiry::ttl(Duration::from_millis(50)))
        .unwrap();
    clock.advance(Duration::from_millis(10));
    assert_eq!(cache.update(1, |v| v.map(|v| v + 1)), Ok(Some(2)));
    clock.advance(Duration::from_millis(39));
    assert_eq!(
        cache.get(&1),
        Some(2),
        "alive until its own deadline, 50 ms"
    );
    clock.advance(Duration::from_millis(1));
    assert_eq!(cache.get(&1), None, "the update did not make it immortal");
    clock.advance(secs(1));
    assert_eq!(cache.get(&1), None);
}

#[test]
fn an_update_keeps_the_deadline_and_carries_the_idle_time_over() {
    let (clock, cache) = manual::<String>(Some(secs(100)));
    cache
        .insert_with_expiry(1, "a".to_owned(), Expiry::tti(secs(5)).with_ttl(secs(20)))
        .unwrap();
    cache.insert(2, "b".to_owned()).unwrap(); // the default: 100 s
    for _ in 0..3 {
        clock.advance(secs(4));
        cache.update(1, |v| v.map(|s| format!("{s}+"))).unwrap();
    }
    assert_eq!(cache.get(&1).as_deref(), Some("a+++"), "idle 4 s at most");
    clock.advance(secs(5));
    assert_eq!(cache.get(&1), None, "its own time to idle, kept by updates");
    cache
        .insert_with_expiry(3, "c".to_owned(), Expiry::tti(secs(5)).with_ttl(secs(20)))
        .unwrap();
    for _ in 0..4 {
        clock.advance(secs(4));
        cache.update(3, |v| v.cloned()).unwrap();
    }
    assert_eq!(cache.get(&3).as_deref(), Some("c"), "16 s");
    clock.advance(secs(4));
    assert_eq!(
        cache.get(&3),
        None,
        "its own 20 s deadline, kept by updates"
    );
    // 37 s now; key 2 was written at 0 s with the default 100 s.
    clock.advance(secs(60));
    cache.update(2, |v| v.map(|s| format!("{s}!"))).unwrap();
    clock.advance(secs(2));
    assert_eq!(cache.get(&2).as_deref(), Some("b!"), "99 s");
    clock.advance(secs(1));
    assert_eq!(cache.get(&2), None, "the default deadline is kept too");
}

#[test]
fn an_insert_over_an_entry_with_its_own_expiry_takes_the_caches_default() {
    let (clock, cache) = manual::<u64>(Some(secs(100)));
    for how in 0..3 {
        cache
            .insert_with_expiry(1, 1, Expiry::ttl(secs(1)))
            .unwrap();
        match how {
            0 => cache.insert(1, 2).unwrap(),
            1 => cache.insert_tagged(1, 2, ["t"]).unwrap(),
            _ => cache.transaction().insert(1, 2).commit().unwrap(),
        }
        clock.advance(secs(2));
        assert_eq!(cache.get(&1), Some(2), "case {how}: a new entry, 100 s");
        clock.advance(secs(98));
        assert_eq!(cache.get(&1), None, "case {how}");
    }
}

#[test]
fn the_manual_clock_saturates_instead_of_wrapping() {
    let (clock, cache) = manual::<u64>(None);
    cache
        .insert_with_expiry(1, 1, Expiry::ttl(secs(1)))
        .unwrap();
    clock.advance(secs(2));
    assert_eq!(cache.get(&1), None);
    let before = clock.now_ms();
    clock.advance(Duration::MAX);
    assert_eq!(clock.now_ms(), u64::MAX);
    assert!(clock.now_ms() >= before, "time never goes backwards");
    assert_eq!(cache.get(&1), None, "an expired entry stays expired");
    clock.advance(secs(1));
    assert_eq!(clock.now_ms(), u64::MAX);
    cache
        .insert_with_expiry(2, 2, Expiry::ttl(secs(1)))
        .unwrap();
    assert_eq!(cache.get(&2), None, "at the end of time, nothing lives");
}
