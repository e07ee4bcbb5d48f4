//! The comparison binary: `get` throughput of coherent, quick_cache, moka
//! and dashmap measured in one run (Zipf 1.0 keys; 100%, 95% and 80% reads;
//! 1 and 2 threads) with coherent's ratios to each, every cache's insert
//! latency, coherent's insert-until-visible latency, async pipelined
//! inserts and transactions.
//!
//! `cargo run --release -p coherent-bench --bin compare [-- --quick] [-- --plot DIR]`
//! (`--plot docs/img` redraws the figures of `docs/benchmarks.md`).

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let plot = args
        .iter()
        .position(|a| a == "--plot")
        .map(|i| match args.get(i + 1) {
            Some(dir) => std::path::PathBuf::from(dir),
            None => {
                eprintln!("--plot needs a directory");
                std::process::exit(2);
            }
        });
    if let Some(dir) = &plot {
        if let Err(e) = std::fs::create_dir_all(dir) {
            eprintln!("cannot create {}: {e}", dir.display());
            std::process::exit(2);
        }
    }
    coherent_bench::compare::run(args.iter().any(|a| a == "--quick"), plot.as_deref());
}
