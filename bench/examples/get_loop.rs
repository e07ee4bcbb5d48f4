//! One thread, a tight `get` loop over Zipf 1.0 keys (`KEYS` present,
//! default 100k). `get_loop CACHE PASSES` with CACHE 0 = coherent,
//! 1 = quick_cache, 2 = moka times that cache alone (and is what cachegrind
//! runs for the per-`get` counts in docs/design.md: PASSES 0 and 20, take the
//! difference). `get_loop ab PASSES` alternates coherent and quick_cache in
//! one process and prints the median ratio of their times. `WRITES=50`
//! makes that many per mille of the operations inserts (same key), spread
//! evenly, for the 95%-get cells.

use std::hint::black_box;
use std::time::Instant;

fn main() {
    let n: u64 = std::env::var("KEYS").map_or(100_000, |v| v.parse().expect("KEYS"));
    let len: usize = std::env::var("LEN").map_or(1 << 16, |v| v.parse().expect("LEN"));
    let keys = coherent_bench::zipf_keys(n, 1.0, len, 7);
    let writes: usize = std::env::var("WRITES").map_or(0, |v| v.parse().expect("WRITES"));
    // Operation i is an insert when it crosses a multiple of 1000 / writes.
    let is_write: Vec<bool> = (0..keys.len())
        .map(|i| (i * writes) / 1000 != ((i + 1) * writes) / 1000)
        .collect();
    let targets = coherent_bench::prefilled(n);
    let arg = std::env::args().nth(1).unwrap_or_default();
    let passes: u32 = std::env::args()
        .nth(2)
        .map_or(300, |a| a.parse().expect("PASSES"));
    let time = |which: usize, passes: u32| {
        let t = &targets[which];
        let start = Instant::now();
        for _ in 0..passes {
            for (k, w) in keys.iter().zip(&is_write) {
                if *w {
                    t.insert(*k, *k);
                } else {
                    black_box(t.get(*k));
                }
            }
        }
        start.elapsed().as_nanos() as f64 / (passes as f64 * keys.len() as f64)
    };
    if arg == "ab" {
        let mut ratios = Vec::new();
        let (mut a, mut b) = (Vec::new(), Vec::new());
        for _ in 0..passes / 10 {
            let (x, y) = (time(0, 10), time(1, 10));
            a.push(x);
            b.push(y);
            ratios.push(y / x);
        }
        println!(
            "coherent {:.1} ns, quick_cache {:.1} ns, speed ratio {:.2}x",
            coherent_bench::median(a),
            coherent_bench::median(b),
            coherent_bench::median(ratios)
        );
    } else {
        let which: usize = arg.parse().unwrap_or(0);
        println!("{} {:.1} ns", targets[which].name(), time(which, passes));
    }
}
