//! Randomized schedules, at a larger scale than loom allows: each run's
//! seed draws the cache's shape (shards, mailbox size), the threads
//! (readers, noise writers contending for the shards) and the pauses each
//! thread takes before its operations, and the history checker
//! (`coherent_tests::history`) judges every read of the run.
//!
//! Every seed is printed. To replay one:
//! `COHERENT_SEED=<seed> cargo test --release -p coherent-tests --test schedules`.
//! A replay runs the same workload with the same pauses at the same points;
//! the operating system still decides the rest of the interleaving, so a
//! failure found by a seed is likely, not certain, to come back (loom's
//! models are the exhaustive, exactly replayable part).

use coherent_tests::history::{check, record_with, OneKeyAtATime, Rng, Schedule, TxnCache};
use std::sync::Arc;

/// One randomized run's settings, all drawn from its seed.
#[derive(Debug, Clone, Copy)]
struct Run {
    seed: u64,
    shards: usize,
    mailbox: usize,
    readers: usize,
    schedule: Schedule,
}

impl Run {
    fn from_seed(seed: u64) -> Self {
        let mut rng = Rng(seed | 1);
        Run {
            seed,
            shards: 1 + rng.below(8) as usize,
            mailbox: 1 + rng.below(8) as usize,
            readers: 1 + rng.below(3) as usize,
            schedule: Schedule {
                noise_writers: rng.below(3) as usize,
                jitter: [0, 16, 128, 512][rng.below(4) as usize],
            },
        }
    }

    fn cache(&self) -> coherent::Cache<u64, u64> {
        coherent::Cache::builder()
            .shards(self.shards)
            .mailbox_capacity(self.mailbox)
            .build()
            .expect("a valid configuration")
    }

    /// Records and checks one history; `Err` says what was wrong.
    fn check<C: TxnCache>(&self, cache: C, txns: u64) -> Result<usize, String> {
        let history = record_with(
            Arc::new(cache),
            txns,
            self.readers,
            self.schedule,
            self.seed,
        );
        let violations = check(&history);
        match violations.first() {
            None => Ok(history.reads.len()),
            Some(first) => Err(format!(
                "{} of {} reads unexplained, first: {first:?}",
                violations.len(),
                history.reads.len()
            )),
        }
    }
}

/// The seeds of this run: `COHERENT_SEED` alone if set, else `n` fresh
/// ones from the clock (a different set on every run, each printed).
fn seeds(n: u64) -> Vec<u64> {
    if let Ok(seed) = std::env::var("COHERENT_SEED") {
        return vec![seed.trim().parse().expect("COHERENT_SEED is a u64")];
    }
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("the clock is after 1970")
        .as_nanos() as u64;
    let mut rng = Rng(nanos | 1);
    (0..n).map(|_| rng.next_u64() >> 16).collect()
}

fn transactions() -> u64 {
    if cfg!(debug_assertions) {
        coherent_tests::sized(300, 100)
    } else {
        coherent_tests::sized(10_000, 100)
    }
}

#[test]
fn randomized_schedules_give_only_linearizable_histories_with_whole_transactions() {
    for seed in seeds(coherent_tests::sized(24, 2)) {
        let run = Run::from_seed(seed);
        eprintln!("schedule run: {run:?}");
        match run.check(run.cache(), transactions()) {
            Ok(reads) => assert!(reads > 0, "seed {seed}: no read was recorded"),
            Err(why) => panic!(
                "seed {seed} ({run:?}): {why}\n\
                 replay: COHERENT_SEED={seed} cargo test --release -p coherent-tests --test schedules"
            ),
        }
    }
}

/// The harness must catch the naive cache (a transaction applied one key
/// at a time): under the same randomized schedules, some seed among a few
/// shows a partial transaction to the checker.
#[test]
fn randomized_schedules_catch_a_cache_that_applies_transactions_key_by_key() {
    let caught = seeds(8).into_iter().find_map(|seed| {
        let run = Run::from_seed(seed);
        run.check(OneKeyAtATime(run.cache()), transactions())
            .err()
            .map(|why| (seed, why))
    });
    let (seed, why) = caught.expect("no seed caught the key-by-key cache");
    eprintln!("caught the key-by-key cache with seed {seed}: {why}");
}
