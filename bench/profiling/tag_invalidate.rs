//! `invalidate_tag` of `N` tagged entries, timed `REPS` times (perf target
//! for docs/design.md): `tag_invalidate N REPS`.

use std::time::Instant;
fn main() {
    let n: u64 = std::env::args()
        .nth(1)
        .map_or(10_000, |a| a.parse().expect("N"));
    let reps: u32 = std::env::args()
        .nth(2)
        .map_or(50, |a| a.parse().expect("REPS"));
    let c = coherent::Cache::<u64, u64>::builder()
        .shards(8)
        .build()
        .expect("valid");
    let mut total = 0u128;
    for _ in 0..reps {
        for k in 0..n {
            c.insert_tagged(k, k, ["t"]).expect("insert");
        }
        let t0 = Instant::now();
        c.invalidate_tag("t").expect("invalidate_tag");
        total += t0.elapsed().as_nanos();
    }
    println!(
        "invalidate_tag of {n}: {:.0} ns",
        total as f64 / f64::from(reps)
    );
}
