//! Shared pieces of the benchmarks: workloads and the caches under test,
//! behind one small trait so that every cache runs the same loop.

pub mod compare;
pub mod plot;
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

impl Target for dashmap::DashMap<u64, u64, foldhash::fast::RandomState> {
    fn name(&self) -> &'static str {
        "dashmap"
    }
    #[inline]
    fn get(&self, key: u64) -> bool {
        // Copy the value out, as the caches' `get` clones it.
        dashmap::DashMap::get(self, &key).map(|v| *v).is_some()
    }
    fn insert(&self, key: u64, value: u64) {
        dashmap::DashMap::insert(self, key, value);
    }
}

/// The caches compared everywhere, in table order: coherent, quick_cache,
/// moka, and dashmap (an unbounded concurrent map: the ceiling a cache's
/// bookkeeping is measured against).
pub const NAMES: [&str; 4] = ["coherent", "quick_cache", "moka", "dashmap"];

/// The four caches ([`NAMES`]), each sized to hold `keys` keys, prefilled
/// with them.
pub fn prefilled(keys: u64) -> Vec<Arc<dyn Target>> {
    let c = coherent::Cache::<u64, u64>::builder()
        .initial_capacity(keys as usize)
        .build()
        .expect("valid");
    // quick_cache and moka are bounded; give them room so every key stays.
    let q = quick_cache::sync::Cache::<u64, u64>::new(keys as usize * 2);
    let m = moka::sync::Cache::<u64, u64>::new(keys * 2);
    let d = dashmap::DashMap::<u64, u64, _>::with_capacity_and_hasher(
        keys as usize,
        foldhash::fast::RandomState::default(),
    );
    let targets: Vec<Arc<dyn Target>> = vec![Arc::new(c), Arc::new(q), Arc::new(m), Arc::new(d)];
    for t in &targets {
        for k in 0..keys {
            t.insert(k, k);
        }
    }
    targets
}

/// coherent bounded as quick_cache and moka are in [`prefilled`] (room for
/// twice the keys, so nothing is evicted), prefilled with `keys` keys.
/// A bounded cache's entries carry their eviction bookkeeping and its
/// `get`s count reads and mark the entry, which the unbounded coherent of
/// [`prefilled`] does not.
pub fn prefilled_bounded(keys: u64) -> Arc<dyn Target> {
    let c = coherent::Cache::<u64, u64>::builder()
        .initial_capacity(keys as usize)
        .max_capacity(keys * 2)
        .build()
        .expect("valid");
    let t: Arc<dyn Target> = Arc::new(Bounded(c));
    for k in 0..keys {
        t.insert(k, k);
    }
    t
}

/// A bounded coherent cache, named apart in tables.
struct Bounded(coherent::Cache<u64, u64>);

impl Target for Bounded {
    fn name(&self) -> &'static str {
        "coherent (bounded)"
    }
    #[inline]
    fn get(&self, key: u64) -> bool {
        self.0.get(&key).is_some()
    }
    fn insert(&self, key: u64, value: u64) {
        self.0.insert(key, value).expect("insert");
    }
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

/// How benchmark keys are drawn.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Dist {
    /// Zipf with this exponent (0 the most popular key, scrambled).
    Zipf(f64),
    /// Every key equally likely.
    Uniform,
}

impl std::fmt::Display for Dist {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Dist::Zipf(s) => write!(f, "zipf{s:.1}"),
            Dist::Uniform => f.write_str("uniform"),
        }
    }
}

/// `len` keys over `0..keys` drawn from `dist`.
pub fn keys_of(dist: Dist, keys: u64, len: usize, seed: u64) -> Vec<u64> {
    match dist {
        Dist::Zipf(s) => zipf_keys(keys, s, len, seed),
        Dist::Uniform => {
            let mut rng = SmallRng::seed_from_u64(seed);
            (0..len).map(|_| rng.gen_range(0..keys)).collect()
        }
    }
}

/// One benchmark thread's walk through a key sequence: thread `t` of
/// `threads` starts at its share's offset; `write_per_mille` of its
/// operations are inserts of the key, the rest `get`s.
pub struct Walk {
    i: usize,
    rng: SmallRng,
    write_per_mille: u32,
}

impl Walk {
    pub fn new(keys: &[u64], t: usize, threads: usize, write_per_mille: u32) -> Self {
        Self {
            i: t * keys.len() / threads.max(1),
            rng: SmallRng::seed_from_u64(t as u64),
            write_per_mille,
        }
    }

    /// One operation on the next key.
    #[inline]
    pub fn step(&mut self, target: &dyn Target, keys: &[u64]) {
        let k = keys[self.i];
        self.i = if self.i + 1 == keys.len() {
            0
        } else {
            self.i + 1
        };
        if self.write_per_mille > 0 && self.rng.gen_range(0..1000) < self.write_per_mille {
            target.insert(k, k);
        } else {
            std::hint::black_box(target.get(k));
        }
    }
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
                let mut walk = Walk::new(&keys, t, threads, write_per_mille);
                let mut ops = 0u64;
                start.wait();
                while !stop.load(Ordering::Relaxed) {
                    for _ in 0..256 {
                        walk.step(&*target, &keys);
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
