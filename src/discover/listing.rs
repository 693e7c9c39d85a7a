//! Listing every namespace's sockets: netlink in each namespace (entered on
//! a thread of its own), or its /proc/net files when netlink is refused,
//! and the connections of its listeners counted alongside the owner scan.

use std::sync::{Arc, OnceLock};

use super::netns::{self, Netns};
use super::procfs::ProcRoot;
use super::*;
use crate::error::Error;
use crate::model::{Connections, Family, Proto, ScanStats, Socket};

/// A socket and the label of the namespace it lives in.
#[derive(Debug, Clone)]
pub struct Listed {
    pub socket: Socket,
    pub netns: Arc<str>,
    /// A TCP listener's connections, when counted.
    pub connections: Option<Box<Connections>>,
}

/// The sockets of every namespace.
#[derive(Debug, Default)]
pub struct SocketList {
    pub sockets: Vec<Listed>,
    pub namespaces: Vec<Namespace>,
    pub source: SocketSource,
    /// Namespaces skipped or listed the slow way.
    pub stats: ScanStats,
    /// Namespaces whose connections are still to count.
    pub(super) uncounted: Vec<Uncounted>,
}

/// A namespace listed through netlink, its connections not counted yet.
#[derive(Debug)]
pub(super) struct Uncounted {
    /// Its sockets in [`SocketList::sockets`].
    pub(super) range: std::ops::Range<usize>,
    /// The netlink socket made inside it.
    pub(super) diag: sockets::Diag,
    /// Whether it is our own namespace (any thread can open another socket
    /// there).
    pub(super) own: bool,
}

pub(super) type Listing = Result<SocketList, Error>;

/// What a listing gathers beside the sockets: each TCP listener's
/// connections, each namespace's firewall ruleset (through the cache of
/// those read before).
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct Wanted<'a> {
    pub(super) connections: bool,
    pub(super) firewall: Option<&'a firewall::Cache>,
}

/// Runs `work` on `threads` threads while one of them first fetches the
/// socket list (and hands it to `listed`): the /proc work needs both cores,
/// and a third thread for the list would only time-slice them. With
/// `connections`, the lister then cuts the counting of connections into
/// jobs, and every thread takes from them once its own work is done (the
/// lister before its share of `work`).
pub(super) fn list_alongside(
    proc: &ProcRoot,
    threads: usize,
    wanted: Wanted<'_>,
    listed: impl FnOnce(&Listing) + Send,
    work: impl Fn() + Sync,
) -> Listing {
    let counted = Counting::default();
    let (work, counting) = (&work, &counted);
    let lister = move || {
        let mut published = Publish(counting);
        let mut listing = list_sockets(proc, wanted);
        listed(&listing);
        if let Ok(list) = listing.as_mut() {
            published.jobs(list, threads);
        }
        drop(published);
        counting.run();
        work();
        listing
    };
    // The lister on a thread of its own; when the OS refuses one, the
    // listing comes first on this thread, then its share of the work.
    let lister = std::sync::Mutex::new(Some(lister));
    let run_lister = || {
        let f = lister.lock().unwrap_or_else(|e| e.into_inner()).take();
        f.map(|f| f())
    };
    let run_lister = &run_lister;
    let mut listing = std::thread::scope(|s| {
        let spawned = threads::spawn(s, run_lister);
        let inline = if spawned.is_none() {
            run_lister()
        } else {
            None
        };
        for _ in 2..threads {
            let worker = threads::spawn(s, move || {
                work();
                counting.run();
            });
            if worker.is_none() {
                break;
            }
        }
        work();
        counting.run();
        let listed = match spawned {
            Some(handle) => handle
                .join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic)),
            None => inline,
        };
        // One of the two ran the lister; were it neither, list anyway.
        listed.unwrap_or_else(|| list_sockets(proc, wanted))
    });
    if let Ok(list) = listing.as_mut() {
        counted.apply(list);
    }
    listing
}

/// Counting connections, cut into jobs: one per namespace, and our own
/// namespace (the host's, usually, where most connections are) cut by port
/// into one job per thread, as any thread can open a netlink socket there.
/// Each dump walks every socket of the host once, and copies out only
/// those whose local port is one of its job's.
#[derive(Default)]
pub(super) struct Counting {
    pub(super) jobs: OnceLock<std::sync::Mutex<Vec<CountJob>>>,
    pub(super) done: std::sync::Mutex<Vec<Counted>>,
}

/// A job's counts: the namespace's sockets in the listing, and the
/// connections of each listener it counted, by inode.
pub(super) type Counted = (std::ops::Range<usize>, ids::IdMap<u64, Connections>);

/// Connections of some of one namespace's listeners.
pub(super) struct CountJob {
    /// The namespace's sockets in the listing.
    pub(super) range: std::ops::Range<usize>,
    /// The TCP listeners this job counts for (all of one port or none).
    pub(super) listeners: Vec<Socket>,
    /// The netlink socket made inside the namespace; `None` for our own
    /// namespace, where the thread that takes the job opens one.
    pub(super) diag: Option<sockets::Diag>,
}

/// Publishes the jobs once, and no jobs at all if the lister fails first:
/// the other threads wait for it.
pub(super) struct Publish<'a>(&'a Counting);

impl Publish<'_> {
    fn jobs(&mut self, list: &mut SocketList, threads: usize) {
        let mut jobs = Vec::new();
        for Uncounted { range, diag, own } in std::mem::take(&mut list.uncounted) {
            let Some(listed) = list.sockets.get(range.clone()) else {
                continue;
            };
            let listeners: Vec<Socket> = listed
                .iter()
                .filter(|l| l.socket.proto == Proto::Tcp)
                .map(|l| l.socket.clone())
                .collect();
            if listeners.is_empty() {
                continue;
            }
            let parts = if own {
                threads
                    .clamp(1, 4)
                    .max(sockets::filter_parts(listeners.iter().map(|l| l.port)))
            } else {
                1
            };
            let mut diag = Some(diag);
            for part in connections::split_by_port(listeners, parts) {
                jobs.push(CountJob {
                    range: range.clone(),
                    listeners: part,
                    diag: diag.take(),
                });
            }
        }
        let _ = self.0.jobs.set(std::sync::Mutex::new(jobs));
    }
}

impl Drop for Publish<'_> {
    fn drop(&mut self) {
        let _ = self.0.jobs.set(std::sync::Mutex::new(Vec::new()));
    }
}

impl Counting {
    /// Takes jobs until none is left (once they are published).
    fn run(&self) {
        let jobs = self.jobs.wait();
        loop {
            let job = jobs
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .pop();
            let Some(job) = job else { return };
            let Some(mut diag) = job.diag.or_else(|| sockets::Diag::open().ok()) else {
                continue;
            };
            let listeners: Vec<&Socket> = job.listeners.iter().collect();
            let ports: Vec<u16> = listeners.iter().map(|l| l.port).collect();
            let mut counter = connections::Counter::new(&listeners);
            // A failed dump leaves the counts out, never the listeners.
            if diag.connections(&ports, &mut |c| counter.add(c)).is_ok() {
                self.done
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .push((job.range, counter.finish()));
            }
        }
    }

    /// Gives every counted listener its connections.
    fn apply(self, list: &mut SocketList) {
        let done = self
            .done
            .into_inner()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        for (range, mut counted) in done {
            for l in list.sockets.get_mut(range).into_iter().flatten() {
                if let Some(c) = counted.remove(&l.socket.inode) {
                    l.connections = Some(Box::new(c));
                }
            }
        }
    }
}

/// One namespace's listing.
#[derive(Debug, Default)]
pub(super) struct NsListing {
    pub(super) sockets: Vec<Socket>,
    pub(super) source: SocketSource,
    pub(super) listen: Option<ListenCounters>,
    /// The namespace's netlink socket, kept to count connections with.
    pub(super) diag: Option<sockets::Diag>,
    pub(super) firewall: Option<Firewall>,
}

/// Lists the sockets of every network namespace. Failing to list the host's
/// namespace fails the pass; any other namespace that vanishes or cannot be
/// entered is skipped and counted.
pub(super) fn list_sockets(proc: &ProcRoot, wanted: Wanted<'_>) -> Listing {
    let (namespaces, skipped) = netns::enumerate(proc, netns::BIND_DIRS);
    let mut list = SocketList::default();
    list.stats.netns_denied = skipped.denied;
    for ns in &namespaces {
        let listed = match &ns.handle {
            netns::Handle::Own => list_here(proc, ns, wanted),
            _ => list_entered(proc, ns, wanted, &mut list.stats),
        };
        match listed {
            Ok(Some(found)) => {
                if found.source == SocketSource::ProcNet {
                    list.source = SocketSource::ProcNet;
                }
                list.namespaces.push(Namespace {
                    label: Arc::clone(&ns.label),
                    entry: ns.entry_path(proc.path()),
                    listen: found.listen,
                    firewall: found.firewall,
                });
                let first = list.sockets.len();
                list.sockets
                    .extend(found.sockets.into_iter().map(|socket| Listed {
                        connections: None,
                        socket,
                        netns: Arc::clone(&ns.label),
                    }));
                if let Some(diag) = found.diag.filter(|_| wanted.connections) {
                    list.uncounted.push(Uncounted {
                        range: first..list.sockets.len(),
                        diag,
                        own: matches!(ns.handle, netns::Handle::Own),
                    });
                }
            }
            Ok(None) => {}
            Err(e) if &*ns.label == "host" => return Err(e),
            Err(_) => list.stats.netns_vanished += 1,
        }
    }
    Ok(list)
}

/// Lists a namespace from a thread that entered it; without the right to
/// enter, from the /proc/net files of a process inside. `Ok(None)`: skipped.
pub(super) fn list_entered(
    proc: &ProcRoot,
    ns: &Netns,
    wanted: Wanted<'_>,
    stats: &mut ScanStats,
) -> Result<Option<NsListing>, Error> {
    let fd = match ns.open(proc) {
        Ok(fd) => fd,
        Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {
            stats.setns_denied += 1;
            return list_from_proc(proc, ns, wanted);
        }
        Err(_) => {
            stats.netns_vanished += 1;
            return Ok(None);
        }
    };
    let entered = std::thread::scope(|s| {
        threads::spawn(s, || {
            // The thread is ours alone and ends here: entering another
            // namespace changes nothing for the rest of the program.
            rustix::thread::move_into_link_name_space(
                std::os::fd::AsFd::as_fd(&fd),
                Some(rustix::thread::LinkNameSpaceType::Network),
            )
            .map(|()| list_here(proc, ns, wanted))
        })
        .map(|h| h.join())
    });
    match entered {
        Some(Ok(Ok(listed))) => listed,
        Some(Ok(Err(_setns))) => {
            stats.setns_denied += 1;
            list_from_proc(proc, ns, wanted)
        }
        // No thread to enter it with (counted as refused): this one enters
        // it and comes back. Skipping it would read as its ports gone.
        None => {
            let Ok(home) = rustix::fs::open(
                "/proc/thread-self/ns/net",
                rustix::fs::OFlags::RDONLY | rustix::fs::OFlags::CLOEXEC,
                rustix::fs::Mode::empty(),
            ) else {
                return list_from_proc(proc, ns, wanted);
            };
            let enter = |to: std::os::fd::BorrowedFd<'_>| {
                rustix::thread::move_into_link_name_space(
                    to,
                    Some(rustix::thread::LinkNameSpaceType::Network),
                )
            };
            if enter(std::os::fd::AsFd::as_fd(&fd)).is_err() {
                stats.setns_denied += 1;
                return list_from_proc(proc, ns, wanted);
            }
            let listed = list_here(proc, ns, wanted);
            // Back home, or this thread would list the wrong namespace as
            // its own from now on: that is no state to go on in.
            if let Err(e) = enter(std::os::fd::AsFd::as_fd(&home)) {
                panic!("cannot return to our own network namespace: {e}");
            }
            listed
        }
        Some(Err(panic)) => std::panic::resume_unwind(panic),
    }
}

/// A namespace listed from the /proc/net files of a process inside it
/// (no connection counts: that would mean parsing every connection as text).
pub(super) fn list_from_proc(
    proc: &ProcRoot,
    ns: &Netns,
    wanted: Wanted<'_>,
) -> Result<Option<NsListing>, Error> {
    let Some(entry) = ns.proc_entry() else {
        return Ok(None);
    };
    let refused = || std::io::Error::from(std::io::ErrorKind::PermissionDenied);
    let mut sockets = list_proc_net(proc, ns, Proto::Tcp, refused())?;
    sockets.extend(list_proc_net(proc, ns, Proto::Udp, refused())?);
    let mut buf = Vec::new();
    let listen = proc
        .read_rel(format!("{entry}/net/netstat").as_str(), &mut buf)
        .ok()
        .and_then(|()| parse_netstat(&String::from_utf8_lossy(&buf)));
    Ok(Some(NsListing {
        sockets,
        source: SocketSource::ProcNet,
        listen,
        diag: None,
        // Not entered: its ruleset cannot be asked for.
        firewall: wanted
            .firewall
            .map(|_| Firewall::Unreadable("the namespace could not be entered".into())),
    }))
}

/// Lists sockets of every protocol in the namespace of the calling thread,
/// by netlink where the kernel lets us, else from the /proc/net files; with
/// `connections`, counts each TCP listener's connections too.
pub(super) fn list_here(
    proc: &ProcRoot,
    ns: &Netns,
    wanted: Wanted<'_>,
) -> Result<Option<NsListing>, Error> {
    let mut out = NsListing::default();
    let mut diag = sockets::Diag::open();
    for proto in [Proto::Tcp, Proto::Udp] {
        let listed = match diag.as_mut() {
            Ok(d) => d.listening(proto),
            Err(e) => Err(std::io::Error::new(e.kind(), e.to_string())),
        };
        match listed {
            Ok(found) => out.sockets.extend(found),
            Err(netlink) => {
                out.source = SocketSource::ProcNet;
                out.sockets.extend(list_proc_net(proc, ns, proto, netlink)?);
            }
        }
    }
    if wanted.connections {
        out.diag = diag.ok();
    }
    out.firewall = wanted.firewall.map(|cache| cache.read_here(&ns.label));
    // The calling thread's own namespace, whatever the proc root.
    out.listen = std::fs::read("/proc/thread-self/net/netstat")
        .ok()
        .and_then(|text| parse_netstat(&String::from_utf8_lossy(&text)));
    Ok(Some(out))
}

pub(super) fn list_proc_net(
    proc: &ProcRoot,
    netns: &Netns,
    proto: Proto,
    netlink: std::io::Error,
) -> Result<Vec<Socket>, Error> {
    let mut out = Vec::new();
    let mut buf = Vec::new();
    for family in [Family::Ipv4, Family::Ipv6] {
        let file = sockets::proc_net_file(proto, family);
        let Some(entry) = netns.proc_entry() else {
            return Ok(out);
        };
        let rel = format!("{entry}/{file}");
        let fail = |source: std::io::Error| Error::SocketList {
            what: proto.as_str(),
            netlink: std::io::Error::new(netlink.kind(), netlink.to_string()),
            fallback_path: proc.path().join(&rel),
            fallback: source,
        };
        match proc.read_rel(rel.as_str(), &mut buf) {
            Ok(()) => {}
            // No IPv6 in this kernel: no IPv6 sockets.
            Err(e) if family == Family::Ipv6 && e.kind() == std::io::ErrorKind::NotFound => {
                continue;
            }
            Err(e) => return Err(fail(e)),
        }
        let text = String::from_utf8_lossy(&buf);
        let parsed = sockets::parse_proc_net(&text, proto, family).map_err(|e| {
            fail(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                e.to_string(),
            ))
        })?;
        out.extend(parsed);
    }
    Ok(out)
}
