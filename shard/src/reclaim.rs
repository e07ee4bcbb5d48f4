//! When memory that readers may hold can be freed: an epoch scheme whose
//! reader side does no atomic read-modify-write and no hardware fence.
//!
//! # Why not `arc-swap` on the read path
//!
//! An `ArcSwap` guard on the shard's table costs a `get` two locked
//! instructions (a debt-slot `xchg` and a `cmpxchg` to pay it back).
//! Locked instructions are full barriers on x86, so no two `get`s can
//! overlap their cache misses: measured on the Zipf benchmark, a `get`
//! spent about 40% of its time there and ran at 0.84x-0.93x quick_cache's
//! speed, against 1.14x-1.29x with this scheme (docs/design.md). Here a reader announces itself with a
//! plain store in its own cache line and a compiler fence, and the writer,
//! which frees memory rarely (once per [`BATCH`] replaced entries), pays
//! for the ordering instead with one `membarrier(2)` call.
//!
//! # The protocol
//!
//! - A global epoch counter, `EPOCH`, starts at 1 and only grows.
//! - Each reading thread owns a [`Record`]. Pinning stores the epoch it
//!   reads from `EPOCH` into `record.active` (0 means "not reading"), then
//!   runs the *light* fence. Unpinning stores 0 with Release. Whether a pin
//!   of the thread stands is a bit of the thread's own reader word
//!   (`NESTED`), set by the pin and cleared by its end, so the common pin
//!   loads nothing from the record. A pin nested in another of the same
//!   thread (a `get` from a value's `Clone`) finds the bit, goes out of
//!   line, and announces nothing and ends nothing: the outer announcement
//!   covers it, since pins live inside one `get` and so end in the reverse
//!   order they began (a loom model checks it). The bit, rather than a
//!   load of `record.active` to learn whether the pin is nested, made a
//!   one-thread `get` 3.5-6% faster in medians (docs/design.md,
//!   "Reclamation and the pin").
//! - The owner of a shard unlinks memory (a slot swap, or publishing a new
//!   slot array), then *seals* what it unlinked: `r = EPOCH.fetch_add(1)`.
//!   Later it runs the *heavy* fence and reads every record; the batch
//!   sealed at `r` is freed once every record reads 0 or a value above `r`.
//!
//! Why that is safe. Take a reader that dereferences something of batch
//! `r`. It loaded the pointer before the owner's unlink took effect.
//! - If it pinned with epoch `a > r`, its Acquire load of `EPOCH` read the
//!   seal's `fetch_add` or a later one, so the unlink happened before its
//!   pointer load, which then cannot return the unlinked pointer.
//!   Contradiction: so `a <= r`.
//! - The heavy fence and the light fence are ordered one way or the other.
//!   If the reader's fence comes first, its `active = a` store is visible to
//!   the owner's scan, which then keeps the batch (`a <= r`), or the scan
//!   reads its later 0, whose Release orders all its reads before the free.
//!   If the owner's fence comes first, the reader's later pointer load sees
//!   the unlink, and it never reaches the batch.
//!
//! The fences are the store-buffering pattern again (as in `shard.rs`). On
//! Linux with `membarrier(MEMBARRIER_CMD_PRIVATE_EXPEDITED)` the light fence
//! is a compiler fence and the heavy one is the system call, which makes
//! every running thread of the process execute a full barrier: the
//! asymmetric form used by Linux's userspace RCU and by `folly`'s hazard
//! pointers. Where that call is missing (other systems, old kernels,
//! sandboxes that forbid it), both fences are `fence(SeqCst)`: still one
//! fence per `get`, against arc-swap's two locked instructions. Loom checks
//! the symmetric form (`loom_reclaim` in this crate's tests); loom cannot
//! model `membarrier`, whose guarantee the argument above relies on as
//! documented by the kernel (`man 2 membarrier`).
//!
//! # Sharing the heavy fence
//!
//! The heavy fence is the expensive half: with other threads of the
//! process running, `membarrier` interrupts every core they run on (about
//! 2.3 µs for the caller, and the interrupted cores pay too). With one per
//! sealed batch and shard, two threads writing 20% of the time spent about
//! 18% of their time in it (`docs/design.md`, "Reclamation and the pin").
//! But one fence serves every owner: a fence and scan that
//! began after a batch was sealed proves for that batch what it proves for
//! its own. So `fence_and_scan` loads `EPOCH` (call it `e`) *before* its
//! fence, and the bound it proves, `min(e, oldest announced epoch)`, holds
//! for every batch sealed below `e` by any owner; it raises the global
//! [`COVERED`] to that bound, and every owner frees its batches sealed
//! below `COVERED` without a fence of its own. A full batch runs a fence
//! only when [`FENCE_AFTER`] of its owner's batches are still uncovered;
//! until then it waits for whichever owner fences first.
//!
//! Why a batch sealed at `r < e` by another owner is covered: its seal, a
//! SeqCst `fetch_add` after its unlinks, comes before the fencer's load
//! that read `e` (the load reads a later value of `EPOCH`, so it
//! synchronises with the seal), hence before the fence. The argument above
//! then goes through with the fencer in the owner's place: a reader whose
//! light fence comes after the heavy one sees the unlink (C++20's rules for
//! SeqCst fences ask only that the unlink *happen before* the heavy fence,
//! not that it be in the same thread), and one whose light fence comes
//! first is seen by the scan. The owner that frees reads `COVERED` with
//! Acquire and the fencer raised it with AcqRel after its scan, so what
//! the scan read (the readers' Release unpins) happens before the free.
//! Loading `e` after the fence would be wrong: a batch sealed while the
//! fence ran would count as covered although its unlink came after the
//! fence. The loom model `a_fence_covers_only_batches_sealed_before_it`
//! has an owner that only ever frees by another thread's fence, and
//! reports a use after free when built with that mistake
//! (`--cfg coherent_loom_break_cover`).
//!
//! A thread keeps its record for its whole life and gives it back for reuse
//! when it exits; records themselves stay allocated, one per thread that
//! ever read at the same time as others, as crossbeam-epoch does. A `get`
//! during thread teardown, after this thread's record is gone, counts itself
//! in `ORPHANS` instead, which holds back every free while it reads.

use crate::sync::{
    compiler_fence, fence, thread_local_key, Arc, AtomicBool, AtomicU64, AtomicUsize, Mutex,
    Ordering,
};
use crossbeam_utils::CachePadded;
use std::cell::OnceCell;
use std::collections::VecDeque;

/// Unlinked items an owner gathers before it seals them and tries to free
/// the sealed ones. Each try costs one heavy fence (about 2 µs with other
/// threads running, measured on the CI machine) and a scan of the records.
/// Under loom, 2: a model's second replacement seals a batch and tries to
/// free it while a reader may hold what it retired.
pub(crate) const BATCH: usize = if cfg!(coherent_loom) { 2 } else { 128 };

/// Sealed batches that no fence has covered yet (below [`COVERED`]) an
/// owner keeps before a full batch makes it run the heavy fence itself.
/// One fence covers every batch of every shard sealed before it, so the
/// owners that wait let one fence serve them all: with 2, a cache of 16
/// shards written evenly runs about one fence per 16 sealed batches
/// instead of one per batch ("Sharing the heavy fence" in the module
/// docs). Under loom, 1: every full batch fences, as the models expect.
pub(crate) const FENCE_AFTER: usize = if cfg!(coherent_loom) { 1 } else { 2 };

/// What one reading thread announces.
#[derive(Debug)]
struct Record {
    /// 0 while the thread reads nothing; else the epoch it read on pinning.
    active: CachePadded<AtomicU64>,
    /// Whether a live thread holds this record.
    taken: AtomicBool,
}

/// Every record ever handed out.
#[derive(Debug)]
struct Registry {
    records: Mutex<Vec<Arc<Record>>>,
    /// Whether the asymmetric fences are in use (decided once, before any
    /// reader or owner can use either fence).
    asymmetric: bool,
}

#[cfg(not(coherent_loom))]
mod globals {
    use super::*;
    use std::sync::OnceLock;

    pub(super) static EPOCH: AtomicU64 = AtomicU64::new(1);
    pub(super) static COVERED: AtomicU64 = AtomicU64::new(0);
    pub(super) static ORPHANS: AtomicUsize = AtomicUsize::new(0);
    static REGISTRY: OnceLock<Registry> = OnceLock::new();

    pub(super) fn registry() -> &'static Registry {
        REGISTRY.get_or_init(|| Registry {
            records: Mutex::new(Vec::new()),
            asymmetric: super::membarrier::register(),
        })
    }
}

#[cfg(coherent_loom)]
mod globals {
    use super::*;

    loom::lazy_static! {
        pub(super) static ref EPOCH: AtomicU64 = AtomicU64::new(1);
        pub(super) static ref COVERED: AtomicU64 = AtomicU64::new(0);
        pub(super) static ref ORPHANS: AtomicUsize = AtomicUsize::new(0);
        static ref REGISTRY: Registry = Registry {
            records: Mutex::new(Vec::new()),
            asymmetric: false,
        };
    }

    pub(super) fn registry() -> &'static Registry {
        &REGISTRY
    }
}

use globals::{registry, COVERED, EPOCH, ORPHANS};

/// The system call behind the asymmetric fences.
#[cfg(all(target_os = "linux", not(coherent_loom)))]
mod membarrier {
    /// Registers this process for private expedited barriers; false if the
    /// kernel does not offer them (the symmetric fences are used then).
    pub(super) fn register() -> bool {
        std::env::var_os("COHERENT_NO_MEMBARRIER").is_none()
            && call(libc::MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED as libc::c_int)
    }

    /// Every running thread of this process executes a full barrier before
    /// this returns. False if the call failed (the caller frees nothing).
    pub(super) fn barrier() -> bool {
        call(libc::MEMBARRIER_CMD_PRIVATE_EXPEDITED as libc::c_int)
    }

    /// `membarrier(cmd, 0, 0)`; true if it returned 0.
    fn call(cmd: libc::c_int) -> bool {
        // SAFETY: membarrier takes three integer arguments and touches no
        // memory of ours; a command the kernel does not support (or one not
        // registered for) only returns an error.
        let r = unsafe {
            libc::syscall(
                libc::SYS_membarrier,
                cmd,
                0 as libc::c_int,
                0 as libc::c_int,
            )
        };
        r == 0
    }
}

#[cfg(not(all(target_os = "linux", not(coherent_loom))))]
mod membarrier {
    #[cfg_attr(coherent_loom, allow(dead_code))] // loom decides without it
    pub(super) fn register() -> bool {
        false
    }
    pub(super) fn barrier() -> bool {
        unreachable!("asymmetric fences are never chosen without membarrier")
    }
}

/// This thread's reader state, as one word: [`UNSET`] before its first
/// read; [`GONE`] once its record was given back (the thread is exiting);
/// otherwise the address of its [`Record`], with bit 0 set when the
/// symmetric fences are in use and bit 2 ([`NESTED`]) while a pin of the
/// thread stands. No other thread reads it. [`reader::get`] and
/// [`reader::set`] are its only accesses.
///
/// It is a `thread_local!` `Cell`. Its constant initialiser and the
/// absence of a destructor make a read one load from the thread's TLS block,
/// with none of the "initialised yet, being destroyed" checks std makes on
/// every access to a thread-local that has a destructor. (A word defined in
/// assembly, one `%fs`-relative load, read 3-6% faster in one-thread `get`
/// medians: inside this machine's run-to-run noise, and it cannot cross a
/// Rust `dylib` boundary, so the portable word is the only one.)
mod reader {
    use super::UNSET;
    use crate::sync::thread_local_key;
    use std::cell::Cell;

    #[cfg(not(coherent_loom))]
    thread_local_key! {
        static WORD: Cell<usize> = const { Cell::new(UNSET) };
    }
    #[cfg(coherent_loom)] // loom's macro takes no `const` initialiser
    thread_local_key! {
        static WORD: Cell<usize> = Cell::new(UNSET);
    }

    /// This thread's word ([`GONE`](super::GONE) where its thread-local
    /// storage is gone, which a `Cell` without a destructor never is outside
    /// loom).
    #[inline(always)]
    pub(crate) fn get() -> usize {
        WORD.try_with(Cell::get).unwrap_or(super::GONE)
    }

    /// Sets this thread's word.
    #[inline(always)]
    pub(crate) fn set(word: usize) {
        let _ = WORD.try_with(|w| w.set(word));
    }
}

/// The [`reader`] word before the thread's first read.
const UNSET: usize = 3;

/// The [`reader`] word after the thread gave its record back.
const GONE: usize = 2;

/// Bit 0 of the [`reader`] word: the symmetric fences are in use.
const SYMMETRIC: usize = 1;

/// Bit 2 of the [`reader`] word: a pin of this thread stands, so a new one is
/// nested in it ([`pin`]).
const NESTED: usize = 0b100;

/// The bits of the [`reader`] word that are never set in a record's address
/// (records are at least 8-aligned): a word with none of them set is the
/// common case, an unpinned thread with its record and the asymmetric
/// fences.
const TAGS: usize = 0b111;

const _: () = assert!(std::mem::align_of::<Record>() >= 8);

/// Gives this thread's record back when the thread exits. Set once, when
/// the thread takes its record, which is what registers its destructor.
struct GiveBack(Arc<Record>);

impl Drop for GiveBack {
    fn drop(&mut self) {
        // A `get` from a later thread-local destructor reads as an orphan.
        reader::set(GONE);
        // Release: our last unpin comes before the next holder's use.
        self.0.taken.store(false, Ordering::Release);
    }
}

#[cfg(not(coherent_loom))]
thread_local_key! {
    static GIVE_BACK: OnceCell<GiveBack> = const { OnceCell::new() };
}
#[cfg(coherent_loom)]
thread_local_key! {
    static GIVE_BACK: OnceCell<GiveBack> = OnceCell::new();
}

/// Takes a record for this thread (its first read) and returns the new
/// [`reader`] word, or `GONE` if the thread is already exiting.
#[cold]
#[inline(never)]
fn take_record() -> usize {
    let registry = registry();
    let mut records = registry.records.lock().unwrap_or_else(|e| e.into_inner());
    // Acquire: pairs with the Release of the thread that gave it up.
    let free = records.iter().find(|r| {
        r.taken
            .compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed)
            .is_ok()
    });
    let record = match free {
        Some(record) => record.clone(),
        None => {
            let record = Arc::new(Record {
                active: CachePadded::new(AtomicU64::new(0)),
                taken: AtomicBool::new(true),
            });
            records.push(record.clone());
            record
        }
    };
    drop(records);
    let word =
        Arc::as_ptr(&record).expose_provenance() | if registry.asymmetric { 0 } else { SYMMETRIC };
    // If the thread is exiting already (or, impossibly, holds a record),
    // `give` is dropped unset: the record goes back at once, and we read as
    // an orphan.
    let give = GiveBack(record);
    let mut held = false;
    let _ = GIVE_BACK.try_with(|g| held = g.set(give).is_ok());
    if !held {
        return GONE;
    }
    reader::set(word);
    word
}

/// A pinned reader: memory it loads from a shard stays allocated until it
/// is dropped. Not `Send`: it retracts this thread's announcement.
#[derive(Debug)]
pub(crate) struct Pin {
    /// What this pin restores the reader word to when it ends: the thread's word
    /// as it was before the pin (a record's address, with [`SYMMETRIC`]
    /// when those fences are in use) for a pin that announced itself in
    /// its record; [`NESTED_PIN`] for a pin nested in another of the same
    /// thread, which announced nothing and restores nothing; [`GONE`] for
    /// an orphan pin, counted in `ORPHANS`.
    word: usize,
}

/// [`Pin::word`] of a pin nested in another (never a record's address,
/// nor [`GONE`]).
const NESTED_PIN: usize = 0;

/// Pins the current thread (see the module docs).
///
/// The common case (a thread with its record, asymmetric fences, not
/// pinned yet) is one thread-local load and test, a load of `EPOCH`, a
/// store to the record and one to the thread-local word (its [`NESTED`]
/// bit); unpinning is the same two stores. No load from the record: the
/// nesting is in the thread-local word, and a nested pin (a `get` from a
/// value's `Clone`) goes out of line on that bit, with the rest (first
/// read, symmetric fences, orphans).
#[inline]
pub(crate) fn pin() -> Pin {
    match try_pin() {
        Some(pin) => pin,
        None => pin_slow(reader::get()),
    }
}

/// [`pin`]'s common case alone (`pin` is this, then `pin_slow`): `None`
/// where `pin` would go out of line (the thread's first read, a nested
/// pin, the symmetric fences, an orphan). For a caller that then takes a
/// slow path of its own, so that its common path makes no call.
#[inline]
pub(crate) fn try_pin() -> Option<Pin> {
    let word = reader::get();
    if word & TAGS != 0 {
        return None;
    }
    // SAFETY: a word with no tag bit is the address of a `Record` (see
    // `reader`) in an `Arc` the registry keeps for the life of the process
    // (records are never removed from it), and this thread holds it
    // (`taken`) until `GiveBack` sets the reader word to GONE.
    Some(unsafe { announce(word) })
}

/// Announces this thread in its record (see [`pin`]). `word` is
/// the reader word: a record's address, with [`SYMMETRIC`] set when the
/// symmetric fences are in use, and no other tag.
///
/// # Safety
/// `word` is this thread's reader word, neither UNSET nor GONE, and
/// without [`NESTED`] (no pin of this thread stands).
#[inline(always)]
unsafe fn announce(word: usize) -> Pin {
    // SAFETY: the caller's promise.
    let record = unsafe { &*std::ptr::with_exposed_provenance::<Record>(word & !SYMMETRIC) };
    // Acquire: see the module docs (a reader that reads epoch a > r also
    // sees every unlink sealed at r).
    let epoch = EPOCH.load(Ordering::Acquire);
    record.active.store(epoch, Ordering::Relaxed);
    if word & SYMMETRIC != 0 {
        fence(Ordering::SeqCst);
    } else {
        // The owner's membarrier stands in for the hardware fence.
        compiler_fence(Ordering::SeqCst);
    }
    // This thread's own word (no other thread reads it): pins from now on
    // until this one ends are nested in it.
    reader::set(word | NESTED);
    Pin { word }
}

/// [`pin`] for a reader word with a tag bit: the thread's first read, a
/// pin nested in another, the symmetric fences, or a thread whose record
/// is gone.
#[cold]
#[inline(never)]
fn pin_slow(word: usize) -> Pin {
    if word & NESTED != 0 {
        // Nested in a pin of this thread that ends after this one (pins
        // live inside one `get`, so they end in the reverse order they
        // began): its announcement covers what this one reads, so this one
        // announces nothing and ends nothing. (`coherent_loom_break_nesting`:
        // the nested pin announces as if outermost, and its end stores 0,
        // which ends the outer announcement too early; the loom model of
        // nested pins must catch it.)
        if !cfg!(coherent_loom_break_nesting) {
            return Pin { word: NESTED_PIN };
        }
        // SAFETY: the reader word less NESTED: a record's address, with
        // SYMMETRIC when those fences are in use (as in `pin`).
        return unsafe { announce(word & !NESTED) };
    }
    let word = if word == UNSET { take_record() } else { word };
    if word == GONE {
        ORPHANS.fetch_add(1, Ordering::SeqCst);
        fence(Ordering::SeqCst);
        return Pin { word: GONE };
    }
    // SAFETY: `word` is the reader word (or what `take_record` just stored
    // there), neither UNSET nor GONE nor NESTED: a record's address, with
    // SYMMETRIC set when those fences are in use (as in `pin`).
    unsafe { announce(word) }
}

impl Pin {
    /// Whether this pin announced itself (in its record, or as an orphan)
    /// rather than nesting in another pin.
    #[cfg(all(test, not(coherent_loom)))]
    fn announced(&self) -> bool {
        self.word != NESTED_PIN
    }

    /// [`Drop`] for a nested or an orphan pin.
    #[cold]
    #[inline(never)]
    fn drop_slow(&self) {
        if self.word == GONE {
            ORPHANS.fetch_sub(1, Ordering::Release);
        }
    }
}

impl Drop for Pin {
    #[inline]
    fn drop(&mut self) {
        // NESTED_PIN (0) and GONE (2) are below every record's address.
        if self.word <= GONE {
            self.drop_slow();
            return;
        }
        // SAFETY: neither nested nor an orphan, so `word` is this thread's
        // record's address (with SYMMETRIC maybe set), as `announce` found
        // it in the reader word; the record outlives this thread's hold on it.
        let record =
            unsafe { &*std::ptr::with_exposed_provenance::<Record>(self.word & !SYMMETRIC) };
        // Release: every read made while pinned comes before this.
        record.active.store(0, Ordering::Release);
        // No pin of this thread stands any more.
        reader::set(self.word);
    }
}

/// Whether the asymmetric fences are in use: the light fence is a compiler
/// fence, the heavy one `membarrier`. The owner token's bias (`token.rs`)
/// relies on them, and is never granted without them (except under loom,
/// whose models run the symmetric fences on both sides).
pub(crate) fn asymmetric() -> bool {
    registry().asymmetric
}

/// The heavy fence; false if it could not be run (then nothing may be
/// freed this time).
pub(crate) fn heavy_fence() -> bool {
    if registry().asymmetric {
        membarrier::barrier()
    } else {
        fence(Ordering::SeqCst);
        true
    }
}

/// The oldest epoch a pinned reader announced, or `u64::MAX` if none is
/// pinned: a batch sealed at `r` may be freed when `r` is below it.
fn oldest_reader() -> u64 {
    if !heavy_fence() {
        return 0;
    }
    if ORPHANS.load(Ordering::Acquire) > 0 {
        return 0;
    }
    let records = registry().records.lock().unwrap_or_else(|e| e.into_inner());
    if cfg!(any(coherent_loom_break_reclaim, coherent_break_reclaim)) {
        return u64::MAX; // the broken variant: pinned readers are ignored
    }
    records
        .iter()
        .map(|r| r.active.load(Ordering::Acquire))
        .filter(|&a| a != 0)
        .min()
        .unwrap_or(u64::MAX)
}

/// Runs the heavy fence, scans the records, and returns the bound it
/// proves: every batch sealed below it, by any owner, may be freed. Also
/// raises [`COVERED`] to it, so that other owners free by it without a
/// fence of their own (module docs, "Sharing the heavy fence").
fn fence_and_scan() -> u64 {
    #[cfg(all(test, not(coherent_loom)))]
    FENCES_RUN.with(|n| n.set(n.get() + 1));
    // SeqCst, and before the fence: a batch sealed below `sealed` was
    // sealed (its `fetch_add` on `EPOCH`, after its unlinks) before this
    // load, so its unlinks come before the fence below. Loading it after
    // the fence (`coherent_loom_break_cover`) would also count batches
    // sealed while the fence ran, whose unlinks it does not order; the loom
    // model `a_fence_covers_only_batches_sealed_before_it` catches that.
    let sealed = if cfg!(coherent_loom_break_cover) {
        u64::MAX
    } else {
        EPOCH.load(Ordering::SeqCst)
    };
    let oldest = oldest_reader();
    let bound = if cfg!(coherent_loom_break_cover) {
        EPOCH.load(Ordering::SeqCst).min(oldest)
    } else {
        sealed.min(oldest)
    };
    // AcqRel: the owner that frees by this bound (Acquire load of
    // `COVERED`) sees everything this scan saw: the Release unpins of the
    // readers that held those batches.
    COVERED.fetch_max(bound, Ordering::AcqRel).max(bound)
}

#[cfg(all(test, not(coherent_loom)))]
std::thread_local! {
    /// Fences this thread ran (tests).
    static FENCES_RUN: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

/// What an owner has unlinked and not yet freed, in sealed batches.
/// `repr(C)`: `open`, touched on every retire, comes first (`Owner`).
#[repr(C)]
pub(crate) struct Garbage<T> {
    open: Vec<T>,
    sealed: VecDeque<(u64, Vec<T>)>,
    /// An emptied batch's buffer, reused for the next open batch (no
    /// allocation per batch, and memory that was touched recently).
    spare: Option<Vec<T>>,
}

impl<T> std::fmt::Debug for Garbage<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Garbage")
            .field("open", &self.open.len())
            .field("sealed", &self.sealed.len())
            .finish()
    }
}

impl<T> Garbage<T> {
    pub(crate) fn new() -> Self {
        Self {
            open: Vec::new(),
            sealed: VecDeque::new(),
            spare: None,
        }
    }

    /// Takes `item`, already unlinked: no reader that pins from now on can
    /// reach it. It is dropped once no reader that pinned earlier is left.
    #[cfg(test)]
    pub(crate) fn retire(&mut self, item: T) {
        self.retire_with(item, &mut Vec::clear);
    }

    /// [`retire`](Self::retire), handing each batch that may be freed to
    /// `free`, which takes its items out (and may keep their memory);
    /// whatever it leaves is dropped.
    #[inline]
    pub(crate) fn retire_with(&mut self, item: T, free: &mut impl FnMut(&mut Vec<T>)) {
        self.open.push(item);
        if self.open.len() >= BATCH {
            self.collect_after(FENCE_AFTER, free);
        }
    }

    /// Seals what is open and frees every sealed batch that no pinned
    /// reader can still hold. Never waits for readers.
    #[cfg(test)]
    pub(crate) fn collect(&mut self) {
        self.collect_with(&mut Vec::clear);
    }

    /// [`collect`](Self::collect), handing what may be freed to `free`.
    pub(crate) fn collect_with(&mut self, free: &mut impl FnMut(&mut Vec<T>)) {
        self.collect_after(1, free);
    }

    /// Seals what is open, frees the sealed batches that some fence has
    /// covered, and runs a fence itself first if `uncovered` or more are
    /// not covered yet.
    #[inline(never)]
    fn collect_after(&mut self, uncovered: usize, free: &mut impl FnMut(&mut Vec<T>)) {
        if !self.open.is_empty() {
            let next = self
                .spare
                .take()
                .unwrap_or_else(|| Vec::with_capacity(BATCH));
            let open = std::mem::replace(&mut self.open, next);
            // SeqCst: the unlinks before this (program order) are seen by a
            // reader that reads the new epoch with Acquire.
            let sealed_at = EPOCH.fetch_add(1, Ordering::SeqCst);
            self.sealed.push_back((sealed_at, open));
        }
        if self.sealed.is_empty() {
            return;
        }
        // Acquire: pairs with `fence_and_scan`'s raise of it.
        let mut covered = COVERED.load(Ordering::Acquire);
        // Batches are sealed in epoch order, so the uncovered ones are last.
        let open = self
            .sealed
            .iter()
            .rev()
            .take_while(|(r, _)| *r >= covered)
            .count();
        if open >= uncovered {
            covered = fence_and_scan();
        }
        while self.sealed.front().is_some_and(|(r, _)| *r < covered) {
            if let Some((_, mut batch)) = self.sealed.pop_front() {
                free(&mut batch);
                batch.clear();
                self.spare = Some(batch);
            }
        }
    }

    /// Items not yet freed (tests).
    #[cfg(all(test, not(coherent_loom)))]
    pub(crate) fn pending(&self) -> usize {
        self.items().count()
    }

    /// The items not yet freed (tests).
    #[cfg(all(test, not(coherent_loom)))]
    pub(crate) fn items(&self) -> impl Iterator<Item = &T> {
        self.open
            .iter()
            .chain(self.sealed.iter().flat_map(|(_, b)| b))
    }
}

#[cfg(all(test, not(coherent_loom)))]
mod tests;

/// The reclamation protocol under loom (symmetric fences): a reader that
/// races the unlink and free of what it reads. The free is modelled as a
/// write to a loom `UnsafeCell` that the reader reads, so loom reports any
/// interleaving in which the free is not ordered after the read. Building
/// with `--cfg coherent_loom_break_reclaim` makes the owner ignore pinned
/// readers, and loom finds that interleaving (docs/guarantees.md).
#[cfg(all(test, coherent_loom))]
mod loom_tests;
