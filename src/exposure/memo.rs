//! Verdicts kept between passes: a socket's is made again only when it is
//! new or its namespace's ruleset changed. Each namespace keeps its
//! distinct verdicts once (a busy host has thousands of sockets and a
//! handful of verdicts) and, per socket, the index of its own.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;

use super::{Evaluator, Exposure, Firewall, Probe};
use crate::model::{Port, Proto};

/// A socket, as its verdict depends on it (the family is the address's).
type SocketKey = (Proto, IpAddr, u16);

#[derive(Debug, Default)]
pub struct Memo {
    namespaces: HashMap<Arc<str>, Namespace>,
    /// `local`, and the verdicts of namespaces whose ruleset could not be
    /// read, by reason.
    unreadable: Vec<Arc<Exposure>>,
    /// Counts passes: what a pass did not see is forgotten after it.
    pass: u32,
    /// Reasons already logged: each is logged once.
    warned: Vec<Arc<str>>,
}

#[derive(Debug)]
struct Namespace {
    generation: u32,
    evaluator: Evaluator,
    /// No rule on the hooks a packet for this host passes: all open.
    empty: bool,
    verdicts: Vec<Arc<Exposure>>,
    /// Index into `verdicts`, and the pass that last saw the socket.
    sockets: HashMap<SocketKey, (u16, u32)>,
    seen: u32,
}

impl Namespace {
    fn of(rules: &Arc<super::ruleset::Ruleset>) -> Namespace {
        Namespace {
            generation: rules.generation,
            evaluator: Evaluator::new(Arc::clone(rules)),
            empty: !super::eval::any_rule_applies(rules),
            verdicts: Vec::new(),
            sockets: HashMap::new(),
            seen: 0,
        }
    }
}

impl Memo {
    /// Gives each port its verdict; `firewall(namespace)` is the ruleset
    /// read in it this pass.
    pub fn judge<'f>(
        &mut self,
        ports: &mut [Port],
        firewall: impl Fn(&str) -> Option<&'f Firewall>,
    ) {
        self.pass = self.pass.wrapping_add(1);
        let pass = self.pass;
        for p in ports.iter_mut() {
            let s = &p.socket;
            let probe = Probe {
                proto: s.proto,
                family: s.family,
                daddr: (!s.address.is_unspecified()).then_some(s.address),
                dport: s.port,
            };
            let rules = match firewall(&p.namespace) {
                None => continue,
                // Loopback needs no ruleset to say.
                Some(_) if probe.is_local() => {
                    p.exposure = Some(intern(&mut self.unreadable, Exposure::Local).1);
                    continue;
                }
                Some(Firewall::Unreadable(why)) => {
                    if !self.warned.contains(why) {
                        self.warned.push(Arc::clone(why));
                        tracing::warn!(
                            reason = %why,
                            "cannot read the firewall ruleset: the exposure of every port in this namespace is unknown; logged once"
                        );
                    }
                    let unknown = Exposure::Unknown {
                        reason: why.to_string(),
                    };
                    p.exposure = Some(intern(&mut self.unreadable, unknown).1);
                    continue;
                }
                Some(Firewall::Rules(rules)) => rules,
            };
            let ns = self
                .namespaces
                .entry(Arc::clone(&p.namespace))
                .or_insert_with(|| Namespace::of(rules));
            if ns.generation != rules.generation || !Arc::ptr_eq(ns.evaluator.ruleset(), rules) {
                *ns = Namespace::of(rules);
            }
            ns.seen = pass;
            if ns.empty {
                // Only loopback or open: nothing to remember per socket.
                p.exposure = Some(intern(&mut ns.verdicts, ns.evaluator.evaluate(&probe)).1);
                continue;
            }
            let s = &p.socket;
            let key = (s.proto, s.address, s.port);
            let verdict = match ns.sockets.get_mut(&key) {
                Some((index, seen)) => {
                    *seen = pass;
                    Arc::clone(&ns.verdicts[usize::from(*index)])
                }
                None => {
                    let (index, verdict) = intern(&mut ns.verdicts, ns.evaluator.evaluate(&probe));
                    ns.sockets.insert(key, (index, pass));
                    verdict
                }
            };
            p.exposure = Some(verdict);
        }
        self.namespaces.retain(|_, ns| ns.seen == pass);
        for ns in self.namespaces.values_mut() {
            ns.sockets.retain(|_, (_, seen)| *seen == pass);
        }
    }
}

/// The shared copy of `verdict`, and its index.
fn intern(verdicts: &mut Vec<Arc<Exposure>>, verdict: Exposure) -> (u16, Arc<Exposure>) {
    if let Some(i) = verdicts.iter().position(|v| **v == verdict) {
        return (i as u16, Arc::clone(&verdicts[i]));
    }
    let shared = Arc::new(verdict);
    // Past u16's range (never seen), the oldest index is reused: the
    // verdict is still right for this pass, the memo only forgets more.
    if verdicts.len() < usize::from(u16::MAX) {
        verdicts.push(Arc::clone(&shared));
        return ((verdicts.len() - 1) as u16, shared);
    }
    verdicts[0] = Arc::clone(&shared);
    (0, shared)
}
