//! The one place this crate takes its synchronisation primitives from.
//!
//! Every atomic, `Arc`, lock and the `ArcSwap` types are imported from here,
//! never from `std` or `arc_swap` directly, so that a model checker can swap
//! them. Under `--cfg coherent_loom` the atomics, `Arc` and `Mutex` come from
//! loom and `ArcSwap` is replaced by a loom-visible stand-in (arc-swap's own
//! atomics are invisible to loom); see `docs/guarantees.md` for the models.

#[cfg(not(coherent_loom))]
mod imp {
    pub(crate) use arc_swap::ArcSwap;
    pub(crate) use std::sync::atomic::{
        fence, AtomicBool, AtomicIsize, AtomicPtr, AtomicUsize, Ordering,
    };
    pub(crate) use std::sync::{Arc, Mutex, MutexGuard, TryLockError};
    pub(crate) use std::thread;

    /// A hint to the processor that we are in a spin loop.
    #[inline]
    pub(crate) fn spin_loop() {
        std::hint::spin_loop();
    }
}

#[cfg(coherent_loom)]
mod imp {
    pub(crate) use loom::sync::atomic::{fence, AtomicBool, AtomicPtr, AtomicUsize, Ordering};
    pub(crate) use loom::sync::{Arc, Mutex, MutexGuard};
    pub(crate) use loom::thread;
    pub(crate) use std::sync::TryLockError;

    /// Under loom a spin must yield so the model can schedule the other side.
    #[inline]
    pub(crate) fn spin_loop() {
        loom::thread::yield_now();
    }

    /// A loom-visible stand-in for `arc_swap::ArcSwapAny`: the same `load`
    /// and `store`, built on a loom `RwLock` so that loom sees every
    /// publication and every read of the pointer.
    #[derive(Debug)]
    pub(crate) struct ArcSwapAny<T> {
        cell: loom::sync::RwLock<T>,
    }

    pub(crate) type ArcSwap<T> = ArcSwapAny<Arc<T>>;

    impl<T: Clone> ArcSwapAny<T> {
        pub(crate) fn new(value: T) -> Self {
            Self {
                cell: loom::sync::RwLock::new(value),
            }
        }
        pub(crate) fn load(&self) -> T {
            self.cell.read().unwrap().clone()
        }
        pub(crate) fn store(&self, value: T) {
            *self.cell.write().unwrap() = value;
        }
    }
}

pub(crate) use imp::*;
