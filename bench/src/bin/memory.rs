//! Memory per entry: heap bytes a cache holds for `u64` keys and values,
//! counted by a global allocator that tracks live bytes, divided by the
//! entries it holds. Bounded caches are bounded to exactly the entries
//! inserted (so none pre-allocates for more); if one evicted some anyway,
//! it is charged per entry it still holds.
//!
//! Two counts: the bytes the caches asked for (what Rust's allocator API
//! sees), and, on glibc, what those allocations really take from the
//! heap: each allocation's usable size plus glibc's 8-byte chunk header
//! (`malloc_usable_size`). The second is the honest figure: a 24-byte
//! request takes a 32-byte chunk, a 32-byte request a 48-byte one, while
//! memory a cache carves itself (coherent's cells, quick_cache's and
//! dashmap's tables) is charged as carved.
//!
//! `cargo run --release -p coherent-bench --bin memory [-- ENTRIES]`
//! (default 1,000,000; several sizes show the tables' power-of-two steps).

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicIsize, Ordering};

/// The system allocator, counting the bytes it has out.
struct Counting;

/// Bytes asked for and not yet freed.
static LIVE: AtomicIsize = AtomicIsize::new(0);
/// Bytes of the heap those allocations take (glibc: usable size plus the
/// chunk header; elsewhere the same as `LIVE`).
static CHUNKS: AtomicIsize = AtomicIsize::new(0);

/// What the allocation at `p` (live, from `System`) takes from the heap.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn chunk(p: *mut u8, _asked: usize) -> isize {
    // SAFETY: `p` is a live allocation of the system allocator, which on
    // this target is glibc's malloc (also for over-aligned layouts, served
    // by its `posix_memalign`).
    let usable = unsafe { libc::malloc_usable_size(p.cast()) };
    // glibc's chunk header (`SIZE_SZ`; an mmapped chunk has two, counted
    // as one here: those are the large tables, where 8 bytes is nothing).
    (usable + std::mem::size_of::<usize>()) as isize
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn chunk(_p: *mut u8, asked: usize) -> isize {
    asked as isize
}

/// Counts a new allocation (`p` may be null: a failed one counts nothing).
fn counted(p: *mut u8, size: usize) -> *mut u8 {
    if !p.is_null() {
        LIVE.fetch_add(size as isize, Ordering::Relaxed);
        CHUNKS.fetch_add(chunk(p, size), Ordering::Relaxed);
    }
    p
}

/// Uncounts an allocation about to be freed or moved.
fn uncount(p: *mut u8, size: usize) {
    LIVE.fetch_sub(size as isize, Ordering::Relaxed);
    CHUNKS.fetch_sub(chunk(p, size), Ordering::Relaxed);
}

// SAFETY: forwards every call to `System` unchanged; only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller's contract, passed on.
        counted(unsafe { System.alloc(layout) }, layout.size())
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        uncount(ptr, layout.size());
        // SAFETY: the caller's contract, passed on.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller's contract, passed on.
        counted(unsafe { System.alloc_zeroed(layout) }, layout.size())
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        uncount(ptr, layout.size());
        // SAFETY: the caller's contract, passed on.
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if p.is_null() {
            // The old allocation is still there.
            counted(ptr, layout.size());
            return p;
        }
        counted(p, new_size)
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn live() -> isize {
    LIVE.load(Ordering::Relaxed)
}

fn chunks() -> isize {
    CHUNKS.load(Ordering::Relaxed)
}

/// Bytes per held entry, asked for and taken from the heap, of what
/// `build` returns (the cache and how many entries it holds) after
/// inserting `n` entries.
fn per_entry<T>(n: u64, build: impl FnOnce(u64) -> (T, u64)) -> (f64, f64) {
    let (live0, chunks0) = (live(), chunks());
    let (cache, held) = build(n);
    let (bytes, heap) = (live() - live0, chunks() - chunks0);
    drop(cache);
    let held = held.max(1) as f64;
    (bytes as f64 / held, heap as f64 / held)
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
    let header = || {
        println!(
            "{:>9} {:>10} {:>10} {:>11} {:>7} {:>8} {:>13}",
            "entries", "coherent", "coh. bnd", "quick_cache", "moka", "dashmap", "coh./quick"
        )
    };
    let row = |n: u64, cells: [f64; 5]| {
        let [unbounded, bounded, quick, moka, dash] = cells;
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
    };
    let mut rows = Vec::new();
    for n in sizes {
        let unbounded = per_entry(n, |n| {
            let c = coherent::Cache::<u64, u64>::new();
            for k in 0..n {
                c.insert(k, k).expect("insert");
            }
            let held = c.len() as u64;
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
            let held = c.len() as u64;
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
        rows.push((n, [unbounded, bounded, quick, moka, dash]));
    }
    println!("heap bytes per entry, u64 keys and values: taken from the heap (glibc chunks)");
    header();
    for (n, cells) in &rows {
        row(*n, cells.map(|(_, heap)| heap));
    }
    println!("\nthe same, counting only the bytes asked for (no chunk headers or rounding)");
    header();
    for (n, cells) in &rows {
        row(*n, cells.map(|(asked, _)| asked));
    }
    println!("(coherent: unbounded; coh. bnd: bounded to the entries inserted, as quick_cache and moka are here; coh./quick compares the two bounded caches)");
}
