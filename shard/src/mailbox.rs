//! A shard's mailbox: a bounded multi-producer queue of messages.
//!
//! `crossbeam-channel`'s bounded (array) channel was chosen over `flume` and
//! `tokio::sync::mpsc` by the `mailbox` benchmark (numbers in
//! `docs/design.md`): the holder looks at the mailbox on every write, usually
//! finding it empty, and that look costs 3 ns here against flume's 18 ns
//! (flume takes a lock); a message in and out costs 28 ns against 38 ns and
//! 71 ns. crossbeam has no async `send`; async writers use `try_push` and
//! help drain or yield when the mailbox is full (`Shard::submit_async`).
//! Under `--cfg coherent_loom` a loom-visible queue stands in.

#[cfg(not(coherent_loom))]
mod imp {
    /// What a full mailbox gives back.
    #[derive(Debug)]
    pub(crate) struct Full<T>(pub(crate) T);

    use crate::sync::{AtomicIsize, Ordering};

    pub(crate) struct Mailbox<T> {
        tx: crossbeam_channel::Sender<T>,
        rx: crossbeam_channel::Receiver<T>,
        /// Messages counted in after their push, out after their pop. The
        /// holder checks this on every write instead of asking the channel
        /// (one load instead of ~30 instructions). It may lag the queue
        /// (a push not yet counted: its pusher will try the token after
        /// counting it) or go below zero for a moment (a pop of a message
        /// not yet counted), so it is a hint read as "> 0"; the hand-off
        /// argument in `shard.rs` is made on this counter.
        pending: AtomicIsize,
    }

    impl<T> Mailbox<T> {
        pub(crate) fn bounded(capacity: usize) -> Self {
            let (tx, rx) = crossbeam_channel::bounded(capacity);
            Self {
                tx,
                rx,
                pending: AtomicIsize::new(0),
            }
        }

        /// Counts a pushed message in. Release: a holder that sees the count
        /// (Acquire in `is_empty`/`pop`) also sees the message in the queue.
        fn counted(&self) {
            self.pending.fetch_add(1, Ordering::Release);
        }

        /// Queues `msg`, waiting for room if the mailbox is full.
        pub(crate) fn push(&self, msg: T) {
            // The receiver lives in `self`, so the channel cannot be
            // disconnected while we can be called.
            if self.tx.send(msg).is_err() {
                unreachable!("the mailbox owns its receiver");
            }
            self.counted();
        }

        /// Queues `msg` if there is room, else gives it back at once.
        pub(crate) fn try_push(&self, msg: T) -> Result<(), Full<T>> {
            match self.tx.try_send(msg) {
                Ok(()) => {
                    self.counted();
                    Ok(())
                }
                Err(crossbeam_channel::TrySendError::Full(msg)) => Err(Full(msg)),
                Err(crossbeam_channel::TrySendError::Disconnected(_)) => {
                    unreachable!("the mailbox owns its receiver")
                }
            }
        }

        pub(crate) fn pop(&self) -> Option<T> {
            if self.is_empty() {
                return None;
            }
            let msg = self.rx.try_recv().ok()?;
            self.pending.fetch_sub(1, Ordering::Relaxed);
            Some(msg)
        }

        pub(crate) fn is_empty(&self) -> bool {
            self.pending.load(Ordering::Acquire) <= 0
        }

        pub(crate) fn len(&self) -> usize {
            self.rx.len()
        }
    }
}

#[cfg(coherent_loom)]
mod imp {
    use crate::sync::Mutex;
    use std::collections::VecDeque;

    #[derive(Debug)]
    pub(crate) struct Full<T>(pub(crate) T);

    /// Unbounded under loom: the models check ordering, not backpressure.
    pub(crate) struct Mailbox<T> {
        queue: Mutex<VecDeque<T>>,
    }

    impl<T> Mailbox<T> {
        pub(crate) fn bounded(_capacity: usize) -> Self {
            Self {
                queue: Mutex::new(VecDeque::new()),
            }
        }
        pub(crate) fn push(&self, msg: T) {
            self.queue.lock().unwrap().push_back(msg);
        }
        pub(crate) fn try_push(&self, msg: T) -> Result<(), Full<T>> {
            self.push(msg);
            Ok(())
        }
        pub(crate) fn pop(&self) -> Option<T> {
            self.queue.lock().unwrap().pop_front()
        }
        pub(crate) fn is_empty(&self) -> bool {
            self.queue.lock().unwrap().is_empty()
        }
        pub(crate) fn len(&self) -> usize {
            self.queue.lock().unwrap().len()
        }
    }
}

pub(crate) use imp::*;

impl<T> std::fmt::Debug for Mailbox<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mailbox")
            .field("queued", &self.len())
            .finish()
    }
}
