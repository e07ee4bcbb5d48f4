//! The comparison tables, shared by the `compare` and `demo` binaries.

use crate::{median, prefilled, prefilled_bounded, throughput, zipf_keys, NAMES};
use hdrhistogram::Histogram;
use std::sync::Arc;
use std::time::{Duration, Instant};

const KEYS: u64 = 100_000;

/// Where the bounded coherent cache sits in the throughput samples: after
/// the caches of [`NAMES`].
const BOUNDED: usize = NAMES.len();

/// One `get` throughput cell: a mix and a thread count.
#[derive(Debug, Clone, Copy)]
struct Cell {
    /// Writes per mille.
    writes: u32,
    threads: usize,
}

/// Prints the `get` throughput and ratio table, the write latency table of
/// every cache, async pipelined inserts and the transaction figures;
/// `quick` shortens the measurement windows (for the demo). With
/// `plot_dir`, also writes the throughput figures there as SVG.
pub fn run(quick: bool, plot_dir: Option<&std::path::Path>) {
    let (window, rounds) = if quick {
        (Duration::from_millis(120), 3)
    } else {
        (Duration::from_millis(250), 5)
    };
    let keys = Arc::new(zipf_keys(KEYS, 1.0, 1 << 20, 1));
    let cells: Vec<Cell> = [0u32, 50, 200]
        .into_iter()
        .flat_map(|writes| [1, 2].map(|threads| Cell { writes, threads }))
        .collect();
    // samples[cell][cache][round]. Every round builds and fills the caches
    // afresh: where their memory lands moves single-process results by 2x
    // on this VM, and fresh caches per round average that out. Within a
    // round the caches take turns, starting with a different one each round.
    // The last cache is coherent bounded as quick_cache is (BOUNDED).
    let mut samples = vec![vec![Vec::new(); NAMES.len() + 1]; cells.len()];
    for round in 0..rounds {
        let mut targets = prefilled(KEYS);
        targets.push(prefilled_bounded(KEYS));
        for (c, cell) in cells.iter().enumerate() {
            for turn in 0..targets.len() {
                let i = (round + turn) % targets.len();
                samples[c][i].push(throughput(
                    &targets[i],
                    &keys,
                    cell.threads,
                    cell.writes,
                    window,
                ));
            }
        }
    }
    println!(
        "get throughput, Zipf 1.0 over {KEYS} keys, all present (Mops/s, median of {rounds} rounds; ratios: coherent's, median of per-round ratios)"
    );
    println!(
        "{:<8} {:>7} {:>9} {:>11} {:>7} {:>8} {:>9} {:>8} {:>8} {:>9} {:>10}",
        "mix",
        "threads",
        "coherent",
        "quick_cache",
        "moka",
        "dashmap",
        "vs quick",
        "vs moka",
        "vs dash",
        "coh. bnd",
        "bnd/quick"
    );
    for (c, cell) in cells.iter().enumerate() {
        let s = &samples[c];
        let ratio = |of: usize, other: usize| {
            median(s[of].iter().zip(&s[other]).map(|(a, b)| a / b).collect())
        };
        println!(
            "{:<8} {:>7} {:>9.1} {:>11.1} {:>7.1} {:>8.1} {:>8.2}x {:>7.2}x {:>7.2}x {:>9.1} {:>9.2}x",
            format!("{}/{}", 100 - cell.writes / 10, cell.writes / 10),
            cell.threads,
            median(s[0].clone()) / 1e6,
            median(s[1].clone()) / 1e6,
            median(s[2].clone()) / 1e6,
            median(s[3].clone()) / 1e6,
            ratio(0, 1),
            ratio(0, 2),
            ratio(0, 3),
            median(s[BOUNDED].clone()) / 1e6,
            ratio(BOUNDED, 1)
        );
    }
    println!(
        "(coherent: unbounded; coh. bnd: coherent bounded to twice the keys, as quick_cache and moka are here)"
    );
    if let Some(dir) = plot_dir {
        plot(dir, &cells, &samples);
    }
    write_latency(if quick { 50_000 } else { 200_000 });
    insert_latency(if quick { 100_000 } else { 400_000 });
    pipelined(if quick { 200_000 } else { 1_000_000 });
    transactions(quick, window);
}

/// Writes `throughput-vs-writes.svg` and `throughput-vs-threads.svg` from
/// the throughput cells' medians.
fn plot(dir: &std::path::Path, cells: &[Cell], samples: &[Vec<Vec<f64>>]) {
    use crate::plot::{svg, Panel, Series};
    let series = |pick: &dyn Fn(&Cell) -> Option<f64>| -> Vec<Series> {
        NAMES
            .iter()
            .enumerate()
            .map(|(i, name)| Series {
                name: (*name).into(),
                points: cells
                    .iter()
                    .enumerate()
                    .filter_map(|(c, cell)| {
                        pick(cell).map(|x| (x, median(samples[c][i].clone()) / 1e6))
                    })
                    .collect(),
            })
            .collect()
    };
    let by_writes: Vec<Panel> = [1, 2]
        .map(|threads| Panel {
            title: format!("{threads} thread{}", if threads > 1 { "s" } else { "" }),
            x_label: "writes (% of operations)".into(),
            y_label: "million operations/s".into(),
            series: series(&|c: &Cell| {
                (c.threads == threads).then_some(f64::from(c.writes) / 10.0)
            }),
        })
        .into();
    let by_threads: Vec<Panel> = [0u32, 50, 200]
        .map(|writes| Panel {
            title: format!("{}% get, {}% insert", 100 - writes / 10, writes / 10),
            x_label: "threads".into(),
            y_label: "million operations/s".into(),
            series: series(&|c: &Cell| (c.writes == writes).then_some(c.threads as f64)),
        })
        .into();
    let title = "get/insert throughput, Zipf 1.0 over 100k keys (compare, one run)";
    for (file, panels) in [
        ("throughput-vs-writes.svg", by_writes),
        ("throughput-vs-threads.svg", by_threads),
    ] {
        let path = dir.join(file);
        match std::fs::write(&path, svg(title, &panels)) {
            Ok(()) => println!("wrote {}", path.display()),
            Err(e) => eprintln!("could not write {}: {e}", path.display()),
        }
    }
}

/// Write latency of every cache: `n` inserts over 4,096 keys from one
/// thread, each timed to its return (for coherent, when the value is
/// visible to every reader).
pub fn write_latency(n: u64) {
    println!();
    println!("insert latency, 1 writer, 4,096 keys (ns; HDR histogram)");
    println!("{:<34} {:>8} {:>8} {:>8}", "cache", "p50", "p99", "p99.9");
    for target in prefilled(4096) {
        let hist = time_each(n, |i| target.insert(i % 4096, i));
        latency_row(target.name(), &hist);
    }
}

/// Async inserts from one thread: one task awaiting each insert in turn,
/// then 64 tasks on a current-thread runtime (up to 64 writes in flight).
/// Counts inserts acknowledged (visible) per second.
pub fn pipelined(n: u64) {
    println!();
    println!("async inserts from one thread, acknowledged (visible) per second");
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    for tasks in [1u64, 64] {
        let cache = coherent::Cache::<u64, u64>::new();
        let t0 = Instant::now();
        rt.block_on(async {
            let handles: Vec<_> = (0..tasks)
                .map(|t| {
                    let cache = cache.clone();
                    tokio::spawn(async move {
                        for i in (t..n).step_by(tasks as usize) {
                            cache.insert_async(i % 65_536, i).await.expect("insert");
                        }
                    })
                })
                .collect();
            for h in handles {
                h.await.expect("task");
            }
        });
        let rate = n as f64 / t0.elapsed().as_secs_f64();
        println!(
            "{:<34} {:>8.2} M/s",
            format!("{tasks} task(s), {n} inserts"),
            rate / 1e6
        );
    }
}

/// Prints a latency histogram's percentiles as a table row.
fn latency_row(case: &str, hist: &Histogram<u64>) {
    println!(
        "{:<34} {:>8} {:>8} {:>8}",
        case,
        hist.value_at_quantile(0.5),
        hist.value_at_quantile(0.99),
        hist.value_at_quantile(0.999)
    );
}

/// Times `f` `n` times into a histogram (ns).
fn time_each(n: u64, mut f: impl FnMut(u64)) -> Histogram<u64> {
    let mut hist = Histogram::<u64>::new(3).expect("histogram");
    for i in 0..n {
        let t0 = Instant::now();
        f(i);
        hist.record(t0.elapsed().as_nanos() as u64).expect("record");
    }
    hist
}

/// Transactions: commit latency within one shard and across two,
/// `invalidate_tag` latency, and `get` throughput while a writer commits.
pub fn transactions(quick: bool, window: Duration) {
    let cache = coherent::Cache::<u64, u64>::builder()
        .shards(8)
        .build()
        .expect("valid");
    let home = cache.shard_of(&0);
    let same = (1..).find(|k| cache.shard_of(k) == home).expect("a key");
    let other = (1..).find(|k| cache.shard_of(k) != home).expect("a key");
    let n = if quick { 20_000 } else { 100_000 };
    println!();
    println!("coherent transactions (ns)");
    println!("{:<34} {:>8} {:>8} {:>8}", "case", "p50", "p99", "p99.9");
    for (case, b) in [
        ("commit, 2 keys, 1 shard", same),
        ("commit, 2 keys, 2 shards", other),
    ] {
        let hist = time_each(n, |i| {
            cache
                .transaction()
                .insert(0, i)
                .insert(b, i)
                .commit()
                .expect("commit");
        });
        latency_row(case, &hist);
    }
    for (entries, reps) in [
        (10u64, if quick { 2_000 } else { 10_000 }),
        (10_000, if quick { 20 } else { 100 }),
    ] {
        let mut hist = Histogram::<u64>::new(3).expect("histogram");
        for _ in 0..reps {
            for k in 0..entries {
                cache
                    .insert_tagged(1_000_000 + k, k, ["t"])
                    .expect("insert");
            }
            let t0 = Instant::now();
            cache.invalidate_tag("t").expect("invalidate_tag");
            hist.record(t0.elapsed().as_nanos() as u64).expect("record");
        }
        latency_row(&format!("invalidate_tag, {entries} entries"), &hist);
    }
    // `get` throughput alone, with a writer committing 2-key transactions
    // on keys of the read set back to back, and (for reference) with a
    // writer doing the same two writes as plain inserts.
    let keys = Arc::new(zipf_keys(KEYS, 1.0, 1 << 20, 2));
    let rounds = if quick { 3 } else { 5 };
    let (mut alone, mut busy, mut plain) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..rounds {
        let c = coherent::Cache::<u64, u64>::builder()
            .initial_capacity(KEYS as usize)
            .build()
            .expect("valid");
        for k in 0..KEYS {
            c.insert(k, k).expect("insert");
        }
        let target_c: Arc<dyn crate::Target> = Arc::new(c.clone());
        alone.push(throughput(&target_c, &keys, 1, 0, window));
        for transactional in [true, false] {
            let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
            let writer = {
                let (c, stop, keys) = (c.clone(), stop.clone(), keys.clone());
                std::thread::spawn(move || {
                    let (mut writes, mut i) = (0u64, 0);
                    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                        let (a, b) = (keys[i % keys.len()], keys[(i + 1) % keys.len()]);
                        if transactional {
                            c.transaction()
                                .insert(a, a)
                                .insert(b, b)
                                .commit()
                                .expect("commit");
                        } else {
                            c.insert(a, a).expect("insert");
                            c.insert(b, b).expect("insert");
                        }
                        writes += 1;
                        i += 7;
                    }
                    writes
                })
            };
            let ops = throughput(&target_c, &keys, 1, 0, window);
            stop.store(true, std::sync::atomic::Ordering::Relaxed);
            let rate = writer.join().expect("writer") as f64 / window.as_secs_f64();
            if transactional {
                busy.push((ops, rate));
            } else {
                plain.push((ops, rate));
            }
        }
    }
    let ratio =
        |with: &[(f64, f64)]| median(alone.iter().zip(with).map(|(a, (b, _))| b / a).collect());
    println!();
    println!(
        "coherent get throughput, 1 reader, Zipf 1.0 over {KEYS} keys (Mops/s, median of {rounds} rounds)"
    );
    println!("{:<62} {:>8} {:>9}", "case", "Mops/s", "vs alone");
    println!(
        "{:<62} {:>8.1} {:>9}",
        "alone",
        median(alone.clone()) / 1e6,
        "1.00x"
    );
    for (case, with) in [
        ("a writer commits 2-key transactions on read keys", &busy),
        ("a writer inserts the same 2 keys, plain", &plain),
    ] {
        println!(
            "{:<62} {:>8.1} {:>8.2}x",
            format!(
                "{case} ({:.0}k/s)",
                median(with.iter().map(|b| b.1).collect()) / 1e3
            ),
            median(with.iter().map(|b| b.0).collect()) / 1e6,
            ratio(with)
        );
    }
}
/// Insert-until-visible: the time `insert` takes to return, which is when the
/// value is visible to every reader. Alone, and with a second thread writing
/// to the same shards.
pub fn insert_latency(n: u64) {
    println!();
    println!("coherent insert until visible (ns)");
    println!("{:<26} {:>8} {:>8} {:>8}", "case", "p50", "p99", "p99.9");
    for contended in [false, true] {
        let cache = coherent::Cache::<u64, u64>::builder()
            .shards(1)
            .build()
            .expect("valid");
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let rival = contended.then(|| {
            let (cache, stop) = (cache.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut k = 1u64 << 40;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    cache.insert(k % 4096 + (1 << 40), k).expect("insert");
                    k += 1;
                }
            })
        });
        let mut hist = Histogram::<u64>::new(3).expect("histogram");
        for i in 0..n {
            let k = i % 4096;
            let t0 = Instant::now();
            cache.insert(k, i).expect("insert");
            hist.record(t0.elapsed().as_nanos() as u64).expect("record");
        }
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        if let Some(r) = rival {
            r.join().expect("rival");
        }
        let case = if contended {
            "2 writers, 1 shard"
        } else {
            "1 writer"
        };
        println!(
            "{:<26} {:>8} {:>8} {:>8}",
            case,
            hist.value_at_quantile(0.5),
            hist.value_at_quantile(0.99),
            hist.value_at_quantile(0.999)
        );
    }
}
