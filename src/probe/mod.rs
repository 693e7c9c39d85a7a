//! Probers: each checks one port and returns what it saw. A failed probe is
//! data (`alive: false` and how long it took), never an error, and every
//! probe ends by its deadline whatever the other side does (hangs, resets,
//! streams bytes forever, trickles one byte a second).

pub mod check;
pub mod http;
pub mod tcp;
pub mod tls;
pub mod udp;

// What a check asks of the OS: a socket here, or in another network
// namespace (Linux's), and which of its errors are ours.
#[cfg_attr(windows, path = "windows.rs")]
mod os;

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::Path;
use std::sync::Arc;

use tokio::net::TcpStream;

use crate::model::Socket;

/// Why a connection could not even be tried on our side: out of file
/// descriptors (handles), socket buffers, memory or threads. Such a
/// failure says nothing about the port, and must never read as "down".
pub use os::our_fault;

/// Where a check's connections come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Via {
    /// Our own network namespace.
    Here,
    /// Another namespace, entered through this file (`/proc/<pid>/ns/net`
    /// or a bind mount): a container's `127.0.0.1` is its own.
    Netns(Arc<Path>),
}

/// How the ports of each namespace a discovery listed are reached (by the
/// namespace as discovery names it, [`crate::model::Port::namespace`]):
/// from our own sockets, or from sockets made inside it through its entry.
pub fn vias(discovery: &crate::discover::Discovery) -> std::collections::HashMap<&str, Via> {
    discovery
        .namespaces
        .iter()
        .map(|ns| {
            let via = match &ns.entry {
                Some(path) => Via::Netns(path.as_path().into()),
                None => Via::Here,
            };
            (&*ns.label, via)
        })
        .collect()
}

/// Connects to `addr` from inside `via`'s namespace. A refused `setns`
/// comes back as `PermissionDenied`.
pub async fn connect(addr: SocketAddr, via: &Via) -> io::Result<TcpStream> {
    tcp_socket(addr, via).await?.connect(addr).await
}

/// A TCP socket for `addr`'s family, made inside `via`'s namespace, not yet
/// connected. Making it is our work (entering a namespace can take a while
/// on a busy host): a check times the connect alone, never this.
pub async fn tcp_socket(addr: SocketAddr, via: &Via) -> io::Result<tokio::net::TcpSocket> {
    match via {
        Via::Here if addr.is_ipv4() => tokio::net::TcpSocket::new_v4(),
        Via::Here => tokio::net::TcpSocket::new_v6(),
        Via::Netns(path) => Ok(tokio::net::TcpSocket::from_std_stream(
            os::entered(path, addr, os::Kind::Stream).await?.into(),
        )),
    }
}

/// A UDP socket for `addr`'s family, made inside `via`'s namespace (as
/// [`connect`]'s) and connected to `addr`.
pub async fn udp_socket(addr: SocketAddr, via: &Via) -> io::Result<tokio::net::UdpSocket> {
    let socket = match via {
        Via::Here => os::udp_here(addr)?,
        Via::Netns(path) => os::entered(path, addr, os::Kind::Datagram).await?.into(),
    };
    let socket = tokio::net::UdpSocket::from_std(socket)?;
    socket.connect(addr).await?;
    Ok(socket)
}

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
