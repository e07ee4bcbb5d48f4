//! The one place this crate takes its synchronisation primitives from.
//!
//! Every atomic, fence, `Arc`, lock, thread and thread-local is imported
//! from here, never from `std` directly, so that a model checker can swap
//! them. Under `--cfg coherent_loom` they come from loom; see
//! `docs/guarantees.md` for the models.

#[cfg(not(coherent_loom))]
mod imp {
    pub(crate) use std::sync::atomic::{
        compiler_fence, fence, AtomicBool, AtomicIsize, AtomicPtr, AtomicU64, AtomicUsize, Ordering,
    };
    pub(crate) use std::sync::{Arc, Mutex, MutexGuard, TryLockError};
    pub(crate) use std::thread;
    pub(crate) use std::thread_local as thread_local_key;

    /// A hint to the processor that we are in a spin loop.
    #[inline]
    pub(crate) fn spin_loop() {
        std::hint::spin_loop();
    }
}

#[cfg(coherent_loom)]
mod imp {
    pub(crate) use loom::sync::atomic::{
        fence, AtomicBool, AtomicPtr, AtomicU64, AtomicUsize, Ordering,
    };
    pub(crate) use loom::sync::{Arc, Mutex, MutexGuard};
    pub(crate) use loom::thread;
    pub(crate) use loom::thread_local as thread_local_key;
    pub(crate) use std::sync::TryLockError;

    /// Under loom a spin must yield so the model can schedule the other side.
    #[inline]
    pub(crate) fn spin_loop() {
        loom::thread::yield_now();
    }

    /// Loom has no compiler fence; the models run the symmetric fences
    /// (reclaim.rs), so this is never reached under loom.
    pub(crate) fn compiler_fence(_: Ordering) {
        unreachable!("loom models use the symmetric fences")
    }
}

pub(crate) use imp::*;
