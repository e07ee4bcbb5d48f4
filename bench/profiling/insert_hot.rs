//! `insert` of hot keys in a tight loop, coherent beside quick_cache and
//! dashmap: `insert_hot [KEYS [CACHE [N]]]` (KEYS 100: every line in L1;
//! CACHE 0 coherent, 1 quick_cache, 3 dashmap, 9 all three; N inserts per
//! round). With the keys in cache the time is instructions and the two
//! locked instructions, not misses; under cachegrind
//! (`valgrind --tool=cachegrind --cache-sim=no insert_hot 100 0 1000000`,
//! three rounds) it counts the instructions of one insert, the figure
//! docs/design.md gives for the write path.

use std::time::Instant;

fn main() {
    let arg = |i: usize, default: u64| {
        std::env::args().nth(i).map_or(default, |a| {
            a.parse().expect("usage: insert_hot [KEYS [CACHE [N]]]")
        })
    };
    let (keys, only, n) = (arg(1, 100).max(1), arg(2, 9), arg(3, 10_000_000));
    let c = coherent::Cache::<u64, u64>::new();
    let q = quick_cache::sync::Cache::<u64, u64>::new(keys as usize * 2);
    let d = dashmap::DashMap::<u64, u64>::new();
    let time = |f: &dyn Fn(u64)| {
        let t = Instant::now();
        for i in 0..n {
            f(i);
        }
        t.elapsed().as_nanos() as f64 / n as f64
    };
    for _ in 0..3 {
        let mut line = String::new();
        if only == 9 || only == 0 {
            let ns = time(&|i| c.insert(i % keys, i).expect("insert"));
            line += &format!("coherent {ns:.1} ns  ");
        }
        if only == 9 || only == 1 {
            let ns = time(&|i| q.insert(i % keys, i));
            line += &format!("quick_cache {ns:.1} ns  ");
        }
        if only == 9 || only == 3 {
            let ns = time(&|i| {
                d.insert(i % keys, i);
            });
            line += &format!("dashmap {ns:.1} ns");
        }
        println!("{}", line.trim_end());
    }
}
