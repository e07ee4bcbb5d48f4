//! One thread, a tight `get` loop over Zipf 1.0 keys (`KEYS` present,
//! default 100k). `get_loop CACHE PASSES` with CACHE 0 = coherent,
//! 1 = quick_cache, 2 = moka times that cache alone (and is what cachegrind
//! runs for the per-`get` counts in docs/design.md: PASSES 0 and 20, take the
//! difference). `get_loop ab PASSES` alternates coherent and quick_cache in
//! one process and prints the median ratio of their times. `get_loop sweep
//! PASSES` does what `ab` does for several key counts, 10k to 1M, one after
//! the other. `WRITES=50` makes that many per mille of the
//! operations inserts (same key), spread evenly, for the 95%-get cells;
//! `RANDOM_WRITES=1` draws them at random with that probability instead,
//! as `compare`'s walk does (a branch the predictor cannot learn, which
//! costs an insert more: docs/design.md, "Word values replaced in place").
//! `LEN` is the length of the key sequence, 2^20 by default as in
//! `compare`: a shorter one (2^16, say)
//! touches fewer distinct keys and flatters the cache with the larger
//! footprint (docs/design.md, "How the one-thread ratio depends on the key
//! count"). `BOUNDED=1` puts coherent with `max_capacity` (twice the
//! keys, as `compare`'s bounded column) in coherent's place. `HEAP_SHIFT=1`
//! keeps one 48-byte allocation before the caches are built, which moved
//! the entries after it by 16 bytes (checked with a throwaway address
//! histogram), so that a change can be timed with the entries at both of
//! their possible places in a cache line (docs/design.md, "Where an entry
//! falls in its cache line").

use coherent_bench::{median, prefilled, prefilled_bounded, zipf_keys, Target};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use std::hint::black_box;
use std::sync::Arc;
use std::time::Instant;

/// The key sequence and the caches, prefilled with `n` keys.
struct Bench {
    keys: Vec<u64>,
    is_write: Vec<bool>,
    targets: Vec<Arc<dyn Target>>,
}

impl Bench {
    fn new(n: u64) -> Self {
        let len: usize = std::env::var("LEN").map_or(1 << 20, |v| v.parse().expect("LEN"));
        let writes: usize = std::env::var("WRITES").map_or(0, |v| v.parse().expect("WRITES"));
        let keys = zipf_keys(n, 1.0, len, 7);
        // Operation i is an insert when it crosses a multiple of 1000 / writes,
        // or, with `RANDOM_WRITES=1`, with probability writes / 1000 (as
        // `compare`'s walk draws it), so that the branch cannot be learned.
        let random = std::env::var_os("RANDOM_WRITES").is_some_and(|v| v != "0");
        let mut rng = SmallRng::seed_from_u64(11);
        let is_write = (0..keys.len())
            .map(|i| {
                if random {
                    rng.gen_range(0..1000) < writes
                } else {
                    (i * writes) / 1000 != ((i + 1) * writes) / 1000
                }
            })
            .collect();
        let mut targets = prefilled(n);
        if std::env::var_os("BOUNDED").is_some_and(|v| v != "0") {
            targets[0] = prefilled_bounded(n);
        }
        Self {
            keys,
            is_write,
            targets,
        }
    }

    /// Nanoseconds per operation of cache `which` over `passes` passes.
    fn time(&self, which: usize, passes: u32) -> f64 {
        let t = &self.targets[which];
        let start = Instant::now();
        for _ in 0..passes {
            for (k, w) in self.keys.iter().zip(&self.is_write) {
                if *w {
                    t.insert(*k, *k);
                } else {
                    black_box(t.get(*k));
                }
            }
        }
        start.elapsed().as_nanos() as f64 / (passes as f64 * self.keys.len() as f64)
    }

    /// Coherent's and quick_cache's medians over alternating rounds of 10
    /// passes, and the median of the per-round speed ratios.
    fn ab(&self, passes: u32) -> (f64, f64, f64) {
        let (mut a, mut b, mut ratios) = (Vec::new(), Vec::new(), Vec::new());
        for _ in 0..(passes / 10).max(1) {
            let (x, y) = (self.time(0, 10), self.time(1, 10));
            a.push(x);
            b.push(y);
            ratios.push(y / x);
        }
        (median(a), median(b), median(ratios))
    }
}

fn main() {
    if std::env::var_os("HEAP_SHIFT").is_some_and(|v| v != "0") {
        // One 48-byte allocator chunk, kept: the entries allocated after
        // it move by 16 bytes against the cache lines (docs/design.md,
        // "Where an entry falls in its cache line").
        std::hint::black_box(Box::leak(Box::new([0u8; 40])));
    }
    let n: u64 = std::env::var("KEYS").map_or(100_000, |v| v.parse().expect("KEYS"));
    let arg = std::env::args().nth(1).unwrap_or_default();
    let passes: u32 = std::env::args()
        .nth(2)
        .map_or(300, |a| a.parse().expect("PASSES"));
    match arg.as_str() {
        "ab" => {
            let (a, b, r) = Bench::new(n).ab(passes);
            println!("coherent {a:.1} ns, quick_cache {b:.1} ns, speed ratio {r:.2}x");
        }
        "sweep" => {
            println!("keys      coherent ns  quick_cache ns  speed ratio");
            for n in [
                10_000, 20_000, 50_000, 70_000, 100_000, 200_000, 400_000, 1_000_000,
            ] {
                let (a, b, r) = Bench::new(n).ab(passes);
                println!("{n:>9}  {a:>11.1}  {b:>14.1}  {r:>10.2}x");
            }
        }
        _ => {
            let which: usize = arg.parse().unwrap_or(0);
            let bench = Bench::new(n);
            println!(
                "{} {:.1} ns",
                bench.targets[which].name(),
                bench.time(which, passes)
            );
        }
    }
}
