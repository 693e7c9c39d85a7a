//! The fallback when netlink is refused: `/proc/<pid>/net/{tcp,tcp6,udp,udp6}`.

use super::*;

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
            // /proc/net says neither.
            v6only: None,
            bound_if: 0,
        });
    }
    Ok(out)
}

/// `0100007F:1F90` (IPv4) or 32 hex digits `:port` (IPv6). The kernel prints
/// each 32-bit word of the address as a native-endian integer.
pub(super) fn parse_endpoint(field: &str, family: Family) -> Option<(IpAddr, u16)> {
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
