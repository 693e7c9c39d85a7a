//! Probers: each checks one port and returns what it saw. A failed probe is
//! data (`alive: false` and how long it took), never an error, and every
//! probe ends by its deadline whatever the other side does (hangs, resets,
//! streams bytes forever, trickles one byte a second).

pub mod check;
pub mod http;
pub mod tcp;
pub mod tls;
pub mod udp;

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::fd::{AsFd, OwnedFd};
use std::path::Path;
use std::sync::Arc;

use rustix::fs::{Mode, OFlags};
use rustix::net::{AddressFamily, SocketFlags, SocketType};
use tokio::net::TcpStream;

use crate::model::Socket;

/// Why a connection could not even be tried on our side: out of file
/// descriptors, socket buffers or memory. Such a failure says nothing about
/// the port, and must never read as "down".
pub fn our_fault(e: &io::Error) -> Option<&'static str> {
    match e.raw_os_error()? {
        libc::EMFILE => Some("fd_exhausted"),
        libc::ENFILE => Some("system_fd_exhausted"),
        libc::ENOBUFS => Some("no_buffers"),
        libc::ENOMEM => Some("no_memory"),
        // A thread or process refused (RLIMIT_NPROC, the unit's TasksMax):
        // a check into another namespace needs a thread of its own.
        libc::EAGAIN => Some("no_threads"),
        _ => None,
    }
}

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
        Via::Netns(path) => {
            let fd = socket_entered(path, family_of(addr), SocketType::STREAM).await?;
            Ok(tokio::net::TcpSocket::from_std_stream(
                std::net::TcpStream::from(fd),
            ))
        }
    }
}

/// A UDP socket for `addr`'s family, made inside `via`'s namespace (as
/// [`connect`]'s) and connected to `addr`.
pub async fn udp_socket(addr: SocketAddr, via: &Via) -> io::Result<tokio::net::UdpSocket> {
    let family = family_of(addr);
    let fd = match via {
        Via::Here => rustix::net::socket_with(
            family,
            SocketType::DGRAM,
            SocketFlags::NONBLOCK | SocketFlags::CLOEXEC,
            None,
        )?,
        Via::Netns(path) => socket_entered(path, family, SocketType::DGRAM).await?,
    };
    let socket = tokio::net::UdpSocket::from_std(std::net::UdpSocket::from(fd))?;
    socket.connect(addr).await?;
    Ok(socket)
}

fn family_of(addr: SocketAddr) -> AddressFamily {
    if addr.is_ipv4() {
        AddressFamily::INET
    } else {
        AddressFamily::INET6
    }
}

/// A socket of `kind` made inside the namespace entered through `path`.
/// Entering a namespace changes the calling thread for good: a thread of
/// its own, never one of the runtime's. The socket belongs to the
/// namespace for life, wherever it is used afterwards.
async fn socket_entered(
    path: &Arc<Path>,
    family: AddressFamily,
    kind: SocketType,
) -> io::Result<OwnedFd> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    let path = Arc::clone(path);
    std::thread::Builder::new()
        .name("netns-socket".into())
        .spawn(move || {
            let _ = tx.send(socket_in(&path, family, kind));
        })?;
    rx.await
        .map_err(|_| io::Error::other("namespace thread ended"))?
}

fn socket_in(path: &Path, family: AddressFamily, kind: SocketType) -> io::Result<OwnedFd> {
    let ns = rustix::fs::open(path, OFlags::RDONLY | OFlags::CLOEXEC, Mode::empty())?;
    rustix::thread::move_into_link_name_space(
        ns.as_fd(),
        Some(rustix::thread::LinkNameSpaceType::Network),
    )?;
    Ok(rustix::net::socket_with(
        family,
        kind,
        SocketFlags::NONBLOCK | SocketFlags::CLOEXEC,
        None,
    )?)
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
