//! Discovery benchmarks on the host they run on: run them beside
//! the project's simulator, `examples/hostsim.rs` (see `bench/discovery.sh`), for the figures
//! in the README.
//!
//! - `refresh_warm`: a refresh when nothing changed (verify known owners,
//!   read no fd table) — target ≤ 20 ms with 10,000 listeners.
//! - `full_scan`: a cold pass reading every process's fd table.
//! - `refresh_warm_connections`: the same refresh counting every TCP
//!   listener's connections (what the exporter runs) — with 20,000
//!   established connections added, ≤ 1.5 × itself without them
//!   (`bench/connections.sh`).
//! - `connections_dump_floor`: the kernel's share of counting them — the
//!   same filtered dumps (the listening ports in two halves), one thread,
//!   nothing matched.
//! - `readlink_floor`: the kernel's share alone — one `readlinkat` per socket
//!   fd on the host, on one thread, through kept fd directories — the floor
//!   a warm refresh's verification stands on, measured in the same run.

use criterion::{Criterion, criterion_group, criterion_main};
use portwarden::discover::{Discoverer, Options};
use portwarden::exclude::Exclusions;

fn discoverer(connections: bool) -> Discoverer {
    let mut d = Discoverer::new(Options {
        proc_root: "/proc".into(),
        exclusions: Exclusions::none(),
        threads: 0,
        connections,
        firewall: false,
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

/// Every socket fd on the host, as (its process's open fd directory, name).
fn socket_fds() -> Vec<(std::sync::Arc<std::os::fd::OwnedFd>, Vec<u8>)> {
    use rustix::fs::{Mode, OFlags};
    let mut out = Vec::new();
    for entry in std::fs::read_dir("/proc").expect("/proc").flatten() {
        let path = entry.path().join("fd");
        let Ok(names) = std::fs::read_dir(&path) else {
            continue;
        };
        let Ok(dir) = rustix::fs::open(&path, OFlags::RDONLY | OFlags::DIRECTORY, Mode::empty())
        else {
            continue;
        };
        let dir = std::sync::Arc::new(dir);
        for name in names.flatten() {
            let is_socket = std::fs::read_link(name.path())
                .is_ok_and(|t| t.as_os_str().as_encoded_bytes().starts_with(b"socket:"));
            if is_socket {
                out.push((dir.clone(), name.file_name().as_encoded_bytes().to_vec()));
            }
        }
    }
    eprintln!("{} socket fds on the host", out.len());
    out
}

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("discovery");
    group.sample_size(30);

    let mut d = discoverer(false);
    group.bench_function("refresh_warm", |b| {
        b.iter(|| {
            let found = d.refresh().expect("refresh");
            assert!(!found.stats.full_scan);
            found.ports.len()
        })
    });
    let mut with = discoverer(true);
    let counted: u64 = with
        .refresh()
        .expect("refresh")
        .ports
        .iter()
        .filter_map(|p| p.connections.as_ref())
        .map(|c| u64::from(c.by_state.iter().sum::<u32>()))
        .sum();
    eprintln!("{counted} connections counted on listening ports");
    group.bench_function("refresh_warm_connections", |b| {
        b.iter(|| with.refresh().expect("refresh").ports.len())
    });

    // The kernel's share of counting: the filtered dumps alone, one thread,
    // no matching.
    let mut diag = portwarden::discover::sockets::Diag::open().expect("netlink");
    let ports: Vec<u16> = diag
        .listening(portwarden::model::Proto::Tcp)
        .expect("listeners")
        .iter()
        .map(|s| s.port)
        .collect();
    group.bench_function("connections_dump_floor", |b| {
        b.iter(|| {
            let mut n = 0u32;
            for part in ports.chunks(ports.len().div_ceil(2).max(1)) {
                diag.connections(part, &mut |_| n += 1).expect("dump");
            }
            n
        })
    });

    let fds = socket_fds();
    group.bench_function("readlink_floor", |b| {
        b.iter(|| {
            let mut link = [0u8; 64];
            fds.iter()
                .filter(|(dir, name)| {
                    rustix::fs::readlinkat_raw(&**dir, name.as_slice(), &mut link[..]).is_ok()
                })
                .count()
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
