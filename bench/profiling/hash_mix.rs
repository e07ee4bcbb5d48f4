//! Why `coherent` hashes with foldhash's `quality` variant and not `fast`
//! (docs/design.md, "Routing and hashing"): for 3,000 random seeds each, how
//! often the 100 keys `k % 4 < 2` of `0..200` miss one of 8 shards under
//! the cache's shard rule (`(h >> 32) * n >> 32`), and, every 30th seed,
//! the linear-probing displacement of 100k sequential keys in 16 tables of
//! 16,384 slots (the layout `get_loop` measures). `fast-rot32` swaps the
//! hash's halves first (a one-instruction mix that does not help).
//! `cargo run --release -p coherent-bench --example hash_mix`, under a second.

use foldhash::{fast, quality, SharedSeed};
use rand::{rngs::SmallRng, Rng, SeedableRng};
use std::hash::BuildHasher;

fn shard(h: u64, n: u64) -> usize {
    (((h >> 32) * n) >> 32) as usize
}

fn main() {
    let mut rng = SmallRng::seed_from_u64(1);
    let runs = 3000;
    let names = ["quality", "fast", "fast-rot32"];
    let mut bad = [0usize; 3];
    let mut disp = [0f64; 3];
    let mut wrong = [0f64; 3];
    let mut maxdisp = [0usize; 3];
    for run in 0..runs {
        let shared: &'static SharedSeed = Box::leak(Box::new(SharedSeed::from_u64(rng.gen())));
        let per: u64 = rng.gen();
        let f = fast::SeedableRandomState::with_seed(per, shared);
        let q = quality::SeedableRandomState::with_seed(per, shared);
        let hs: [Box<dyn Fn(u64) -> u64>; 3] = [
            Box::new(move |k| q.hash_one(k)),
            {
                let f = f.clone();
                Box::new(move |k| f.hash_one(k))
            },
            {
                let f = f.clone();
                Box::new(move |k| f.hash_one(k).rotate_left(32))
            },
        ];
        for (j, h) in hs.iter().enumerate() {
            // Shard coverage: keys k % 4 < 2 of 0..200 over 8 shards.
            let mut seen = [false; 8];
            for k in (0..200u64).filter(|k| k % 4 < 2) {
                seen[shard(h(k), 8)] = true;
            }
            if seen.iter().any(|s| !s) {
                bad[j] += 1;
            }
            // Probe quality every 30th run: 100k sequential keys, 16 shards of 16384 slots.
            if run % 30 == 0 {
                let mut tables = vec![vec![0u64; 16384]; 16];
                let mut d = 0usize;
                let mut w = 0usize;
                for k in 1..=100_000u64 {
                    let x = h(k);
                    let t = &mut tables[shard(x, 16)];
                    let mut i = x as usize & 16383;
                    let mut n = 0;
                    while t[i] != 0 {
                        if (t[i] >> 40) & 0xFFFF == (x >> 40) & 0xFFFF {
                            w += 1;
                        }
                        i = (i + 1) & 16383;
                        n += 1;
                    }
                    t[i] = x | 1;
                    d += n;
                    maxdisp[j] = maxdisp[j].max(n);
                }
                disp[j] += d as f64 / 100_000.0;
                wrong[j] += w as f64;
            }
        }
    }
    let sampled = (runs / 30) as f64;
    for j in 0..3 {
        println!("{:12} runs missing a shard: {:4} of {runs}; mean displacement {:.3}; max {}; same-tag slots passed per 100k inserts {:.2}",
            names[j], bad[j], disp[j] / sampled, maxdisp[j], wrong[j] / sampled);
    }
}
