use std::time::Instant;
fn main() {
    for keys in [64u64, 10_000, 30_000, 100_000, 1_000_000] {
        let c = coherent::Cache::<u64, u64>::builder()
            .initial_capacity(if std::env::args().nth(1).is_some() {
                keys as usize
            } else {
                0
            })
            .build()
            .unwrap();
        let q = quick_cache::sync::Cache::<u64, u64>::new(keys as usize * 2);
        for k in 0..keys {
            c.insert(k, k).unwrap();
            q.insert(k, k);
        }
        let ks = coherent_bench::zipf_keys(keys, 1.0, 1 << 20, 1);
        for _ in 0..3 {
            let t = Instant::now();
            let mut n = 0u64;
            for _ in 0..10 {
                for k in &ks {
                    n += c.get(k).unwrap_or(0);
                }
            }
            let dc = t.elapsed().as_nanos() as f64 / (10.0 * ks.len() as f64);
            let t = Instant::now();
            for _ in 0..10 {
                for k in &ks {
                    n += q.get(k).unwrap_or(0);
                }
            }
            let dq = t.elapsed().as_nanos() as f64 / (10.0 * ks.len() as f64);
            let a = arc_swap::ArcSwap::from_pointee(5u64);
            let t = Instant::now();
            for _ in 0..10_000_000 {
                n += **a.load();
            }
            let da = t.elapsed().as_nanos() as f64 / 1e7;
            println!("keys {keys}: coherent {dc:.1} ns, quick_cache {dq:.1} ns, arcswap load {da:.1} ns ({n})");
        }
    }
}
