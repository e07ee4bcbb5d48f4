//! Loom models of reclamation: a reader pinned before a retire keeps the
//! memory, and a fence covers only batches sealed before it.

use super::*;
use crate::sync::AtomicPtr;
use loom::cell::UnsafeCell;

struct Node(UnsafeCell<u64>);

/// Owns a node that was unlinked; "frees" it (a write loom checks) and
/// then really frees it.
struct Unlinked(*mut Node);

impl Drop for Unlinked {
    fn drop(&mut self) {
        // SAFETY: `self.0` came from `Box::into_raw` and was unlinked;
        // the model checks that no reader can still read it.
        let node = unsafe { Box::from_raw(self.0) };
        // SAFETY: the write loom checks for a race with the reader.
        node.0.with_mut(|v| unsafe { *v = 0 });
    }
}

/// A node (value 1) behind a shared pointer, and a thread that loads
/// it while pinned (twice, the second pin nested in the first and
/// ended before the read, if `nested`) and reads it: the race the
/// models below set against an unlink and free of that node.
fn racing_reader(nested: bool) -> (Arc<AtomicPtr<Node>>, loom::thread::JoinHandle<()>) {
    let first = Box::into_raw(Box::new(Node(UnsafeCell::new(1))));
    let shared = Arc::new(AtomicPtr::new(first));
    let reader = {
        let shared = shared.clone();
        loom::thread::spawn(move || {
            let _pin = pin();
            let node = shared.load(Ordering::Acquire);
            if nested {
                drop(pin());
            }
            // SAFETY: the property under test: pinned (by the outer
            // pin when nested), the node we loaded is not freed while
            // we read it.
            let v = unsafe { &*node }.0.with(|v| unsafe { *v });
            assert!(v == 1 || v == 2, "read a freed node ({v})");
        })
    };
    (shared, reader)
}

/// [`racing_reader`] against the owner's unlink and free of its node.
fn reader_vs_free(name: &str, nested: bool) {
    crate::loom_model(name, move || {
        let (shared, reader) = racing_reader(nested);
        let second = Box::into_raw(Box::new(Node(UnsafeCell::new(2))));
        let old = shared.swap(second, Ordering::AcqRel);
        let mut garbage = Garbage::new();
        garbage.retire(Unlinked(old));
        garbage.collect();
        reader.join().unwrap();
        garbage.collect();
        drop(garbage);
        drop(Unlinked(shared.load(Ordering::Acquire)));
    });
}

/// One owner's fence frees what another owner sealed, but only what
/// it sealed before the fence began: the owner here seals its batch
/// and never fences (it frees only by [`COVERED`]), while another
/// thread runs a fence and scan at any point of the race. Building
/// with `--cfg coherent_loom_break_cover` (the fence's bound read after
/// the fence, so that it also counts a batch sealed while the fence
/// ran) makes loom report the free racing the reader's read.
#[test]
fn a_fence_covers_only_batches_sealed_before_it() {
    crate::loom_model("reclaim_shared_fence", || {
        let (shared, reader) = racing_reader(false);
        let fencer = loom::thread::spawn(|| {
            fence_and_scan();
        });
        let second = Box::into_raw(Box::new(Node(UnsafeCell::new(2))));
        let old = shared.swap(second, Ordering::AcqRel);
        let mut garbage = Garbage::new();
        garbage.open.push(Unlinked(old));
        // Seal, and free only what a fence already covers.
        garbage.collect_after(usize::MAX, &mut Vec::clear);
        fencer.join().unwrap();
        garbage.collect_after(usize::MAX, &mut |batch| {
            FREED_BY_ANOTHERS_FENCE.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            batch.clear();
        });
        reader.join().unwrap();
        garbage.collect();
        drop(garbage);
        drop(Unlinked(shared.load(Ordering::Acquire)));
    });
    // The model reached the case it is about: a free by the other
    // thread's fence alone, in some interleaving.
    assert!(FREED_BY_ANOTHERS_FENCE.load(std::sync::atomic::Ordering::Relaxed) > 0);
}

/// Interleavings of the model above in which the owner freed by the
/// other thread's fence (std's atomic: it counts across the model's runs).
static FREED_BY_ANOTHERS_FENCE: std::sync::atomic::AtomicUsize =
    std::sync::atomic::AtomicUsize::new(0);

#[test]
fn a_racing_reader_never_reads_freed_memory() {
    reader_vs_free("reclaim_reader_vs_free", false);
}

/// A pin nested in another (a `get` from a value's `Clone`) leaves the
/// outer pin's announcement standing when it ends: the reader reads
/// after its inner pin ended, still under the outer one, and the owner
/// must not free what it reads. Building with `--cfg
/// coherent_loom_break_nesting` (a nested pin announces as if outermost,
/// and its end stores 0) makes loom report
/// the free racing that read.
#[test]
fn an_inner_pin_ending_leaves_the_outer_one_standing() {
    reader_vs_free("reclaim_nested_pin_vs_free", true);
}
