//! A shard's mailbox: a bounded multi-producer queue of messages.
//!
//! `crossbeam-channel`'s bounded (array) channel was chosen over `flume` and
//! `tokio::sync::mpsc` by the `mailbox` benchmark (numbers in
//! `docs/design.md`): a message in and out costs 28 ns against 38 ns and
//! 71 ns, and a look at an empty queue 3 ns against flume's 18 ns (flume
//! takes a lock). The holder does not look at the queue to learn whether
//! it is empty: the count of queued messages lives in the owner token's
//! word (`token.rs`), and a message is taken out only once it is counted.
//! crossbeam has no async `send`; async writers use `try_push` and help
//! drain or yield when the mailbox is full (`Shard::submit_async`).
//! Under `--cfg coherent_loom` a loom-visible queue stands in.

#[cfg(not(coherent_loom))]
mod imp {
    use std::sync::OnceLock;

    /// What a full mailbox gives back.
    #[derive(Debug)]
    pub(crate) struct Full<T>(pub(crate) T);

    /// The channel is made on the first push, which comes only when a
    /// writer finds the shard's token held: a shard that is never
    /// contended never allocates one (a 65,536-shard cache is built in
    /// milliseconds, not seconds), and a contended one pays one atomic
    /// load per push to find it.
    pub(crate) struct Mailbox<T> {
        capacity: usize,
        channel: OnceLock<(crossbeam_channel::Sender<T>, crossbeam_channel::Receiver<T>)>,
    }

    impl<T> Mailbox<T> {
        pub(crate) fn bounded(capacity: usize) -> Self {
            Self {
                capacity,
                channel: OnceLock::new(),
            }
        }

        fn channel(&self) -> &(crossbeam_channel::Sender<T>, crossbeam_channel::Receiver<T>) {
            self.channel
                .get_or_init(|| crossbeam_channel::bounded(self.capacity))
        }

        /// Queues `msg`, waiting for room if the mailbox is full.
        pub(crate) fn push(&self, msg: T) {
            // The receiver lives in `self`, so the channel cannot be
            // disconnected while we can be called.
            if self.channel().0.send(msg).is_err() {
                unreachable!("the mailbox owns its receiver");
            }
        }

        /// Queues `msg` if there is room, else gives it back at once.
        pub(crate) fn try_push(&self, msg: T) -> Result<(), Full<T>> {
            match self.channel().0.try_send(msg) {
                Ok(()) => Ok(()),
                Err(crossbeam_channel::TrySendError::Full(msg)) => Err(Full(msg)),
                Err(crossbeam_channel::TrySendError::Disconnected(_)) => {
                    unreachable!("the mailbox owns its receiver")
                }
            }
        }

        pub(crate) fn pop(&self) -> Option<T> {
            self.channel.get()?.1.try_recv().ok()
        }

        pub(crate) fn len(&self) -> usize {
            self.channel.get().map_or(0, |(_, rx)| rx.len())
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
