//! Simulates eviction policies on the ARC traces and Zipf, insert on miss,
//! to choose coherent's policy by measurement (`docs/design.md`,
//! "Eviction"). `policy_sim [TRACE...]` (OLTP, P3, P12, zipf; default
//! OLTP) prints LRU, SIEVE and S3-FIFO variants: fixed small-queue shares,
//! an ARC-style ghost-driven share, and the hill-climbed share coherent
//! uses (also split over 16 shards, as coherent splits it).
//! `GRID="OLTP:1000 P3:50000 ..."` sweeps fixed S3-FIFO parameters.

use std::collections::{HashMap, VecDeque};

trait Policy {
    fn name(&self) -> String;
    /// One access; returns whether it hit.
    fn access(&mut self, key: u64) -> bool;
}

/// LRU by timestamps (reference: reproduces the ARC paper's LRU column).
struct Lru {
    cap: usize,
    time: u64,
    at: HashMap<u64, u64>,
    order: std::collections::BTreeMap<u64, u64>,
}
impl Policy for Lru {
    fn name(&self) -> String {
        "LRU".into()
    }
    fn access(&mut self, key: u64) -> bool {
        self.time += 1;
        let hit = if let Some(t) = self.at.insert(key, self.time) {
            self.order.remove(&t);
            true
        } else {
            false
        };
        self.order.insert(self.time, key);
        if self.at.len() > self.cap {
            let (&t, &k) = self.order.iter().next().unwrap();
            self.order.remove(&t);
            self.at.remove(&k);
        }
        hit
    }
}

/// S3-FIFO (Yang et al., SOSP '23): small FIFO, main FIFO, ghost FIFO.
struct S3Fifo {
    cap: usize,
    small_cap: usize,
    small: VecDeque<u64>,
    main: VecDeque<u64>,
    ghost: VecDeque<u64>,
    ghost_set: HashMap<u64, u32>,
    /// key -> (freq, in_main)
    res: HashMap<u64, (u8, bool)>,
    max_freq: u8,
    promote_at: u8,
    ghost_frac: f64,
    /// Adaptive small queue: keys evicted from main, and the bounds.
    adaptive: bool,
    gmain: VecDeque<u64>,
    gmain_set: HashMap<u64, u32>,
    target: f64,
    /// Hill climbing on the small queue's share (instead of ghost signals).
    climb: bool,
    period_hits: usize,
    period_n: usize,
    prev_rate: f64,
    step: f64,
    dir: f64,
}
impl S3Fifo {
    fn climbing(cap: usize, max_freq: u8, promote_at: u8, ghost_frac: f64) -> Self {
        let mut s = Self::new(cap, 0.1, max_freq, promote_at, ghost_frac);
        s.climb = true;
        s.step = cap as f64 * 0.02;
        s.dir = -1.0;
        s
    }
    fn climb_tick(&mut self, hit: bool) {
        if !self.climb {
            return;
        }
        self.period_n += 1;
        self.period_hits += hit as usize;
        if self.period_n < 2 * self.cap {
            return;
        }
        let rate = self.period_hits as f64 / self.period_n as f64;
        if rate < self.prev_rate {
            self.dir = -self.dir;
        }
        self.prev_rate = rate;
        self.period_n = 0;
        self.period_hits = 0;
        self.target = (self.target + self.dir * self.step)
            .clamp((self.cap as f64 * 0.01).max(1.0), self.cap as f64 * 0.8);
        self.step *= 0.98;
        self.small_cap = self.target as usize;
    }
    fn adaptive(cap: usize, max_freq: u8, promote_at: u8, ghost_frac: f64) -> Self {
        let mut s = Self::new(cap, 0.1, max_freq, promote_at, ghost_frac);
        s.adaptive = true;
        s
    }
    fn gmain_add(&mut self, k: u64) {
        self.gmain.push_back(k);
        *self.gmain_set.entry(k).or_insert(0) += 1;
        let gcap = ((self.cap as f64) * self.ghost_frac) as usize;
        while self.gmain.len() > gcap.max(1) {
            let g = self.gmain.pop_front().unwrap();
            if let Some(c) = self.gmain_set.get_mut(&g) {
                *c -= 1;
                if *c == 0 {
                    self.gmain_set.remove(&g);
                }
            }
        }
    }
    fn new(cap: usize, small: f64, max_freq: u8, promote_at: u8, ghost_frac: f64) -> Self {
        Self {
            cap,
            small_cap: ((cap as f64 * small) as usize).max(1),
            small: VecDeque::new(),
            main: VecDeque::new(),
            ghost: VecDeque::new(),
            ghost_set: HashMap::new(),
            res: HashMap::new(),
            max_freq,
            promote_at,
            ghost_frac,
            adaptive: false,
            gmain: VecDeque::new(),
            gmain_set: HashMap::new(),
            target: (cap as f64 * small).max(1.0),
            climb: false,
            period_hits: 0,
            period_n: 0,
            prev_rate: 0.0,
            step: 0.0,
            dir: 1.0,
        }
    }
    fn ghost_add(&mut self, k: u64) {
        self.ghost.push_back(k);
        *self.ghost_set.entry(k).or_insert(0) += 1;
        let gcap = ((self.cap as f64) * self.ghost_frac) as usize;
        while self.ghost.len() > gcap.max(1) {
            let g = self.ghost.pop_front().unwrap();
            if let Some(c) = self.ghost_set.get_mut(&g) {
                *c -= 1;
                if *c == 0 {
                    self.ghost_set.remove(&g);
                }
            }
        }
    }
    fn evict(&mut self) {
        loop {
            if self.small.len() >= self.small_cap || self.main.is_empty() {
                let k = self.small.pop_front().unwrap();
                let (f, _) = self.res[&k];
                if f >= self.promote_at {
                    self.res.insert(k, (0, true));
                    self.main.push_back(k);
                    continue;
                }
                self.res.remove(&k);
                self.ghost_add(k);
                return;
            }
            let k = self.main.pop_front().unwrap();
            let (f, _) = self.res[&k];
            if f > 0 {
                self.res.insert(k, (f - 1, true));
                self.main.push_back(k);
                continue;
            }
            self.res.remove(&k);
            if self.adaptive {
                self.gmain_add(k);
            }
            return;
        }
    }
}
impl Policy for S3Fifo {
    fn name(&self) -> String {
        if self.climb {
            return format!(
                "S3-FIFO climbing f{} p{} g{:.1}",
                self.max_freq, self.promote_at, self.ghost_frac
            );
        }
        if self.adaptive {
            return format!(
                "S3-FIFO adaptive f{} p{} g{:.1}",
                self.max_freq, self.promote_at, self.ghost_frac
            );
        }
        format!(
            "S3-FIFO s{:.2} f{} p{} g{:.1}",
            self.small_cap as f64 / self.cap as f64,
            self.max_freq,
            self.promote_at,
            self.ghost_frac
        )
    }
    fn access(&mut self, key: u64) -> bool {
        if let Some((f, _)) = self.res.get_mut(&key) {
            *f = (*f + 1).min(self.max_freq);
            self.climb_tick(true);
            return true;
        }
        self.climb_tick(false);
        if self.res.len() >= self.cap {
            self.evict();
        }
        if self.adaptive {
            let (b1, b2) = (
                self.ghost.len().max(1) as f64,
                self.gmain.len().max(1) as f64,
            );
            if self.ghost_set.contains_key(&key) {
                self.target = (self.target + (b2 / b1).max(1.0)).min(self.cap as f64 * 0.5);
            } else if self.gmain_set.contains_key(&key) {
                self.target =
                    (self.target - (b1 / b2).max(1.0)).max((self.cap as f64 * 0.01).max(1.0));
            }
            self.small_cap = self.target as usize;
        }
        if self.ghost_set.contains_key(&key) {
            self.res.insert(key, (0, true));
            self.main.push_back(key);
        } else {
            self.res.insert(key, (0, false));
            self.small.push_back(key);
        }
        false
    }
}

/// SIEVE (Zhang et al., NSDI '24).
struct Sieve {
    cap: usize,
    queue: VecDeque<Option<u64>>,
    res: HashMap<u64, bool>,
    hand: usize,
}
impl Policy for Sieve {
    fn name(&self) -> String {
        "SIEVE".into()
    }
    fn access(&mut self, key: u64) -> bool {
        if let Some(v) = self.res.get_mut(&key) {
            *v = true;
            return true;
        }
        if self.res.len() >= self.cap {
            // The hand moves from the tail (oldest) towards the head.
            loop {
                if self.queue.is_empty() {
                    break;
                }
                if self.hand >= self.queue.len() {
                    self.hand = 0;
                }
                match self.queue[self.hand] {
                    None => {
                        self.queue.remove(self.hand);
                    }
                    Some(k) => {
                        let v = self.res.get_mut(&k).unwrap();
                        if *v {
                            *v = false;
                            self.hand += 1;
                        } else {
                            self.res.remove(&k);
                            self.queue.remove(self.hand);
                            break;
                        }
                    }
                }
            }
        }
        self.res.insert(key, false);
        self.queue.push_back(Some(key));
        false
    }
}

/// `n` independent policies, keys routed by a hash (as coherent's shards).
struct Sharded(Vec<S3Fifo>);
impl Policy for Sharded {
    fn name(&self) -> String {
        format!("{} x{}", self.0[0].name(), self.0.len())
    }
    fn access(&mut self, key: u64) -> bool {
        let h = key.wrapping_mul(0x9E37_79B9_7F4A_7C15);
        let n = self.0.len() as u64;
        let i = (((h >> 32) * n) >> 32) as usize;
        self.0[i].access(key)
    }
}

fn run(trace: &[u64], p: &mut dyn Policy) -> f64 {
    let hits = trace.iter().filter(|&&k| p.access(k)).count();
    hits as f64 * 100.0 / trace.len() as f64
}

fn main() {
    if let Ok(grid) = std::env::var("GRID") {
        // GRID="TRACE:CAP TRACE:CAP ...": a sweep of S3-FIFO's parameters.
        let points: Vec<(String, usize)> = grid
            .split_whitespace()
            .map(|p| {
                let (n, c) = p.split_once(':').expect("TRACE:CAP");
                (n.to_string(), c.parse().expect("CAP"))
            })
            .collect();
        let mut traces = std::collections::HashMap::new();
        for (n, _) in &points {
            traces.entry(n.clone()).or_insert_with(|| match n.as_str() {
                "zipf0.9" => coherent_bench::zipf_keys(1_000_000, 0.9, 2_000_000, 3),
                "zipf1.0" => coherent_bench::zipf_keys(1_000_000, 1.0, 2_000_000, 4),
                _ => coherent_bench::trace::load(n).expect("trace"),
            });
        }
        let mut cells = Vec::new();
        for small in [0.02, 0.03, 0.05, 0.07, 0.1] {
            for p in [1u8, 2] {
                for g in [0.5, 0.9, 1.5] {
                    cells.push((small, 3u8, p, g));
                }
            }
        }
        let results: Vec<_> = std::thread::scope(|s| {
            let handles: Vec<_> = cells
                .chunks(cells.len().div_ceil(2))
                .map(|chunk| {
                    let (traces, points) = (&traces, &points);
                    s.spawn(move || {
                        chunk
                            .iter()
                            .map(|&(small, f, p, g)| {
                                let name = S3Fifo::new(1000, small, f, p, g).name();
                                let row: Vec<f64> = points
                                    .iter()
                                    .map(|(n, cap)| {
                                        let mut pol = S3Fifo::new(*cap, small, f, p, g);
                                        run(&traces[n], &mut pol)
                                    })
                                    .collect();
                                (name, row)
                            })
                            .collect::<Vec<_>>()
                    })
                })
                .collect();
            handles
                .into_iter()
                .flat_map(|h| h.join().unwrap())
                .collect()
        });
        print!("{:<28}", "policy");
        for (n, c) in &points {
            print!(" {:>12}", format!("{n}:{c}"));
        }
        println!();
        for (name, row) in results {
            print!("{name:<28}");
            for r in row {
                print!(" {r:>12.2}");
            }
            println!();
        }
        return;
    }
    let mut names: Vec<String> = std::env::args().skip(1).collect();
    if names.is_empty() {
        names.push("OLTP".into());
    }
    for name in names {
        let (trace, caps): (Vec<u64>, Vec<usize>) = if name == "zipf" {
            (
                coherent_bench::zipf_keys(1_000_000, 0.9, 2_000_000, 3),
                vec![1_000, 10_000, 100_000],
            )
        } else {
            let caps = match name.as_str() {
                "OLTP" => vec![1_000, 5_000, 15_000],
                "P3" => vec![10_000, 50_000, 200_000],
                _ => vec![10_000, 50_000, 200_000],
            };
            (coherent_bench::trace::load(&name).expect("trace"), caps)
        };
        println!("{name}: {} accesses", trace.len());
        for &cap in &caps {
            let mut policies: Vec<Box<dyn Policy>> = vec![
                Box::new(S3Fifo::new(cap, 0.1, 3, 1, 0.9)),
                Box::new(S3Fifo::new(cap, 0.1, 3, 2, 0.9)),
                Box::new(S3Fifo::new(cap, 0.05, 3, 2, 0.9)),
                Box::new(S3Fifo::adaptive(cap, 3, 2, 0.9)),
                Box::new(S3Fifo::climbing(cap, 3, 2, 0.9)),
                Box::new(Sharded(
                    (0..16)
                        .map(|_| S3Fifo::climbing(cap / 16, 3, 2, 0.9))
                        .collect(),
                )),
                Box::new(Sieve {
                    cap,
                    queue: VecDeque::new(),
                    res: HashMap::new(),
                    hand: 0,
                }),
            ];
            if name == "OLTP" {
                policies.push(Box::new(Lru {
                    cap,
                    time: 0,
                    at: HashMap::new(),
                    order: Default::default(),
                }));
            }
            for p in &mut policies {
                println!(
                    "  {cap:>7} {:<28} {:6.2}%",
                    p.name(),
                    run(&trace, p.as_mut())
                );
            }
        }
    }
}
