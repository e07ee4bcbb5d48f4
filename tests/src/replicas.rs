//! Staleness across replicas: a checker, and the naive design it must
//! catch.
//!
//! The workload: writers bump a key's version in the source of truth,
//! write it through a replica, and when the write returns `Ok` record the
//! version as acknowledged. Readers on every replica read the key's
//! acknowledged version first, then the key (loading from the source of
//! truth on a miss): a value older than the acknowledged version is an
//! anomaly, a stale read that G8 forbids (incident 002 across processes).

use coherent::replica::Replica;
use std::convert::Infallible;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

/// A cache replicated across processes, as the checker drives it.
pub trait Replicated: Send + Sync {
    /// Writes `version` of `key`, already in the source of truth. `Ok`:
    /// acknowledged, so no replica may serve an older version afterwards.
    fn write(&self, key: u64, version: u64) -> Result<(), String>;
    /// Reads `key`, loading it with `load` on a miss.
    fn read(&self, key: u64, load: &dyn Fn() -> u64) -> u64;
}

impl Replicated for Replica<u64, u64> {
    fn write(&self, key: u64, version: u64) -> Result<(), String> {
        match version % 4 {
            0 => self.invalidate(&key).map_err(|e| e.to_string()),
            1 => self
                .update(key, move |_| Some(version))
                .map(drop)
                .map_err(|e| e.to_string()),
            _ => self.insert(key, version).map_err(|e| e.to_string()),
        }
    }

    fn read(&self, key: u64, load: &dyn Fn() -> u64) -> u64 {
        self.get_or_load(key, |_| Ok::<_, Infallible>(load()))
            .expect("the loader cannot fail")
    }
}

/// What a run saw.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Run {
    /// Writes acknowledged (`Ok`).
    pub acknowledged: u64,
    /// Writes that returned an error (not acknowledged: not checked).
    pub unconfirmed: u64,
    pub reads: u64,
    /// Reads older than a version acknowledged before they began.
    pub anomalies: u64,
}

/// The workload's shape.
#[derive(Debug, Clone, Copy)]
pub struct Plan {
    /// Writes per writer thread; writer `w` writes through replica
    /// `w % replicas` and owns the keys `k % writers == w`.
    pub writes: u64,
    pub writers: usize,
    /// Keys, few so that readers read what was just written.
    pub keys: u64,
}

/// Runs `plan` over `replicas` (one reader thread each) while `fault`
/// runs on a thread of its own; it is handed the count of writes done so
/// far and whether the writers finished.
pub fn check<F>(replicas: &[Arc<dyn Replicated>], plan: Plan, fault: F) -> Run
where
    F: FnOnce(&AtomicU64, &AtomicBool) + Send,
{
    let source: Vec<AtomicU64> = (0..plan.keys).map(|_| AtomicU64::new(0)).collect();
    let acked: Vec<AtomicU64> = (0..plan.keys).map(|_| AtomicU64::new(0)).collect();
    let done = AtomicBool::new(false);
    let progress = AtomicU64::new(0);
    let run = Mutex::new(Run::default());
    std::thread::scope(|s| {
        let writers: Vec<_> = (0..plan.writers)
            .map(|w| {
                let (source, acked, progress, run) = (&source, &acked, &progress, &run);
                let r = replicas[w % replicas.len()].clone();
                s.spawn(move || {
                    let mut rng = 0x9E37_79B9_7F4A_7C15u64 ^ (w as u64 + 1);
                    let (mut ok, mut failed) = (0, 0);
                    let owned = plan.keys / plan.writers as u64;
                    for _ in 0..plan.writes {
                        rng ^= rng << 13;
                        rng ^= rng >> 7;
                        rng ^= rng << 17;
                        let k = (rng % owned) * plan.writers as u64 + w as u64;
                        let v = source[k as usize].fetch_add(1, Ordering::AcqRel) + 1;
                        match r.write(k, v) {
                            Ok(()) => {
                                // Release: a reader that sees this version
                                // acknowledged starts after the write returned.
                                acked[k as usize].fetch_max(v, Ordering::Release);
                                ok += 1;
                            }
                            Err(_) => failed += 1,
                        }
                        progress.fetch_add(1, Ordering::Relaxed);
                    }
                    let mut run = run.lock().unwrap();
                    run.acknowledged += ok;
                    run.unconfirmed += failed;
                })
            })
            .collect();
        for (i, r) in replicas.iter().enumerate() {
            let (source, acked, done, run) = (&source, &acked, &done, &run);
            s.spawn(move || {
                let mut rng = 0x2545_F491_4F6C_DD1Du64 ^ (i as u64 + 7);
                let (mut reads, mut anomalies) = (0, 0);
                while !done.load(Ordering::Acquire) {
                    rng ^= rng << 13;
                    rng ^= rng >> 7;
                    rng ^= rng << 17;
                    let k = (rng % plan.keys) as usize;
                    let before = acked[k].load(Ordering::Acquire);
                    let got = r.read(k as u64, &|| source[k].load(Ordering::Acquire));
                    reads += 1;
                    if got < before {
                        anomalies += 1;
                    }
                }
                let mut run = run.lock().unwrap();
                run.reads += reads;
                run.anomalies += anomalies;
            });
        }
        let (progress_ref, done_ref) = (&progress, &done);
        let faults = s.spawn(move || fault(progress_ref, done_ref));
        for w in writers {
            w.join().expect("a writer panicked");
        }
        done.store(true, Ordering::Release);
        faults.join().expect("the fault thread panicked");
    });
    run.into_inner().unwrap()
}

/// The naive design, as the incidents' services built it: a cache per
/// process, and each write invalidates the other processes' copies by a
/// fire-and-forget `PUBLISH`, applied by a subscriber thread (after
/// `delay`, standing for a busy subscriber or a slow network).
pub struct PubSubReplica {
    cache: Arc<coherent::Cache<u64, u64>>,
    publisher: Mutex<redis::Connection>,
    channel: String,
    stop: Arc<AtomicBool>,
    subscriber: Option<JoinHandle<()>>,
}

impl PubSubReplica {
    /// A replica subscribed to `channel` on the server at `url`; returns
    /// once its subscription is in place.
    pub fn new(url: &str, channel: &str, delay: Duration) -> Self {
        let client = redis::Client::open(url).expect("redis url");
        let cache = Arc::new(coherent::Cache::new());
        let stop = Arc::new(AtomicBool::new(false));
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let subscriber = {
            let (cache, stop, client, channel) = (
                cache.clone(),
                stop.clone(),
                client.clone(),
                channel.to_owned(),
            );
            std::thread::spawn(move || {
                let mut ready = Some(ready_tx);
                while !stop.load(Ordering::Acquire) {
                    let Ok(mut c) = client.get_connection() else {
                        continue;
                    };
                    let _ = c.set_read_timeout(Some(Duration::from_millis(50)));
                    let mut sub = c.as_pubsub();
                    if sub.subscribe(&channel).is_err() {
                        continue;
                    }
                    if let Some(tx) = ready.take() {
                        let _ = tx.send(());
                    }
                    while !stop.load(Ordering::Acquire) {
                        match sub.get_message() {
                            Ok(msg) => {
                                let key: u64 = msg.get_payload().unwrap_or(u64::MAX);
                                if !delay.is_zero() {
                                    // The point of this variant: a slow
                                    // subscriber, which the checker must catch.
                                    std::thread::sleep(delay);
                                }
                                let _ = cache.invalidate(&key);
                            }
                            Err(e) if e.is_timeout() => {}
                            // The connection is gone: subscribe again (what
                            // was published meanwhile is lost).
                            Err(_) => break,
                        }
                    }
                }
            })
        };
        ready_rx
            .recv_timeout(Duration::from_secs(10))
            .expect("the subscriber subscribed");
        Self {
            cache,
            publisher: Mutex::new(client.get_connection().expect("publisher connection")),
            channel: channel.to_owned(),
            stop,
            subscriber: Some(subscriber),
        }
    }
}

impl Replicated for PubSubReplica {
    fn write(&self, key: u64, version: u64) -> Result<(), String> {
        self.cache.insert(key, version).map_err(|e| e.to_string())?;
        let mut c = self.publisher.lock().unwrap();
        let _: Result<i64, _> = redis::cmd("PUBLISH")
            .arg(&self.channel)
            .arg(key)
            .query(&mut *c);
        Ok(())
    }

    fn read(&self, key: u64, load: &dyn Fn() -> u64) -> u64 {
        self.cache
            .get_or_load(key, |_| Ok::<_, Infallible>(load()))
            .expect("the loader cannot fail")
    }
}

impl Drop for PubSubReplica {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(t) = self.subscriber.take() {
            let _ = t.join();
        }
    }
}
