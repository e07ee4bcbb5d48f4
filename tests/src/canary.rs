//! A value that notices being read after it was dropped, and counts live
//! copies: the checker for the reclamation stress tests.

use std::sync::atomic::{AtomicIsize, Ordering};
use std::sync::Arc;

const ALIVE: u64 = 0xA11C_E5A1_1CE5_A11C;
const DEAD: u64 = 0xDEAD_DEAD_DEAD_DEAD;

/// A cached value with a canary word. `clone` checks the canary (a `get`
/// clones the value it found), `drop` kills it. A reader that clones an
/// entry already freed (and not yet reused) panics with "read after free".
#[derive(Debug)]
pub struct Canary {
    magic: u64,
    /// The key it was written for (a reader checks it got its own key's).
    pub key: u64,
    /// Which write produced it.
    pub version: u64,
    live: Arc<AtomicIsize>,
}

impl Canary {
    /// A live value, counted in `live`.
    pub fn new(key: u64, version: u64, live: &Arc<AtomicIsize>) -> Self {
        live.fetch_add(1, Ordering::Relaxed);
        Self {
            magic: ALIVE,
            key,
            version,
            live: live.clone(),
        }
    }
}

impl Clone for Canary {
    fn clone(&self) -> Self {
        // Volatile: the compiler may not assume the word still holds what
        // it wrote; we want the bytes memory holds now.
        let magic = volatile_read(&self.magic);
        assert_eq!(magic, ALIVE, "read after free (canary {magic:#x})");
        Self::new(self.key, self.version, &self.live)
    }
}

impl Drop for Canary {
    fn drop(&mut self) {
        let magic = volatile_read(&self.magic);
        assert_eq!(magic, ALIVE, "dropped twice (canary {magic:#x})");
        // SAFETY: a valid, exclusive reference to our own field.
        unsafe { std::ptr::write_volatile(&mut self.magic, DEAD) };
        self.live.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A volatile read of a word we hold a reference to.
fn volatile_read(word: &u64) -> u64 {
    // SAFETY: `word` is a valid reference; volatile only stops the compiler
    // from reusing an earlier read.
    unsafe { std::ptr::read_volatile(word) }
}

/// A key whose `Eq` takes about a microsecond: it widens the window between
/// a reader's load of an entry pointer and its clone of the value, which is
/// where a premature free would strike, so the stress test has a fair
/// chance of catching one.
#[derive(Debug, Clone, Copy)]
pub struct SlowKey(pub u64);

impl std::hash::Hash for SlowKey {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.0.hash(state); // agrees with `eq`, which compares `self.0`
    }
}

impl PartialEq for SlowKey {
    fn eq(&self, other: &Self) -> bool {
        let mut x = self.0;
        for _ in 0..200 {
            x = std::hint::black_box(x.rotate_left(5) ^ 0x9E37);
        }
        std::hint::black_box(x);
        self.0 == other.0
    }
}

impl Eq for SlowKey {}
