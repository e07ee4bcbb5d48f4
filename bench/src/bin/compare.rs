//! The comparison binary: `get` throughput of coherent, quick_cache and moka
//! measured in one run (Zipf 1.0 keys, 100% and 95% reads, 1 and 2 threads),
//! coherent's insert-until-visible latency, and the ratios.
//!
//! `cargo run --release -p coherent-bench --bin compare [-- --quick]`

fn main() {
    coherent_bench::compare::run(std::env::args().any(|a| a == "--quick"));
}
