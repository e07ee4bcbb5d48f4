//! Hit ratio of coherent, moka and quick_cache on the ARC traces
//! (`bench/traces/`, or `COHERENT_TRACES`) and on Zipf workloads,
//! insert on miss, one thread, at several capacities; one table.
//!
//! `cargo run --release -p coherent-bench --bin hitratio [-- WORKLOAD...]`
//! with WORKLOAD among OLTP, P3, P12, zipf0.9, zipf1.0 (default: all).
//!
//! The traces are from N. Megiddo and D. S. Modha, "ARC: A Self-Tuning, Low
//! Overhead Replacement Cache", USENIX FAST '03, pp. 115-130, 2003.

use coherent_bench::{trace, zipf_keys};

/// A cache as the replay sees it.
trait Replay {
    fn get(&self, key: u64) -> bool;
    fn insert(&self, key: u64);
}

impl Replay for coherent::Cache<u64, u64> {
    fn get(&self, key: u64) -> bool {
        coherent::Cache::get(self, &key).is_some()
    }
    fn insert(&self, key: u64) {
        coherent::Cache::insert(self, key, key).expect("insert");
    }
}

impl Replay for moka::sync::Cache<u64, u64> {
    fn get(&self, key: u64) -> bool {
        moka::sync::Cache::get(self, &key).is_some()
    }
    fn insert(&self, key: u64) {
        moka::sync::Cache::insert(self, key, key);
    }
}

impl Replay for quick_cache::sync::Cache<u64, u64> {
    fn get(&self, key: u64) -> bool {
        quick_cache::sync::Cache::get(self, &key).is_some()
    }
    fn insert(&self, key: u64) {
        quick_cache::sync::Cache::insert(self, key, key);
    }
}

fn replay(cache: &dyn Replay, keys: &[u64]) -> f64 {
    let mut hits = 0usize;
    for &k in keys {
        if cache.get(k) {
            hits += 1;
        } else {
            cache.insert(k);
        }
    }
    hits as f64 * 100.0 / keys.len() as f64
}

fn workload(name: &str) -> (Vec<u64>, Vec<usize>) {
    match name {
        "OLTP" => (load(name), vec![1_000, 5_000, 15_000]),
        "P3" | "P12" => (load(name), vec![10_000, 50_000, 200_000]),
        "zipf0.9" => (
            zipf_keys(1_000_000, 0.9, 2_000_000, 3),
            vec![1_000, 10_000, 100_000],
        ),
        "zipf1.0" => (
            zipf_keys(1_000_000, 1.0, 2_000_000, 4),
            vec![1_000, 10_000, 100_000],
        ),
        other => {
            eprintln!("unknown workload {other:?}: OLTP, P3, P12, zipf0.9 or zipf1.0");
            std::process::exit(2);
        }
    }
}

fn load(name: &str) -> Vec<u64> {
    trace::load(name).unwrap_or_else(|e| {
        eprintln!("cannot read trace {name}: {e} (set COHERENT_TRACES to the traces' folder)");
        std::process::exit(2);
    })
}

fn main() {
    let mut names: Vec<String> = std::env::args().skip(1).collect();
    if names.is_empty() {
        names = ["OLTP", "P3", "P12", "zipf0.9", "zipf1.0"]
            .map(String::from)
            .to_vec();
    }
    println!("hit ratio, insert on miss, one thread (%)");
    println!(
        "{:<8} {:>9} {:>9} {:>9} {:>12} {:>14}",
        "workload", "capacity", "coherent", "moka", "quick_cache", "vs best other"
    );
    for name in &names {
        let (keys, capacities) = workload(name);
        for cap in capacities {
            let c = coherent::Cache::<u64, u64>::builder()
                .max_capacity(cap as u64)
                .build()
                .expect("valid");
            let m = moka::sync::Cache::<u64, u64>::new(cap as u64);
            let q = quick_cache::sync::Cache::<u64, u64>::new(cap);
            let (hc, hm, hq) = (replay(&c, &keys), replay(&m, &keys), replay(&q, &keys));
            println!(
                "{:<8} {:>9} {:>8.2}% {:>8.2}% {:>11.2}% {:>+13.2}",
                name,
                cap,
                hc,
                hm,
                hq,
                hc - hm.max(hq)
            );
        }
    }
}
