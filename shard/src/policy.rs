//! Which entries a bounded shard evicts: S3-FIFO, with the small queue's
//! share tuned by hill climbing. Chosen by measurement (`bench/profiling/
//! policy_sim.rs`, numbers in docs/design.md, "Eviction and expiry").
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
use crate::table::{EntryRef, Extra, Slots, View};
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

/// One FIFO of entries with their weights, each entry named by its slot
/// in the owner's table. An entry knows its position (`Entry::meta`), so a
/// removed one leaves a hole ([`HOLE`]) that eviction skips, and a
/// replacement, which the owner publishes in the replaced entry's slot,
/// takes over its place without a write here.
///
/// Slots, not entry pointers: with pointers, replacing an entry wrote the ring at the key's position, a cache line far
/// from everything else an insert touches, and the token's release waited
/// for that store to land: about 8 ns per operation at 20% writes, most
/// of the gap between a bounded and an unbounded insert (docs/design.md,
/// "The bounded `get` and the bounded write"). A rebuild moves entries to
/// other slots; the owner then tells the policy where each went
/// ([`Policy::moved`]).
///
/// Without a weigher every entry weighs 1 and `weights` stays `None`.
struct Ring {
    items: VecDeque<usize>,
    /// `items[i]`'s weight (0 for a hole), when entries are weighed.
    weights: Option<VecDeque<u32>>,
    /// The logical position of `items[0]`.
    head: u32,
    /// Total weight of the live entries in the ring.
    weight: u64,
    /// Holes in `items`. A removal leaves one where it was, and only the
    /// front ones go at once (`trim`): in a shard that removes keys and
    /// writes them again without being over budget (nothing evicted,
    /// nothing popped), would grow the ring by one item per removal, for
    /// good: [`Ring::compact`] drops them once they are the majority.
    holes: usize,
}

/// A ring item that names no entry (a removed one's place).
const HOLE: usize = usize::MAX;

impl Ring {
    fn new(weighed: bool) -> Self {
        Self {
            items: VecDeque::new(),
            weights: weighed.then(VecDeque::new),
            head: 0,
            weight: 0,
            holes: 0,
        }
    }

    /// Queues the entry in `slot` at the back of the ring.
    fn push<K, V>(&mut self, slot: usize, e: EntryRef<'_, K, V>, queue: u32, weight: u32) {
        let pos = self.head.wrapping_add(self.items.len() as u32);
        self.items.push_back(slot);
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

    /// Sets the weight of the live entry at index `i` (a hole: 0).
    fn reweigh(&mut self, i: usize, weight: u32) {
        let was = match &mut self.weights {
            Some(w) => std::mem::replace(&mut w[i], weight),
            None => {
                debug_assert!(weight <= 1, "unweighed entries weigh 1");
                1
            }
        };
        self.weight = self.weight - u64::from(was) + u64::from(weight);
    }

    /// Takes the oldest item (entry or hole) and its weight out.
    fn pop_front(&mut self) -> Option<(usize, u32)> {
        let slot = self.items.pop_front()?;
        if slot == HOLE {
            self.holes -= 1;
        }
        let w = match &mut self.weights {
            Some(w) => w.pop_front().unwrap_or(0),
            None => u32::from(slot != HOLE),
        };
        self.head = self.head.wrapping_add(1) & POS_MASK;
        Some((slot, w))
    }

    /// The oldest live entry's slot and weight, taken out of the ring.
    fn pop(&mut self) -> Option<(usize, u32)> {
        while let Some((slot, w)) = self.pop_front() {
            if slot != HOLE {
                self.weight -= u64::from(w);
                return Some((slot, w));
            }
        }
        None
    }

    /// Drops the holes at the front (so `items` does not grow with them).
    fn trim(&mut self) {
        while self.items.front() == Some(&HOLE) {
            self.pop_front();
        }
    }

    /// Whether holes are over half the items (and a few): then
    /// [`Ring::compact`] costs at most two item moves per hole it drops,
    /// O(1) per removal amortized.
    fn sparse(&self) -> bool {
        self.holes > COMPACT_MIN && self.holes * 2 > self.items.len()
    }

    /// Drops every hole, keeping the live items in order, and tells each
    /// entry its new position (`queue`: this ring's, for `Entry::meta`).
    /// Positions are counted from `head` as before, so the first live
    /// item keeps the head's. `slots` is the owner's table, where every
    /// live item's entry is (see [`Policy::victim`]).
    fn compact<K, V>(&mut self, queue: u32, slots: &Slots<K, V>) {
        let live = self.items.len() - self.holes;
        let mut items = VecDeque::with_capacity(live);
        let mut weights = self.weights.as_ref().map(|_| VecDeque::with_capacity(live));
        let mut pos = self.head;
        for (i, &slot) in self.items.iter().enumerate() {
            if slot == HOLE {
                continue;
            }
            match slots.view(slot) {
                View::Live(e) => extra(e).meta.set(meta_of(queue, pos)),
                // Never (the invariant above); kept as it is, as `victim`
                // would find it, rather than trusted or lost.
                _ => debug_assert!(false, "a ring item names a live entry's slot"),
            }
            items.push_back(slot);
            if let (Some(w), Some(old)) = (weights.as_mut(), self.weights.as_ref()) {
                w.push_back(old[i]);
            }
            pos = pos.wrapping_add(1) & POS_MASK;
        }
        self.items = items;
        // `None` exactly when the ring weighs nothing (`weights` was).
        self.weights = weights;
        self.holes = 0;
    }
}

/// Holes a ring keeps at least before it compacts (so that a small ring
/// does not compact on every other removal).
const COMPACT_MIN: usize = 64;

/// The extra part of an entry of a bounded shard (all of them are
/// extended: `Owner::new_entry`).
fn extra<K, V>(e: EntryRef<'_, K, V>) -> &Extra {
    e.extra().expect("a bounded shard's entries are extended")
}

/// The owner's eviction state for one bounded shard.
pub(crate) struct Policy {
    /// The shard's share of the cache's weight budget.
    budget: u64,
    small: Ring,
    main: Ring,
    /// Hashes of keys evicted from the small queue, oldest first, and how
    /// many times each is in the queue.
    ghost: VecDeque<u64>,
    ghost_count: HashMap<u64, u32>,
    /// Live entries in both rings (the ghost's length follows it).
    entries: usize,
    climber: Climber,
    /// Whether entries have weights of their own (a weigher).
    weighed: bool,
}

impl Policy {
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
            weighed,
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

    /// The ring an entry's `meta` names, if it is tracked.
    fn ring_of(&mut self, meta: u32) -> Option<&mut Ring> {
        match meta >> POS_BITS {
            SMALL => Some(&mut self.small),
            MAIN => Some(&mut self.main),
            _ => None,
        }
    }

    /// A new entry `e`, just published in plain slot `slot`.
    pub(crate) fn insert<K, V>(&mut self, slot: usize, e: EntryRef<'_, K, V>, weight: u32) {
        self.entries += 1;
        if self.ghost_count.contains_key(&e.hash()) {
            self.main.push(slot, e, MAIN, weight);
        } else {
            self.small.push(slot, e, SMALL, weight);
        }
    }

    /// `new` replaces `old` in slot `slot`: it takes `old`'s place in its
    /// queue (the ring names the slot, which does not change) and its
    /// read count.
    pub(crate) fn replace<K, V>(
        &mut self,
        slot: usize,
        old: EntryRef<'_, K, V>,
        new: EntryRef<'_, K, V>,
        weight: u32,
    ) {
        let Some(meta) = self.reweigh(slot, old, weight) else {
            // Not tracked (it was staged by a transaction): a new entry.
            self.insert(slot, new, weight);
            return;
        };
        let (old_x, new_x) = (extra(old), extra(new));
        new_x.meta.set(meta);
        old_x.meta.set(0);
        // Relaxed: owner-side bookkeeping of a mark readers set relaxed.
        new_x
            .freq
            .store(old_x.freq.load(Ordering::Relaxed), Ordering::Relaxed);
    }

    /// The entry in `slot` had its value replaced in place
    /// (`value.rs`): the same entry, so its place and its read marks stay;
    /// only its weight may change. One the policy does not track (it was
    /// staged by a transaction) is tracked from now on, as a replacement by
    /// a new entry would be.
    ///
    /// Inline for its common case, a tracked entry without weights, where
    /// nothing changes (the call was 11 instructions of a bounded insert:
    /// callgrind, docs/design.md).
    #[inline(always)]
    pub(crate) fn rewritten<K, V>(&mut self, slot: usize, e: EntryRef<'_, K, V>, weight: u32) {
        if !self.weighed && matches!(extra(e).meta.get() >> POS_BITS, SMALL | MAIN) {
            return;
        }
        self.rewritten_slow(slot, e, weight);
    }

    /// [`rewritten`](Self::rewritten) with weights, or for an untracked
    /// entry.
    #[inline(never)]
    fn rewritten_slow<K, V>(&mut self, slot: usize, e: EntryRef<'_, K, V>, weight: u32) {
        if self.reweigh(slot, e, weight).is_none() {
            self.insert(slot, e, weight);
        }
    }

    /// Gives the tracked entry `e` of slot `slot` the weight `weight` and
    /// returns its place (`Extra::meta`); `None` if it is not tracked.
    fn reweigh<K, V>(&mut self, slot: usize, e: EntryRef<'_, K, V>, weight: u32) -> Option<u32> {
        let meta = extra(e).meta.get();
        let ring = self.ring_of(meta)?;
        let i = ring.index(meta);
        debug_assert_eq!(
            ring.items[i], slot,
            "a tracked entry's ring item names its slot"
        );
        if ring.weights.is_some() {
            ring.reweigh(i, weight);
        }
        Some(meta)
    }

    /// `old` leaves its slot (removed, or staged by a transaction); it is
    /// still in `slots`, the owner's table, with every other tracked entry.
    pub(crate) fn remove<K, V>(&mut self, old: EntryRef<'_, K, V>, slots: &Slots<K, V>) {
        let old = extra(old);
        let meta = old.meta.get();
        let queue = meta >> POS_BITS;
        let Some(ring) = self.ring_of(meta) else {
            return;
        };
        let i = ring.index(meta);
        ring.items[i] = HOLE;
        ring.holes += 1;
        ring.reweigh(i, 0);
        ring.trim();
        if ring.sparse() {
            ring.compact(queue, slots);
        }
        self.entries -= 1;
        old.meta.set(0);
    }

    /// A rebuild moved the tracked entry `e` to slot `slot`.
    pub(crate) fn moved<K, V>(&mut self, slot: usize, e: EntryRef<'_, K, V>) {
        let meta = extra(e).meta.get();
        if let Some(ring) = self.ring_of(meta) {
            let i = ring.index(meta);
            ring.items[i] = slot;
        }
    }

    /// The slot of the next entry to evict, already out of the policy's
    /// queues; the caller unlinks it from `slots`, where every tracked
    /// entry is (the owner untracks an entry before it unlinks or stages
    /// it, and reports every move). `None` when nothing is tracked.
    pub(crate) fn victim<K, V>(&mut self, slots: &Slots<K, V>) -> Option<usize> {
        let small_budget = self.climber.small_share(self.budget);
        loop {
            let from_small = !self.small.items.is_empty()
                && (self.small.weight >= small_budget || self.main.items.is_empty());
            let ring = if from_small {
                &mut self.small
            } else {
                &mut self.main
            };
            let Some((slot, weight)) = ring.pop() else {
                if self.small.items.is_empty() && self.main.items.is_empty() {
                    return None;
                }
                continue;
            };
            let View::Live(e) = slots.view(slot) else {
                // Never: a ring item names a slot with a tracked entry
                // (above). Dropped rather than trusted.
                debug_assert!(false, "a ring item names a live entry's slot");
                self.entries -= 1;
                continue;
            };
            let x = extra(e);
            // Relaxed: see `replace`.
            let f = x.freq.load(Ordering::Relaxed);
            if from_small {
                if f >= 2 {
                    x.freq.store(0, Ordering::Relaxed);
                    self.main.push(slot, e, MAIN, weight);
                    continue;
                }
                self.add_ghost(e.hash());
            } else if f > 0 {
                x.freq.store(f - 1, Ordering::Relaxed);
                self.main.push(slot, e, MAIN, weight);
                continue;
            }
            self.entries -= 1;
            x.meta.set(0);
            return Some(slot);
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
