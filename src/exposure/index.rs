//! Which rules can apply to a probe, found without running them: a rule
//! that requires a destination port (`tcp dport 22`, `tcp dport { 80, 443
//! }`, a verdict map on the port, a port range) before anything it does
//! applies only to probes of those ports, so a chain of 1,000 such rules
//! runs the few that can match. And probes that meet the same rules get
//! the same verdict: its key says what a verdict depends on. A DNAT
//! needs nothing more: probes that meet the same rules meet the same
//! rewrites, and the rules after one are run for the rewritten port (a
//! port kept is the probe's own, whose rules are in the key; a verdict
//! says "same port" rather than the number).

use std::collections::HashMap;
use std::net::IpAddr;

use super::eval::{CT_PROTO_DST, META_L4PROTO, Probe, l4, word};
use super::ruleset::*;
use crate::model::{Family, Proto};

/// What a rule requires of the probe, as far as its conditions before any
/// verdict or side effect say.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Needs {
    /// Reads no destination port.
    Any,
    /// One destination port.
    Port(u16),
    /// Some ports (inclusive ranges).
    Ports(Vec<(u16, u16)>),
    /// Reads the destination port in a way not summed up here.
    Opaque,
}

#[derive(Debug, Clone)]
struct RuleNeeds {
    proto: Option<u8>,
    needs: Needs,
}

/// One chain's rules by what they need.
#[derive(Debug, Default)]
struct ChainIndex {
    rules: Vec<RuleNeeds>,
    /// Rules of one port, by port.
    by_port: HashMap<u16, Vec<u32>>,
    /// Rules of several ports.
    ranges: Vec<(u16, u16, u32)>,
    /// Rules that read no port, or read it opaquely.
    rest: Vec<u32>,
}

/// The rules of a ruleset by what they need, keyed by chain (its address:
/// the ruleset is not changed while an index of it lives).
#[derive(Debug, Default)]
pub struct Index {
    chains: HashMap<usize, ChainIndex>,
}

/// What a probe's verdict depends on: probes with equal keys get the same.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Key {
    proto: Proto,
    family: Family,
    daddr: Option<IpAddr>,
    /// The port, when some rule that may apply reads it beyond one value.
    port: Option<u16>,
    /// The one-port rules that apply, by chain and position.
    rules: Vec<(usize, u32)>,
}

fn address(chain: &Chain) -> usize {
    chain as *const Chain as usize
}

impl Index {
    pub fn of(ruleset: &Ruleset) -> Index {
        let mut chains = HashMap::new();
        for table in &ruleset.tables {
            for chain in &table.chains {
                let mut ix = ChainIndex::default();
                for (i, rule) in chain.rules.iter().enumerate() {
                    let needs = needs(table, rule);
                    let i = i as u32;
                    match &needs.needs {
                        Needs::Port(p) => ix.by_port.entry(*p).or_default().push(i),
                        Needs::Ports(r) => {
                            for &(lo, hi) in r {
                                if hi - lo < 64 {
                                    for p in lo..=hi {
                                        ix.by_port.entry(p).or_default().push(i);
                                    }
                                } else {
                                    ix.ranges.push((lo, hi, i));
                                }
                            }
                        }
                        Needs::Any | Needs::Opaque => ix.rest.push(i),
                    }
                    ix.rules.push(needs);
                }
                chains.insert(address(chain), ix);
            }
        }
        Index { chains }
    }

    /// The rules of `chain` that may apply to `probe`, in order.
    pub fn rules_for(&self, chain: &Chain, probe: &Probe) -> Vec<u32> {
        let Some(ix) = self.chains.get(&address(chain)) else {
            return (0..chain.rules.len() as u32).collect();
        };
        let l4 = l4(probe.proto);
        let mut out: Vec<u32> = ix
            .rest
            .iter()
            .copied()
            .chain(ix.by_port.get(&probe.dport).into_iter().flatten().copied())
            .chain(
                ix.ranges
                    .iter()
                    .filter(|(lo, hi, _)| (*lo..=*hi).contains(&probe.dport))
                    .map(|(_, _, i)| *i),
            )
            .filter(|i| ix.rules[*i as usize].proto.is_none_or(|p| p == l4))
            .collect();
        out.sort_unstable();
        out.dedup();
        out
    }

    /// What `probe`'s verdict depends on.
    pub fn key(&self, ruleset: &Ruleset, probe: &Probe) -> Key {
        let l4 = l4(probe.proto);
        let mut port_matters = false;
        let mut rules = Vec::new();
        for chain in ruleset.tables.iter().flat_map(|t| &t.chains) {
            let Some(ix) = self.chains.get(&address(chain)) else {
                port_matters = true;
                continue;
            };
            for i in self.rules_for(chain, probe) {
                let r = &ix.rules[i as usize];
                if r.proto.is_some_and(|p| p != l4) {
                    continue;
                }
                match r.needs {
                    Needs::Any => {}
                    Needs::Port(_) => rules.push((address(chain), i)),
                    Needs::Ports(_) | Needs::Opaque => port_matters = true,
                }
            }
        }
        Key {
            proto: probe.proto,
            family: probe.family,
            daddr: probe.daddr,
            port: port_matters.then_some(probe.dport),
            rules,
        }
    }
}

/// The 32-bit words a register write covers.
fn words(reg: u32, len: usize) -> std::ops::Range<usize> {
    match word(reg) {
        Some(start) => start..start + len.div_ceil(4).max(1),
        None => 0..0,
    }
}

/// What `rule` requires, from its conditions before its first verdict or
/// side effect (conditions after a side effect are no requirement: the
/// side effect happens whether they hold or not).
fn needs(table: &Table, rule: &Rule) -> RuleNeeds {
    let mut dport: Option<usize> = None;
    let mut l4reg: Option<usize> = None;
    let mut proto: Option<u8> = None;
    let mut ports: Option<Vec<(u16, u16)>> = None;
    let mut reads = false;
    let meet = |ports: &mut Option<Vec<(u16, u16)>>, these: Vec<(u16, u16)>| {
        *ports = Some(match ports.take() {
            None => these,
            Some(before) => before
                .iter()
                .flat_map(|&(a, b)| {
                    these.iter().filter_map(move |&(c, d)| {
                        let (lo, hi) = (a.max(c), b.min(d));
                        (lo <= hi).then_some((lo, hi))
                    })
                })
                .collect(),
        });
    };
    let port_of = |d: &[u8]| (d.len() == 2).then(|| u16::from_be_bytes([d[0], d[1]]));
    for e in &rule.exprs {
        // A write that covers a tracked register ends its tracking.
        let wrote = |reg: u32, len: usize, t: &mut Option<usize>| {
            if t.is_some_and(|w| words(reg, len).contains(&w)) {
                *t = None;
            }
        };
        match e {
            Expr::Payload {
                base: PayloadBase::Transport,
                offset,
                len,
                dreg,
            } => {
                wrote(*dreg, *len as usize, &mut dport);
                wrote(*dreg, *len as usize, &mut l4reg);
                if *offset == 2 && *len == 2 {
                    dport = words(*dreg, 2).next();
                } else if *offset < 4 && offset + len > 2 {
                    reads = true;
                }
            }
            Expr::Payload { dreg, len, .. } => {
                wrote(*dreg, *len as usize, &mut dport);
                wrote(*dreg, *len as usize, &mut l4reg);
            }
            Expr::Meta { key, dreg } => {
                wrote(*dreg, 16, &mut dport);
                wrote(*dreg, 16, &mut l4reg);
                if *key == META_L4PROTO {
                    l4reg = words(*dreg, 1).next();
                }
            }
            Expr::Ct { key, dreg } => {
                if *key == CT_PROTO_DST {
                    reads = true;
                }
                wrote(*dreg, 16, &mut dport);
                wrote(*dreg, 16, &mut l4reg);
            }
            Expr::Fib { dreg, .. } => {
                wrote(*dreg, 16, &mut dport);
                wrote(*dreg, 16, &mut l4reg);
            }
            Expr::Bitwise { dreg, len, .. } => {
                wrote(*dreg, *len as usize, &mut dport);
                wrote(*dreg, *len as usize, &mut l4reg);
            }
            Expr::Immediate { dreg: 0, .. } => break,
            Expr::Immediate { dreg, data } => {
                let len = match data {
                    Data::Value(v) => v.len(),
                    Data::Verdict(_) => 16,
                };
                wrote(*dreg, len, &mut dport);
                wrote(*dreg, len, &mut l4reg);
            }
            Expr::Cmp {
                sreg,
                op: CmpOp::Eq,
                data,
            } => {
                let w = words(*sreg, data.len()).next();
                if w.is_some() && w == dport {
                    match port_of(data) {
                        Some(p) => meet(&mut ports, vec![(p, p)]),
                        None => reads = true,
                    }
                } else if w.is_some() && w == l4reg && data.len() == 1 {
                    proto = Some(data[0]);
                }
            }
            Expr::Cmp { sreg, data, .. } => {
                if words(*sreg, data.len()).next() == dport && dport.is_some() {
                    reads = true;
                }
            }
            Expr::Range {
                sreg,
                negate,
                from,
                to,
            } => {
                if words(*sreg, from.len()).next() == dport && dport.is_some() {
                    match (*negate, port_of(from), port_of(to)) {
                        (false, Some(lo), Some(hi)) => meet(&mut ports, vec![(lo, hi)]),
                        _ => reads = true,
                    }
                }
            }
            Expr::Lookup {
                set,
                sreg,
                dreg,
                invert,
            } => {
                let on_port = words(*sreg, 2).next() == dport && dport.is_some();
                let set = table.set(set);
                match set {
                    Some(s) if on_port && !invert && s.key_len == 2 => {
                        let these: Option<Vec<(u16, u16)>> = s
                            .elements
                            .iter()
                            .map(|e| {
                                let lo = port_of(&e.key)?;
                                let hi = match &e.key_end {
                                    Some(end) => port_of(end)?,
                                    None => lo,
                                };
                                Some((lo, hi))
                            })
                            .collect();
                        match these {
                            Some(these) => meet(&mut ports, these),
                            None => reads = true,
                        }
                    }
                    _ if on_port => reads = true,
                    _ => {}
                }
                match dreg {
                    // A verdict map: the rule ends here if the key is in it.
                    Some(0) => break,
                    Some(d) => {
                        wrote(*d, 16, &mut dport);
                        wrote(*d, 16, &mut l4reg);
                    }
                    None => {}
                }
            }
            // Side effects and verdicts: what follows is no requirement.
            Expr::Reject
            | Expr::Nat { .. }
            | Expr::MetaSet { .. }
            | Expr::CtSet
            | Expr::PayloadSet
            | Expr::Target { .. }
            | Expr::Unknown(_)
            | Expr::Match { .. } => break,
            Expr::Pass(_) => {}
        }
    }
    // The rest of the rule may read the port again.
    if rule.exprs.iter().any(|e| match e {
        Expr::Payload {
            base: PayloadBase::Transport,
            offset,
            len,
            ..
        } => *offset < 4 && offset + len > 2,
        Expr::Ct { key, .. } => *key == CT_PROTO_DST,
        _ => false,
    }) && ports.is_none()
    {
        reads = true;
    }
    let needs = match (ports, reads) {
        (_, true) => Needs::Opaque,
        (None, false) => Needs::Any,
        (Some(p), false) if p.len() == 1 && p[0].0 == p[0].1 => Needs::Port(p[0].0),
        (Some(p), false) => Needs::Ports(p),
    };
    RuleNeeds { proto, needs }
}

#[cfg(test)]
mod tests {
    use super::super::eval::{Evaluator, evaluate_unindexed};
    use super::*;
    use std::sync::Arc;

    /// A small deterministic generator (xorshift).
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
        fn below(&mut self, n: u64) -> u64 {
            self.next() % n
        }
    }

    fn imm(v: Verdict) -> Expr {
        Expr::Immediate {
            dreg: 0,
            data: Data::Verdict(v),
        }
    }

    fn l4(proto: u8) -> Vec<Expr> {
        vec![
            Expr::Meta { key: 16, dreg: 1 },
            Expr::Cmp {
                sreg: 1,
                op: CmpOp::Eq,
                data: vec![proto],
            },
        ]
    }

    fn dport_load() -> Expr {
        Expr::Payload {
            base: PayloadBase::Transport,
            offset: 2,
            len: 2,
            dreg: 1,
        }
    }

    fn port_cmp(op: CmpOp, p: u16) -> Expr {
        Expr::Cmp {
            sreg: 1,
            op,
            data: p.to_be_bytes().to_vec(),
        }
    }

    /// One rule from a vocabulary of what rulesets do with ports.
    fn rule(rng: &mut Rng, handle: u64, chains: &[&str]) -> Rule {
        let port = 1 + rng.below(12) as u16;
        let mut exprs = Vec::new();
        if rng.below(3) == 0 {
            exprs.extend(l4(if rng.below(2) == 0 { 6 } else { 17 }));
        }
        match rng.below(9) {
            0 => {}
            1 | 2 => exprs.extend([dport_load(), port_cmp(CmpOp::Eq, port)]),
            3 => exprs.extend([dport_load(), port_cmp(CmpOp::Neq, port)]),
            4 => exprs.extend([dport_load(), port_cmp(CmpOp::Lt, port)]),
            5 => exprs.extend([
                dport_load(),
                Expr::Range {
                    sreg: 1,
                    negate: rng.below(3) == 0,
                    from: port.to_be_bytes().to_vec(),
                    to: (port + 3).to_be_bytes().to_vec(),
                },
            ]),
            6 => exprs.extend([
                dport_load(),
                Expr::Lookup {
                    set: "ports".into(),
                    sreg: 1,
                    dreg: None,
                    invert: rng.below(3) == 0,
                },
            ]),
            7 => exprs.extend([
                dport_load(),
                Expr::Lookup {
                    set: "vmap".into(),
                    sreg: 1,
                    dreg: Some(0),
                    invert: false,
                },
            ]),
            _ => exprs.extend([
                Expr::MetaSet { key: 3 },
                dport_load(),
                port_cmp(CmpOp::Eq, port),
            ]),
        }
        match rng.below(4) {
            0 => exprs.extend([
                Expr::Payload {
                    base: PayloadBase::Network,
                    offset: 12,
                    len: 4,
                    dreg: 1,
                },
                Expr::Cmp {
                    sreg: 1,
                    op: CmpOp::Eq,
                    data: vec![10, 0, 0, rng.below(4) as u8],
                },
            ]),
            1 => exprs.extend([
                Expr::Meta { key: 3, dreg: 1 },
                Expr::Cmp {
                    sreg: 1,
                    op: CmpOp::Eq,
                    data: 0u32.to_ne_bytes().to_vec(),
                },
            ]),
            _ => {}
        }
        let kinds = if chains.is_empty() { 5 } else { 7 };
        let verdict = match rng.below(kinds) {
            0 | 1 => Verdict::Accept,
            2 | 3 => Verdict::Drop,
            4 => Verdict::Return,
            5 => Verdict::Jump(chains[rng.below(chains.len() as u64) as usize].into()),
            _ => Verdict::Goto(chains[rng.below(chains.len() as u64) as usize].into()),
        };
        exprs.push(imm(verdict));
        Rule { handle, exprs }
    }

    fn ruleset(rng: &mut Rng) -> Ruleset {
        let mut handle = 0;
        let mut next = || {
            handle += 1;
            handle
        };
        let mut chain = |name: &str, base: bool, rng: &mut Rng, callees: &[&str]| Chain {
            name: name.into(),
            handle: 0,
            base: base.then(|| BaseHook {
                hook: Hook::Input,
                priority: 0,
                kind: "filter".into(),
                policy_drop: rng.below(2) == 0,
            }),
            rules: (0..rng.below(8))
                .map(|_| rule(rng, next(), callees))
                .collect(),
        };
        // A chain jumps only to the ones after it: no loops.
        let leaf = chain("leaf", false, rng, &[]);
        let mid = chain("mid", false, rng, &["leaf"]);
        let input = chain("input", true, rng, &["mid", "leaf"]);
        let mut forward = chain("forward", true, rng, &["mid", "leaf"]);
        if let Some(b) = forward.base.as_mut() {
            b.hook = Hook::Forward;
        }
        // Some ports rewritten: to a port of ours, or to an address
        // routed out (forward), or to one with no route read.
        // From one port or from any; to a new port or the same one.
        let dnat = |to: [u8; 4], port: Option<u16>, from: Option<u16>, handle: u64| {
            let mut exprs = Vec::new();
            if let Some(from) = from {
                exprs.extend([dport_load(), port_cmp(CmpOp::Eq, from)]);
            }
            exprs.push(Expr::Immediate {
                dreg: 1,
                data: Data::Value(to.to_vec()),
            });
            if let Some(port) = port {
                exprs.push(Expr::Immediate {
                    dreg: 2,
                    data: Data::Value(port.to_be_bytes().to_vec()),
                });
            }
            exprs.push(Expr::Nat {
                dnat: true,
                family: 2,
                addr_min: Some(1),
                addr_max: None,
                proto_min: port.map(|_| 2),
                proto_max: None,
            });
            Rule { handle, exprs }
        };
        let mut pre_rules = Vec::new();
        for _ in 0..rng.below(4) {
            let from = (rng.below(4) != 0).then(|| 1 + rng.below(20) as u16);
            let port = (rng.below(3) != 0).then(|| 1 + rng.below(12) as u16);
            let to = [[10, 9, 0, 1], [10, 9, 0, 2], [10, 9, 0, 3]][rng.below(3) as usize];
            pre_rules.push(dnat(to, port, from, next()));
        }
        let pre = Chain {
            name: "pre".into(),
            handle: 0,
            base: Some(BaseHook {
                hook: Hook::Prerouting,
                priority: -100,
                kind: "nat".into(),
                policy_drop: false,
            }),
            rules: pre_rules,
        };
        let set = |name: &str, data: bool, rng: &mut Rng| Set {
            name: name.into(),
            flags: if data { Set::MAP } else { Set::INTERVAL },
            key_len: 2,
            elements: (0..3)
                .map(|_| {
                    let lo = 1 + rng.below(12) as u16;
                    Element {
                        key: lo.to_be_bytes().to_vec(),
                        key_end: (!data).then(|| (lo + rng.below(3) as u16).to_be_bytes().to_vec()),
                        data: data.then(|| {
                            Data::Verdict(if rng.below(2) == 0 {
                                Verdict::Accept
                            } else {
                                Verdict::Drop
                            })
                        }),
                    }
                })
                .collect(),
        };
        let sets = vec![set("ports", false, rng), set("vmap", true, rng)];
        Ruleset {
            generation: 1,
            tables: vec![Table {
                family: TableFamily::Inet,
                name: "t".into(),
                dormant: false,
                chains: vec![input, mid, leaf, forward, pre],
                sets,
            }],
            routing: Routing {
                routes: vec![
                    Route {
                        to: "10.9.0.1".parse().expect("ip"),
                        via: RouteTo::Local,
                    },
                    Route {
                        to: "10.9.0.2".parse().expect("ip"),
                        via: RouteTo::Out {
                            ifname: "br0".into(),
                            ifindex: 5,
                        },
                    },
                ],
                forward_v4: true,
                forward_v6: false,
            },
        }
    }

    #[test]
    fn indexed_and_shared_verdicts_are_those_of_running_every_rule() {
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        let mut shared = 0;
        // Verdicts through a DNAT: forwarded, delivered here, unrouted.
        let mut dnat = [0; 3];
        for _ in 0..300 {
            let rules = Arc::new(ruleset(&mut rng));
            let mut ev = Evaluator::new(Arc::clone(&rules));
            let mut probes = 0;
            for proto in [Proto::Tcp, Proto::Udp] {
                for dport in 1..=20 {
                    let probe = Probe {
                        proto,
                        family: Family::Ipv4,
                        daddr: None,
                        dport,
                    };
                    let want = evaluate_unindexed(&rules, &probe);
                    assert_eq!(ev.evaluate(&probe), want, "{probe:?} in {rules:#?}");
                    probes += 1;
                    let said = want.detail().unwrap_or_default();
                    for (i, what) in ["forwarded to", "rewritten to", "route was not read"]
                        .iter()
                        .enumerate()
                    {
                        if said.contains(what) {
                            dnat[i] += 1;
                        }
                    }
                }
            }
            shared += probes - ev.made();
        }
        assert!(shared > 0, "some probes share a verdict");
        assert!(dnat.iter().all(|n| *n > 0), "DNAT paths met: {dnat:?}");
    }
}
