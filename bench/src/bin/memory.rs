//! Memory per entry: heap bytes a cache holds for `u64` keys and values,
//! counted by a global allocator that tracks live bytes, divided by the
//! entries it holds. Bounded caches are bounded to exactly the entries
//! inserted (so none pre-allocates for more); if one evicted some anyway,
//! it is charged per entry it still holds.
//!
//! `cargo run --release -p coherent-bench --bin memory [-- ENTRIES]`
//! (default 1,000,000; several sizes show the tables' power-of-two steps).

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicIsize, Ordering};

/// The system allocator, counting the bytes it has out.
struct Counting;

static LIVE: AtomicIsize = AtomicIsize::new(0);

// SAFETY: forwards every call to `System` unchanged; only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        // SAFETY: the caller's contract, passed on.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        // SAFETY: the caller's contract, passed on.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        // SAFETY: the caller's contract, passed on.
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LIVE.fetch_add(
            new_size as isize - layout.size() as isize,
            Ordering::Relaxed,
        );
        // SAFETY: the caller's contract, passed on.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn live() -> isize {
    LIVE.load(Ordering::Relaxed)
}

/// Bytes per held entry of what `build` returns (the cache and how many
/// entries it holds) after inserting `n` entries.
fn per_entry<T>(n: u64, build: impl FnOnce(u64) -> (T, u64)) -> f64 {
    let before = live();
    let (cache, held) = build(n);
    let bytes = live() - before;
    drop(cache);
    bytes as f64 / held.max(1) as f64
}

fn main() {
    let sizes: Vec<u64> = match std::env::args().nth(1) {
        Some(a) => match a.parse() {
            Ok(n) if n > 0 => vec![n],
            _ => {
                eprintln!("usage: memory [ENTRIES > 0]");
                std::process::exit(2);
            }
        },
        None => vec![100_000, 1_000_000],
    };
    let empty = live();
    let c = coherent::Cache::<u64, u64>::builder()
        .shards(16)
        .build()
        .expect("valid");
    let empty = live() - empty;
    drop(c);
    println!("an empty coherent cache with 16 shards: {empty} bytes\n");
    println!("heap bytes per entry, u64 keys and values (live bytes counted by the allocator)");
    println!(
        "{:>9} {:>10} {:>10} {:>11} {:>7} {:>8} {:>13}",
        "entries", "coherent", "coh. bnd", "quick_cache", "moka", "dashmap", "coh./quick"
    );
    for n in sizes {
        let unbounded = per_entry(n, |n| {
            let c = coherent::Cache::<u64, u64>::new();
            for k in 0..n {
                c.insert(k, k).expect("insert");
            }
            let held = c.entry_count() as u64;
            (c, held)
        });
        let bounded = per_entry(n, |n| {
            let c = coherent::Cache::<u64, u64>::builder()
                .max_capacity(n)
                .build()
                .expect("valid");
            for k in 0..n {
                c.insert(k, k).expect("insert");
            }
            let held = c.entry_count() as u64;
            (c, held)
        });
        let quick = per_entry(n, |n| {
            let c = quick_cache::sync::Cache::<u64, u64>::new(n as usize);
            for k in 0..n {
                c.insert(k, k);
            }
            let held = c.len() as u64;
            (c, held)
        });
        let moka = per_entry(n, |n| {
            let c = moka::sync::Cache::<u64, u64>::new(n);
            for k in 0..n {
                c.insert(k, k);
            }
            c.run_pending_tasks();
            let held = c.entry_count();
            (c, held)
        });
        let dash = per_entry(n, |n| {
            let c = dashmap::DashMap::<u64, u64, foldhash::fast::RandomState>::default();
            for k in 0..n {
                c.insert(k, k);
            }
            let held = c.len() as u64;
            (c, held)
        });
        println!(
            "{:>9} {:>10.1} {:>10.1} {:>11.1} {:>7.1} {:>8.1} {:>12.2}x",
            n,
            unbounded,
            bounded,
            quick,
            moka,
            dash,
            bounded / quick
        );
    }
    println!("(coherent: unbounded; coh. bnd: bounded to the entries inserted, as quick_cache and moka are here; coh./quick compares the two bounded caches)");
}
