//! The read table: what readers see of one shard.
//!
//! [`Slots`] is an open-addressing array (linear probing) of atomic pointers
//! to immutable entries (in the owner's cells, `cells.rs`, or allocated
//! alone when larger than a cache line). The shard
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

use crate::cells::{cell_for, Blocks, Cells};
use crate::sync::{AtomicPtr, AtomicU64, AtomicU8, Ordering};
use crate::value::Value;
use std::borrow::Borrow;
use std::marker::PhantomData;
use std::ptr::NonNull;
use std::time::Duration;

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
    stored: u64,
    pub(crate) key: K,
    /// Replaced in place only for a word type (`value.rs`).
    pub(crate) value: Value<V>,
}

/// The mark of an extended entry in `Entry::stored`: bit 39 of the hash,
/// which nothing derives a position from (a probe starts from the low bits,
/// at most 2^38 slots; the slot tag comes from bits 40-63; the shard from
/// the lookup hash, never a stored one). A stored hash therefore still
/// places its entry after a rebuild, and tags it.
const EXT: u64 = 1 << 39;

/// The mark of an entry that can expire ([`Expiring`]) in
/// `Entry::stored`: bit 38, free for the same reasons as [`EXT`] (a probe
/// starts from bits 0-37). So a read of an entry that cannot expire stops
/// at `Extra::freq`, right after the value, and never loads the clock
/// (docs/design.md, "The bounded `get` and the bounded write").
const MORTAL: u64 = 1 << 38;

/// The bits of `Entry::stored` that are marks, not hash.
const MARKS: u64 = EXT | MORTAL;

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
struct Extended<K, V> {
    entry: Entry<K, V>,
    extra: Extra,
}

/// An entry that can expire: an extended entry, then its clock.
#[repr(C)]
struct Expiring<K, V> {
    ext: Extended<K, V>,
    life: Mortal,
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
    fn of(stored: u64) -> Self {
        if stored & MORTAL != 0 {
            Kind::Mortal
        } else if stored & EXT != 0 {
            Kind::Ext
        } else {
            Kind::Plain
        }
    }

    fn marks(self) -> u64 {
        match self {
            Kind::Plain => 0,
            Kind::Ext => EXT,
            Kind::Mortal => EXT | MORTAL,
        }
    }

    /// The layout of this kind of entry.
    fn layout<K, V>(self) -> std::alloc::Layout {
        match self {
            Kind::Plain => std::alloc::Layout::new::<Entry<K, V>>(),
            Kind::Ext => std::alloc::Layout::new::<Extended<K, V>>(),
            Kind::Mortal => std::alloc::Layout::new::<Expiring<K, V>>(),
        }
    }

    /// The size of the cell that holds this kind of entry; 0: it does not
    /// fit in one (it has its own allocation). A constant once inlined.
    #[inline(always)]
    fn cell<K, V>(self) -> usize {
        let l = self.layout::<K, V>();
        cell_for(l.size(), l.align())
    }

    /// Drops the key and value of the entry at `p`, of this kind, leaving
    /// its memory.
    ///
    /// # Safety
    /// `p` points to a live, initialised entry of this kind that the caller
    /// owns, and is not used as an entry again.
    unsafe fn drop_in_place<K, V>(self, p: *mut Entry<K, V>) {
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
    expires: u64,
    /// Time to idle in milliseconds; `u64::MAX`: none.
    idle: u64,
    /// The last read, in clock milliseconds (for the time to idle).
    touched: AtomicU64,
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
    fn mortal(self) -> Mortal {
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
    fn hashed(&self, hash_marked: u64) -> bool {
        self.stored | MARKS == hash_marked
    }
}

impl Mortal {
    /// Whether the entry may be returned at clock time `now`.
    #[inline]
    fn alive_at(&self, now: u64) -> bool {
        now < self.expires && now.saturating_sub(self.touched.load(Ordering::Relaxed)) < self.idle
    }

    /// A read at `now`: the idle clock, stored only when it moves.
    #[inline]
    fn touch(&self, now: u64) {
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
    ptr: NonNull<Entry<K, V>>,
    _entry: PhantomData<&'a Entry<K, V>>,
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
    unsafe fn new(ptr: *mut Entry<K, V>) -> Self {
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
    fn life(self) -> Option<&'a Mortal> {
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
pub(crate) struct OwnerCell<T>(std::cell::UnsafeCell<T>);

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

/// The tombstone: a removed key's slot, which readers probe past. Address 1
/// can never be an `Entry` (entries are at least 8-aligned, so at or above
/// address 8), and it is never dereferenced.
fn tomb<K, V>() -> *mut Entry<K, V> {
    std::ptr::without_provenance_mut(1)
}

/// What a slot pointer carries besides an address. Its 3 low bits, which
/// alignment leaves free, say what it points to ([`KIND`]): 0, an entry
/// whose pointer carries a tag; [`RAW`], an entry without one; [`INTENT`],
/// an intent (rare: only while a transaction is in flight). The tombstone
/// is address 1. A tag is 16 bits of the key's hash, kept in the pointer's
/// top 16 bits ([`HIGH`]), which user-space addresses leave zero on the
/// 64-bit platforms we know of (x86_64 and aarch64 hand out addresses above
/// 2^48 only to a process that asks for them). So a probe compares one word
/// and skips all but 1 in 65,536 other keys' entries without touching them,
/// a cache miss saved for each. An entry whose address has a high bit set
/// (an allocator that asks for such addresses) goes in untagged, as
/// [`RAW`], and a probe looks into it: slower, never wrong.
///
/// The tag was first 3 bits (7 values) in the low bits; the 16-bit one made
/// a one-thread `get` over 100k Zipf keys about 4% faster, over 1M keys
/// about 20% (docs/design.md, "A 16-bit tag").
const KIND: usize = 0b111;

/// The kind of an entry pointer without a tag.
const RAW: usize = 0b010;

/// The kind of every intent pointer.
const INTENT: usize = 0b111;

/// The bits of a slot pointer that hold a tag (none on targets whose
/// pointers are narrower than 64 bits: there every entry matches every
/// probe's tag, and the probe compares hashes).
#[cfg(target_pointer_width = "64")]
const HIGH: usize = 0xFFFF << 48;
#[cfg(not(target_pointer_width = "64"))]
const HIGH: usize = 0;

/// The tag of `hash`: its bits 40-55 (which neither the shard choice, from
/// the top bits, nor the probe start, from at most the low 38, depends on)
/// moved to [`HIGH`].
#[inline]
fn tag(hash: u64) -> usize {
    ((hash << 8) as usize) & HIGH
}

/// The slot word for an entry at address `a` (aligned, so its [`KIND`]
/// bits are 0) whose tag is `t`: tagged if the address leaves [`HIGH`]
/// free, else [`RAW`].
#[inline]
fn entry_word(a: usize, t: usize) -> usize {
    if a & HIGH == 0 {
        a | t
    } else {
        a | RAW
    }
}

/// Whether a probe for tag `want` must look into the entry or intent at
/// slot word `a` (neither null nor the tombstone): a tagged entry with that
/// tag, or an untagged entry. Intents are checked apart.
#[inline]
fn may_match(a: usize, want: usize) -> bool {
    a & (HIGH | KIND) == want || a & KIND == RAW
}

fn tagged<K, V>(entry: OwnedEntry<K, V>) -> *mut Entry<K, V> {
    let t = tag(entry.hash());
    entry.into_raw().map_addr(|a| entry_word(a, t))
}

fn tagged_intent<K, V>(intent: OwnedIntent<K, V>) -> *mut Entry<K, V> {
    intent
        .into_raw()
        .cast::<Entry<K, V>>()
        .map_addr(|a| a | INTENT)
}

/// The address a slot pointer (not the tombstone) points to: a tagged
/// entry's with its tag cleared, any other's with its kind cleared.
#[inline]
fn untagged<K, V>(p: *mut Entry<K, V>) -> *mut Entry<K, V> {
    p.map_addr(|a| if a & KIND == 0 { a & !HIGH } else { a & !KIND })
}

fn is_intent<K, V>(p: *mut Entry<K, V>) -> bool {
    p.addr() & KIND == INTENT
}

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
    fn watermark(self) -> u64 {
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
    new: *mut Entry<K, V>,
    /// The value before `stamp`; null: the key is absent.
    old: *mut Entry<K, V>,
}

impl<K, V> Intent<K, V> {
    /// The entry a reader at `watermark` sees (null: none).
    #[inline]
    fn seen_at(&self, watermark: u64) -> *mut Entry<K, V> {
        // `coherent_loom_break_watermark` shows intents at once, to show the
        // loom model of G2 catches a torn read (docs/guarantees.md).
        if self.stamp <= watermark || cfg!(coherent_loom_break_watermark) {
            self.new
        } else {
            self.old
        }
    }

    /// The key, from whichever entry exists (at least one does).
    fn key(&self) -> &K {
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
pub(crate) struct OwnedIntent<K, V>(NonNull<Intent<K, V>>);

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

    fn into_raw(self) -> *mut Intent<K, V> {
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

/// One entry, owned: freed when dropped. What a slot owns, as a value the
/// owner can move around (into a slot, out of it, into its garbage).
pub(crate) struct OwnedEntry<K, V>(NonNull<Entry<K, V>>);

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

    fn kind(&self) -> Kind {
        Kind::of(self.get().stored)
    }

    fn hash(&self) -> u64 {
        self.get().hash()
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
/// then reads nothing from it when `K` and `V` have no drop glue: freeing
/// used to miss the cache once per entry, a batch at a time (cachegrind:
/// about one D1 miss per write in a mixed workload).
pub(crate) struct RetiredEntry<K, V> {
    entry: OwnedEntry<K, V>,
    kind: Kind,
}

impl<K, V> RetiredEntry<K, V> {
    fn new(entry: OwnedEntry<K, V>) -> Self {
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
const ARRAY_ALIGN: usize = 64;

/// A slot array starting at a multiple of [`ARRAY_ALIGN`] inside its
/// allocation (a `Box<[_]>` cannot promise more than the element's
/// alignment). Holds atomics only:
/// what the slots point to is owned through [`Slots`].
struct SlotArray<K, V> {
    ptr: NonNull<AtomicPtr<Entry<K, V>>>,
    len: usize,
    /// Bytes from the start of the allocation to `ptr` (see `try_new`).
    lead: usize,
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
    fn try_layout(len: usize) -> Option<std::alloc::Layout> {
        let bytes = len
            .checked_mul(std::mem::size_of::<AtomicPtr<Entry<K, V>>>())?
            .checked_add(ARRAY_ALIGN)?;
        std::alloc::Layout::from_size_align(bytes, 16).ok()
    }

    fn layout(len: usize) -> std::alloc::Layout {
        Self::try_layout(len).expect("a slot array's size fits in isize")
    }

    /// `len` empty slots (`len` > 0), or `None` if their size does not fit
    /// in `isize` or the allocator has no memory for them (a shard's first
    /// table, sized by the user's `initial_capacity`).
    fn try_new(len: usize) -> Option<Self> {
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
    fn word(&self) -> *mut AtomicPtr<Entry<K, V>> {
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
pub(crate) struct Published<K, V>(AtomicPtr<AtomicPtr<Entry<K, V>>>);

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
    slots: SlotArray<K, V>,
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
    unsafe fn view_of(&self, p: *mut Entry<K, V>) -> View<'_, K, V> {
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
    fn take_at(&self, i: usize) -> Was<K, V> {
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
    fn store_at(&self, i: usize, put: Put<K, V>) {
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
    fn place(&self, hash: u64, p: *mut Entry<K, V>) {
        let mut i = hash as usize & self.mask;
        while !self.is_empty_at(i) {
            i = (i + 1) & self.mask;
        }
        // Release: the array is published later (the shard's pointer store
        // is Release too); kept for uniformity with `publish`.
        self.slots[i].store(p, Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The slot word rules, on made-up addresses (the high-address case
    /// cannot be made with a real allocation on the machines we test on).
    #[test]
    #[cfg(target_pointer_width = "64")]
    fn slot_words_round_trip_and_match_only_their_tag() {
        let hash = 0x0123_4567_89AB_CDEF_u64;
        let want = tag(hash);
        let other = tag(hash ^ (1 << 47));
        assert_ne!(want, other, "bit 47 of the hash is in the tag");
        let low = 0x7F00_1234_5670_usize;
        let word = entry_word(low, want);
        let back: *mut Entry<u64, u64> = untagged(std::ptr::without_provenance_mut(word));
        assert_eq!(back.addr(), low);
        assert!(may_match(word, want));
        assert!(!may_match(word, other), "another tag is skipped");
        assert!(!may_match(1, want), "the tombstone is never looked into");
        assert!(!may_match(low | INTENT, want), "intents are checked apart");
        // An address that uses the tag bits goes in untagged, comes back
        // whole, and every probe looks into it.
        let high = (1usize << 62) | 0x1000;
        let word = entry_word(high, want);
        assert_eq!(word & KIND, RAW);
        let back: *mut Entry<u64, u64> = untagged(std::ptr::without_provenance_mut(word));
        assert_eq!(back.addr(), high);
        assert!(may_match(word, want) && may_match(word, other));
        // An intent's address keeps its high bits too.
        let intent: *mut Entry<u64, u64> =
            untagged(std::ptr::without_provenance_mut(high | INTENT));
        assert_eq!(intent.addr(), high);
    }
}
