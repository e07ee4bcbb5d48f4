//! Word values replaced in place (shard/src/value.rs): a `Cache<u64, u64>`
//! replaces a key's value with one atomic store instead of a new entry.
//! One thread writes ever larger values to a few keys and publishes, after
//! each write returns, the value it acknowledged; another thread reads.
//! Every read must be a whole value that was written (never torn), never
//! older than one the reader already saw for that key, and never older than
//! a write acknowledged before the read began (answered only once visible).
//!
//! The checker is shown to catch both ways an in-place write can go wrong,
//! each a naive cache kept here: `TornWord` stores a value as two halves
//! (a torn read), and `AckBeforeApply` (seed 002's cache) answers before
//! the write is applied (a stale read).

use coherent_tests::AckBeforeApply;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;

const KEYS: u64 = 4;

/// The writer waits for the reader's next pass every this many writes.
const PACE: u64 = 256;

/// Held by each test while it runs: one writer and one reader at a time on
/// this 2-core machine.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

fn writes() -> u64 {
    if cfg!(debug_assertions) {
        coherent_tests::sized(20_000, 2_000)
    } else {
        coherent_tests::sized(200_000, 2_000)
    }
}

/// The value written the `i`th time: `i` in both halves, so a value put
/// together from two different writes shows.
fn word(i: u64) -> u64 {
    (i << 32) | i
}

trait WordCache: Send + Sync + 'static {
    fn get(&self, key: u64) -> Option<u64>;
    fn insert(&self, key: u64, value: u64);
}

impl WordCache for coherent::Cache<u64, u64> {
    fn get(&self, key: u64) -> Option<u64> {
        coherent::Cache::get(self, &key)
    }
    fn insert(&self, key: u64, value: u64) {
        coherent::Cache::insert(self, key, value).expect("insert");
    }
}

impl WordCache for AckBeforeApply<u64> {
    fn get(&self, key: u64) -> Option<u64> {
        AckBeforeApply::get(self, key)
    }
    fn insert(&self, key: u64, value: u64) {
        self.write(key, Some(value));
    }
}

/// Naive: each value is two 32-bit halves, stored one after the other
/// (the writer yields between them, as a preempted writer would), and read
/// one after the other.
struct TornWord {
    halves: Vec<(AtomicU32, AtomicU32)>,
}

impl TornWord {
    fn new() -> Self {
        Self {
            halves: (0..KEYS)
                .map(|_| (AtomicU32::new(0), AtomicU32::new(0)))
                .collect(),
        }
    }
}

impl WordCache for TornWord {
    fn get(&self, key: u64) -> Option<u64> {
        let (lo, hi) = &self.halves[key as usize];
        let lo = u64::from(lo.load(Ordering::SeqCst));
        Some((u64::from(hi.load(Ordering::SeqCst)) << 32) | lo)
    }
    fn insert(&self, key: u64, value: u64) {
        let (lo, hi) = &self.halves[key as usize];
        lo.store(value as u32, Ordering::SeqCst);
        std::thread::yield_now();
        hi.store((value >> 32) as u32, Ordering::SeqCst);
    }
}

/// What one run saw.
#[derive(Debug, Default)]
struct Seen {
    /// Reads, and reads that saw a value written during the run.
    reads: u64,
    changed: u64,
    /// The first few anomalies found, and how many in all.
    anomalies: Vec<String>,
    count: u64,
}

impl Seen {
    fn anomaly(&mut self, what: String) {
        self.count += 1;
        if self.anomalies.len() < 5 {
            self.anomalies.push(what);
        }
    }
}

/// Runs one writer and one reader over `cache` (prefilled with `word(0)`)
/// and checks every read.
fn run<C: WordCache>(cache: Arc<C>) -> Seen {
    for k in 0..KEYS {
        cache.insert(k, word(0));
    }
    // The writes acknowledged so far, per key: the `i` of the last one.
    let acked: Arc<Vec<AtomicU64>> = Arc::new((0..KEYS).map(|_| AtomicU64::new(0)).collect());
    // Only the prefill may still be on its way in a cache that acknowledges
    // early: the reader starts checking once every key shows it.
    for k in 0..KEYS {
        coherent_tests::wait_until(|| cache.get(k) == Some(word(0)));
    }
    let done = Arc::new(AtomicBool::new(false));
    // Passes the reader has made over the keys: every `PACE` writes the
    // writer waits for one more, so that the two really interleave even
    // when the scheduler would rather run one and then the other.
    let passes = Arc::new(AtomicU64::new(0));
    let writer = {
        let (cache, acked, done, passes) =
            (cache.clone(), acked.clone(), done.clone(), passes.clone());
        std::thread::spawn(move || {
            for i in 1..=writes() {
                if i % PACE == 0 {
                    let now = passes.load(Ordering::Acquire);
                    coherent_tests::wait_until(|| passes.load(Ordering::Acquire) > now);
                }
                let k = i % KEYS;
                cache.insert(k, word(i));
                // Release: a reader that sees `i` here started its read
                // after the write was answered.
                acked[k as usize].store(i, Ordering::Release);
            }
            done.store(true, Ordering::Release);
        })
    };
    let mut seen = Seen::default();
    let mut last = [0u64; KEYS as usize];
    while !done.load(Ordering::Acquire) {
        for k in 0..KEYS {
            let floor = acked[k as usize].load(Ordering::Acquire);
            seen.reads += 1;
            let Some(v) = cache.get(k) else {
                seen.anomaly(format!("key {k}: missing"));
                continue;
            };
            let (hi, lo) = (v >> 32, v & 0xFFFF_FFFF);
            if hi != lo || (lo != 0 && lo % KEYS != k) {
                seen.anomaly(format!("key {k}: {v:#x} was never written (torn)"));
                continue;
            }
            if lo < floor {
                seen.anomaly(format!(
                    "key {k}: read write {lo} after write {floor} was answered (stale)"
                ));
            }
            if lo < last[k as usize] {
                seen.anomaly(format!(
                    "key {k}: read write {lo} after reading write {} (went back)",
                    last[k as usize]
                ));
            }
            if lo > 0 {
                seen.changed += 1;
            }
            last[k as usize] = last[k as usize].max(lo);
        }
        passes.fetch_add(1, Ordering::Release);
    }
    writer.join().expect("writer");
    seen
}

#[test]
fn word_values_replaced_in_place_are_whole_current_and_never_go_back() {
    let _turn = serial();
    let cache = Arc::new(
        coherent::Cache::<u64, u64>::builder()
            .shards(2)
            .build()
            .unwrap(),
    );
    let seen = run(cache.clone());
    assert!(
        seen.count == 0,
        "{} anomalies in {} reads, first: {:?}",
        seen.count,
        seen.reads,
        seen.anomalies
    );
    // The run checked something: the reader saw values being replaced
    // (the pacing gives it at least one pass per `PACE` writes).
    assert!(
        seen.changed >= writes() / PACE,
        "only {} of {} reads saw a replaced value",
        seen.changed,
        seen.reads
    );
    for k in 0..KEYS {
        let last = (1..=writes()).rev().find(|i| i % KEYS == k).unwrap();
        assert_eq!(cache.get(&k), Some(word(last)));
    }
}

#[test]
fn the_checker_catches_a_word_stored_in_two_halves() {
    let _turn = serial();
    // A race: allow a few runs before calling the checker blind.
    let caught = (0..5).find_map(|_| {
        let seen = run(Arc::new(TornWord::new()));
        seen.anomalies.into_iter().find(|a| a.contains("torn"))
    });
    assert!(caught.is_some(), "the checker never caught a torn word");
}

#[test]
fn the_checker_catches_a_write_answered_before_it_is_applied() {
    let _turn = serial();
    let caught = (0..5).find_map(|_| {
        let seen = run(Arc::new(AckBeforeApply::<u64>::default()));
        seen.anomalies.into_iter().find(|a| a.contains("stale"))
    });
    assert!(
        caught.is_some(),
        "the checker never caught an answer given before the write"
    );
}
