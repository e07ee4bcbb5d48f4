//! Unit tests of reclamation on real threads: pins, records reused after
//! threads exit, batches freed only once no reader can hold them, the
//! shared fence.

use super::*;
use std::sync::atomic::AtomicUsize as StdCount;

struct Counted<'a>(&'a StdCount);
impl Drop for Counted<'_> {
    fn drop(&mut self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }
}

/// Collects until `want` items are freed. Other tests of this binary
/// read shards on their own threads, and a reader that pinned just
/// before a seal holds that batch for the few nanoseconds it reads: a
/// free may take a retry or two, never more than a bounded few.
fn collect_until(garbage: &mut Garbage<Counted<'_>>, freed: &StdCount, want: usize) {
    for _ in 0..100_000 {
        garbage.collect();
        if freed.load(Ordering::Relaxed) == want {
            return;
        }
        std::thread::yield_now();
    }
    panic!("only {} of {want} freed", freed.load(Ordering::Relaxed));
}

#[test]
fn nothing_is_freed_while_an_earlier_reader_is_pinned() {
    let freed = StdCount::new(0);
    let mut garbage = Garbage::new();
    let pin = pin();
    for _ in 0..BATCH * 3 {
        garbage.retire(Counted(&freed));
    }
    garbage.collect();
    assert_eq!(freed.load(Ordering::Relaxed), 0, "freed under a reader");
    assert_eq!(garbage.pending(), BATCH * 3);
    drop(pin);
    collect_until(&mut garbage, &freed, BATCH * 3);
    assert_eq!(garbage.pending(), 0);
}

#[test]
fn a_reader_pinned_after_the_seal_does_not_hold_the_batch() {
    let freed = StdCount::new(0);
    let mut garbage = Garbage::new();
    garbage.retire(Counted(&freed));
    garbage.collect(); // sealed here
    let late = pin(); // pinned after the seal: does not hold it back
    collect_until(&mut garbage, &freed, 1);
    drop(late);
}

#[test]
fn nested_pins_retract_only_at_the_outermost() {
    let freed = StdCount::new(0);
    let mut garbage = Garbage::new();
    let outer = pin();
    let inner = pin();
    garbage.retire(Counted(&freed));
    drop(inner);
    garbage.collect();
    assert_eq!(freed.load(Ordering::Relaxed), 0, "outer pin still holds");
    drop(outer);
    collect_until(&mut garbage, &freed, 1);
}

#[test]
fn the_reader_word_is_each_threads_own() {
    // A new thread's word is UNSET, whatever other threads stored in
    // theirs; a pin sets NESTED in its own thread's word only, and its
    // end clears it.
    let (tx, rx) = std::sync::mpsc::channel();
    let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
    let other = std::thread::spawn(move || {
        assert_eq!(reader::get(), UNSET, "a new thread's word");
        let pinned = pin();
        let word = reader::get();
        tx.send(word).unwrap();
        done_rx.recv().unwrap(); // hold the pin while the main thread looks
        drop(pinned);
        assert_eq!(reader::get(), word & !NESTED, "the pin's end clears NESTED");
    });
    let theirs = rx.recv().unwrap();
    assert_eq!(theirs & NESTED, NESTED, "a standing pin sets NESTED");
    drop(pin()); // this thread has its record
    let mine = reader::get();
    assert_eq!(mine & NESTED, 0, "the other thread's pin is not ours");
    assert_ne!(mine & !TAGS, theirs & !TAGS, "two threads, two records");
    let pinned = pin();
    assert_eq!(reader::get(), mine | NESTED);
    drop(pinned);
    assert_eq!(reader::get(), mine);
    done_tx.send(()).unwrap();
    other.join().unwrap();
}

#[test]
fn records_are_reused_after_threads_exit() {
    let count = || registry().records.lock().unwrap().len();
    drop(pin()); // this thread's record exists before we count
    let before = count();
    for _ in 0..64 {
        std::thread::spawn(|| drop(pin())).join().unwrap();
    }
    // Other tests of this binary run threads meanwhile, a few at a time;
    // without reuse there would be 64 more records.
    let grown = count() - before;
    assert!(grown < 32, "{grown} records for 64 short-lived readers");
}

#[test]
fn a_read_from_a_thread_local_destructor_is_safe_and_counted_out() {
    struct ReadsOnExit(std::sync::mpsc::Sender<bool>);
    impl Drop for ReadsOnExit {
        fn drop(&mut self) {
            // Runs during thread teardown, before or after this
            // thread's record is given back: either way a valid pin.
            let pinned = pin();
            let announced = pinned.announced();
            drop(pinned);
            let _ = self.0.send(announced);
        }
    }
    thread_local! {
        static PROBE: std::cell::RefCell<Option<ReadsOnExit>> =
            const { std::cell::RefCell::new(None) };
    }
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        drop(pin()); // take a record first, so both may be torn down
        PROBE.with(|p| *p.borrow_mut() = Some(ReadsOnExit(tx)));
    })
    .join()
    .unwrap();
    assert!(rx.recv().unwrap(), "the destructor's pin announced itself");
    assert_eq!(ORPHANS.load(Ordering::SeqCst), 0, "an orphan pin leaked");
}

/// An owner frees a batch it sealed by another owner's later fence,
/// without running one itself (`collect_after(usize::MAX, ..)` never
/// fences): what lets one fence serve every shard.
#[test]
fn a_fence_run_by_another_owner_frees_a_batch_sealed_before_it() {
    let freed = StdCount::new(0);
    let mut garbage = Garbage::new();
    garbage.retire(Counted(&freed));
    garbage.collect_after(usize::MAX, &mut Vec::clear); // sealed here
                                                        // Retries only for other tests' readers, pinned for a few
                                                        // nanoseconds at the moment of a fence (`collect_until`).
    for _ in 0..100_000 {
        std::thread::spawn(|| {
            fence_and_scan();
        })
        .join()
        .unwrap();
        garbage.collect_after(usize::MAX, &mut Vec::clear);
        if freed.load(Ordering::Relaxed) == 1 {
            return;
        }
    }
    panic!("another owner's fence never freed the batch");
}

/// A full batch runs a fence only once [`FENCE_AFTER`] sealed batches
/// wait for one; until then it leaves the fence to whichever owner
/// gets there first. (The pin keeps any fence from covering these
/// batches, so the count depends on this owner alone.)
#[test]
fn full_batches_wait_for_a_shared_fence_until_fence_after() {
    let freed = StdCount::new(0);
    let mut garbage = Garbage::new();
    let pin = pin();
    let fences = || FENCES_RUN.with(std::cell::Cell::get);
    let start = fences();
    for batch in 1..=FENCE_AFTER + 1 {
        for _ in 0..BATCH {
            garbage.retire(Counted(&freed));
        }
        let want = (batch + 1).saturating_sub(FENCE_AFTER);
        assert_eq!(fences() - start, want, "fences after {batch} batches");
        if batch == 1 {
            assert_eq!(want, 0, "a first full batch leaves the fence to others");
        }
    }
    assert_eq!(freed.load(Ordering::Relaxed), 0, "freed under a reader");
    drop(pin);
    collect_until(&mut garbage, &freed, BATCH * (FENCE_AFTER + 1));
}

#[test]
fn a_pinned_reader_on_another_thread_holds_the_batch() {
    let freed = StdCount::new(0);
    let mut garbage = Garbage::new();
    let (pinned_tx, pinned_rx) = std::sync::mpsc::channel();
    let (go_tx, go_rx) = std::sync::mpsc::channel::<()>();
    let reader = std::thread::spawn(move || {
        let _pin = pin();
        pinned_tx.send(()).unwrap();
        go_rx.recv().unwrap();
    });
    pinned_rx.recv().unwrap();
    garbage.retire(Counted(&freed));
    garbage.collect();
    assert_eq!(freed.load(Ordering::Relaxed), 0, "freed under a reader");
    go_tx.send(()).unwrap();
    reader.join().unwrap();
    collect_until(&mut garbage, &freed, 1);
}
