//! A history checker for transactions, `get` and `get_many` (G1, G2).
//!
//! A run records every operation with its invocation and response on one
//! logical clock (a shared counter: if `a.response < b.invocation`, `a`
//! returned before `b` was called). One writer thread commits transactions
//! one after another, so their order is known: transaction `p` (from 1) is
//! the `p`-th commit, and every value it writes is `p`, so a read's result
//! names the transaction that wrote it.
//!
//! The checker then asks, for every read, at which points `p` of the commit
//! order ("after transactions `1..=p` and none later") its whole result
//! could have been read:
//! - every key's result must equal that key's state after `1..=p` (a read
//!   that saw part of a transaction has no such `p`: **no partial
//!   transaction**, for `get_many` pairs and within one `get_many`);
//! - `p` must lie in the read's real-time window: at least every
//!   transaction that returned before the read was called, at most every
//!   one called before the read returned (**linearizable**: no stale read,
//!   no read from the future);
//! - a read called after another read returned cannot see an earlier point
//!   than the least that one could have seen (**G2's first promise**: once
//!   a reader saw `T`'s write to `a`, a later read of `b` sees `T` too).
//!
//! It is itself tested against a cache that applies a transaction one key
//! at a time, which it must reject.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// Keys the workload uses.
pub const KEYS: u64 = 8;

/// Even keys carry this tag (so `invalidate_tag` removes all of them).
pub const EVEN: &str = "even";

/// One operation of a transaction, as the workload issues it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TxnStep {
    /// Set the key to the transaction's number (tagged [`EVEN`] if even).
    Set(u64),
    /// Remove the key.
    Remove(u64),
    /// Remove every even key (by tag).
    RemoveEven,
}

/// The cache operations a history is made of.
pub trait TxnCache: Send + Sync + 'static {
    /// Name for messages.
    fn name(&self) -> &'static str;
    /// Commits `steps` as transaction number `value`.
    fn commit(&self, value: u64, steps: &[TxnStep]);
    /// A read.
    fn get(&self, key: u64) -> Option<u64>;
    /// A multi-key read.
    fn get_many(&self, keys: &[u64]) -> Vec<Option<u64>>;
    /// A plain write of a key outside the checked ones (`>= KEYS`), from
    /// a noise writer: it contends for the shards the transactions use.
    fn noise(&self, key: u64, value: u64);
}

impl TxnCache for coherent::Cache<u64, u64> {
    fn name(&self) -> &'static str {
        "coherent"
    }
    fn commit(&self, value: u64, steps: &[TxnStep]) {
        let mut t = self.transaction();
        for step in steps {
            t = match *step {
                TxnStep::Set(k) if k % 2 == 0 => t.insert_tagged(k, value, [EVEN]),
                TxnStep::Set(k) => t.insert(k, value),
                TxnStep::Remove(k) => t.invalidate(k),
                TxnStep::RemoveEven => t.invalidate_tag(EVEN),
            };
        }
        t.commit().expect("commit");
    }
    fn get(&self, key: u64) -> Option<u64> {
        coherent::Cache::get(self, &key)
    }
    fn get_many(&self, keys: &[u64]) -> Vec<Option<u64>> {
        coherent::Cache::get_many(self, keys)
    }
    fn noise(&self, key: u64, value: u64) {
        match value % 3 {
            0 => self.insert(key, value),
            1 => self.update(key, |v| Some(v.map_or(0, |n| n + 1))).map(drop),
            _ => self.invalidate(&key),
        }
        .expect("noise write");
    }
}

/// The broken cache the checker must reject: a transaction applied as
/// separate writes, one key at a time, and `get_many` as separate `get`s.
#[derive(Debug, Clone)]
pub struct OneKeyAtATime(pub coherent::Cache<u64, u64>);

impl TxnCache for OneKeyAtATime {
    fn name(&self) -> &'static str {
        "one key at a time"
    }
    fn commit(&self, value: u64, steps: &[TxnStep]) {
        for step in steps {
            match *step {
                TxnStep::Set(k) if k % 2 == 0 => self.0.insert_tagged(k, value, [EVEN]),
                TxnStep::Set(k) => self.0.insert(k, value),
                TxnStep::Remove(k) => self.0.invalidate(&k),
                TxnStep::RemoveEven => self.0.invalidate_tag(EVEN),
            }
            .expect("write");
        }
    }
    fn get(&self, key: u64) -> Option<u64> {
        self.0.get(&key)
    }
    fn get_many(&self, keys: &[u64]) -> Vec<Option<u64>> {
        keys.iter().map(|k| self.0.get(k)).collect()
    }
    fn noise(&self, key: u64, value: u64) {
        self.0.noise(key, value);
    }
}

/// A committed transaction.
#[derive(Debug, Clone)]
pub struct TxnRecord {
    /// Clock at the call.
    pub invoked: u64,
    /// Clock at the return.
    pub returned: u64,
    /// Its effect: each key it touched and the value it left (`None`:
    /// removed).
    pub writes: Vec<(u64, Option<u64>)>,
}

/// A read (`get` is a read of one key).
#[derive(Debug, Clone)]
pub struct ReadRecord {
    /// The reading thread.
    pub thread: usize,
    /// Clock at the call.
    pub invoked: u64,
    /// Clock at the return.
    pub returned: u64,
    /// Keys read and what each returned.
    pub results: Vec<(u64, Option<u64>)>,
    /// Whether it was one `get_many` (else one `get`).
    pub many: bool,
}

/// A recorded run.
#[derive(Debug, Default, Clone)]
pub struct History {
    /// Transactions in commit order (transaction `p` is `txns[p - 1]`).
    pub txns: Vec<TxnRecord>,
    /// Every read.
    pub reads: Vec<ReadRecord>,
}

/// A small deterministic generator (the workload must not depend on a
/// crate the checker is meant to check around).
pub struct Rng(pub u64);

impl Rng {
    /// The next number.
    pub fn next_u64(&mut self) -> u64 {
        // xorshift64*
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    /// A number in `0..n`.
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }
}

/// The steps of transaction `p`: 1 key, 2 keys, all keys, removals and a
/// tag invalidation, in a mix drawn from `rng`.
fn steps(rng: &mut Rng) -> Vec<TxnStep> {
    match rng.below(10) {
        0 => (0..KEYS).map(TxnStep::Set).collect(),
        1 => vec![TxnStep::RemoveEven, TxnStep::Set(rng.below(KEYS))],
        2 => vec![TxnStep::Set(rng.below(KEYS)), TxnStep::RemoveEven],
        3 => vec![
            TxnStep::Remove(rng.below(KEYS)),
            TxnStep::Set(rng.below(KEYS)),
        ],
        4 => vec![TxnStep::Set(rng.below(KEYS))],
        _ => {
            let a = rng.below(KEYS);
            let b = (a + 1 + rng.below(KEYS - 1)) % KEYS;
            vec![TxnStep::Set(a), TxnStep::Set(b)]
        }
    }
}

/// The net effect of `steps` as transaction `value`: each key it touches
/// and the value it leaves (every even key is tagged, so the tag
/// invalidation removes exactly the even keys).
fn effect(value: u64, steps: &[TxnStep]) -> Vec<(u64, Option<u64>)> {
    let mut out: Vec<(u64, Option<u64>)> = Vec::new();
    let mut set = |k: u64, v: Option<u64>| match out.iter_mut().find(|(key, _)| *key == k) {
        Some(slot) => slot.1 = v,
        None => out.push((k, v)),
    };
    for step in steps {
        match *step {
            TxnStep::Set(k) => set(k, Some(value)),
            TxnStep::Remove(k) => set(k, None),
            TxnStep::RemoveEven => {
                for k in (0..KEYS).step_by(2) {
                    set(k, None);
                }
            }
        }
    }
    out
}

/// How a run is scheduled beyond its workload: extra threads, and pauses
/// drawn from the run's seed.
#[derive(Debug, Clone, Copy, Default)]
pub struct Schedule {
    /// Threads writing keys outside the checked ones while the run goes,
    /// contending for the shards' tokens (so that a transaction's parts
    /// are often queued and applied by another thread).
    pub noise_writers: usize,
    /// Out of 1,024, how often a thread pauses before an operation: a
    /// yield of its time slice, or a spin of up to 4,096 iterations (half
    /// each). Drawn from each thread's generator, so a seed replays the
    /// same pauses at the same points of the same workload.
    pub jitter: u64,
}

/// A pause before an operation, as `schedule` and `rng` decide.
fn jitter(rng: &mut Rng, schedule: &Schedule) {
    if schedule.jitter == 0 || rng.below(1024) >= schedule.jitter {
        return;
    }
    if rng.below(2) == 0 {
        std::thread::yield_now();
    } else {
        for _ in 0..rng.below(4096) {
            std::hint::spin_loop();
        }
    }
}

/// Runs `txns` transactions on one thread while `readers` threads read,
/// and returns the history.
pub fn record<C: TxnCache>(cache: Arc<C>, txns: u64, readers: usize, seed: u64) -> History {
    record_with(cache, txns, readers, Schedule::default(), seed)
}

/// [`record`], with the threads and pauses of `schedule`.
pub fn record_with<C: TxnCache>(
    cache: Arc<C>,
    txns: u64,
    readers: usize,
    schedule: Schedule,
    seed: u64,
) -> History {
    let clock = Arc::new(AtomicU64::new(0));
    let tick = |c: &AtomicU64| c.fetch_add(1, Ordering::SeqCst);
    let done = Arc::new(AtomicBool::new(false));
    let reads = Arc::new(Mutex::new(Vec::new()));
    let threads: Vec<_> = (0..readers)
        .map(|thread| {
            let (cache, clock, done, reads) =
                (cache.clone(), clock.clone(), done.clone(), reads.clone());
            std::thread::spawn(move || {
                let mut rng = Rng(seed ^ (0x9E37_79B9 * (thread as u64 + 1)));
                let mut mine = Vec::new();
                while !done.load(Ordering::Relaxed) {
                    jitter(&mut rng, &schedule);
                    let many = rng.below(2) == 0;
                    let keys: Vec<u64> = if many {
                        (0..KEYS).filter(|_| rng.below(2) == 0).collect()
                    } else {
                        vec![rng.below(KEYS)]
                    };
                    let invoked = tick(&clock);
                    let values = if many {
                        cache.get_many(&keys)
                    } else {
                        vec![cache.get(keys[0])]
                    };
                    let returned = tick(&clock);
                    mine.push(ReadRecord {
                        thread,
                        invoked,
                        returned,
                        results: keys.into_iter().zip(values).collect(),
                        many,
                    });
                }
                reads.lock().expect("reads").extend(mine);
            })
        })
        .collect();
    let noise: Vec<_> = (0..schedule.noise_writers)
        .map(|w| {
            let (cache, done) = (cache.clone(), done.clone());
            std::thread::spawn(move || {
                let mut rng = Rng(seed ^ (0x85EB_CA6B * (w as u64 + 1)));
                let mut n = 0;
                while !done.load(Ordering::Relaxed) {
                    jitter(&mut rng, &schedule);
                    cache.noise(KEYS + rng.below(64), n);
                    n += 1;
                }
            })
        })
        .collect();
    let mut rng = Rng(seed);
    let mut history = History::default();
    for value in 1..=txns {
        jitter(&mut rng, &schedule);
        let steps = steps(&mut rng);
        let invoked = tick(&clock);
        cache.commit(value, &steps);
        let returned = tick(&clock);
        history.txns.push(TxnRecord {
            invoked,
            returned,
            writes: effect(value, &steps),
        });
    }
    done.store(true, Ordering::Relaxed);
    for t in threads {
        t.join().expect("reader");
    }
    for t in noise {
        t.join().expect("noise writer");
    }
    history.reads = std::mem::take(&mut *reads.lock().expect("reads"));
    history
}

/// A violation the checker found.
#[derive(Debug, Clone)]
pub struct Violation {
    /// The read that cannot be explained.
    pub read: ReadRecord,
    /// Why.
    pub why: String,
}

/// Closed intervals `[a, b]` of commit points.
type Points = Vec<(u64, u64)>;

fn intersect(a: &Points, b: &Points) -> Points {
    let mut out = Vec::new();
    let (mut i, mut j) = (0, 0);
    while i < a.len() && j < b.len() {
        let lo = a[i].0.max(b[j].0);
        let hi = a[i].1.min(b[j].1);
        if lo <= hi {
            out.push((lo, hi));
        }
        if a[i].1 < b[j].1 {
            i += 1;
        } else {
            j += 1;
        }
    }
    out
}

/// Checks `history`; returns every read it cannot explain.
pub fn check(history: &History) -> Vec<Violation> {
    let n = history.txns.len() as u64;
    // For each key and value, the points where the key holds the value
    // (sorted intervals): it holds what transaction t wrote from t until
    // the next transaction that writes it.
    let mut timeline: Vec<Vec<(u64, Option<u64>)>> = vec![vec![(0, None)]; KEYS as usize];
    for (i, t) in history.txns.iter().enumerate() {
        for &(k, v) in &t.writes {
            timeline[k as usize].push((i as u64 + 1, v));
        }
    }
    let mut holds: Vec<std::collections::HashMap<Option<u64>, Points>> = Vec::new();
    for line in &timeline {
        let mut by_value: std::collections::HashMap<Option<u64>, Points> = Default::default();
        for (j, &(from, value)) in line.iter().enumerate() {
            let to = line.get(j + 1).map_or(n, |&(next, _)| next - 1);
            if from > to {
                continue; // overwritten within the same transaction point
            }
            let points = by_value.entry(value).or_default();
            match points.last_mut() {
                Some(last) if last.1 + 1 == from => last.1 = to,
                _ => points.push((from, to)),
            }
        }
        holds.push(by_value);
    }
    // The intervals of `k` holding `v` that meet `[lo, hi]`.
    let holds_in = |k: u64, v: Option<u64>, lo: u64, hi: u64| -> Points {
        let Some(all) = holds[k as usize].get(&v) else {
            return Vec::new();
        };
        let start = all.partition_point(|&(_, to)| to < lo);
        all[start..]
            .iter()
            .take_while(|&&(from, _)| from <= hi)
            .copied()
            .collect()
    };
    // Real-time windows, by binary search over the commit clocks (commits
    // are sequential, so both sequences are increasing).
    let returned: Vec<u64> = history.txns.iter().map(|t| t.returned).collect();
    let invoked: Vec<u64> = history.txns.iter().map(|t| t.invoked).collect();
    let mut reads: Vec<&ReadRecord> = history.reads.iter().collect();
    reads.sort_by_key(|r| r.invoked);
    let mut feasible: Vec<Points> = Vec::with_capacity(reads.len());
    let mut violations = Vec::new();
    for r in &reads {
        let lo = returned.partition_point(|&t| t < r.invoked) as u64;
        let hi = invoked.partition_point(|&t| t < r.returned) as u64;
        let mut points: Points = vec![(lo, hi)];
        for &(k, v) in &r.results {
            points = intersect(&points, &holds_in(k, v, lo, hi));
        }
        if points.is_empty() {
            violations.push(Violation {
                read: (*r).clone(),
                why: format!(
                    "no point in the commit order explains it (real-time window {lo}..={hi}): a partial transaction, or a stale or future value"
                ),
            });
        }
        feasible.push(points);
    }
    // Reads that returned before another was called bound it from below.
    let mut by_return: Vec<(u64, u64)> = reads
        .iter()
        .zip(&feasible)
        .filter_map(|(r, p)| p.first().map(|&(least, _)| (r.returned, least)))
        .collect();
    by_return.sort_unstable();
    let mut floor_upto = Vec::with_capacity(by_return.len());
    let mut m = 0;
    for &(_, least) in &by_return {
        m = m.max(least);
        floor_upto.push(m);
    }
    for (r, points) in reads.iter().zip(&feasible) {
        let before = by_return.partition_point(|&(ret, _)| ret < r.invoked);
        if before == 0 || points.is_empty() {
            continue;
        }
        let floor = floor_upto[before - 1];
        if points.last().is_some_and(|&(_, hi)| hi < floor) {
            violations.push(Violation {
                read: (*r).clone(),
                why: format!(
                    "an earlier read (returned before this one was called) already saw transaction {floor}; this one can only be explained before it"
                ),
            });
        }
    }
    violations
}

#[cfg(test)]
mod tests {
    use super::*;

    fn txn(invoked: u64, returned: u64, writes: &[(u64, Option<u64>)]) -> TxnRecord {
        TxnRecord {
            invoked,
            returned,
            writes: writes.to_vec(),
        }
    }

    fn read(invoked: u64, returned: u64, results: &[(u64, Option<u64>)]) -> ReadRecord {
        ReadRecord {
            thread: 0,
            invoked,
            returned,
            results: results.to_vec(),
            many: results.len() > 1,
        }
    }

    #[test]
    fn a_consistent_history_passes() {
        let h = History {
            txns: vec![txn(0, 3, &[(0, Some(1)), (1, Some(1))])],
            reads: vec![
                read(1, 2, &[(0, None), (1, None)]),       // before
                read(4, 5, &[(0, Some(1)), (1, Some(1))]), // after
                read(2, 6, &[(1, Some(1))]),               // overlapping
            ],
        };
        assert!(check(&h).is_empty(), "{:?}", check(&h));
    }

    #[test]
    fn a_partial_transaction_is_rejected() {
        let h = History {
            txns: vec![txn(0, 3, &[(0, Some(1)), (1, Some(1))])],
            reads: vec![read(1, 2, &[(0, Some(1)), (1, None)])],
        };
        assert_eq!(check(&h).len(), 1);
    }

    #[test]
    fn a_stale_read_is_rejected() {
        let h = History {
            txns: vec![txn(0, 1, &[(0, Some(1))])],
            reads: vec![read(2, 3, &[(0, None)])],
        };
        assert_eq!(check(&h).len(), 1);
    }

    #[test]
    fn a_read_that_goes_back_in_time_is_rejected() {
        // The commit overlaps both reads; the first sees it, the second,
        // called after the first returned, does not.
        let h = History {
            txns: vec![txn(0, 10, &[(0, Some(1)), (1, Some(1))])],
            reads: vec![read(1, 2, &[(0, Some(1))]), read(3, 4, &[(1, None)])],
        };
        assert_eq!(check(&h).len(), 1);
    }
}
