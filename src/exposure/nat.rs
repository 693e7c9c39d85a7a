//! DNAT: where a rule rewrites a new connection's destination (Docker's
//! published ports, a port redirected to a VM), as nftables' `nat`
//! expression or iptables' `DNAT` target says it. The evaluator follows
//! the rewritten packet to the hook its route leads to; discovery reads
//! the route to each address found here ([`destinations`]).

use std::collections::HashMap;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::eval::{RuleRef, word};
use super::ruleset::*;

/// A rewritten destination: the address (`None`: unchanged) and port
/// (`None`: unchanged).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rewrite {
    pub addr: Option<IpAddr>,
    pub port: Option<u16>,
}

/// A DNAT a path met: where to, and by which rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dnat {
    /// `None`: the address stays (a wildcard socket's, one of ours).
    pub addr: Option<IpAddr>,
    /// `None`: the port stays.
    pub port: Option<u16>,
    /// Whether the address is another host's (or namespace's): forwarded,
    /// not delivered here. Set once the route is known.
    pub forwarded: bool,
    pub by: Option<RuleRef>,
}

impl fmt::Display for Dnat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let verb = if self.forwarded {
            "forwarded to"
        } else {
            "rewritten to"
        };
        match (self.addr, self.port) {
            (Some(IpAddr::V4(a)), Some(p)) => write!(f, "{verb} {a}:{p}")?,
            (Some(IpAddr::V6(a)), Some(p)) => write!(f, "{verb} [{a}]:{p}")?,
            (Some(a), None) => write!(f, "{verb} {a}, same port")?,
            (None, Some(p)) => write!(f, "{verb} port {p}")?,
            (None, None) => write!(f, "{verb} the same address and port")?,
        }
        match &self.by {
            Some(by) => write!(f, " by {by}"),
            None => Ok(()),
        }
    }
}

/// `NF_NAT_RANGE_MAP_IPS`, `NF_NAT_RANGE_PROTO_SPECIFIED`.
const MAP_IPS: u32 = 1;
const PROTO_SPECIFIED: u32 = 2;

/// The destination an iptables `DNAT` target rewrites to, from its
/// xtables structure (include/uapi/linux/netfilter/nf_nat.h, host byte
/// order but for addresses and ports): revision 0 holds a
/// `nf_nat_ipv4_multi_range_compat`, 1 an `nf_nat_range`, 2 an
/// `nf_nat_range2`. A range of addresses or ports (load balancing) is not
/// one destination: undecided.
pub fn xt_dnat(rev: u32, info: &[u8], ipv4: bool) -> Result<Rewrite, String> {
    let short = || "iptables target DNAT: a structure too short".to_string();
    let u32_at = |at: usize| -> Option<u32> {
        Some(u32::from_ne_bytes(info.get(at..at + 4)?.try_into().ok()?))
    };
    let port_at = |at: usize| -> Option<u16> {
        Some(u16::from_be_bytes(info.get(at..at + 2)?.try_into().ok()?))
    };
    let (flags, min, max, pmin, pmax) = match rev {
        0 => {
            // u32 rangesize; then one range: u32 flags; be32 min_ip,
            // max_ip; be16 min port, max port.
            if u32_at(0).ok_or_else(short)? != 1 {
                return Err("iptables target DNAT with several ranges".into());
            }
            let addr = |at: usize| -> Option<IpAddr> {
                let b: [u8; 4] = info.get(at..at + 4)?.try_into().ok()?;
                Some(IpAddr::V4(Ipv4Addr::from(b)))
            };
            (
                u32_at(4).ok_or_else(short)?,
                addr(8).ok_or_else(short)?,
                addr(12).ok_or_else(short)?,
                port_at(16).ok_or_else(short)?,
                port_at(18).ok_or_else(short)?,
            )
        }
        1 | 2 => {
            // u32 flags; union nf_inet_addr min, max (16 bytes each);
            // be16 min, max port (2: then the base port).
            let addr = |at: usize| -> Option<IpAddr> {
                if ipv4 {
                    let b: [u8; 4] = info.get(at..at + 4)?.try_into().ok()?;
                    Some(IpAddr::V4(Ipv4Addr::from(b)))
                } else {
                    let b: [u8; 16] = info.get(at..at + 16)?.try_into().ok()?;
                    Some(IpAddr::V6(Ipv6Addr::from(b)))
                }
            };
            (
                u32_at(0).ok_or_else(short)?,
                addr(4).ok_or_else(short)?,
                addr(20).ok_or_else(short)?,
                port_at(36).ok_or_else(short)?,
                port_at(38).ok_or_else(short)?,
            )
        }
        _ => return Err(format!("iptables target DNAT revision {rev}")),
    };
    if flags & !(MAP_IPS | PROTO_SPECIFIED) != 0 {
        return Err("iptables target DNAT with random, persistent or offset mapping".into());
    }
    let addr = if flags & MAP_IPS != 0 {
        if min != max {
            return Err("iptables target DNAT to a range of addresses".into());
        }
        Some(min)
    } else {
        None
    };
    let port = if flags & PROTO_SPECIFIED != 0 {
        if pmin != pmax {
            return Err("iptables target DNAT to a range of ports".into());
        }
        Some(pmin)
    } else {
        None
    };
    Ok(Rewrite { addr, port })
}

/// Every address a DNAT of the ruleset may rewrite to: what discovery
/// reads a route for. Found as the evaluator will meet them: an
/// immediate loaded into the rule's address register, each element of a
/// map looked up into it, or an iptables `DNAT` target's address.
pub fn destinations(ruleset: &Ruleset) -> Vec<IpAddr> {
    let mut out = Vec::new();
    for table in &ruleset.tables {
        for rule in table.chains.iter().flat_map(|c| &c.rules) {
            // What each register word was last loaded with: fixed bytes,
            // or the data of a map's elements (from the word it starts at).
            let mut words: HashMap<usize, Vec<Vec<u8>>> = HashMap::new();
            for e in &rule.exprs {
                match e {
                    Expr::Immediate {
                        dreg,
                        data: Data::Value(v),
                    } => load(&mut words, *dreg, std::slice::from_ref(v)),
                    Expr::Lookup {
                        set, dreg: Some(d), ..
                    } if *d != 0 => {
                        let data: Vec<Vec<u8>> = table
                            .set(set)
                            .map(|s| {
                                s.elements
                                    .iter()
                                    .filter_map(|e| match &e.data {
                                        Some(Data::Value(v)) => Some(v.clone()),
                                        _ => None,
                                    })
                                    .collect()
                            })
                            .unwrap_or_default();
                        load(&mut words, *d, &data);
                    }
                    Expr::Nat {
                        dnat: true,
                        family,
                        addr_min: Some(r),
                        ..
                    } => {
                        let Some(w) = word(*r) else { continue };
                        for bytes in words.get(&w).into_iter().flatten() {
                            if let Some(a) = address(*family == 2, bytes) {
                                out.push(a);
                            }
                        }
                    }
                    Expr::Target { name, rev, info } if &**name == "DNAT" => {
                        let ipv4 = table.family != TableFamily::Ip6;
                        if let Ok(Rewrite { addr: Some(a), .. }) = xt_dnat(*rev, info, ipv4) {
                            out.push(a);
                        }
                    }
                    _ => {}
                }
            }
        }
    }
    out.sort();
    out.dedup();
    out
}

/// Records values loaded at register `reg`: each word it covers holds the
/// values' bytes from that word on.
fn load(words: &mut HashMap<usize, Vec<Vec<u8>>>, reg: u32, values: &[Vec<u8>]) {
    let Some(start) = word(reg) else { return };
    let longest = values.iter().map(Vec::len).max().unwrap_or(4);
    for i in 0..longest.div_ceil(4) {
        let at: Vec<Vec<u8>> = values
            .iter()
            .filter_map(|v| v.get(i * 4..).map(<[u8]>::to_vec))
            .collect();
        words.insert(start + i, at);
    }
}

/// An address from a register's leading bytes.
pub fn address(ipv4: bool, bytes: &[u8]) -> Option<IpAddr> {
    if ipv4 {
        let b: [u8; 4] = bytes.get(..4)?.try_into().ok()?;
        Some(IpAddr::V4(Ipv4Addr::from(b)))
    } else {
        let b: [u8; 16] = bytes.get(..16)?.try_into().ok()?;
        Some(IpAddr::V6(Ipv6Addr::from(b)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn range2(flags: u32, min: [u8; 4], max: [u8; 4], pmin: u16, pmax: u16) -> Vec<u8> {
        let mut info = vec![0u8; 44];
        info[0..4].copy_from_slice(&flags.to_ne_bytes());
        info[4..8].copy_from_slice(&min);
        info[20..24].copy_from_slice(&max);
        info[36..38].copy_from_slice(&pmin.to_be_bytes());
        info[38..40].copy_from_slice(&pmax.to_be_bytes());
        info
    }

    #[test]
    fn an_iptables_dnat_target_names_its_one_destination_in_every_revision() {
        let one = range2(
            MAP_IPS | PROTO_SPECIFIED,
            [172, 30, 0, 2],
            [172, 30, 0, 2],
            80,
            80,
        );
        let want = Rewrite {
            addr: Some("172.30.0.2".parse().expect("ip")),
            port: Some(80),
        };
        assert_eq!(xt_dnat(2, &one, true), Ok(want));
        assert_eq!(xt_dnat(1, &one[..40], true), Ok(want));
        let mut v0 = vec![0u8; 20];
        v0[0..4].copy_from_slice(&1u32.to_ne_bytes());
        v0[4..8].copy_from_slice(&(MAP_IPS | PROTO_SPECIFIED).to_ne_bytes());
        v0[8..12].copy_from_slice(&[172, 30, 0, 2]);
        v0[12..16].copy_from_slice(&[172, 30, 0, 2]);
        v0[16..18].copy_from_slice(&80u16.to_be_bytes());
        v0[18..20].copy_from_slice(&80u16.to_be_bytes());
        assert_eq!(xt_dnat(0, &v0, true), Ok(want));
        // Only the address: the port stays.
        let addr_only = range2(MAP_IPS, [10, 0, 0, 9], [10, 0, 0, 9], 0, 0);
        assert_eq!(
            xt_dnat(2, &addr_only, true).map(|r| r.port),
            Ok(None::<u16>)
        );
    }

    #[test]
    fn a_dnat_that_balances_or_randomises_is_not_one_destination() {
        let spread = range2(MAP_IPS, [10, 0, 0, 1], [10, 0, 0, 9], 0, 0);
        assert!(xt_dnat(2, &spread, true).is_err());
        let ports = range2(PROTO_SPECIFIED, [0; 4], [0; 4], 8000, 8009);
        assert!(xt_dnat(2, &ports, true).is_err());
        let random = range2(MAP_IPS | 4, [10, 0, 0, 1], [10, 0, 0, 1], 0, 0);
        assert!(xt_dnat(2, &random, true).is_err());
        assert!(xt_dnat(2, &[0; 12], true).is_err());
        assert!(xt_dnat(9, &[0; 44], true).is_err());
    }

    #[test]
    fn the_destinations_are_found_in_immediates_maps_and_targets() {
        let nat = |addr_min| Expr::Nat {
            dnat: true,
            family: 2,
            addr_min: Some(addr_min),
            addr_max: None,
            proto_min: None,
            proto_max: None,
        };
        let rules = vec![
            Rule {
                handle: 1,
                exprs: vec![
                    Expr::Immediate {
                        dreg: 1,
                        data: Data::Value(vec![172, 30, 0, 2]),
                    },
                    nat(1),
                ],
            },
            Rule {
                handle: 2,
                exprs: vec![
                    Expr::Lookup {
                        set: "fwd".into(),
                        sreg: 1,
                        dreg: Some(8),
                        invert: false,
                    },
                    nat(8),
                ],
            },
            Rule {
                handle: 3,
                exprs: vec![Expr::Target {
                    name: "DNAT".into(),
                    rev: 2,
                    info: range2(MAP_IPS, [10, 1, 1, 1], [10, 1, 1, 1], 0, 0),
                }],
            },
        ];
        let map = Set {
            name: "fwd".into(),
            flags: Set::MAP,
            key_len: 2,
            elements: vec![Element {
                key: 8080u16.to_be_bytes().to_vec(),
                key_end: None,
                data: Some(Data::Value(vec![192, 168, 9, 9, 0, 80, 0, 0])),
            }],
        };
        let ruleset = Ruleset {
            generation: 1,
            tables: vec![Table {
                family: TableFamily::Ip,
                name: "nat".into(),
                dormant: false,
                chains: vec![Chain {
                    name: "pre".into(),
                    handle: 1,
                    base: None,
                    rules,
                }],
                sets: vec![map],
            }],
            routing: Routing::default(),
        };
        let want: Vec<IpAddr> = ["10.1.1.1", "172.30.0.2", "192.168.9.9"]
            .iter()
            .map(|a| a.parse().expect("ip"))
            .collect();
        assert_eq!(destinations(&ruleset), want);
    }
}
