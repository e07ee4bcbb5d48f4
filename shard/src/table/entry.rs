//! Entries: the three layouts (plain, extended, expiring) behind one
//! header, references that reach the whole layout, owned entries and
//! retired ones. The owner builds, replaces and frees them; readers only
//! read an entry through an [`EntryRef`] while pinned.

use super::*;

/// One cached entry. Its key and value never change once published: a
/// change publishes a new entry.
///
/// Three layouts ([`Kind`]) share this header. A plain entry is just this
/// (24 bytes for `u64` keys and values, in a 32-byte cell). An extended
/// entry (every entry of a bounded shard) is the header followed by an
/// [`Extra`] ([`Extended`], 32 bytes for `u64`s), marked by a bit of
/// `stored` ([`EXT`]); an entry that can expire is an extended one followed
/// by its clock ([`Expiring`], 56 bytes for `u64`s), marked by [`EXT`] and
/// [`MORTAL`]. So a cache pays for capacity and expiry only when it uses
/// them. The parts past the header are reached only through raw pointers
/// that cover the whole allocation ([`EntryRef`]), never through `&Entry`.
/// Entries of up to 64 bytes live in cells (`cells.rs`), larger ones in
/// their own allocation.
#[repr(C)]
#[derive(Debug)]
pub(crate) struct Entry<K, V> {
    /// The full hash, with bits 38 and 39 replaced by the marks
    /// [`MORTAL`] and [`EXT`]; compared before the key so that a probe
    /// rarely calls the key's `Eq`.
    pub(super) stored: u64,
    pub(crate) key: K,
    /// Replaced in place only for a word type (`value.rs`).
    pub(crate) value: Value<V>,
}

/// The mark of an extended entry in `Entry::stored`: bit 39 of the hash,
/// which nothing derives a position from (a probe starts from the low bits,
/// at most 2^38 slots; the slot tag comes from bits 40-63; the shard from
/// the lookup hash, never a stored one). A stored hash therefore still
/// places its entry after a rebuild, and tags it.
pub(super) const EXT: u64 = 1 << 39;

/// The mark of an entry that can expire ([`Expiring`]) in
/// `Entry::stored`: bit 38, free for the same reasons as [`EXT`] (a probe
/// starts from bits 0-37). So a read of an entry that cannot expire stops
/// at `Extra::freq`, right after the value, and never loads the clock
/// (docs/design.md, "The bounded `get` and the bounded write").
pub(super) const MORTAL: u64 = 1 << 38;

/// The bits of `Entry::stored` that are marks, not hash.
pub(super) const MARKS: u64 = EXT | MORTAL;

/// The marks ([`EntryRef::marks`]) of an entry that cannot expire, in a
/// shard that is `bounded` (extended) or not (plain).
pub(crate) fn marks_of_a_lasting_entry(bounded: bool) -> u64 {
    if bounded {
        EXT
    } else {
        0
    }
}

/// An extended entry: the header, then what only bounded or expiring
/// entries need.
#[repr(C)]
pub(super) struct Extended<K, V> {
    pub(super) entry: Entry<K, V>,
    pub(super) extra: Extra,
}

/// An entry that can expire: an extended entry, then its clock.
#[repr(C)]
pub(super) struct Expiring<K, V> {
    pub(super) ext: Extended<K, V>,
    pub(super) life: Mortal,
}

/// An entry's layout, told by the marks in its `stored` word.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// [`Entry`] alone: an unbounded shard's entry that cannot expire.
    Plain,
    /// [`Extended`]: a bounded shard's entry that cannot expire.
    Ext,
    /// [`Expiring`]: an entry that can expire.
    Mortal,
}

impl Kind {
    #[inline(always)]
    pub(super) fn of(stored: u64) -> Self {
        if stored & MORTAL != 0 {
            Kind::Mortal
        } else if stored & EXT != 0 {
            Kind::Ext
        } else {
            Kind::Plain
        }
    }

    pub(super) fn marks(self) -> u64 {
        match self {
            Kind::Plain => 0,
            Kind::Ext => EXT,
            Kind::Mortal => EXT | MORTAL,
        }
    }

    /// The layout of this kind of entry.
    pub(super) fn layout<K, V>(self) -> std::alloc::Layout {
        match self {
            Kind::Plain => std::alloc::Layout::new::<Entry<K, V>>(),
            Kind::Ext => std::alloc::Layout::new::<Extended<K, V>>(),
            Kind::Mortal => std::alloc::Layout::new::<Expiring<K, V>>(),
        }
    }

    /// The size of the cell that holds this kind of entry; 0: it does not
    /// fit in one (it has its own allocation). A constant once inlined.
    #[inline(always)]
    pub(super) fn cell<K, V>(self) -> usize {
        let l = self.layout::<K, V>();
        cell_for(l.size(), l.align())
    }

    /// Drops the key and value of the entry at `p`, of this kind, leaving
    /// its memory.
    ///
    /// # Safety
    /// `p` points to a live, initialised entry of this kind that the caller
    /// owns, and is not used as an entry again.
    pub(super) unsafe fn drop_in_place<K, V>(self, p: *mut Entry<K, V>) {
        // SAFETY: the caller's promise; the casts name the entry's layout.
        unsafe {
            match self {
                Kind::Plain => std::ptr::drop_in_place(p),
                Kind::Ext => std::ptr::drop_in_place(p.cast::<Extended<K, V>>()),
                Kind::Mortal => std::ptr::drop_in_place(p.cast::<Expiring<K, V>>()),
            }
        }
    }
}

/// What an extended entry carries. Readers may set `freq` with relaxed
/// stores; `meta` is the owner's.
///
/// `repr(C)`, `freq` first: a read touches the header and `freq` only
/// (and the clock only when [`MORTAL`] says there is one), so `freq` sits
/// right after the value.
#[repr(C)]
#[derive(Debug)]
pub(crate) struct Extra {
    /// Reads since the owner last looked, saturating at [`FREQ_MAX`]. The
    /// eviction policy's input.
    pub(crate) freq: AtomicU8,
    /// The eviction policy's bookkeeping (`policy.rs`): which queue holds
    /// the entry and where. Readers never touch it.
    pub(crate) meta: OwnerCell<u32>,
}

/// The most `Extra::freq` counts (2 bits' worth).
pub(crate) const FREQ_MAX: u8 = 3;

/// An expiring entry's clock. Readers may set `touched` with relaxed
/// stores.
#[derive(Debug)]
pub(crate) struct Mortal {
    /// Deadline (time to live) in clock milliseconds; `u64::MAX`: none.
    pub(super) expires: u64,
    /// Time to idle in milliseconds; `u64::MAX`: none.
    pub(super) idle: u64,
    /// The last read, in clock milliseconds (for the time to idle).
    pub(super) touched: AtomicU64,
}

/// How long an entry lives, as given when it is made.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Life {
    /// Deadline in clock milliseconds; 0: none.
    pub(crate) expires: u64,
    /// Time to idle in milliseconds; 0: none.
    pub(crate) idle: u64,
    /// The clock when the entry was made.
    pub(crate) now: u64,
}

impl Life {
    pub(super) fn mortal(self) -> Mortal {
        let or_never = |x: u64| if x == 0 { u64::MAX } else { x };
        Mortal {
            expires: or_never(self.expires),
            idle: or_never(self.idle),
            touched: AtomicU64::new(self.now),
        }
    }

    /// Whether an entry with this life can expire.
    pub(crate) fn is_mortal(&self) -> bool {
        self.expires != 0 || self.idle != 0
    }
}

impl<K, V> Entry<K, V> {
    /// The key's hash, less the bits the marks replace.
    #[inline]
    pub(crate) fn hash(&self) -> u64 {
        self.stored & !MARKS
    }

    /// Whether this entry's hash is `hash`, given as `hash | MARKS`.
    #[inline]
    pub(super) fn hashed(&self, hash_marked: u64) -> bool {
        self.stored | MARKS == hash_marked
    }
}

impl Mortal {
    /// Whether the entry may be returned at clock time `now`.
    #[inline]
    pub(super) fn alive_at(&self, now: u64) -> bool {
        now < self.expires && now.saturating_sub(self.touched.load(Ordering::Relaxed)) < self.idle
    }

    /// A read at `now`: the idle clock, stored only when it moves.
    #[inline]
    pub(super) fn touch(&self, now: u64) {
        if self.idle != u64::MAX && self.touched.load(Ordering::Relaxed) < now {
            self.touched.store(now, Ordering::Relaxed);
        }
    }
}

impl Extra {
    /// A reader's record of one read: the access count. Relaxed, and
    /// skipped when it would change nothing, so a hot entry's cache line is
    /// not written on every read.
    #[inline]
    pub(crate) fn count_read(&self) {
        let f = self.freq.load(Ordering::Relaxed);
        if f < FREQ_MAX {
            self.freq.store(f + 1, Ordering::Relaxed);
        }
    }
}

/// A live entry, reached through the pointer its slot (or its owner)
/// holds, so that an extended entry's extra part is in reach. Valid while
/// the caller is pinned (readers) or is the owner and has not unlinked it.
pub(crate) struct EntryRef<'a, K, V> {
    pub(super) ptr: NonNull<Entry<K, V>>,
    pub(super) _entry: PhantomData<&'a Entry<K, V>>,
}

impl<K, V> Clone for EntryRef<'_, K, V> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<K, V> Copy for EntryRef<'_, K, V> {}

impl<'a, K, V> std::ops::Deref for EntryRef<'a, K, V> {
    type Target = Entry<K, V>;
    fn deref(&self) -> &Entry<K, V> {
        // SAFETY: made only from pointers to live, initialised entries
        // (`EntryRef::new` callers), valid for 'a (type docs).
        unsafe { self.ptr.as_ref() }
    }
}

impl<'a, K, V> EntryRef<'a, K, V> {
    /// # Safety
    /// `ptr` points to a live, initialised entry (plain or extended) with
    /// provenance over its whole allocation, valid for `'a`.
    pub(super) unsafe fn new(ptr: *mut Entry<K, V>) -> Self {
        Self {
            // SAFETY: the caller's pointer is to a live entry: non-null.
            ptr: unsafe { NonNull::new_unchecked(ptr) },
            _entry: PhantomData,
        }
    }

    /// The entry's layout marks ([`EXT`], [`MORTAL`]), to compare with
    /// [`marks_of_a_lasting_entry`] in one instruction.
    #[inline(always)]
    pub(crate) fn marks(self) -> u64 {
        self.stored & MARKS
    }

    /// The extra part of an extended entry.
    #[inline]
    pub(crate) fn extra(self) -> Option<&'a Extra> {
        if self.stored & EXT == 0 {
            return None;
        }
        // SAFETY: `stored` carries EXT only in an `Extended` allocation
        // (`OwnedEntry::new_in`), whose `entry` field (this header) is at
        // offset 0 (`repr(C)`), and `ptr` covers the allocation.
        Some(unsafe { &(*self.ptr.as_ptr().cast::<Extended<K, V>>()).extra })
    }

    /// Whether the entry can expire at all (read from the header alone).
    #[inline]
    pub(crate) fn mortal(self) -> bool {
        self.stored & MORTAL != 0
    }

    /// The clock of an entry that can expire.
    #[inline]
    pub(super) fn life(self) -> Option<&'a Mortal> {
        if !self.mortal() {
            return None;
        }
        // SAFETY: `stored` carries MORTAL only in an `Expiring` allocation
        // (`OwnedEntry::new`), whose header is at offset 0 (`repr(C)`), and
        // `ptr` covers the allocation.
        Some(unsafe { &(*self.ptr.as_ptr().cast::<Expiring<K, V>>()).life })
    }

    /// What is left of an entry's life at `now`, for a write that keeps it
    /// (`update`): its deadline as a time to live from `now` (at least one
    /// millisecond) and its time to idle, each `Duration::MAX` where it
    /// has none; `None` for an entry that cannot expire.
    pub(crate) fn life_left(self, now: u64) -> Option<(Duration, Duration)> {
        let m = self.life()?;
        let span = |ms: u64| {
            if ms == u64::MAX {
                Duration::MAX
            } else {
                Duration::from_millis(ms)
            }
        };
        let ttl = if m.expires == u64::MAX {
            Duration::MAX
        } else {
            span(m.expires.saturating_sub(now).max(1))
        };
        Some((ttl, span(m.idle)))
    }

    /// Whether the entry may be returned at clock time `now`. Loads the
    /// entry's clock only when it has one.
    #[inline]
    pub(crate) fn alive_at(self, now: u64) -> bool {
        self.life().is_none_or(|m| m.alive_at(now))
    }

    /// A reader's record of one read (extended entries only): the access
    /// count ([`Extra::count_read`]) and, for an entry that can expire,
    /// the idle clock.
    #[inline]
    pub(crate) fn touch(self, now: u64) {
        if let Some(x) = self.extra() {
            x.count_read();
        }
        if let Some(m) = self.life() {
            m.touch(now);
        }
    }

    /// Whether the entry lives in a cell (tests: the owner's count of
    /// cells in use).
    #[cfg(all(test, not(coherent_loom)))]
    pub(crate) fn in_cell(self) -> bool {
        Kind::of(self.stored).cell::<K, V>() != 0
    }

    /// The entry, for as long as the reference is valid.
    pub(crate) fn entry(self) -> &'a Entry<K, V> {
        // SAFETY: as in `deref`, for 'a.
        unsafe { self.ptr.as_ref() }
    }
}

/// A cell only the owner of the shard (the token holder) reads or writes.
pub(crate) struct OwnerCell<T>(pub(super) std::cell::UnsafeCell<T>);

// SAFETY: the owner reaches the value only while holding the shard's token
// (exclusive, `token.rs`), and readers never do, so there is never a
// concurrent access; `T: Send` because the holder may be any thread.
unsafe impl<T: Send> Sync for OwnerCell<T> {}

impl<T: Copy> OwnerCell<T> {
    pub(crate) fn new(value: T) -> Self {
        Self(std::cell::UnsafeCell::new(value))
    }

    /// The value. Owner only.
    pub(crate) fn get(&self) -> T {
        // SAFETY: see `Sync` above: only the token holder calls this.
        unsafe { *self.0.get() }
    }

    /// Replaces the value. Owner only.
    pub(crate) fn set(&self, value: T) {
        // SAFETY: as in `get`.
        unsafe { *self.0.get() = value }
    }
}

impl<T: Copy + std::fmt::Debug> std::fmt::Debug for OwnerCell<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("OwnerCell")
    }
}

/// One entry, owned: freed when dropped. What a slot owns, as a value the
/// owner can move around (into a slot, out of it, into its garbage).
pub(crate) struct OwnedEntry<K, V>(pub(super) NonNull<Entry<K, V>>);

// SAFETY: an `OwnedEntry` owns its `Entry` exactly like a `Box` would, so
// it may cross threads when a `Box<Entry<K, V>>` may.
unsafe impl<K: Send, V: Send> Send for OwnedEntry<K, V> {}
// SAFETY: as above: `&OwnedEntry` gives only `&Entry`, like `&Box`.
unsafe impl<K: Sync, V: Sync> Sync for OwnedEntry<K, V> {}

impl<K, V> OwnedEntry<K, V> {
    /// A new entry: extended if `bounded`, expiring (extended, with its
    /// clock) if `life` can expire, plain otherwise. In a cell taken from
    /// `cells` when its layout fits one (up to 64 bytes), else in an
    /// allocation of its own.
    #[inline(always)]
    pub(crate) fn new(
        hash: u64,
        key: K,
        value: V,
        life: Life,
        bounded: bool,
        cells: &mut Cells,
        blocks: &mut Blocks,
    ) -> Self {
        const { assert!(std::mem::align_of::<Entry<K, V>>() > KIND) };
        let kind = if life.is_mortal() {
            Kind::Mortal
        } else if bounded {
            Kind::Ext
        } else {
            Kind::Plain
        };
        let cell = kind.cell::<K, V>();
        let p: NonNull<Entry<K, V>> = if cell != 0 {
            cells.take(cell, blocks).cast()
        } else {
            let layout = kind.layout::<K, V>();
            // SAFETY: an entry's layout has a non-zero size (`stored`).
            let p = unsafe { std::alloc::alloc(layout) };
            NonNull::new(p)
                .unwrap_or_else(|| std::alloc::handle_alloc_error(layout))
                .cast()
        };
        let entry = Entry {
            stored: (hash & !MARKS) | kind.marks(),
            key,
            value: Value::new(value),
        };
        let extra = || Extra {
            freq: AtomicU8::new(0),
            meta: OwnerCell::new(0),
        };
        // SAFETY: `p` is memory for `kind`'s layout that holds no value and
        // that nobody else has: its own allocation of that layout, or a cell
        // of at least its size whose address is a multiple of the cell size
        // (`cells.rs`), a power of two no smaller than the size, so a
        // multiple of the alignment too.
        unsafe {
            match kind {
                Kind::Plain => p.as_ptr().write(entry),
                Kind::Ext => p.as_ptr().cast::<Extended<K, V>>().write(Extended {
                    entry,
                    extra: extra(),
                }),
                Kind::Mortal => p.as_ptr().cast::<Expiring<K, V>>().write(Expiring {
                    ext: Extended {
                        entry,
                        extra: extra(),
                    },
                    life: life.mortal(),
                }),
            }
        }
        Self(p)
    }

    /// The entry (owner side).
    pub(crate) fn get(&self) -> EntryRef<'_, K, V> {
        // SAFETY: we own a live, initialised entry; our pointer covers its
        // allocation.
        unsafe { EntryRef::new(self.0.as_ptr()) }
    }

    pub(super) fn kind(&self) -> Kind {
        Kind::of(self.get().stored)
    }

    pub(super) fn hash(&self) -> u64 {
        self.get().hash()
    }

    /// Gives up ownership: the raw pointer now owns the entry.
    pub(super) fn into_raw(self) -> *mut Entry<K, V> {
        let p = self.0.as_ptr();
        std::mem::forget(self);
        p
    }

    /// Takes back ownership of a pointer from `into_raw`.
    ///
    /// # Safety
    /// `p` came from `into_raw` (untagged), and whoever held it gives up
    /// its ownership: it is not freed or taken back twice.
    pub(super) unsafe fn from_raw(p: *mut Entry<K, V>) -> Self {
        // SAFETY: `into_raw` pointers are non-null.
        Self(unsafe { NonNull::new_unchecked(p) })
    }
}

impl<K, V> Drop for OwnedEntry<K, V> {
    /// Drops the key and value, and frees an entry allocated alone. A cell
    /// stays with the owner's blocks, which go after every entry (the
    /// owner's last field); the paths that end an entry while the shard
    /// runs give its cell back for reuse instead ([`RetiredEntry::free`]).
    fn drop(&mut self) {
        struct Dealloc(*mut u8, std::alloc::Layout);
        impl Drop for Dealloc {
            fn drop(&mut self) {
                // SAFETY: made below only for an entry allocated alone with
                // this layout (`OwnedEntry::new`), whose value has been
                // dropped (or is being unwound from): freed once.
                unsafe { std::alloc::dealloc(self.0, self.1) }
            }
        }
        let kind = self.kind();
        let p = self.0.as_ptr();
        // Made before the value's drop: if that panics, the memory is
        // still freed as it unwinds.
        let _dealloc = (kind.cell::<K, V>() == 0).then(|| Dealloc(p.cast(), kind.layout::<K, V>()));
        // SAFETY: we own an initialised entry of this kind; nobody uses it
        // after this.
        unsafe { kind.drop_in_place(p) };
    }
}

/// Something the owner unlinked from what readers see, waiting in its
/// garbage until no reader can hold it. Its fields are only ever dropped.
#[allow(dead_code)]
pub(crate) enum Retired<K, V> {
    /// A replaced or removed entry.
    Entry(RetiredEntry<K, V>),
    /// A slot array replaced by a bigger one; its entries moved there, so
    /// dropping it frees the array only.
    Slots(OwnedSlots<K, V>),
    /// An intent's shell (its entries were split off and went elsewhere).
    Intent(OwnedIntent<K, V>),
}

impl<K, V> Retired<K, V> {
    /// Retires an entry just unlinked (see [`RetiredEntry`]).
    pub(crate) fn entry(entry: OwnedEntry<K, V>) -> Self {
        Self::Entry(RetiredEntry::new(entry))
    }
}

/// A replaced or removed entry, with its layout read while the owner still
/// has its memory in cache (it has just probed or replaced it). Freeing it
/// then reads nothing from it when `K` and `V` have no drop glue; reading
/// each entry back to learn its layout missed the cache once per entry, a
/// batch at a time (cachegrind: about one D1 miss per write in a mixed
/// workload).
pub(crate) struct RetiredEntry<K, V> {
    pub(super) entry: OwnedEntry<K, V>,
    pub(super) kind: Kind,
}

impl<K, V> RetiredEntry<K, V> {
    pub(super) fn new(entry: OwnedEntry<K, V>) -> Self {
        let kind = entry.kind();
        Self { entry, kind }
    }

    /// Whether the entry lives in a cell (tests).
    #[cfg(all(test, not(coherent_loom)))]
    pub(crate) fn in_cell(&self) -> bool {
        self.kind.cell::<K, V>() != 0
    }

    /// Frees the entry once no reader can hold it: drops its key and value
    /// and gives its cell back to `cells`, its owner's (an entry never
    /// leaves the shard that made it), for a later write. If the key's or
    /// value's `drop` panics, the cell stays unused until the shard goes.
    #[inline]
    pub(crate) fn free(self, cells: &mut Cells) {
        let cell = self.kind.cell::<K, V>();
        if cell == 0 {
            drop(self.entry);
            return;
        }
        let p = self.entry.into_raw();
        if std::mem::needs_drop::<K>() || std::mem::needs_drop::<V>() {
            // SAFETY: `into_raw` handed us the ownership of this initialised
            // entry of this kind; it is not used as an entry again.
            unsafe { self.kind.drop_in_place(p) };
        }
        // SAFETY: `into_raw` pointers are non-null.
        cells.give(cell, unsafe { NonNull::new_unchecked(p) }.cast());
    }
}
