//! `load`: accept queues, drops, connections by state and peers — how
//! loaded each port is, and whether its application keeps up.

use super::{port_family, port_family_with};
use crate::encoder::{Encoder, Kind};
use crate::engine::{PortSeries, Snapshot};
use crate::model::CONNECTION_STATES;
use crate::model::Proto;

pub(super) fn write(s: &Snapshot, enc: &mut Encoder) {
    let queue = |p: &PortSeries| p.queue.filter(|_| p.key.proto == Proto::Tcp);
    port_family(
        enc,
        "portwarden_tcp_listen_queue_length",
        "Connections waiting in the port's accept queues (summed over its listeners): the application has not accepted them yet.",
        &s.ports,
        |p| queue(p).map(|q| q.current as f64),
    );
    port_family(
        enc,
        "portwarden_tcp_listen_queue_max",
        "The port's accept queue limit (the listen backlog, summed over its listeners).",
        &s.ports,
        |p| queue(p)?.max.map(|m| m as f64),
    );
    port_family_with(
        enc,
        ("portwarden_tcp_listen_drops", Kind::Counter),
        "Connections the port's listeners dropped because their accept queue was full (the sockets' own drop counters).",
        &s.ports,
        None,
        |p| queue(p)?.drops.map(|d| vec![("", d as f64)]),
    );
    enc.by_label(
        "portwarden_netns_listen_overflows",
        "ListenOverflows of the namespace (TcpExt): handshakes completed while an accept queue was full.",
        Kind::Counter,
        "netns",
        s.netns_listen
            .iter()
            .map(|(netns, c)| (&**netns, c.overflows as f64)),
    );
    enc.by_label(
        "portwarden_netns_listen_drops",
        "ListenDrops of the namespace (TcpExt): connections dropped at any listener, overflows included.",
        Kind::Counter,
        "netns",
        s.netns_listen
            .iter()
            .map(|(netns, c)| (&**netns, c.drops as f64)),
    );
    port_family_with(
        enc,
        ("portwarden_tcp_port_connections", Kind::Gauge),
        "Connections the port accepted, by TCP state (established always; syn_recv, close_wait and the others when any).",
        &s.ports,
        Some("state"),
        |p| {
            let c = p.connections.as_ref()?;
            Some(
                CONNECTION_STATES
                    .iter()
                    .filter(|(state, name)| {
                        c.by_state[usize::from(*state)] > 0 || *name == "established"
                    })
                    .map(|(state, name)| (*name, f64::from(c.by_state[usize::from(*state)])))
                    .collect(),
            )
        },
    );
    port_family(
        enc,
        "portwarden_tcp_port_peers",
        "Distinct remote addresses among the port's connections.",
        &s.ports,
        |p| p.connections.as_ref().map(|c| f64::from(c.peers)),
    );
}
