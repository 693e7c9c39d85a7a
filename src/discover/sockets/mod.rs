//! Listening TCP sockets and bound, unconnected UDP sockets of one network
//! namespace.
//!
//! The primary source is netlink `sock_diag` with the state filter applied in
//! the kernel: only LISTEN (TCP) and CLOSE (UDP: bound, no peer) sockets cross
//! into user space, so the cost does not grow with established connections,
//! and a TCP listener's accept queue comes with both its length and its
//! maximum. When netlink is refused (seccomp, a missing `udp_diag` module in a
//! container) we parse `/proc/<pid>/net/{tcp,tcp6,udp,udp6}` instead
//! ([`parse_proc_net`]), which gives the queue length but not its maximum.
//!
//! Netlink answers for the namespace of the calling thread, so these
//! functions must run on a thread that is in the wanted namespace.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use netlink_packet_core::{
    NLM_F_DUMP, NLM_F_REQUEST, NLMSG_DONE, NLMSG_ERROR, NetlinkBuffer, NetlinkHeader,
    NetlinkMessage, Parseable,
};
use netlink_packet_sock_diag::{
    SockDiagMessage,
    constants::{
        AF_INET, AF_INET6, INET_DIAG_SKMEMINFO, INET_DIAG_SKV6ONLY, IPPROTO_TCP, IPPROTO_UDP,
        SOCK_DIAG_BY_FAMILY,
    },
    inet::{ExtensionFlags, InetRequest, InetResponseHeader, SocketId, StateFlags},
};
use netlink_sys::{Socket as NlSocket, SocketAddr, protocols::NETLINK_SOCK_DIAG};

use crate::model::{AcceptQueue, Family, Proto, Socket};

mod filter;
mod proc_net;

use filter::*;
pub use filter::{filter_parts, port_filter};
pub use proc_net::{ParseError, parse_proc_net, proc_net_file};

/// Kernel TCP state numbers (include/net/tcp_states.h).
const TCP_LISTEN: u8 = 10;
const TCP_CLOSE: u8 = 7;

/// Size of `struct inet_diag_msg`: the attributes follow it.
const INET_DIAG_MSG_LEN: usize = 72;
/// `INET_DIAG_SKMEMINFO` holds `u32 [SK_MEMINFO_VARS]`; this is the index of
/// `SK_MEMINFO_DROPS` (include/uapi/linux/sock_diag.h).
const SK_MEMINFO_DROPS: usize = 8;

pub use crate::model::CONNECTION_STATES;

/// A netlink sock_diag socket, reused for every dump of one pass in one
/// namespace.
pub struct Diag {
    nl: NlSocket,
    buf: Vec<u8>,
}

impl std::fmt::Debug for Diag {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Diag").finish_non_exhaustive()
    }
}

impl Diag {
    /// Opens it in the namespace of the calling thread.
    pub fn open() -> io::Result<Diag> {
        let mut nl = NlSocket::new(NETLINK_SOCK_DIAG)?;
        nl.bind_auto()?;
        nl.connect(&SocketAddr::new(0, 0))?;
        Ok(Diag {
            nl,
            buf: vec![0u8; 64 * 1024],
        })
    }

    /// The sockets of `proto`, both families: TCP listeners (with their
    /// accept queue and drop counter) or unconnected UDP sockets.
    pub fn listening(&mut self, proto: Proto) -> io::Result<Vec<Socket>> {
        let (protocol, states, extensions) = match proto {
            Proto::Tcp => (IPPROTO_TCP, StateFlags::LISTEN, ExtensionFlags::SKMEMINFO),
            Proto::Udp => (IPPROTO_UDP, StateFlags::CLOSE, ExtensionFlags::empty()),
        };
        let mut out = Vec::new();
        for family in [Family::Ipv4, Family::Ipv6] {
            let request = Request {
                protocol,
                family,
                states: states.clone(),
                extensions: extensions.clone(),
                filter: None,
            };
            dump(&self.nl, &request, &mut self.buf, &mut |resp, attrs| {
                if let Some(socket) = from_response(proto, family, resp, attrs) {
                    out.push(socket);
                }
            })?;
        }
        Ok(out)
    }

    /// Feeds every TCP connection in [`CONNECTION_STATES`], both families,
    /// whose local port is one of `ports` (the namespace's listening ports)
    /// to `each`. One dump per family, whatever the number of listeners.
    ///
    /// The ports become a filter the kernel runs before it copies a socket
    /// out ([`port_filter`]): a client's end of a connection, with its
    /// ephemeral local port, costs the kernel a comparison or two instead of
    /// a message. The filter may let a few other ports through when there
    /// are very many listening ports; `each` sees their sockets too.
    pub fn connections(
        &mut self,
        ports: &[u16],
        each: &mut dyn FnMut(Connection),
    ) -> io::Result<()> {
        if ports.is_empty() {
            return Ok(());
        }
        let states = CONNECTION_STATES
            .iter()
            .fold(StateFlags::empty(), |acc, (state, _)| {
                acc | StateFlags::from_bits_truncate(1 << state)
            });
        let bytecode = port_filter(ports);
        let mut filter = Some(bytecode.as_slice());
        for family in [Family::Ipv4, Family::Ipv6] {
            let mut request = Request {
                protocol: IPPROTO_TCP,
                family,
                states: states.clone(),
                extensions: ExtensionFlags::empty(),
                filter,
            };
            let mut handle = |h: &InetResponseHeader, _: &[u8]| {
                each(Connection {
                    family,
                    state: h.state,
                    local: h.socket_id.source_address,
                    local_port: h.socket_id.source_port,
                    remote: h.socket_id.destination_address,
                })
            };
            match dump(&self.nl, &request, &mut self.buf, &mut handle) {
                // A kernel that rejects the filter gets the plain dump, for
                // both families.
                Err(e)
                    if e.raw_os_error() == Some(rustix::io::Errno::INVAL.raw_os_error())
                        && filter.is_some() =>
                {
                    filter = None;
                    request.filter = None;
                    dump(&self.nl, &request, &mut self.buf, &mut handle)?;
                }
                other => other?,
            }
        }
        Ok(())
    }
}

/// One TCP connection's end in this namespace, as the kernel reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Connection {
    pub family: Family,
    /// Kernel TCP state number.
    pub state: u8,
    pub local: IpAddr,
    pub local_port: u16,
    pub remote: IpAddr,
}

/// Lists the sockets of `proto`, both families, through netlink.
pub fn list_netlink(proto: Proto) -> io::Result<Vec<Socket>> {
    Diag::open()?.listening(proto)
}

/// One inet_diag dump request.
struct Request<'a> {
    protocol: u8,
    family: Family,
    states: StateFlags,
    extensions: ExtensionFlags,
    /// An `inet_diag` bytecode filter, sent as `INET_DIAG_REQ_BYTECODE`.
    filter: Option<&'a [u8]>,
}

/// Sends one inet_diag dump request and feeds every answer to `each`, with
/// the bytes of its attributes.
///
/// Answers are walked in place and only their fixed header is decoded: a dump
/// of 10,000 listeners then costs no allocation per socket.
fn dump(
    nl: &NlSocket,
    req: &Request,
    buf: &mut [u8],
    each: &mut dyn FnMut(&InetResponseHeader, &[u8]),
) -> io::Result<()> {
    let (protocol, states, family) = (req.protocol, req.states.clone(), req.family);
    let (af, socket_id) = match family {
        Family::Ipv4 => (AF_INET, SocketId::new_v4()),
        Family::Ipv6 => (AF_INET6, SocketId::new_v6()),
    };
    let mut header = NetlinkHeader::default();
    header.flags = NLM_F_REQUEST | NLM_F_DUMP;
    header.sequence_number = 1;
    let mut request = NetlinkMessage::new(
        header,
        SockDiagMessage::InetRequest(InetRequest {
            family: af,
            protocol,
            extensions: req.extensions.clone(),
            states,
            socket_id,
        })
        .into(),
    );
    request.finalize();
    let mut req_buf = vec![0u8; request.buffer_len()];
    request.serialize(&mut req_buf);
    if let Some(filter) = req.filter {
        // The attribute follows the request; the message grows by it.
        let attr_len = 4 + filter.len();
        req_buf.extend_from_slice(&(attr_len as u16).to_ne_bytes());
        req_buf.extend_from_slice(&INET_DIAG_REQ_BYTECODE.to_ne_bytes());
        req_buf.extend_from_slice(filter);
        req_buf.resize(req_buf.len().next_multiple_of(4), 0);
        let total = req_buf.len() as u32;
        req_buf[..4].copy_from_slice(&total.to_ne_bytes());
    }
    nl.send(&req_buf, 0)?;

    loop {
        let size = nl.recv(&mut &mut buf[..], 0)?;
        if size == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "netlink closed mid-dump",
            ));
        }
        if walk_datagram(&buf[..size], each)? {
            return Ok(());
        }
    }
}

/// Walks one datagram of a sock_diag dump, feeding each answer's header and
/// attribute bytes to `each`; `Ok(true)` once the dump is done. Pure: the
/// kernel's bytes are untrusted input like any other (fuzzed).
pub fn walk_datagram(
    datagram: &[u8],
    each: &mut dyn FnMut(&InetResponseHeader, &[u8]),
) -> io::Result<bool> {
    let invalid =
        |e: &dyn std::fmt::Display| io::Error::new(io::ErrorKind::InvalidData, e.to_string());
    let mut offset = 0;
    while offset < datagram.len() {
        let msg = NetlinkBuffer::new_checked(&datagram[offset..]).map_err(|e| invalid(&e))?;
        let len = msg.length() as usize;
        match msg.message_type() {
            NLMSG_DONE => return Ok(true),
            NLMSG_ERROR => {
                let code = msg
                    .payload()
                    .get(..4)
                    .map(|b| i32::from_ne_bytes([b[0], b[1], b[2], b[3]]))
                    .unwrap_or(0);
                return Err(match code {
                    0 => io::Error::other("netlink error without code"),
                    code => io::Error::from_raw_os_error(code.saturating_neg()),
                });
            }
            SOCK_DIAG_BY_FAMILY => {
                let payload = msg.payload();
                let header = InetResponseHeader::parse(payload).map_err(|e| invalid(&e))?;
                each(
                    &header,
                    payload.get(INET_DIAG_MSG_LEN..).unwrap_or_default(),
                );
            }
            _ => {}
        }
        if len == 0 {
            break;
        }
        // Messages are 4-byte aligned inside one datagram.
        offset = offset.saturating_add((len + 3) & !3);
    }
    Ok(false)
}

/// The payload of the netlink attribute of type `kind` among `attrs`.
/// Pure; a malformed list ends the walk.
pub fn attribute(mut attrs: &[u8], kind: u16) -> Option<&[u8]> {
    // The top bits of the type are the NESTED and BYTEORDER flags.
    const TYPE_MASK: u16 = 0x3fff;
    while attrs.len() >= 4 {
        let len = usize::from(u16::from_ne_bytes([attrs[0], attrs[1]]));
        let ty = u16::from_ne_bytes([attrs[2], attrs[3]]);
        if len < 4 || len > attrs.len() {
            return None;
        }
        if ty & TYPE_MASK == kind {
            return Some(&attrs[4..len]);
        }
        attrs = attrs.get((len + 3) & !3..)?;
    }
    None
}

/// The socket's drop counter from its `INET_DIAG_SKMEMINFO` attribute: on a
/// listener, connections dropped because its accept queue was full.
pub fn drops(attrs: &[u8]) -> Option<u32> {
    let meminfo = attribute(attrs, INET_DIAG_SKMEMINFO)?;
    let at = SK_MEMINFO_DROPS * 4;
    let b = meminfo.get(at..at + 4)?;
    Some(u32::from_ne_bytes([b[0], b[1], b[2], b[3]]))
}

fn from_response(
    proto: Proto,
    family: Family,
    h: &InetResponseHeader,
    attrs: &[u8],
) -> Option<Socket> {
    let accept_queue = match proto {
        // For a listener, rqueue is the accept queue and wqueue its backlog.
        Proto::Tcp if h.state == TCP_LISTEN => Some(AcceptQueue {
            current: h.recv_queue,
            max: Some(h.send_queue),
            drops: drops(attrs),
        }),
        Proto::Tcp => return None,
        // A UDP socket with a peer is a connected client socket: not a door.
        Proto::Udp if h.state != TCP_CLOSE || !h.socket_id.destination_address.is_unspecified() => {
            return None;
        }
        Proto::Udp => None,
    };
    if h.socket_id.source_port == 0 {
        return None;
    }
    Some(Socket {
        proto,
        family,
        address: h.socket_id.source_address,
        port: h.socket_id.source_port,
        inode: u64::from(h.inode),
        uid: h.uid,
        accept_queue,
        // The kernel adds the flag to every IPv6 socket's answer.
        v6only: match family {
            Family::Ipv4 => None,
            Family::Ipv6 => attribute(attrs, INET_DIAG_SKV6ONLY)
                .and_then(|b| b.first())
                .map(|&b| b != 0),
        },
        bound_if: h.socket_id.interface_id,
    })
}
