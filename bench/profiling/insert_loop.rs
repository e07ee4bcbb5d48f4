//! `insert` until visible in a tight loop: `insert_loop KEYS [N]`. Used with
//! perf and cachegrind for the write-path figures in docs/design.md.

use std::time::Instant;
fn main() {
    let c = coherent::Cache::<u64, u64>::builder().build().unwrap();
    let n: u64 = std::env::args()
        .nth(2)
        .map_or(5_000_000, |a| a.parse().unwrap());
    let t = Instant::now();
    let m: u64 = std::env::args()
        .nth(1)
        .map_or(100_000, |a| a.parse().unwrap());
    for i in 0..n {
        c.insert(i % m, i).unwrap();
    }
    println!("insert {:.1} ns", t.elapsed().as_nanos() as f64 / n as f64);
}
