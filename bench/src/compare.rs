//! The comparison tables, shared by the `compare` and `demo` binaries.

use crate::{median, prefilled, throughput, zipf_keys};
use hdrhistogram::Histogram;
use std::sync::Arc;
use std::time::{Duration, Instant};

const KEYS: u64 = 100_000;

/// Prints the `get` throughput table and the insert latency table; `quick`
/// shortens the measurement windows (for the demo).
pub fn run(quick: bool) {
    let (window, rounds) = if quick {
        (Duration::from_millis(150), 3)
    } else {
        (Duration::from_millis(400), 5)
    };
    let keys = Arc::new(zipf_keys(KEYS, 1.0, 1 << 20, 1));
    let cells = [
        ("100% get", 0u32, 1usize),
        ("100% get", 0, 2),
        ("95% get", 50, 1),
        ("95% get", 50, 2),
    ];
    // samples[cell][cache][round]. Every round builds and fills the caches
    // afresh: where their memory lands moves single-process results by 2x
    // on this VM, and fresh caches per round average that out. Within a
    // round the caches take turns, starting with a different one each round.
    let mut samples = vec![vec![Vec::new(); 3]; cells.len()];
    for round in 0..rounds {
        let targets = prefilled(KEYS);
        for (c, &(_, writes, threads)) in cells.iter().enumerate() {
            for turn in 0..targets.len() {
                let i = (round + turn) % targets.len();
                samples[c][i].push(throughput(&targets[i], &keys, threads, writes, window));
            }
        }
    }
    println!(
        "get throughput, Zipf 1.0 over {KEYS} keys, all present (Mops/s, median of {rounds} rounds; ratios: median of per-round ratios)"
    );
    println!(
        "{:<10} {:>7} {:>10} {:>12} {:>10} {:>9} {:>9}",
        "mix", "threads", "coherent", "quick_cache", "moka", "vs quick", "vs moka"
    );
    for (c, &(mix, _, threads)) in cells.iter().enumerate() {
        let s = &samples[c];
        let ratio = |other: usize| median(s[0].iter().zip(&s[other]).map(|(a, b)| a / b).collect());
        println!(
            "{:<10} {:>7} {:>10.1} {:>12.1} {:>10.1} {:>8.2}x {:>8.2}x",
            mix,
            threads,
            median(s[0].clone()) / 1e6,
            median(s[1].clone()) / 1e6,
            median(s[2].clone()) / 1e6,
            ratio(1),
            ratio(2)
        );
    }
    insert_latency(if quick { 100_000 } else { 400_000 });
}

/// Insert-until-visible: the time `insert` takes to return, which is when the
/// value is visible to every reader. Alone, and with a second thread writing
/// to the same shards.
pub fn insert_latency(n: u64) {
    println!();
    println!("coherent insert until visible (ns)");
    println!("{:<26} {:>8} {:>8} {:>8}", "case", "p50", "p99", "p99.9");
    for contended in [false, true] {
        let cache = coherent::Cache::<u64, u64>::builder()
            .shards(1)
            .build()
            .expect("valid");
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let rival = contended.then(|| {
            let (cache, stop) = (cache.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut k = 1u64 << 40;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    cache.insert(k % 4096 + (1 << 40), k).expect("insert");
                    k += 1;
                }
            })
        });
        let mut hist = Histogram::<u64>::new(3).expect("histogram");
        for i in 0..n {
            let k = i % 4096;
            let t0 = Instant::now();
            cache.insert(k, i).expect("insert");
            hist.record(t0.elapsed().as_nanos() as u64).expect("record");
        }
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        if let Some(r) = rival {
            r.join().expect("rival");
        }
        let case = if contended {
            "2 writers, 1 shard"
        } else {
            "1 writer"
        };
        println!(
            "{:<26} {:>8} {:>8} {:>8}",
            case,
            hist.value_at_quantile(0.5),
            hist.value_at_quantile(0.99),
            hist.value_at_quantile(0.999)
        );
    }
}
