//! The owner token's bias (shard/src/token.rs) on real threads, with the
//! real `membarrier`: one thread writes one shard in long runs, so the
//! shard's token is biased to it and it takes the token without a locked
//! instruction; another thread, at points the first cannot predict,
//! revokes that bias by writing the same shard (an `update`, a
//! read-modify-write, and a plain insert). Every write must be applied
//! once, none lost to two holders at once, and each write the first thread
//! acknowledged must be visible to the second.
//!
//! The protocol's failure modes (a revocation that does not wait for the
//! biased thread, or waits without the heavy fence) are what the loom
//! models `token::loom_tests` catch, by the broken builds
//! `coherent_loom_break_bias` and `coherent_loom_break_bias_fence`
//! (.ci/loom-breaks); loom checks the symmetric fences, this test runs the
//! asymmetric ones.

use coherent::Cache;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

/// The key the revoking thread counts on, apart from the writer's keys.
const COUNTER: u64 = u64::MAX;

#[test]
fn a_revoked_bias_loses_no_write_and_hides_none() {
    let runs: u64 = if cfg!(debug_assertions) { 6 } else { 10 };
    let cache: Cache<u64, u64> = Cache::builder().shards(1).build().expect("valid");
    // Writes the writer has acknowledged (Release after each returns).
    let acknowledged = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (cache, acknowledged, stop) = (cache.clone(), acknowledged.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) {
                // 4,096 keys, each rewritten in turn (in place: u64
                // values), value = how many writes came before.
                cache.insert(i % 4096, i).expect("insert");
                i += 1;
                acknowledged.store(i, Ordering::Release);
            }
            i
        })
    };
    let mut updates = 0u64;
    let mut seen = 0u64;
    // The k-th revocation waits for 150 * 2^k more writes: more than the
    // streak the bias needs after k revocations (64, doubled by each), so
    // the writer has earned it back each time.
    for k in 0..runs {
        let target = seen + (150u64 << k);
        while acknowledged.load(Ordering::Acquire) < target {
            std::thread::yield_now();
        }
        let acked = acknowledged.load(Ordering::Acquire);
        // Revoke: a read-modify-write and a plain insert on the same shard.
        cache
            .update(COUNTER, |v| Some(v.map_or(1, |v| v + 1)))
            .expect("update");
        updates += 1;
        cache.insert(COUNTER - 1, k).expect("insert");
        // The writer's last acknowledged write (value acked - 1, at key
        // (acked - 1) % 4096) is visible, or a later one.
        let last = acked - 1;
        let got = cache.get(&(last % 4096)).expect("written");
        assert!(
            got >= last && got % 4096 == last % 4096,
            "write {last} was acknowledged, a later get read {got}"
        );
        assert_eq!(cache.get(&COUNTER), Some(updates), "an update was lost");
        seen = acked;
    }
    stop.store(true, Ordering::Relaxed);
    let written = writer.join().expect("writer");
    // Every key holds the last value written to it.
    for key in 0..4096.min(written) {
        let last = (written - 1 - key) / 4096 * 4096 + key;
        assert_eq!(cache.get(&key), Some(last), "key {key}");
    }
    assert_eq!(cache.get(&COUNTER), Some(updates));
    assert_eq!(cache.get(&(COUNTER - 1)), Some(runs - 1));
    assert_eq!(cache.len(), 4096.min(written as usize) + 2);
}
