//! A `get` that hits allocates nothing beyond cloning the value, and
//! building a cache allocates no mailbox.
//!
//! This test binary's global allocator counts the allocations each thread
//! makes (a thread-local counter, so tests running beside each other do
//! not disturb one another). The control test shows the counter sees the
//! allocation of cloning a `String` value, so a zero elsewhere is a
//! measurement, not a counter that cannot move.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::time::Duration;

thread_local! {
    /// Allocations made by this thread. `const`, no destructor: touching
    /// it never allocates.
    static ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
    /// Bytes this thread asked for, zeroed memory aside (the system hands
    /// zeroed pages over only as they are touched).
    static BYTES: Cell<u64> = const { Cell::new(0) };
}

fn count_bytes(layout: Layout) {
    let _ = BYTES.try_with(|c| c.set(c.get() + layout.size() as u64));
}

struct Counting;

fn count() {
    // `try_with`: the thread may be tearing down its thread-locals.
    let _ = ALLOCATIONS.try_with(|c| c.set(c.get() + 1));
}

// SAFETY: forwards every call to `System` unchanged; only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count();
        count_bytes(layout);
        // SAFETY: the caller's contract, passed on.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: the caller's contract, passed on.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        count();
        // SAFETY: the caller's contract, passed on.
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count();
        count_bytes(Layout::from_size_align(new_size, layout.align()).unwrap_or(layout));
        // SAFETY: the caller's contract, passed on.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Allocations this thread makes while running `f`.
fn allocations_in(f: impl FnOnce()) -> u64 {
    let before = ALLOCATIONS.with(Cell::get);
    f();
    ALLOCATIONS.with(Cell::get) - before
}

const KEYS: u64 = 10_000;

/// Every key `0..KEYS` read `rounds` times; panics on a miss.
fn read_all<V: Clone + Send + Sync + 'static>(cache: &coherent::Cache<u64, V>, rounds: u32) {
    for _ in 0..rounds {
        for k in 0..KEYS {
            assert!(cache.get(&k).is_some(), "key {k} missing");
        }
    }
}

#[test]
fn a_hit_on_an_unbounded_cache_allocates_nothing() {
    let cache = coherent::Cache::<u64, u64>::new();
    for k in 0..KEYS {
        cache.insert(k, k).unwrap();
    }
    // The thread's first `get` takes its reclamation record (which may
    // allocate once per thread); the steady state is what is counted.
    read_all(&cache, 1);
    assert_eq!(allocations_in(|| read_all(&cache, 10)), 0);
}

#[test]
fn a_hit_on_a_bounded_expiring_cache_allocates_nothing() {
    // Extended entries: the access mark, the idle clock and read counting
    // for the eviction policy all run on these hits.
    let cache = coherent::Cache::<u64, u64>::builder()
        .max_capacity(KEYS * 2)
        .time_to_idle(Duration::from_secs(3600))
        .build()
        .unwrap();
    for k in 0..KEYS {
        cache.insert(k, k).unwrap();
    }
    read_all(&cache, 1);
    assert_eq!(allocations_in(|| read_all(&cache, 10)), 0);
}

#[test]
fn control_the_counter_sees_a_cloned_string() {
    let cache = coherent::Cache::<u64, String>::new();
    for k in 0..KEYS {
        cache.insert(k, format!("value {k}")).unwrap();
    }
    read_all(&cache, 1);
    // One allocation per hit: cloning the `String`, nothing else.
    assert_eq!(allocations_in(|| read_all(&cache, 2)), 2 * KEYS);
}

/// Bytes the current thread allocates while `f` runs.
fn bytes_of<R>(f: impl FnOnce() -> R) -> (R, u64) {
    let before = BYTES.with(Cell::get);
    let r = f();
    (r, BYTES.with(Cell::get) - before)
}

#[test]
fn building_a_cache_allocates_no_mailbox_until_a_writer_finds_its_shard_busy() {
    let (shards, depth) = (1024, 1024);
    // A queued insert of a `u64` holds its key and value, and crossbeam
    // a stamp beside it: 24 bytes a message at the least.
    let mailboxes = (shards * depth * 24) as u64;
    let (cache, built) = bytes_of(|| {
        coherent::Cache::<u64, u64>::builder()
            .shards(shards)
            .mailbox_capacity(depth)
            .build()
            .unwrap()
    });
    println!("built in {built} bytes; the mailboxes take {mailboxes} or more");
    assert!(
        built < mailboxes / 4,
        "building took {built} bytes; the mailboxes would be {mailboxes}"
    );
    // The counter sees an allocation of that size: a control.
    let (v, control) = bytes_of(|| Vec::<u8>::with_capacity(mailboxes as usize / 4));
    assert!(control >= mailboxes / 4);
    drop(v);
    cache.insert(1, 1).unwrap();
    assert_eq!(cache.get(&1), Some(1));
}
