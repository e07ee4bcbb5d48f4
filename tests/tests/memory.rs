//! A table that grows frees the slot arrays it outgrew (issue 6).
//!
//! Each rebuild publishes a new array and retires the old one; readers may
//! still hold it, so it waits in the reclaimer's garbage. A cache that only
//! grows retires nothing else, so until the owner sealed garbage only every
//! `BATCH` retirements, it kept every array it ever outgrew: about as many
//! bytes again as its current array, for good.
//!
//! This binary's global allocator counts the bytes each thread has out
//! (a thread-local, so the test harness's own threads do not count). Its
//! one test grows a cache from empty and compares what it holds with a
//! cache sized for the same entries from the start, which never rebuilt.
//! No other test runs in this process, so no reader is pinned while the
//! owner reclaims.

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

/// Bytes the cache `build` returns holds, with `KEYS` entries, as counted
/// on this thread (every insert runs its owner's work here: the token is
/// always free).
fn held(build: impl FnOnce() -> coherent::Cache<u64, u64>) -> i64 {
    let before = LIVE.with(Cell::get);
    let cache = build();
    for k in 0..KEYS {
        cache.insert(k, k).expect("insert");
    }
    assert_eq!(cache.entry_count() as u64, KEYS);
    let bytes = LIVE.with(Cell::get) - before;
    drop(cache);
    bytes
}

#[test]
fn a_growing_table_frees_the_arrays_it_outgrew() {
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
