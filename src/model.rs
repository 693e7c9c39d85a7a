//! Plain data shared by every stage: what a socket is, who owns it, and the
//! list that discovery hands on. No I/O happens here.

use std::net::IpAddr;
use std::sync::Arc;

use serde::Serialize;

pub use crate::value::Proto;

/// Address family of a socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Family {
    Ipv4,
    Ipv6,
}

impl Family {
    pub fn as_str(self) -> &'static str {
        match self {
            Family::Ipv4 => "ipv4",
            Family::Ipv6 => "ipv6",
        }
    }
}

/// Accept queue of a TCP listener: connections the kernel completed that the
/// application has not accepted yet, and the backlog it may hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct AcceptQueue {
    pub current: u32,
    /// The backlog; unknown (`None`) when read from `/proc/net/tcp`.
    pub max: Option<u32>,
    /// Connections the kernel dropped because the queue was full (the
    /// socket's drop counter, since it was created); unknown from `/proc/net/tcp`.
    pub drops: Option<u32>,
}

impl AcceptQueue {
    /// Two queues read as one (the listeners of one port, or sockets a
    /// reader sees as one): counts added, saturating; a backlog or drop
    /// counter unknown for either is unknown.
    pub fn plus(self, other: AcceptQueue) -> AcceptQueue {
        AcceptQueue {
            current: self.current.saturating_add(other.current),
            max: self.max.zip(other.max).map(|(a, b)| a.saturating_add(b)),
            drops: self
                .drops
                .zip(other.drops)
                .map(|(a, b)| a.saturating_add(b)),
        }
    }

    /// Whether the queue holds as many connections as it may.
    pub fn is_full(&self) -> bool {
        self.max.is_some_and(|max| self.current >= max.max(1))
    }
}

/// One listening TCP socket or bound, unconnected UDP socket, as the kernel
/// reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Socket {
    pub proto: Proto,
    pub family: Family,
    pub address: IpAddr,
    pub port: u16,
    /// sockfs inode: unique across the whole host, the key to find owners by.
    pub inode: u64,
    /// uid of the socket (its creator's, as the kernel keeps it).
    pub uid: u32,
    /// Only for TCP listeners.
    pub accept_queue: Option<AcceptQueue>,
    /// An IPv6 socket's `IPV6_V6ONLY` (IPv4 clients refused); `None` for
    /// IPv4, or when the kernel's listing does not say (`/proc/net`).
    pub v6only: Option<bool>,
    /// The interface index it is bound to (`SO_BINDTODEVICE`); 0: none.
    pub bound_if: u32,
}

/// The TCP states of connections counted per listening port: every state a
/// server's end of a connection passes through (not SYN_SENT, a client's).
pub const CONNECTION_STATES: &[(u8, &str)] = &[
    (1, "established"),
    (3, "syn_recv"),
    (4, "fin_wait1"),
    (5, "fin_wait2"),
    (6, "time_wait"),
    (8, "close_wait"),
    (9, "last_ack"),
    (11, "closing"),
];

/// The connections a TCP listener accepted, by state, and their peers.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Connections {
    /// Counts indexed by kernel TCP state number (1 = established, …).
    pub by_state: [u32; 12],
    /// Distinct remote addresses, sorted.
    pub peers: Vec<IpAddr>,
}

/// A process that holds a socket open.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Owner {
    pub pid: u32,
    /// Start time in clock ticks since boot (field 22 of `/proc/<pid>/stat`):
    /// with the pid it identifies a process, so a reused pid is never taken
    /// for the old process.
    pub start_time: u64,
    /// Basename of the executable; the kernel's `comm` when `exe` cannot be read.
    pub process_name: String,
    /// Full path of the executable, " (deleted)" stripped; empty when unreadable.
    pub exe_path: String,
    /// Arguments joined by spaces.
    pub cmdline: String,
    /// Effective uid.
    #[serde(skip)]
    pub uid: u32,
    /// User name of `uid`, or the number when the name is unknown.
    pub user: String,
    #[serde(skip)]
    pub ppid: u32,
    /// The container the process runs in, from its cgroup.
    #[serde(skip)]
    pub container: Option<crate::discover::cgroup::Container>,
    /// The cgroup looked like a container's but named no id we can read.
    #[serde(skip)]
    pub cgroup_unrecognized: bool,
    /// The systemd unit the process runs in, from its cgroup.
    pub unit: Option<crate::discover::cgroup::Unit>,
    /// Sockets its service manager passed it (socket activation).
    #[serde(skip)]
    pub listen_fds: Option<ListenFds>,
    /// (device, inode) of the executable it runs, read when first seen:
    /// when its path no longer leads there, the file was replaced.
    #[serde(skip)]
    pub exe_id: Option<(u64, u64)>,
}

/// Sockets a service manager passed to a process: fds 3 to 3 + `count` - 1,
/// with their names (`LISTEN_FDNAMES`), when given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListenFds {
    pub count: u32,
    pub names: Vec<String>,
}

impl ListenFds {
    /// Whether `fd` is one of the passed sockets (`Some`), and its name.
    pub fn name_of(&self, fd: u32) -> Option<Option<&str>> {
        let i = fd.checked_sub(3)?;
        (i < self.count).then(|| self.names.get(i as usize).map(String::as_str))
    }
}

/// The owners of one socket.
pub type Owners = smallvec::SmallVec<[Arc<Owner>; 1]>;

/// A discovered socket with every process holding it, primary owner first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Port {
    pub socket: Socket,
    /// Network namespace label (`host` for the namespace of PID 1; a
    /// container's id when its owner's cgroup names one).
    pub netns: Arc<str>,
    /// The namespace as discovery listed it (`host` or `netns:<inode>`):
    /// the key to [`crate::discover::Discovery::namespaces`].
    pub namespace: Arc<str>,
    /// Shared with the owner index: many ports, one process. Most sockets
    /// have one owner, kept inline.
    pub owners: Owners,
    /// Why `owners` is empty, when it is.
    pub owner_unknown_reason: Option<Box<str>>,
    /// True when every owner is excluded by the exclusion list.
    pub excluded: bool,
    /// A TCP listener's connections, when discovery counted them.
    pub connections: Option<Box<Connections>>,
    /// How a service manager made it, when one did (socket activation);
    /// boxed, as few are.
    pub activation: Option<Box<Activation>>,
    /// Whether outside hosts may reach it, by its namespace's firewall
    /// (when discovery read it); shared by the sockets of one verdict.
    pub exposure: Option<Arc<crate::exposure::Exposure>>,
}

/// The label of a socket's namespace: a container's id when its primary
/// owner's cgroup names one (outside the host's namespace), else the
/// namespace as discovery lists it (`host`, `netns:<inode>`).
pub fn netns_label(namespace: &Arc<str>, owner: Option<&Owner>) -> Arc<str> {
    match owner.and_then(|o| o.container.as_ref()) {
        Some(c) if &**namespace != "host" => Arc::from(c.id.as_str()),
        _ => Arc::clone(namespace),
    }
}

/// A socket a service manager made (socket activation).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Activation {
    /// Passed to the service that holds it (`sd_listen_fds`), under the
    /// name its manager gave it: the `.socket` unit's, unless
    /// `FileDescriptorName=` (or `systemd-socket-activate --fdname`) says
    /// otherwise; `None` when it gave none.
    Passed(Option<String>),
    /// Held only by a service manager (its service not started yet): the
    /// `.socket` unit is known only to the manager, over its bus.
    Unresolved,
}

/// As JSON: `{"socket": name or null, "resolved": bool}`.
impl Serialize for Activation {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let mut a = s.serialize_struct("Activation", 2)?;
        match self {
            Activation::Passed(name) => {
                a.serialize_field("socket", name)?;
                a.serialize_field("resolved", &true)?;
            }
            Activation::Unresolved => {
                a.serialize_field("socket", &None::<String>)?;
                a.serialize_field("resolved", &false)?;
            }
        }
        a.end()
    }
}

impl Activation {
    /// The socket unit, for labels: its name, `(unresolved)`, or empty
    /// when it was passed unnamed.
    pub fn socket_label(&self) -> &str {
        match self {
            Activation::Passed(name) => name.as_deref().unwrap_or(""),
            Activation::Unresolved => "(unresolved)",
        }
    }
}

/// The unit a socket's row shows: the primary owner's unit, after the
/// socket unit that passed the socket to it; never a guess.
pub fn unit_display(owner: Option<&Owner>, activation: Option<&Activation>) -> Option<String> {
    let unit = owner.and_then(|o| o.unit.as_ref()).map(|u| u.display());
    match activation {
        Some(Activation::Unresolved) => Some("(socket activation, unresolved)".to_string()),
        Some(Activation::Passed(name)) => {
            let socket = name.as_deref().map_or_else(
                || "(socket activation)".to_string(),
                crate::discover::cgroup::unescape,
            );
            Some(match unit {
                Some(unit) => format!("{socket} → {unit}"),
                None => socket,
            })
        }
        None => unit,
    }
}

impl Port {
    /// The owner whose labels the port's series carry.
    pub fn primary_owner(&self) -> Option<&Owner> {
        self.owners.first().map(|o| &**o)
    }
}

/// One port series: a protocol and port number in one network namespace.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PortKey {
    pub proto: Proto,
    pub port: u16,
    pub netns: Arc<str>,
}

/// The sockets behind one port series, and the owner that names it.
#[derive(Debug, Default)]
pub struct Series<'a> {
    pub ports: Vec<&'a Port>,
    /// The first owned socket's primary owner.
    pub owner: Option<&'a Owner>,
}

/// Groups ports into series, the one rule every caller uses (the exporter's
/// series, the baseline's expected ports): one series per protocol, port
/// and namespace label, named by the primary owner of the first socket that
/// has one; excluded ports are no series.
pub fn series(ports: &[Port]) -> std::collections::HashMap<PortKey, Series<'_>> {
    let mut out: std::collections::HashMap<PortKey, Series<'_>> = std::collections::HashMap::new();
    for port in ports.iter().filter(|p| !p.excluded) {
        let key = PortKey {
            proto: port.socket.proto,
            port: port.socket.port,
            netns: Arc::clone(&port.netns),
        };
        let entry = out.entry(key).or_default();
        entry.ports.push(port);
        if entry.owner.is_none() {
            entry.owner = port.primary_owner();
        }
    }
    out
}

/// Counts of what a discovery pass had to skip: races with /proc and
/// permission limits are normal and never fail a pass.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct ScanStats {
    /// Processes whose fd table we were not allowed to read.
    pub fd_denied: u64,
    /// Processes that exited between listing and reading.
    pub vanished: u64,
    /// Processes whose fd table we could not open for want of descriptors
    /// (or memory) of our own: read again at the next pass.
    pub fd_exhausted: u64,
    /// Processes whose fd table was read in this pass.
    pub processes_scanned: u64,
    /// Fd links read in this pass.
    pub fds_read: u64,
    /// Whether this pass read every process's fd table.
    pub full_scan: bool,
    /// Network namespaces that vanished before their sockets were listed.
    pub netns_vanished: u64,
    /// Namespaces we were not allowed to enter (listed from /proc instead,
    /// or skipped when no process inside shows them).
    pub setns_denied: u64,
    /// Processes whose namespace we may not read.
    pub netns_denied: u64,
    /// Owners whose cgroup looked like a container's with no readable id.
    pub container_unrecognized: u64,
    /// Threads the OS refused us: the pass ran on fewer.
    pub threads_refused: u64,
}

impl ScanStats {
    pub fn add(&mut self, other: &ScanStats) {
        self.fd_denied += other.fd_denied;
        self.vanished += other.vanished;
        self.fd_exhausted += other.fd_exhausted;
        self.processes_scanned += other.processes_scanned;
        self.fds_read += other.fds_read;
        self.netns_vanished += other.netns_vanished;
        self.setns_denied += other.setns_denied;
        self.netns_denied += other.netns_denied;
        self.container_unrecognized += other.container_unrecognized;
        self.threads_refused += other.threads_refused;
    }
}

/// Owners and ports built by hand, for unit tests across the crate.
#[cfg(test)]
pub mod fixtures {
    use super::*;

    /// A process `pid` running `exe` as `uid` (its name the path's last part).
    pub fn owner(pid: u32, exe: &str, uid: u32) -> Arc<Owner> {
        Arc::new(Owner {
            pid,
            start_time: u64::from(pid) * 10,
            process_name: exe.rsplit('/').next().unwrap_or(exe).to_string(),
            exe_path: exe.to_string(),
            cmdline: String::new(),
            uid,
            user: if uid == 0 {
                "root".into()
            } else {
                uid.to_string()
            },
            ppid: 1,
            container: None,
            cgroup_unrecognized: false,
            unit: None,
            listen_fds: None,
            exe_id: None,
        })
    }

    /// A socket of `proto` on `addr`:`port` in the host's namespace.
    pub fn port(
        proto: Proto,
        addr: &str,
        port: u16,
        inode: u64,
        owner: Option<Arc<Owner>>,
    ) -> Port {
        let address: IpAddr = addr.parse().expect("address");
        Port {
            socket: Socket {
                proto,
                family: if address.is_ipv4() {
                    Family::Ipv4
                } else {
                    Family::Ipv6
                },
                address,
                port,
                inode,
                uid: owner.as_ref().map_or(0, |o| o.uid),
                accept_queue: None,
                v6only: address.is_ipv6().then_some(false),
                bound_if: 0,
            },
            netns: "host".into(),
            namespace: "host".into(),
            owners: owner.into_iter().collect(),
            owner_unknown_reason: None,
            excluded: false,
            connections: None,
            activation: None,
            exposure: None,
        }
    }
}
