//! Which queue should a shard's mailbox be? Measures, for crossbeam-channel,
//! flume and tokio's mpsc (bounded, capacity 1024), the three things the
//! shard protocol does with its mailbox:
//!
//! - `empty check`: the holder's look at the mailbox before it releases the
//!   token (done on every write, usually finding nothing);
//! - `push+pop`: a message queued by one writer and taken by the holder
//!   (same thread here: the uncontended cost of the queue itself);
//! - `round trip`: a request to a dedicated shard thread and its reply, the
//!   thread either spinning on the queue or blocking in `recv` (parked) —
//!   what a shard-per-thread design would pay per write.
//!
//! `cargo run --release -p coherent-bench --bin mailbox`

use hdrhistogram::Histogram;
use std::hint::black_box;
use std::time::Instant;

const N: u64 = 2_000_000;
const TRIPS: u64 = 20_000;

fn per_op(n: u64, f: impl FnOnce()) -> f64 {
    let t = Instant::now();
    f();
    t.elapsed().as_nanos() as f64 / n as f64
}

fn main() {
    println!(
        "{:<18} {:>12} {:>10} {:>16} {:>16}",
        "queue", "empty check", "push+pop", "trip spin p50/p99", "trip park p50/p99"
    );
    // crossbeam-channel
    {
        let (tx, rx) = crossbeam_channel::bounded::<u64>(1024);
        let empty = per_op(N, || {
            (0..N).for_each(|_| {
                black_box(rx.is_empty());
            })
        });
        let pp = per_op(N, || {
            (0..N).for_each(|i| {
                tx.send(i).unwrap();
                black_box(rx.try_recv().unwrap());
            })
        });
        let spin = trip(|| {
            let (q, r) = (
                crossbeam_channel::bounded::<u64>(1024),
                crossbeam_channel::bounded::<u64>(1024),
            );
            let srv = {
                let (rx, tx) = (q.1.clone(), r.0.clone());
                std::thread::spawn(move || loop {
                    match rx.try_recv() {
                        Ok(u64::MAX) => return,
                        Ok(v) => tx.send(v).unwrap(),
                        Err(_) => std::hint::spin_loop(),
                    }
                })
            };
            let out = measure(|i| {
                q.0.send(i).unwrap();
                loop {
                    if let Ok(v) = r.1.try_recv() {
                        return v;
                    }
                    std::hint::spin_loop();
                }
            });
            q.0.send(u64::MAX).unwrap();
            srv.join().unwrap();
            out
        });
        let park = trip(|| {
            let (q, r) = (
                crossbeam_channel::bounded::<u64>(1024),
                crossbeam_channel::bounded::<u64>(1024),
            );
            let srv = {
                let (rx, tx) = (q.1.clone(), r.0.clone());
                std::thread::spawn(move || {
                    while let Ok(v) = rx.recv() {
                        if v == u64::MAX {
                            return;
                        }
                        tx.send(v).unwrap();
                    }
                })
            };
            let out = measure(|i| {
                q.0.send(i).unwrap();
                r.1.recv().unwrap()
            });
            q.0.send(u64::MAX).unwrap();
            srv.join().unwrap();
            out
        });
        row("crossbeam-channel", empty, pp, spin, park);
    }
    // flume
    {
        let (tx, rx) = flume::bounded::<u64>(1024);
        let empty = per_op(N, || {
            (0..N).for_each(|_| {
                black_box(rx.is_empty());
            })
        });
        let pp = per_op(N, || {
            (0..N).for_each(|i| {
                tx.send(i).unwrap();
                black_box(rx.try_recv().unwrap());
            })
        });
        let spin = trip(|| {
            let (q, r) = (flume::bounded::<u64>(1024), flume::bounded::<u64>(1024));
            let srv = {
                let (rx, tx) = (q.1.clone(), r.0.clone());
                std::thread::spawn(move || loop {
                    match rx.try_recv() {
                        Ok(u64::MAX) => return,
                        Ok(v) => tx.send(v).unwrap(),
                        Err(_) => std::hint::spin_loop(),
                    }
                })
            };
            let out = measure(|i| {
                q.0.send(i).unwrap();
                loop {
                    if let Ok(v) = r.1.try_recv() {
                        return v;
                    }
                    std::hint::spin_loop();
                }
            });
            q.0.send(u64::MAX).unwrap();
            srv.join().unwrap();
            out
        });
        let park = trip(|| {
            let (q, r) = (flume::bounded::<u64>(1024), flume::bounded::<u64>(1024));
            let srv = {
                let (rx, tx) = (q.1.clone(), r.0.clone());
                std::thread::spawn(move || {
                    while let Ok(v) = rx.recv() {
                        if v == u64::MAX {
                            return;
                        }
                        tx.send(v).unwrap();
                    }
                })
            };
            let out = measure(|i| {
                q.0.send(i).unwrap();
                r.1.recv().unwrap()
            });
            q.0.send(u64::MAX).unwrap();
            srv.join().unwrap();
            out
        });
        row("flume", empty, pp, spin, park);
    }
    // tokio mpsc (blocking API from plain threads)
    {
        let (tx, mut rx) = tokio::sync::mpsc::channel::<u64>(1024);
        let empty = per_op(N, || {
            (0..N).for_each(|_| {
                black_box(rx.is_empty());
            })
        });
        let pp = per_op(N, || {
            (0..N).for_each(|i| {
                tx.try_send(i).unwrap();
                black_box(rx.try_recv().unwrap());
            })
        });
        let spin = trip(|| {
            let (qt, mut qr) = tokio::sync::mpsc::channel::<u64>(1024);
            let (rt, mut rr) = tokio::sync::mpsc::channel::<u64>(1024);
            let srv = std::thread::spawn(move || loop {
                match qr.try_recv() {
                    Ok(u64::MAX) => return,
                    Ok(v) => rt.try_send(v).unwrap(),
                    Err(_) => std::hint::spin_loop(),
                }
            });
            let out = measure(|i| {
                qt.try_send(i).unwrap();
                loop {
                    if let Ok(v) = rr.try_recv() {
                        return v;
                    }
                    std::hint::spin_loop();
                }
            });
            qt.try_send(u64::MAX).unwrap();
            srv.join().unwrap();
            out
        });
        let park = trip(|| {
            let (qt, mut qr) = tokio::sync::mpsc::channel::<u64>(1024);
            let (rt, mut rr) = tokio::sync::mpsc::channel::<u64>(1024);
            let srv = std::thread::spawn(move || {
                while let Some(v) = qr.blocking_recv() {
                    if v == u64::MAX {
                        return;
                    }
                    rt.blocking_send(v).unwrap();
                }
            });
            let out = measure(|i| {
                qt.blocking_send(i).unwrap();
                rr.blocking_recv().unwrap()
            });
            qt.blocking_send(u64::MAX).unwrap();
            srv.join().unwrap();
            out
        });
        row("tokio mpsc", empty, pp, spin, park);
    }
}

fn measure(mut f: impl FnMut(u64) -> u64) -> (u64, u64) {
    let mut h = Histogram::<u64>::new(3).unwrap();
    for i in 0..TRIPS {
        let t = Instant::now();
        black_box(f(i));
        h.record(t.elapsed().as_nanos() as u64).unwrap();
    }
    (h.value_at_quantile(0.5), h.value_at_quantile(0.99))
}

fn trip(f: impl FnOnce() -> (u64, u64)) -> (u64, u64) {
    f()
}

fn row(name: &str, empty: f64, pp: f64, spin: (u64, u64), park: (u64, u64)) {
    println!(
        "{:<18} {:>10.1}ns {:>8.1}ns {:>16} {:>16}",
        name,
        empty,
        pp,
        format!("{}/{} ns", spin.0, spin.1),
        format!("{}/{} ns", park.0, park.1)
    );
}
