//! Exposure's cost on a busy host with a big ruleset: a ruleset of 1,000
//! rules (the shape of a large hand-written or generated one: conntrack
//! first, 600 single-port accepts, 150 source-restricted ports, 100 UDP
//! ports, 45 source-only accepts; and Docker's shape for 50 published
//! ports: a DNAT each in prerouting to a container behind `docker0`, and
//! a forward chain accepting each) loaded with `nft` into a network
//! namespace of the bench's own, then
//!
//! - `read_1000_rules`: reading it over nfnetlink in that namespace (done
//!   again only when its generation moves);
//! - `generation`: the one message asked at every pass;
//! - `routes_50_destinations`: the routes to the 50 DNAT destinations and
//!   the forwarding switches, asked at every pass;
//! - `verdicts_10000_sockets`: a verdict for each of 10,000 TCP sockets
//!   (ports 20000–29999 on the wildcard address), from a fresh evaluator:
//!   the cost after a ruleset change — target ≤ 50 ms.
//!
//! Needs root and `nft` (Debian's nftables); says so and does nothing
//! otherwise. `cargo bench --bench exposure`.

use std::io::Write;
use std::process::{Command, Stdio};
use std::sync::Arc;

use criterion::{Criterion, criterion_group, criterion_main};
use portwarden::discover::firewall::Reader;
use portwarden::discover::routes;
use portwarden::exposure::{Evaluator, Probe};
use portwarden::model::{Family, Proto};

#[path = "common/ruleset.rs"]
mod ruleset;

const NS: &str = "pw-bench-exposure";

fn in_ns<T: Send>(f: impl FnOnce() -> T + Send) -> T {
    std::thread::scope(|s| {
        s.spawn(|| {
            let ns = std::fs::File::open(format!("/run/netns/{NS}")).expect("open netns");
            rustix::thread::move_into_link_name_space(
                std::os::fd::AsFd::as_fd(&ns),
                Some(rustix::thread::LinkNameSpaceType::Network),
            )
            .expect("setns");
            f()
        })
        .join()
        .expect("thread")
    })
}

fn bench(c: &mut Criterion) {
    if !rustix::process::geteuid().is_root() || !std::path::Path::new("/usr/sbin/nft").exists() {
        eprintln!("exposure bench: needs root and nft (Debian's nftables); skipped");
        return;
    }
    let _ = Command::new("ip").args(["netns", "del", NS]).status();
    assert!(
        Command::new("ip")
            .args(["netns", "add", NS])
            .status()
            .expect("ip")
            .success()
    );
    // The containers' bridge: docker0 (a veth pair, both ends here)
    // routing 172.30.0.0/16, and forwarding on.
    for args in [
        &[
            "link", "add", "docker0", "type", "veth", "peer", "name", "docker0p",
        ][..],
        &["addr", "add", "172.30.0.1/16", "dev", "docker0"],
        &["link", "set", "docker0p", "up"],
        &["link", "set", "docker0", "up"],
    ] {
        assert!(
            Command::new("ip")
                .args(["-n", NS])
                .args(args)
                .status()
                .expect("ip")
                .success()
        );
    }
    assert!(
        Command::new("ip")
            .args([
                "netns",
                "exec",
                NS,
                "sysctl",
                "-qw",
                "net.ipv4.ip_forward=1"
            ])
            .status()
            .expect("sysctl")
            .success()
    );
    let mut nft = Command::new("ip")
        .args(["netns", "exec", NS, "nft", "-f", "-"])
        .stdin(Stdio::piped())
        .spawn()
        .expect("nft");
    let text = ruleset::text();
    nft.stdin
        .take()
        .expect("stdin")
        .write_all(text.as_bytes())
        .expect("write");
    assert!(nft.wait().expect("nft").success());

    let (rules, destinations) = in_ns(|| {
        let mut rules = Reader::open().expect("netlink").ruleset().expect("read");
        let destinations = portwarden::exposure::nat::destinations(&rules);
        rules.routing = routes::read_here(&destinations).expect("routes");
        (Arc::new(rules), destinations)
    });
    eprintln!("DNAT destinations: {}", destinations.len());
    let count: usize = rules
        .tables
        .iter()
        .flat_map(|t| &t.chains)
        .map(|c| c.rules.len())
        .sum();
    eprintln!("ruleset: {count} rules");
    let probes: Vec<Probe> = (20_000..30_000)
        .map(|dport| Probe {
            proto: Proto::Tcp,
            family: Family::Ipv4,
            daddr: None,
            dport,
        })
        .collect();
    let mut ev = Evaluator::new(Arc::clone(&rules));
    let words = probes
        .iter()
        .fold(std::collections::BTreeMap::new(), |mut m, p| {
            *m.entry(ev.evaluate(p).word()).or_insert(0) += 1;
            m
        });
    eprintln!(
        "verdicts: {words:?}; made {} for {} sockets",
        ev.made(),
        probes.len()
    );
    for p in [&probes[0], &probes[1_000], &probes[9_000], &probes[9_999]] {
        eprintln!("port {}: {}", p.dport, ev.evaluate(p));
    }

    let mut g = c.benchmark_group("exposure");
    g.sample_size(20);
    g.bench_function("verdicts_10000_sockets", |b| {
        b.iter(|| {
            let mut ev = Evaluator::new(Arc::clone(&rules));
            for p in &probes {
                std::hint::black_box(ev.evaluate(p));
            }
        })
    });
    // A netlink socket answers for the namespace it was made in.
    let mut reader = in_ns(|| Reader::open().expect("netlink"));
    g.bench_function("read_1000_rules", |b| {
        b.iter(|| reader.ruleset().expect("read"))
    });
    g.bench_function("generation", |b| {
        b.iter(|| reader.generation().expect("generation"))
    });
    g.bench_function("routes_50_destinations", |b| {
        // Timed inside the namespace, as discovery's thread asks.
        b.iter_custom(|iters| {
            in_ns(|| {
                let start = std::time::Instant::now();
                for _ in 0..iters {
                    std::hint::black_box(routes::read_here(&destinations).expect("routes"));
                }
                start.elapsed()
            })
        })
    });
    g.finish();
    let _ = Command::new("ip").args(["netns", "del", NS]).status();
}

criterion_group!(benches, bench);
criterion_main!(benches);
