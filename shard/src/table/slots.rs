//! The slot array: probing (readers' [`Slots::find`], the owner's
//! probes), publication of one slot, the array's allocation and its
//! publication to readers ([`Published`]), and growth.

use super::*;

/// What [`Slots::find`]'s loop found.
pub(crate) enum Found<'a, K, V> {
    /// The key's entry, in a slot that carries the key's tag.
    Entry(EntryRef<'a, K, V>),
    /// The chain ended: the key is absent.
    Absent,
    /// An untagged entry or an intent at this slot, where
    /// [`Slots::find_from`] goes on.
    Rest(usize),
}

/// The outcome of an owner-side probe.
#[derive(Clone, Copy)]
pub(crate) enum Probe {
    /// The key lives in this slot (an entry or an intent).
    Found(usize),
    /// The key is absent; this is where it would go (first tombstone on its
    /// chain, or the empty slot that ends the chain).
    Vacant(usize),
}

/// What a slot holds, as one load saw it.
pub(crate) enum View<'a, K, V> {
    Empty,
    Tomb,
    Live(EntryRef<'a, K, V>),
    Intent(&'a Intent<K, V>),
}

/// What the owner puts in a slot.
pub(crate) enum Put<K, V> {
    Entry(OwnedEntry<K, V>),
    Intent(OwnedIntent<K, V>),
    Tomb,
    Empty,
}

/// What a slot held before the owner changed it.
pub(crate) enum Was<K, V> {
    Empty,
    Tomb,
    Live(OwnedEntry<K, V>),
    Intent(OwnedIntent<K, V>),
}

/// A slot array, owned (`Box`-like) and shareable with readers as a raw
/// pointer. Dropping it frees the array, never the entries it points to.
pub(crate) struct OwnedSlots<K, V>(pub(super) NonNull<Slots<K, V>>);

// SAFETY: owns a `Slots` like a `Box` would; `Slots` itself is Send/Sync
// exactly when the entries it owns are (its `PhantomData`).
unsafe impl<K: Send, V: Send> Send for OwnedSlots<K, V> {}
// SAFETY: as above.
unsafe impl<K: Sync, V: Sync> Sync for OwnedSlots<K, V> {}

impl<K, V> OwnedSlots<K, V> {
    pub(crate) fn new(slots: Slots<K, V>) -> Self {
        Self(NonNull::from(Box::leak(Box::new(slots))))
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
            // Relaxed: no reader is left; the owner wrote every slot. A load,
            // not a swap: `self` is consumed, so nothing reads the slots after
            // this walk, and a slot never written stays untouched memory (a
            // large first table: `SlotArray::try_new`).
            let p = slot.load(Ordering::Relaxed);
            if p.is_null() || p == tomb() {
                continue;
            }
            if is_intent(p) {
                // SAFETY: an intent slot owns its shell (`tagged_intent`);
                // its entries are owned by the owner's pending transaction,
                // which is dropped with the owner: split them off and free
                // them here, once.
                let intent: OwnedIntent<K, V> =
                    unsafe { OwnedIntent(NonNull::new_unchecked(untagged(p).cast())) };
                let (new, old, _shell) = intent.split();
                drop((new, old));
            } else {
                // SAFETY: a live slot owns its entry (`tagged`); this walk,
                // which consumes the array, is the only one to free it.
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

/// How a slot array's address is aligned: the low six bits of its address
/// are free to carry the array's size in the published word.
pub(super) const ARRAY_ALIGN: usize = 64;

/// A slot array starting at a multiple of [`ARRAY_ALIGN`] inside its
/// allocation (a `Box<[_]>` cannot promise more than the element's
/// alignment). Holds atomics only:
/// what the slots point to is owned through [`Slots`].
pub(super) struct SlotArray<K, V> {
    pub(super) ptr: NonNull<AtomicPtr<Entry<K, V>>>,
    pub(super) len: usize,
    /// Bytes from the start of the allocation to `ptr` (see `try_new`).
    pub(super) lead: usize,
}

// SAFETY: an array of atomics, shared and sent like `Box<[AtomicPtr<_>]>`
// (which is Send and Sync whatever the pointee); ownership of the entries
// is expressed on `Slots`.
unsafe impl<K, V> Send for SlotArray<K, V> {}
// SAFETY: as above.
unsafe impl<K, V> Sync for SlotArray<K, V> {}

impl<K, V> SlotArray<K, V> {
    /// The allocation for `len` slots, if its size fits in `isize`: room
    /// for them and [`ARRAY_ALIGN`] more, aligned only as the allocator's
    /// own minimum (16), so that `alloc_zeroed` is `calloc`, which takes
    /// fresh zero pages without writing them; an alignment of 64 would
    /// make std write every byte. The array starts at the first multiple
    /// of 64 inside it.
    pub(super) fn try_layout(len: usize) -> Option<std::alloc::Layout> {
        let bytes = len
            .checked_mul(std::mem::size_of::<AtomicPtr<Entry<K, V>>>())?
            .checked_add(ARRAY_ALIGN)?;
        std::alloc::Layout::from_size_align(bytes, 16).ok()
    }

    pub(super) fn layout(len: usize) -> std::alloc::Layout {
        Self::try_layout(len).expect("a slot array's size fits in isize")
    }

    /// `len` empty slots (`len` > 0), or `None` if their size does not fit
    /// in `isize` or the allocator has no memory for them (a shard's first
    /// table, sized by the user's `initial_capacity`).
    pub(super) fn try_new(len: usize) -> Option<Self> {
        debug_assert!(len > 0);
        let layout = Self::try_layout(len)?;
        // SAFETY: the layout has a nonzero size (at least `ARRAY_ALIGN`).
        let raw = unsafe { std::alloc::alloc_zeroed(layout) };
        if raw.is_null() {
            return None;
        }
        // The bytes up to the next multiple of `ARRAY_ALIGN`: at most
        // `ARRAY_ALIGN - 1`, so `len` slots still fit after them.
        let lead = raw.addr().wrapping_neg() & (ARRAY_ALIGN - 1);
        let ptr = raw.wrapping_add(lead).cast::<AtomicPtr<Entry<K, V>>>();
        // SAFETY: inside an allocation just made, so not null.
        let ptr = unsafe { NonNull::new_unchecked(ptr) };
        // All-zero bytes are `len` null `AtomicPtr`s already (an
        // `AtomicPtr` has the representation of a raw pointer, and null is
        // address 0), so a large first table is taken from the system only
        // as its slots are used. Under loom they are not plain words.
        #[cfg(coherent_loom)]
        for i in 0..len {
            // SAFETY: `i < len`, inside the allocation just made for `len`
            // slots; each is written once before any is read.
            unsafe { ptr.add(i).write(AtomicPtr::new(std::ptr::null_mut())) };
        }
        Some(Self { ptr, len, lead })
    }

    /// The word readers load: the array's address with log2 of its length
    /// in the low bits (`len` a power of two, so at most 63).
    pub(super) fn word(&self) -> *mut AtomicPtr<Entry<K, V>> {
        debug_assert!(self.len.is_power_of_two());
        let bits = self.len.trailing_zeros() as usize;
        self.ptr.as_ptr().map_addr(|a| a | bits)
    }
}

impl<K, V> std::ops::Deref for SlotArray<K, V> {
    type Target = [AtomicPtr<Entry<K, V>>];
    #[inline]
    fn deref(&self) -> &[AtomicPtr<Entry<K, V>>] {
        // SAFETY: `len` initialised slots from `new`, alive until drop.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }
}

impl<K, V> Drop for SlotArray<K, V> {
    fn drop(&mut self) {
        // SAFETY: the slots were initialised in `try_new` and are dropped
        // once, here; then the memory goes back from the start of the
        // allocation (`lead` bytes before the array, inside it) with the
        // layout it came with.
        unsafe {
            std::ptr::drop_in_place(std::ptr::slice_from_raw_parts_mut(
                self.ptr.as_ptr(),
                self.len,
            ));
            std::alloc::dealloc(
                self.ptr.as_ptr().cast::<u8>().sub(self.lead),
                Self::layout(self.len),
            );
        }
    }
}

/// Where a shard publishes its current slot array to readers: one word,
/// the array's address with log2 of its length in the six low bits, so
/// that a `get` reaches the slot with one load fewer than through a
/// pointer to [`Slots`] (docs/design.md, "Where the time goes in `get`").
pub(crate) struct Published<K, V>(pub(super) AtomicPtr<AtomicPtr<Entry<K, V>>>);

impl<K, V> Published<K, V> {
    /// Publishes `slots` (owned by an [`OwnedSlots`] that outlives every
    /// reader of this word: the owner retires it after replacing it).
    pub(crate) fn new(slots: &Slots<K, V>) -> Self {
        Self(AtomicPtr::new(slots.slots.word()))
    }

    /// Replaces the published array with `slots`. Release: pairs with the
    /// reader's Acquire in [`read`](Self::read), so the entries placed in
    /// the new array are visible.
    pub(crate) fn publish(&self, slots: &Slots<K, V>) {
        self.0.store(slots.slots.word(), Ordering::Release);
    }

    /// The slots of the published array.
    ///
    /// # Safety
    /// The caller is pinned (`reclaim::pin`), or is the owner; the slice is
    /// used only while it is (a replaced array is freed only after every
    /// reader pinned before its replacement has unpinned).
    #[inline]
    pub(crate) unsafe fn read(&self) -> &[AtomicPtr<Entry<K, V>>] {
        // Acquire: pairs with `publish`'s Release.
        let word = self.0.load(Ordering::Acquire);
        let len = 1usize << (word.addr() & (ARRAY_ALIGN - 1));
        let base = word.map_addr(|a| a & !(ARRAY_ALIGN - 1));
        // SAFETY: `word` came from `SlotArray::word` of an array still
        // allocated (caller's contract), which holds `len` initialised
        // slots at `base`.
        unsafe { std::slice::from_raw_parts(base, len) }
    }
}

/// The slot array.
pub(crate) struct Slots<K, V> {
    /// Null: empty, ends a probe chain. `tomb()`: removed, probe on. Anything
    /// else: an `OwnedEntry` given up with `into_raw`, tagged (`tagged`).
    pub(super) slots: SlotArray<K, V>,
    pub(super) mask: usize,
    /// The array owns entries: Send/Sync exactly when `Box<Entry>` is.
    pub(super) _owns: PhantomData<Box<Entry<K, V>>>,
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
    /// Aborts as `Vec` does if the memory cannot be had: a table grows
    /// only with its entries (a first table sized by the user goes through
    /// [`try_with_slots`](Self::try_with_slots)).
    pub(crate) fn with_slots(capacity: usize) -> Self {
        Self::try_with_slots(capacity)
            .unwrap_or_else(|| std::alloc::handle_alloc_error(SlotArray::<K, V>::layout(capacity)))
    }

    /// [`with_slots`](Self::with_slots), or `None` if the memory cannot be
    /// had (`SlotArray::try_new`).
    pub(crate) fn try_with_slots(capacity: usize) -> Option<Self> {
        debug_assert!(capacity.is_power_of_two() && capacity >= 2);
        Some(Self {
            slots: SlotArray::try_new(capacity)?,
            mask: capacity - 1,
            _owns: PhantomData,
        })
    }

    pub(crate) fn slot_count(&self) -> usize {
        self.slots.len()
    }

    /// What slot `i` holds, for the reader or the owner.
    ///
    /// What it points to stays valid while the caller is pinned, or is the
    /// owner (module docs).
    #[inline]
    pub(crate) fn view(&self, i: usize) -> View<'_, K, V> {
        // Acquire: pairs with the Release store in `publish` (and in
        // `place`), so the entry's fields are initialised before we read them.
        let p = self.slots[i].load(Ordering::Acquire);
        // SAFETY: just loaded (Acquire) from one of this array's slots.
        unsafe { self.view_of(p) }
    }

    /// The entries in cells this array reaches, in its slots and in their
    /// intents (tests, owner side).
    #[cfg(all(test, not(coherent_loom)))]
    pub(crate) fn entries_in_cells(&self) -> usize {
        let cell = |p: *mut Entry<K, V>| {
            // SAFETY: an intent's entries are allocated while it is in the
            // table (`Intent::key`); the caller is the owner.
            (!p.is_null() && unsafe { EntryRef::new(p) }.in_cell()) as usize
        };
        (0..self.slot_count())
            .map(|i| match self.view(i) {
                View::Live(e) => e.in_cell() as usize,
                View::Intent(it) => cell(it.new) + cell(it.old),
                View::Empty | View::Tomb => 0,
            })
            .sum()
    }

    /// What a slot pointer points to (see `view`).
    ///
    /// # Safety
    /// `p` was loaded, with Acquire, from one of this array's slots by a
    /// pinned reader or by the owner, who still is.
    #[inline]
    pub(super) unsafe fn view_of(&self, p: *mut Entry<K, V>) -> View<'_, K, V> {
        if p.is_null() {
            View::Empty
        } else if p == tomb() {
            View::Tomb
        } else if is_intent(p) {
            // SAFETY: an intent bit is set only by `tagged_intent`, on a
            // pointer from `OwnedIntent::into_raw`; kept allocated as an
            // entry is (below).
            View::Intent(unsafe { &*untagged(p).cast::<Intent<K, V>>() })
        } else {
            let p = untagged(p);
            // SAFETY: `p` came from `OwnedEntry::into_raw` (only `publish`
            // and `place` store non-null, non-tomb pointers, and only such,
            // tagged in bits that alignment keeps zero). It is still
            // allocated: the owner frees an entry only after unlinking it
            // and then only once no reader pinned before the unlink is left
            // (module docs, reclaim.rs); callers are pinned readers or the
            // owner itself.
            View::Live(unsafe { EntryRef::new(p) })
        }
    }

    /// The reader's lookup: no lock, no write to shared memory. The caller
    /// must be pinned (`reclaim::pin`) or be the owner; the entry stays
    /// valid while it is. The loop looks only at slots carrying a tag: it
    /// stops at an untagged entry or an intent with [`Found::Rest`], and
    /// [`find_from`](Self::find_from) goes on from there, so that the loop
    /// calls nothing and the caller's way on is a call in tail position.
    ///
    /// Terminates because the owner keeps at least a third of the slots
    /// empty (see `Owner::reserve`): every chain ends.
    #[inline]
    pub(crate) fn find<'a, Q>(
        slots: &'a [AtomicPtr<Entry<K, V>>],
        hash: u64,
        key: &Q,
    ) -> Found<'a, K, V>
    where
        K: Borrow<Q>,
        Q: Eq + ?Sized,
    {
        let want = tag(hash);
        // Masking with `len - 1` of the slice itself lets the compiler drop
        // the bounds check in the loop (the length is a power of two, >= 2).
        let mask = slots.len().wrapping_sub(1);
        let mut i = hash as usize & mask;
        loop {
            // Acquire: as in `view`. The tag check reads no entry memory.
            let p = slots[i & mask].load(Ordering::Acquire);
            if p.is_null() {
                return Found::Absent;
            }
            let a = p.addr();
            if a & (HIGH | KIND) == want {
                // A tagged entry with our tag (kind 0; the tombstone's kind
                // is 1): its address is the word with the tag cleared,
                // which, the tag being ours, is one XOR.
                // SAFETY: as in `view`: an entry pointer, not freed while
                // the caller is pinned (or is the owner); the slot's
                // pointer covers the entry's allocation.
                let e = unsafe { EntryRef::new(p.map_addr(|a| a ^ want)) };
                if e.key.borrow() == key {
                    return Found::Entry(e);
                }
            } else if a & KIND >= RAW {
                // Rare: an untagged entry or an intent.
                return Found::Rest(i);
            }
            i += 1;
        }
    }

    /// [`find`](Self::find) from slot `i` on (`i` may exceed the mask),
    /// looking into every kind of slot: what `find` hands over once it meets
    /// an untagged entry or an intent. The caller is pinned, as for `find`.
    #[inline(never)]
    pub(crate) fn find_from<'a, Q>(
        slots: &'a [AtomicPtr<Entry<K, V>>],
        mut i: usize,
        hash: u64,
        key: &Q,
        visible: Visible<'_>,
    ) -> Option<EntryRef<'a, K, V>>
    where
        K: Borrow<Q>,
        Q: Eq + ?Sized,
    {
        let want = tag(hash);
        let mask = slots.len().wrapping_sub(1);
        loop {
            // Acquire: as in `view`.
            let p = slots[i & mask].load(Ordering::Acquire);
            if p.is_null() {
                return None;
            }
            if may_match(p.addr(), want) {
                // SAFETY: as in `find`, for an entry of either kind.
                let e = unsafe { EntryRef::new(untagged(p)) };
                if e.hashed(hash | MARKS) && e.key.borrow() == key {
                    return Some(e);
                }
            } else if is_intent(p) {
                // SAFETY: as in `view`, for an intent.
                let intent = unsafe { &*untagged(p).cast::<Intent<K, V>>() };
                if intent.hash == hash && intent.key().borrow() == key {
                    let e = intent.seen_at(visible.watermark());
                    // SAFETY: an intent's entries live as long as it is
                    // reachable (module docs); null means absent.
                    return (!e.is_null()).then(|| unsafe { EntryRef::new(e) });
                }
            }
            i += 1;
        }
    }

    /// The owner's lookup. Only the owner calls it, so the answer stays true
    /// until the owner itself changes the table.
    #[inline]
    pub(crate) fn probe<Q>(&self, hash: u64, key: &Q) -> Probe
    where
        K: Borrow<Q>,
        Q: Eq + ?Sized,
    {
        self.probe_entry(hash, key).0
    }

    /// [`probe`](Self::probe), with the key's entry when the slot found
    /// holds a live entry (not an intent): for a caller that goes on to
    /// read it, so that it need not load and decode the slot again.
    #[inline]
    pub(crate) fn probe_entry<Q>(&self, hash: u64, key: &Q) -> (Probe, Option<EntryRef<'_, K, V>>)
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
                return (Probe::Vacant(first_tomb.unwrap_or(i)), None);
            }
            if p == tomb() {
                first_tomb.get_or_insert(i);
            } else if may_match(p.addr(), want) || is_intent(p) {
                // SAFETY: `p` was just loaded (Acquire) from slot `i`, and we
                // are the owner.
                match unsafe { self.view_of(p) } {
                    View::Live(e) => {
                        if e.hashed(hash | MARKS) && e.key.borrow() == key {
                            return (Probe::Found(i), Some(e));
                        }
                    }
                    View::Intent(it) => {
                        if it.hash == hash && it.key().borrow() == key {
                            return (Probe::Found(i), None);
                        }
                    }
                    View::Empty | View::Tomb => {}
                }
            }
            i = (i + 1) & self.mask;
        }
    }

    /// The value in slot `i` as of now, if live (owner side; for an intent,
    /// the value it stages: every change the owner makes to a key with a
    /// pending intent is ordered after that intent).
    pub(crate) fn value_at(&self, i: usize) -> Option<&V> {
        match self.view(i) {
            // SAFETY: owner side: the caller holds the token, so no
            // in-place replacement runs while the reference lives.
            View::Live(e) => Some(unsafe { e.entry().value.get() }),
            View::Intent(it) => it.new_value(),
            View::Empty | View::Tomb => None,
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

    /// Publishes `put` at slot `i` and returns what was there. The store is
    /// the moment readers see the change. The caller must not drop a
    /// returned entry or intent at once (readers may still hold it): it
    /// publishes it elsewhere or retires it.
    #[inline]
    pub(crate) fn publish(&self, i: usize, put: Put<K, V>) -> Was<K, V> {
        // Only the owner (this thread, under the token) writes slots, so
        // taking the old value over and storing the new one does what a
        // swap would, without a locked instruction.
        let was = self.take_at(i);
        self.store_at(i, put);
        was
    }

    /// Takes over what slot `i` holds without changing it. Private: each
    /// caller below stores a new value into slot `i` before it returns, so
    /// the slot never keeps a pointer whose ownership left it.
    #[inline]
    pub(super) fn take_at(&self, i: usize) -> Was<K, V> {
        // Relaxed: only the owner (the caller) writes slots.
        let p = self.slots[i].load(Ordering::Relaxed);
        if p.is_null() {
            Was::Empty
        } else if p == tomb() {
            Was::Tomb
        } else if is_intent(p) {
            // SAFETY: an intent slot owns its shell (`tagged_intent`); the
            // caller overwrites the slot before returning (see above).
            Was::Intent(OwnedIntent(unsafe {
                NonNull::new_unchecked(untagged(p).cast())
            }))
        } else {
            // SAFETY: a live slot owns its entry (`tagged`); as above.
            Was::Live(unsafe { OwnedEntry::from_raw(untagged(p)) })
        }
    }

    /// Stores into slot `i` what `take_at` took over (Release: readers see
    /// the new entry's or intent's fields initialised).
    #[inline]
    pub(super) fn store_at(&self, i: usize, put: Put<K, V>) {
        let p = match put {
            Put::Entry(e) => tagged(e),
            Put::Intent(it) => tagged_intent(it),
            Put::Tomb => tomb(),
            Put::Empty => std::ptr::null_mut(),
        };
        self.slots[i].store(p, Ordering::Release);
    }

    /// Stages transaction `stamp`'s `new` value (None: removal) for the key
    /// whose plain entry (or vacancy) is at slot `i`: readers see an intent
    /// that shows the current entry until the watermark reaches `stamp`.
    /// Returns false, changing nothing, when there is nothing to stage (a
    /// removal of an absent key). Panics if slot `i` already holds an
    /// intent: the owner restages those instead.
    pub(crate) fn stage(
        &self,
        i: usize,
        hash: u64,
        stamp: u64,
        new: Option<OwnedEntry<K, V>>,
    ) -> bool {
        let (old, vacancy) = match self.take_at(i) {
            Was::Live(e) => (Some(e), None),
            Was::Empty => (None, Some(Put::Empty)),
            Was::Tomb => (None, Some(Put::Tomb)),
            Was::Intent(it) => {
                self.store_at(i, Put::Intent(it));
                panic!("stage over a pending intent");
            }
        };
        if new.is_none() && old.is_none() {
            self.store_at(i, vacancy.unwrap_or(Put::Empty));
            return false;
        }
        self.store_at(i, Put::Intent(OwnedIntent::new(hash, stamp, new, old)));
        true
    }

    /// Replaces the intent at slot `i` by one with the same stamp and old
    /// value and a `new` value of a later write (None: removal). Returns the
    /// superseded new value and the old intent's shell, to retire, and
    /// whether the slot still holds an intent: if both values are absent it
    /// becomes `vacancy` instead.
    pub(crate) fn restage(
        &self,
        i: usize,
        new: Option<OwnedEntry<K, V>>,
        vacancy: Put<K, V>,
    ) -> (Option<OwnedEntry<K, V>>, OwnedIntent<K, V>, bool) {
        let Was::Intent(intent) = self.take_at(i) else {
            unreachable!("restage of a slot without an intent");
        };
        let (hash, stamp) = (intent.get().hash, intent.get().stamp);
        let (superseded, old, shell) = intent.split();
        let staged = new.is_some() || old.is_some();
        if staged {
            self.store_at(i, Put::Intent(OwnedIntent::new(hash, stamp, new, old)));
        } else {
            self.store_at(i, vacancy);
        }
        (superseded, shell, staged)
    }

    /// Ends the intent at slot `i`: the slot gets its new value (`keep_new`)
    /// or its old one, as a plain entry, or `vacancy` if that value is
    /// absent. Returns the other value and the shell, to retire, and
    /// whether the slot is now vacant.
    pub(crate) fn resolve(
        &self,
        i: usize,
        keep_new: bool,
        vacancy: Put<K, V>,
    ) -> (Option<OwnedEntry<K, V>>, OwnedIntent<K, V>, bool) {
        let Was::Intent(intent) = self.take_at(i) else {
            unreachable!("resolve of a slot without an intent");
        };
        let (new, old, shell) = intent.split();
        let (kept, other) = if keep_new { (new, old) } else { (old, new) };
        let vacant = kept.is_none();
        self.store_at(i, kept.map_or(vacancy, Put::Entry));
        (other, shell, vacant)
    }

    /// Moves every live entry and intent of `self` into `fresh` (owner
    /// side, rebuilding). `self` keeps its pointers for the readers still
    /// on it, but no longer owns them: from here it may only be read, then
    /// dropped as a shell (`Retired::Slots`).
    pub(crate) fn move_into(&self, fresh: &Slots<K, V>) {
        for (i, slot) in self.slots.iter().enumerate() {
            let hash = match self.view(i) {
                View::Empty | View::Tomb => continue,
                View::Live(e) => e.hash(),
                View::Intent(it) => it.hash,
            };
            // Ownership of what the pointer points to passes to `fresh`;
            // `self` is never used to free it (its drop frees the array
            // only). The tag bits travel with the pointer.
            fresh.place(hash, slot.load(Ordering::Relaxed));
        }
    }

    /// Hands every entry and intent the array points to over to `take`,
    /// as owned values (closing the shard: the array was replaced by an
    /// empty one). Like [`move_into`](Self::move_into), `self` keeps its
    /// pointers for the readers still on it but no longer owns them: from
    /// here it may only be read, then dropped as a shell
    /// (`Retired::Slots`), after whatever `take` retires.
    pub(crate) fn disown_all(&self, mut take: impl FnMut(Was<K, V>)) {
        for slot in self.slots.iter() {
            // Relaxed: the owner wrote every slot.
            let p = slot.load(Ordering::Relaxed);
            if p.is_null() || p == tomb() {
                continue;
            }
            take(if is_intent(p) {
                // SAFETY: an intent slot owns its shell and, through it, its
                // entries (`tagged_intent`, `free_with_entries`); ownership
                // passes to `take`, and `self` never frees it (its drop
                // frees the array only).
                Was::Intent(unsafe { OwnedIntent(NonNull::new_unchecked(untagged(p).cast())) })
            } else {
                // SAFETY: a live slot owns its entry (`tagged`); ownership
                // passes to `take`, as above.
                Was::Live(unsafe { OwnedEntry::from_raw(untagged(p)) })
            });
        }
    }

    /// Places a tagged slot pointer into an array no reader has seen yet.
    pub(super) fn place(&self, hash: u64, p: *mut Entry<K, V>) {
        let mut i = hash as usize & self.mask;
        while !self.is_empty_at(i) {
            i = (i + 1) & self.mask;
        }
        // Release: the array is published later (the shard's pointer store
        // is Release too); kept for uniformity with `publish`.
        self.slots[i].store(p, Ordering::Release);
    }
}
