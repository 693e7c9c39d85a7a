//! Windows's side of a check's sockets: made here (Windows has one network
//! stack for the host: no namespace to enter), and the Winsock errors that
//! are our fault, not the port's.

use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::Path;
use std::sync::Arc;

/// Why a connection could not even be tried on our side (see
/// [`super::our_fault`]): Winsock's error numbers.
pub fn our_fault(e: &io::Error) -> Option<&'static str> {
    const WSAEMFILE: i32 = 10024;
    const WSAENOBUFS: i32 = 10055;
    const ERROR_NOT_ENOUGH_MEMORY: i32 = 8;
    const ERROR_OUTOFMEMORY: i32 = 14;
    const ERROR_NO_SYSTEM_RESOURCES: i32 = 1450;
    match e.raw_os_error()? {
        WSAEMFILE => Some("fd_exhausted"),
        WSAENOBUFS => Some("no_buffers"),
        ERROR_NOT_ENOUGH_MEMORY | ERROR_OUTOFMEMORY | ERROR_NO_SYSTEM_RESOURCES => {
            Some("no_memory")
        }
        _ => None,
    }
}

/// A socket's kind.
#[derive(Debug, Clone, Copy)]
pub enum Kind {
    Stream,
    Datagram,
}

/// A socket made inside another namespace: never, here.
pub enum Entered {}

impl From<Entered> for std::net::TcpStream {
    fn from(e: Entered) -> Self {
        match e {}
    }
}

impl From<Entered> for std::net::UdpSocket {
    fn from(e: Entered) -> Self {
        match e {}
    }
}

/// A non-blocking UDP socket of `addr`'s family, here (bound to any port:
/// Winsock sockets are made by binding).
pub fn udp_here(addr: SocketAddr) -> io::Result<std::net::UdpSocket> {
    let any: SocketAddr = match addr {
        SocketAddr::V4(_) => (Ipv4Addr::UNSPECIFIED, 0).into(),
        SocketAddr::V6(_) => (Ipv6Addr::UNSPECIFIED, 0).into(),
    };
    let socket = std::net::UdpSocket::bind(any)?;
    socket.set_nonblocking(true)?;
    Ok(socket)
}

/// Windows lists no namespaces, so none is ever entered.
pub async fn entered(_: &Arc<Path>, _: SocketAddr, _: Kind) -> io::Result<Entered> {
    Err(io::Error::new(
        io::ErrorKind::Unsupported,
        "network namespaces are Linux's",
    ))
}
