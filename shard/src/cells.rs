//! Where an owner keeps its entries: blocks aligned to a cache line, cut
//! into cells of one power-of-two size (16, 32 or 64 bytes), so that no
//! entry of up to 64 bytes spans two cache lines, whatever the process
//! allocated before the cache.
//!
//! Why not the global allocator: glibc serves a 24-byte plain
//! `u64` entry from a 32-byte chunk whose address is 16 bytes past a
//! 32-byte boundary or on one, depending on earlier allocations, so half
//! the entries spanned two lines in some processes and none in others;
//! and it serves a 32-byte bounded entry from a 48-byte chunk (its 8-byte
//! header does not fit). Cells cost no header and keep every entry in one
//! line: a bounded cache takes 16 bytes less per `u64` entry and its `get`
//! is about 3% faster; the unbounded `get` measured the same
//! (docs/design.md, "Entries and cells").
//!
//! Each shard's owner has its own [`Blocks`], which it carves cells from,
//! and its own [`Cells`], those of its freed entries, which its next writes
//! reuse. Only the token holder touches them, so there is no lock. Memory
//! is reused, never returned early: a shard keeps as many cells as it ever
//! held entries at once, as quick_cache's slab does, and frees its blocks
//! when it goes, after its entries (the owner holds its `Blocks` in its
//! last field).
//!
//! Why not one set of blocks for all the shards of a cache, so that
//! entries written one after another sit side by side whatever shard they
//! went to (as the global allocator places them)? Measured: its lock cost two threads filling a cache with new keys about
//! twice the time per insert (`--example fill`: 345-408 ns against 194
//! with per-shard cells, 176 with glibc), and a one-thread `get` over Zipf
//! 1.0 gained nothing measurable from the placement (`get_loop 0 30`,
//! five processes each: 27.3-28.9 ns per-shard, 27.4-33.0 shared).

use std::alloc::{alloc, dealloc, handle_alloc_error, Layout};
use std::ptr::NonNull;

/// A cache line, and the alignment of every block.
const LINE: usize = 64;

/// Bytes per block: 64 to 256 cells. Small, so that a shard with few
/// entries holds little more than it needs (at most one partly used block
/// per cell size).
const BLOCK: usize = 4096;

/// The cell sizes: 16, 32 and 64 bytes.
const CLASSES: usize = 3;

/// The cell for a layout of `size` bytes aligned to `align`: the next power
/// of two (at least 16), which a cell boundary never splits across lines;
/// 0 when the layout needs more than a line (such entries are allocated one
/// by one, from the global allocator).
pub(crate) const fn cell_for(size: usize, align: usize) -> usize {
    if size > LINE || align > LINE {
        0
    } else if size <= 16 {
        16
    } else {
        size.next_power_of_two()
    }
}

/// The class of a cell size from [`cell_for`] (not 0).
#[inline(always)]
const fn class(cell: usize) -> usize {
    cell.trailing_zeros() as usize - 4
}

/// Asks the CPU to bring `p`'s cache line in. A hint: it never faults,
/// whatever the address, and changes no memory; a no-op off x86_64.
#[inline(always)]
fn prefetch(p: *const u8) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: `prefetcht0` has no architectural effect and cannot fault, on
    // any address; SSE is part of x86_64.
    unsafe {
        use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
        _mm_prefetch::<_MM_HINT_T0>(p.cast::<i8>());
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = p;
}

/// An owner's free cells, by size: those of its freed entries, reused
/// first (the most recent last). It frees nothing: the owner's [`Blocks`]
/// hold the memory. What readers see of an entry in a cell is ordered by
/// the slot's Release store, as for any memory (`sync.rs`); a cell comes
/// back here only once no reader can hold its last entry (`reclaim.rs`).
pub(crate) struct Cells {
    classes: [Vec<NonNull<u8>>; CLASSES],
    /// Cells taken and not given back (tests: the owner checks that every
    /// one is an entry it can still reach).
    #[cfg(all(test, not(coherent_loom)))]
    out: usize,
}

// SAFETY: `Cells` holds the addresses of free cells of its owner's
// `Blocks`, in which no value lives; nothing in it is shared, so it may
// move to another thread with its owner.
unsafe impl Send for Cells {}

impl Cells {
    pub(crate) fn new() -> Self {
        Self {
            classes: [Vec::new(), Vec::new(), Vec::new()],
            #[cfg(all(test, not(coherent_loom)))]
            out: 0,
        }
    }

    /// A cell of `cell` bytes (a size from [`cell_for`]), holding nothing,
    /// for the caller to write an entry into. Reuses a given-back cell
    /// first, and asks the processor to bring the next one into cache for
    /// the write after this one (a cell given back was last touched a
    /// batch of writes ago; without the hint, this write's miss would land
    /// on the token release, which waits for it).
    #[inline(always)]
    pub(crate) fn take(&mut self, cell: usize, blocks: &mut Blocks) -> NonNull<u8> {
        #[cfg(all(test, not(coherent_loom)))]
        {
            self.out += 1;
        }
        let free = &mut self.classes[class(cell)];
        if let Some(p) = free.pop() {
            if let Some(next) = free.last() {
                prefetch(next.as_ptr());
            }
            return p;
        }
        blocks.cut(cell)
    }

    /// Gives back a cell of `cell` bytes taken from these cells, holding
    /// nothing any more, for a later entry.
    #[inline(always)]
    pub(crate) fn give(&mut self, cell: usize, p: NonNull<u8>) {
        #[cfg(all(test, not(coherent_loom)))]
        {
            self.out -= 1;
        }
        self.classes[class(cell)].push(p);
    }

    /// Cells taken and not given back (tests).
    #[cfg(all(test, not(coherent_loom)))]
    pub(crate) fn out(&self) -> usize {
        self.out
    }
}

/// The memory an owner's cells are cut from: blocks of [`BLOCK`] bytes,
/// each of one cell size, and where each size cuts next. Freed, with
/// every block, when the owner goes (its last field: after every entry).
#[derive(Default)]
pub(crate) struct Blocks {
    /// Every block, freed on drop.
    all: Vec<NonNull<u8>>,
    /// By cell size: the newest block of that size, if any, and the
    /// offset there of the next cell never used (`BLOCK`: none left).
    newest: [Option<NonNull<u8>>; CLASSES],
    next: [usize; CLASSES],
}

impl Blocks {
    fn layout() -> Layout {
        // A power of two, aligned to a line: valid.
        Layout::from_size_align(BLOCK, LINE).expect("a valid block layout")
    }

    /// A never-used cell of `cell` bytes (a size from [`cell_for`]): the
    /// next one of the newest block of that size, or the first of a new
    /// block.
    #[inline(never)]
    pub(crate) fn cut(&mut self, cell: usize) -> NonNull<u8> {
        let c = class(cell);
        let (block, offset) = match self.newest[c] {
            Some(block) if self.next[c] < BLOCK => (block, self.next[c]),
            _ => {
                // SAFETY: the layout has a non-zero size.
                let p = unsafe { alloc(Self::layout()) };
                let Some(p) = NonNull::new(p) else {
                    handle_alloc_error(Self::layout());
                };
                self.all.push(p);
                self.newest[c] = Some(p);
                (p, 0)
            }
        };
        self.next[c] = offset + cell;
        // SAFETY: `offset + cell <= BLOCK` (`BLOCK` is a multiple of every
        // cell size and `offset` one of `cell`): a cell inside the block.
        unsafe { block.add(offset) }
    }
}

// SAFETY: owns plain memory blocks; whatever lives in them is owned (and
// dropped) by the owner that holds these blocks, before they go.
unsafe impl Send for Blocks {}

impl Drop for Blocks {
    fn drop(&mut self) {
        for p in self.all.drain(..) {
            // SAFETY: allocated in `cut` with this layout, freed once (the
            // vector is drained). What lived in it was dropped before: an
            // owner drops its cells last.
            unsafe { dealloc(p.as_ptr(), Self::layout()) };
        }
    }
}

#[cfg(all(test, not(coherent_loom)))]
mod tests {
    use super::*;

    #[test]
    fn cells_never_span_two_lines_and_are_reused() {
        assert_eq!(
            (cell_for(8, 8), cell_for(24, 8), cell_for(32, 8)),
            (16, 32, 32)
        );
        assert_eq!(
            (cell_for(40, 8), cell_for(64, 8), cell_for(72, 8)),
            (64, 64, 0)
        );
        let (mut cells, mut blocks) = (Cells::new(), Blocks::default());
        for cell in [16, 32, 64] {
            let taken: Vec<_> = (0..1000).map(|_| cells.take(cell, &mut blocks)).collect();
            for p in &taken {
                let a = p.as_ptr().addr();
                assert_eq!(a % cell, 0, "a {cell}-byte cell is aligned to its size");
                assert_eq!(a / LINE, (a + cell - 1) / LINE, "one line");
            }
            let mut distinct = taken.clone();
            distinct.sort();
            distinct.dedup();
            assert_eq!(distinct.len(), taken.len(), "no cell handed out twice");
            for p in taken.iter().rev() {
                cells.give(cell, *p);
            }
            assert_eq!(cells.take(cell, &mut blocks), taken[0], "reused first");
            cells.give(cell, taken[0]);
        }
        assert_eq!(cells.out(), 0);
        // 1000 cells of each size: 4, 8 and 16 blocks.
        assert_eq!(blocks.all.len(), 4 + 8 + 16);
    }
}
