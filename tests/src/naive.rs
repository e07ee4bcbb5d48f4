//! Caches used the way the incidents' services used theirs. Each is correct as a map and
//! wrong as a cache under concurrency, in exactly the incident's way.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

/// A locked map. Its `get_or_load` is "miss, load, set" (seed 001) and its
/// `update` is "read, modify, write" in two locked steps (seed 003).
#[derive(Debug)]
pub struct NaiveCache<V> {
    map: Mutex<HashMap<u64, V>>,
    /// Writers hold this while writing; `stall` holds it to block them.
    gate: Mutex<()>,
    /// Writers blocked on `gate`.
    blocked: AtomicUsize,
}

impl<V: Clone> Default for NaiveCache<V> {
    fn default() -> Self {
        Self {
            map: Mutex::new(HashMap::new()),
            gate: Mutex::new(()),
            blocked: AtomicUsize::new(0),
        }
    }
}

impl<V: Clone> NaiveCache<V> {
    /// Reads `key`.
    pub fn get(&self, key: u64) -> Option<V> {
        self.map.lock().unwrap().get(&key).cloned()
    }

    /// Writes `key` (or removes it), waiting at the gate first.
    pub fn write(&self, key: u64, value: Option<V>) {
        self.blocked.fetch_add(1, Ordering::SeqCst);
        let _gate = self.gate.lock().unwrap();
        self.blocked.fetch_sub(1, Ordering::SeqCst);
        let mut map = self.map.lock().unwrap();
        match value {
            Some(v) => map.insert(key, v),
            None => map.remove(&key),
        };
    }

    /// Read, then modify outside any lock, then write: seed 003's bug.
    pub fn update(&self, key: u64, f: impl FnOnce(Option<&V>) -> V) {
        let current = self.get(key);
        let new = f(current.as_ref());
        self.write(key, Some(new));
    }

    /// Miss, load, set: seed 001's bug.
    pub fn get_or_load(&self, key: u64, loader: impl FnOnce() -> V) -> V {
        if let Some(v) = self.get(key) {
            return v;
        }
        let v = loader();
        self.write(key, Some(v.clone()));
        v
    }

    /// Writers blocked at the gate right now.
    pub fn blocked(&self) -> usize {
        self.blocked.load(Ordering::SeqCst)
    }

    /// Blocks writers until the returned guard is dropped.
    pub fn stall(&self) -> std::sync::MutexGuard<'_, ()> {
        self.gate.lock().unwrap()
    }
}

/// Acknowledges a write before applying it: the write is queued for a
/// background applier and the call returns at once (seed 002's bug).
#[derive(Debug)]
pub struct AckBeforeApply<V: Clone + Send + 'static> {
    inner: Arc<NaiveCache<V>>,
    queue: Option<mpsc::Sender<(u64, Option<V>)>>,
    applier: Option<JoinHandle<()>>,
}

impl<V: Clone + Send + 'static> Default for AckBeforeApply<V> {
    fn default() -> Self {
        let inner = Arc::new(NaiveCache::default());
        let (tx, rx) = mpsc::channel::<(u64, Option<V>)>();
        let applier = {
            let inner = inner.clone();
            std::thread::spawn(move || {
                for (key, value) in rx {
                    inner.write(key, value);
                }
            })
        };
        Self {
            inner,
            queue: Some(tx),
            applier: Some(applier),
        }
    }
}

impl<V: Clone + Send + 'static> AckBeforeApply<V> {
    /// Reads `key`.
    pub fn get(&self, key: u64) -> Option<V> {
        self.inner.get(key)
    }

    /// Queues the write and returns before it is applied.
    pub fn write(&self, key: u64, value: Option<V>) {
        if let Some(q) = &self.queue {
            q.send((key, value)).expect("applier is alive");
        }
    }

    /// The wrapped map (its gate stalls the applier).
    pub fn inner(&self) -> &NaiveCache<V> {
        &self.inner
    }
}

impl<V: Clone + Send + 'static> Drop for AckBeforeApply<V> {
    fn drop(&mut self) {
        self.queue = None; // closes the channel: the applier drains and ends
        if let Some(a) = self.applier.take() {
            let _ = a.join();
        }
    }
}
