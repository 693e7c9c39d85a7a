//! iptables matches and targets as iptables-nft writes them: nftables
//! `match`/`target` expressions holding the xtables structures, decoded
//! from their bytes (the layouts of include/uapi/linux/netfilter/xt_*.h,
//! host byte order unless a field says otherwise) for the new connection
//! the evaluator runs: `conntrack`/`state` (its state is NEW), `addrtype`
//! (its destination is LOCAL unless a DNAT sent it on), `multiport`,
//! `tcp`, `udp`, `comment`; and the `DNAT` target ([`super::nat`]).
//! Anything else, or a field these do not decide, is undecided.

use super::eval::Probe;
use crate::model::Proto;

/// What a match says of the probe.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Said {
    Yes,
    No,
    /// Not decided, and why.
    Undecided(String),
}

fn from(b: bool) -> Said {
    if b { Said::Yes } else { Said::No }
}

fn u16_at(info: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_ne_bytes(info.get(at..at + 2)?.try_into().ok()?))
}

fn u32_at(info: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_ne_bytes(info.get(at..at + 4)?.try_into().ok()?))
}

/// The conntrack state bit of a NEW connection (`XT_CONNTRACK_STATE_BIT`,
/// `XT_STATE_BIT` of IP_CT_NEW).
const STATE_NEW: u32 = 1 << 3;

/// Whether match `name` holds for `probe`, whose destination is one of
/// the namespace's addresses when `dest_local`.
pub fn decide(name: &str, rev: u32, info: &[u8], probe: &Probe, dest_local: bool) -> Said {
    let short = || Said::Undecided(format!("iptables match {name}: a structure too short"));
    match (name, rev) {
        ("comment", _) => Said::Yes,
        ("conntrack", 2 | 3) => {
            // struct xt_conntrack_mtinfo2/3: eight 16-byte addresses, two
            // u32 expiries, l4proto, four ports, then the flags and masks.
            let (Some(flags), Some(invert), Some(states)) =
                (u16_at(info, 146), u16_at(info, 148), u16_at(info, 150))
            else {
                return short();
            };
            const STATE: u16 = 1 << 0;
            const STATE_ALIAS: u16 = 1 << 13;
            if flags & !(STATE | STATE_ALIAS) != 0 {
                return Said::Undecided("iptables match conntrack on more than the state".into());
            }
            if flags & STATE == 0 {
                return Said::Yes;
            }
            from((u32::from(states) & STATE_NEW != 0) != (invert & STATE != 0))
        }
        ("state", 0) => match u32_at(info, 0) {
            Some(mask) => from(mask & STATE_NEW != 0),
            None => short(),
        },
        ("addrtype", 0 | 1) => {
            // v0: u16 source, dest; u32 invert_source, invert_dest.
            // v1: u16 source, dest; u32 flags.
            let (Some(source), Some(dest)) = (u16_at(info, 0), u16_at(info, 2)) else {
                return short();
            };
            let (invert_source, invert_dest, iface) = if rev == 0 {
                match (u32_at(info, 4), u32_at(info, 8)) {
                    (Some(s), Some(d)) => (s != 0, d != 0, false),
                    _ => return short(),
                }
            } else {
                match u32_at(info, 4) {
                    Some(f) => (f & 0x1 != 0, f & 0x2 != 0, f & 0xc != 0),
                    None => return short(),
                }
            };
            if iface {
                return Said::Undecided("iptables match addrtype limited to an interface".into());
            }
            if source != 0 || invert_source {
                return Said::Undecided("iptables match addrtype of the source".into());
            }
            if dest == 0 {
                return Said::Yes;
            }
            // Ours is LOCAL; a forwarded one's, UNICAST.
            const UNICAST: u16 = 1 << 1;
            const LOCAL: u16 = 1 << 2;
            let kind = if dest_local { LOCAL } else { UNICAST };
            from((dest & kind != 0) != invert_dest)
        }
        ("multiport", 0 | 1) => {
            let (Some(&flags), Some(&count)) = (info.first(), info.get(1)) else {
                return short();
            };
            let count = usize::from(count).min(15);
            let ports: Vec<u16> = (0..count).filter_map(|i| u16_at(info, 2 + 2 * i)).collect();
            if ports.len() != count {
                return short();
            }
            let (ranges, invert) = if rev == 1 {
                match (info.get(32..32 + 15), info.get(47)) {
                    (Some(p), Some(&inv)) => (p.to_vec(), inv != 0),
                    _ => return short(),
                }
            } else {
                (vec![0; 15], false)
            };
            let mut hit = false;
            let mut i = 0;
            while i < count {
                if ranges[i] != 0 && i + 1 < count {
                    hit |= (ports[i]..=ports[i + 1]).contains(&probe.dport);
                    i += 2;
                } else {
                    hit |= ports[i] == probe.dport;
                    i += 1;
                }
            }
            match flags {
                // Destination ports.
                1 => from(hit != invert),
                // Either: a destination hit decides it.
                2 if hit && !invert => Said::Yes,
                _ => Said::Undecided("iptables match multiport on the source port".into()),
            }
        }
        ("tcp" | "udp", 0) => {
            let want = if name == "tcp" {
                Proto::Tcp
            } else {
                Proto::Udp
            };
            if probe.proto != want {
                return Said::No;
            }
            // u16 spts[2], dpts[2]; tcp: u8 option, flg_mask, flg_cmp,
            // invflags; udp: u8 invflags.
            let (Some(slo), Some(shi), Some(dlo), Some(dhi)) = (
                u16_at(info, 0),
                u16_at(info, 2),
                u16_at(info, 4),
                u16_at(info, 6),
            ) else {
                return short();
            };
            let (option, mask, cmp, inv) = if name == "tcp" {
                match info.get(8..12) {
                    Some(b) => (b[0], b[1], b[2], b[3]),
                    None => return short(),
                }
            } else {
                match info.get(8) {
                    Some(&b) => (0, 0, 0, b),
                    None => return short(),
                }
            };
            if (slo, shi) != (0, u16::MAX) || inv & 0x01 != 0 || option != 0 {
                return Said::Undecided(format!(
                    "iptables match {name} on the source port or options"
                ));
            }
            let port = (dlo..=dhi).contains(&probe.dport) != (inv & 0x02 != 0);
            // A SYN: flags & mask == cmp.
            let flags = ((0x02 & mask) == cmp) != (inv & 0x04 != 0);
            from(port && flags)
        }
        _ => Said::Undecided(format!("iptables match {name}")),
    }
}

/// What an iptables target does to the probe: `Some(true)` drops it
/// (`REJECT`), `Some(false)` lets it on (logging, marking), `None`
/// undecided.
pub fn target(name: &str) -> Option<bool> {
    match name {
        "REJECT" => Some(true),
        "LOG" | "NFLOG" | "ULOG" | "AUDIT" | "TRACE" | "CONNMARK" | "MARK" | "TCPMSS" | "CT"
        | "NOTRACK" | "SNAT" | "MASQUERADE" => Some(false),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Family;

    fn probe(proto: Proto, dport: u16) -> Probe {
        Probe {
            proto,
            family: Family::Ipv4,
            daddr: None,
            dport,
        }
    }

    fn conntrack(states: u16, invert: bool) -> Vec<u8> {
        let mut info = vec![0u8; 164];
        info[146..148].copy_from_slice(&1u16.to_ne_bytes());
        info[148..150].copy_from_slice(&u16::from(invert).to_ne_bytes());
        info[150..152].copy_from_slice(&states.to_ne_bytes());
        info
    }

    #[test]
    fn a_new_connection_meets_the_matches_as_iptables_does() {
        let p = probe(Proto::Tcp, 443);
        // --ctstate RELATED,ESTABLISHED / NEW / ! NEW / INVALID
        assert_eq!(
            decide("conntrack", 3, &conntrack(0b0110, false), &p, true),
            Said::No
        );
        assert_eq!(
            decide("conntrack", 3, &conntrack(0b1000, false), &p, true),
            Said::Yes
        );
        assert_eq!(
            decide("conntrack", 3, &conntrack(0b1000, true), &p, true),
            Said::No
        );
        assert_eq!(
            decide("conntrack", 3, &conntrack(0b0001, false), &p, true),
            Said::No
        );
        assert!(matches!(
            decide("conntrack", 3, &[0; 10], &p, true),
            Said::Undecided(_)
        ));
        // --dst-type LOCAL / BROADCAST / ! LOCAL
        let addrtype = |dest: u16, flags: u32| {
            let mut i = vec![0u8; 8];
            i[2..4].copy_from_slice(&dest.to_ne_bytes());
            i[4..8].copy_from_slice(&flags.to_ne_bytes());
            i
        };
        assert_eq!(
            decide("addrtype", 1, &addrtype(1 << 2, 0), &p, true),
            Said::Yes
        );
        assert_eq!(
            decide("addrtype", 1, &addrtype(1 << 3, 0), &p, true),
            Said::No
        );
        assert_eq!(
            decide("addrtype", 1, &addrtype(1 << 2, 2), &p, true),
            Said::No
        );
        assert!(matches!(
            decide("addrtype", 1, &addrtype(1 << 2, 4), &p, true),
            Said::Undecided(_)
        ));
        // After a DNAT to another host's address: UNICAST, not LOCAL (so
        // Docker's `--dst-type LOCAL -j DOCKER` is not met twice).
        assert_eq!(
            decide("addrtype", 1, &addrtype(1 << 2, 0), &p, false),
            Said::No
        );
        assert_eq!(
            decide("addrtype", 1, &addrtype(1 << 1, 0), &p, false),
            Said::Yes
        );
        assert_eq!(
            decide("addrtype", 1, &addrtype(1 << 2, 2), &p, false),
            Said::Yes
        );
        // --dports 80,443:445 (a range), inverted
        let mut m = vec![0u8; 48];
        m[0] = 1;
        m[1] = 3;
        for (i, port) in [80u16, 443, 445].iter().enumerate() {
            m[2 + 2 * i..4 + 2 * i].copy_from_slice(&port.to_ne_bytes());
        }
        m[32 + 1] = 1;
        assert_eq!(decide("multiport", 1, &m, &p, true), Said::Yes);
        assert_eq!(
            decide("multiport", 1, &m, &probe(Proto::Tcp, 444), true),
            Said::Yes
        );
        assert_eq!(
            decide("multiport", 1, &m, &probe(Proto::Tcp, 446), true),
            Said::No
        );
        m[47] = 1;
        assert_eq!(decide("multiport", 1, &m, &p, true), Said::No);
        m[0] = 0;
        assert!(matches!(
            decide("multiport", 1, &m, &p, true),
            Said::Undecided(_)
        ));
        assert_eq!(decide("comment", 0, b"dapp_OpenSSH", &p, true), Said::Yes);
        assert!(matches!(
            decide("recent", 0, &[], &p, true),
            Said::Undecided(_)
        ));
    }
}
