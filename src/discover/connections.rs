//! Connections per listening port: every TCP connection of a namespace is
//! matched to the listener that accepted it, by local address and port
//! (a wildcard listener matches every local address of its family). Pure:
//! the sockets come from one `sock_diag` dump per namespace and pass.

use std::collections::HashMap;
use std::net::IpAddr;

use super::ids::IdMap;
use super::sockets::Connection;
use crate::model::{Connections, Family, Proto, Socket};

/// Counts `connections` per listener among `listeners` (one namespace's
/// sockets; non-TCP ones are ignored), keyed by the listener's inode. A
/// connection no listener accepted (a client's end) is not counted.
pub fn count(
    listeners: &[&Socket],
    connections: impl IntoIterator<Item = Connection>,
) -> IdMap<u64, Connections> {
    let mut counter = Counter::new(listeners);
    for c in connections {
        counter.add(c);
    }
    counter.finish()
}

/// Counts connections as a dump hands them over, one at a time.
pub struct Counter<'a> {
    by_port: HashMap<u16, Vec<&'a Socket>>,
    out: IdMap<u64, Connections>,
}

impl<'a> Counter<'a> {
    pub fn new(listeners: &[&'a Socket]) -> Self {
        let mut by_port: HashMap<u16, Vec<&Socket>> = HashMap::new();
        for l in listeners.iter().filter(|s| s.proto == Proto::Tcp) {
            by_port.entry(l.port).or_default().push(l);
        }
        Counter {
            by_port,
            out: IdMap::default(),
        }
    }

    pub fn add(&mut self, c: Connection) {
        let Some(candidates) = self.by_port.get(&c.local_port) else {
            return;
        };
        let Some(listener) = accepting(candidates, c.family, c.local) else {
            return;
        };
        let counts = self.out.entry(listener.inode).or_default();
        if let Some(slot) = counts.by_state.get_mut(usize::from(c.state)) {
            *slot += 1;
        }
        counts.peers.push(c.remote);
    }

    /// The counts, each listener's peers sorted and distinct.
    pub fn finish(mut self) -> IdMap<u64, Connections> {
        for counts in self.out.values_mut() {
            counts.peers.sort_unstable();
            counts.peers.dedup();
        }
        self.out
    }
}

/// Cuts `listeners` into at most `parts` groups by port, each a run of
/// consecutive port numbers, every listener of one port in the same group,
/// the groups about equal in ports.
pub fn split_by_port(mut listeners: Vec<Socket>, parts: usize) -> Vec<Vec<Socket>> {
    listeners.sort_unstable_by_key(|l| l.port);
    let mut ports: Vec<u16> = listeners.iter().map(|l| l.port).collect();
    ports.dedup();
    let per_part = ports.len().div_ceil(parts.max(1)).max(1);
    let mut out: Vec<Vec<Socket>> = Vec::new();
    let mut rest = listeners.as_slice();
    for chunk in ports.chunks(per_part) {
        let last = chunk[chunk.len() - 1];
        let cut = rest.partition_point(|l| l.port <= last);
        out.push(rest[..cut].to_vec());
        rest = &rest[cut..];
    }
    out
}

/// The listener that owns a connection to `local`: one bound to that very
/// address, else a wildcard one of the same family.
fn accepting<'a>(candidates: &[&'a Socket], family: Family, local: IpAddr) -> Option<&'a Socket> {
    candidates
        .iter()
        .find(|l| l.address == local)
        .or_else(|| {
            candidates
                .iter()
                .find(|l| l.family == family && l.address.is_unspecified())
        })
        .copied()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn listener(addr: &str, port: u16, inode: u64) -> Socket {
        crate::model::fixtures::port(Proto::Tcp, addr, port, inode, None).socket
    }

    fn conn(state: u8, local: &str, port: u16, remote: &str) -> Connection {
        let local: IpAddr = local.parse().expect("ip");
        Connection {
            family: if local.is_ipv4() {
                Family::Ipv4
            } else {
                Family::Ipv6
            },
            state,
            local,
            local_port: port,
            remote: remote.parse().expect("ip"),
        }
    }

    #[test]
    fn connections_go_to_the_exact_listener_then_the_wildcard_of_their_family() {
        let lo = listener("127.0.0.1", 80, 1);
        let any4 = listener("0.0.0.0", 80, 2);
        let any6 = listener("::", 80, 3);
        let other = listener("0.0.0.0", 443, 4);
        let all = [&lo, &any4, &any6, &other];
        let counts = count(
            &all,
            [
                conn(1, "127.0.0.1", 80, "127.0.0.1"),
                conn(1, "127.0.0.1", 80, "127.0.0.1"),
                conn(8, "10.0.0.5", 80, "10.0.0.9"),
                conn(1, "10.0.0.5", 80, "10.0.0.7"),
                // A v4 client of a dual-stack socket shows as v6, mapped.
                conn(1, "::ffff:10.0.0.5", 80, "::ffff:10.0.0.8"),
                conn(3, "::1", 80, "::1"),
                // The client's end of a connection: no listener on its port.
                conn(1, "127.0.0.1", 51234, "127.0.0.1"),
            ],
        );
        assert_eq!(counts[&1].by_state[1], 2);
        assert_eq!(counts[&1].peers.len(), 1);
        assert_eq!(counts[&2].by_state[1], 1);
        assert_eq!(counts[&2].by_state[8], 1);
        assert_eq!(counts[&2].peers.len(), 2);
        assert_eq!(counts[&3].by_state[1], 1);
        assert_eq!(counts[&3].by_state[3], 1);
        assert!(!counts.contains_key(&4));
        assert_eq!(counts.len(), 3);
    }

    #[test]
    fn split_by_port_keeps_a_ports_listeners_together_in_runs_of_ports() {
        let listeners = vec![
            listener("0.0.0.0", 80, 1),
            listener("::", 80, 2),
            listener("127.0.0.1", 22, 3),
            listener("0.0.0.0", 443, 4),
            listener("0.0.0.0", 8080, 5),
        ];
        let parts = split_by_port(listeners.clone(), 2);
        let ports: Vec<Vec<u16>> = parts
            .iter()
            .map(|p| p.iter().map(|l| l.port).collect())
            .collect();
        assert_eq!(ports, vec![vec![22, 80, 80], vec![443, 8080]]);
        assert_eq!(split_by_port(listeners.clone(), 1).len(), 1);
        // More parts than ports: one per port.
        assert_eq!(split_by_port(listeners, 9).len(), 4);
        assert!(split_by_port(Vec::new(), 2).is_empty());
    }
}
