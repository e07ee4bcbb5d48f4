//! Group commit: the writes in flight on a replica share one log entry.
//! A writer adds its payload to the open batch; if no publication is in
//! flight it publishes the batch (its own payload and every one added
//! meanwhile) and hands the outcome to all of them, else it waits for
//! the outcome of the batch it joined, or for its turn to publish. Payloads
//! concatenate (`wire.rs`), so a batch is one entry that every replica
//! applies as one local transaction: one publish script and one ack per
//! replica for many writes.

use super::lock;
use super::store::Lease;
use std::sync::{Arc, Condvar, Mutex, OnceLock};

/// A published entry (`None`: the namespace's epoch changed).
pub(crate) type Outcome = Result<Option<Entry>, String>;

/// What a writer needs to know of the entry that carried its payload.
#[derive(Debug, Clone)]
pub(crate) struct Entry {
    pub(crate) seq: u64,
    /// Redis's clock when it was appended.
    pub(crate) now: u64,
    /// The leases live then.
    pub(crate) leases: Vec<Lease>,
    /// The member that published it, and when that member's epoch began.
    pub(crate) origin: String,
    pub(crate) epoch_began: u64,
}

#[derive(Default)]
struct Slot(OnceLock<Arc<Outcome>>);

#[derive(Default)]
struct Open {
    publishing: bool,
    payload: Vec<u8>,
    slot: Arc<Slot>,
}

#[derive(Default)]
pub(crate) struct Batcher {
    open: Mutex<Open>,
    changed: Condvar,
}

impl Batcher {
    /// Publishes `payload` with whatever else is queued, by `publish` if
    /// this writer's turn comes; returns the outcome of the entry that
    /// carried it.
    pub(crate) fn publish(
        &self,
        payload: &[u8],
        publish: impl FnOnce(&[u8]) -> Outcome,
    ) -> Arc<Outcome> {
        let mut open = lock(&self.open);
        open.payload.extend_from_slice(payload);
        let mine = open.slot.clone();
        loop {
            if let Some(outcome) = mine.0.get() {
                return outcome.clone();
            }
            if !open.publishing {
                // `mine` has no outcome, so no publisher took it: it is
                // still the open batch, and this writer publishes it.
                open.publishing = true;
                let batch = std::mem::take(&mut open.payload);
                let slot = std::mem::take(&mut open.slot);
                drop(open);
                let outcome = Arc::new(publish(&batch));
                let _ = slot.0.set(outcome.clone());
                let mut open = lock(&self.open);
                open.publishing = false;
                self.changed.notify_all();
                drop(open);
                return outcome;
            }
            open = self.changed.wait(open).unwrap_or_else(|e| e.into_inner());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU64, Ordering};

    #[test]
    fn every_payload_is_published_once_and_writers_share_entries() {
        let batcher = Batcher::default();
        let published = Mutex::new(Vec::new());
        let entries = AtomicU64::new(0);
        std::thread::scope(|s| {
            for t in 0..8u8 {
                let (batcher, published, entries) = (&batcher, &published, &entries);
                s.spawn(move || {
                    for i in 0..200u8 {
                        let outcome = batcher.publish(&[t, i], |batch| {
                            let seq = entries.fetch_add(1, Ordering::Relaxed) + 1;
                            published
                                .lock()
                                .unwrap()
                                .extend(batch.chunks(2).map(<[u8]>::to_vec));
                            Ok(Some(Entry {
                                seq,
                                now: 0,
                                leases: Vec::new(),
                                origin: String::new(),
                                epoch_began: 0,
                            }))
                        });
                        assert!(matches!(*outcome, Ok(Some(_))));
                    }
                });
            }
        });
        let mut all = published.into_inner().unwrap();
        assert_eq!(all.len(), 1_600, "each payload published");
        all.sort();
        all.dedup();
        assert_eq!(all.len(), 1_600, "and only once");
        assert!(entries.load(Ordering::Relaxed) <= 1_600);
    }
}
