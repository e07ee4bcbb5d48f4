//! Criterion benchmarks: `get` on a hit and `insert` until visible, with the
//! peers in the same group. `cargo bench -p coherent-bench --bench cache`

use coherent_bench::{prefilled, zipf_keys};
use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use std::hint::black_box;

const KEYS: u64 = 100_000;

fn get_hit(c: &mut Criterion) {
    let keys = zipf_keys(KEYS, 1.0, 1 << 16, 7);
    let targets = prefilled(KEYS);
    let mut group = c.benchmark_group("get_zipf1.0_hit");
    group.throughput(Throughput::Elements(keys.len() as u64));
    for t in &targets {
        group.bench_function(t.name(), |b| {
            b.iter(|| {
                for k in &keys {
                    black_box(t.get(*k));
                }
            })
        });
    }
    group.finish();
}

fn insert(c: &mut Criterion) {
    let targets = prefilled(KEYS);
    let mut group = c.benchmark_group("insert_until_visible");
    for t in &targets {
        let mut k = 0u64;
        group.bench_function(t.name(), |b| {
            b.iter_batched(
                || {
                    k = (k + 7919) % KEYS;
                    k
                },
                |k| t.insert(k, k),
                BatchSize::SmallInput,
            )
        });
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .sample_size(20)
        .warm_up_time(std::time::Duration::from_millis(300))
        .measurement_time(std::time::Duration::from_secs(1));
    targets = get_hit, insert
}
criterion_main!(benches);
