fn main() {
    let keys = 100_000u64;
    let c = coherent::Cache::<u64, u64>::builder()
        .initial_capacity(keys as usize)
        .build()
        .unwrap();
    for k in 0..keys {
        c.insert(k, k).unwrap();
    }
    let ks = coherent_bench::zipf_keys(keys, 1.0, 1 << 20, 1);
    let mut n = 0;
    let t = std::time::Instant::now();
    for _ in 0..30 {
        for k in &ks {
            n += c.get(k).unwrap_or(0);
        }
    }
    println!(
        "{:.1} ns {n}",
        t.elapsed().as_nanos() as f64 / (30.0 * ks.len() as f64)
    );
}
