//! Shared pieces of the benchmarks: workloads and the caches under test,
//! behind one small trait so that every cache runs the same loop.

pub mod compare;
pub mod trace;

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use rand_distr::{Distribution, Zipf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

/// A cache as the benchmark loops see it.
pub trait Target: Send + Sync + 'static {
    /// Name in tables.
    fn name(&self) -> &'static str;
    /// A read; returns whether it hit.
    fn get(&self, key: u64) -> bool;
    /// A write.
    fn insert(&self, key: u64, value: u64);
}

impl Target for coherent::Cache<u64, u64> {
    fn name(&self) -> &'static str {
        "coherent"
    }
    #[inline]
    fn get(&self, key: u64) -> bool {
        coherent::Cache::get(self, &key).is_some()
    }
    fn insert(&self, key: u64, value: u64) {
        coherent::Cache::insert(self, key, value).expect("insert");
    }
}

impl Target for quick_cache::sync::Cache<u64, u64> {
    fn name(&self) -> &'static str {
        "quick_cache"
    }
    #[inline]
    fn get(&self, key: u64) -> bool {
        quick_cache::sync::Cache::get(self, &key).is_some()
    }
    fn insert(&self, key: u64, value: u64) {
        quick_cache::sync::Cache::insert(self, key, value);
    }
}

impl Target for moka::sync::Cache<u64, u64> {
    fn name(&self) -> &'static str {
        "moka"
    }
    #[inline]
    fn get(&self, key: u64) -> bool {
        moka::sync::Cache::get(self, &key).is_some()
    }
    fn insert(&self, key: u64, value: u64) {
        moka::sync::Cache::insert(self, key, value);
    }
}

/// The three caches, each sized to hold `keys` keys, prefilled with them.
pub fn prefilled(keys: u64) -> Vec<Arc<dyn Target>> {
    let c = coherent::Cache::<u64, u64>::builder()
        .initial_capacity(keys as usize)
        .build()
        .expect("valid");
    // quick_cache and moka are bounded; give them room so every key stays.
    let q = quick_cache::sync::Cache::<u64, u64>::new(keys as usize * 2);
    let m = moka::sync::Cache::<u64, u64>::new(keys * 2);
    let targets: Vec<Arc<dyn Target>> = vec![Arc::new(c), Arc::new(q), Arc::new(m)];
    for t in &targets {
        for k in 0..keys {
            t.insert(k, k);
        }
    }
    targets
}

/// `len` keys drawn from Zipf(`s`) over `0..keys` (0 the most popular),
/// scrambled so that popular keys are not neighbours.
pub fn zipf_keys(keys: u64, s: f64, len: usize, seed: u64) -> Vec<u64> {
    let mut rng = SmallRng::seed_from_u64(seed);
    let zipf = Zipf::new(keys, s).expect("valid zipf");
    (0..len)
        .map(|_| {
            let rank = zipf.sample(&mut rng) as u64 - 1;
            rank.wrapping_mul(0x9E37_79B9_7F4A_7C15) % keys
        })
        .collect()
}

/// Runs `threads` threads for `dur`, each walking `keys` from its own
/// offset; `write_per_mille` of the operations are inserts. Returns total
/// operations per second.
pub fn throughput(
    target: &Arc<dyn Target>,
    keys: &Arc<Vec<u64>>,
    threads: usize,
    write_per_mille: u32,
    dur: Duration,
) -> f64 {
    let stop = Arc::new(AtomicBool::new(false));
    let start = Arc::new(Barrier::new(threads + 1));
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            let (target, keys, stop, start) =
                (target.clone(), keys.clone(), stop.clone(), start.clone());
            std::thread::spawn(move || {
                let mut rng = SmallRng::seed_from_u64(t as u64);
                let mut i = t * keys.len() / threads.max(1);
                let mut ops = 0u64;
                start.wait();
                while !stop.load(Ordering::Relaxed) {
                    for _ in 0..256 {
                        let k = keys[i];
                        i = if i + 1 == keys.len() { 0 } else { i + 1 };
                        if write_per_mille > 0 && rng.gen_range(0..1000) < write_per_mille {
                            target.insert(k, k);
                        } else {
                            std::hint::black_box(target.get(k));
                        }
                    }
                    ops += 256;
                }
                ops
            })
        })
        .collect();
    start.wait();
    let t0 = Instant::now();
    std::thread::sleep(dur); // the measurement window itself, not synchronisation
    stop.store(true, Ordering::Relaxed);
    let total: u64 = handles
        .into_iter()
        .map(|h| h.join().expect("bench thread"))
        .sum();
    total as f64 / t0.elapsed().as_secs_f64()
}

/// Median of a few numbers.
pub fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}
