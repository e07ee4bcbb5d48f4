//! Intents: a transaction's pending change to one key, which readers
//! resolve against the watermark ([`Visible`]), and its owned shell.

use super::*;

/// Which transactions a reader sees: those whose stamp is at most the
/// watermark, read now (`Live`, for a `get`) or fixed when a multi-key read
/// began (`At`, for a consistent `get_many`).
#[derive(Debug, Clone, Copy)]
pub enum Visible<'a> {
    /// Load the watermark when an intent is met.
    Live(&'a AtomicU64),
    /// A watermark read earlier.
    At(u64),
}

impl Visible<'_> {
    #[inline]
    pub(super) fn watermark(self) -> u64 {
        match self {
            // Acquire: pairs with the committer's Release store, after
            // which every intent of the transaction is in place.
            Visible::Live(w) => w.load(Ordering::Acquire),
            Visible::At(w) => w,
        }
    }
}

/// A transaction's pending change to one key: readers see `new` once the
/// watermark reaches `stamp`, `old` before. Immutable once published, like
/// an entry. It holds `new` and `old` (taken by [`OwnedIntent::new`]) until
/// the owner splits them off ([`OwnedIntent::split`]).
pub(crate) struct Intent<K, V> {
    pub(crate) hash: u64,
    pub(crate) stamp: u64,
    /// The value from `stamp` on; null: the key is absent.
    pub(super) new: *mut Entry<K, V>,
    /// The value before `stamp`; null: the key is absent.
    pub(super) old: *mut Entry<K, V>,
}

impl<K, V> Intent<K, V> {
    /// The entry a reader at `watermark` sees (null: none).
    #[inline]
    pub(super) fn seen_at(&self, watermark: u64) -> *mut Entry<K, V> {
        // `coherent_loom_break_watermark` shows intents at once, to show the
        // loom model of G2 catches a torn read (docs/guarantees.md).
        if self.stamp <= watermark || cfg!(coherent_loom_break_watermark) {
            self.new
        } else {
            self.old
        }
    }

    /// The key, from whichever entry exists (at least one does).
    pub(super) fn key(&self) -> &K {
        let p = if self.new.is_null() {
            self.old
        } else {
            self.new
        };
        // SAFETY: an intent is built with at least one entry (`OwnedIntent::
        // new`), and its entries stay allocated while the intent is
        // reachable by the caller (module docs).
        unsafe { &(*p).key }
    }

    /// The value from `stamp` on, if any (owner side).
    pub(crate) fn new_value(&self) -> Option<&V> {
        // SAFETY: as in `key`; and the caller is the owner (holds the
        // token), so no in-place replacement runs while the reference lives.
        (!self.new.is_null()).then(|| unsafe { (*self.new).value.get() })
    }
}

/// An intent's parts once split: its new entry, its old one, its shell.
pub(crate) type Split<K, V> = (
    Option<OwnedEntry<K, V>>,
    Option<OwnedEntry<K, V>>,
    OwnedIntent<K, V>,
);

/// An intent, owned (the shell only: see [`OwnedIntent::split`]).
pub(crate) struct OwnedIntent<K, V>(pub(super) NonNull<Intent<K, V>>);

// SAFETY: owns an `Intent` like a `Box` would; the entries it points to are
// owned by whoever split it, so it is Send/Sync when entries are.
unsafe impl<K: Send, V: Send> Send for OwnedIntent<K, V> {}
// SAFETY: as above.
unsafe impl<K: Sync, V: Sync> Sync for OwnedIntent<K, V> {}

impl<K, V> OwnedIntent<K, V> {
    /// An intent over `new` and `old`, which it takes (give them back with
    /// [`split`](Self::split)). At least one of them must be `Some`.
    pub(crate) fn new(
        hash: u64,
        stamp: u64,
        new: Option<OwnedEntry<K, V>>,
        old: Option<OwnedEntry<K, V>>,
    ) -> Self {
        const { assert!(std::mem::align_of::<Intent<K, V>>() > KIND) };
        assert!(new.is_some() || old.is_some(), "an intent needs an entry");
        let intent = Intent {
            hash,
            stamp,
            new: new.map_or(std::ptr::null_mut(), OwnedEntry::into_raw),
            old: old.map_or(std::ptr::null_mut(), OwnedEntry::into_raw),
        };
        Self(NonNull::from(Box::leak(Box::new(intent))))
    }

    pub(crate) fn get(&self) -> &Intent<K, V> {
        // SAFETY: we own a live intent.
        unsafe { self.0.as_ref() }
    }

    pub(super) fn into_raw(self) -> *mut Intent<K, V> {
        let p = self.0.as_ptr();
        std::mem::forget(self);
        p
    }

    /// Gives back the entries the intent took, and the shell. Readers that
    /// found the intent may still read those entries: the caller publishes
    /// or retires them (never drops them at once), and retires the shell.
    pub(crate) fn split(self) -> Split<K, V> {
        let i = self.get();
        // SAFETY: the intent took these from `OwnedEntry::into_raw` in
        // `new`, and `split` is the only way back: each is returned once
        // (the shell's pointers are never used to free).
        let take = |p: *mut Entry<K, V>| (!p.is_null()).then(|| unsafe { OwnedEntry::from_raw(p) });
        (take(i.new), take(i.old), self)
    }
}

impl<K, V> Drop for OwnedIntent<K, V> {
    fn drop(&mut self) {
        // SAFETY: we own the shell, from `Box::leak` in `new`. `Intent` has
        // no drop glue for its entries: dropping it frees only the shell.
        drop(unsafe { Box::from_raw(self.0.as_ptr()) });
    }
}
