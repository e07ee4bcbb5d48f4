//! The clock expiry is measured against: cheap enough to read on `get`.
//!
//! [`Clock::system`] reads the monotonic clock at the kernel's tick
//! granularity (`CLOCK_MONOTONIC_COARSE` on Linux, a few nanoseconds
//! through the vDSO, advancing every 1-4 ms); elsewhere `Instant`.
//! [`Clock::manual`] is a clock that moves only when told to, for tests:
//! expiry can be tested without sleeping.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// A millisecond clock: the system's, or one moved by hand.
#[derive(Clone, Debug, Default)]
pub struct Clock {
    manual: Option<Arc<AtomicU64>>,
}

impl Clock {
    /// The system's monotonic clock (the default).
    pub fn system() -> Self {
        Self { manual: None }
    }

    /// A clock that starts at 1 ms and moves only by [`advance`](Self::advance)
    /// (on any clone of it).
    ///
    /// ```
    /// use std::time::Duration;
    /// let clock = coherent_shard::Clock::manual();
    /// let t = clock.now_ms();
    /// clock.advance(Duration::from_secs(2));
    /// assert_eq!(clock.now_ms(), t + 2000);
    /// ```
    pub fn manual() -> Self {
        Self {
            manual: Some(Arc::new(AtomicU64::new(1))),
        }
    }

    /// Moves a manual clock forward (a system clock ignores this). The
    /// clock saturates at `u64::MAX` ms: it never wraps, so it never goes
    /// backwards, and an entry that expired stays expired.
    ///
    /// ```
    /// use std::time::Duration;
    /// let clock = coherent_shard::Clock::manual();
    /// clock.advance(Duration::MAX);
    /// clock.advance(Duration::from_secs(1));
    /// assert_eq!(clock.now_ms(), u64::MAX);
    /// ```
    pub fn advance(&self, by: std::time::Duration) {
        if let Some(t) = &self.manual {
            let ms = u64::try_from(by.as_millis()).unwrap_or(u64::MAX);
            // Relaxed: a test moves the clock, then acts; the action's own
            // synchronisation orders what readers see.
            let _ = t.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |now| {
                Some(now.saturating_add(ms))
            });
        }
    }

    /// Milliseconds since an arbitrary origin; never 0.
    #[inline]
    pub fn now_ms(&self) -> u64 {
        match &self.manual {
            Some(t) => t.load(Ordering::Relaxed),
            None => system_ms(),
        }
    }
}

#[cfg(target_os = "linux")]
fn system_ms() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec; the call only writes it.
    let r = unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC_COARSE, &mut ts) };
    debug_assert_eq!(r, 0, "CLOCK_MONOTONIC_COARSE is always there on Linux");
    (ts.tv_sec as u64) * 1000 + (ts.tv_nsec as u64) / 1_000_000 + 1
}

#[cfg(not(target_os = "linux"))]
fn system_ms() -> u64 {
    use std::sync::OnceLock;
    use std::time::Instant;
    static ORIGIN: OnceLock<Instant> = OnceLock::new();
    let origin = *ORIGIN.get_or_init(Instant::now);
    u64::try_from(origin.elapsed().as_millis()).unwrap_or(u64::MAX) + 1
}
