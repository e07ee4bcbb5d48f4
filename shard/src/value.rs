//! An entry's value, and the one way a published entry ever changes: a
//! value of one machine word, replaced in place by the owner.
//!
//! A published entry is immutable in its hash and key, and in its value
//! too unless the value type is a *word*: no drop glue, and 1, 2, 4 or 8
//! bytes with an alignment equal to its size (`u64`, `i32`, `f64`, `usize`,
//! `char`, `bool`, `Option<NonZeroU64>`, a `&'static T`...). For a word the
//! owner's plain replacement of a key's value (no transaction, load or tag
//! involved, no removal listener, no expiry) stores the new value over the
//! old one with one atomic store instead of publishing a new entry and
//! retiring the old one, when the new entry would have the old one's
//! layout (`Owner::put`); every reader loads it with one atomic load. A
//! bounded shard's policy keeps the entry in place and takes its new
//! weight (`Policy::rewritten`). One store of one word is as atomic as the slot's pointer store it
//! stands in for: a reader sees the old value or the new one, whole, and
//! the writer is answered after the store, so every `get` that starts after
//! the answer sees the new value (write-read coherence of one location).
//! docs/design.md, "Word values replaced in place", has the measurement: at 20%
//! writes on one thread the new entry, its retirement and its reclamation
//! were a sixth of the whole mix's time.
//!
//! The key stays the key object the entry was made with (as
//! `HashMap::insert` keeps its key); the new write's key is dropped.
//!
//! Why not for other values: a reader clones the value from the entry, and
//! a value of more than one word (or with drop glue, whose old value must
//! be dropped once no reader holds it) cannot be swapped under a reader's
//! clone; those keep the immutable entry and epoch reclamation.
//!
//! The loads and stores go through `atomic-maybe-uninit`, because a word
//! type may have padding (`#[repr(align(8))] struct S(u8)`), and copying
//! uninitialised bytes through `AtomicU64` would be undefined behaviour.
//! They are Release stores and Acquire loads: for a pointer-like word
//! (`&'static T`) a reader must see what the pointer points to. Loom cannot
//! place its atomics over an entry's bytes, so under `coherent_loom` no
//! type is a word and the models run the immutable path; the argument for
//! the in-place path is the one above (one location, Release/Acquire), and
//! `tests/tests/in_place.rs` checks it on real threads against two naive
//! variants it must catch (a torn two-half store, an answer before the
//! store).

use std::cell::UnsafeCell;
use std::mem::{align_of, needs_drop, size_of, MaybeUninit};

/// An entry's value: immutable, or (for a word type, `Value::IN_PLACE`)
/// replaced in place by the shard's owner.
#[repr(transparent)]
pub(crate) struct Value<V>(UnsafeCell<V>);

// SAFETY: readers share `&Value<V>` across threads. For a type that is not
// `IN_PLACE` nothing writes the value after publication, so shared reads
// are all there is, as for `V: Sync`. For an `IN_PLACE` type the only write
// is the owner's atomic `replace` (one thread at a time, under the token)
// and every reader's access is an atomic `read`: no data race. `V: Send`
// because the value written on one thread is read (copied) on others.
unsafe impl<V: Send + Sync> Sync for Value<V> {}

impl<V> Value<V> {
    /// Whether `V` is a word, replaced in place (module docs). A constant:
    /// the compiler keeps only one of the two paths for each `V`.
    pub(crate) const IN_PLACE: bool = cfg!(not(coherent_loom))
        && cfg!(any(target_arch = "x86_64", target_arch = "aarch64"))
        && !needs_drop::<V>()
        && matches!(size_of::<V>(), 1 | 2 | 4 | 8)
        && align_of::<V>() == size_of::<V>();

    pub(crate) const fn new(value: V) -> Self {
        Self(UnsafeCell::new(value))
    }

    /// A reader's copy of the value (any thread, pinned or owner).
    #[inline(always)]
    pub(crate) fn read(&self) -> V
    where
        V: Clone,
    {
        if Self::IN_PLACE {
            let bits = self.load();
            // SAFETY: every store into the value was of a whole, valid `V`
            // (`new`, `replace`), and the load is of the whole word, so the
            // bits are a valid `V`. It is cloned from this copy; the copy is
            // never dropped, which is fine: `V` has no drop glue.
            unsafe { bits.assume_init_ref() }.clone()
        } else {
            // SAFETY: not `IN_PLACE`: nothing writes the value after the
            // entry was published.
            unsafe { &*self.0.get() }.clone()
        }
    }

    /// The value by reference, for the owner's own reads (a weigher, a
    /// listener, an update's current value).
    ///
    /// # Safety
    /// The caller holds the shard's token (so no `replace` runs while the
    /// reference lives), or `V` is not `IN_PLACE` (nothing ever writes it).
    #[inline]
    pub(crate) unsafe fn get(&self) -> &V {
        // SAFETY: the caller's contract: no write while the reference
        // lives; concurrent readers only load.
        unsafe { &*self.0.get() }
    }

    /// Replaces the value of a published entry in place, dropping nothing
    /// (`V` has no drop glue).
    ///
    /// # Safety
    /// `Self::IN_PLACE`, and the caller holds the token of the shard whose
    /// table holds the entry (so it is the only writer).
    #[inline(always)]
    pub(crate) unsafe fn replace(&self, value: V) {
        let bits = MaybeUninit::new(value);
        #[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
        {
            use atomic_maybe_uninit::AtomicMaybeUninit;
            use std::sync::atomic::Ordering::Release;
            let p = self.0.get();
            // SAFETY: (each arm) `V` is `size` bytes with alignment `size`
            // (`IN_PLACE`), so the value's address is aligned for the
            // `size`-byte atomic and the transmuted copy has the same size;
            // the caller is the only writer and every reader loads
            // atomically (`read`), so no access races non-atomically. The
            // pointer is valid: the entry is live (its shard holds it).
            // Release: a reader's Acquire `load` sees what a pointer-like
            // value points to.
            unsafe {
                match size_of::<V>() {
                    1 => AtomicMaybeUninit::<u8>::from_ptr(p.cast())
                        .store(std::mem::transmute_copy(&bits), Release),
                    2 => AtomicMaybeUninit::<u16>::from_ptr(p.cast())
                        .store(std::mem::transmute_copy(&bits), Release),
                    4 => AtomicMaybeUninit::<u32>::from_ptr(p.cast())
                        .store(std::mem::transmute_copy(&bits), Release),
                    _ => AtomicMaybeUninit::<u64>::from_ptr(p.cast())
                        .store(std::mem::transmute_copy(&bits), Release),
                }
            }
        }
        #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
        {
            let _ = bits;
            unreachable!("no type is a word on this target");
        }
    }

    /// The whole word, loaded atomically (`IN_PLACE` only).
    #[inline(always)]
    fn load(&self) -> MaybeUninit<V> {
        #[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
        {
            use atomic_maybe_uninit::AtomicMaybeUninit;
            use std::sync::atomic::Ordering::Acquire;
            let p = self.0.get();
            // SAFETY: (each arm) as in `replace`: aligned, same size, and
            // the only write to the location is the owner's atomic store.
            // Acquire pairs with `replace`'s Release.
            unsafe {
                match size_of::<V>() {
                    1 => std::mem::transmute_copy(
                        &AtomicMaybeUninit::<u8>::from_ptr(p.cast()).load(Acquire),
                    ),
                    2 => std::mem::transmute_copy(
                        &AtomicMaybeUninit::<u16>::from_ptr(p.cast()).load(Acquire),
                    ),
                    4 => std::mem::transmute_copy(
                        &AtomicMaybeUninit::<u32>::from_ptr(p.cast()).load(Acquire),
                    ),
                    _ => std::mem::transmute_copy(
                        &AtomicMaybeUninit::<u64>::from_ptr(p.cast()).load(Acquire),
                    ),
                }
            }
        }
        #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
        unreachable!("no type is a word on this target")
    }
}

impl<V: std::fmt::Debug> std::fmt::Debug for Value<V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if Self::IN_PLACE {
            let bits = self.load();
            // SAFETY: as in `read`; formatted from the copy, never dropped.
            unsafe { bits.assume_init_ref() }.fmt(f)
        } else {
            // SAFETY: as in `read`.
            unsafe { &*self.0.get() }.fmt(f)
        }
    }
}

#[cfg(all(test, not(coherent_loom)))]
mod tests {
    use super::Value;

    #[repr(C, align(8))]
    #[derive(Clone, Copy, Debug, PartialEq)]
    struct Padded(u8);

    #[test]
    fn words_are_in_place_and_the_rest_are_not() {
        let word = cfg!(any(target_arch = "x86_64", target_arch = "aarch64"));
        assert_eq!(Value::<u64>::IN_PLACE, word);
        assert_eq!(Value::<u8>::IN_PLACE, word);
        assert_eq!(Value::<f32>::IN_PLACE, word);
        const { assert!(!Value::<&'static str>::IN_PLACE, "two words") };
        assert_eq!(Value::<Padded>::IN_PLACE, word);
        const { assert!(!Value::<String>::IN_PLACE, "drop glue") };
        const { assert!(!Value::<[u8; 3]>::IN_PLACE, "not a word's size") };
        const { assert!(!Value::<[u16; 4]>::IN_PLACE, "alignment below size") };
        const { assert!(!Value::<u128>::IN_PLACE, "two words") };
    }

    #[test]
    fn a_replaced_word_reads_back_whole() {
        let v = Value::new(7u64);
        assert_eq!(v.read(), 7);
        if Value::<u64>::IN_PLACE {
            // SAFETY: in place, and this thread is the only writer.
            unsafe { v.replace(u64::MAX - 1) };
            assert_eq!(v.read(), u64::MAX - 1);
            let p = Value::new(Padded(3));
            // SAFETY: as above.
            unsafe { p.replace(Padded(200)) };
            assert_eq!(p.read(), Padded(200));
            let b = Value::new(false);
            // SAFETY: as above.
            unsafe { b.replace(true) };
            assert!(b.read());
            assert_eq!(format!("{b:?}"), "true");
        }
        let s = Value::new(String::from("x"));
        assert_eq!(s.read(), "x");
    }
}
