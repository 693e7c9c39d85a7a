//! What listens, and who owns it: with `probe/`, the platform seam — the
//! only code that asks the OS anything, and the only code with a `cfg` of
//! the OS.
//!
//! A [`Discoverer`] lists the listening sockets and maps each to the
//! processes holding it, keeping that map between passes so a refresh is
//! cheap. On Linux ([`linux`]): sock_diag in every network namespace and
//! each process's fd table; on Windows (`windows`): the IP Helper's
//! owner-pid tables and the process and service APIs.

// Everywhere: pure parsers and what any OS has.
pub mod alloc;
pub mod budget;
pub mod cgroup;
pub mod ids;
pub mod runstate;
pub mod service;
pub mod systemd;
pub mod tables;
pub mod threads;

// Linux: /proc, netlink (sock_diag, nfnetlink, rtnetlink), setns.
#[cfg(target_os = "linux")]
pub mod connections;
#[cfg(target_os = "linux")]
pub mod firewall;
#[cfg(target_os = "linux")]
mod linux;
#[cfg(target_os = "linux")]
mod listing;
#[cfg(target_os = "linux")]
pub mod netlink;
#[cfg(target_os = "linux")]
pub mod netns;
#[cfg(target_os = "linux")]
pub mod owners;
#[cfg(target_os = "linux")]
pub mod procfs;
#[cfg(target_os = "linux")]
pub mod routes;
#[cfg(target_os = "linux")]
pub mod sockets;
#[cfg(target_os = "linux")]
pub mod users;
#[cfg(target_os = "linux")]
pub use linux::Discoverer;
#[cfg(target_os = "linux")]
pub use listing::{Listed, SocketList};

// Windows: the IP Helper's tables, the process and service APIs.
#[cfg(windows)]
mod windows;
#[cfg(windows)]
pub use windows::Discoverer;

// What both have, each its own way, under one path.
#[cfg_attr(windows, path = "windows/fds.rs")]
pub mod fds;
#[cfg_attr(windows, path = "windows/os.rs")]
pub mod os;
#[cfg_attr(windows, path = "windows/own.rs")]
pub mod own;

use std::path::PathBuf;
use std::sync::Arc;

use crate::exclude::Exclusions;
use crate::exposure::Firewall;
use crate::model::{Owner, Owners, Port, ScanStats};
use ids::IdSet;

/// `process_*` figures of portwarden itself.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Figures {
    pub cpu_seconds: f64,
    pub resident_bytes: f64,
    pub virtual_bytes: f64,
    pub open_fds: f64,
    pub max_fds: f64,
    pub start_time_seconds: f64,
}

/// The name of the interface with this index, or `if<N>` when it has none
/// we can read.
pub fn interface_name(index: u32) -> Arc<str> {
    #[cfg(target_os = "linux")]
    return routes::ifname(index);
    #[cfg(windows)]
    return format!("if{index}").into();
}

/// Where a pass got its socket list from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SocketSource {
    /// netlink sock_diag for every protocol.
    #[default]
    Netlink,
    /// `/proc/<pid>/net/*` for at least one protocol: netlink was refused.
    ProcNet,
}

/// The result of one discovery pass.
#[derive(Debug, Clone, Default)]
pub struct Discovery {
    /// In the kernel's order; see [`sort_ports`] for a stable one.
    pub ports: Vec<Port>,
    pub stats: ScanStats,
    pub source: SocketSource,
    /// How long the pass took, in seconds.
    pub duration_seconds: f64,
    /// Every namespace listed.
    pub namespaces: Vec<Namespace>,
    /// Primary owners whose executable was deleted or replaced since they
    /// started (`/proc/<pid>/exe` ends in " (deleted)"), read at each pass.
    pub replaced: IdSet<u32>,
}

/// A network namespace a pass listed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Namespace {
    pub label: Arc<str>,
    /// The file to enter it by; `None` for our own, the one a plain socket
    /// of ours reaches.
    pub entry: Option<PathBuf>,
    /// Its `TcpExt` listen counters, when readable.
    pub listen: Option<ListenCounters>,
    /// Its firewall ruleset, when asked for.
    pub firewall: Option<Firewall>,
}

/// A namespace's kernel counters of connections its listeners could not
/// take (`/proc/net/netstat`, `TcpExt`), since the namespace was created.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ListenCounters {
    /// `ListenOverflows`: a completed handshake found the accept queue full.
    pub overflows: u64,
    /// `ListenDrops`: every connection dropped at a listener, overflows included.
    pub drops: u64,
}

/// Reads `ListenOverflows` and `ListenDrops` from the text of
/// `/proc/net/netstat` (a `TcpExt:` line of names, then one of values). Pure.
pub fn parse_netstat(text: &str) -> Option<ListenCounters> {
    let mut lines = text.lines().filter(|l| l.starts_with("TcpExt:"));
    let names = lines.next()?.split_ascii_whitespace().skip(1);
    let values = lines.next()?.split_ascii_whitespace().skip(1);
    let mut out = ListenCounters::default();
    let mut found = 0;
    for (name, value) in names.zip(values) {
        let slot = match name {
            "ListenOverflows" => &mut out.overflows,
            "ListenDrops" => &mut out.drops,
            _ => continue,
        };
        *slot = value.parse().ok()?;
        found += 1;
    }
    (found == 2).then_some(out)
}

/// Settings of discovery.
#[derive(Debug, Clone)]
pub struct Options {
    pub proc_root: PathBuf,
    pub exclusions: Exclusions,
    /// Threads an owner scan may use; 0 = one per core.
    pub threads: usize,
    /// Also count each TCP listener's connections (one dump of connected
    /// sockets per namespace and pass).
    pub connections: bool,
    /// Also read each namespace's firewall ruleset (again only when it
    /// changed) and say of each port whether outside hosts may reach it.
    pub firewall: bool,
}

/// Sorts ports by protocol, port, family, address, then inode.
pub fn sort_ports(ports: &mut [Port]) {
    ports.sort_unstable_by_key(|p| {
        let s = &p.socket;
        (s.proto, s.port, s.family, s.address, s.inode)
    });
}

/// Primary owner first: among owners that are not excluded, the one whose
/// parent does not hold the socket too (the master, not a worker), a
/// service before the service manager that passed it the socket; ties go
/// to the lowest pid. The rest follow by pid. Also says whether every owner
/// is excluded (the socket is then hidden by default).
pub fn order_owners(owners: Owners, exclusions: &Exclusions) -> (Owners, bool) {
    if owners.len() < 2 {
        let excluded = owners
            .first()
            .is_some_and(|o| exclusions.is_excluded(&o.process_name));
        return (owners, excluded);
    }
    let pids: Vec<u32> = owners.iter().map(|o| o.pid).collect();
    // (excluded, the service manager, child of another owner, pid)
    type Rank = (bool, bool, bool, u32);
    let mut keyed: Vec<(Rank, Arc<Owner>)> = owners
        .into_iter()
        .map(|o| {
            (
                (
                    exclusions.is_excluded(&o.process_name),
                    o.unit.as_ref().is_some_and(|u| u.is_manager()),
                    pids.contains(&o.ppid),
                    o.pid,
                ),
                o,
            )
        })
        .collect();
    let excluded = keyed.iter().all(|(k, _)| k.0);
    keyed.sort_by_key(|(k, _)| *k);
    let mut ordered: Owners = keyed.into_iter().map(|(_, o)| o).collect();
    ordered[1..].sort_by_key(|o| o.pid);
    (ordered, excluded)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn owner(pid: u32, ppid: u32, name: &str) -> Arc<Owner> {
        Arc::new(Owner {
            pid,
            start_time: 1,
            process_name: name.into(),
            exe_path: String::new(),
            cmdline: String::new(),
            uid: 0,
            user: "root".into(),
            ppid,
            container: None,
            cgroup_unrecognized: false,
            unit: None,
            listen_fds: None,
            exe_id: None,
        })
    }

    #[test]
    fn master_before_workers() {
        let owners = vec![
            owner(12, 10, "nginx"),
            owner(10, 1, "nginx"),
            owner(11, 10, "nginx"),
        ];
        let (ordered, excluded) = order_owners(owners.into(), &Exclusions::none());
        assert!(!excluded);
        let pids: Vec<u32> = ordered.iter().map(|o| o.pid).collect();
        assert_eq!(pids, vec![10, 11, 12]);
    }

    #[test]
    fn excluded_owner_is_not_primary() {
        // Socket activation: systemd (pid 1) holds the socket and is the
        // service's parent; the service is the one to report.
        let owners = vec![owner(1, 0, "systemd"), owner(500, 1, "cupsd-like")];
        let ex = Exclusions::new("").expect("valid");
        let (ordered, excluded) = order_owners(owners.into(), &ex);
        assert!(!excluded);
        assert_eq!(ordered[0].pid, 500);
    }

    #[test]
    fn unrelated_owners_lowest_pid_first() {
        let owners = vec![owner(30, 1, "b"), owner(20, 2, "a")];
        let (ordered, excluded) = order_owners(owners.into(), &Exclusions::none());
        assert!(!excluded);
        assert_eq!(ordered[0].pid, 20);
    }
}
