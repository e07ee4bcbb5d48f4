//! Replicas kept coherent through Redis (G8), measured side by side with
//! the floor they build on, in one run, against a `redis-server` this
//! binary starts on a free local port:
//!
//! - acknowledged write latency with 1, 2 and 4 replicas, next to one
//!   plain round trip (`PING`) and a fire-and-forget `DEL` + `PUBLISH`
//!   (the naive design's whole cost);
//! - acknowledged invalidations per second from many writer threads;
//! - `get` throughput of a replicated cache against the same cache
//!   unreplicated, alternated, Zipf 1.0 over 100k keys;
//! - how long a replica takes to stop serving once Redis dies, and to serve
//!   again once it is back.
//!
//! `cargo run --release -p coherent-bench --bin replicas` (about 30 s;
//! needs `redis-server`: `apt-get install redis-server`).

use coherent::replica::{Replica, ReplicaConfig};
use coherent::Cache;
use coherent_bench::{median, zipf_keys};
use coherent_tests::redis_server::RedisServer;
use hdrhistogram::Histogram;
use std::convert::Infallible;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

fn config() -> ReplicaConfig {
    ReplicaConfig {
        lease: Duration::from_millis(1_000),
        ack_deadline: Duration::from_millis(300),
        ..ReplicaConfig::default()
    }
}

fn us(h: &Histogram<u64>, q: f64) -> f64 {
    h.value_at_quantile(q) as f64 / 1_000.0
}

fn row(name: &str, h: &Histogram<u64>) {
    println!(
        "{name:<44} {:>8.1} {:>8.1} {:>8.1}",
        us(h, 0.5),
        us(h, 0.99),
        us(h, 0.999)
    );
}

fn timed(n: u64, mut f: impl FnMut(u64)) -> Histogram<u64> {
    let mut h = Histogram::<u64>::new(3).unwrap();
    for i in 0..n {
        let t = Instant::now();
        f(i);
        h.record(t.elapsed().as_nanos() as u64).unwrap();
    }
    h
}

fn join(server: &RedisServer, ns: &str) -> Replica<u64, u64> {
    let r = Replica::join_with(Cache::new(), &server.url(), ns, config()).expect("join");
    assert!(r.wait_until_serving(Duration::from_secs(5)));
    // The first writes of a new namespace wait until a lease has passed
    // since its epoch began (a flushed Redis looks the same): not timed.
    r.invalidate(&u64::MAX).expect("a first write");
    r
}

fn main() {
    let mut server = RedisServer::start();
    let mut c = server.connection();
    const N: u64 = 5_000;

    println!("acknowledged write latency (us; {N} writes, one writer)");
    println!("{:<44} {:>8} {:>8} {:>8}", "case", "p50", "p99", "p99.9");
    let ping = timed(N, |_| {
        let _: String = redis::cmd("PING").query(&mut c).unwrap();
    });
    row("floor: PING round trip", &ping);
    let naive = timed(N, |i| {
        let _: (i64, i64) = redis::pipe()
            .cmd("DEL")
            .arg(i)
            .cmd("PUBLISH")
            .arg("inv")
            .arg(i)
            .query(&mut c)
            .unwrap();
    });
    row("naive: DEL + PUBLISH, fire and forget", &naive);
    let mut p50s = Vec::new();
    for n in [1usize, 2, 4] {
        let ns = format!("lat{n}");
        let rs: Vec<_> = (0..n).map(|_| join(&server, &ns)).collect();
        let h = timed(N, |i| rs[0].insert(i % 1_000, i).expect("a write"));
        row(&format!("coherent insert, {n} replica(s)"), &h);
        p50s.push((n, us(&h, 0.5)));
    }
    for (n, p50) in &p50s {
        println!(
            "  {n} replica(s): p50 {:.1}x the PING round trip",
            p50 / us(&ping, 0.5)
        );
    }

    println!("\nacknowledged invalidations per second, 2 replicas, writers on both");
    let rs = [join(&server, "tput"), join(&server, "tput")];
    for writers in [1usize, 8, 32] {
        let done = AtomicU64::new(0);
        let stop = AtomicBool::new(false);
        let secs = 2.0;
        std::thread::scope(|s| {
            for w in 0..writers {
                let (r, done, stop) = (&rs[w % 2], &done, &stop);
                s.spawn(move || {
                    let mut i = w as u64;
                    while !stop.load(Ordering::Relaxed) {
                        r.invalidate(&(i % 10_000)).expect("a write");
                        done.fetch_add(1, Ordering::Relaxed);
                        i += writers as u64;
                    }
                });
            }
            std::thread::sleep(Duration::from_secs_f64(secs));
            stop.store(true, Ordering::Relaxed);
        });
        println!(
            "  {writers:>2} writer thread(s): {:>8.0} /s",
            done.load(Ordering::Relaxed) as f64 / secs
        );
    }
    drop(rs);

    println!(
        "\nget throughput, one thread, Zipf 1.0 over 100000 keys (Mops/s; 7 rounds alternated)"
    );
    let replica = join(&server, "get");
    let plain: Cache<u64, u64> = Cache::new();
    for k in 0..100_000u64 {
        replica.get_or_load(k, |_| Ok::<_, Infallible>(k)).unwrap();
        plain.insert(k, k).unwrap();
    }
    let keys = zipf_keys(100_000, 1.0, 1 << 20, 3);
    let pass = |get: &dyn Fn(u64) -> Option<u64>| {
        let t = Instant::now();
        let mut sum = 0u64;
        for _ in 0..8 {
            for &k in &keys {
                sum = sum.wrapping_add(get(k).unwrap_or(0));
            }
        }
        std::hint::black_box(sum);
        (8 * keys.len()) as f64 / t.elapsed().as_secs_f64() / 1e6
    };
    let (mut rep, mut unrep, mut ratios) = (Vec::new(), Vec::new(), Vec::new());
    for round in 0..7 {
        let (a, b) = if round % 2 == 0 {
            let a = pass(&|k| replica.get(&k));
            (a, pass(&|k| plain.get(&k)))
        } else {
            let b = pass(&|k| plain.get(&k));
            (pass(&|k| replica.get(&k)), b)
        };
        rep.push(a);
        unrep.push(b);
        ratios.push(a / b);
    }
    println!(
        "  replicated {:.1}, unreplicated {:.1}: {:.2}x (median of per-round ratios)",
        median(rep),
        median(unrep),
        median(ratios)
    );

    println!(
        "\nlosing Redis and getting it back (lease {:?})",
        config().lease
    );
    let killed = Instant::now();
    server.kill();
    while replica.is_serving() {
        std::thread::yield_now();
    }
    println!(
        "  stopped serving {:.0} ms after redis-server was killed",
        killed.elapsed().as_secs_f64() * 1e3
    );
    let t = Instant::now();
    let hits = (0..1_000u64).filter(|k| replica.get(k).is_some()).count();
    let loaded = replica.get_or_load(1, |_| Ok::<_, Infallible>(7)).unwrap();
    println!(
        "  while Redis is down: {hits} hits in 1000 gets, get_or_load goes to the loader ({loaded}), {:.1} us for both",
        t.elapsed().as_secs_f64() * 1e6
    );
    let back = Instant::now();
    server.restart();
    assert!(replica.wait_until_serving(Duration::from_secs(10)));
    println!(
        "  serving again {:.0} ms after redis-server was started again (starting it included)",
        back.elapsed().as_secs_f64() * 1e3
    );
    println!("  replica stats: {:?}", replica.stats());
}
