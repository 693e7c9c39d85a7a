//! Port conflicts, from what discovery already sees (no privilege more):
//!
//! - `address`: one port number (in one namespace, one protocol) held by
//!   different executables or users on different addresses or stacks — a
//!   dev server on `[::1]:3000` beside `docker-proxy` on `0.0.0.0:3000`:
//!   which one a client reaches depends on how it resolves the name.
//! - `reuseport`: a `SO_REUSEPORT` group (one address, several sockets)
//!   whose members are different executables or users: the kernel spreads
//!   connections over them, so some clients reach the other program (an
//!   old instance left behind by an upgrade, or a hijack).
//! - `replaced_exe`: an owner whose executable was deleted or replaced
//!   since it started — a stale process still holding the port after an
//!   upgrade, running the old code.
//!
//! A plain dual-stack service (one executable on `0.0.0.0` and `::`) and a
//! multi-worker `SO_REUSEPORT` server of one executable are not conflicts.
//! Sockets whose owner we cannot read say nothing either way.

use std::net::IpAddr;
use std::sync::Arc;

use serde::Serialize;

use crate::discover::ids::IdSet;
use crate::model::{Port, Proto};

/// What kind of conflict.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    Address,
    Reuseport,
    ReplacedExe,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Address => "address",
            Kind::Reuseport => "reuseport",
            Kind::ReplacedExe => "replaced_exe",
        }
    }
}

/// One conflict on one port number.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Conflict {
    pub proto: Proto,
    pub port: u16,
    pub netns: Arc<str>,
    pub kind: Kind,
    /// Who is in it, for people: `nginx (uid 0) on 0.0.0.0, vite (uid
    /// 1000) on ::1`.
    pub detail: String,
}

/// Who holds a socket, as conflicts compare them: executable and user.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Who<'a> {
    exe: &'a str,
    uid: u32,
}

impl Who<'_> {
    fn show(&self) -> String {
        let name = self.exe.rsplit('/').next().unwrap_or(self.exe);
        format!("{name} (uid {})", self.uid)
    }
}

/// Every conflict among `ports`, each (proto, port, netns, kind) once,
/// sorted; `replaced` are the pids whose executable is gone.
pub fn find(ports: &[Port], replaced: &IdSet<u32>) -> Vec<Conflict> {
    // One row per (proto, port, netns), address and who holds a socket
    // there, sorted: groups of rows, not maps of maps (those cost ~0.7 kB a
    // socket for a pass, 7 MB on a busy host, to find most often nothing).
    type Place<'a> = (Proto, u16, &'a str);
    type Row<'a> = (Place<'a>, IpAddr, Who<'a>);
    let mut rows: Vec<Row<'_>> = Vec::with_capacity(ports.len());
    let mut stale: Vec<(Place<'_>, String)> = Vec::new();
    for p in ports {
        let Some(owner) = p.owners.first() else {
            continue;
        };
        let place = (p.socket.proto, p.socket.port, &*p.netns);
        let exe = if owner.exe_path.is_empty() {
            owner.process_name.as_str()
        } else {
            owner.exe_path.as_str()
        };
        rows.push((
            place,
            p.socket.address,
            Who {
                exe,
                uid: owner.uid,
            },
        ));
        if replaced.contains(&owner.pid) {
            stale.push((
                place,
                format!(
                    "{} (pid {}): {exe} deleted or replaced",
                    owner.process_name, owner.pid
                ),
            ));
        }
    }
    rows.sort_unstable();
    rows.dedup();
    let mut out = Vec::new();
    let conflict = |(proto, port, netns): Place<'_>, kind, detail| Conflict {
        proto,
        port,
        netns: netns.into(),
        kind,
        detail,
    };
    // `nginx (uid 0) and vite (uid 1000) on ::1`: the holders of one address.
    let show = |at: &[Row<'_>]| {
        let names: Vec<String> = at.iter().map(|(_, _, who)| who.show()).collect();
        format!("{} on {}", names.join(" and "), at[0].1)
    };
    for place in rows.chunk_by(|a, b| a.0 == b.0).filter(|g| g.len() > 1) {
        let addresses: Vec<&[Row<'_>]> = place.chunk_by(|a, b| a.1 == b.1).collect();
        // One address, several holders: a SO_REUSEPORT group of strangers.
        let shared: Vec<String> = addresses
            .iter()
            .filter(|at| at.len() > 1)
            .map(|at| show(at))
            .collect();
        if !shared.is_empty() {
            out.push(conflict(place[0].0, Kind::Reuseport, shared.join("; ")));
        }
        // Two addresses, and someone on one who is not on the other.
        let differ = addresses.len() > 1 && {
            let mut all: Vec<&Who<'_>> = place.iter().map(|(_, _, who)| who).collect();
            all.sort_unstable();
            all.dedup();
            all.len() > 1 && addresses.iter().any(|at| at.len() < all.len())
        };
        if differ {
            let detail: Vec<String> = addresses.iter().map(|at| show(at)).collect();
            out.push(conflict(place[0].0, Kind::Address, detail.join(", ")));
        }
    }
    stale.sort_unstable();
    stale.dedup();
    for group in stale.chunk_by(|a, b| a.0 == b.0) {
        let detail: Vec<&str> = group.iter().map(|(_, who)| who.as_str()).collect();
        out.push(conflict(group[0].0, Kind::ReplacedExe, detail.join("; ")));
    }
    out.sort_by(|a, b| {
        (a.proto, a.port, &a.netns, a.kind).cmp(&(b.proto, b.port, &b.netns, b.kind))
    });
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::fixtures;

    fn port(addr: &str, port: u16, pid: u32, exe: &str, uid: u32) -> Port {
        let inode = u64::from(pid) * 100 + u64::from(port);
        fixtures::port(
            Proto::Tcp,
            addr,
            port,
            inode,
            Some(fixtures::owner(pid, exe, uid)),
        )
    }

    fn kinds(c: &[Conflict]) -> Vec<(u16, &'static str)> {
        c.iter().map(|c| (c.port, c.kind.as_str())).collect()
    }

    #[test]
    fn one_program_on_both_stacks_or_many_workers_is_no_conflict() {
        let ports = [
            port("0.0.0.0", 80, 10, "/usr/sbin/nginx", 0),
            port("::", 80, 10, "/usr/sbin/nginx", 0),
            port("0.0.0.0", 8080, 20, "/usr/bin/app", 33),
            port("0.0.0.0", 8080, 21, "/usr/bin/app", 33),
            port("0.0.0.0", 8080, 22, "/usr/bin/app", 33),
        ];
        assert!(find(&ports, &IdSet::default()).is_empty());
    }

    #[test]
    fn strangers_on_one_port_are_found_each_kind_once() {
        let ports = [
            port("::1", 3000, 10, "/usr/bin/node", 1000),
            port("0.0.0.0", 3000, 20, "/usr/bin/docker-proxy", 0),
            port("::", 3000, 20, "/usr/bin/docker-proxy", 0),
            port("0.0.0.0", 8080, 30, "/opt/v1/app", 33),
            port("0.0.0.0", 8080, 31, "/opt/v2/app", 33),
            port("0.0.0.0", 9000, 40, "/usr/bin/api", 33),
            port("0.0.0.0", 9001, 40, "/usr/bin/api", 33),
        ];
        let replaced: IdSet<u32> = [40].into_iter().collect();
        let found = find(&ports, &replaced);
        assert_eq!(
            kinds(&found),
            [
                (3000, "address"),
                (8080, "reuseport"),
                (9000, "replaced_exe"),
                (9001, "replaced_exe")
            ]
        );
        assert_eq!(
            found[0].detail,
            "docker-proxy (uid 0) on 0.0.0.0, docker-proxy (uid 0) on ::, node (uid 1000) on ::1"
        );
    }

    #[test]
    fn one_executable_of_two_users_is_a_conflict() {
        let ports = [
            port("127.0.0.1", 5000, 10, "/usr/bin/python3", 0),
            port("127.0.0.1", 5000, 11, "/usr/bin/python3", 1000),
        ];
        assert_eq!(
            kinds(&find(&ports, &IdSet::default())),
            [(5000, "reuseport")]
        );
    }
}
