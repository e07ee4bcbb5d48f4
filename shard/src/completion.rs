//! A one-shot reply slot that a blocking thread and an async task can both
//! wait on.
//!
//! The shard that applies a message answers through a [`Responder`]; the
//! caller waits on the matching [`Completion`]. A blocking caller first spins
//! (the applier is usually running on the other core and answers within a
//! microsecond), then yields, and only then parks: on this kind of machine a
//! parked thread costs tens of microseconds to wake, so parking is the last
//! resort, not the default. An async caller registers its `Waker`.
//!
//! If the responder is dropped without answering (the applier failed before
//! reaching this message), the waiter is woken and sees `None`: nobody hangs.
//! If the waiter goes away first (an async future dropped), `send` gives the
//! value back so that the shard can hand the work to someone else.

use crate::sync::{spin_loop, thread, Arc, AtomicBool, Mutex, Ordering};
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};

/// How many times a blocking waiter polls the ready flag before yielding.
/// (Under loom every poll is a scheduling point: the models poll once, then
/// park.)
const SPINS: u32 = if cfg!(coherent_loom) { 1 } else { 1 << 10 };
/// How many times it yields its time slice before parking.
const YIELDS: u32 = if cfg!(coherent_loom) { 0 } else { 16 };

/// Creates a connected responder/completion pair.
pub(crate) fn completion<T>() -> (Responder<T>, Completion<T>) {
    let slot = Arc::new(Slot {
        ready: AtomicBool::new(false),
        state: Mutex::new(State {
            value: None,
            waiter: Waiter::None,
            responder_gone: false,
            completion_gone: false,
        }),
    });
    (
        Responder {
            slot: Some(slot.clone()),
        },
        Completion { slot },
    )
}

struct Slot<T> {
    /// Set once a value was stored or the responder went away. Release by the
    /// responder (after the value is stored under the lock), Acquire by the
    /// spinning waiter, which then takes the lock anyway: the flag only saves
    /// the waiter from touching the lock while it spins.
    ready: AtomicBool,
    state: Mutex<State<T>>,
}

struct State<T> {
    value: Option<T>,
    waiter: Waiter,
    /// The responder was dropped without sending: the waiter must not wait.
    responder_gone: bool,
    /// The completion was dropped or closed: a value sent now is returned.
    completion_gone: bool,
}

enum Waiter {
    None,
    Thread(thread::Thread),
    Task(Waker),
}

impl Waiter {
    fn wake(self) {
        match self {
            Waiter::None => {}
            Waiter::Thread(t) => t.unpark(),
            Waiter::Task(w) => w.wake(),
        }
    }
}

impl<T> Slot<T> {
    fn lock(&self) -> crate::sync::MutexGuard<'_, State<T>> {
        // No code runs user callbacks under this lock, so it cannot be
        // poisoned by anything but a bug in this module; recover anyway.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The answering half, held by the shard that applies the message.
/// Dropping it unanswered wakes the waiter with `None`.
pub struct Responder<T> {
    slot: Option<Arc<Slot<T>>>,
}

impl<T> std::fmt::Debug for Responder<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Responder").finish_non_exhaustive()
    }
}

impl<T> Responder<T> {
    /// Delivers `value`, or gives it back if the waiter has gone away.
    pub fn send(mut self, value: T) -> Result<(), T> {
        let slot = self.slot.take().expect("a responder sends once");
        let waiter = {
            let mut state = slot.lock();
            if state.completion_gone {
                return Err(value);
            }
            state.value = Some(value);
            slot.ready.store(true, Ordering::Release);
            std::mem::replace(&mut state.waiter, Waiter::None)
        };
        waiter.wake();
        Ok(())
    }
}

impl<T> Drop for Responder<T> {
    fn drop(&mut self) {
        if let Some(slot) = self.slot.take() {
            let waiter = {
                let mut state = slot.lock();
                state.responder_gone = true;
                slot.ready.store(true, Ordering::Release);
                std::mem::replace(&mut state.waiter, Waiter::None)
            };
            waiter.wake();
        }
    }
}

/// The waiting half, held by the caller. `None` means the answer was lost
/// because the applier failed before answering.
pub struct Completion<T> {
    slot: Arc<Slot<T>>,
}

impl<T> std::fmt::Debug for Completion<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Completion").finish_non_exhaustive()
    }
}

impl<T> Completion<T> {
    /// Blocks the thread until the answer arrives: spin, then yield, then park.
    pub fn wait(self) -> Option<T> {
        for i in 0..SPINS + YIELDS {
            // Acquire: pairs with the Release in `send`/`drop` of the responder.
            if self.slot.ready.load(Ordering::Acquire) {
                break;
            }
            if i < SPINS {
                spin_loop();
            } else {
                thread::yield_now();
            }
        }
        loop {
            {
                let mut state = self.slot.lock();
                if let Some(v) = state.value.take() {
                    return Some(v);
                }
                if state.responder_gone {
                    return None;
                }
                state.waiter = Waiter::Thread(thread::current());
            }
            // A spurious or early unpark only loops back to the check above.
            thread::park();
        }
    }

    /// Stops waiting. Returns the answer if it had already arrived, so that
    /// a caller who walks away can still hand back what it was given.
    pub fn close(&mut self) -> Option<T> {
        let mut state = self.slot.lock();
        state.completion_gone = true;
        state.waiter = Waiter::None;
        state.value.take()
    }
}

impl<T> Future for Completion<T> {
    type Output = Option<T>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<T>> {
        let mut state = self.slot.lock();
        if let Some(v) = state.value.take() {
            return Poll::Ready(Some(v));
        }
        if state.responder_gone {
            return Poll::Ready(None);
        }
        match &state.waiter {
            Waiter::Task(w) if w.will_wake(cx.waker()) => {}
            _ => state.waiter = Waiter::Task(cx.waker().clone()),
        }
        Poll::Pending
    }
}

impl<T> Drop for Completion<T> {
    fn drop(&mut self) {
        let mut state = self.slot.lock();
        state.completion_gone = true;
    }
}

#[cfg(all(test, not(coherent_loom)))]
mod tests {
    use super::*;

    #[test]
    fn value_reaches_a_blocking_waiter_on_another_thread() {
        let (tx, rx) = completion::<u32>();
        let t = std::thread::spawn(move || tx.send(7).unwrap());
        assert_eq!(rx.wait(), Some(7));
        t.join().unwrap();
    }

    #[test]
    fn dropped_responder_wakes_the_waiter_with_none() {
        let (tx, rx) = completion::<u32>();
        let t = std::thread::spawn(move || drop(tx));
        assert_eq!(rx.wait(), None);
        t.join().unwrap();
    }

    #[test]
    fn send_to_a_closed_completion_gives_the_value_back() {
        let (tx, mut rx) = completion::<u32>();
        assert_eq!(rx.close(), None);
        assert_eq!(tx.send(3), Err(3));
    }

    #[test]
    fn close_returns_an_answer_that_already_arrived() {
        let (tx, mut rx) = completion::<u32>();
        tx.send(5).unwrap();
        assert_eq!(rx.close(), Some(5));
    }

    #[test]
    fn async_waiter_is_woken() {
        let (tx, rx) = completion::<u32>();
        let rt = tokio_free_block_on(async move {
            let t = std::thread::spawn(move || tx.send(9).unwrap());
            let v = rx.await;
            t.join().unwrap();
            v
        });
        assert_eq!(rt, Some(9));
    }

    /// A minimal executor so this crate's tests need no runtime.
    fn tokio_free_block_on<F: Future>(fut: F) -> F::Output {
        use std::task::Wake;
        struct Unparker(std::thread::Thread);
        impl Wake for Unparker {
            fn wake(self: std::sync::Arc<Self>) {
                self.0.unpark();
            }
        }
        let waker = Waker::from(std::sync::Arc::new(Unparker(std::thread::current())));
        let mut cx = Context::from_waker(&waker);
        let mut fut = std::pin::pin!(fut);
        loop {
            if let Poll::Ready(v) = fut.as_mut().poll(&mut cx) {
                return v;
            }
            std::thread::park();
        }
    }
}
