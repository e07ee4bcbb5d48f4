//! One cache, one thread, a tight `get` loop over Zipf 1.0 keys (100k
//! present). `get_loop CACHE PASSES` with CACHE 0 = coherent, 1 = quick_cache,
//! 2 = moka. Used under cachegrind for the per-`get` instruction and miss
//! counts in docs/design.md (run with PASSES 0 and 20 and take the difference).

use std::hint::black_box;
fn main() {
    let keys = coherent_bench::zipf_keys(100_000, 1.0, 1 << 16, 7);
    let targets = coherent_bench::prefilled(100_000);
    let which: usize = std::env::args().nth(1).map_or(0, |a| a.parse().unwrap());
    let passes: u32 = std::env::args().nth(2).map_or(300, |a| a.parse().unwrap());
    let t = &targets[which];
    let start = std::time::Instant::now();
    for _ in 0..passes {
        for k in &keys {
            black_box(t.get(*k));
        }
    }
    println!(
        "{} {:.1} ns",
        t.name(),
        start.elapsed().as_nanos() as f64 / (passes as f64 * keys.len() as f64)
    );
}
