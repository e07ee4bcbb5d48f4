use coherent_bench::*;
use std::sync::Arc;
use std::time::Duration;
fn main() {
    let keys = Arc::new(zipf_keys(100_000, 1.0, 1 << 20, 1));
    let only: Vec<Arc<dyn Target>> = {
        let c = coherent::Cache::<u64, u64>::builder()
            .initial_capacity(100_000)
            .build()
            .unwrap();
        for k in 0..100_000 {
            c.insert(k, k).unwrap();
        }
        let q = quick_cache::sync::Cache::<u64, u64>::new(200_000);
        for k in 0..100_000 {
            q.insert(k, k);
        }
        vec![Arc::new(c), Arc::new(q)]
    };
    for _ in 0..3 {
        for t in &only {
            println!(
                "{} {:.1} Mops",
                t.name(),
                throughput(t, &keys, 1, 0, Duration::from_millis(300)) / 1e6
            );
        }
    }
}
