//! Probers: each checks one port and returns what it saw. A failed probe is
//! data (`alive: false` and how long it took), never an error, and every
//! probe ends by its deadline whatever the other side does (hangs, resets,
//! streams bytes forever, trickles one byte a second).

pub mod http;
pub mod tcp;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use crate::model::Socket;

/// Where to connect to reach a listening socket: the address it is bound
/// to, or the loopback address of its family for a wildcard socket. A
/// socket's own address is the one that must answer; trying other local
/// addresses would only reach the same socket, or a different one.
pub fn target(socket: &Socket) -> SocketAddr {
    let ip = match socket.address {
        IpAddr::V4(a) if a.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(a) if a.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    SocketAddr::new(ip, socket.port)
}

/// Targets of all the sockets behind one port, loopback first, each once.
pub fn targets<'a>(sockets: impl IntoIterator<Item = &'a Socket>) -> Vec<SocketAddr> {
    let mut out: Vec<SocketAddr> = sockets.into_iter().map(target).collect();
    out.sort_by_key(|a| (!a.ip().is_loopback(), a.is_ipv6(), *a));
    out.dedup();
    out
}
