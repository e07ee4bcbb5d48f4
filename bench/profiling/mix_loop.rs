//! One thread, a fixed number of operations of the `compare` walk (Zipf 1.0
//! over 100k keys, prefilled), `WRITES` per mille of them inserts, on one
//! cache: `mix_loop WRITES CACHE` (CACHE 0 = coherent, 1 = quick_cache,
//! 2 = moka, 3 = dashmap, 4 = coherent bounded as quick_cache is). A fixed
//! count rather than a time window, for `perf record -e cpu-clock mix_loop
//! 1000 0` and for callgrind. `N` sets the operation count (default 20M):
//! the instruction counts per `get` and per `insert` in docs/design.md and
//! docs/benchmarks.md are `N=0` and `N=2000000` under `valgrind
//! --tool=callgrind`, differenced.

use coherent_bench::{prefilled, prefilled_bounded, zipf_keys, Walk};
use std::time::Instant;

fn main() {
    let arg = |i: usize, default: u64| {
        std::env::args().nth(i).map_or(default, |a| {
            a.parse().expect("usage: mix_loop WRITES CACHE")
        })
    };
    let (writes, which) = (arg(1, 1000) as u32, arg(2, 0) as usize);
    let keys = zipf_keys(100_000, 1.0, 1 << 20, 1);
    let mut targets = prefilled(100_000);
    targets.push(prefilled_bounded(100_000));
    let target = &targets[which.min(targets.len() - 1)];
    let mut walk = Walk::new(&keys, 0, 1, writes);
    let n: u64 = std::env::var("N").map_or(20_000_000, |v| v.parse().expect("N"));
    let t0 = Instant::now();
    for _ in 0..n {
        walk.step(&**target, &keys);
    }
    let ns = t0.elapsed().as_nanos() as f64 / n as f64;
    println!("{} {writes} per mille writes: {ns:.1} ns/op", target.name());
}
