//! The floor under a one-thread `get`: bare open-addressing tables with
//! coherent's layout and none of its machinery, timed beside coherent and
//! quick_cache in one process (docs/design.md, "A leaner `get`").
//!
//! - `ptr`: 16 tables (the shard choice as coherent's), each an array of
//!   tagged pointers (16 hash bits in the top bits) to separately allocated
//!   `[hash, key, value]` entries, probed linearly: coherent's read layout
//!   with no pin, no intents, no published-word decoding, no statistics.
//! - `inline`: the same, with each entry stored in its slot (32-byte
//!   cells): the layout that would save a `get` its second cache line.
//! - each with foldhash `quality` (coherent's hash) and `fast`.
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

impl<H: BuildHasher + Send + Sync + 'static> Target for Floor<H> {
    fn name(&self) -> &'static str {
        self.name
    }

    #[inline]
    fn get(&self, key: u64) -> bool {
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

    fn insert(&self, _: u64, _: u64) {
        unimplemented!("read-only tables")
    }
}

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
