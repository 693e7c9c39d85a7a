//! Where the calling thread's namespace routes an address, asked of the
//! kernel (`RTM_GETROUTE`, as `ip route get` does) without writing
//! anything, and whether it forwards at all: what decides whether a
//! connection a DNAT rewrote is delivered here (the input hook) or sent on
//! (the forward hook).
//!
//! The lookup is the kernel's own, for a packet this namespace would send
//! to the address: policy routing keyed on the incoming interface is not
//! seen (the incoming interface of an outside connection is any).

use std::io;
use std::net::IpAddr;
use std::sync::Arc;

use netlink_sys::{Socket as NlSocket, SocketAddr, protocols::NETLINK_ROUTE};

use super::netlink::NLMSG_ERROR;
use crate::exposure::ruleset::{Route, RouteTo, Routing};

const RTM_NEWROUTE: u16 = 24;
const RTM_GETROUTE: u16 = 26;
const NLM_F_REQUEST: u16 = 1;
const RTA_DST: u16 = 1;
const RTA_OIF: u16 = 4;
const RTN_UNICAST: u8 = 1;
const RTN_LOCAL: u8 = 2;

/// The routes to `addrs` and the forwarding switches of the calling
/// thread's namespace. An address the kernel has no route to is
/// [`RouteTo::Nowhere`] with its word; a failure to ask at all is an error.
pub fn read_here(addrs: &[IpAddr]) -> io::Result<Routing> {
    let mut routing = Routing {
        routes: Vec::with_capacity(addrs.len()),
        forward_v4: switch("/proc/sys/net/ipv4/ip_forward")?,
        forward_v6: switch("/proc/sys/net/ipv6/conf/all/forwarding")?,
    };
    if addrs.is_empty() {
        return Ok(routing);
    }
    let mut nl = NlSocket::new(NETLINK_ROUTE)?;
    nl.bind_auto()?;
    nl.connect(&SocketAddr::new(0, 0))?;
    let mut buf = vec![0u8; 8192];
    for (seq, &to) in (1u32..).zip(addrs) {
        nl.send(&request(seq, to), 0)?;
        let via = loop {
            let size = nl.recv(&mut &mut buf[..], 0)?;
            if let Some(via) = answer(&buf[..size], seq)? {
                break via;
            }
        };
        routing.routes.push(Route { to, via });
    }
    Ok(routing)
}

/// A sysctl switch: "1" on.
fn switch(path: &str) -> io::Result<bool> {
    Ok(std::fs::read_to_string(path)?.trim() != "0")
}

/// `RTM_GETROUTE` for one address: a header, an `rtmsg` with the
/// family and a full-length destination, and `RTA_DST`.
fn request(seq: u32, to: IpAddr) -> Vec<u8> {
    let (family, addr): (u8, Vec<u8>) = match to {
        IpAddr::V4(a) => (libc::AF_INET as u8, a.octets().to_vec()),
        IpAddr::V6(a) => (libc::AF_INET6 as u8, a.octets().to_vec()),
    };
    let attr_len = 4 + addr.len();
    let len = 16 + 12 + attr_len;
    let mut req = Vec::with_capacity(len);
    req.extend_from_slice(&(len as u32).to_ne_bytes());
    req.extend_from_slice(&RTM_GETROUTE.to_ne_bytes());
    req.extend_from_slice(&NLM_F_REQUEST.to_ne_bytes());
    req.extend_from_slice(&seq.to_ne_bytes());
    req.extend_from_slice(&0u32.to_ne_bytes());
    // family, dst_len, src_len, tos, table, protocol, scope, type; flags.
    req.extend_from_slice(&[family, (addr.len() * 8) as u8, 0, 0, 0, 0, 0, 0]);
    req.extend_from_slice(&0u32.to_ne_bytes());
    req.extend_from_slice(&(attr_len as u16).to_ne_bytes());
    req.extend_from_slice(&RTA_DST.to_ne_bytes());
    req.extend_from_slice(&addr);
    req
}

/// The route in one datagram of answers to request `seq`, if it holds it.
/// Pure: the kernel's bytes are checked as any input is.
fn answer(datagram: &[u8], seq: u32) -> io::Result<Option<RouteTo>> {
    for m in super::netlink::messages(datagram)? {
        if m.seq != seq {
            continue;
        }
        match m.kind {
            NLMSG_ERROR => {
                let word = super::netlink::error(m.payload)
                    .map_or_else(|| "no route in the answer".to_string(), |e| e.to_string());
                return Ok(Some(RouteTo::Nowhere(word.into())));
            }
            RTM_NEWROUTE => {
                return route(m.payload)
                    .map(Some)
                    .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "a short route"));
            }
            _ => {}
        }
    }
    Ok(None)
}

/// One `RTM_NEWROUTE`: its type, and for a unicast route the interface
/// (`RTA_OIF`) it leaves by.
fn route(payload: &[u8]) -> Option<RouteTo> {
    let kind = *payload.get(7)?;
    let mut attrs = payload.get(12..)?;
    let mut oif = None;
    while attrs.len() >= 4 {
        let len = u16::from_ne_bytes([attrs[0], attrs[1]]) as usize;
        let ty = u16::from_ne_bytes([attrs[2], attrs[3]]);
        if len < 4 || len > attrs.len() {
            return None;
        }
        if ty == RTA_OIF && len >= 8 {
            oif = Some(u32::from_ne_bytes(attrs[4..8].try_into().ok()?));
        }
        attrs = attrs.get(len.next_multiple_of(4)..).unwrap_or_default();
    }
    Some(match (kind, oif) {
        (RTN_LOCAL, _) => RouteTo::Local,
        (RTN_UNICAST, Some(ifindex)) => RouteTo::Out {
            ifname: ifname(ifindex),
            ifindex,
        },
        (RTN_UNICAST, None) => RouteTo::Nowhere("a route without an interface".into()),
        (6, _) => RouteTo::Nowhere("a blackhole route".into()),
        (7, _) => RouteTo::Nowhere("an unreachable route".into()),
        (8, _) => RouteTo::Nowhere("a prohibit route".into()),
        (other, _) => RouteTo::Nowhere(format!("a route of type {other}").into()),
    })
}

/// An interface's name in the calling thread's namespace; its index if it
/// went meanwhile.
pub fn ifname(index: u32) -> Arc<str> {
    let mut buf = [0u8; libc::IF_NAMESIZE];
    // SAFETY: the buffer holds IF_NAMESIZE bytes, as if_indextoname asks.
    let name = unsafe { libc::if_indextoname(index, buf.as_mut_ptr().cast()) };
    if name.is_null() {
        return format!("if{index}").into();
    }
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    String::from_utf8_lossy(&buf[..end]).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_kernel_routes_a_loopback_address_here() {
        let local: IpAddr = "127.0.0.1".parse().expect("ip");
        let routing = read_here(&[local]).expect("route lookup");
        assert_eq!(routing.route(local), Some(&RouteTo::Local));
    }

    #[test]
    fn a_short_or_overlong_answer_is_an_error_not_a_panic() {
        let mut msg = vec![0u8; 16];
        msg[0..4].copy_from_slice(&64u32.to_ne_bytes());
        assert!(answer(&msg, 1).is_err());
        let mut short = vec![0u8; 20];
        short[0..4].copy_from_slice(&20u32.to_ne_bytes());
        short[4..6].copy_from_slice(&RTM_NEWROUTE.to_ne_bytes());
        short[8..12].copy_from_slice(&1u32.to_ne_bytes());
        assert!(answer(&short, 1).is_err());
        // Another request's answer is not this one's.
        assert_eq!(answer(&short, 2).expect("skipped"), None);
    }
}
