//! Windows's socket tables read, and joined with the processes that own
//! them. Pure, so compiled and tested on every OS: the Windows discoverer
//! hands these functions the bytes `GetExtendedTcpTable` and
//! `GetExtendedUdpTable` filled (the owner-pid tables) and what it read of
//! each process; tests hand them tables recorded in the same layout.
//!
//! Layouts (`iprtrmib.h`, `tcpmib.h`, `udpmib.h`): a `DWORD` count, then
//! rows of `DWORD`s in the host's (little-endian) order, except addresses
//! and ports, which are in network order — a port in the first two bytes
//! of its `DWORD`.

use std::collections::HashMap;
use std::hash::{BuildHasher, Hash};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Arc;

use super::cgroup::Unit;
use crate::exclude::Exclusions;
use crate::model::{Family, Owner, Port, Proto, Socket};

/// `MIB_TCP_STATE_LISTEN`.
const LISTEN: u32 = 2;

/// Which table a buffer holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Table {
    /// `MIB_TCPTABLE_OWNER_PID` (`TCP_TABLE_OWNER_PID_LISTENER`, `AF_INET`).
    Tcp4,
    /// `MIB_TCP6TABLE_OWNER_PID`.
    Tcp6,
    /// `MIB_UDPTABLE_OWNER_PID` (`UDP_TABLE_OWNER_PID`, `AF_INET`).
    Udp4,
    /// `MIB_UDP6TABLE_OWNER_PID`.
    Udp6,
}

impl Table {
    pub const ALL: [Table; 4] = [Table::Tcp4, Table::Tcp6, Table::Udp4, Table::Udp6];

    pub fn proto(self) -> Proto {
        match self {
            Table::Tcp4 | Table::Tcp6 => Proto::Tcp,
            Table::Udp4 | Table::Udp6 => Proto::Udp,
        }
    }

    pub fn family(self) -> Family {
        match self {
            Table::Tcp4 | Table::Udp4 => Family::Ipv4,
            Table::Tcp6 | Table::Udp6 => Family::Ipv6,
        }
    }

    /// Bytes per row.
    fn row_len(self) -> usize {
        match self {
            // state, local addr, local port, remote addr, remote port, pid
            Table::Tcp4 => 24,
            // local addr[16], scope, port, remote addr[16], scope, port, state, pid
            Table::Tcp6 => 56,
            // local addr, local port, pid
            Table::Udp4 => 12,
            // local addr[16], scope, port, pid
            Table::Udp6 => 28,
        }
    }
}

/// One listening TCP or bound UDP socket as a table gives it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Row {
    pub proto: Proto,
    pub address: IpAddr,
    pub port: u16,
    /// The owning process; 0 when the OS names none.
    pub pid: u32,
}

/// Why a table could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{table:?} table of {len} bytes holds no {count} rows")]
pub struct Truncated {
    pub table: Table,
    pub len: usize,
    pub count: usize,
}

fn dword(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

fn port(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

fn v6(b: &[u8], at: usize) -> Ipv6Addr {
    let mut a = [0u8; 16];
    a.copy_from_slice(&b[at..at + 16]);
    Ipv6Addr::from(a)
}

/// The rows of a table; TCP rows other than listeners are left out. A
/// buffer shorter than its count says is an error, never a partial list.
pub fn parse(table: Table, buf: &[u8]) -> Result<Vec<Row>, Truncated> {
    let count = match buf.get(..4) {
        Some(_) => dword(buf, 0) as usize,
        None => 0,
    };
    let len = table.row_len();
    let rows = buf.get(4..).unwrap_or_default();
    if count.checked_mul(len).is_none_or(|need| need > rows.len()) {
        return Err(Truncated {
            table,
            len: buf.len(),
            count,
        });
    }
    let proto = table.proto();
    let rows = rows.chunks_exact(len).take(count);
    Ok(match table {
        Table::Tcp4 => rows
            .filter(|r| dword(r, 0) == LISTEN)
            .map(|r| Row {
                proto,
                address: IpAddr::V4(Ipv4Addr::new(r[4], r[5], r[6], r[7])),
                port: port(r, 8),
                pid: dword(r, 20),
            })
            .collect(),
        Table::Tcp6 => rows
            .filter(|r| dword(r, 48) == LISTEN)
            .map(|r| Row {
                proto,
                address: IpAddr::V6(v6(r, 0)),
                port: port(r, 20),
                pid: dword(r, 52),
            })
            .collect(),
        Table::Udp4 => rows
            .map(|r| Row {
                proto,
                address: IpAddr::V4(Ipv4Addr::new(r[0], r[1], r[2], r[3])),
                port: port(r, 4),
                pid: dword(r, 8),
            })
            .collect(),
        Table::Udp6 => rows
            .map(|r| Row {
                proto,
                address: IpAddr::V6(v6(r, 0)),
                port: port(r, 20),
                pid: dword(r, 24),
            })
            .collect(),
    })
}

/// What was read of one process.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Process {
    pub pid: u32,
    pub ppid: u32,
    /// The image's file name, as the process list gives it for every
    /// process (`PROCESSENTRY32W::szExeFile`).
    pub image: String,
    /// The image's full path (`QueryFullProcessImageNameW`); `None` when
    /// the process may not be opened (another user's, a protected one).
    pub path: Option<String>,
    /// Creation time, in 100 ns since 1601 (`GetProcessTimes`): with the
    /// pid it identifies the process. 0 when unreadable.
    pub start_time: u64,
    /// `DOMAIN\user` of its token, when readable.
    pub user: Option<String>,
}

impl Process {
    /// The owner as every family labels it: the process name is the
    /// image's file name (`nginx.exe`), the path the full one.
    pub fn owner(&self, services: &[String]) -> Owner {
        let name = match &self.path {
            Some(path) => path.rsplit(['\\', '/']).next().unwrap_or(path).to_string(),
            None => self.image.clone(),
        };
        Owner {
            pid: self.pid,
            start_time: self.start_time,
            process_name: name,
            exe_path: self.path.clone().unwrap_or_default(),
            cmdline: String::new(),
            uid: 0,
            user: self.user.clone().unwrap_or_default(),
            ppid: self.ppid,
            container: None,
            cgroup_unrecognized: false,
            // The service (the SCM's) is the Windows analogue of the unit;
            // a shared svchost runs several.
            unit: (!services.is_empty()).then(|| Unit {
                system: services.join(","),
                user: None,
            }),
            listen_fds: None,
            exe_id: None,
        }
    }
}

/// An id for each row, stable while the socket lives (Windows has no
/// socket inode): its protocol, address, port and owner, hashed; a second
/// row with all four the same (`SO_REUSEADDR`) gets the next id.
pub fn ids(rows: &[Row]) -> Vec<u64> {
    let hasher =
        std::hash::BuildHasherDefault::<std::collections::hash_map::DefaultHasher>::default();
    let mut seen = std::collections::HashSet::with_capacity(rows.len());
    rows.iter()
        .map(|row| {
            let mut id = hasher.hash_one(row);
            while !seen.insert(id) {
                id = id.wrapping_add(1);
            }
            id
        })
        .collect()
}

/// Why a socket has no owner, in the words `ls` and the exporter show.
pub fn unknown_reason(pid: u32) -> &'static str {
    match pid {
        0 => "the OS names no owning process (pid 0)",
        _ => "its owning process exited before it could be read",
    }
}

/// The ports: each row with its owner (the one process Windows names),
/// the owner's services, and whether exclusions hide it.
pub fn ports(
    rows: &[Row],
    processes: &HashMap<u32, Arc<Owner>>,
    exclusions: &Exclusions,
) -> Vec<Port> {
    let host: Arc<str> = Arc::from("host");
    rows.iter()
        .zip(ids(rows))
        .map(|(row, id)| {
            let owner = processes.get(&row.pid).filter(|_| row.pid != 0);
            let excluded = owner.is_some_and(|o| exclusions.is_excluded(&o.process_name));
            Port {
                socket: Socket {
                    proto: row.proto,
                    family: match row.address {
                        IpAddr::V4(_) => Family::Ipv4,
                        IpAddr::V6(_) => Family::Ipv6,
                    },
                    address: row.address,
                    port: row.port,
                    inode: id,
                    uid: 0,
                    accept_queue: None,
                    v6only: None,
                    bound_if: 0,
                },
                netns: Arc::clone(&host),
                namespace: Arc::clone(&host),
                owners: owner.into_iter().cloned().collect(),
                owner_unknown_reason: owner.is_none().then(|| unknown_reason(row.pid).into()),
                excluded,
                connections: None,
                activation: None,
                exposure: None,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A table as the IP Helper lays it out.
    fn table(rows: &[Vec<u8>]) -> Vec<u8> {
        let mut out = (rows.len() as u32).to_le_bytes().to_vec();
        for r in rows {
            out.extend_from_slice(r);
        }
        out
    }

    fn tcp4(state: u32, addr: [u8; 4], port: u16, pid: u32) -> Vec<u8> {
        let mut r = state.to_le_bytes().to_vec();
        r.extend_from_slice(&addr);
        r.extend_from_slice(&port.to_be_bytes());
        r.extend_from_slice(&[0, 0]);
        r.extend_from_slice(&[0; 8]); // remote addr, port
        r.extend_from_slice(&pid.to_le_bytes());
        r
    }

    fn tcp6(state: u32, addr: Ipv6Addr, port: u16, pid: u32) -> Vec<u8> {
        let mut r = addr.octets().to_vec();
        r.extend_from_slice(&0u32.to_le_bytes()); // scope
        r.extend_from_slice(&port.to_be_bytes());
        r.extend_from_slice(&[0, 0]);
        r.extend_from_slice(&[0; 24]); // remote addr, scope, port
        r.extend_from_slice(&state.to_le_bytes());
        r.extend_from_slice(&pid.to_le_bytes());
        r
    }

    fn udp4(addr: [u8; 4], port: u16, pid: u32) -> Vec<u8> {
        let mut r = addr.to_vec();
        r.extend_from_slice(&port.to_be_bytes());
        r.extend_from_slice(&[0, 0]);
        r.extend_from_slice(&pid.to_le_bytes());
        r
    }

    fn udp6(addr: Ipv6Addr, port: u16, pid: u32) -> Vec<u8> {
        let mut r = addr.octets().to_vec();
        r.extend_from_slice(&3u32.to_le_bytes()); // scope
        r.extend_from_slice(&port.to_be_bytes());
        r.extend_from_slice(&[0, 0]);
        r.extend_from_slice(&pid.to_le_bytes());
        r
    }

    /// A host as `netstat -ano` would show it: IIS's http.sys on 80 (the
    /// System process), a dev server and a container's proxy both wanting
    /// 8080, DNS in a shared svchost, a process we may not open.
    fn recorded() -> (Vec<Row>, HashMap<u32, Arc<Owner>>) {
        let mut rows = Vec::new();
        let t4 = table(&[
            tcp4(2, [0, 0, 0, 0], 80, 4),
            tcp4(2, [127, 0, 0, 1], 8080, 7112),
            tcp4(5, [10, 0, 0, 5], 50312, 7112), // established: not a listener
            tcp4(2, [0, 0, 0, 0], 8080, 5320),
            tcp4(2, [0, 0, 0, 0], 445, 0),
        ]);
        rows.extend(parse(Table::Tcp4, &t4).expect("tcp4"));
        let t6 = table(&[
            tcp6(2, Ipv6Addr::UNSPECIFIED, 80, 4),
            tcp6(2, Ipv6Addr::LOCALHOST, 9229, 904),
        ]);
        rows.extend(parse(Table::Tcp6, &t6).expect("tcp6"));
        let u4 = table(&[udp4([0, 0, 0, 0], 53, 2280), udp4([0, 0, 0, 0], 5353, 2280)]);
        rows.extend(parse(Table::Udp4, &u4).expect("udp4"));
        let u6 = table(&[udp6(Ipv6Addr::UNSPECIFIED, 53, 2280)]);
        rows.extend(parse(Table::Udp6, &u6).expect("udp6"));

        let processes = [
            Process {
                pid: 4,
                image: "System".into(),
                ..Default::default()
            },
            Process {
                pid: 7112,
                ppid: 6400,
                image: "node.exe".into(),
                path: Some(r"C:\Program Files\nodejs\node.exe".into()),
                start_time: 133_000_000_000_000_000,
                user: Some(r"DEV\ana".into()),
            },
            Process {
                pid: 5320,
                ppid: 5100,
                image: "com.docker.backend.exe".into(),
                path: Some(
                    r"C:\Program Files\Docker\Docker\resources\com.docker.backend.exe".into(),
                ),
                start_time: 132_999_000_000_000_000,
                user: Some(r"DEV\ana".into()),
            },
            Process {
                pid: 2280,
                ppid: 700,
                image: "svchost.exe".into(),
                path: Some(r"C:\Windows\System32\svchost.exe".into()),
                start_time: 132_900_000_000_000_000,
                user: Some(r"NT AUTHORITY\NETWORK SERVICE".into()),
            },
            Process {
                pid: 904,
                image: "MsMpEng.exe".into(),
                ..Default::default()
            },
        ];
        let services: HashMap<u32, Vec<String>> =
            HashMap::from([(2280, vec!["Dnscache".to_string(), "NlaSvc".to_string()])]);
        let owners = processes
            .iter()
            .map(|p| {
                let s = services.get(&p.pid).map(Vec::as_slice).unwrap_or_default();
                (p.pid, Arc::new(p.owner(s)))
            })
            .collect();
        (rows, owners)
    }

    #[test]
    fn the_four_tables_read() {
        let (rows, _) = recorded();
        let seen: Vec<(Proto, String, u16, u32)> = rows
            .iter()
            .map(|r| (r.proto, r.address.to_string(), r.port, r.pid))
            .collect();
        assert_eq!(
            seen,
            vec![
                (Proto::Tcp, "0.0.0.0".into(), 80, 4),
                (Proto::Tcp, "127.0.0.1".into(), 8080, 7112),
                (Proto::Tcp, "0.0.0.0".into(), 8080, 5320),
                (Proto::Tcp, "0.0.0.0".into(), 445, 0),
                (Proto::Tcp, "::".into(), 80, 4),
                (Proto::Tcp, "::1".into(), 9229, 904),
                (Proto::Udp, "0.0.0.0".into(), 53, 2280),
                (Proto::Udp, "0.0.0.0".into(), 5353, 2280),
                (Proto::Udp, "::".into(), 53, 2280),
            ]
        );
    }

    #[test]
    fn a_short_table_is_an_error_not_a_partial_list() {
        let mut t = table(&[tcp4(2, [0; 4], 80, 4), tcp4(2, [0; 4], 81, 4)]);
        t.truncate(t.len() - 1);
        let err = parse(Table::Tcp4, &t).expect_err("truncated");
        assert_eq!(err.count, 2);
        // A count too large to multiply is not a panic either.
        assert!(parse(Table::Udp6, &u32::MAX.to_le_bytes()).is_err());
        assert_eq!(parse(Table::Udp4, &table(&[])), Ok(vec![]));
        assert!(parse(Table::Tcp6, &[]).expect("empty").is_empty());
    }

    #[test]
    fn owners_names_paths_services_and_the_unknown() {
        let (rows, owners) = recorded();
        let ports = ports(&rows, &owners, &Exclusions::none());
        let by = |port: u16, addr: &str| {
            ports
                .iter()
                .find(|p| p.socket.port == port && p.socket.address.to_string() == addr)
                .expect("port")
        };
        // The dev server and the container's proxy: one port, two owners
        // named — the conflict `ls` and `why` show.
        let dev = &by(8080, "127.0.0.1").owners[0];
        assert_eq!(
            (dev.pid, dev.process_name.as_str(), dev.exe_path.as_str()),
            (7112, "node.exe", r"C:\Program Files\nodejs\node.exe")
        );
        assert_eq!(dev.user, r"DEV\ana");
        assert_eq!(dev.start_time, 133_000_000_000_000_000);
        let proxy = &by(8080, "0.0.0.0").owners[0];
        assert_eq!(proxy.process_name, "com.docker.backend.exe");
        // A shared svchost: its services are its unit.
        let dns = &by(53, "0.0.0.0").owners[0];
        assert_eq!(dns.unit.as_ref().map(Unit::name), Some("Dnscache,NlaSvc"));
        assert_eq!(by(53, "::").socket.proto, Proto::Udp);
        // The kernel (System, pid 4): named though its path is not readable.
        let system = &by(80, "::").owners[0];
        assert_eq!(
            (system.process_name.as_str(), system.exe_path.as_str()),
            ("System", "")
        );
        // A process we may not open: its image name from the process list.
        assert_eq!(by(9229, "::1").owners[0].process_name, "MsMpEng.exe");
        // pid 0: no owner, and why.
        let smb = by(445, "0.0.0.0");
        assert!(smb.owners.is_empty());
        assert_eq!(
            smb.owner_unknown_reason.as_deref(),
            Some("the OS names no owning process (pid 0)")
        );
        assert!(ports.iter().all(|p| &*p.netns == "host" && !p.excluded));
    }

    #[test]
    fn ids_are_stable_and_distinct() {
        let (rows, owners) = recorded();
        let first = ids(&rows);
        assert_eq!(first, ids(&rows));
        let mut unique = first.clone();
        unique.sort_unstable();
        unique.dedup();
        assert_eq!(unique.len(), rows.len());
        // Two sockets alike in all four (SO_REUSEADDR) still differ.
        let twice = [rows[0], rows[0]];
        let two = ids(&twice);
        assert_ne!(two[0], two[1]);
        // An excluded owner hides its port, as on Linux.
        let ex = Exclusions::new("node.exe").expect("valid");
        let ports = ports(&rows, &owners, &ex);
        let hidden: Vec<u16> = ports
            .iter()
            .filter(|p| p.excluded)
            .map(|p| p.socket.port)
            .collect();
        assert_eq!(hidden, vec![8080]);
    }
}
