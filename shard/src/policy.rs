//! Which entries a bounded shard evicts: S3-FIFO, with the small queue's
//! share tuned by hill climbing. Chosen by measurement (`bench/examples/
//! policy_sim.rs`, numbers in docs/design.md, "Eviction").
//!
//! S3-FIFO (Yang et al., SOSP '23) keeps a small FIFO for new keys, a main
//! FIFO, and a ghost FIFO of the hashes of keys recently evicted from the
//! small one. A new key enters the small queue, or the main one if its
//! hash is in the ghost. Eviction takes the small queue's oldest entry
//! while that queue is over its share: read twice or more since it came
//! in, it moves to the main queue; otherwise it is evicted and its hash
//! goes to the ghost. Otherwise it takes the main queue's oldest: read
//! since it was last looked at, it goes back to the end with one read
//! fewer counted; otherwise it is evicted.
//!
//! Readers' only part is `Entry::freq`, a 2-bit read count they raise with
//! a relaxed store (skipped once it is at 3): no read buffer, no shared
//! counter, no lock. Everything else here is the owner's.
//!
//! The small queue's share starts at 10% and is moved by a hill climber
//! (the idea of Caffeine's adaptive window): every sample of twice the
//! shard's capacity in accesses, and at least [`MIN_SAMPLE`] (hits and
//! misses, from the shard's statistics), the share moves by a step in the
//! direction that last raised the hit ratio, and reverses when the ratio
//! fell; the step shrinks by 2% each time. Recency-heavy traces (OLTP) want
//! a share near 10-20%, frequency-heavy ones (P3, Zipf) a few percent.
//!
//! The ghost remembers as many hashes as the shard holds entries.

use crate::sync::Ordering;
use crate::table::{Entry, EntryRef, Extra};
use std::collections::VecDeque;

type HashMap<K, V> = std::collections::HashMap<K, V, foldhash::fast::RandomState>;

const SMALL: u32 = 1;
const MAIN: u32 = 2;
/// `Entry::meta` holds the queue in its top 2 bits and the position in the
/// low 30 (positions wrap; a queue holds far fewer than 2^30 entries).
const POS_BITS: u32 = 30;
const POS_MASK: u32 = (1 << POS_BITS) - 1;

fn meta_of(queue: u32, pos: u32) -> u32 {
    (queue << POS_BITS) | (pos & POS_MASK)
}

/// One FIFO of entries with their weights. An entry knows its position
/// (`Entry::meta`), so a replaced entry takes over its predecessor's place
/// and a removed one leaves a hole (null) that eviction skips.
///
/// Without a weigher every entry weighs 1 and `weights` stays `None`: a
/// queued entry then costs 8 bytes, not 16 (a pointer and a `u32` pad to
/// 16). For `u64` keys and values that took a bounded cache from 84.2 to
/// 73.9 bytes per entry at 100k entries (`cargo run --release -p
/// coherent-bench --bin memory`).
struct Ring<K, V> {
    items: VecDeque<*mut Entry<K, V>>,
    /// `items[i]`'s weight (0 for a hole), when entries are weighed.
    weights: Option<VecDeque<u32>>,
    /// The logical position of `items[0]`.
    head: u32,
    /// Total weight of the live entries in the ring.
    weight: u64,
}

impl<K, V> Ring<K, V> {
    fn new(weighed: bool) -> Self {
        Self {
            items: VecDeque::new(),
            weights: weighed.then(VecDeque::new),
            head: 0,
            weight: 0,
        }
    }

    fn push(&mut self, e: EntryRef<'_, K, V>, queue: u32, weight: u32) {
        let pos = self.head.wrapping_add(self.items.len() as u32);
        self.items.push_back(e.as_ptr());
        match &mut self.weights {
            Some(w) => w.push_back(weight),
            None => debug_assert_eq!(weight, 1, "unweighed entries weigh 1"),
        }
        self.weight += u64::from(weight);
        extra(e).meta.set(meta_of(queue, pos));
    }

    fn index(&self, meta: u32) -> usize {
        ((meta & POS_MASK).wrapping_sub(self.head) & POS_MASK) as usize
    }

    /// Puts `e` (null: a hole, weight 0) with `weight` at index `i`, in
    /// place of a live entry.
    fn set(&mut self, i: usize, e: *mut Entry<K, V>, weight: u32) {
        debug_assert!(!self.items[i].is_null(), "only a live entry is replaced");
        self.items[i] = e;
        let was = match &mut self.weights {
            Some(w) => std::mem::replace(&mut w[i], weight),
            None => {
                debug_assert_eq!(weight, u32::from(!e.is_null()), "unweighed entries weigh 1");
                1
            }
        };
        self.weight = self.weight - u64::from(was) + u64::from(weight);
    }

    /// Takes the oldest item (entry or hole) and its weight out.
    fn pop_front(&mut self) -> Option<(*mut Entry<K, V>, u32)> {
        let e = self.items.pop_front()?;
        let w = match &mut self.weights {
            Some(w) => w.pop_front().unwrap_or(0),
            None => u32::from(!e.is_null()),
        };
        self.head = self.head.wrapping_add(1) & POS_MASK;
        Some((e, w))
    }

    /// The oldest live entry and its weight, taken out of the ring.
    fn pop(&mut self) -> Option<(*mut Entry<K, V>, u32)> {
        while let Some((e, w)) = self.pop_front() {
            if !e.is_null() {
                self.weight -= u64::from(w);
                return Some((e, w));
            }
        }
        None
    }

    /// Drops the holes at the front (so `items` does not grow with them).
    fn trim(&mut self) {
        while self.items.front().is_some_and(|e| e.is_null()) {
            self.pop_front();
        }
    }
}

/// The extra part of an entry of a bounded shard (all of them are
/// extended: `Owner::new_entry`).
fn extra<K, V>(e: EntryRef<'_, K, V>) -> &Extra {
    e.extra().expect("a bounded shard's entries are extended")
}

/// The owner's eviction state for one bounded shard.
pub(crate) struct Policy<K, V> {
    /// The shard's share of the cache's weight budget.
    budget: u64,
    small: Ring<K, V>,
    main: Ring<K, V>,
    /// Hashes of keys evicted from the small queue, oldest first, and how
    /// many times each is in the queue.
    ghost: VecDeque<u64>,
    ghost_count: HashMap<u64, u32>,
    /// Live entries in both rings (the ghost's length follows it).
    entries: usize,
    climber: Climber,
}

// SAFETY: the raw entry pointers are the owner's references into its own
// table; the policy moves between threads with the owner (under the token)
// and is never shared. Entries are Send when K and V are.
unsafe impl<K: Send, V: Send> Send for Policy<K, V> {}

impl<K, V> Policy<K, V> {
    /// A policy for a shard with `budget`; `weighed`: whether entries
    /// have weights of their own (a weigher), else each weighs 1.
    pub(crate) fn new(budget: u64, weighed: bool) -> Self {
        Self {
            budget,
            small: Ring::new(weighed),
            main: Ring::new(weighed),
            ghost: VecDeque::new(),
            ghost_count: HashMap::default(),
            entries: 0,
            climber: Climber::new(budget),
        }
    }

    /// Total weight of the entries tracked.
    pub(crate) fn weight(&self) -> u64 {
        self.small.weight + self.main.weight
    }

    /// Whether the shard is over its budget.
    pub(crate) fn over(&self) -> bool {
        self.weight() > self.budget
    }

    /// A new entry in a plain slot.
    pub(crate) fn insert(&mut self, e: EntryRef<'_, K, V>, weight: u32) {
        self.entries += 1;
        if self.ghost_count.contains_key(&e.hash()) {
            self.main.push(e, MAIN, weight);
        } else {
            self.small.push(e, SMALL, weight);
        }
    }

    /// `new` replaces `old` in its slot: it takes `old`'s place and reads.
    pub(crate) fn replace(
        &mut self,
        old: EntryRef<'_, K, V>,
        new: EntryRef<'_, K, V>,
        weight: u32,
    ) {
        let (old, new_ref) = (extra(old), new);
        let meta = old.meta.get();
        let ring = match meta >> POS_BITS {
            SMALL => &mut self.small,
            MAIN => &mut self.main,
            _ => {
                // Not tracked (it was staged by a transaction): a new entry.
                self.insert(new_ref, weight);
                return;
            }
        };
        let i = ring.index(meta);
        ring.set(i, new_ref.as_ptr(), weight);
        let new = extra(new_ref);
        new.meta.set(meta);
        old.meta.set(0);
        // Relaxed: owner-side bookkeeping of a mark readers set relaxed.
        new.freq
            .store(old.freq.load(Ordering::Relaxed), Ordering::Relaxed);
    }

    /// `old` leaves its slot (removed, evicted, or staged by a transaction).
    pub(crate) fn remove(&mut self, old: EntryRef<'_, K, V>) {
        let old = extra(old);
        let meta = old.meta.get();
        let ring = match meta >> POS_BITS {
            SMALL => &mut self.small,
            MAIN => &mut self.main,
            _ => return,
        };
        let i = ring.index(meta);
        ring.set(i, std::ptr::null_mut(), 0);
        ring.trim();
        self.entries -= 1;
        old.meta.set(0);
    }

    /// The next entry to evict (its hash, and where it is), already out of
    /// the policy's queues; the caller unlinks it from the table. `None`
    /// when nothing is tracked.
    pub(crate) fn victim(&mut self) -> Option<(u64, *const Entry<K, V>)> {
        let small_budget = self.climber.small_share(self.budget);
        loop {
            let from_small = !self.small.items.is_empty()
                && (self.small.weight >= small_budget || self.main.items.is_empty());
            let ring = if from_small {
                &mut self.small
            } else {
                &mut self.main
            };
            let Some((p, weight)) = ring.pop() else {
                if self.small.items.is_empty() && self.main.items.is_empty() {
                    return None;
                }
                continue;
            };
            // SAFETY: tracked entries live in a plain slot of the owner's
            // table: the owner untracks an entry before it unlinks it; the
            // pointer came from `EntryRef::as_ptr`.
            let e = unsafe { EntryRef::from_queue(p) };
            let x = extra(e);
            // Relaxed: see `replace`.
            let f = x.freq.load(Ordering::Relaxed);
            if from_small {
                if f >= 2 {
                    x.freq.store(0, Ordering::Relaxed);
                    self.main.push(e, MAIN, weight);
                    continue;
                }
                self.add_ghost(e.hash());
            } else if f > 0 {
                x.freq.store(f - 1, Ordering::Relaxed);
                self.main.push(e, MAIN, weight);
                continue;
            }
            self.entries -= 1;
            x.meta.set(0);
            return Some((e.hash(), p.cast_const()));
        }
    }

    fn add_ghost(&mut self, hash: u64) {
        self.ghost.push_back(hash);
        *self.ghost_count.entry(hash).or_insert(0) += 1;
        // As many keys as the shard holds: 0.9x lost 0.05-0.1 points at
        // Zipf 0.9 over 1M keys with 100k cached (docs/design.md).
        let cap = self.entries.max(1);
        while self.ghost.len() > cap {
            let Some(old) = self.ghost.pop_front() else {
                break;
            };
            if let Some(n) = self.ghost_count.get_mut(&old) {
                *n -= 1;
                if *n == 0 {
                    self.ghost_count.remove(&old);
                }
            }
        }
    }

    /// Feeds the climber the shard's access counts (hits and misses so
    /// far); it may move the small queue's share.
    pub(crate) fn observe(&mut self, hits: u64, misses: u64) {
        self.climber.observe(hits, misses, self.budget);
    }

    /// Forgets every entry (the table is being dropped or cleared).
    pub(crate) fn clear(&mut self) {
        let weighed = self.small.weights.is_some();
        self.small = Ring::new(weighed);
        self.main = Ring::new(weighed);
        self.entries = 0;
    }
}

/// The fewest accesses the climber compares hit ratios over. A sample's
/// hit ratio is noisy (its standard error is about 0.5 / sqrt(n): 1.6
/// points at 1000, 0.9 at 3000), and a step of the share moves the ratio
/// by a fraction of a point, so on small shards 1000-access samples made
/// the climber wander: Zipf 1.0 with 1000 cached ranged from -0.08 to -0.92
/// points against quick_cache over four runs, and -0.44 to -0.45 with
/// 3000 (docs/benchmarks.md, "Hit ratio").
const MIN_SAMPLE: u64 = 3000;

/// Hill climbing on the small queue's share (see the module docs).
struct Climber {
    /// The share, as a fraction of the budget.
    share: f64,
    step: f64,
    dir: f64,
    last_rate: f64,
    /// Hits and misses at the start of the current sample.
    start: (u64, u64),
}

impl Climber {
    const MIN: f64 = 0.01;
    const MAX: f64 = 0.8;

    fn new(_budget: u64) -> Self {
        Self {
            share: 0.1,
            step: 0.02,
            dir: -1.0,
            last_rate: 0.0,
            start: (0, 0),
        }
    }

    fn small_share(&self, budget: u64) -> u64 {
        ((budget as f64) * self.share) as u64
    }

    fn observe(&mut self, hits: u64, misses: u64, budget: u64) {
        let (h, m) = (
            hits.saturating_sub(self.start.0),
            misses.saturating_sub(self.start.1),
        );
        let sample = (2 * budget).max(MIN_SAMPLE);
        if h + m < sample {
            return;
        }
        let rate = h as f64 / (h + m) as f64;
        if rate < self.last_rate {
            self.dir = -self.dir;
        }
        self.last_rate = rate;
        self.start = (hits, misses);
        self.share = (self.share + self.dir * self.step).clamp(Self::MIN, Self::MAX);
        self.step *= 0.98;
    }
}

const _: () = assert!(crate::table::FREQ_MAX >= 2, "promotion needs two reads");
