//! `reclaim.rs` again, with the fallback fences (a `fence(SeqCst)` on each
//! side) that `coherent` uses where `membarrier(2)` is missing. The choice is
//! made once per process, so this scenario has a test binary of its own.

#[test]
fn readers_never_see_freed_values_with_the_fallback_fences() {
    // Before any cache exists in this process: the fences are chosen when
    // the first reader registers. This binary runs this one test only.
    std::env::set_var("COHERENT_NO_MEMBARRIER", "1");
    coherent_tests::reclaim::readers_race_writers();
}
