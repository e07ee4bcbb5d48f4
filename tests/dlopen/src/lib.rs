//! A shared library that uses `coherent`, for `tests/dlopen.rs` to load
//! with `dlopen(3)` after the program started, as a plugin or a Python
//! extension is loaded. Each reading thread keeps a thread-local word
//! (`shard/src/reclaim.rs`, `reader`): the test shows that threads the
//! library did not start, and threads it started, read the writes.

use std::sync::OnceLock;

static CACHE: OnceLock<coherent::Cache<u64, u64>> = OnceLock::new();

fn cache() -> &'static coherent::Cache<u64, u64> {
    CACHE.get_or_init(coherent::Cache::new)
}

/// Inserts `key -> value`; returns 0, or 1 if the insert failed.
#[no_mangle]
pub extern "C" fn coherent_dlopen_insert(key: u64, value: u64) -> u64 {
    u64::from(cache().insert(key, value).is_err())
}

/// The value of `key`, or `u64::MAX` if absent.
#[no_mangle]
pub extern "C" fn coherent_dlopen_get(key: u64) -> u64 {
    cache().get(&key).unwrap_or(u64::MAX)
}

/// The value of `key` read on a thread this library starts, or `u64::MAX`
/// if absent.
#[no_mangle]
pub extern "C" fn coherent_dlopen_get_on_new_thread(key: u64) -> u64 {
    std::thread::spawn(move || coherent_dlopen_get(key))
        .join()
        .unwrap_or(u64::MAX)
}
