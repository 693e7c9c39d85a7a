//! Whether a ruleset lets a new connection from outside reach a socket.
//!
//! A probe is a TCP SYN or a UDP datagram from an outside address to the
//! socket's address and port, as a packet of conntrack state `new`. It is
//! run through every base chain on the hooks such a packet passes
//! (ingress, prerouting, then input — or forward, when a DNAT rewrote its
//! destination to an address the namespace routes elsewhere: Docker's
//! published ports), in priority order, as the kernel runs them:
//! expressions load registers and compare them; `accept` ends a base
//! chain only, `drop` and `reject` end the packet; jumps, gotos and
//! returns; sets, maps and verdict maps. After a DNAT, the packet goes on
//! with its new destination, and the other nat chains of prerouting are
//! passed by (its translation is bound).
//!
//! What the packet does not fix — its source address and port, the
//! interface it came in on, and for a wildcard socket the local address
//! it was sent to — is kept symbolic: a rule on it splits the packets into
//! those it matches and the rest, and both paths go on. So the verdict is
//! `open` (every path accepted), `blocked` (none), `restricted` (some: the
//! accepted paths say which sources), or `unknown` when any path meets a
//! rule the evaluator cannot decide (a rate limit, a DNAT to a range, an
//! expression it does not know): never a guess.

use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;

use std::collections::HashMap;

use super::index::{Index, Key as IndexKey};
use super::nat::{Dnat, Rewrite};
use super::ranges::{Kind, Ranges, be, max};
use super::ruleset::*;
use crate::model::{Family, Proto};

/// A new connection from outside to a socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Probe {
    pub proto: Proto,
    pub family: Family,
    /// `None`: a wildcard socket, reached at any local address.
    pub daddr: Option<IpAddr>,
    pub dport: u16,
}

impl Probe {
    /// Bound to loopback: no outside host can address it.
    pub fn is_local(&self) -> bool {
        self.daddr
            .is_some_and(|a| a.is_loopback() || mapped_loopback(a))
    }
}

/// A rule, or a chain's policy when `handle` is `None`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleRef {
    pub family: TableFamily,
    pub table: Arc<str>,
    pub chain: Arc<str>,
    pub handle: Option<u64>,
}

impl fmt::Display for RuleRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {} {}", self.family.as_str(), self.table, self.chain)?;
        match self.handle {
            Some(h) => write!(f, " handle {h}"),
            None => write!(f, " policy drop"),
        }
    }
}

/// Whether outside hosts can reach a socket, by the ruleset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Exposure {
    /// Any outside source is admitted; with where a DNAT sends them, if
    /// one does (`forwarded to 172.17.0.2:80 by ip nat DOCKER handle 9`).
    Open { forwarded: Option<String> },
    /// Only some: which (`from 10.0.0.0/8`, `via eth1`).
    Restricted { admitted: Vec<String> },
    /// No new connection gets in: the rule (or policy) that drops them,
    /// and the DNAT their path met before, if one did.
    Blocked {
        by: RuleRef,
        forwarded: Option<String>,
    },
    /// Bound to loopback: no outside host can address it.
    Local,
    /// Not decided, and why.
    Unknown { reason: String },
}

impl Exposure {
    /// The one word (`open`, `restricted`, `blocked`, `local`, `unknown`).
    pub fn word(&self) -> &'static str {
        match self {
            Exposure::Open { .. } => "open",
            Exposure::Restricted { .. } => "restricted",
            Exposure::Blocked { .. } => "blocked",
            Exposure::Local => "local",
            Exposure::Unknown { .. } => "unknown",
        }
    }

    /// The rule (or policy) that blocked it.
    pub fn rule(&self) -> Option<&RuleRef> {
        match self {
            Exposure::Blocked { by, .. } => Some(by),
            _ => None,
        }
    }

    /// What decided it, in words: the admitted sources, the deciding
    /// rule, or the reason it is unknown.
    pub fn detail(&self) -> Option<String> {
        match self {
            Exposure::Open { forwarded } => forwarded.clone(),
            Exposure::Local => None,
            Exposure::Restricted { admitted } => Some(admitted.join("; ")),
            Exposure::Blocked {
                by,
                forwarded: None,
            } => Some(by.to_string()),
            Exposure::Blocked {
                by,
                forwarded: Some(f),
            } => Some(format!("{by} ({f})")),
            Exposure::Unknown { reason } => Some(reason.clone()),
        }
    }
}

/// As JSON: `{"verdict": "blocked", "detail": "…", "rule": {…} or null}`.
impl serde::Serialize for Exposure {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let mut e = s.serialize_struct("Exposure", 3)?;
        e.serialize_field("verdict", self.word())?;
        e.serialize_field("detail", &self.detail())?;
        e.serialize_field("rule", &self.rule())?;
        e.end()
    }
}

impl serde::Serialize for RuleRef {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let mut r = s.serialize_struct("RuleRef", 4)?;
        r.serialize_field("family", self.family.as_str())?;
        r.serialize_field("table", &*self.table)?;
        r.serialize_field("chain", &*self.chain)?;
        r.serialize_field("handle", &self.handle)?;
        r.end()
    }
}

impl fmt::Display for Exposure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.detail() {
            Some(d) => write!(f, "{} ({d})", self.word()),
            None => f.write_str(self.word()),
        }
    }
}

/// The most paths one probe may take before the verdict is `unknown`.
const MAX_PATHS: usize = 4096;
/// nftables allows 16 nested jumps.
const MAX_DEPTH: usize = 32;

/// Verdicts of one ruleset for many probes: its rules indexed once, and a
/// verdict made once for all the probes that meet the same rules.
#[derive(Debug)]
pub struct Evaluator {
    ruleset: Arc<Ruleset>,
    index: Index,
    made: HashMap<IndexKey, Exposure>,
}

impl Evaluator {
    pub fn new(ruleset: Arc<Ruleset>) -> Evaluator {
        let index = Index::of(&ruleset);
        Evaluator {
            ruleset,
            index,
            made: HashMap::new(),
        }
    }

    pub fn ruleset(&self) -> &Arc<Ruleset> {
        &self.ruleset
    }

    /// Verdicts made (not shared) so far.
    pub fn made(&self) -> usize {
        self.made.len()
    }

    pub fn evaluate(&mut self, probe: &Probe) -> Exposure {
        if probe.is_local() {
            return Exposure::Local;
        }
        let key = self.index.key(&self.ruleset, probe);
        if let Some(e) = self.made.get(&key) {
            return e.clone();
        }
        let e = evaluate_indexed(&self.ruleset, &self.index, probe);
        self.made.insert(key, e.clone());
        e
    }
}

/// The verdict of running every rule of every chain: what the index must
/// not change (tested).
#[cfg(test)]
pub(super) fn evaluate_unindexed(ruleset: &Ruleset, probe: &Probe) -> Exposure {
    evaluate_indexed(ruleset, &Index::default(), probe)
}

fn evaluate_indexed(ruleset: &Ruleset, index: &Index, probe: &Probe) -> Exposure {
    if probe.is_local() {
        return Exposure::Local;
    }
    let mut hooks: Vec<(u8, i32, &Table, &Chain)> = Vec::new();
    for table in ruleset.tables.iter().filter(|t| !t.dormant) {
        let applies = match table.family {
            TableFamily::Inet | TableFamily::Netdev => true,
            TableFamily::Ip => probe.family == Family::Ipv4,
            TableFamily::Ip6 => probe.family == Family::Ipv6,
            _ => false,
        };
        if !applies {
            continue;
        }
        for chain in &table.chains {
            let Some(base) = &chain.base else { continue };
            let order = match base.hook {
                Hook::Ingress => 0,
                Hook::Prerouting => 1,
                Hook::Input => 2,
                Hook::Forward => 3,
                _ => continue,
            };
            hooks.push((order, base.priority, table, chain));
        }
    }
    hooks.sort_by_key(|(order, priority, _, _)| (*order, *priority));

    let mut eval = Eval {
        probe,
        index,
        routing: &ruleset.routing,
        hook: 0,
        paths: 1,
        unknown: None,
    };
    let mut live = vec![State::start(probe)];
    let mut dropped: Vec<(RuleRef, State)> = Vec::new();
    for (order, _, table, chain) in hooks {
        eval.hook = order;
        let nat = chain.base.as_ref().is_some_and(|b| &*b.kind == "nat");
        let mut next = Vec::new();
        for state in live {
            let passes = match order {
                // A translated packet passes by the other nat chains.
                0 | 1 => !(nat && state.dnat.is_some()),
                2 => matches!(state.to, To::Input),
                _ => matches!(state.to, To::Forward { .. }),
            };
            if !passes {
                next.push(state);
                continue;
            }
            for (end, state) in eval.base_chain(table, chain, state) {
                match end {
                    End::Accept => next.push(state),
                    End::Drop(by) => dropped.push((by, state)),
                    End::Return => unreachable!("a base chain ends in its policy"),
                    End::Unknown(why) => {
                        eval.unknown.get_or_insert(why);
                    }
                }
            }
        }
        // A device-bound ingress chain applies to one device's traffic:
        // whether that is the outside's is not known here.
        if order == 0 && !dropped.is_empty() {
            eval.unknown.get_or_insert(format!(
                "{} {} {}: an ingress chain bound to a device",
                table.family.as_str(),
                table.name,
                chain.name
            ));
        }
        live = next;
        if eval.unknown.is_some() {
            break;
        }
    }
    if let Some(reason) = eval.unknown {
        return Exposure::Unknown { reason };
    }
    if dropped.is_empty() {
        let mut forwarded: Vec<String> = live
            .iter()
            .filter_map(|s| s.dnat.as_ref().map(|d| d.to_string()))
            .collect();
        forwarded.sort();
        forwarded.dedup();
        return Exposure::Open {
            forwarded: (!forwarded.is_empty()).then(|| forwarded.join("; ")),
        };
    }
    if live.is_empty() {
        // The rule that stops packets from anywhere, rather than one that
        // stops those of a named interface (a container bridge).
        let at = dropped
            .iter()
            .position(|(_, s)| matches!(s.iif, Iif::Any { .. }))
            .unwrap_or(0);
        let (by, state) = dropped.swap_remove(at);
        return Exposure::Blocked {
            by,
            forwarded: state.dnat.as_ref().map(|d| d.to_string()),
        };
    }
    // Paths that differ only in their source are one admitted set.
    let mut merged: Vec<State> = Vec::new();
    for state in live {
        let same = |m: &&mut State| {
            m.fields[1..] == state.fields[1..] && m.iif == state.iif && m.dnat == state.dnat
        };
        match merged.iter_mut().find(same) {
            Some(m) => {
                let both = [m.fields[0].ranges(), state.fields[0].ranges()].concat();
                m.fields[0] = Ranges::of(both);
            }
            None => merged.push(state),
        }
    }
    let mut admitted: Vec<String> = merged.iter().map(|s| s.describe(probe)).collect();
    admitted.sort();
    admitted.dedup();
    Exposure::Restricted { admitted }
}

/// Whether any rule sits on a hook a packet for this host passes: without
/// one, every socket not on loopback is open.
pub fn any_rule_applies(ruleset: &Ruleset) -> bool {
    ruleset.tables.iter().filter(|t| !t.dormant).any(|t| {
        matches!(
            t.family,
            TableFamily::Inet | TableFamily::Ip | TableFamily::Ip6 | TableFamily::Netdev
        ) && t.chains.iter().any(|c| {
            c.base.as_ref().is_some_and(|b| {
                matches!(b.hook, Hook::Ingress | Hook::Prerouting | Hook::Input)
                    && (b.policy_drop || !c.rules.is_empty())
            })
        })
    })
}

fn mapped_loopback(a: IpAddr) -> bool {
    match a {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback()),
        IpAddr::V4(_) => false,
    }
}

/// How a chain ended for one path.
#[derive(Debug)]
enum End {
    Accept,
    Drop(RuleRef),
    Return,
    Unknown(String),
}

/// A field of the packet that the probe leaves open.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Field {
    Saddr,
    Daddr,
    Sport,
}

impl Field {
    const ALL: [Field; 3] = [Field::Saddr, Field::Daddr, Field::Sport];

    fn index(self) -> usize {
        self as usize
    }
}

/// What a register word holds.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Cell {
    Known([u8; 4]),
    /// Word `word` of an open field, ANDed with `mask`.
    Open {
        sym: Sym,
        word: u8,
        mask: [u8; 4],
    },
    Unknown(Arc<str>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Sym {
    Field(Field),
    /// The input interface's name (16 bytes).
    Iifname,
    /// The input interface's index.
    Iif,
    /// Source and destination port in one 4-byte load (`--sport 67
    /// --dport 68`): the source open, the destination this one.
    Ports(u16),
}

/// An interface name as a rule matches it: whole, or a prefix (`eth*`).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Pattern {
    name: Vec<u8>,
    prefix: bool,
}

impl Pattern {
    fn of(data: &[u8]) -> Pattern {
        match data.iter().position(|b| *b == 0) {
            Some(end) => Pattern {
                name: data[..end].to_vec(),
                prefix: false,
            },
            None => Pattern {
                name: data.to_vec(),
                prefix: true,
            },
        }
    }

    fn is_loopback(&self) -> bool {
        !self.prefix && self.name == b"lo"
    }

    /// Whether the interface named `name` matches.
    fn matches(&self, name: &[u8]) -> bool {
        if self.prefix {
            name.starts_with(&self.name)
        } else {
            name == self.name.as_slice()
        }
    }
}

impl fmt::Display for Pattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", String::from_utf8_lossy(&self.name))?;
        if self.prefix {
            f.write_str("*")?;
        }
        Ok(())
    }
}

/// What is known of the input interface on a path. Never loopback: the
/// packet comes from outside.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Iif {
    Any { not: Vec<Pattern> },
    Is(Pattern),
}

/// Where a path goes after prerouting.
#[derive(Debug, Clone, PartialEq, Eq)]
enum To {
    /// Delivered here: the input hook.
    Input,
    /// Routed out of an interface (after a DNAT): the forward hook.
    Forward { ifname: Arc<str>, ifindex: u32 },
}

/// One path: the registers, and what the open fields may be on it.
#[derive(Debug, Clone)]
struct State {
    /// Boxed: a path is cloned at each split, and moved far more often.
    regs: Box<[Cell; 20]>,
    fields: [Ranges; 3],
    iif: Iif,
    /// A mark was set by a rule on this path: reading it is not decided.
    mark_set: bool,
    /// The packet's destination now: the probe's, until a DNAT.
    pkt: Probe,
    /// The DNAT the path met, if one.
    dnat: Option<Box<Dnat>>,
    to: To,
}

impl State {
    fn start(probe: &Probe) -> State {
        let bits = if probe.family == Family::Ipv4 {
            32
        } else {
            128
        };
        let loopback = if bits == 32 {
            Ranges::one(0x7f00_0000, 0x7fff_ffff)
        } else {
            Ranges::one(1, 1)
        };
        let outside = Ranges::full(bits).minus(&loopback);
        let daddr = match probe.daddr {
            Some(a) => Ranges::one(addr_value(a), addr_value(a)),
            None => outside.clone(),
        };
        State {
            regs: Box::new(std::array::from_fn(|_| Cell::Known([0; 4]))),
            fields: [outside, daddr, Ranges::one(1, 65_535)],
            iif: Iif::Any { not: Vec::new() },
            mark_set: false,
            pkt: *probe,
            dnat: None,
            to: To::Input,
        }
    }

    /// The path's conditions, as words.
    fn describe(&self, probe: &Probe) -> String {
        let start = State::start(probe);
        let kind = if probe.family == Family::Ipv4 {
            Kind::V4
        } else {
            Kind::V6
        };
        let mut parts = Vec::new();
        for f in Field::ALL {
            let (now, all) = (&self.fields[f.index()], &start.fields[f.index()]);
            if now == all {
                continue;
            }
            // The shorter of what is in and what is out.
            let out = all.minus(now);
            let (verb, kind) = match f {
                Field::Saddr => ("from", kind),
                Field::Daddr => ("to", kind),
                Field::Sport => ("from port", Kind::Port),
            };
            parts.push(if out.ranges().len() < now.ranges().len() {
                format!("{verb} any but {}", out.describe(kind))
            } else {
                format!("{verb} {}", now.describe(kind))
            });
        }
        match &self.iif {
            Iif::Is(p) => parts.push(format!("via {p}")),
            Iif::Any { not } if !not.is_empty() => {
                let mut names: Vec<String> = not.iter().map(|p| p.to_string()).collect();
                names.sort();
                names.dedup();
                parts.push(format!("not via {}", names.join(", ")));
            }
            Iif::Any { .. } => {}
        }
        let mut text = parts.join(" ");
        if let Some(d) = &self.dnat {
            if !text.is_empty() {
                text.push_str(", ");
            }
            text.push_str(&d.to_string());
        }
        text
    }

    fn write(&mut self, reg: u32, cells: Vec<Cell>) -> Result<(), String> {
        let w = word(reg).ok_or_else(|| format!("register {reg}"))?;
        if w + cells.len() > self.regs.len() {
            return Err(format!("register {reg} overflows"));
        }
        for (i, c) in cells.into_iter().enumerate() {
            self.regs[w + i] = c;
        }
        Ok(())
    }

    fn write_bytes(&mut self, reg: u32, bytes: &[u8]) -> Result<(), String> {
        self.write(reg, known_cells(bytes))
    }

    fn read(&self, reg: u32, len: usize) -> Result<Value, String> {
        let w = word(reg).ok_or_else(|| format!("register {reg}"))?;
        let n = len.div_ceil(4);
        let cells = self
            .regs
            .get(w..w + n)
            .ok_or_else(|| format!("register {reg} overflows"))?;
        if let Some(Cell::Unknown(why)) = cells.iter().find(|c| matches!(c, Cell::Unknown(_))) {
            return Ok(Value::Unknown(Arc::clone(why)));
        }
        if cells.iter().all(|c| matches!(c, Cell::Known(_))) {
            let mut bytes = Vec::with_capacity(n * 4);
            for c in cells {
                if let Cell::Known(b) = c {
                    bytes.extend_from_slice(b);
                }
            }
            bytes.truncate(len);
            return Ok(Value::Known(bytes));
        }
        let Cell::Open { sym, .. } = &cells[0] else {
            return Ok(Value::Unknown("a key mixing open and fixed fields".into()));
        };
        let mut mask = Vec::with_capacity(n * 4);
        for (i, c) in cells.iter().enumerate() {
            match c {
                Cell::Open {
                    sym: s,
                    word,
                    mask: m,
                } if s == sym && usize::from(*word) == i => mask.extend_from_slice(m),
                _ => return Ok(Value::Unknown("a key mixing open and fixed fields".into())),
            }
        }
        mask.truncate(len);
        Ok(Value::Open { sym: *sym, mask })
    }
}

/// A register's value as an expression reads it.
#[derive(Debug, Clone)]
enum Value {
    Known(Vec<u8>),
    /// An open field's leading bytes, ANDed with `mask` (one byte each).
    Open {
        sym: Sym,
        mask: Vec<u8>,
    },
    Unknown(Arc<str>),
}

/// The 32-bit word a register starts at.
pub(super) fn word(reg: u32) -> Option<usize> {
    match reg {
        1..=4 => Some(reg as usize * 4),
        8..=23 => Some(reg as usize - 8 + 4),
        _ => None,
    }
}

fn known_cells(bytes: &[u8]) -> Vec<Cell> {
    bytes
        .chunks(4)
        .map(|c| {
            let mut w = [0u8; 4];
            w[..c.len()].copy_from_slice(c);
            Cell::Known(w)
        })
        .collect()
}

fn open_cells(sym: Sym, len: usize) -> Vec<Cell> {
    (0..len.div_ceil(4))
        .map(|i| {
            let mut mask = [0xffu8; 4];
            for (j, m) in mask.iter_mut().enumerate() {
                if i * 4 + j >= len {
                    *m = 0;
                }
            }
            Cell::Open {
                sym,
                word: i as u8,
                mask,
            }
        })
        .collect()
}

fn unknown_cells(why: &str, len: usize) -> Vec<Cell> {
    let why: Arc<str> = why.into();
    (0..len.div_ceil(4).max(1))
        .map(|_| Cell::Unknown(Arc::clone(&why)))
        .collect()
}

fn addr_value(a: IpAddr) -> u128 {
    match a {
        IpAddr::V4(v4) => u128::from(u32::from(v4)),
        IpAddr::V6(v6) => u128::from(v6),
    }
}

/// How one rule ended for one path.
#[derive(Debug)]
enum RuleEnd {
    /// Did not match: the next rule.
    Next,
    Verdict(Verdict),
    Unknown(String),
}

/// How a condition splits the paths: those it holds for, those it does not.
struct Split {
    yes: Option<State>,
    no: Option<State>,
}

struct Eval<'a> {
    /// The probe as it came in (conntrack's original tuple).
    probe: &'a Probe,
    index: &'a Index,
    routing: &'a Routing,
    /// The hook being run: 0 ingress, 1 prerouting, 2 input, 3 forward.
    hook: u8,
    paths: usize,
    unknown: Option<String>,
}

impl Eval<'_> {
    fn base_chain(&mut self, table: &Table, chain: &Chain, state: State) -> Vec<(End, State)> {
        let mut out = Vec::new();
        for (end, state) in self.chain(table, chain, state, 0) {
            match end {
                End::Return => {
                    let policy_drop = chain.base.as_ref().is_some_and(|b| b.policy_drop);
                    if policy_drop {
                        let by = RuleRef {
                            family: table.family,
                            table: Arc::clone(&table.name),
                            chain: Arc::clone(&chain.name),
                            handle: None,
                        };
                        out.push((End::Drop(by), state));
                    } else {
                        out.push((End::Accept, state));
                    }
                }
                end => out.push((end, state)),
            }
        }
        out
    }

    /// Runs `chain` from its first rule: how each path ends it (`Return`
    /// when it falls off the end or returns).
    fn chain(
        &mut self,
        table: &Table,
        chain: &Chain,
        state: State,
        depth: usize,
    ) -> Vec<(End, State)> {
        let mut out = Vec::new();
        if depth > MAX_DEPTH {
            out.push((
                End::Unknown(format!("jumps nested deeper than {MAX_DEPTH}")),
                state,
            ));
            return out;
        }
        let pkt = state.pkt;
        let mut live = vec![state];
        for i in self.index.rules_for(chain, &pkt) {
            let rule = &chain.rules[i as usize];
            if inert(rule) {
                continue;
            }
            let at = || RuleRef {
                family: table.family,
                table: Arc::clone(&table.name),
                chain: Arc::clone(&chain.name),
                handle: Some(rule.handle),
            };
            let mut next = Vec::new();
            for state in live {
                let mut ends = Vec::new();
                self.exprs(table, &rule.exprs, state, &mut ends);
                for (end, mut state) in ends {
                    if let Some(d) = state.dnat.as_mut().filter(|d| d.by.is_none()) {
                        d.by = Some(at());
                    }
                    match end {
                        RuleEnd::Next | RuleEnd::Verdict(Verdict::Continue) => next.push(state),
                        RuleEnd::Verdict(Verdict::Break) => next.push(state),
                        RuleEnd::Verdict(Verdict::Accept) => out.push((End::Accept, state)),
                        RuleEnd::Verdict(Verdict::Drop) => out.push((End::Drop(at()), state)),
                        RuleEnd::Verdict(Verdict::Return) => out.push((End::Return, state)),
                        RuleEnd::Verdict(Verdict::Jump(to))
                        | RuleEnd::Verdict(Verdict::Goto(to))
                            if table.chain(&to).is_none() =>
                        {
                            out.push((End::Unknown(format!("{}: no chain {to}", at())), state));
                        }
                        RuleEnd::Verdict(Verdict::Jump(to)) => {
                            let target = table.chain(&to).expect("checked");
                            for (end, state) in self.chain(table, target, state, depth + 1) {
                                match end {
                                    End::Return => next.push(state),
                                    end => out.push((end, state)),
                                }
                            }
                        }
                        RuleEnd::Verdict(Verdict::Goto(to)) => {
                            let target = table.chain(&to).expect("checked");
                            out.extend(self.chain(table, target, state, depth + 1));
                        }
                        RuleEnd::Verdict(Verdict::Other(code)) => out.push((
                            End::Unknown(format!("{}: verdict {code} (queue)", at())),
                            state,
                        )),
                        RuleEnd::Unknown(why) => {
                            out.push((End::Unknown(format!("{}: {why}", at())), state))
                        }
                    }
                }
            }
            live = next;
            if live.is_empty() {
                break;
            }
        }
        out.extend(live.into_iter().map(|s| (End::Return, s)));
        out
    }

    /// Runs a rule's expressions from the first, splitting paths.
    fn exprs(
        &mut self,
        table: &Table,
        exprs: &[Expr],
        state: State,
        out: &mut Vec<(RuleEnd, State)>,
    ) {
        let Some((expr, rest)) = exprs.split_first() else {
            out.push((RuleEnd::Next, state));
            return;
        };
        match self.step(table, expr, state) {
            Step::Go(state) => self.exprs(table, rest, state, out),
            Step::Split(split) => {
                if let Some(yes) = split.yes {
                    self.exprs(table, rest, yes, out);
                }
                if let Some(no) = split.no {
                    out.push((RuleEnd::Next, no));
                }
            }
            Step::Fork(paths, no) => {
                for (state, verdict) in paths {
                    match verdict {
                        Some(v) => out.push((RuleEnd::Verdict(v), state)),
                        None => self.exprs(table, rest, state, out),
                    }
                }
                if let Some(no) = no {
                    out.push((RuleEnd::Next, no));
                }
            }
            Step::End(end, state) => out.push((end, state)),
        }
    }

    /// One expression on one path.
    fn step(&mut self, table: &Table, expr: &Expr, mut state: State) -> Step {
        let probe = state.pkt;
        let probe = &probe;
        let done = |r: Result<(), String>, state: State| match r {
            Ok(()) => Step::Go(state),
            Err(why) => Step::End(RuleEnd::Unknown(why), state),
        };
        match expr {
            Expr::Payload {
                base,
                offset,
                len,
                dreg,
            } => {
                let cells = payload(probe, *base, *offset, *len as usize);
                let r = state.write(*dreg, cells);
                done(r, state)
            }
            Expr::PayloadSet | Expr::Pass(_) => Step::Go(state),
            Expr::Meta { key, dreg } if matches!(*key, META_OIF | META_OIFNAME) => {
                // Only a forwarded packet has an output interface before
                // routing's end; elsewhere the rule does not match.
                let To::Forward { ifname, ifindex } = &state.to else {
                    return Step::End(RuleEnd::Next, state);
                };
                if self.hook < 3 {
                    return Step::End(RuleEnd::Next, state);
                }
                let cells = if *key == META_OIF {
                    known_cells(&ifindex.to_ne_bytes())
                } else {
                    let mut name = [0u8; 16];
                    let n = ifname.len().min(15);
                    name[..n].copy_from_slice(&ifname.as_bytes()[..n]);
                    known_cells(&name)
                };
                let r = state.write(*dreg, cells);
                done(r, state)
            }
            Expr::Meta { key, dreg } => {
                let cells = meta(probe, *key, state.mark_set);
                let r = state.write(*dreg, cells);
                done(r, state)
            }
            Expr::MetaSet { key } => {
                // Only the mark is read back by later rules.
                if *key == META_MARK {
                    state.mark_set = true;
                }
                Step::Go(state)
            }
            Expr::Ct { key, dreg } => {
                // Conntrack keeps the tuple as it came in.
                let cells = ct(self.probe, *key, state.mark_set);
                let r = state.write(*dreg, cells);
                done(r, state)
            }
            Expr::CtSet => Step::Go(state),
            Expr::Fib {
                result,
                flags,
                dreg,
            } => {
                // The address type of a packet's destination: ours is
                // local, unless a DNAT sent it elsewhere.
                let cells = if *result == FIB_ADDRTYPE && *flags & !FIB_PRESENT == FIB_DADDR {
                    let kind = match state.to {
                        To::Input => RTN_LOCAL,
                        To::Forward { .. } => RTN_UNICAST,
                    };
                    known_cells(&kind.to_ne_bytes())
                } else {
                    unknown_cells("fib lookup of the source or interface", 4)
                };
                let r = state.write(*dreg, cells);
                done(r, state)
            }
            Expr::Immediate { dreg, data } => match data {
                Data::Verdict(v) if *dreg == 0 => Step::End(RuleEnd::Verdict(v.clone()), state),
                Data::Value(bytes) => {
                    let r = state.write_bytes(*dreg, bytes);
                    done(r, state)
                }
                Data::Verdict(_) => Step::End(
                    RuleEnd::Unknown("a verdict loaded into a data register".into()),
                    state,
                ),
            },
            Expr::Bitwise {
                sreg,
                dreg,
                len,
                mask,
                xor,
                other_op,
            } => {
                let len = *len as usize;
                match state.read(*sreg, len) {
                    Err(why) => Step::End(RuleEnd::Unknown(why), state),
                    Ok(Value::Unknown(why)) => {
                        let r = state.write(*dreg, unknown_cells(&why, len));
                        done(r, state)
                    }
                    Ok(_) if *other_op => {
                        let r = state.write(*dreg, unknown_cells("a shift", len));
                        done(r, state)
                    }
                    Ok(Value::Known(v)) => {
                        let out: Vec<u8> = (0..len)
                            .map(|i| {
                                (v.get(i).copied().unwrap_or(0) & mask.get(i).copied().unwrap_or(0))
                                    ^ xor.get(i).copied().unwrap_or(0)
                            })
                            .collect();
                        let r = state.write_bytes(*dreg, &out);
                        done(r, state)
                    }
                    Ok(Value::Open { sym, mask: old }) => {
                        if xor.iter().any(|b| *b != 0) {
                            let r =
                                state.write(*dreg, unknown_cells("an xor of an open field", len));
                            return done(r, state);
                        }
                        let combined: Vec<u8> = (0..len)
                            .map(|i| {
                                old.get(i).copied().unwrap_or(0) & mask.get(i).copied().unwrap_or(0)
                            })
                            .collect();
                        let mut cells = open_cells(sym, len);
                        for (i, c) in cells.iter_mut().enumerate() {
                            if let Cell::Open { mask, .. } = c {
                                for (j, m) in mask.iter_mut().enumerate() {
                                    *m = combined.get(i * 4 + j).copied().unwrap_or(0);
                                }
                            }
                        }
                        let r = state.write(*dreg, cells);
                        done(r, state)
                    }
                }
            }
            Expr::Cmp { sreg, op, data } => {
                let value = match state.read(*sreg, data.len()) {
                    Ok(v) => v,
                    Err(why) => return Step::End(RuleEnd::Unknown(why), state),
                };
                match value {
                    Value::Known(v) => {
                        if cmp_holds(&v, *op, data) {
                            Step::Go(state)
                        } else {
                            Step::End(RuleEnd::Next, state)
                        }
                    }
                    Value::Unknown(why) => Step::End(RuleEnd::Unknown(why.to_string()), state),
                    Value::Open { sym, mask } => self.split_cmp(state, sym, &mask, *op, data),
                }
            }
            Expr::Range {
                sreg,
                negate,
                from,
                to,
            } => {
                let value = match state.read(*sreg, from.len()) {
                    Ok(v) => v,
                    Err(why) => return Step::End(RuleEnd::Unknown(why), state),
                };
                match value {
                    Value::Known(v) => {
                        let inside =
                            v.as_slice() >= from.as_slice() && v.as_slice() <= to.as_slice();
                        if inside != *negate {
                            Step::Go(state)
                        } else {
                            Step::End(RuleEnd::Next, state)
                        }
                    }
                    Value::Unknown(why) => Step::End(RuleEnd::Unknown(why.to_string()), state),
                    Value::Open {
                        sym: Sym::Field(f),
                        mask,
                    } if full_mask(&mask) => {
                        let set = Ranges::one(be(from), be(to));
                        let set = if *negate {
                            Ranges::full(self.width(f) * 8).minus(&set)
                        } else {
                            set
                        };
                        Step::Split(split_field(state, f, &set))
                    }
                    Value::Open { .. } => Step::End(
                        RuleEnd::Unknown("a range over a masked or interface field".into()),
                        state,
                    ),
                }
            }
            Expr::Lookup {
                set,
                sreg,
                dreg,
                invert,
            } => {
                let Some(set) = table.set(set) else {
                    return Step::End(RuleEnd::Unknown(format!("no set {set}")), state);
                };
                self.lookup(state, set, *sreg, *dreg, *invert)
            }
            Expr::Reject => Step::End(RuleEnd::Verdict(Verdict::Drop), state),
            Expr::Nat { dnat: false, .. } => Step::Go(state),
            Expr::Nat {
                dnat: true,
                family,
                addr_min,
                addr_max,
                proto_min,
                proto_max,
            } => {
                if *family != nfproto(probe) {
                    // `dnat ip to …` in an inet table: not for this family.
                    return Step::Go(state);
                }
                match nat_rewrite(
                    &state, *family, *addr_min, *addr_max, *proto_min, *proto_max,
                ) {
                    Ok(rewrite) => self.dnat(state, rewrite),
                    Err(why) => Step::End(RuleEnd::Unknown(why), state),
                }
            }
            Expr::Target { name, rev, info } if &**name == "DNAT" => {
                match super::nat::xt_dnat(*rev, info, probe.family == Family::Ipv4) {
                    Ok(rewrite) => self.dnat(state, rewrite),
                    Err(why) => Step::End(RuleEnd::Unknown(why), state),
                }
            }
            Expr::Match { name, rev, info } => {
                match super::xt::decide(name, *rev, info, probe, matches!(state.to, To::Input)) {
                    super::xt::Said::Yes => Step::Go(state),
                    super::xt::Said::No => Step::End(RuleEnd::Next, state),
                    super::xt::Said::Undecided(why) => Step::End(RuleEnd::Unknown(why), state),
                }
            }
            Expr::Target { name, .. } => match super::xt::target(name) {
                Some(true) => Step::End(RuleEnd::Verdict(Verdict::Drop), state),
                Some(false) => {
                    if &**name == "MARK" {
                        state.mark_set = true;
                    }
                    Step::Go(state)
                }
                None => Step::End(RuleEnd::Unknown(format!("iptables target {name}")), state),
            },
            Expr::Unknown(name) => Step::End(RuleEnd::Unknown(format!("{name}")), state),
        }
    }

    /// A DNAT on this path: the packet goes on with its new destination,
    /// to the hook its route leads to; the rule's verdict is accept.
    fn dnat(&mut self, mut state: State, rewrite: Rewrite) -> Step {
        let port = rewrite.port.unwrap_or(state.pkt.dport);
        let to = match rewrite.addr {
            // Only the port: still one of ours.
            None => To::Input,
            Some(a) => match self.routing.route(a) {
                Some(RouteTo::Local) => To::Input,
                Some(RouteTo::Out { ifname, ifindex }) => {
                    let (on, sysctl) = match a {
                        IpAddr::V4(_) => (self.routing.forward_v4, "net.ipv4.ip_forward"),
                        IpAddr::V6(_) => (self.routing.forward_v6, "net.ipv6.conf.all.forwarding"),
                    };
                    if !on {
                        return Step::End(
                            RuleEnd::Unknown(format!(
                                "a DNAT to {a}, routed out of {ifname}, but {sysctl} is 0"
                            )),
                            state,
                        );
                    }
                    To::Forward {
                        ifname: Arc::clone(ifname),
                        ifindex: *ifindex,
                    }
                }
                Some(RouteTo::Nowhere(why)) => {
                    return Step::End(
                        RuleEnd::Unknown(format!("a DNAT to {a}, which has no route ({why})")),
                        state,
                    );
                }
                None => {
                    return Step::End(
                        RuleEnd::Unknown(format!("a DNAT to {a}, whose route was not read")),
                        state,
                    );
                }
            },
        };
        if let Some(a) = rewrite.addr {
            state.pkt.daddr = Some(a);
        }
        state.pkt.dport = port;
        state.dnat = Some(Box::new(Dnat {
            addr: rewrite.addr,
            // Unchanged is said so, not as the probe's port: probes of
            // different ports through one rule share the verdict.
            port: rewrite.port,
            forwarded: matches!(to, To::Forward { .. }),
            by: None,
        }));
        state.to = to;
        Step::End(RuleEnd::Verdict(Verdict::Accept), state)
    }

    /// The width in bytes of an open field.
    fn width(&self, f: Field) -> u32 {
        match (f, self.probe.family) {
            (Field::Sport, _) => 2,
            (_, Family::Ipv4) => 4,
            (_, Family::Ipv6) => 16,
        }
    }

    /// The values of field `f` whose first `mask.len()` bytes, ANDed with
    /// `mask`, equal `data`: a range when the mask is a prefix.
    fn masked_set(&self, f: Field, mask: &[u8], data: &[u8]) -> Option<Ranges> {
        let width = self.width(f) as usize;
        if mask.len() > width || data.len() > width {
            return None;
        }
        let mut m = mask.to_vec();
        m.resize(width, 0);
        let mut d = data.to_vec();
        d.resize(width, 0);
        let bits = width as u32 * 8;
        let (m, d) = (be(&m), be(&d));
        let ones = (m << (128 - bits)).leading_ones().min(bits);
        if m != max(bits) ^ max(bits - ones) {
            return None;
        }
        if d & !m & max(bits) != 0 {
            return Some(Ranges::empty());
        }
        Some(Ranges::one(d, d | (!m & max(bits))))
    }

    fn split_cmp(&mut self, state: State, sym: Sym, mask: &[u8], op: CmpOp, data: &[u8]) -> Step {
        match sym {
            Sym::Field(f) => {
                let set = match op {
                    CmpOp::Eq | CmpOp::Neq => self.masked_set(f, mask, data),
                    _ if full_mask(mask) && mask.len() == self.width(f) as usize => {
                        let (v, top) = (be(data), max(self.width(f) * 8));
                        Some(match op {
                            CmpOp::Lt if v == 0 => Ranges::empty(),
                            CmpOp::Lt => Ranges::one(0, v - 1),
                            CmpOp::Lte => Ranges::one(0, v),
                            CmpOp::Gt if v == top => Ranges::empty(),
                            CmpOp::Gt => Ranges::one(v + 1, top),
                            _ => Ranges::one(v, top),
                        })
                    }
                    _ => None,
                };
                let Some(mut set) = set else {
                    return Step::End(
                        RuleEnd::Unknown("a comparison of a partly masked address".into()),
                        state,
                    );
                };
                if op == CmpOp::Neq {
                    set = Ranges::full(self.width(f) * 8).minus(&set);
                }
                self.count(Step::Split(split_field(state, f, &set)))
            }
            Sym::Ports(dport) => {
                let exact = full_mask(mask) && mask.len() == 4 && data.len() == 4;
                if !exact || !matches!(op, CmpOp::Eq | CmpOp::Neq) {
                    return Step::End(
                        RuleEnd::Unknown("source and destination ports compared by order".into()),
                        state,
                    );
                }
                let eq = op == CmpOp::Eq;
                if data[2..4] != dport.to_be_bytes() {
                    // The destination differs: never equal.
                    return if eq {
                        Step::End(RuleEnd::Next, state)
                    } else {
                        Step::Go(state)
                    };
                }
                let sport = u128::from(u16::from_be_bytes([data[0], data[1]]));
                let mut set = Ranges::one(sport, sport);
                if !eq {
                    set = Ranges::full(16).minus(&set);
                }
                self.count(Step::Split(split_field(state, Field::Sport, &set)))
            }
            Sym::Iif => {
                // Only "is it loopback" is decided: index 1 in every namespace.
                let lo = 1u32.to_ne_bytes();
                if full_mask(mask) && data == lo && matches!(op, CmpOp::Eq | CmpOp::Neq) {
                    if op == CmpOp::Eq {
                        Step::End(RuleEnd::Next, state)
                    } else {
                        Step::Go(state)
                    }
                } else {
                    Step::End(
                        RuleEnd::Unknown("the input interface's index".into()),
                        state,
                    )
                }
            }
            Sym::Iifname => {
                if !full_mask(mask) || !matches!(op, CmpOp::Eq | CmpOp::Neq) {
                    return Step::End(
                        RuleEnd::Unknown("an interface name compared by order".into()),
                        state,
                    );
                }
                match split_iif(state, &[Pattern::of(data)]) {
                    IifSplit::Undecided(why, state) => Step::End(RuleEnd::Unknown(why), state),
                    IifSplit::Done(mut yes, no) => {
                        let split = if op == CmpOp::Eq {
                            Split { yes: yes.pop(), no }
                        } else {
                            Split {
                                yes: no,
                                no: yes.pop(),
                            }
                        };
                        self.count(Step::Split(split))
                    }
                }
            }
        }
    }

    fn lookup(
        &mut self,
        mut state: State,
        set: &Set,
        sreg: u32,
        dreg: Option<u32>,
        invert: bool,
    ) -> Step {
        if set.flags & (Set::EVAL | Set::TIMEOUT) != 0 {
            return Step::End(
                RuleEnd::Unknown(format!(
                    "set {} is filled by traffic: what it holds changes",
                    set.name
                )),
                state,
            );
        }
        let value = match state.read(sreg, set.key_len as usize) {
            Ok(v) => v,
            Err(why) => return Step::End(RuleEnd::Unknown(why), state),
        };
        let is_map = dreg.is_some();
        match value {
            Value::Unknown(why) => Step::End(RuleEnd::Unknown(why.to_string()), state),
            Value::Known(key) => {
                let found = set.elements.iter().find(|e| element_holds(e, &key));
                match (found, dreg) {
                    (None, _) if invert && !is_map => Step::Go(state),
                    (None, _) => Step::End(RuleEnd::Next, state),
                    (Some(_), None) if invert => Step::End(RuleEnd::Next, state),
                    (Some(_), None) => Step::Go(state),
                    (Some(e), Some(dreg)) => match map_to(&mut state, e, dreg) {
                        Ok(None) => Step::Go(state),
                        Ok(Some(v)) => Step::End(RuleEnd::Verdict(v), state),
                        Err(why) => Step::End(RuleEnd::Unknown(why), state),
                    },
                }
            }
            Value::Open {
                sym: Sym::Field(f),
                mask,
            } => {
                let mut rest = Some(state);
                let mut paths = Vec::new();
                let mut matched = Ranges::empty();
                for e in &set.elements {
                    let region = match &e.key_end {
                        Some(end) if full_mask(&mask) => Some(Ranges::one(be(&e.key), be(end))),
                        Some(_) => None,
                        None => self.masked_set(f, &mask, &e.key),
                    };
                    let Some(region) = region else {
                        let state = rest.take().expect("a path");
                        return Step::End(
                            RuleEnd::Unknown("an interval lookup of a masked field".into()),
                            state,
                        );
                    };
                    if !is_map {
                        matched = Ranges::of([matched.ranges(), region.ranges()].concat());
                        continue;
                    }
                    let Some(current) = rest.take() else { break };
                    let split = split_field(current, f, &region);
                    rest = split.no;
                    if let Some(mut yes) = split.yes {
                        match map_to(&mut yes, e, dreg.expect("a map")) {
                            Ok(v) => paths.push((yes, v)),
                            Err(why) => return Step::End(RuleEnd::Unknown(why), yes),
                        }
                    }
                }
                if is_map {
                    return self.count(Step::Fork(paths, rest));
                }
                let state = rest.expect("a path");
                let split = split_field(state, f, &matched);
                let split = if invert {
                    Split {
                        yes: split.no,
                        no: split.yes,
                    }
                } else {
                    split
                };
                self.count(Step::Split(split))
            }
            Value::Open {
                sym: Sym::Iifname,
                mask,
            } if full_mask(&mask) && set.flags & Set::INTERVAL == 0 => {
                let patterns: Vec<Pattern> =
                    set.elements.iter().map(|e| Pattern::of(&e.key)).collect();
                let (yes, no) = match split_iif(state, &patterns) {
                    IifSplit::Done(yes, no) => (yes, no),
                    IifSplit::Undecided(why, state) => {
                        return Step::End(RuleEnd::Unknown(why), state);
                    }
                };
                if invert && !is_map {
                    // Not in the set: only the rest goes on; the named
                    // interfaces stop here.
                    let mut paths: Vec<(State, Option<Verdict>)> = Vec::new();
                    if let Some(no) = no {
                        paths.push((no, None));
                    }
                    let stopped = yes.into_iter().next();
                    return self.count(Step::Fork(paths, stopped));
                }
                let mut paths = Vec::new();
                for mut s in yes {
                    match dreg {
                        None => paths.push((s, None)),
                        Some(d) => {
                            let Some(e) = matching_element(set, &s) else {
                                return Step::End(RuleEnd::Unknown("an interface map".into()), s);
                            };
                            match map_to(&mut s, e, d) {
                                Ok(v) => paths.push((s, v)),
                                Err(why) => return Step::End(RuleEnd::Unknown(why), s),
                            }
                        }
                    }
                }
                self.count(Step::Fork(paths, no))
            }
            Value::Open { .. } => Step::End(
                RuleEnd::Unknown("a lookup of the input interface".into()),
                state,
            ),
        }
    }

    /// Counts paths made; past the bound, the verdict is unknown.
    fn count(&mut self, step: Step) -> Step {
        let made = match &step {
            Step::Split(Split {
                yes: Some(_),
                no: Some(_),
            }) => 1,
            Step::Fork(paths, no) => (paths.len() + usize::from(no.is_some())).saturating_sub(1),
            _ => 0,
        };
        self.paths += made;
        if self.paths > MAX_PATHS {
            self.unknown
                .get_or_insert_with(|| format!("more than {MAX_PATHS} paths through the ruleset"));
        }
        step
    }
}

/// A rule that can change nothing the verdict depends on, whatever its
/// conditions say: it only counts or logs (ufw's `-m limit -j LOG`, an
/// nft `limit rate 3/minute log`). Its conditions need no deciding.
fn inert(rule: &Rule) -> bool {
    rule.exprs.iter().all(|e| match e {
        Expr::Immediate { dreg, .. } => *dreg != 0,
        Expr::Lookup { dreg, .. } => *dreg != Some(0),
        Expr::Target { name, .. } => super::xt::target(name) == Some(false) && &**name != "MARK",
        Expr::Unknown(name) => matches!(&**name, "limit" | "quota" | "connlimit"),
        Expr::Reject | Expr::Nat { .. } | Expr::MetaSet { .. } | Expr::CtSet | Expr::PayloadSet => {
            false
        }
        Expr::Payload { .. }
        | Expr::Meta { .. }
        | Expr::Cmp { .. }
        | Expr::Bitwise { .. }
        | Expr::Range { .. }
        | Expr::Ct { .. }
        | Expr::Fib { .. }
        | Expr::Match { .. }
        | Expr::Pass(_) => true,
    })
}

/// What an expression did to a path.
enum Step {
    Go(State),
    Split(Split),
    /// Paths a map sent on (with the verdict a verdict map gave), and the
    /// rest, which the map did not hold.
    Fork(Vec<(State, Option<Verdict>)>, Option<State>),
    End(RuleEnd, State),
}

fn full_mask(mask: &[u8]) -> bool {
    mask.iter().all(|b| *b == 0xff)
}

fn split_field(state: State, f: Field, set: &Ranges) -> Split {
    let now = &state.fields[f.index()];
    let (yes, no) = (now.intersect(set), now.minus(set));
    let with = |s: &State, r: Ranges| {
        let mut s = s.clone();
        s.fields[f.index()] = r;
        s
    };
    match (yes.is_empty(), no.is_empty()) {
        (true, _) => Split {
            yes: None,
            no: Some(state),
        },
        (false, true) => Split {
            yes: Some(state),
            no: None,
        },
        (false, false) => Split {
            yes: Some(with(&state, yes)),
            no: Some(with(&state, no)),
        },
    }
}

/// Splits a path by the interface patterns: one path per pattern it may
/// come in by (in order), and the path for any other interface.
fn split_iif(state: State, patterns: &[Pattern]) -> IifSplit {
    match &state.iif {
        Iif::Is(p) if !p.prefix => {
            let hit = patterns.iter().any(|q| q.matches(&p.name));
            if hit {
                IifSplit::Done(vec![state], None)
            } else {
                IifSplit::Done(Vec::new(), Some(state))
            }
        }
        Iif::Is(_) => IifSplit::Undecided("interface patterns over a pattern".into(), state),
        Iif::Any { not } => {
            let not = not.clone();
            let mut yes = Vec::new();
            for p in patterns.iter().filter(|p| !p.is_loopback()) {
                if not.contains(p) {
                    continue;
                }
                if p.prefix || not.iter().any(|n| n.prefix) {
                    return IifSplit::Undecided("interface name patterns (eth*)".into(), state);
                }
                let mut s = state.clone();
                s.iif = Iif::Is(p.clone());
                yes.push(s);
            }
            let mut rest = state;
            let mut excluded = not;
            excluded.extend(patterns.iter().filter(|p| !p.is_loopback()).cloned());
            rest.iif = Iif::Any { not: excluded };
            IifSplit::Done(yes, Some(rest))
        }
    }
}

/// Paths by interface: one per pattern it may come in by and one for any
/// other interface; or why that is not decided.
enum IifSplit {
    Done(Vec<State>, Option<State>),
    Undecided(String, State),
}

/// The element of an interface set a path split on.
fn matching_element<'s>(set: &'s Set, state: &State) -> Option<&'s Element> {
    let Iif::Is(p) = &state.iif else { return None };
    set.elements.iter().find(|e| Pattern::of(&e.key) == *p)
}

/// Where an nft `dnat` rewrites to, from the registers its rule loaded.
fn nat_rewrite(
    state: &State,
    family: u8,
    addr_min: Option<u32>,
    addr_max: Option<u32>,
    proto_min: Option<u32>,
    proto_max: Option<u32>,
) -> Result<Rewrite, String> {
    let ipv4 = family == 2;
    let fixed = |reg: u32, len: usize| -> Result<Vec<u8>, String> {
        match state.read(reg, len)? {
            Value::Known(v) => Ok(v),
            _ => Err("a DNAT to where the packet says (not fixed by the rule)".into()),
        }
    };
    let len = if ipv4 { 4 } else { 16 };
    let addr = match addr_min {
        Some(r) => {
            let min = fixed(r, len)?;
            if let Some(m) = addr_max
                && fixed(m, len)? != min
            {
                return Err("a DNAT to a range of addresses".into());
            }
            super::nat::address(ipv4, &min)
        }
        None => None,
    };
    let port = match proto_min {
        Some(r) => {
            let min = fixed(r, 2)?;
            if let Some(m) = proto_max
                && fixed(m, 2)? != min
            {
                return Err("a DNAT to a range of ports".into());
            }
            Some(u16::from_be_bytes([min[0], min[1]]))
        }
        None => None,
    };
    Ok(Rewrite { addr, port })
}

/// A map element's data into `dreg`: `Some(verdict)` for a verdict map.
fn map_to(state: &mut State, e: &Element, dreg: u32) -> Result<Option<Verdict>, String> {
    match (&e.data, dreg) {
        (Some(Data::Verdict(v)), 0) => Ok(Some(v.clone())),
        (Some(Data::Value(bytes)), d) if d != 0 => state.write_bytes(d, bytes).map(|()| None),
        _ => Err("a map element of the wrong kind".into()),
    }
}

fn element_holds(e: &Element, key: &[u8]) -> bool {
    match &e.key_end {
        Some(end) => key >= e.key.as_slice() && key <= end.as_slice(),
        None => key == e.key.as_slice(),
    }
}

fn cmp_holds(v: &[u8], op: CmpOp, data: &[u8]) -> bool {
    let o = v.cmp(data);
    match op {
        CmpOp::Eq => o.is_eq(),
        CmpOp::Neq => o.is_ne(),
        CmpOp::Lt => o.is_lt(),
        CmpOp::Lte => o.is_le(),
        CmpOp::Gt => o.is_gt(),
        CmpOp::Gte => o.is_ge(),
    }
}

// Keys and values of include/uapi/linux/netfilter/nf_tables.h.
const META_PROTOCOL: u32 = 1;
const META_MARK: u32 = 3;
const META_IIF: u32 = 4;
const META_OIF: u32 = 5;
const META_IIFNAME: u32 = 6;
const META_OIFNAME: u32 = 7;
const META_NFPROTO: u32 = 15;
pub(super) const META_L4PROTO: u32 = 16;
const META_PKTTYPE: u32 = 19;
const CT_STATE: u32 = 0;
const CT_DIRECTION: u32 = 1;
const CT_MARK: u32 = 3;
const CT_L3PROTOCOL: u32 = 7;
const CT_PROTOCOL: u32 = 10;
pub(super) const CT_PROTO_DST: u32 = 12;
/// `ct state new`: the bit of IP_CT_NEW.
const CT_STATE_NEW: u32 = 1 << 3;
const FIB_ADDRTYPE: u32 = 3;
const FIB_DADDR: u32 = 2;
const FIB_PRESENT: u32 = 32;
const RTN_UNICAST: u32 = 1;
const RTN_LOCAL: u32 = 2;

/// The IP protocol number of `proto`.
pub(super) fn l4(proto: Proto) -> u8 {
    match proto {
        Proto::Tcp => 6,
        Proto::Udp => 17,
    }
}

fn nfproto(probe: &Probe) -> u8 {
    match probe.family {
        Family::Ipv4 => 2,
        Family::Ipv6 => 10,
    }
}

fn meta(probe: &Probe, key: u32, mark_set: bool) -> Vec<Cell> {
    match key {
        META_L4PROTO => known_cells(&[l4(probe.proto)]),
        META_NFPROTO => known_cells(&[nfproto(probe)]),
        META_PROTOCOL => known_cells(
            &match probe.family {
                Family::Ipv4 => 0x0800u16,
                Family::Ipv6 => 0x86dd,
            }
            .to_be_bytes(),
        ),
        META_IIFNAME => open_cells(Sym::Iifname, 16),
        META_IIF => open_cells(Sym::Iif, 4),
        META_MARK if !mark_set => known_cells(&0u32.to_ne_bytes()),
        META_PKTTYPE => known_cells(&[0]),
        _ => unknown_cells(&format!("meta key {key}"), 16),
    }
}

fn ct(probe: &Probe, key: u32, mark_set: bool) -> Vec<Cell> {
    match key {
        CT_STATE => known_cells(&CT_STATE_NEW.to_ne_bytes()),
        CT_DIRECTION => known_cells(&[0]),
        CT_MARK if !mark_set => known_cells(&0u32.to_ne_bytes()),
        CT_L3PROTOCOL => known_cells(&[nfproto(probe)]),
        CT_PROTOCOL => known_cells(&[l4(probe.proto)]),
        CT_PROTO_DST => known_cells(&probe.dport.to_be_bytes()),
        _ => unknown_cells(&format!("ct key {key}"), 16),
    }
}

/// A payload load of the probe packet.
fn payload(probe: &Probe, base: PayloadBase, offset: u32, len: usize) -> Vec<Cell> {
    // The leading bytes of an address: nft loads only those of a prefix
    // that ends on a byte (`ip saddr 10.1.0.0/16` loads two).
    let addr = |sym: Field, at: Option<IpAddr>| match at {
        Some(a) => known_cells(
            &match a {
                IpAddr::V4(v4) => v4.octets().to_vec(),
                IpAddr::V6(v6) => v6.octets().to_vec(),
            }[..len],
        ),
        None => open_cells(Sym::Field(sym), len),
    };
    let v4 = probe.family == Family::Ipv4;
    match (base, offset, len) {
        (PayloadBase::Network, 9, 1) if v4 => known_cells(&[l4(probe.proto)]),
        (PayloadBase::Network, 6, 1) if !v4 => known_cells(&[l4(probe.proto)]),
        (PayloadBase::Network, 12, 1..=4) if v4 => open_cells(Sym::Field(Field::Saddr), len),
        (PayloadBase::Network, 16, 1..=4) if v4 => addr(Field::Daddr, probe.daddr),
        (PayloadBase::Network, 8, 1..=16) if !v4 => open_cells(Sym::Field(Field::Saddr), len),
        (PayloadBase::Network, 24, 1..=16) if !v4 => addr(Field::Daddr, probe.daddr),
        (PayloadBase::Transport, 0, 2) => open_cells(Sym::Field(Field::Sport), 2),
        (PayloadBase::Transport, 0, 4) => open_cells(Sym::Ports(probe.dport), 4),
        (PayloadBase::Transport, 2, 2) => known_cells(&probe.dport.to_be_bytes()),
        // TCP flags: a SYN.
        (PayloadBase::Transport, 13, 1) if probe.proto == Proto::Tcp => known_cells(&[0x02]),
        (PayloadBase::Network, ..) => {
            unknown_cells(&format!("network header bytes {offset}+{len}"), len)
        }
        (PayloadBase::Transport, ..) => {
            unknown_cells(&format!("transport header bytes {offset}+{len}"), len)
        }
        _ => unknown_cells("link layer or inner header", len),
    }
}
