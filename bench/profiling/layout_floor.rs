//! The floor under a one-thread `get`: bare open-addressing tables with
//! coherent's layout and none of its machinery, timed beside coherent and
//! quick_cache in one process (docs/design.md, "The published table and
//! tag-filtered probing").
//!
//! - `ptr`: 16 tables (the shard choice as coherent's), each an array of
//!   tagged pointers (16 hash bits in the top bits) to separately allocated
//!   `[hash, key, value]` entries, probed linearly: coherent's read layout
//!   with no pin, no intents, no published-word decoding, no statistics.
//! - `inline`: the same, with each entry stored in its slot (32-byte
//!   cells): the layout that would save a `get` its second cache line.
//! - each with foldhash `quality` (coherent's hash) and `fast`.
//! - `ctrl`: hashbrown's layout, with coherent's shards: per shard, one
//!   control byte a slot (0: empty, else 0x80 and 7 hash bits), read eight
//!   at a time as one word and matched without branches per byte (SWAR),
//!   beside an array of `[hash, key, value]` buckets (32 bytes apart), at
//!   most 7/8 full as hashbrown's or 2/3 as coherent's. The control bytes
//!   (128 or 256 KiB at 100k keys) stay in L2; the bucket is the lookup's
//!   one miss (docs/design.md, "The published table and tag-filtered probing").
//!
//! Zipf 1.0 over `KEYS` keys (default 100k), a 2^20-long key sequence as in
//! `compare`; median of 5 rounds of 10 passes, the caches taking turns.
//! `cargo run --release -p coherent-bench --example layout_floor`.

use coherent_bench::{median, prefilled, zipf_keys, Target};
use std::hash::BuildHasher;
use std::hint::black_box;
use std::sync::Arc;
use std::time::Instant;

const SHARDS: u64 = 16;
const HIGH: u64 = 0xFFFF << 48;

/// Slots for `n` keys at most 2/3 full (coherent's rule).
fn slots_for(n: usize) -> usize {
    let mut c = 2;
    while c * 2 / 3 < n {
        c *= 2;
    }
    c
}

/// Slots for `n` keys at most 7/8 full (hashbrown's rule; `dense`) or
/// 2/3 (coherent's), in groups of 8.
fn ctrl_slots_for(n: usize, dense: bool) -> usize {
    let (num, den) = if dense { (7, 8) } else { (2, 3) };
    let mut c = 16;
    while c * num / den < n {
        c *= 2;
    }
    c
}

const ONES: u64 = 0x0101_0101_0101_0101;
const HIGHS: u64 = 0x8080_8080_8080_8080;

/// The control byte of `hash`: 0x80 and its top 7 bits.
fn h7(hash: u64) -> u8 {
    0x80 | (hash >> 57) as u8
}

/// hashbrown's layout: control words of 8 bytes and dense buckets.
struct Ctrl<H> {
    hasher: H,
    /// Per shard: control bytes, 8 to a word.
    ctrl: Vec<Vec<u64>>,
    /// Per shard: the buckets, slot i's at i.
    buckets: Vec<Vec<[u64; 4]>>,
    name: &'static str,
}

impl<H: BuildHasher> Ctrl<H> {
    fn new(keys: u64, hasher: H, dense: bool, name: &'static str) -> Self {
        let per = ctrl_slots_for(keys as usize / SHARDS as usize + 1, dense);
        let mut ctrl = vec![vec![0u64; per / 8]; SHARDS as usize];
        let mut buckets = vec![vec![[0u64; 4]; per]; SHARDS as usize];
        for k in 0..keys {
            let hash = hasher.hash_one(k);
            let s = shard_of(hash);
            let mut g = hash as usize & (per / 8 - 1);
            'find: loop {
                for b in 0..8 {
                    if (ctrl[s][g] >> (8 * b)) & 0xFF == 0 {
                        ctrl[s][g] |= u64::from(h7(hash)) << (8 * b);
                        buckets[s][g * 8 + b] = [hash, k, k, 0];
                        break 'find;
                    }
                }
                g = (g + 1) & (per / 8 - 1);
            }
        }
        Self {
            hasher,
            ctrl,
            buckets,
            name,
        }
    }
}

impl<H: BuildHasher> Ctrl<H> {
    #[inline]
    fn find(&self, key: u64) -> bool {
        let hash = self.hasher.hash_one(key);
        let s = shard_of(hash);
        let (ctrl, buckets) = (&self.ctrl[s], &self.buckets[s]);
        let gmask = ctrl.len() - 1;
        let want = ONES * u64::from(h7(hash));
        let mut g = hash as usize;
        loop {
            let word = ctrl[g & gmask];
            let cmp = word ^ want;
            let mut hits = cmp.wrapping_sub(ONES) & !cmp & HIGHS;
            while hits != 0 {
                let b = (hits.trailing_zeros() / 8) as usize;
                let e = &buckets[(g & gmask) * 8 + b];
                if e[0] == hash && e[1] == key {
                    return black_box(e[2]) == key;
                }
                hits &= hits - 1;
            }
            // An empty byte ends the chain (hashbrown's "match_empty").
            if word.wrapping_sub(ONES) & !word & HIGHS != 0 {
                return false;
            }
            g += 1;
        }
    }
}

fn shard_of(hash: u64) -> usize {
    (((hash >> 32) * SHARDS) >> 32) as usize
}

fn tag(hash: u64) -> u64 {
    (hash << 8) & HIGH
}

/// One cell of an inline table: a word (0: empty, else the tag with bit 0
/// set), then the entry.
#[derive(Clone, Copy, Default)]
#[repr(C, align(32))]
struct Cell {
    word: u64,
    hash: u64,
    key: u64,
    value: u64,
}

/// Tables of tagged pointers (`inline`: false) or of cells.
struct Floor<H> {
    hasher: H,
    /// Per shard: the slot words of a pointer table.
    ptrs: Vec<Vec<u64>>,
    /// Per shard: the cells of an inline table.
    cells: Vec<Vec<Cell>>,
    /// The entries the pointer tables point to, kept alive (one allocation
    /// each, as coherent's).
    #[allow(clippy::vec_box)]
    entries: Vec<Box<[u64; 3]>>,
    name: &'static str,
}

impl<H: BuildHasher> Floor<H> {
    fn new(keys: u64, hasher: H, inline: bool, name: &'static str) -> Self {
        let per = slots_for(keys as usize / SHARDS as usize + 1);
        let mut f = Self {
            hasher,
            ptrs: Vec::new(),
            cells: Vec::new(),
            entries: Vec::new(),
            name,
        };
        if inline {
            f.cells = vec![vec![Cell::default(); per]; SHARDS as usize];
        } else {
            f.ptrs = vec![vec![0; per]; SHARDS as usize];
        }
        for k in 0..keys {
            let hash = f.hasher.hash_one(k);
            let mut i = hash as usize & (per - 1);
            if inline {
                let t = &mut f.cells[shard_of(hash)];
                while t[i].word != 0 {
                    i = (i + 1) & (per - 1);
                }
                t[i] = Cell {
                    word: tag(hash) | 1,
                    hash,
                    key: k,
                    value: k,
                };
            } else {
                let e = Box::new([hash, k, k]);
                let t = &mut f.ptrs[shard_of(hash)];
                while t[i] != 0 {
                    i = (i + 1) & (per - 1);
                }
                t[i] = (&*e as *const [u64; 3]).expose_provenance() as u64 | tag(hash);
                f.entries.push(e);
            }
        }
        f
    }
}

impl<H: BuildHasher> Floor<H> {
    #[inline]
    fn find(&self, key: u64) -> bool {
        let hash = self.hasher.hash_one(key);
        let mut i = hash as usize;
        if self.cells.is_empty() {
            let t = &self.ptrs[shard_of(hash)];
            let (mask, want) = (t.len() - 1, tag(hash));
            loop {
                let w = t[i & mask];
                if w == 0 {
                    return false;
                }
                if w & HIGH == want {
                    let p = std::ptr::with_exposed_provenance::<[u64; 3]>((w ^ want) as usize);
                    // SAFETY: a nonzero word is an entry's address (exposed
                    // in `new`) with its tag; `entries` keeps it alive
                    // while `self` is borrowed.
                    let e = unsafe { &*p };
                    if e[0] == hash && e[1] == key {
                        return black_box(e[2]) == key;
                    }
                }
                i += 1;
            }
        } else {
            let t = &self.cells[shard_of(hash)];
            let (mask, want) = (t.len() - 1, tag(hash) | 1);
            loop {
                let c = &t[i & mask];
                if c.word == 0 {
                    return false;
                }
                if c.word == want && c.hash == hash && c.key == key {
                    return black_box(c.value) == key;
                }
                i += 1;
            }
        }
    }
}

/// The `Target` of a read-only bare table: its name and its `find`.
macro_rules! read_only_target {
    ($t:ident) => {
        impl<H: BuildHasher + Send + Sync + 'static> Target for $t<H> {
            fn name(&self) -> &'static str {
                self.name
            }

            #[inline]
            fn get(&self, key: u64) -> bool {
                self.find(key)
            }

            fn insert(&self, _: u64, _: u64) {
                unimplemented!("read-only tables")
            }
        }
    };
}

read_only_target!(Floor);
read_only_target!(Ctrl);

fn time(t: &dyn Target, keys: &[u64], passes: u32) -> f64 {
    let start = Instant::now();
    for _ in 0..passes {
        for k in keys {
            black_box(t.get(*k));
        }
    }
    start.elapsed().as_nanos() as f64 / (passes as f64 * keys.len() as f64)
}

fn main() {
    let n: u64 = std::env::var("KEYS").map_or(100_000, |v| v.parse().expect("KEYS"));
    let keys = zipf_keys(n, 1.0, 1 << 20, 7);
    let mut t: Vec<Arc<dyn Target>> = prefilled(n);
    t.truncate(2); // coherent, quick_cache
    let quality = foldhash::quality::RandomState::default;
    let fast = foldhash::fast::RandomState::default;
    t.push(Arc::new(Floor::new(n, quality(), false, "ptr, quality")));
    t.push(Arc::new(Floor::new(n, quality(), true, "inline, quality")));
    t.push(Arc::new(Floor::new(n, fast(), false, "ptr, fast")));
    t.push(Arc::new(Floor::new(n, fast(), true, "inline, fast")));
    t.push(Arc::new(Ctrl::new(n, quality(), true, "ctrl 7/8, quality")));
    t.push(Arc::new(Ctrl::new(
        n,
        quality(),
        false,
        "ctrl 2/3, quality",
    )));
    for x in &t {
        assert!((0..n).all(|k| x.get(k)), "{} lost a key", x.name());
    }
    let mut ns: Vec<Vec<f64>> = vec![Vec::new(); t.len()];
    for _ in 0..5 {
        for (j, x) in t.iter().enumerate() {
            ns[j].push(time(&**x, &keys, 10));
        }
    }
    let ns: Vec<f64> = ns.into_iter().map(median).collect();
    println!("{n} keys, Zipf 1.0, one thread");
    for (x, m) in t.iter().zip(&ns) {
        println!("{:16} {m:5.1} ns  {:.2}x quick_cache", x.name(), ns[1] / m);
    }
}
