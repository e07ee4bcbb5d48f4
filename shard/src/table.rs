//! The read table: what readers see of one shard. This is the crate's only
//! module with `unsafe` code.
//!
//! [`Slots`] is an open-addressing array (linear probing) of atomic pointers
//! to immutable entries (`Arc<Entry>` turned into raw pointers). A [`Table`]
//! is one *epoch* of that array: the shard publishes the current `Table`
//! through its `ArcSwap`; a reader takes one guard on it and then reads slots
//! with plain Acquire loads. The owner of the shard is the only writer: a
//! change swaps one slot's pointer (Release), so a reader sees the old or the
//! new entry of a key, never a torn one.
//!
//! # Reclamation: epochs, counted by arc-swap
//!
//! An entry a reader can reach must stay allocated while the reader holds its
//! guard. Each non-null, non-tombstone slot owns one strong count of its
//! entry. When the owner replaces or removes an entry it keeps that count,
//! in its `retired` list for the current epoch. Every so often (`RETIRE_MIN`
//! entries) it starts a new epoch: a new `Table` over the *same* `Slots`
//! (O(1): nothing is copied), hands the retired list to the old `Table`, links
//! the old `Table` to the new one (`next`), and publishes the new one.
//!
//! A reader holding epoch `E` reads the live array, so it may load any entry
//! published before it reads, including ones retired in later epochs. Those
//! sit in the retired lists of `E` and of epochs after `E`, and `E` keeps all
//! of them alive through its `next` chain; epoch `E` itself is alive while
//! the reader's guard is. So an epoch's retired entries are freed only once
//! no reader holds that epoch or any earlier one: epoch-based reclamation in
//! which arc-swap does the reader counting. Growing the table starts an
//! epoch over new, bigger `Slots`; the old array keeps its own counts until
//! its last epoch goes.
//!
//! Why not an `ArcSwapOption` per slot (the safe version, kept in the git
//! history): it makes a `get` pay two arc-swap loads instead of one, measured
//! at 41 ns against 24 ns per hit here (docs/design.md).

use crate::sync::{Arc, AtomicPtr, Mutex, Ordering};
use std::borrow::Borrow;
use std::marker::PhantomData;

/// One cached entry. Immutable once published: a change publishes a new one.
#[derive(Debug)]
pub(crate) struct Entry<K, V> {
    /// The full hash, compared before the key so that a probe rarely calls
    /// the key's `Eq`.
    pub(crate) hash: u64,
    pub(crate) key: K,
    pub(crate) value: V,
}

/// The tombstone: a removed key's slot, which readers probe past. Address 1
/// can never be an `Entry` (entries are at least 8-aligned, so at or above
/// address 8), and it is never dereferenced.
fn tomb<K, V>() -> *mut Entry<K, V> {
    std::ptr::without_provenance_mut(1)
}

/// Entry pointers carry 3 bits of their key's hash in their low bits, which
/// alignment leaves free, so that a probe skips most other keys' entries
/// without touching them (one cache miss saved per skipped entry).
const TAG_MASK: usize = 0b111;

/// The tag of `hash`: bits the shard choice and the probe start do not use.
#[inline]
fn tag(hash: u64) -> usize {
    (hash >> 40) as usize & TAG_MASK
}

fn tagged<K, V>(entry: Arc<Entry<K, V>>) -> *mut Entry<K, V> {
    const { assert!(std::mem::align_of::<Entry<K, V>>() > TAG_MASK) };
    let t = tag(entry.hash);
    Arc::into_raw(entry).cast_mut().map_addr(|a| a | t)
}

fn untagged<K, V>(p: *mut Entry<K, V>) -> *mut Entry<K, V> {
    p.map_addr(|a| a & !TAG_MASK)
}

/// The outcome of an owner-side probe.
pub(crate) enum Probe {
    /// The key lives in this slot.
    Found(usize),
    /// The key is absent; this is where it would go (first tombstone on its
    /// chain, or the empty slot that ends the chain).
    Vacant(usize),
}

/// What a slot holds, as one load saw it.
enum View<'a, K, V> {
    Empty,
    Tomb,
    Live(&'a Entry<K, V>),
}

/// What a slot held before the owner changed it.
pub(crate) enum Was<K, V> {
    Empty,
    Tomb,
    Live(Arc<Entry<K, V>>),
}

/// The slot array.
pub(crate) struct Slots<K, V> {
    /// Null: empty, ends a probe chain. `tomb()`: removed, probe on. Anything
    /// else: from `Arc::into_raw`, tagged (`tagged`), owning one strong count.
    slots: Box<[AtomicPtr<Entry<K, V>>]>,
    mask: usize,
    /// The array owns `Arc<Entry>`s: Send/Sync exactly when those are.
    _owns: PhantomData<Arc<Entry<K, V>>>,
}

impl<K, V> std::fmt::Debug for Slots<K, V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Slots")
            .field("slots", &self.slots.len())
            .finish_non_exhaustive()
    }
}

impl<K, V> Slots<K, V> {
    /// An empty table of `capacity` slots (a power of two, at least 2).
    pub(crate) fn with_slots(capacity: usize) -> Self {
        debug_assert!(capacity.is_power_of_two() && capacity >= 2);
        let slots = (0..capacity)
            .map(|_| AtomicPtr::new(std::ptr::null_mut()))
            .collect();
        Self {
            slots,
            mask: capacity - 1,
            _owns: PhantomData,
        }
    }

    pub(crate) fn slot_count(&self) -> usize {
        self.slots.len()
    }

    /// What slot `i` holds, for the reader or the owner.
    ///
    /// A `Live` entry is valid for as long as the caller holds this table
    /// alive (module docs).
    #[inline]
    fn view(&self, i: usize) -> View<'_, K, V> {
        // Acquire: pairs with the Release swap in `publish` (and the store in
        // `place`), so the entry's fields are initialised before we read them.
        let p = self.slots[i].load(Ordering::Acquire);
        if p.is_null() {
            View::Empty
        } else if p == tomb() {
            View::Tomb
        } else {
            let p = untagged(p);
            // SAFETY: `p` came from `Arc::into_raw` (only `publish` and
            // `place` store non-null, non-tomb pointers, and only such,
            // tagged in bits that alignment keeps zero). It is still
            // allocated: callers reach `Slots` only through a `Table` (the
            // reader's guard) or as the owner, and either keeps every entry
            // published in this array alive while `&self` lives (module
            // docs: in a slot, in the owner's retired list, or in the retired
            // list of the guarded epoch or a later one, which it keeps alive).
            View::Live(unsafe { &*p })
        }
    }

    /// The reader's lookup: no lock, no write to shared memory.
    ///
    /// Terminates because the owner keeps at least a third of the slots
    /// empty (see `Owner::reserve`): every chain ends.
    #[inline]
    pub(crate) fn get<Q>(&self, hash: u64, key: &Q) -> Option<V>
    where
        K: Borrow<Q>,
        Q: Eq + ?Sized,
        V: Clone,
    {
        let want = tag(hash);
        // Masking with `len - 1` of the slice itself lets the compiler drop
        // the bounds check in the loop (the length is a power of two, >= 2).
        let slots = &*self.slots;
        let mask = slots.len().wrapping_sub(1);
        let mut i = hash as usize & mask;
        loop {
            // Acquire: as in `view`. The tag check reads no entry memory.
            let p = slots[i & mask].load(Ordering::Acquire);
            if p.is_null() {
                return None;
            }
            if p.addr() & TAG_MASK == want && p != tomb() {
                // SAFETY: as in `view`: a tagged entry pointer, kept alive by
                // this table while `&self` lives.
                let e = unsafe { &*untagged(p) };
                if e.hash == hash && e.key.borrow() == key {
                    return Some(e.value.clone());
                }
            }
            i += 1;
        }
    }

    /// The owner's lookup. Only the owner calls it, so the answer stays true
    /// until the owner itself changes the table.
    pub(crate) fn probe<Q>(&self, hash: u64, key: &Q) -> Probe
    where
        K: Borrow<Q>,
        Q: Eq + ?Sized,
    {
        let want = tag(hash);
        let mut i = hash as usize & self.mask;
        let mut first_tomb = None;
        loop {
            // Relaxed would do (only the owner writes slots), but `view`'s
            // Acquire is free on the platforms we measure and keeps one rule.
            let p = self.slots[i].load(Ordering::Acquire);
            if p.is_null() {
                return Probe::Vacant(first_tomb.unwrap_or(i));
            }
            if p == tomb() {
                first_tomb.get_or_insert(i);
            } else if p.addr() & TAG_MASK == want {
                if let View::Live(e) = self.view(i) {
                    if e.hash == hash && e.key.borrow() == key {
                        return Probe::Found(i);
                    }
                }
            }
            i = (i + 1) & self.mask;
        }
    }

    /// The value in slot `i`, if live (owner side).
    pub(crate) fn value_at(&self, i: usize) -> Option<&V> {
        match self.view(i) {
            View::Live(e) => Some(&e.value),
            _ => None,
        }
    }

    /// Whether slot `i` is empty (ends probe chains).
    pub(crate) fn is_empty_at(&self, i: usize) -> bool {
        matches!(self.view(i), View::Empty)
    }

    /// The slot after `i` on a probe chain.
    pub(crate) fn next(&self, i: usize) -> usize {
        (i + 1) & self.mask
    }

    /// Publishes `entry` (or a tombstone, or emptiness) at slot `i` and
    /// returns what was there. The swap is the moment readers see the
    /// change. The caller must keep a returned `Live` entry alive until this
    /// table is dropped (`retire`), since readers may still hold it.
    pub(crate) fn publish(
        &self,
        i: usize,
        entry: Option<Arc<Entry<K, V>>>,
        tomb_if_none: bool,
    ) -> Was<K, V> {
        let new = match entry {
            Some(e) => tagged(e),
            None if tomb_if_none => tomb(),
            None => std::ptr::null_mut(),
        };
        // Release: publishes the new entry's fields to readers' Acquire
        // load in `entry`. The old pointer needs no ordering: only the owner
        // (this thread, under the token) ever wrote it.
        let old = self.slots[i].swap(new, Ordering::Release);
        if old.is_null() {
            Was::Empty
        } else if old == tomb() {
            Was::Tomb
        } else {
            // SAFETY: a non-null, non-tomb slot pointer came from
            // `Arc::into_raw` (tagged; `untagged` restores it) and owned one
            // strong count, which the slot no longer holds: we take it over.
            Was::Live(unsafe { Arc::from_raw(untagged(old)) })
        }
    }

    /// Every live entry, with its own strong count (owner side, rebuilding).
    pub(crate) fn live(&self) -> impl Iterator<Item = Arc<Entry<K, V>>> + '_ {
        (0..self.slots.len()).filter_map(|i| {
            let p = self.slots[i].load(Ordering::Acquire);
            if p.is_null() || p == tomb() {
                return None;
            }
            let p = untagged(p);
            // SAFETY: as in `view`; and the slot keeps its own count, so
            // adding one for the caller leaves the slot's count intact.
            unsafe { Arc::increment_strong_count(p) };
            // SAFETY: the count added just above is the one this `Arc` owns.
            Some(unsafe { Arc::from_raw(p) })
        })
    }

    /// Places a live entry into a table no reader has seen yet.
    pub(crate) fn place(&self, entry: Arc<Entry<K, V>>) {
        let mut i = entry.hash as usize & self.mask;
        while !self.is_empty_at(i) {
            i = (i + 1) & self.mask;
        }
        // Release: the table is published later (through the shard's
        // ArcSwap, which orders this too); kept for uniformity with `publish`.
        self.slots[i].store(tagged(entry), Ordering::Release);
    }
}

impl<K, V> Drop for Slots<K, V> {
    fn drop(&mut self) {
        for slot in self.slots.iter() {
            // Relaxed: `&mut self`, nobody else is left to race with.
            let p = slot.load(Ordering::Relaxed);
            if !p.is_null() && p != tomb() {
                // SAFETY: the slot owned one strong count from
                // `Arc::into_raw` (tagged); `&mut self` means no reader is left.
                drop(unsafe { Arc::from_raw(untagged(p)) });
            }
        }
    }
}

/// One epoch of a shard's read table: what the shard's `ArcSwap` publishes.
pub(crate) struct Table<K, V> {
    slots: Arc<Slots<K, V>>,
    /// Entries replaced while this epoch was current; set once it ends.
    retired: Mutex<Vec<Arc<Entry<K, V>>>>,
    /// The epoch after this one, kept alive by this one (module docs).
    next: Mutex<Option<Arc<Table<K, V>>>>,
}

impl<K, V> std::fmt::Debug for Table<K, V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Table")
            .field("slots", &self.slots)
            .finish_non_exhaustive()
    }
}

impl<K, V> Table<K, V> {
    pub(crate) fn new(slots: Arc<Slots<K, V>>) -> Self {
        Self {
            slots,
            retired: Mutex::new(Vec::new()),
            next: Mutex::new(None),
        }
    }

    /// The slot array of this epoch.
    #[inline]
    pub(crate) fn slots(&self) -> &Slots<K, V> {
        &self.slots
    }

    /// The same array, for the next epoch.
    pub(crate) fn share_slots(&self) -> Arc<Slots<K, V>> {
        self.slots.clone()
    }

    /// The reader's lookup (see [`Slots::get`]).
    #[inline]
    pub(crate) fn get<Q>(&self, hash: u64, key: &Q) -> Option<V>
    where
        K: Borrow<Q>,
        Q: Eq + ?Sized,
        V: Clone,
    {
        self.slots.get(hash, key)
    }

    /// Ends this epoch: it keeps the entries replaced while it was current,
    /// and the epoch after it, until its last reader lets go.
    pub(crate) fn retire(&self, entries: Vec<Arc<Entry<K, V>>>, next: Arc<Table<K, V>>) {
        *self.retired.lock().unwrap_or_else(|e| e.into_inner()) = entries;
        *self.next.lock().unwrap_or_else(|e| e.into_inner()) = Some(next);
    }
}

impl<K, V> Drop for Table<K, V> {
    fn drop(&mut self) {
        // Unlink the chain of later epochs iteratively: a reader that held an
        // old epoch for long can leave thousands behind it, and dropping them
        // recursively could overflow the stack.
        let mut next = self
            .next
            .get_mut()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        while let Some(epoch) = next {
            match Arc::try_unwrap(epoch) {
                Ok(mut epoch) => {
                    next = epoch
                        .next
                        .get_mut()
                        .unwrap_or_else(|e| e.into_inner())
                        .take();
                }
                Err(_) => break, // someone still holds it; it goes later
            }
        }
    }
}
