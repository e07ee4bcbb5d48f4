//! The one place this crate takes its synchronisation primitives from.
//!
//! Every atomic, fence, `Arc`, lock, thread and thread-local is imported
//! from here, never from `std` directly, so that a model checker can swap
//! them. Under `--cfg coherent_loom` they come from loom; see
//! `docs/guarantees.md` for the models. Two exceptions use `std` directly
//! because they order nothing: the statistics counters (`limits.rs`) and
//! the manual clock (`clock.rs`).

#[cfg(not(coherent_loom))]
mod imp {
    pub(crate) use std::sync::atomic::{
        compiler_fence, fence, AtomicBool, AtomicPtr, AtomicU64, AtomicU8, AtomicUsize, Ordering,
    };
    pub(crate) use std::sync::{Arc, Mutex, MutexGuard};
    pub(crate) use std::thread;
    pub(crate) use std::thread_local as thread_local_key;

    /// `loom::cell::UnsafeCell`'s interface over std's, so that code written
    /// for the model runs unchanged.
    #[derive(Debug)]
    pub(crate) struct UnsafeCell<T>(std::cell::UnsafeCell<T>);

    impl<T> UnsafeCell<T> {
        pub(crate) fn new(value: T) -> Self {
            Self(std::cell::UnsafeCell::new(value))
        }

        /// A pointer for one mutable access (loom tracks its lifetime).
        #[inline]
        pub(crate) fn get_mut(&self) -> MutPtr<T> {
            MutPtr(self.0.get())
        }
    }

    /// See [`UnsafeCell::get_mut`].
    #[derive(Debug)]
    pub(crate) struct MutPtr<T>(*mut T);

    impl<T> MutPtr<T> {
        /// The raw pointer, for the duration of `f` (loom's interface).
        #[inline]
        pub(crate) fn with<R>(&self, f: impl FnOnce(*mut T) -> R) -> R {
            f(self.0)
        }
    }

    /// A hint to the processor that we are in a spin loop.
    #[inline]
    pub(crate) fn spin_loop() {
        std::hint::spin_loop();
    }
}

#[cfg(coherent_loom)]
mod imp {
    pub(crate) use loom::cell::{MutPtr, UnsafeCell};
    pub(crate) use loom::sync::atomic::{
        fence, AtomicBool, AtomicPtr, AtomicU64, AtomicU8, AtomicUsize, Ordering,
    };
    pub(crate) use loom::sync::{Arc, Mutex, MutexGuard};
    pub(crate) use loom::thread;
    pub(crate) use loom::thread_local as thread_local_key;

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
