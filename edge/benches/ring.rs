//! Selection speed of the consistent-hash ring: the owner of a key, and
//! the whole failover order, for pools of several sizes.
//!
//!     cargo bench -p outpost-edge --bench ring

use std::hint::black_box;

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use outpost_edge::bench::Ring;

fn keys() -> Vec<[u8; 32]> {
    (0..1024)
        .map(|i| *blake3::hash(format!("https://example.com/object/{i}").as_bytes()).as_bytes())
        .collect()
}

fn selection(c: &mut Criterion) {
    let keys = keys();
    let mut group = c.benchmark_group("ring_order");
    for servers in [3usize, 10, 50] {
        let ids: Vec<String> = (0..servers)
            .map(|i| format!("http://10.0.{}.{}:8080", i / 250, i % 250))
            .collect();
        let ring = Ring::new(ids.iter().map(|id| (id.as_str(), 1)));
        group.bench_with_input(BenchmarkId::from_parameter(servers), &ring, |b, ring| {
            let mut i = 0;
            b.iter(|| {
                i = (i + 1) % keys.len();
                black_box(ring.order(black_box(&keys[i])))
            });
        });
    }
    group.finish();
}

criterion_group!(benches, selection);
criterion_main!(benches);
