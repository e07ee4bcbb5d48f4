//! Several threads on one cache, the `compare` walk (Zipf 1.0 over 100k
//! keys, prefilled), `WRITES` per mille of the operations inserts:
//! `mix_threads THREADS WRITES CACHE [SECONDS]` (CACHE 0 = coherent,
//! 1 = quick_cache, 2 = moka, 3 = dashmap, 4 = coherent bounded). Prints
//! the throughput and the number of inserts made, so that a system-call
//! count taken around it reads per insert: the heavy fences of the
//! reclamation (docs/design.md, "Reclamation and the pin") are
//! `perf stat -e syscalls:sys_enter_membarrier target/release/examples/mix_threads 2 200 0`.

use coherent_bench::{prefilled, prefilled_bounded, throughput, zipf_keys};
use std::sync::Arc;
use std::time::Duration;

fn main() {
    let arg = |i: usize, default: u64| {
        std::env::args().nth(i).map_or(default, |a| {
            a.parse()
                .expect("usage: mix_threads THREADS WRITES CACHE [SECONDS]")
        })
    };
    let (threads, writes, which, seconds) = (
        arg(1, 2) as usize,
        arg(2, 200) as u32,
        arg(3, 0) as usize,
        arg(4, 3),
    );
    let keys = Arc::new(zipf_keys(100_000, 1.0, 1 << 20, 1));
    let mut targets = prefilled(100_000);
    targets.push(prefilled_bounded(100_000));
    let target = &targets[which.min(targets.len() - 1)];
    let ops = throughput(
        target,
        &keys,
        threads,
        writes,
        Duration::from_secs(seconds.max(1)),
    );
    let seconds = seconds.max(1) as f64;
    println!(
        "{}, {threads} threads, {writes} per mille writes: {:.1} Mops/s, about {:.0} inserts",
        target.name(),
        ops / 1e6,
        ops * seconds * f64::from(writes) / 1000.0
    );
}
