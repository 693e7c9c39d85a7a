//! What listens, and who owns it: the only module that reads /proc or talks
//! netlink.
//!
//! A [`Discoverer`] lists the sockets of a network namespace
//! ([`sockets`]), then maps each to the processes holding it ([`owners`]),
//! keeping that map between passes so a refresh is cheap.

pub mod alloc;
pub mod cgroup;
pub mod connections;
pub mod fds;
pub mod firewall;
pub mod ids;
mod listing;
pub mod netlink;
pub mod netns;
pub mod os;
pub mod own;
pub mod owners;
pub mod procfs;
pub mod routes;
pub mod runstate;
pub mod sockets;
pub mod systemd;
pub mod threads;
pub mod users;

use ids::IdSet;
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};
use std::time::Instant;

use crate::error::Error;
use crate::exclude::Exclusions;
use crate::exposure::Firewall;
use crate::model::{Connections, Family, Owner, Owners, Port, Proto, ScanStats, Socket};
use netns::Netns;
use owners::{OwnerIndex, Verification};
use procfs::ProcRoot;
use users::Users;

use listing::*;
pub use listing::{Listed, SocketList};

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

/// Discovers ports and owners, remembering owners between passes.
#[derive(Debug)]
pub struct Discoverer {
    proc: ProcRoot,
    owners: OwnerIndex,
    users: Users,
    exclusions: Exclusions,
    threads: usize,
    connections: bool,
    /// Rulesets as last read, when they are read.
    firewall: Option<firewall::Cache>,
    /// Verdicts made, by what they depend on: made again only for a new
    /// socket or a changed ruleset.
    verdicts: std::sync::Mutex<crate::exposure::Memo>,
}

impl Discoverer {
    /// Opens the proc root; fails only when it cannot be used at all.
    pub fn new(options: Options) -> Result<Self, Error> {
        let proc = ProcRoot::open(&options.proc_root)?;
        let threads = match options.threads {
            0 => threads::default_count(),
            n => n,
        };
        Ok(Discoverer {
            // Read at each full pass, the first of which comes before any refresh.
            users: Users::default(),
            owners: OwnerIndex::new(threads),
            threads,
            exclusions: options.exclusions,
            connections: options.connections,
            firewall: options.firewall.then(firewall::Cache::default),
            verdicts: Default::default(),
            proc,
        })
    }

    /// Every TCP listener's accept queue now, by inode: a second look, with
    /// no owner work.
    pub fn accept_queues(&self) -> Result<ids::IdMap<u64, crate::model::AcceptQueue>, Error> {
        let list = list_sockets(&self.proc, Wanted::default())?;
        Ok(list
            .sockets
            .into_iter()
            .filter_map(|l| Some((l.socket.inode, l.socket.accept_queue?)))
            .collect())
    }

    fn wanted(&self) -> Wanted<'_> {
        Wanted {
            connections: self.connections,
            firewall: self.firewall.as_ref(),
        }
    }

    /// Whether passes count each listener's connections.
    pub fn counts_connections(&self) -> bool {
        self.connections
    }

    /// The proc root every read goes through.
    pub fn proc_root(&self) -> &ProcRoot {
        &self.proc
    }

    /// A pass that reads every process's fd table (cold start, and the
    /// periodic full rescan).
    pub fn discover_full(&mut self) -> Result<Discovery, Error> {
        self.users = Users::load(&self.proc);
        self.pass(true)
    }

    /// A pass that verifies what it knows and reads fd tables only for
    /// sockets it has never seen.
    pub fn refresh(&mut self) -> Result<Discovery, Error> {
        self.pass(false)
    }

    fn pass(&mut self, full: bool) -> Result<Discovery, Error> {
        let started = Instant::now();
        let (listing, mut stats) = if full {
            let wanted = OnceLock::new();
            let scan = self
                .owners
                .begin_full_scan(&self.proc, &wanted, &self.users);
            let listing = list_alongside(
                &self.proc,
                self.threads,
                self.wanted(),
                |listing| {
                    // On failure the scan still ends: it then keeps every
                    // socket, and its result is thrown away below.
                    let inodes = listing
                        .as_ref()
                        .map(|l| l.sockets.iter().map(|s| s.socket.inode).collect());
                    let _ = wanted.set(inodes.unwrap_or_default());
                },
                || scan.work(),
            );
            let listing = listing?;
            let none = IdSet::default();
            let stats = self
                .owners
                .finish_full_scan(scan, wanted.get().unwrap_or(&none));
            (listing, stats)
        } else {
            // Whichever thread comes first lays out the checks; the lister
            // starts at once.
            let ready: OnceLock<Verification<'_>> = OnceLock::new();
            let (proc, owners) = (&self.proc, &self.owners);
            let listing = list_alongside(
                proc,
                self.threads,
                self.wanted(),
                |_| {},
                || ready.get_or_init(|| owners.begin_verify(proc)).work(),
            );
            let outcome = ready.into_inner().map(Verification::finish);
            let verified = outcome
                .map(|o| self.owners.finish_verify(o))
                .unwrap_or_default();
            let listing = listing?;
            let wanted: IdSet<u64> = listing.sockets.iter().map(|s| s.socket.inode).collect();
            let mut stats = self.owners.resolve_new(&self.proc, &wanted, &self.users);
            stats.add(&verified);
            (listing, stats)
        };
        let SocketList {
            sockets,
            source,
            stats: listed,
            namespaces,
            uncounted: _,
        } = listing;
        stats.add(&listed);
        let mut ports = self.ports(sockets, &stats);
        if let Some(cache) = &self.firewall {
            let live: Vec<&str> = namespaces.iter().map(|n| &*n.label).collect();
            cache.keep(&live);
            self.verdicts
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .judge(&mut ports, |label| {
                    namespaces
                        .iter()
                        .find(|n| &*n.label == label)
                        .and_then(|n| n.firewall.as_ref())
                });
        }
        stats.threads_refused = threads::take_refused();
        stats.container_unrecognized = count_unrecognized_cgroups(&ports);
        let replaced = self.replaced_executables(&ports);
        Ok(Discovery {
            ports,
            stats,
            source,
            duration_seconds: started.elapsed().as_secs_f64(),
            namespaces,
            replaced,
        })
    }

    /// The primary owners whose executable is gone from its path (deleted,
    /// or replaced by a new file: an upgrade's stale process). Each owner's
    /// file was identified (device, inode) when it was first read; here
    /// its path is looked up again, once per path and container — through
    /// `/proc/<pid>/root` of one owner, so as the owners see it — and an
    /// owner whose file is no longer there is one. Owners whose file we
    /// could not identify are not.
    fn replaced_executables(&self, ports: &[Port]) -> IdSet<u32> {
        type Members = (u32, Vec<(u32, (u64, u64))>);
        let mut seen = IdSet::default();
        let mut by_path: std::collections::HashMap<(&str, Option<&str>), Members> =
            std::collections::HashMap::new();
        for owner in ports.iter().filter_map(|p| p.owners.first()) {
            let Some(id) = owner.exe_id else { continue };
            if !seen.insert(owner.pid) || !owner.exe_path.starts_with('/') {
                continue;
            }
            let container = owner.container.as_ref().map(|c| c.id.as_str());
            by_path
                .entry((owner.exe_path.as_str(), container))
                .or_insert_with(|| (owner.pid, Vec::new()))
                .1
                .push((owner.pid, id));
        }
        let mut replaced = IdSet::default();
        for ((path, _), (via, members)) in by_path {
            let now = match self.proc.stat_rel(format!("{via}/root{path}")) {
                Ok(id) => Some(id),
                // Gone — or the owner we looked through is: ask each.
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    replaced.extend(members.iter().map(|(pid, _)| *pid).filter(|pid| {
                        self.proc
                            .readlink(*pid, "exe")
                            .is_ok_and(|target| target.ends_with(b" (deleted)"))
                    }));
                    continue;
                }
                Err(_) => continue,
            };
            replaced.extend(
                members
                    .iter()
                    .filter(|(_, id)| now != Some(*id))
                    .map(|(pid, _)| *pid),
            );
        }
        replaced
    }

    /// Joins sockets with their owners, on all threads: with 10,000 ports
    /// this is a few milliseconds of a refresh.
    fn ports(&self, sockets: Vec<Listed>, stats: &ScanStats) -> Vec<Port> {
        const MIN_PER_THREAD: usize = 2048;
        let threads = self.threads.min(sockets.len() / MIN_PER_THREAD).max(1);
        if threads == 1 {
            return sockets.into_iter().map(|s| self.port(s, stats)).collect();
        }
        let chunk = sockets.len().div_ceil(threads);
        let mut parts: Vec<Vec<Listed>> = Vec::with_capacity(threads);
        let mut rest = sockets;
        while rest.len() > chunk {
            let tail = rest.split_off(chunk);
            parts.push(rest);
            rest = tail;
        }
        parts.push(rest);
        threads::run_all(parts, |part| {
            part.into_iter()
                .map(|sk| self.port(sk, stats))
                .collect::<Vec<Port>>()
        })
        .into_iter()
        .flatten()
        .collect()
    }

    fn port(&self, listed: Listed, stats: &ScanStats) -> Port {
        let Listed {
            socket,
            netns,
            connections,
        } = listed;
        let (owners, excluded) = order_owners(self.owners.owners(socket.inode), &self.exclusions);
        // A container's namespace goes by the container's name, as the
        // primary owner's cgroup gives it.
        let namespace = netns;
        let netns = crate::model::netns_label(&namespace, owners.first().map(|o| &**o));
        let owner_unknown_reason = owners
            .is_empty()
            .then(|| unknown_reason(stats).into_boxed_str());
        let activation = self.owners.activation(socket.inode);
        Port {
            socket,
            netns,
            namespace,
            owners,
            owner_unknown_reason,
            excluded,
            connections,
            activation: activation.map(Box::new),
            exposure: None,
        }
    }
}

/// Owners (each once) whose cgroup looked like a container's but named no
/// id: their namespaces keep the `netns:<inode>` name.
fn count_unrecognized_cgroups(ports: &[Port]) -> u64 {
    let odd: IdSet<u32> = ports
        .iter()
        .flat_map(|p| &p.owners)
        .filter(|o| o.cgroup_unrecognized)
        .map(|o| o.pid)
        .collect();
    odd.len() as u64
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

fn unknown_reason(stats: &ScanStats) -> String {
    if stats.fd_exhausted > 0 {
        format!(
            "not found yet: {} processes' fds could not be read for want of open files of our own (raise ulimit -n / LimitNOFILE)",
            stats.fd_exhausted
        )
    } else if stats.fd_denied > 0 {
        format!(
            "no readable process holds it; {} processes' fds could not be read (needs root, or CAP_SYS_PTRACE and CAP_DAC_READ_SEARCH)",
            stats.fd_denied
        )
    } else {
        "no process holds it (a kernel socket, or its owner exited)".to_string()
    }
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
