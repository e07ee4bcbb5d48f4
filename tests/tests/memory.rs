//! A table that grows frees the slot arrays it outgrew.
//!
//! Each rebuild publishes a new array and retires the old one; readers may
//! still hold it, so it waits in the reclaimer's garbage. A cache that only
//! grows retires nothing else, so until the owner sealed garbage only every
//! `BATCH` retirements, it kept every array it ever outgrew: about as many
//! bytes again as its current array, for good.
//!
//! This binary's global allocator counts the bytes each thread has out
//! (a thread-local, so the test harness's own threads do not count). The
//! first test grows a cache from empty and compares what it holds with a
//! cache sized for the same entries from the start, which never rebuilt;
//! the second churns a cache and checks that freed entries' memory is
//! reused, and all of it given back on drop. No
//! other tests run in this process, and these two take turns (`SERIAL`),
//! so no reader is pinned while an owner reclaims.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

thread_local! {
    /// Bytes this thread allocated minus those it freed. `const`, no
    /// destructor: touching it never allocates.
    static LIVE: Cell<i64> = const { Cell::new(0) };
}

struct Counting;

fn add(bytes: i64) {
    // `try_with`: the thread may be tearing down its thread-locals.
    let _ = LIVE.try_with(|c| c.set(c.get() + bytes));
}

// SAFETY: forwards every call to `System` unchanged; only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        add(layout.size() as i64);
        // SAFETY: the caller's contract, passed on.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        add(-(layout.size() as i64));
        // SAFETY: the caller's contract, passed on.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        add(layout.size() as i64);
        // SAFETY: the caller's contract, passed on.
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        add(new_size as i64 - layout.size() as i64);
        // SAFETY: the caller's contract, passed on.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

const KEYS: u64 = 100_000;

/// Held by each test while it runs: one at a time.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

/// Bytes the cache `build` returns holds, with `KEYS` entries, as counted
/// on this thread (every insert runs its owner's work here: the token is
/// always free).
fn held(build: impl FnOnce() -> coherent::Cache<u64, u64>) -> i64 {
    let before = LIVE.with(Cell::get);
    let cache = build();
    for k in 0..KEYS {
        cache.insert(k, k).expect("insert");
    }
    assert_eq!(cache.len() as u64, KEYS);
    let bytes = LIVE.with(Cell::get) - before;
    drop(cache);
    bytes
}

#[test]
fn a_growing_table_frees_the_arrays_it_outgrew() {
    let _turn = serial();
    let presized = held(|| {
        coherent::Cache::builder()
            .shards(1)
            .initial_capacity(KEYS as usize)
            .build()
            .expect("valid")
    });
    let grown = held(|| coherent::Cache::builder().shards(1).build().expect("valid"));
    // Both end with the same array (room for `KEYS` at half load: 2^18
    // slots, 2 MiB) and the same entries; the grown one passed through 13
    // smaller arrays, 2 MiB together, which it must have given back.
    println!("presized: {presized} bytes, grown from empty: {grown} bytes");
    // The counter moves: 100,000 entries and a 2 MiB array are counted.
    assert!(presized > (KEYS * 16) as i64 + (1 << 21), "{presized}");
    assert!(
        grown <= presized + presized / 16,
        "the grown cache holds {grown} bytes, the presized one {presized}: \
         outgrown arrays were kept"
    );
}

/// Bytes this thread has out now.
fn live() -> i64 {
    LIVE.with(Cell::get)
}

/// Entries live in cells that their cache keeps and reuses
/// (`shard/src/cells.rs`). Replacing and removing entries
/// round after round must reuse the cells of the freed ones: a path that
/// ended an entry without giving its cell back would take a fresh cell
/// for every write, `ROUNDS` times the entries' bytes here. And dropping
/// the cache gives every block back.
#[test]
fn churn_reuses_the_cells_of_freed_entries_and_drop_gives_them_back() {
    const ROUNDS: u64 = 10;
    let _turn = serial();
    // A first cache (`held` drops it), so that this thread's one-time
    // records (the reclaimer's, per thread) are not charged to the ones
    // measured.
    held(|| coherent::Cache::builder().shards(1).build().expect("valid"));
    for bounded in [false, true] {
        let before = live();
        let mut builder = coherent::Cache::builder().shards(4);
        if bounded {
            // Room for every key whatever the shards' shares: nothing is
            // evicted, so the eviction queues are never popped and only
            // compaction keeps removals' holes from piling up.
            builder = builder.max_capacity(2 * KEYS);
        }
        let cache: coherent::Cache<u64, u64> = builder.build().expect("valid");
        for k in 0..KEYS {
            cache.insert(k, k).expect("insert");
        }
        let first = live() - before;
        for round in 1..=ROUNDS {
            for k in 0..KEYS {
                if k % 3 == 0 {
                    cache.invalidate(&k).expect("invalidate");
                }
                cache.insert(k, k + round).expect("insert");
            }
        }
        assert_eq!(cache.get(&7), Some(7 + ROUNDS));
        let after = live() - before;
        println!("bounded: {bounded}: {first} bytes after one round, {after} after {ROUNDS} more");
        // 1.3 writes per key and round. Unbounded, a `u64` value is
        // replaced in place (shard/src/value.rs) and takes no cell, but the
        // third of the keys invalidated first take a new one: not reusing
        // cells would add about `KEYS / 3 * 32` bytes a round (1 MiB);
        // bounded, every write takes one (4 MiB a round). Holes left in the
        // eviction queues 8 bytes per removal (0.27 MiB a round). Reused
        // cells add nothing; the queues may hold up to twice the live
        // entries between compactions (one more doubling of their
        // buffers, under 1 MiB here), and retired entries wait for their
        // batch.
        assert!(
            after <= first + first / 4,
            "bounded: {bounded}: {first} bytes after the first round, {after} after \
             {ROUNDS} rounds of replacements: freed entries' cells are not reused"
        );
        drop(cache);
        let left = live() - before;
        assert!(
            left.abs() <= 4096,
            "bounded: {bounded}: {left} bytes still out after the cache was dropped"
        );
    }
}
