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
        AF_INET, AF_INET6, INET_DIAG_SKMEMINFO, IPPROTO_TCP, IPPROTO_UDP, SOCK_DIAG_BY_FAMILY,
    },
    inet::{ExtensionFlags, InetRequest, InetResponseHeader, SocketId, StateFlags},
};
use netlink_sys::{Socket as NlSocket, SocketAddr, protocols::NETLINK_SOCK_DIAG};

use crate::model::{AcceptQueue, Family, Proto, Socket};

/// Kernel TCP state numbers (include/net/tcp_states.h).
const TCP_LISTEN: u8 = 10;
const TCP_CLOSE: u8 = 7;

/// Size of `struct inet_diag_msg`: the attributes follow it.
const INET_DIAG_MSG_LEN: usize = 72;
/// `INET_DIAG_SKMEMINFO` holds `u32 [SK_MEMINFO_VARS]`; this is the index of
/// `SK_MEMINFO_DROPS` (include/uapi/linux/sock_diag.h).
const SK_MEMINFO_DROPS: usize = 8;

/// The TCP states of connections counted per listening port: every state a
/// server's end of a connection passes through (not SYN_SENT, a client's).
pub const CONNECTION_STATES: &[(u8, &str)] = &[
    (1, "established"),
    (3, "syn_recv"),
    (4, "fin_wait1"),
    (5, "fin_wait2"),
    (6, "time_wait"),
    (8, "close_wait"),
    (9, "last_ack"),
    (11, "closing"),
];

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

/// `INET_DIAG_REQ_BYTECODE`: the request attribute carrying a filter.
const INET_DIAG_REQ_BYTECODE: u16 = 1;
/// Filter op codes (include/uapi/linux/inet_diag.h).
const INET_DIAG_BC_JMP: u8 = 1;
const INET_DIAG_BC_S_GE: u8 = 2;
const INET_DIAG_BC_S_LE: u8 = 3;
/// Bytes of a port comparison (the op and the port) and of a jump.
const CMP_LEN: usize = 8;
const JMP_LEN: usize = 4;
/// Most ranges in one filter: jumps are 16-bit and so is the attribute's
/// length.
const MAX_RANGES: usize = 3000;

/// An `inet_diag` bytecode filter accepting a socket whose local port lies
/// in one of the ranges covering `ports`. Past [`MAX_RANGES`] the closest
/// ranges are merged (the filter then lets a few other ports through; the
/// caller matches exactly).
///
/// The kernel checks a filter before running it (`inet_diag_bc_audit`):
/// every op's `yes` must be its own length, and every `no` jump must land on
/// an op boundary, at the end (accept) or 4 bytes past it (reject). Proving
/// that a jump lands on a boundary walks the filter from its start, so a
/// filter with thousands of jumps into itself costs the kernel more to check
/// than the dump it saves. The ranges are therefore cut into about √n blocks:
/// a binary search tree over the blocks (two jumps into the filter per
/// block), each block a linear scan whose jumps all go to accept or reject.
/// The kernel runs a few dozen comparisons per socket and checks the filter
/// in well under a millisecond.
pub fn port_filter(ports: &[u16]) -> Vec<u8> {
    let ranges = cover(ports, MAX_RANGES);
    let per_block = ranges.len().isqrt().max(1);
    let blocks: Vec<&[(u16, u16)]> = ranges.chunks(per_block).collect();
    let end = tree_len(&blocks);
    let mut out = vec![0u8; end];
    emit(&blocks, 0, end, &mut out);
    out
}

/// How many filters `ports` needs for each to be exact (no ranges merged).
pub fn filter_parts(ports: impl Iterator<Item = u16>) -> usize {
    let mut sorted: Vec<u16> = ports.collect();
    sorted.sort_unstable();
    sorted.dedup();
    let ranges = 1 + sorted.windows(2).filter(|w| w[1] != w[0] + 1).count();
    ranges.div_ceil(MAX_RANGES)
}

/// Sorted, disjoint ranges covering `ports`, at most `max` of them (the
/// smallest gaps closed first).
fn cover(ports: &[u16], max: usize) -> Vec<(u16, u16)> {
    let mut sorted = ports.to_vec();
    sorted.sort_unstable();
    sorted.dedup();
    let mut ranges: Vec<(u16, u16)> = Vec::new();
    for p in sorted {
        match ranges.last_mut() {
            Some((_, hi)) if u32::from(*hi) + 1 == u32::from(p) => *hi = p,
            _ => ranges.push((p, p)),
        }
    }
    if ranges.len() > max.max(1) {
        // Close the (len - max) smallest gaps: gap i lies after range i.
        let mut gaps: Vec<(u16, usize)> = ranges
            .windows(2)
            .enumerate()
            .map(|(i, w)| (w[1].0 - w[0].1, i))
            .collect();
        gaps.sort_unstable();
        let mut close = vec![false; ranges.len()];
        for &(_, i) in &gaps[..ranges.len() - max.max(1)] {
            close[i] = true;
        }
        let mut merged: Vec<(u16, u16)> = Vec::with_capacity(max);
        let mut extend = false;
        for (i, r) in ranges.iter().enumerate() {
            match merged.last_mut() {
                Some(last) if extend => last.1 = r.1,
                _ => merged.push(*r),
            }
            extend = close[i];
        }
        ranges = merged;
    }
    ranges
}

/// Bytes of a block's linear scan: two comparisons per range but its last,
/// and a jump.
fn block_len(block: &[(u16, u16)]) -> usize {
    2 * CMP_LEN * (block.len() - 1) + JMP_LEN
}

/// Bytes of the search tree over `blocks`: per block, its two bounds and
/// its scan.
fn tree_len(blocks: &[&[(u16, u16)]]) -> usize {
    blocks.iter().map(|b| 2 * CMP_LEN + block_len(b)).sum()
}

/// Writes the search tree over `blocks` at byte `at` of a filter `end`
/// bytes long: the middle block's bounds, its scan, the left subtree, the
/// right subtree.
fn emit(blocks: &[&[(u16, u16)]], at: usize, end: usize, out: &mut [u8]) {
    if blocks.is_empty() {
        return;
    }
    let mid = blocks.len() / 2;
    let (left, block, right) = (&blocks[..mid], blocks[mid], &blocks[mid + 1..]);
    let (lo, hi) = (block[0].0, block[block.len() - 1].1);
    let scan_at = at + 2 * CMP_LEN;
    let left_at = scan_at + block_len(block);
    let right_at = left_at + tree_len(left);
    let reject = end + 4;
    let target = |subtree: &[&[(u16, u16)]], start: usize| {
        if subtree.is_empty() { reject } else { start }
    };
    // Above the block: the right subtree; below it, the left one.
    compare(out, at, INET_DIAG_BC_S_LE, hi, target(right, right_at) - at);
    let ge = at + CMP_LEN;
    compare(out, ge, INET_DIAG_BC_S_GE, lo, target(left, left_at) - ge);
    // Within its bounds: past each range but the last, either inside it
    // (accept) or in the gap after it (reject) or further on.
    let mut cursor = scan_at;
    for pair in block.windows(2) {
        let ((_, prev_hi), (next_lo, _)) = (pair[0], pair[1]);
        // `prev_hi` < `next_lo`, so `prev_hi + 1` does not overflow.
        compare(out, cursor, INET_DIAG_BC_S_GE, prev_hi + 1, end - cursor);
        cursor += CMP_LEN;
        compare(out, cursor, INET_DIAG_BC_S_GE, next_lo, reject - cursor);
        cursor += CMP_LEN;
    }
    // Inside the last range.
    op(out, cursor, INET_DIAG_BC_JMP, JMP_LEN, end - cursor);
    emit(left, left_at, end, out);
    emit(right, right_at, end, out);
}

/// `struct inet_diag_bc_op { u8 code; u8 yes; u16 no; }` at `at`.
fn op(out: &mut [u8], at: usize, code: u8, yes: usize, no: usize) {
    out[at] = code;
    out[at + 1] = yes as u8;
    out[at + 2..at + 4].copy_from_slice(&(no as u16).to_ne_bytes());
}

/// A port comparison at `at`: on success the next op, else `no` bytes on.
/// The port is the `no` field of a second op, in host order.
fn compare(out: &mut [u8], at: usize, code: u8, port: u16, no: usize) {
    op(out, at, code, CMP_LEN, no);
    out[at + 6..at + 8].copy_from_slice(&port.to_ne_bytes());
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
    })
}

/// Why a `/proc/net` line was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {reason}")]
pub struct ParseError {
    pub line: usize,
    pub reason: &'static str,
}

/// Parses the text of `/proc/<pid>/net/{tcp,tcp6,udp,udp6}`, keeping TCP
/// listeners and bound, unconnected UDP sockets. Pure, for the fallback path
/// and for tests on fixture text. The header line is skipped; a malformed line
/// is an error rather than a silently missing socket.
pub fn parse_proc_net(text: &str, proto: Proto, family: Family) -> Result<Vec<Socket>, ParseError> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate().skip(1) {
        let line_no = i + 1;
        let err = |reason| ParseError {
            line: line_no,
            reason,
        };
        let fields: Vec<&str> = line.split_ascii_whitespace().collect();
        if fields.is_empty() {
            continue;
        }
        if fields.len() < 10 {
            return Err(err("fewer than 10 fields"));
        }
        let (local, port) = parse_endpoint(fields[1], family).ok_or(err("bad local address"))?;
        let (remote, _) = parse_endpoint(fields[2], family).ok_or(err("bad remote address"))?;
        let state = u8::from_str_radix(fields[3], 16).map_err(|_| err("bad state"))?;
        let (_tx, rx) = fields[4].split_once(':').ok_or(err("bad queue field"))?;
        let rx_queue = u32::from_str_radix(rx, 16).map_err(|_| err("bad rx_queue"))?;
        let uid = fields[7].parse().map_err(|_| err("bad uid"))?;
        let inode = fields[9].parse().map_err(|_| err("bad inode"))?;
        let accept_queue = match proto {
            Proto::Tcp if state == TCP_LISTEN => Some(AcceptQueue {
                current: rx_queue,
                max: None,
                drops: None,
            }),
            Proto::Tcp => continue,
            Proto::Udp if state != TCP_CLOSE || !remote.is_unspecified() => continue,
            Proto::Udp => None,
        };
        // inode 0: a socket being torn down, with no fd left to own it.
        if port == 0 || inode == 0 {
            continue;
        }
        out.push(Socket {
            proto,
            family,
            address: local,
            port,
            inode,
            uid,
            accept_queue,
        });
    }
    Ok(out)
}

/// `0100007F:1F90` (IPv4) or 32 hex digits `:port` (IPv6). The kernel prints
/// each 32-bit word of the address as a native-endian integer.
fn parse_endpoint(field: &str, family: Family) -> Option<(IpAddr, u16)> {
    let (addr, port) = field.split_once(':')?;
    let port = u16::from_str_radix(port, 16).ok()?;
    let word = |s: &str| u32::from_str_radix(s, 16).ok().map(u32::to_ne_bytes);
    let ip = match family {
        Family::Ipv4 if addr.len() == 8 => IpAddr::V4(Ipv4Addr::from(word(addr)?)),
        Family::Ipv6 if addr.len() == 32 => {
            let mut bytes = [0u8; 16];
            for (i, chunk) in bytes.chunks_mut(4).enumerate() {
                chunk.copy_from_slice(&word(addr.get(i * 8..i * 8 + 8)?)?);
            }
            IpAddr::V6(Ipv6Addr::from(bytes))
        }
        _ => return None,
    };
    Some((ip, port))
}

/// The `/proc/<pid>/net` file name for a protocol and family.
pub fn proc_net_file(proto: Proto, family: Family) -> &'static str {
    match (proto, family) {
        (Proto::Tcp, Family::Ipv4) => "net/tcp",
        (Proto::Tcp, Family::Ipv6) => "net/tcp6",
        (Proto::Udp, Family::Ipv4) => "net/udp",
        (Proto::Udp, Family::Ipv6) => "net/udp6",
    }
}

#[cfg(all(test, target_endian = "little"))]
mod tests {
    use super::*;

    const TCP4: &str = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:0CEA 00000000:0000 0A 00000000:00000003 00:00000000 00000000   113        0 22879 1 0000000000000000 100 0 0 10 0
   1: 00000000:0016 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 19561 1 0000000000000000 100 0 0 10 0
   2: 0F02000A:0016 0202000A:D4C2 01 00000000:00000000 02:0009A3B7 00000000     0        0 40121 4 0000000000000000 20 4 29 10 -1
";

    const TCP6: &str = "  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000000000000000000000000000:1F90 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 31337 1 0000000000000000 100 0 0 10 0
   1: 00000000000000000000000001000000:0277 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 31338 1 0000000000000000 100 0 0 10 0
";

    const UDP4: &str = "   sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode ref pointer drops
  100: 3500007F:0035 00000000:0000 07 00000000:00000000 00:00000000 00000000   101        0 17777 2 0000000000000000 0
  101: 0100007F:A1B2 0100007F:0035 01 00000000:00000000 00:00000000 00000000  1000        0 18888 2 0000000000000000 0
";

    #[test]
    fn tcp4_listeners_only() {
        let socks = parse_proc_net(TCP4, Proto::Tcp, Family::Ipv4).expect("parses");
        assert_eq!(socks.len(), 2);
        assert_eq!(socks[0].address, "127.0.0.1".parse::<IpAddr>().expect("ip"));
        assert_eq!(socks[0].port, 3306);
        assert_eq!(socks[0].uid, 113);
        assert_eq!(socks[0].inode, 22879);
        assert_eq!(
            socks[0].accept_queue,
            Some(AcceptQueue {
                current: 3,
                max: None,
                drops: None,
            })
        );
        assert_eq!(socks[1].address, "0.0.0.0".parse::<IpAddr>().expect("ip"));
        assert_eq!(socks[1].port, 22);
    }

    #[test]
    fn tcp6_wildcard_and_loopback() {
        let socks = parse_proc_net(TCP6, Proto::Tcp, Family::Ipv6).expect("parses");
        assert_eq!(socks.len(), 2);
        assert_eq!(socks[0].address, "::".parse::<IpAddr>().expect("ip"));
        assert_eq!(socks[0].port, 8080);
        assert_eq!(socks[1].address, "::1".parse::<IpAddr>().expect("ip"));
        assert_eq!(socks[1].port, 631);
        assert_eq!(socks[1].family, Family::Ipv6);
    }

    #[test]
    fn udp_connected_sockets_are_skipped() {
        let socks = parse_proc_net(UDP4, Proto::Udp, Family::Ipv4).expect("parses");
        assert_eq!(socks.len(), 1);
        assert_eq!(
            socks[0].address,
            "127.0.0.53".parse::<IpAddr>().expect("ip")
        );
        assert_eq!(socks[0].port, 53);
        assert_eq!(socks[0].accept_queue, None);
    }

    #[test]
    fn malformed_lines_are_errors() {
        let header = "sl local rem st q tr tm uid timeout inode\n";
        for bad in [
            "0: 0100007F:0CEA 00000000:0000 0A\n",
            "0: 0100007Z:0CEA 00000000:0000 0A 0:0 0:0 0 0 0 1\n",
            "0: 0100007F 00000000:0000 0A 0:0 0:0 0 0 0 1\n",
            "0: 0100007F:0CEA 00000000:0000 0A 0:0 0:0 0 x 0 1\n",
            "0: 0100007F:0CEA 00000000:0000 0A 00 0:0 0 0 0 1\n",
        ] {
            let text = format!("{header}{bad}");
            let err = parse_proc_net(&text, Proto::Tcp, Family::Ipv4).expect_err(bad);
            assert_eq!(err.line, 2, "{bad}");
        }
        // A v4-sized address in a v6 file is refused too.
        let text = format!("{header}0: 0100007F:0CEA 00000000:0000 0A 0:0 0:0 0 0 0 1\n");
        assert!(parse_proc_net(&text, Proto::Tcp, Family::Ipv6).is_err());
    }

    #[test]
    fn empty_file_has_no_sockets() {
        assert_eq!(parse_proc_net("", Proto::Udp, Family::Ipv6), Ok(vec![]));
        assert_eq!(
            parse_proc_net(TCP4.lines().next().unwrap_or(""), Proto::Tcp, Family::Ipv4),
            Ok(vec![])
        );
    }

    /// The kernel's `inet_diag_bc_audit`, for the ops `port_filter` emits:
    /// the ops it walks in all, when the filter is valid.
    fn audit(bc: &[u8]) -> Result<usize, String> {
        let walked = std::cell::Cell::new(0usize);
        let valid_cc = |cc: usize| {
            let (mut at, mut len) = (0usize, bc.len());
            loop {
                walked.set(walked.get() + 1);
                if cc > len {
                    return false;
                }
                if cc == len {
                    return true;
                }
                let yes = usize::from(bc[at + 1]);
                if yes < 4 || yes % 4 != 0 {
                    return false;
                }
                at += yes;
                len -= yes;
            }
        };
        let (mut at, mut len) = (0usize, bc.len());
        while len > 0 {
            let (code, yes) = (bc[at], usize::from(bc[at + 1]));
            let no = usize::from(u16::from_ne_bytes([bc[at + 2], bc[at + 3]]));
            let min_len = match code {
                INET_DIAG_BC_S_GE | INET_DIAG_BC_S_LE if len >= 8 => 8,
                INET_DIAG_BC_JMP => 4,
                _ => return Err(format!("bad op {code} at {at}")),
            };
            if no < min_len || no > len + 4 || no % 4 != 0 {
                return Err(format!("bad no {no} at {at}"));
            }
            if no < len && !valid_cc(len - no) {
                return Err(format!("no {no} at {at} lands inside an op"));
            }
            if yes < min_len || yes > len + 4 || yes % 4 != 0 {
                return Err(format!("bad yes {yes} at {at}"));
            }
            at += yes;
            len -= yes;
        }
        Ok(walked.get())
    }

    /// The kernel's `inet_diag_bc_run` on a socket with local port `sport`.
    fn run(bc: &[u8], sport: u16) -> bool {
        let (mut at, mut len) = (0usize, bc.len() as isize);
        let mut steps = 0;
        while len > 0 {
            steps += 1;
            assert!(steps <= 200, "a tree of scans of about √3000 ranges");
            let code = bc[at];
            let op_port = || u16::from_ne_bytes([bc[at + 6], bc[at + 7]]);
            let ok = match code {
                INET_DIAG_BC_S_GE => sport >= op_port(),
                INET_DIAG_BC_S_LE => sport <= op_port(),
                _ => false,
            };
            let step = if ok {
                usize::from(bc[at + 1])
            } else {
                usize::from(u16::from_ne_bytes([bc[at + 2], bc[at + 3]]))
            };
            at += step;
            len -= step as isize;
        }
        len == 0
    }

    #[test]
    fn port_filter_accepts_exactly_the_ports_it_was_given() {
        let sets: [&[u16]; 7] = [
            &[80],
            &[0, 65535],
            &[22, 80, 443, 8080, 8081, 8082, 9090],
            &[65535],
            &[1, 2, 3, 4, 5],
            &[443, 80, 80, 22],
            &[1000, 3000, 5000, 7000, 9000, 11000, 13000, 15000, 17000],
        ];
        // And 1,500 scattered ports, some adjacent: blocks of ~38 ranges.
        let mut x: u32 = 12345;
        let scattered: Vec<u16> = (0..1500)
            .map(|_| {
                x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
                (x >> 16) as u16
            })
            .collect();
        for ports in sets.into_iter().chain([scattered.as_slice()]) {
            let bc = port_filter(ports);
            audit(&bc).unwrap_or_else(|e| panic!("{ports:?}: {e}"));
            for sport in 0..=u16::MAX {
                assert_eq!(
                    run(&bc, sport),
                    ports.contains(&sport),
                    "{ports:?} at {sport}"
                );
            }
        }
    }

    #[test]
    fn port_filter_past_its_size_merges_the_closest_ports_and_stays_valid() {
        // Every third port: 21,845 ranges, far more than fit.
        let ports: Vec<u16> = (0..=u16::MAX).step_by(3).collect();
        let bc = port_filter(&ports);
        assert!(bc.len() + 4 <= usize::from(u16::MAX), "fits the attribute");
        let walked = audit(&bc).expect("the kernel takes it");
        // The kernel's check walks the filter once per jump into it: a
        // plain search tree over 3,000 ranges made it walk ~40 million ops.
        assert!(
            walked < 1_000_000,
            "the kernel walks {walked} ops to check it"
        );
        for &p in &ports {
            assert!(run(&bc, p), "port {p} must pass");
        }
        // A handful of wide ranges far apart: merged where they are closest.
        let ranges = cover(&[10, 11, 12, 20, 1000, 1001, 5000], 3);
        assert_eq!(ranges, vec![(10, 20), (1000, 1001), (5000, 5000)]);
    }
}
