//! The read table: what readers see of one shard. With `reclaim.rs`, the
//! crate's only modules with `unsafe` code.
//!
//! [`Slots`] is an open-addressing array (linear probing) of atomic pointers
//! to immutable entries (`Box<Entry>` turned into raw pointers). The shard
//! publishes its current array through one `AtomicPtr`; a reader pins itself
//! (`reclaim::pin`), loads that pointer, and reads slots with plain Acquire
//! loads. The owner of the shard is the only writer: a change swaps one
//! slot's pointer (Release), so a reader sees the old or the new entry of a
//! key, never a torn one.
//!
//! # Reclamation
//!
//! Each non-null, non-tombstone slot owns its entry. When the owner replaces
//! or removes an entry, it takes ownership of the old one as a [`Retired`]
//! item and hands it to its `reclaim::Garbage`, which frees it once no
//! reader pinned before the change is left. Growing the table publishes a
//! new array holding the same entry pointers (moved, not copied); the old
//! array is retired the same way, as a shell that frees no entries.
//!
//! Why not `ArcSwap` (as before): its guard costs two locked instructions
//! per `get`, which kept `get`s from overlapping their cache misses (see
//! `reclaim.rs` and docs/design.md). Why not an `ArcSwapOption` per slot
//! (before that): two arc-swap loads per `get`.

use crate::sync::{AtomicPtr, Ordering};
use std::borrow::Borrow;
use std::marker::PhantomData;
use std::ptr::NonNull;

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

fn tagged<K, V>(entry: OwnedEntry<K, V>) -> *mut Entry<K, V> {
    let t = tag(entry.hash());
    entry.into_raw().map_addr(|a| a | t)
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
    Live(OwnedEntry<K, V>),
}

/// One entry, owned: freed when dropped. What a slot owns, as a value the
/// owner can move around (into a slot, out of it, into its garbage).
pub(crate) struct OwnedEntry<K, V>(NonNull<Entry<K, V>>);

// SAFETY: an `OwnedEntry` owns its `Entry` exactly like a `Box` would, so
// it may cross threads when a `Box<Entry<K, V>>` may.
unsafe impl<K: Send, V: Send> Send for OwnedEntry<K, V> {}
// SAFETY: as above: `&OwnedEntry` gives only `&Entry`, like `&Box`.
unsafe impl<K: Sync, V: Sync> Sync for OwnedEntry<K, V> {}

impl<K, V> OwnedEntry<K, V> {
    pub(crate) fn new(hash: u64, key: K, value: V) -> Self {
        Self::new_in(EntryAlloc::new(), hash, key, value)
    }

    /// A new entry in memory that held an earlier one (no allocation).
    pub(crate) fn new_in(alloc: EntryAlloc<K, V>, hash: u64, key: K, value: V) -> Self {
        const { assert!(std::mem::align_of::<Entry<K, V>>() > TAG_MASK) };
        let p = alloc.0;
        std::mem::forget(alloc);
        // SAFETY: `p` is an allocation of `Entry`'s layout that holds no
        // value (`EntryAlloc`), and nobody else has it: we initialise it.
        unsafe { p.as_ptr().write(Entry { hash, key, value }) };
        Self(p)
    }

    /// Drops the key and value and keeps the memory for a later entry.
    pub(crate) fn into_alloc(self) -> EntryAlloc<K, V> {
        let p = self.0;
        std::mem::forget(self);
        // Built before the drop below: if the key's or value's `drop`
        // panics, this still frees the memory as it unwinds.
        let alloc = EntryAlloc(p, PhantomData);
        // SAFETY: we owned an initialised entry; after this it holds no
        // value, which is what `EntryAlloc` owns.
        unsafe { std::ptr::drop_in_place(p.as_ptr()) };
        alloc
    }

    fn hash(&self) -> u64 {
        // SAFETY: we own a live, initialised entry.
        unsafe { self.0.as_ref() }.hash
    }

    /// Gives up ownership: the raw pointer now owns the entry.
    fn into_raw(self) -> *mut Entry<K, V> {
        let p = self.0.as_ptr();
        std::mem::forget(self);
        p
    }

    /// Takes back ownership of a pointer from `into_raw`.
    ///
    /// # Safety
    /// `p` came from `into_raw` (untagged), and whoever held it gives up
    /// its ownership: it is not freed or taken back twice.
    unsafe fn from_raw(p: *mut Entry<K, V>) -> Self {
        // SAFETY: `into_raw` pointers are non-null.
        Self(unsafe { NonNull::new_unchecked(p) })
    }
}

impl<K, V> Drop for OwnedEntry<K, V> {
    fn drop(&mut self) {
        // SAFETY: we own an initialised entry allocated with `Entry`'s
        // layout by `EntryAlloc::new`, i.e. as a `Box<Entry>` would be.
        drop(unsafe { Box::from_raw(self.0.as_ptr()) });
    }
}

/// Memory for one entry, holding no value: what a freed entry leaves
/// behind, kept by the owner for its next write instead of going back to
/// the allocator (a write then costs no `malloc` and no `free`).
pub(crate) struct EntryAlloc<K, V>(NonNull<Entry<K, V>>, PhantomData<Entry<K, V>>);

// SAFETY: owns uninitialised memory only; no `K` or `V` is reachable.
unsafe impl<K, V> Send for EntryAlloc<K, V> {}

impl<K, V> EntryAlloc<K, V> {
    fn new() -> Self {
        let b: Box<std::mem::MaybeUninit<Entry<K, V>>> = Box::new_uninit();
        Self(NonNull::from(Box::leak(b)).cast(), PhantomData)
    }
}

impl<K, V> Drop for EntryAlloc<K, V> {
    fn drop(&mut self) {
        let p = self.0.as_ptr().cast::<std::mem::MaybeUninit<Entry<K, V>>>();
        // SAFETY: allocated as a `Box<MaybeUninit<Entry>>` (`new`, or the
        // same layout through `OwnedEntry`), holding no value: freeing it
        // as one drops nothing.
        drop(unsafe { Box::from_raw(p) });
    }
}

/// Something the owner unlinked from what readers see, waiting in its
/// garbage until no reader can hold it. Its fields are only ever dropped.
#[allow(dead_code)]
pub(crate) enum Retired<K, V> {
    /// A replaced or removed entry.
    Entry(OwnedEntry<K, V>),
    /// A slot array replaced by a bigger one; its entries moved there, so
    /// dropping it frees the array only.
    Slots(OwnedSlots<K, V>),
}

/// A slot array, owned (`Box`-like) and shareable with readers as a raw
/// pointer. Dropping it frees the array, never the entries it points to.
pub(crate) struct OwnedSlots<K, V>(NonNull<Slots<K, V>>);

// SAFETY: owns a `Slots` like a `Box` would; `Slots` itself is Send/Sync
// exactly when the entries it owns are (its `PhantomData`).
unsafe impl<K: Send, V: Send> Send for OwnedSlots<K, V> {}
// SAFETY: as above.
unsafe impl<K: Sync, V: Sync> Sync for OwnedSlots<K, V> {}

impl<K, V> OwnedSlots<K, V> {
    pub(crate) fn new(slots: Slots<K, V>) -> Self {
        Self(NonNull::from(Box::leak(Box::new(slots))))
    }

    /// The pointer readers load; valid while this (or its retirement) lives.
    pub(crate) fn as_ptr(&self) -> *mut Slots<K, V> {
        self.0.as_ptr()
    }

    pub(crate) fn get(&self) -> &Slots<K, V> {
        // SAFETY: we own a live `Slots`; only shared references are made.
        unsafe { self.0.as_ref() }
    }

    /// Frees every entry the array still points to, then the array: for the
    /// owner's current array when the shard goes (no reader is left).
    pub(crate) fn free_with_entries(self) {
        let slots = self.get();
        for slot in slots.slots.iter() {
            // Relaxed: no reader is left; the owner wrote every slot.
            let p = slot.swap(std::ptr::null_mut(), Ordering::Relaxed);
            if !p.is_null() && p != tomb() {
                // SAFETY: a live slot owns its entry (`tagged`); we took the
                // pointer out of the slot, so nobody else frees it.
                drop(unsafe { OwnedEntry::from_raw(untagged(p)) });
            }
        }
    }
}

impl<K, V> Drop for OwnedSlots<K, V> {
    fn drop(&mut self) {
        // SAFETY: we own the array; it came from `Box::leak` in `new`.
        drop(unsafe { Box::from_raw(self.0.as_ptr()) });
    }
}

/// The slot array.
pub(crate) struct Slots<K, V> {
    /// Null: empty, ends a probe chain. `tomb()`: removed, probe on. Anything
    /// else: an `OwnedEntry` given up with `into_raw`, tagged (`tagged`).
    slots: Box<[AtomicPtr<Entry<K, V>>]>,
    mask: usize,
    /// The array owns entries: Send/Sync exactly when `Box<Entry>` is.
    _owns: PhantomData<Box<Entry<K, V>>>,
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
            // SAFETY: `p` came from `OwnedEntry::into_raw` (only `publish`
            // and `place` store non-null, non-tomb pointers, and only such,
            // tagged in bits that alignment keeps zero). It is still
            // allocated: the owner frees an entry only after unlinking it
            // and then only once no reader pinned before the unlink is left
            // (module docs, reclaim.rs); callers are pinned readers or the
            // owner itself.
            View::Live(unsafe { &*p })
        }
    }

    /// The reader's lookup: no lock, no write to shared memory. The caller
    /// must be pinned (`reclaim::pin`) or be the owner.
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
                // SAFETY: as in `view`: a tagged entry pointer, not freed
                // while the caller is pinned (or is the owner).
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
        entry: Option<OwnedEntry<K, V>>,
        tomb_if_none: bool,
    ) -> Was<K, V> {
        let new = match entry {
            Some(e) => tagged(e),
            None if tomb_if_none => tomb(),
            None => std::ptr::null_mut(),
        };
        // Only the owner (this thread, under the token) writes slots, so a
        // load and a store do what a swap would, without a locked
        // instruction. Relaxed load: we wrote it ourselves. Release store:
        // publishes the new entry's fields to readers' Acquire loads.
        let old = self.slots[i].load(Ordering::Relaxed);
        self.slots[i].store(new, Ordering::Release);
        if old.is_null() {
            Was::Empty
        } else if old == tomb() {
            Was::Tomb
        } else {
            // SAFETY: a non-null, non-tomb slot pointer came from
            // `into_raw` (tagged; `untagged` restores it) and owned its
            // entry; the slot no longer holds it, so we take it over.
            Was::Live(unsafe { OwnedEntry::from_raw(untagged(old)) })
        }
    }

    /// Moves every live entry of `self` into `fresh` (owner side,
    /// rebuilding). `self` keeps its pointers for the readers still on it,
    /// but no longer owns them: from here it may only be read, then dropped
    /// as a shell (`Retired::Slots`).
    pub(crate) fn move_into(&self, fresh: &Slots<K, V>) {
        for slot in self.slots.iter() {
            let p = slot.load(Ordering::Acquire);
            if p.is_null() || p == tomb() {
                continue;
            }
            // SAFETY: a live slot owns its entry; ownership passes to
            // `fresh` here and `self` is never used to free it (its drop
            // frees the array only).
            fresh.place(unsafe { OwnedEntry::from_raw(untagged(p)) });
        }
    }

    /// Places a live entry into an array no reader has seen yet.
    fn place(&self, entry: OwnedEntry<K, V>) {
        let mut i = entry.hash() as usize & self.mask;
        while !self.is_empty_at(i) {
            i = (i + 1) & self.mask;
        }
        // Release: the array is published later (the shard's pointer store
        // is Release too); kept for uniformity with `publish`.
        self.slots[i].store(tagged(entry), Ordering::Release);
    }
}
