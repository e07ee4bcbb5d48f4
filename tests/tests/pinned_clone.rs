//! A value is never freed while a reader is cloning it, even when the
//! clone itself writes enough to the cache to replace that value and push
//! its retirement batch through collection (reclaim.rs: a batch is freed
//! only once every reader pinned before its seal has left).
//!
//! Single-threaded and deterministic: the reader's pin is held across the
//! writes because they run inside the value's `Clone`, which `get` calls
//! pinned. This is the case `.ci/run` runs under Valgrind's memcheck: built
//! with a reclaimer that ignores pinned readers (`--cfg
//! coherent_break_reclaim`), the clone reads the value's heap bytes after
//! they were freed, and memcheck reports the invalid read; built
//! correctly, memcheck stays silent. Without Valgrind the test still
//! checks the bytes it reads, which catches a freed block that was reused.

use coherent::Cache;
use std::cell::Cell;
use std::sync::Arc;

thread_local! {
    /// The cache a `Writing` value's clone writes to, while armed.
    static WRITE_TO: Cell<Option<*const Cache<u64, Writing>>> = const { Cell::new(None) };
}

/// A value of heap bytes whose `Clone` (while armed) replaces its own key
/// and writes many others before reading its own bytes.
struct Writing {
    key: u64,
    bytes: Box<[u8; 256]>,
}

impl Writing {
    fn new(key: u64) -> Self {
        Self {
            key,
            bytes: Box::new([key as u8; 256]),
        }
    }
}

/// Writes enough to retire several batches (128 entries each) and to run
/// collection many times over.
const WRITES: u64 = 2_000;

impl Clone for Writing {
    fn clone(&self) -> Self {
        if let Some(cache) = WRITE_TO.with(|c| c.take()) {
            // SAFETY: armed only for the duration of the `get` below, by
            // the thread that owns the `Arc` the pointer comes from.
            let cache = unsafe { &*cache };
            cache.insert(self.key, Writing::new(self.key + 1)).unwrap();
            for i in 0..WRITES {
                let k = 1_000 + i % 64;
                cache.insert(k, Writing::new(k)).unwrap();
            }
        }
        // The bytes of the value being cloned: replaced above, but this
        // reader is still pinned, so they must still be here, intact.
        let bytes = self.bytes.clone();
        assert!(
            bytes.iter().all(|&b| b == self.key as u8),
            "the value was freed (and its memory reused) while a reader cloned it"
        );
        Self {
            key: self.key,
            bytes,
        }
    }
}

#[test]
fn a_value_being_cloned_is_not_freed_by_the_writes_its_clone_makes() {
    let cache: Arc<Cache<u64, Writing>> = Arc::new(Cache::builder().shards(1).build().unwrap());
    cache.insert(7, Writing::new(7)).unwrap();
    WRITE_TO.with(|c| c.set(Some(Arc::as_ptr(&cache))));
    let got = cache.get(&7).expect("cached");
    assert_eq!(got.key, 7);
    assert!(got.bytes.iter().all(|&b| b == 7));
    // The clone's writes landed: the key holds the replacement now.
    assert_eq!(cache.get(&7).map(|v| v.bytes[0]), Some(8));
}
