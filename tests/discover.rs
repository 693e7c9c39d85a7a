//! The discovery engine through its library API: a fixture proc root,
//! processes exiting mid-scan, and the /proc/net parser against the kernel's
//! own files. Warm refreshes have a binary of their own (`refresh.rs`).

mod common;

use std::net::TcpListener;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{MetadataExt, symlink};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use common::*;
use portwarden::discover::{Discoverer, Discovery, Options, sockets};
use portwarden::exclude::Exclusions;
use portwarden::model::{Family, Port, Proto};
use serde_json::json;

fn discoverer(proc_root: &Path) -> Discoverer {
    Discoverer::new(Options {
        proc_root: proc_root.to_path_buf(),
        exclusions: Exclusions::none(),
        threads: 2,
        connections: false,
        firewall: false,
    })
    .expect("proc root opens")
}

fn port_of(d: &Discovery, inode: u64) -> Option<&Port> {
    d.ports.iter().find(|p| p.socket.inode == inode)
}

fn pids(p: &Port) -> Vec<u32> {
    p.owners.iter().map(|o| o.pid).collect()
}

#[test]
fn fixture_proc_root_names_owners_and_skips_vanished_processes() {
    // A real listener, claimed by a fake process in a fixture proc tree.
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let inode = std::fs::metadata(format!("/proc/self/fd/{}", listener.as_raw_fd()))
        .expect("fd")
        .ino();
    let root = TempDir::new("fixture");
    let proc = root.0.as_path();
    let pid = proc.join("4242");
    std::fs::create_dir_all(pid.join("fd")).expect("mkdir");
    symlink(format!("socket:[{inode}]"), pid.join("fd/7")).expect("fd link");
    symlink("/dev/null", pid.join("fd/0")).expect("fd link");
    symlink("/opt/vendor/my daemon \"v2\" (deleted)", pid.join("exe")).expect("exe link");
    std::fs::write(
        pid.join("stat"),
        "4242 (my daemon) S 1 4242 4242 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 777 0 0\n",
    )
    .expect("stat");
    std::fs::write(
        pid.join("status"),
        "Name:\tmy daemon\nUid:\t0\t1234\t0\t0\n",
    )
    .expect("status");
    std::fs::write(pid.join("cmdline"), b"my daemon\0--flag\0").expect("cmdline");
    let id = "abcdef0123456789".repeat(4);
    std::fs::write(
        pid.join("cgroup"),
        format!("0::/system.slice/docker-{id}.scope\n"),
    )
    .expect("cgroup");
    // Listed, but gone by the time its fd table is read.
    std::fs::create_dir_all(proc.join("4243")).expect("mkdir");
    // The host's users, as seen through PID 1's root.
    std::fs::create_dir_all(proc.join("1/root/etc")).expect("mkdir");
    std::fs::write(
        proc.join("1/root/etc/passwd"),
        "root:x:0:0::/root:/bin/sh\nsvc:x:1234:1234::/:/bin/false\n",
    )
    .expect("passwd");

    let mut d = discoverer(proc);
    let found = d.discover_full().expect("pass over a fixture root");
    let port = port_of(&found, inode).expect("listener listed");
    assert_eq!(port.owners.len(), 1);
    let owner = Arc::clone(&port.owners[0]);
    assert_eq!(owner.pid, 4242);
    assert_eq!(owner.process_name, "my daemon \"v2\"");
    assert_eq!(owner.exe_path, "/opt/vendor/my daemon \"v2\"");
    assert_eq!(owner.cmdline, "my daemon --flag");
    assert_eq!(owner.start_time, 777);
    assert_eq!(owner.user, "svc");
    let container = owner.container.as_ref().expect("container from the cgroup");
    assert_eq!(container.id, "abcdef012345");
    // The host's namespace keeps its name even for a containerized owner.
    assert_eq!(&*port.netns, "host");
    assert!(found.stats.vanished >= 1, "{:?}", found.stats);
    drop(listener);
}

#[test]
fn processes_exiting_during_scans_are_skipped_not_fatal() {
    let holder = Holder::start(&json!({"sockets": [{"proto": "tcp", "addr": "127.0.0.1"}]}));
    let stop = Arc::new(AtomicBool::new(false));
    let churn = {
        let stop = Arc::clone(&stop);
        std::thread::spawn(move || {
            let mut spawned = 0u32;
            while !stop.load(Ordering::Relaxed) {
                // Short-lived processes holding sockets of their own.
                let _ = std::process::Command::new("python3")
                    .args([
                        "-c",
                        "import socket; s=socket.socket(); s.bind(('127.0.0.1',0)); s.listen()",
                    ])
                    .status();
                spawned += 1;
            }
            spawned
        })
    };
    let mut d = discoverer(Path::new("/proc"));
    for round in 0..12 {
        let pass = if round % 3 == 0 {
            d.discover_full()
        } else {
            d.refresh()
        };
        let pass = pass.expect("a pass survives processes exiting under it");
        let port = port_of(&pass, holder.inode(0)).expect("stable listener listed");
        assert_eq!(pids(port), vec![holder.pid]);
    }
    stop.store(true, Ordering::Relaxed);
    let spawned = churn.join().expect("churn thread");
    assert!(spawned > 0);
}

#[test]
fn proc_net_parser_agrees_with_netlink() {
    let v4 = Holder::start(&json!({"sockets": [
        {"proto": "tcp", "addr": "127.0.0.1", "backlog": 7},
        {"proto": "tcp", "addr": "::", "v6only": true},
        {"proto": "udp", "addr": "127.0.0.1"},
        {"proto": "udp", "addr": "::1"},
    ]}));
    let cases = [
        (Proto::Tcp, Family::Ipv4, 0),
        (Proto::Tcp, Family::Ipv6, 1),
        (Proto::Udp, Family::Ipv4, 2),
        (Proto::Udp, Family::Ipv6, 3),
    ];
    for (proto, family, i) in cases {
        let file = format!("/proc/self/{}", sockets::proc_net_file(proto, family));
        let text = std::fs::read_to_string(&file).expect("read /proc/net file");
        let parsed = sockets::parse_proc_net(&text, proto, family).expect("kernel text parses");
        let netlink = sockets::list_netlink(proto).expect("netlink");
        let from_proc = parsed
            .iter()
            .find(|s| s.inode == v4.inode(i))
            .expect("in /proc/net");
        let from_nl = netlink
            .iter()
            .find(|s| s.inode == v4.inode(i))
            .expect("in netlink");
        assert_eq!(from_proc.address, from_nl.address, "{file}");
        assert_eq!(from_proc.port, from_nl.port);
        assert_eq!(from_proc.port, v4.port(i));
        assert_eq!(from_proc.uid, from_nl.uid);
        assert_eq!(from_proc.family, family);
        match proto {
            Proto::Tcp => {
                assert_eq!(from_proc.accept_queue.map(|q| q.current), Some(0));
                assert_eq!(from_proc.accept_queue.and_then(|q| q.max), None);
                assert!(from_nl.accept_queue.and_then(|q| q.max).is_some());
            }
            Proto::Udp => assert_eq!(from_proc.accept_queue, None),
        }
    }
    assert_eq!(
        sockets::list_netlink(Proto::Tcp)
            .expect("netlink")
            .iter()
            .find(|s| s.inode == v4.inode(0))
            .and_then(|s| s.accept_queue)
            .and_then(|q| q.max),
        Some(7)
    );
}
