//! Warm refreshes against real processes. The only test in this binary:
//! it compares what passes read, so nothing else may open sockets meanwhile.

mod common;

use std::collections::BTreeSet;
use std::path::Path;

use common::*;
use portwarden::discover::{Discoverer, Discovery, Options};
use portwarden::exclude::Exclusions;
use portwarden::model::{Family, Port, Proto};
use serde_json::json;

fn port_of(d: &Discovery, inode: u64) -> Option<&Port> {
    d.ports.iter().find(|p| p.socket.inode == inode)
}

fn pids(p: &Port) -> Vec<u32> {
    p.owners.iter().map(|o| o.pid).collect()
}

fn inodes(d: &Discovery) -> BTreeSet<u64> {
    d.ports.iter().map(|p| p.socket.inode).collect()
}

#[test]
fn warm_refresh_follows_owners_without_rescanning() {
    let mut d = Discoverer::new(Options {
        proc_root: Path::new("/proc").to_path_buf(),
        exclusions: Exclusions::none(),
        threads: 2,
        connections: false,
        firewall: false,
    })
    .expect("/proc opens");
    let mut holder =
        Holder::start(&json!({"fork": 1, "sockets": [{"proto": "tcp", "addr": "127.0.0.1"}]}));
    let worker = holder.children[0];
    let first = d.discover_full().expect("full pass");
    assert!(first.stats.full_scan);
    let port = port_of(&first, holder.inode(0)).expect("listed");
    assert_eq!(pids(port), vec![holder.pid, worker]);

    // Nothing changed: no fd table is read.
    let again = d.refresh().expect("refresh");
    assert!(!again.stats.full_scan);
    if inodes(&again) == inodes(&first) {
        assert_eq!(again.stats.processes_scanned, 0, "{:?}", again.stats);
    }
    assert_eq!(
        pids(port_of(&again, holder.inode(0)).expect("listed")),
        vec![holder.pid, worker]
    );

    // A new listener in a new process: found by the refresh, owner and all.
    let newcomer = Holder::start(&json!({"sockets": [{"proto": "udp", "addr": "::1"}]}));
    let found = d.refresh().expect("refresh");
    let port = port_of(&found, newcomer.inode(0)).expect("new socket listed");
    assert_eq!(pids(port), vec![newcomer.pid]);
    assert_eq!(port.socket.proto, Proto::Udp);
    assert_eq!(port.socket.family, Family::Ipv6);
    assert!(
        found.stats.processes_scanned < first.stats.processes_scanned,
        "the refresh read every fd table: {:?}",
        found.stats
    );

    // The parent closes its copy; the worker still holds it: one owner left.
    holder.close_sockets();
    let after = d.refresh().expect("refresh");
    assert_eq!(
        pids(port_of(&after, holder.inode(0)).expect("still listed")),
        vec![worker]
    );

    // The holder and its worker exit: the socket and its owners go.
    let gone_inode = holder.inode(0);
    holder.stop();
    newcomer.stop();
    let after = d.refresh().expect("refresh");
    assert!(port_of(&after, gone_inode).is_none());

    // A pid reused by another process is never taken for the old one: the
    // kept /proc/<pid>/fd handle dies with the process, so a restarted
    // owner is found again with its new start time.
    let restarted = Holder::start(&json!({"sockets": [{"proto": "tcp", "addr": "127.0.0.1"}]}));
    let found = d.refresh().expect("refresh");
    let owner = &port_of(&found, restarted.inode(0)).expect("listed").owners[0];
    assert_eq!(owner.pid, restarted.pid);
    let stat = std::fs::read_to_string(format!("/proc/{}/stat", restarted.pid)).expect("stat");
    let start: u64 = stat
        .rsplit(')')
        .next()
        .and_then(|f| f.split_whitespace().nth(19))
        .and_then(|s| s.parse().ok())
        .expect("starttime");
    assert_eq!(owner.start_time, start);
}
