//! The namespace's nftables ruleset, read over nfnetlink without writing
//! anything: tables, chains, rules with their expressions, sets and their
//! elements, and the generation (which changes with every committed
//! change, so a reader re-reads only when it moved). Rules written by
//! iptables-nft come as `match`/`target` expressions holding the xtables
//! structures as bytes.
//!
//! Netlink answers for the namespace of the calling thread. Reading needs
//! `CAP_NET_ADMIN` in the namespace's user namespace: without it the
//! kernel answers EPERM, which [`ReadError::NoPermission`] says.

use std::io;
use std::sync::Arc;

use netlink_sys::{Socket as NlSocket, SocketAddr, protocols::NETLINK_NETFILTER};

use super::netlink::{NLMSG_DONE, NLMSG_ERROR};
use crate::exposure::Firewall;
use crate::exposure::ruleset::*;

/// Why a ruleset could not be read.
#[derive(Debug)]
pub enum ReadError {
    /// EPERM: reading needs CAP_NET_ADMIN.
    NoPermission,
    /// iptables-legacy tables are in use: their rules are not in nftables.
    Legacy,
    Io(io::Error),
}

impl std::fmt::Display for ReadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ReadError::NoPermission => f.write_str("no permission (needs CAP_NET_ADMIN)"),
            ReadError::Legacy => f.write_str("iptables-legacy rules, which are not read"),
            ReadError::Io(e) => write!(f, "reading the ruleset: {e}"),
        }
    }
}

impl From<io::Error> for ReadError {
    fn from(e: io::Error) -> Self {
        match e.raw_os_error() {
            Some(libc::EPERM) | Some(libc::EACCES) => ReadError::NoPermission,
            _ => ReadError::Io(e),
        }
    }
}

/// Each namespace's ruleset as last read, by namespace: read again only
/// when its generation moved. The routes to the addresses its DNATs
/// rewrite to are asked again at every read (a container restarted on a
/// new address may change no rule): a handful of lookups, none when no
/// rule rewrites.
#[derive(Debug, Default)]
pub struct Cache(std::sync::Mutex<std::collections::HashMap<Arc<str>, Known>>);

#[derive(Debug)]
struct Known {
    rules: Arc<Ruleset>,
    /// Where its DNATs rewrite to.
    destinations: Vec<std::net::IpAddr>,
}

impl Cache {
    /// The ruleset of the calling thread's namespace (`ns`, its label).
    pub fn read_here(&self, ns: &Arc<str>) -> Firewall {
        let read = || -> Result<Arc<Ruleset>, ReadError> {
            let mut reader = Reader::open()?;
            let generation = reader.generation()?;
            let known = self.lock().get(ns).and_then(|k| {
                (k.rules.generation == generation)
                    .then(|| (Arc::clone(&k.rules), k.destinations.clone()))
            });
            let (mut rules, destinations) = match known {
                Some(known) => known,
                None => {
                    let rules = reader.ruleset()?;
                    let destinations = crate::exposure::nat::destinations(&rules);
                    (Arc::new(rules), destinations)
                }
            };
            if !destinations.is_empty() {
                // Unread routes leave every rewritten path undecided.
                let routing = super::routes::read_here(&destinations).unwrap_or_default();
                if routing != rules.routing {
                    Arc::make_mut(&mut rules).routing = routing;
                }
            }
            self.lock().insert(
                Arc::clone(ns),
                Known {
                    rules: Arc::clone(&rules),
                    destinations,
                },
            );
            Ok(rules)
        };
        match read() {
            Ok(rules) => Firewall::Rules(rules),
            Err(e) => Firewall::Unreadable(e.to_string().into()),
        }
    }

    /// Forgets namespaces not in `live`.
    pub fn keep(&self, live: &[&str]) {
        self.lock().retain(|ns, _| live.contains(&&**ns));
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, std::collections::HashMap<Arc<str>, Known>> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

const NFNL_SUBSYS_NFTABLES: u16 = 10;
const NFT_MSG_GETTABLE: u16 = 1;
const NFT_MSG_GETCHAIN: u16 = 4;
const NFT_MSG_GETRULE: u16 = 7;
const NFT_MSG_GETSET: u16 = 10;
const NFT_MSG_GETSETELEM: u16 = 13;
const NFT_MSG_NEWGEN: u16 = 15;
const NFT_MSG_GETGEN: u16 = 16;
const NLM_F_REQUEST: u16 = 1;
const NLM_F_DUMP: u16 = 0x300;

/// An open nfnetlink socket of the calling thread's namespace.
pub struct Reader {
    nl: NlSocket,
    seq: u32,
    buf: Vec<u8>,
}

impl Reader {
    pub fn open() -> Result<Reader, ReadError> {
        let mut nl = NlSocket::new(NETLINK_NETFILTER)?;
        nl.bind_auto()?;
        nl.connect(&SocketAddr::new(0, 0))?;
        Ok(Reader {
            nl,
            seq: 0,
            buf: vec![0; 1 << 16],
        })
    }

    /// The ruleset's generation.
    pub fn generation(&mut self) -> Result<u32, ReadError> {
        let mut gen_id = None;
        self.request(
            NFT_MSG_GETGEN,
            0,
            NLM_F_REQUEST,
            &[],
            &mut |kind, _, attrs| {
                if kind == NFT_MSG_NEWGEN {
                    gen_id = attr(attrs, 1).and_then(be32);
                }
            },
        )?;
        gen_id.ok_or_else(|| ReadError::Io(io::Error::other("no generation in the answer")))
    }

    /// The whole ruleset, consistent: read again if it changed meanwhile.
    pub fn ruleset(&mut self) -> Result<Ruleset, ReadError> {
        if legacy_tables() {
            return Err(ReadError::Legacy);
        }
        for _ in 0..5 {
            let before = self.generation()?;
            let mut ruleset = self.read_all()?;
            if self.generation()? == before {
                ruleset.generation = before;
                return Ok(ruleset);
            }
        }
        Err(ReadError::Io(io::Error::other(
            "the ruleset kept changing while read",
        )))
    }

    fn read_all(&mut self) -> Result<Ruleset, ReadError> {
        let mut tables: Vec<Table> = Vec::new();
        self.dump(NFT_MSG_GETTABLE, 0, &[], &mut |_, family, attrs| {
            if let Some(name) = attr(attrs, 1).map(string) {
                let flags = attr(attrs, 2).and_then(be32).unwrap_or(0);
                tables.push(Table {
                    family: TableFamily::from_nfproto(family),
                    name,
                    dormant: flags & 1 != 0,
                    chains: Vec::new(),
                    sets: Vec::new(),
                });
            }
        })?;
        let mut chains: Vec<(u8, Arc<str>, Chain)> = Vec::new();
        self.dump(NFT_MSG_GETCHAIN, 0, &[], &mut |_, family, attrs| {
            if let Some(c) = parse_chain(family, attrs) {
                chains.push(c);
            }
        })?;
        for (family, table, chain) in chains {
            if let Some(t) = find(&mut tables, family, &table) {
                t.chains.push(chain);
            }
        }
        let mut rules: Vec<(u8, Arc<str>, Arc<str>, Rule)> = Vec::new();
        self.dump(NFT_MSG_GETRULE, 0, &[], &mut |_, family, attrs| {
            if let Some(r) = parse_rule(family, attrs) {
                rules.push(r);
            }
        })?;
        for (family, table, chain, rule) in rules {
            if let Some(c) = find(&mut tables, family, &table)
                .and_then(|t| t.chains.iter_mut().find(|c| c.name == chain))
            {
                c.rules.push(rule);
            }
        }
        let mut sets: Vec<(u8, Arc<str>, Set)> = Vec::new();
        self.dump(NFT_MSG_GETSET, 0, &[], &mut |_, family, attrs| {
            if let Some(s) = parse_set(family, attrs) {
                sets.push(s);
            }
        })?;
        for (family, table, mut set) in sets {
            let mut req = Vec::new();
            put_str(&mut req, 1, &table);
            put_str(&mut req, 2, &set.name);
            let mut raw: Vec<RawElement> = Vec::new();
            self.dump(NFT_MSG_GETSETELEM, family, &req, &mut |_, _, attrs| {
                parse_elements(attrs, &mut raw);
            })?;
            set.elements = elements(raw, set.flags & Set::INTERVAL != 0, set.key_len);
            if let Some(t) = find(&mut tables, family, &table) {
                t.sets.push(set);
            }
        }
        // Held until the ruleset changes: no room grown while reading is
        // kept (a thousand rules' expression lists, half empty, ~0.3 MB).
        tables.shrink_to_fit();
        for t in &mut tables {
            t.chains.shrink_to_fit();
            t.sets.shrink_to_fit();
            for c in &mut t.chains {
                c.rules.shrink_to_fit();
                for r in &mut c.rules {
                    r.exprs.shrink_to_fit();
                }
            }
            for set in &mut t.sets {
                set.elements.shrink_to_fit();
            }
        }
        Ok(Ruleset {
            generation: 0,
            tables,
            routing: Routing::default(),
        })
    }

    fn dump(
        &mut self,
        msg: u16,
        family: u8,
        attrs: &[u8],
        each: &mut dyn FnMut(u16, u8, &[u8]),
    ) -> Result<(), ReadError> {
        self.request(msg, family, NLM_F_REQUEST | NLM_F_DUMP, attrs, each)
    }

    /// Sends one request and feeds each answer (message kind, family,
    /// attributes) to `each` until the kernel says done (or, for a plain
    /// request, after the one answer).
    fn request(
        &mut self,
        msg: u16,
        family: u8,
        flags: u16,
        attrs: &[u8],
        each: &mut dyn FnMut(u16, u8, &[u8]),
    ) -> Result<(), ReadError> {
        self.seq = self.seq.wrapping_add(1);
        let len = 16 + 4 + attrs.len();
        let mut req = Vec::with_capacity(len);
        req.extend_from_slice(&(len as u32).to_ne_bytes());
        req.extend_from_slice(&((NFNL_SUBSYS_NFTABLES << 8) | msg).to_ne_bytes());
        req.extend_from_slice(&flags.to_ne_bytes());
        req.extend_from_slice(&self.seq.to_ne_bytes());
        req.extend_from_slice(&0u32.to_ne_bytes());
        req.extend_from_slice(&[family, 0, 0, 0]);
        req.extend_from_slice(attrs);
        self.nl.send(&req, 0)?;
        let dump = flags & NLM_F_DUMP != 0;
        loop {
            let size = self.nl.recv(&mut &mut self.buf[..], 0)?;
            if size == 0 {
                return Err(ReadError::Io(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "netlink closed mid-dump",
                )));
            }
            match walk(&self.buf[..size], self.seq, each)? {
                Walked::Done => return Ok(()),
                Walked::More if !dump => return Ok(()),
                Walked::More => {}
            }
        }
    }
}

enum Walked {
    Done,
    More,
}

/// Walks one datagram of answers. Pure: the kernel's bytes are checked as
/// any input is.
fn walk(
    datagram: &[u8],
    seq: u32,
    each: &mut dyn FnMut(u16, u8, &[u8]),
) -> Result<Walked, ReadError> {
    for m in super::netlink::messages(datagram)? {
        if m.seq != seq {
            continue;
        }
        match m.kind {
            NLMSG_DONE => return Ok(Walked::Done),
            NLMSG_ERROR => {
                return match super::netlink::error(m.payload) {
                    None => Ok(Walked::Done),
                    Some(e) => Err(e.into()),
                };
            }
            k if k >> 8 == NFNL_SUBSYS_NFTABLES && m.payload.len() >= 4 => {
                each(k & 0xff, m.payload[0], &m.payload[4..]);
            }
            _ => {}
        }
    }
    Ok(Walked::More)
}

fn find<'t>(tables: &'t mut [Table], family: u8, name: &str) -> Option<&'t mut Table> {
    tables
        .iter_mut()
        .find(|t| t.family.nfproto() == family && &*t.name == name)
}

/// Whether this namespace has iptables-legacy tables.
fn legacy_tables() -> bool {
    [
        "/proc/thread-self/net/ip_tables_names",
        "/proc/thread-self/net/ip6_tables_names",
    ]
    .iter()
    .any(|p| std::fs::read_to_string(p).is_ok_and(|s| !s.trim().is_empty()))
}

/// Attributes of a netlink attribute list: (type without flags, payload).
pub fn attrs(mut buf: &[u8]) -> impl Iterator<Item = (u16, &[u8])> {
    std::iter::from_fn(move || {
        if buf.len() < 4 {
            return None;
        }
        let len = usize::from(u16::from_ne_bytes([buf[0], buf[1]]));
        let ty = u16::from_ne_bytes([buf[2], buf[3]]) & 0x3fff;
        if len < 4 || len > buf.len() {
            buf = &[];
            return None;
        }
        let payload = &buf[4..len];
        buf = buf.get(len.next_multiple_of(4)..).unwrap_or_default();
        Some((ty, payload))
    })
}

fn attr(buf: &[u8], kind: u16) -> Option<&[u8]> {
    attrs(buf).find(|(t, _)| *t == kind).map(|(_, p)| p)
}

fn be32(b: &[u8]) -> Option<u32> {
    Some(u32::from_be_bytes(b.get(..4)?.try_into().ok()?))
}

fn be64(b: &[u8]) -> Option<u64> {
    Some(u64::from_be_bytes(b.get(..8)?.try_into().ok()?))
}

fn string(b: &[u8]) -> Arc<str> {
    let end = b.iter().position(|c| *c == 0).unwrap_or(b.len());
    String::from_utf8_lossy(&b[..end]).into()
}

fn put_str(buf: &mut Vec<u8>, kind: u16, s: &str) {
    let len = 4 + s.len() + 1;
    buf.extend_from_slice(&(len as u16).to_ne_bytes());
    buf.extend_from_slice(&kind.to_ne_bytes());
    buf.extend_from_slice(s.as_bytes());
    buf.push(0);
    buf.resize(buf.len().next_multiple_of(4), 0);
}

fn parse_chain(family: u8, a: &[u8]) -> Option<(u8, Arc<str>, Chain)> {
    let table = string(attr(a, 1)?);
    let name = string(attr(a, 3)?);
    let handle = attr(a, 2).and_then(be64).unwrap_or(0);
    let base = attr(a, 4).map(|hook| {
        let fam = TableFamily::from_nfproto(family);
        BaseHook {
            hook: Hook::from_hooknum(fam, attr(hook, 1).and_then(be32).unwrap_or(u32::MAX)),
            priority: attr(hook, 2).and_then(be32).unwrap_or(0) as i32,
            kind: attr(a, 7).map(string).unwrap_or_else(|| "filter".into()),
            policy_drop: attr(a, 5).and_then(be32) == Some(0),
        }
    });
    Some((
        family,
        table,
        Chain {
            name,
            handle,
            base,
            rules: Vec::new(),
        },
    ))
}

fn parse_rule(family: u8, a: &[u8]) -> Option<(u8, Arc<str>, Arc<str>, Rule)> {
    let table = string(attr(a, 1)?);
    let chain = string(attr(a, 2)?);
    let handle = attr(a, 3).and_then(be64).unwrap_or(0);
    let exprs = attr(a, 4)
        .map(|list| {
            attrs(list)
                .filter(|(t, _)| *t == 1)
                .map(|(_, e)| parse_expr(e))
                .collect()
        })
        .unwrap_or_default();
    Some((family, table, chain, Rule { handle, exprs }))
}

/// An `NFTA_DATA` attribute: a value or a verdict.
fn parse_data(a: &[u8]) -> Option<Data> {
    if let Some(v) = attr(a, 1) {
        return Some(Data::Value(v.to_vec()));
    }
    let v = attr(a, 2)?;
    let code = attr(v, 1).and_then(be32)? as i32;
    let chain = attr(v, 2).map(string);
    Some(Data::Verdict(match (code, chain) {
        (0, _) => Verdict::Drop,
        (1, _) => Verdict::Accept,
        (-1, _) => Verdict::Continue,
        (-2, _) => Verdict::Break,
        (-3, Some(c)) => Verdict::Jump(c),
        (-4, Some(c)) => Verdict::Goto(c),
        (-5, _) => Verdict::Return,
        (code, _) => Verdict::Other(code),
    }))
}

fn value(a: &[u8], kind: u16) -> Vec<u8> {
    match attr(a, kind).and_then(parse_data) {
        Some(Data::Value(v)) => v,
        _ => Vec::new(),
    }
}

fn parse_expr(e: &[u8]) -> Expr {
    let name = attr(e, 1).map(string).unwrap_or_else(|| "".into());
    let d = attr(e, 2).unwrap_or_default();
    let u = |k: u16| attr(d, k).and_then(be32);
    let unknown = || Expr::Unknown(Arc::clone(&name));
    match &*name {
        "payload" if u(5).is_some() => Expr::PayloadSet,
        "payload" => {
            let (Some(dreg), Some(base), Some(offset), Some(len)) = (u(1), u(2), u(3), u(4)) else {
                return unknown();
            };
            Expr::Payload {
                base: match base {
                    0 => PayloadBase::Link,
                    1 => PayloadBase::Network,
                    2 => PayloadBase::Transport,
                    n => PayloadBase::Other(n),
                },
                offset,
                len,
                dreg,
            }
        }
        "meta" => match (u(1), u(2), u(3)) {
            (Some(dreg), Some(key), _) => Expr::Meta { key, dreg },
            (None, Some(key), Some(_)) => Expr::MetaSet { key },
            _ => unknown(),
        },
        "cmp" => match (u(1), u(2)) {
            (Some(sreg), Some(op)) => Expr::Cmp {
                sreg,
                op: match op {
                    0 => CmpOp::Eq,
                    1 => CmpOp::Neq,
                    2 => CmpOp::Lt,
                    3 => CmpOp::Lte,
                    4 => CmpOp::Gt,
                    5 => CmpOp::Gte,
                    _ => return unknown(),
                },
                data: value(d, 3),
            },
            _ => unknown(),
        },
        "bitwise" => match (u(1), u(2), u(3)) {
            (Some(sreg), Some(dreg), Some(len)) => Expr::Bitwise {
                sreg,
                dreg,
                len,
                mask: value(d, 4),
                xor: value(d, 5),
                other_op: u(6).is_some_and(|op| op != 0),
            },
            _ => unknown(),
        },
        "lookup" => match (attr(d, 1).map(string), u(2)) {
            (Some(set), Some(sreg)) => Expr::Lookup {
                set,
                sreg,
                dreg: u(3),
                invert: u(5).is_some_and(|f| f & 1 != 0),
            },
            _ => unknown(),
        },
        "immediate" => match (u(1), attr(d, 2).and_then(parse_data)) {
            (Some(dreg), Some(data)) => Expr::Immediate { dreg, data },
            _ => unknown(),
        },
        "range" => match (u(1), u(2)) {
            (Some(sreg), Some(op)) => Expr::Range {
                sreg,
                negate: op == 1,
                from: value(d, 3),
                to: value(d, 4),
            },
            _ => unknown(),
        },
        "ct" => match (u(1), u(2), u(4)) {
            (Some(dreg), Some(key), _) => Expr::Ct { key, dreg },
            (None, Some(_), Some(_)) => Expr::CtSet,
            _ => unknown(),
        },
        "fib" => match (u(1), u(2), u(3)) {
            (Some(dreg), Some(result), Some(flags)) => Expr::Fib {
                result,
                flags,
                dreg,
            },
            _ => unknown(),
        },
        "reject" => Expr::Reject,
        "nat" => match u(1) {
            Some(t) => Expr::Nat {
                dnat: t == 1,
                family: u(2).unwrap_or(0) as u8,
                addr_min: u(3),
                addr_max: u(4),
                proto_min: u(5),
                proto_max: u(6),
            },
            None => unknown(),
        },
        "match" | "target" => {
            let xt = attr(d, 1).map(string).unwrap_or_else(|| "".into());
            let rev = u(2).unwrap_or(0);
            let info = attr(d, 3).unwrap_or_default().to_vec();
            if &*name == "match" {
                Expr::Match {
                    name: xt,
                    rev,
                    info,
                }
            } else {
                Expr::Target {
                    name: xt,
                    rev,
                    info,
                }
            }
        }
        // Counting and logging let the packet on; so does masquerading,
        // which only postrouting does.
        "counter" | "log" | "notrack" | "last" | "masq" => Expr::Pass(name),
        // A named counter; other named objects (quotas, limits) decide.
        "objref" if u(1) == Some(1) => Expr::Pass(name),
        _ => unknown(),
    }
}

fn parse_set(family: u8, a: &[u8]) -> Option<(u8, Arc<str>, Set)> {
    let table = string(attr(a, 1)?);
    let name = string(attr(a, 2)?);
    Some((
        family,
        table,
        Set {
            name,
            flags: attr(a, 3).and_then(be32).unwrap_or(0),
            key_len: attr(a, 5).and_then(be32).unwrap_or(0),
            elements: Vec::new(),
        },
    ))
}

/// A set element as the kernel lists it.
#[derive(Debug, Clone)]
struct RawElement {
    key: Vec<u8>,
    key_end: Option<Vec<u8>>,
    data: Option<Data>,
    interval_end: bool,
}

fn parse_elements(a: &[u8], out: &mut Vec<RawElement>) {
    let Some(list) = attr(a, 3) else { return };
    for (_, e) in attrs(list).filter(|(t, _)| *t == 1) {
        let key = value(e, 1);
        out.push(RawElement {
            key,
            key_end: attr(e, 9).and_then(parse_data).and_then(|d| match d {
                Data::Value(v) => Some(v),
                Data::Verdict(_) => None,
            }),
            data: attr(e, 2).and_then(parse_data),
            interval_end: attr(e, 3).and_then(be32).is_some_and(|f| f & 1 != 0),
        });
    }
}

/// Elements as inclusive intervals. An interval set held in a tree lists
/// each interval as its start and, flagged, the value after its end; one
/// held with ranges (concatenations) gives the end itself.
fn elements(mut raw: Vec<RawElement>, interval: bool, key_len: u32) -> Vec<Element> {
    if !interval || raw.iter().any(|e| e.key_end.is_some()) {
        return raw
            .into_iter()
            .filter(|e| !e.interval_end)
            .map(|e| Element {
                key: e.key,
                key_end: e.key_end,
                data: e.data,
            })
            .collect();
    }
    raw.sort_by(|a, b| a.key.cmp(&b.key).then(b.interval_end.cmp(&a.interval_end)));
    let mut out = Vec::new();
    for (i, e) in raw.iter().enumerate() {
        if e.interval_end {
            continue;
        }
        let end = match raw.get(i + 1) {
            Some(next) if next.interval_end => before(&next.key),
            // Open to the top.
            _ => vec![0xff; e.key.len().max(key_len as usize)],
        };
        out.push(Element {
            key: e.key.clone(),
            key_end: Some(end),
            data: e.data.clone(),
        });
    }
    out
}

/// The big-endian value one less.
fn before(v: &[u8]) -> Vec<u8> {
    let mut out = v.to_vec();
    for b in out.iter_mut().rev() {
        if *b == 0 {
            *b = 0xff;
        } else {
            *b -= 1;
            break;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(key: &[u8], end: bool) -> RawElement {
        RawElement {
            key: key.to_vec(),
            key_end: None,
            data: None,
            interval_end: end,
        }
    }

    #[test]
    fn tree_intervals_become_inclusive_ranges() {
        // {10.0.0.0/8, 192.168.1.1}, listed as the kernel does, highest first.
        let listed = vec![
            raw(&[192, 168, 1, 2], true),
            raw(&[192, 168, 1, 1], false),
            raw(&[11, 0, 0, 0], true),
            raw(&[10, 0, 0, 0], false),
        ];
        let e = elements(listed, true, 4);
        assert_eq!(e.len(), 2);
        assert_eq!(e[0].key, [10, 0, 0, 0]);
        assert_eq!(e[0].key_end.as_deref(), Some(&[10, 255, 255, 255][..]));
        assert_eq!(e[1].key_end.as_deref(), Some(&[192, 168, 1, 1][..]));
        // An interval to the top has no end element.
        let e = elements(vec![raw(&[0, 0, 4, 0], false)], true, 4);
        assert_eq!(e[0].key_end.as_deref(), Some(&[255, 255, 255, 255][..]));
    }

    #[test]
    fn attributes_walk_stops_at_a_malformed_one() {
        let mut buf = Vec::new();
        put_str(&mut buf, 1, "filter");
        put_str(&mut buf, 2, "input");
        buf.extend_from_slice(&[200, 0, 3, 0]);
        let got: Vec<(u16, Arc<str>)> = attrs(&buf).map(|(t, p)| (t, string(p))).collect();
        assert_eq!(got, [(1, "filter".into()), (2, "input".into())]);
    }
}
