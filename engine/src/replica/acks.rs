//! What writers wait on: the acks members have sent, as this process has
//! seen them on the `acks` stream. A watcher thread reads the stream and
//! wakes waiting writers; a writer that times out reads the `acked` hash
//! itself before it revokes anyone, so an ack the watcher missed (a
//! dropped connection, a trimmed stream) costs time, never correctness.

use std::collections::HashMap;
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::Instant;

#[derive(Default)]
pub(crate) struct Acks {
    seen: Mutex<HashMap<String, u64>>,
    changed: Condvar,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Acks {
    /// Records that `id` applied everything up to `seq`.
    pub(crate) fn saw(&self, id: &str, seq: u64) {
        let mut seen = lock(&self.seen);
        let at = seen.entry(id.to_owned()).or_default();
        if *at < seq {
            *at = seq;
            self.changed.notify_all();
        }
    }

    /// Waits until every one of `ids` acked `seq`, or `deadline`. Returns
    /// those that had not.
    pub(crate) fn wait<'a>(&self, ids: &[&'a str], seq: u64, deadline: Instant) -> Vec<&'a str> {
        let mut seen = lock(&self.seen);
        loop {
            let behind: Vec<&str> = ids
                .iter()
                .copied()
                .filter(|id| seen.get(*id).is_none_or(|&s| s < seq))
                .collect();
            let now = Instant::now();
            if behind.is_empty() || now >= deadline {
                return behind;
            }
            seen = self
                .changed
                .wait_timeout(seen, deadline - now)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }
}
