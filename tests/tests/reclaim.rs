//! Readers racing writers that replace, remove and rehash the entries they
//! read: no `get` ever reads a value that was freed (or reused for another
//! key), nothing is freed twice, and when the cache goes every value goes
//! with it. The ordering argument is model-checked by loom
//! (`reclaim::loom_tests` in coherent-shard, whose broken variant loom
//! catches); this runs the real thing at scale, with the membarrier fences
//! where the kernel offers them. `reclaim_symmetric.rs` runs it again with
//! the fallback fences.

#[test]
fn readers_never_see_freed_values_and_nothing_leaks() {
    coherent_tests::reclaim::readers_race_writers();
}
