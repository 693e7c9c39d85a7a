//! A firewall ruleset as nftables holds it: tables of chains of rules,
//! each rule a list of expressions over registers, and the sets and maps
//! the rules look things up in. Read by the platform's discovery (over
//! nfnetlink on Linux); evaluated by [`super::eval`]. Values are kept as
//! the kernel holds them (network byte order for packet fields, host
//! order for meta and conntrack keys).

use std::sync::Arc;

/// Netfilter's protocol families (`NFPROTO_*`), as tables have them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum TableFamily {
    Inet,
    Ip,
    Ip6,
    Netdev,
    Arp,
    Bridge,
    Other(u8),
}

impl TableFamily {
    pub fn from_nfproto(n: u8) -> TableFamily {
        match n {
            1 => TableFamily::Inet,
            2 => TableFamily::Ip,
            3 => TableFamily::Arp,
            5 => TableFamily::Netdev,
            7 => TableFamily::Bridge,
            10 => TableFamily::Ip6,
            n => TableFamily::Other(n),
        }
    }

    pub fn nfproto(self) -> u8 {
        match self {
            TableFamily::Inet => 1,
            TableFamily::Ip => 2,
            TableFamily::Arp => 3,
            TableFamily::Netdev => 5,
            TableFamily::Bridge => 7,
            TableFamily::Ip6 => 10,
            TableFamily::Other(n) => n,
        }
    }

    /// As `nft list ruleset` names it.
    pub fn as_str(self) -> &'static str {
        match self {
            TableFamily::Inet => "inet",
            TableFamily::Ip => "ip",
            TableFamily::Ip6 => "ip6",
            TableFamily::Netdev => "netdev",
            TableFamily::Arp => "arp",
            TableFamily::Bridge => "bridge",
            TableFamily::Other(_) => "unknown",
        }
    }
}

/// The hooks a packet for this host passes (`NF_INET_*`; netdev's ingress
/// is its hook 0 in its own family).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Hook {
    Prerouting,
    Input,
    Forward,
    Output,
    Postrouting,
    Ingress,
    Other(u32),
}

impl Hook {
    pub fn from_hooknum(family: TableFamily, n: u32) -> Hook {
        match (family, n) {
            (TableFamily::Netdev, 0) => Hook::Ingress,
            (TableFamily::Netdev, n) => Hook::Other(n),
            (_, 0) => Hook::Prerouting,
            (_, 1) => Hook::Input,
            (_, 2) => Hook::Forward,
            (_, 3) => Hook::Output,
            (_, 4) => Hook::Postrouting,
            (_, 5) => Hook::Ingress,
            (_, n) => Hook::Other(n),
        }
    }
}

/// What makes a chain a base chain: the hook it is attached to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BaseHook {
    pub hook: Hook,
    pub priority: i32,
    /// `filter`, `nat` or `route`.
    pub kind: Arc<str>,
    /// Accept unless the policy says drop.
    pub policy_drop: bool,
}

/// A verdict as rules and maps hold it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Accept,
    Drop,
    Continue,
    Break,
    Return,
    Jump(Arc<str>),
    Goto(Arc<str>),
    /// Queue, stolen, repeat, stop: the packet leaves the ruleset.
    Other(i32),
}

/// A value in a rule or a set: bytes, or a verdict.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Data {
    Value(Vec<u8>),
    Verdict(Verdict),
}

/// An expression's comparison (`NFT_CMP_*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CmpOp {
    Eq,
    Neq,
    Lt,
    Lte,
    Gt,
    Gte,
}

/// Where a payload load reads (`NFT_PAYLOAD_*_HEADER`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PayloadBase {
    Link,
    Network,
    Transport,
    Other(u32),
}

/// One expression of a rule. Registers are numbered as the kernel's
/// 32-bit registers: 0 is the verdict, 1–4 are the 16-byte registers
/// (words 4, 8, 12, 16), 8–23 the 4-byte ones (words 4–19).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Expr {
    Payload {
        base: PayloadBase,
        offset: u32,
        len: u32,
        dreg: u32,
    },
    /// A payload write (mangling): changes nothing this evaluation reads.
    PayloadSet,
    Meta {
        key: u32,
        dreg: u32,
    },
    /// `meta … set`: sets a packet's mark, priority…
    MetaSet {
        key: u32,
    },
    Cmp {
        sreg: u32,
        op: CmpOp,
        data: Vec<u8>,
    },
    Bitwise {
        sreg: u32,
        dreg: u32,
        len: u32,
        mask: Vec<u8>,
        xor: Vec<u8>,
        /// Shifts and other operations: not a mask-and-xor.
        other_op: bool,
    },
    Lookup {
        set: Arc<str>,
        sreg: u32,
        dreg: Option<u32>,
        invert: bool,
    },
    Immediate {
        dreg: u32,
        data: Data,
    },
    Range {
        sreg: u32,
        negate: bool,
        from: Vec<u8>,
        to: Vec<u8>,
    },
    Ct {
        key: u32,
        dreg: u32,
    },
    /// `ct … set`.
    CtSet,
    Fib {
        result: u32,
        flags: u32,
        dreg: u32,
    },
    /// `reject`: the packet is dropped (with an answer).
    Reject,
    Nat {
        dnat: bool,
        family: u8,
        addr_min: Option<u32>,
        addr_max: Option<u32>,
        proto_min: Option<u32>,
        proto_max: Option<u32>,
    },
    /// An iptables match through the compat layer: its name, revision
    /// and the xtables structure as bytes.
    Match {
        name: Arc<str>,
        rev: u32,
        info: Vec<u8>,
    },
    /// An iptables target through the compat layer.
    Target {
        name: Arc<str>,
        rev: u32,
        info: Vec<u8>,
    },
    /// Counts or logs and lets the packet on: `counter`, `log`, `notrack`.
    Pass(Arc<str>),
    /// Anything else, by its name: the evaluator cannot decide past it.
    Unknown(Arc<str>),
}

/// A rule: its handle (as `nft -a` shows) and expressions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    pub handle: u64,
    pub exprs: Vec<Expr>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chain {
    pub name: Arc<str>,
    pub handle: u64,
    pub base: Option<BaseHook>,
    pub rules: Vec<Rule>,
}

/// One element of a set: a key, or an interval of keys (inclusive), and
/// for a map the data it maps to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Element {
    pub key: Vec<u8>,
    /// The last key of an interval, inclusive.
    pub key_end: Option<Vec<u8>>,
    pub data: Option<Data>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Set {
    pub name: Arc<str>,
    pub flags: u32,
    pub key_len: u32,
    pub elements: Vec<Element>,
}

impl Set {
    pub const INTERVAL: u32 = 0x4;
    pub const MAP: u32 = 0x8;
    pub const TIMEOUT: u32 = 0x10;
    /// Updated from the packet path (`add @set`, meters): what it holds
    /// changes with traffic.
    pub const EVAL: u32 = 0x20;
    pub const OBJECT: u32 = 0x40;
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Table {
    pub family: TableFamily,
    pub name: Arc<str>,
    /// `NFT_TABLE_F_DORMANT`: present but not attached.
    pub dormant: bool,
    pub chains: Vec<Chain>,
    pub sets: Vec<Set>,
}

impl Table {
    pub fn chain(&self, name: &str) -> Option<&Chain> {
        self.chains.iter().find(|c| &*c.name == name)
    }

    pub fn set(&self, name: &str) -> Option<&Set> {
        self.sets.iter().find(|s| &*s.name == name)
    }
}

/// A namespace's whole ruleset at one generation.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Ruleset {
    /// nftables' generation: it changes with every committed change.
    pub generation: u32,
    pub tables: Vec<Table>,
    /// Where the namespace sends what its DNAT rules rewrite.
    pub routing: Routing,
}

/// What decides where a rewritten (DNAT) connection goes after
/// prerouting: the route to each address the rules rewrite to, and
/// whether the namespace forwards at all. Read beside the ruleset.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Routing {
    pub routes: Vec<Route>,
    /// `net.ipv4.ip_forward`, `net.ipv6.conf.all.forwarding`.
    pub forward_v4: bool,
    pub forward_v6: bool,
}

impl Routing {
    pub fn route(&self, to: std::net::IpAddr) -> Option<&RouteTo> {
        self.routes.iter().find(|r| r.to == to).map(|r| &r.via)
    }
}

/// The namespace's route to one address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    pub to: std::net::IpAddr,
    pub via: RouteTo,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RouteTo {
    /// One of the namespace's own addresses: the input hook.
    Local,
    /// Out of an interface: the forward hook.
    Out { ifname: Arc<str>, ifindex: u32 },
    /// No route (unreachable, blackhole, prohibit), and the kernel's word.
    Nowhere(Arc<str>),
}
