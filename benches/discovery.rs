//! Discovery benchmarks on the host they run on: run them beside
//! `../shared/tools/hostsim.py` (see `bench/discovery.sh`) for the figures
//! in the README.
//!
//! - `refresh_warm`: a refresh when nothing changed (verify known owners,
//!   read no fd table) — target ≤ 20 ms with 10,000 listeners.
//! - `full_scan`: a cold pass reading every process's fd table.

use criterion::{Criterion, criterion_group, criterion_main};
use portwarden::discover::{Discoverer, Options};
use portwarden::exclude::Exclusions;

fn discoverer() -> Discoverer {
    let mut d = Discoverer::new(Options {
        proc_root: "/proc".into(),
        exclusions: Exclusions::none(),
        threads: 0,
    })
    .expect("open /proc");
    let first = d.discover_full().expect("first pass");
    eprintln!(
        "host: {} ports, {} processes scanned, {} fds read",
        first.ports.len(),
        first.stats.processes_scanned,
        first.stats.fds_read
    );
    d
}

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("discovery");
    group.sample_size(30);

    let mut d = discoverer();
    group.bench_function("refresh_warm", |b| {
        b.iter(|| {
            let found = d.refresh().expect("refresh");
            assert!(!found.stats.full_scan);
            found.ports.len()
        })
    });

    group.sample_size(10);
    group.bench_function("full_scan", |b| {
        b.iter(|| d.discover_full().expect("full").ports.len())
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
