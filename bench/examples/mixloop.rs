use coherent_bench::*;
use std::sync::Arc;
use std::time::Duration;
fn main() {
    let keys = Arc::new(zipf_keys(100_000, 1.0, 1 << 20, 1));
    let targets = prefilled(100_000);
    let ops = throughput(
        &targets[0],
        &keys,
        1,
        std::env::args().nth(1).map_or(50, |a| a.parse().unwrap()),
        Duration::from_millis(3000),
    );
    println!("{:.0} ns/op", 1e9 / ops);
}
