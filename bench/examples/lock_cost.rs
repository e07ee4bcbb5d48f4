//! arc-swap load+drop against a parking_lot read lock+unlock, alone in a
//! loop (docs/design.md, "Where the time goes in `get`").

use std::hint::black_box;
use std::time::Instant;
fn main() {
    let n = 20_000_000u64;
    let a = arc_swap::ArcSwap::from_pointee(5u64);
    let l = parking_lot::RwLock::new(5u64);
    for _ in 0..3 {
        let t = Instant::now();
        let mut s = 0;
        for _ in 0..n {
            s += **black_box(&a).load();
        }
        let da = t.elapsed().as_nanos() as f64 / n as f64;
        let t = Instant::now();
        for _ in 0..n {
            s += *black_box(&l).read();
        }
        let dl = t.elapsed().as_nanos() as f64 / n as f64;
        println!("arc-swap load+drop {da:.1} ns, parking_lot read+unlock {dl:.1} ns ({s})");
    }
}
