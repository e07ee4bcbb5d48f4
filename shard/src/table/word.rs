//! The slot word: an entry's address with a 16-bit hash tag in its top
//! bits and its kind (tagged entry, untagged entry, intent) in its 3 low
//! bits, and the tombstone. Pure bit arithmetic, shared by readers and the
//! owner.

use super::*;

/// The tombstone: a removed key's slot, which readers probe past. Address 1
/// can never be an `Entry` (entries are at least 8-aligned, so at or above
/// address 8), and it is never dereferenced.
pub(super) fn tomb<K, V>() -> *mut Entry<K, V> {
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
pub(super) const KIND: usize = 0b111;

/// The kind of an entry pointer without a tag.
pub(super) const RAW: usize = 0b010;

/// The kind of every intent pointer.
pub(super) const INTENT: usize = 0b111;

/// The bits of a slot pointer that hold a tag (none on targets whose
/// pointers are narrower than 64 bits: there every entry matches every
/// probe's tag, and the probe compares hashes).
#[cfg(target_pointer_width = "64")]
pub(super) const HIGH: usize = 0xFFFF << 48;
#[cfg(not(target_pointer_width = "64"))]
pub(super) const HIGH: usize = 0;

/// The tag of `hash`: its bits 40-55 (which neither the shard choice, from
/// the top bits, nor the probe start, from at most the low 38, depends on)
/// moved to [`HIGH`].
#[inline]
pub(super) fn tag(hash: u64) -> usize {
    ((hash << 8) as usize) & HIGH
}

/// The slot word for an entry at address `a` (aligned, so its [`KIND`]
/// bits are 0) whose tag is `t`: tagged if the address leaves [`HIGH`]
/// free, else [`RAW`].
#[inline]
pub(super) fn entry_word(a: usize, t: usize) -> usize {
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
pub(super) fn may_match(a: usize, want: usize) -> bool {
    a & (HIGH | KIND) == want || a & KIND == RAW
}

pub(super) fn tagged<K, V>(entry: OwnedEntry<K, V>) -> *mut Entry<K, V> {
    let t = tag(entry.hash());
    entry.into_raw().map_addr(|a| entry_word(a, t))
}

pub(super) fn tagged_intent<K, V>(intent: OwnedIntent<K, V>) -> *mut Entry<K, V> {
    intent
        .into_raw()
        .cast::<Entry<K, V>>()
        .map_addr(|a| a | INTENT)
}

/// The address a slot pointer (not the tombstone) points to: a tagged
/// entry's with its tag cleared, any other's with its kind cleared.
#[inline]
pub(super) fn untagged<K, V>(p: *mut Entry<K, V>) -> *mut Entry<K, V> {
    p.map_addr(|a| if a & KIND == 0 { a & !HIGH } else { a & !KIND })
}

pub(super) fn is_intent<K, V>(p: *mut Entry<K, V>) -> bool {
    p.addr() & KIND == INTENT
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
