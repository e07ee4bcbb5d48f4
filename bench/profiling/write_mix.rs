//! ns per operation for coherent and quick_cache at 0%, 5% and 100% writes,
//! one thread, fresh caches per round (docs/benchmarks.md, 95% cells).

use coherent_bench::*;
use std::sync::Arc;
use std::time::Duration;
fn main() {
    let keys = Arc::new(zipf_keys(100_000, 1.0, 1 << 20, 1));
    for _ in 0..3 {
        let targets = prefilled(100_000);
        for t in &targets[..2] {
            for w in [0u32, 50, 1000] {
                let ops = throughput(t, &keys, 1, w, Duration::from_millis(300));
                print!("{} w{}: {:.0} ns/op  ", t.name(), w, 1e9 / ops);
            }
            println!();
        }
    }
}
