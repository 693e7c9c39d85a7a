//! Linux's side of a check's sockets: made here, or inside another network
//! namespace (entered by `setns` on a thread of its own), and the errno
//! values that are our fault, not the port's.

use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsFd, OwnedFd};
use std::path::Path;
use std::sync::Arc;

use rustix::fs::{Mode, OFlags};
use rustix::net::{AddressFamily, SocketFlags, SocketType};

/// Why a connection could not even be tried on our side (see
/// [`super::our_fault`]).
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

/// A socket's kind.
#[derive(Debug, Clone, Copy)]
pub enum Kind {
    Stream,
    Datagram,
}

/// A socket made inside another namespace: an fd either kind converts from.
pub struct Entered(OwnedFd);

impl From<Entered> for std::net::TcpStream {
    fn from(e: Entered) -> Self {
        std::net::TcpStream::from(e.0)
    }
}

impl From<Entered> for std::net::UdpSocket {
    fn from(e: Entered) -> Self {
        std::net::UdpSocket::from(e.0)
    }
}

fn family_of(addr: SocketAddr) -> AddressFamily {
    if addr.is_ipv4() {
        AddressFamily::INET
    } else {
        AddressFamily::INET6
    }
}

/// An unbound, non-blocking UDP socket of `addr`'s family, here.
pub fn udp_here(addr: SocketAddr) -> io::Result<std::net::UdpSocket> {
    Ok(rustix::net::socket_with(
        family_of(addr),
        SocketType::DGRAM,
        SocketFlags::NONBLOCK | SocketFlags::CLOEXEC,
        None,
    )?
    .into())
}

/// A socket of `kind` for `addr`'s family made inside the namespace
/// entered through `path`. Entering a namespace changes the calling thread
/// for good: a thread of its own, never one of the runtime's. The socket
/// belongs to the namespace for life, wherever it is used afterwards.
pub async fn entered(path: &Arc<Path>, addr: SocketAddr, kind: Kind) -> io::Result<Entered> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    let path = Arc::clone(path);
    let family = family_of(addr);
    let kind = match kind {
        Kind::Stream => SocketType::STREAM,
        Kind::Datagram => SocketType::DGRAM,
    };
    std::thread::Builder::new()
        .name("netns-socket".into())
        .spawn(move || {
            let _ = tx.send(socket_in(&path, family, kind));
        })?;
    rx.await
        .map_err(|_| io::Error::other("namespace thread ended"))?
        .map(Entered)
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
