//! The comparison tables, shared by the `compare` and `demo` binaries.

use crate::{median, prefilled, throughput, zipf_keys};
use hdrhistogram::Histogram;
use std::sync::Arc;
use std::time::{Duration, Instant};

const KEYS: u64 = 100_000;

/// Prints the `get` throughput table and the insert latency table; `quick`
/// shortens the measurement windows (for the demo).
pub fn run(quick: bool) {
    let (window, rounds) = if quick {
        (Duration::from_millis(150), 3)
    } else {
        (Duration::from_millis(400), 5)
    };
    let keys = Arc::new(zipf_keys(KEYS, 1.0, 1 << 20, 1));
    let cells = [
        ("100% get", 0u32, 1usize),
        ("100% get", 0, 2),
        ("95% get", 50, 1),
        ("95% get", 50, 2),
    ];
    // samples[cell][cache][round]. Every round builds and fills the caches
    // afresh: where their memory lands moves single-process results by 2x
    // on this VM, and fresh caches per round average that out. Within a
    // round the caches take turns, starting with a different one each round.
    let mut samples = vec![vec![Vec::new(); 3]; cells.len()];
    for round in 0..rounds {
        let targets = prefilled(KEYS);
        for (c, &(_, writes, threads)) in cells.iter().enumerate() {
            for turn in 0..targets.len() {
                let i = (round + turn) % targets.len();
                samples[c][i].push(throughput(&targets[i], &keys, threads, writes, window));
            }
        }
    }
    println!(
        "get throughput, Zipf 1.0 over {KEYS} keys, all present (Mops/s, median of {rounds} rounds; ratios: median of per-round ratios)"
    );
    println!(
        "{:<10} {:>7} {:>10} {:>12} {:>10} {:>9} {:>9}",
        "mix", "threads", "coherent", "quick_cache", "moka", "vs quick", "vs moka"
    );
    for (c, &(mix, _, threads)) in cells.iter().enumerate() {
        let s = &samples[c];
        let ratio = |other: usize| median(s[0].iter().zip(&s[other]).map(|(a, b)| a / b).collect());
        println!(
            "{:<10} {:>7} {:>10.1} {:>12.1} {:>10.1} {:>8.2}x {:>8.2}x",
            mix,
            threads,
            median(s[0].clone()) / 1e6,
            median(s[1].clone()) / 1e6,
            median(s[2].clone()) / 1e6,
            ratio(1),
            ratio(2)
        );
    }
    insert_latency(if quick { 100_000 } else { 400_000 });
    transactions(quick, window);
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
