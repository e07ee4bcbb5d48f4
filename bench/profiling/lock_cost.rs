//! What a reader pays to be allowed to read, alone in a loop: an arc-swap
//! load+drop (the read-side protection coherent does not use), a parking_lot read
//! lock+unlock (what quick_cache pays), and a whole coherent `get` of a
//! one-entry cache (pin, probe, clone, unpin). docs/design.md, "Where the
//! time goes in `get`".

use std::hint::black_box;
use std::time::Instant;
fn main() {
    let n = 20_000_000u64;
    let a = arc_swap::ArcSwap::from_pointee(5u64);
    let l = parking_lot::RwLock::new(5u64);
    let c = coherent::Cache::<u64, u64>::new();
    c.insert(1, 5).expect("insert");
    let time = |f: &dyn Fn() -> u64| {
        let t = Instant::now();
        let mut s = 0;
        for _ in 0..n {
            s += f();
        }
        black_box(s);
        t.elapsed().as_nanos() as f64 / n as f64
    };
    for _ in 0..3 {
        let da = time(&|| **black_box(&a).load());
        let dl = time(&|| *black_box(&l).read());
        let dc = time(&|| black_box(&c).get(&1).unwrap_or(0));
        println!(
            "arc-swap load+drop {da:.1} ns, parking_lot read+unlock {dl:.1} ns, coherent get (whole) {dc:.1} ns"
        );
    }
}
