//! The Linux discoverer: sockets from netlink sock_diag (or /proc/net) in
//! every network namespace, owners from each process's fd table, the
//! firewall from nfnetlink.

use std::sync::OnceLock;
use std::time::Instant;

use super::ids::{self, IdSet};
use super::listing::*;
use super::owners::{OwnerIndex, Verification};
use super::procfs::{self, ProcRoot};
use super::runstate::{self, CgroupMounts, RunState};
use super::users::Users;
use super::{Discovery, Options, firewall, order_owners, threads};
use crate::error::Error;
use crate::exclude::Exclusions;
use crate::model::{Port, ScanStats};

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
    /// Where the cgroup hierarchies are, read at the first run state asked.
    mounts: OnceLock<CgroupMounts>,
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
            mounts: OnceLock::new(),
            proc,
        })
    }

    /// Every TCP listener now, by inode, with its accept queue: a second
    /// look, with no owner work.
    pub fn listeners_again(
        &self,
    ) -> Result<ids::IdMap<u64, Option<crate::model::AcceptQueue>>, Error> {
        let list = list_sockets(&self.proc, Wanted::default())?;
        Ok(list
            .sockets
            .into_iter()
            .filter(|l| l.socket.proto == crate::model::Proto::Tcp)
            .map(|l| (l.socket.inode, l.socket.accept_queue))
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

    /// Whether each process (pid, start time) still runs: a reused pid is
    /// not the process.
    pub fn alive(&self, processes: &[(u32, u64)]) -> Vec<bool> {
        let mut buf = Vec::new();
        processes
            .iter()
            .map(|&(pid, start_time)| {
                self.proc.read(pid, "stat", &mut buf).is_ok()
                    && procfs::parse_stat(&buf).is_some_and(|s| s.start_time == start_time)
            })
            .collect()
    }

    /// Whether a process can run: its state, and the frozen cgroup it is
    /// in (`Some(None)`: not frozen; `None`: cannot tell).
    pub fn run_state(&self, pid: u32) -> (Option<RunState>, Option<Option<String>>) {
        let mounts = self.mounts.get_or_init(CgroupMounts::read);
        (
            runstate::state(&self.proc, pid),
            runstate::frozen(&self.proc, mounts, pid),
        )
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
