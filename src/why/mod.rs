//! `portwarden why`: the "port unreachable" fault tree, walked in order:
//! something listens (in any namespace)? on an address and stack the
//! client can use? its owner running? taking connections? let in by the
//! firewall? alone on its port? The walk stops at the first step that is
//! broken and marks the steps after it "not checked": a second guess
//! built on a broken step would mislead. A step that lacks a privilege
//! says `unknown` and the walk goes on.
//!
//! [`walk`] is pure: [`Facts`] in (gathered once by `cli::why`, the same
//! reads as `ls`), an [`Answer`] out.

use std::net::IpAddr;

use serde::Serialize;

use crate::discover::runstate::RunState;
use crate::discover::systemd::{JournalLine, UnitState};
use crate::exposure::Exposure;
use crate::model::{AcceptQueue, Family, Proto};

mod question;

pub use question::{Client, Question};

/// An owner of a listener, as `why` looks at it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct OwnerFacts {
    pub pid: u32,
    pub process_name: String,
    pub exe_path: String,
    /// The unit as people read it.
    pub unit: Option<String>,
    /// `None`: gone or unreadable.
    pub state: Option<RunState>,
    /// `Some(Some(cgroup))`: frozen; `Some(None)`: not; `None`: cannot tell.
    pub frozen: Option<Option<String>>,
}

impl OwnerFacts {
    fn who(&self) -> String {
        let unit = self
            .unit
            .as_ref()
            .map(|u| format!(", {u}"))
            .unwrap_or_default();
        format!("{} (pid {}{unit})", self.process_name, self.pid)
    }

    /// Why it cannot take work, when it cannot.
    fn halted(&self) -> Option<String> {
        if let Some(Some(cgroup)) = &self.frozen {
            return Some(format!("frozen (its cgroup {cgroup} is frozen)"));
        }
        self.state
            .filter(|s| s.is_halted())
            .map(|s| s.words().to_string())
    }
}

/// What a connect to the listener did.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Connect {
    pub target: std::net::SocketAddr,
    pub alive: bool,
    pub seconds: f64,
    /// Why not, when it failed.
    pub error: Option<String>,
}

/// One listening socket on the asked port.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Listener {
    pub address: IpAddr,
    pub family: Family,
    pub v6only: Option<bool>,
    /// The device it is bound to (`SO_BINDTODEVICE`).
    pub device: Option<String>,
    /// The namespace's label (`host`, a container id, `netns:…`).
    pub netns: String,
    /// In the host's own namespace.
    pub host: bool,
    pub owners: Vec<OwnerFacts>,
    /// Why no owner is known, when none is.
    pub owner_unknown: Option<String>,
    /// The accept queue at the listing and a moment later.
    pub queue: Option<AcceptQueue>,
    pub queue_again: Option<AcceptQueue>,
    pub connect: Option<Connect>,
    pub exposure: Option<Exposure>,
}

impl Listener {
    fn address_text(&self) -> String {
        match self.address {
            IpAddr::V6(a) => format!("[{a}]"),
            a => a.to_string(),
        }
    }

    fn line(&self, proto: Proto, port: u16) -> String {
        let mut s = format!("{proto} {}:{port}", self.address_text());
        if self.v6only == Some(true) && self.address.is_unspecified() {
            s.push_str(" (IPv6 only)");
        }
        if let Some(d) = &self.device {
            s.push_str(&format!(" bound to device {d}"));
        }
        if !self.host {
            s.push_str(&format!(" in {}", self.netns));
        }
        match (self.owners.first(), &self.owner_unknown) {
            (Some(o), _) => {
                s.push_str(&format!(", held by {}", o.who()));
                if self.owners.len() > 1 {
                    s.push_str(&format!(" and {} more", self.owners.len() - 1));
                }
            }
            (None, Some(why)) => s.push_str(&format!(", owner unknown ({why})")),
            (None, None) => s.push_str(", owner unknown"),
        }
        s
    }

    /// Whether `client` can reach it by address; why not when it cannot.
    fn admits(&self, client: &Client) -> Result<(), String> {
        let loopback = self.address.is_loopback();
        if let Some(dev) = &self.device {
            let local_client = matches!(client, Client::Localhost)
                || matches!(client, Client::Address(a) if a.is_loopback());
            if dev == "lo" && !local_client {
                return Err(format!("bound to device {dev}: only this host reaches it"));
            }
            if dev != "lo" && local_client {
                return Err(format!(
                    "bound to device {dev}: connections over loopback are not taken"
                ));
            }
        }
        match client {
            Client::Remote => match loopback {
                true => Err("loopback: only this host reaches it".into()),
                false => Ok(()),
            },
            Client::Localhost => match loopback || self.address.is_unspecified() {
                true => Ok(()),
                false => Err(format!("bound to {} only", self.address)),
            },
            Client::Address(a) => {
                let same_family = a.is_ipv4() == self.address.is_ipv4();
                if self.address == *a || (self.address.is_unspecified() && same_family) {
                    return Ok(());
                }
                if self.address.is_unspecified() && a.is_ipv4() {
                    // [::] takes IPv4 too unless it is IPv6-only.
                    return match self.v6only {
                        Some(true) => {
                            Err("IPv6 only (IPV6_V6ONLY): IPv4 clients are refused".into())
                        }
                        _ => Ok(()),
                    };
                }
                Err(format!("bound to {} only", self.address))
            }
        }
    }
}

/// A baseline entry for the asked port.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ExpectedFact {
    pub netns: String,
    pub process_name: String,
    pub exe_path: String,
    /// When it became expected (seconds since the epoch).
    pub since: u64,
}

/// A recorded change of the asked port (the exporter's record).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PastEvent {
    /// RFC 3339, as recorded.
    pub at: String,
    pub action: String,
    pub address: String,
    pub netns: String,
    pub pid: Option<u32>,
    pub process_name: Option<String>,
    pub unit: Option<String>,
}

impl PastEvent {
    fn line(&self) -> String {
        let who = match (&self.process_name, self.pid) {
            (Some(name), Some(pid)) => {
                let unit = self
                    .unit
                    .as_ref()
                    .map(|u| format!(", {u}"))
                    .unwrap_or_default();
                format!("{name} (pid {pid}{unit})")
            }
            _ => "an owner unknown".into(),
        };
        let place = match self.netns.as_str() {
            "host" | "" => self.address.clone(),
            netns => format!("{} in {netns}", self.address),
        };
        match self.action.as_str() {
            "port_closed" => format!("{}: {place} closed, held by {who}", self.at),
            "port_opened" => format!("{}: {place} opened by {who}", self.at),
            "owner_changed" => format!("{}: {place} taken over by {who}", self.at),
            other => format!("{}: {place} {other}, {who}", self.at),
        }
    }
}

/// The unit that should hold the port, and what systemd says of it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct UnitFacts {
    pub name: String,
    pub state: Result<UnitState, String>,
    pub journal: Result<Vec<JournalLine>, String>,
}

/// A conflict on the asked port.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ConflictFact {
    pub kind: &'static str,
    pub netns: String,
    pub detail: String,
}

/// Everything the walk looks at.
#[derive(Debug, Clone, PartialEq)]
pub struct Facts {
    pub question: Question,
    /// The sockets on the asked protocol and port, every namespace.
    pub listeners: Vec<Listener>,
    /// The same port number on the other protocol (`udp 0.0.0.0:53`).
    pub other_proto: Vec<String>,
    pub expected: Vec<ExpectedFact>,
    /// Oldest first.
    pub events: Vec<PastEvent>,
    /// Asked only when nothing listens.
    pub unit: Option<UnitFacts>,
    pub conflicts: Vec<ConflictFact>,
}

/// The steps, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Step {
    Listening,
    Address,
    Owner,
    Accepting,
    Exposure,
    Conflicts,
}

impl Step {
    pub const ALL: [Step; 6] = [
        Step::Listening,
        Step::Address,
        Step::Owner,
        Step::Accepting,
        Step::Exposure,
        Step::Conflicts,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Step::Listening => "listening",
            Step::Address => "address",
            Step::Owner => "owner",
            Step::Accepting => "accepting",
            Step::Exposure => "exposure",
            Step::Conflicts => "conflicts",
        }
    }
}

/// What a step found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Ok,
    Problem,
    /// Could not tell (a privilege we lack, a reading we could not make).
    Unknown,
    NotChecked,
}

/// One step's finding.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StepAnswer {
    pub step: Step,
    pub status: Status,
    /// One line.
    pub summary: String,
    pub evidence: Vec<String>,
}

/// The whole answer.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Answer {
    pub question: String,
    pub proto: Proto,
    pub port: u16,
    /// The first line: what is wrong, or that nothing is.
    pub verdict: String,
    pub healthy: bool,
    /// The step that found the problem.
    pub stopped_at: Option<Step>,
    pub steps: Vec<StepAnswer>,
    /// What to do about it.
    pub hint: Option<String>,
}

/// A step's outcome inside the walk.
struct Found {
    status: Status,
    summary: String,
    evidence: Vec<String>,
    /// For a problem: the verdict line's tail and the fix.
    verdict: Option<String>,
    hint: Option<String>,
}

impl Found {
    fn ok(summary: impl Into<String>, evidence: Vec<String>) -> Found {
        Found {
            status: Status::Ok,
            summary: summary.into(),
            evidence,
            verdict: None,
            hint: None,
        }
    }

    fn unknown(summary: impl Into<String>, evidence: Vec<String>) -> Found {
        Found {
            status: Status::Unknown,
            ..Found::ok(summary, evidence)
        }
    }

    fn problem(verdict: String, evidence: Vec<String>, hint: Option<String>) -> Found {
        Found {
            status: Status::Problem,
            summary: verdict.clone(),
            evidence,
            verdict: Some(verdict),
            hint,
        }
    }
}

fn list(addresses: &[&Listener]) -> String {
    let mut out: Vec<String> = addresses.iter().map(|l| l.address_text()).collect();
    out.dedup();
    out.join(", ")
}

/// Walks the tree over `facts`. Pure.
pub fn walk(facts: &Facts) -> Answer {
    let q = &facts.question;
    let mut steps = Vec::new();
    let mut stop: Option<(Step, String, Option<String>)> = None;
    let host: Vec<&Listener> = facts.listeners.iter().filter(|l| l.host).collect();
    let mut admitted: Vec<&Listener> = Vec::new();
    for step in Step::ALL {
        if stop.is_some() {
            steps.push(StepAnswer {
                step,
                status: Status::NotChecked,
                summary: "not checked".into(),
                evidence: vec![],
            });
            continue;
        }
        let found = match step {
            Step::Listening => listening(facts),
            Step::Address => {
                let (found, ok) = address(facts, &host);
                admitted = ok;
                found
            }
            Step::Owner => owner(&admitted),
            Step::Accepting => accepting(q, &admitted),
            Step::Exposure => exposure(q, &admitted),
            Step::Conflicts => conflicts(facts),
        };
        if found.status == Status::Problem {
            stop = Some((
                step,
                found.verdict.clone().unwrap_or_default(),
                found.hint.clone(),
            ));
        }
        steps.push(StepAnswer {
            step,
            status: found.status,
            summary: found.summary,
            evidence: found.evidence,
        });
    }
    let name = format!("{}/{}", q.port, q.proto);
    let (verdict, healthy, stopped_at, hint) = match stop {
        Some((step, verdict, hint)) => (format!("{name}: {verdict}"), false, Some(step), hint),
        None => {
            let mut parts = vec![format!("listening on {}", list(&admitted))];
            if let Some(o) = admitted.iter().find_map(|l| l.owners.first()) {
                parts.push(format!("held by {}", o.who()));
            }
            if let Some(c) = admitted
                .iter()
                .filter_map(|l| l.connect.as_ref())
                .find(|c| c.alive)
            {
                parts.push(format!("answering in {:.1} ms", c.seconds * 1000.0));
            }
            let unknown: Vec<&str> = steps
                .iter()
                .filter(|s| s.status == Status::Unknown)
                .map(|s| s.step.as_str())
                .collect();
            let tail = match unknown.is_empty() {
                true => String::new(),
                false => format!(" ({} unknown)", unknown.join(", ")),
            };
            (
                format!("{name}: healthy — {}{tail}", parts.join(", ")),
                true,
                None,
                None,
            )
        }
    };
    Answer {
        question: q.text.clone(),
        proto: q.proto,
        port: q.port,
        verdict,
        healthy,
        stopped_at,
        steps,
        hint,
    }
}

fn listening(facts: &Facts) -> Found {
    let q = &facts.question;
    if !facts.listeners.is_empty() {
        let n = facts.listeners.len();
        let evidence = facts
            .listeners
            .iter()
            .map(|l| l.line(q.proto, q.port))
            .collect();
        return Found::ok(
            format!("{n} socket{}", if n == 1 { "" } else { "s" }),
            evidence,
        );
    }
    let mut evidence = Vec::new();
    let mut verdict = "nothing listens".to_string();
    if facts.expected.is_empty() {
        evidence.push("not in the baseline of expected ports".into());
    }
    for e in &facts.expected {
        let netns = match e.netns.as_str() {
            "host" => String::new(),
            n => format!(" in {n}"),
        };
        evidence.push(format!(
            "expected since {}: {} ({}){netns}",
            crate::value::time::rfc3339(crate::value::time::from_unix_secs(e.since)),
            e.process_name,
            e.exe_path
        ));
    }
    if let Some(e) = facts.expected.first() {
        verdict.push_str(&format!(
            ", though it is expected ({} since {})",
            e.process_name,
            crate::value::time::date(e.since as i64)
        ));
    }
    let closed = facts
        .events
        .iter()
        .rev()
        .find(|e| e.action == "port_closed");
    if let Some(c) = closed {
        let who = c.process_name.as_deref().unwrap_or("an owner unknown");
        verdict.push_str(&format!(" — closed at {} by {who}", c.at));
        if let Some(pid) = c.pid {
            verdict.push_str(&format!(" (pid {pid})"));
        }
    }
    match facts.events.is_empty() {
        true => evidence.push("no change of this port in the exporter's record".into()),
        false => {
            let start = facts.events.len().saturating_sub(5);
            evidence.extend(facts.events[start..].iter().map(PastEvent::line));
        }
    }
    for other in &facts.other_proto {
        evidence.push(format!("the other protocol has it: {other}"));
    }
    let mut hint = None;
    match &facts.unit {
        Some(u) => {
            match &u.state {
                Ok(s) => evidence.push(format!("unit {}: {}", u.name, s.describe())),
                Err(why) => evidence.push(format!("unit {}: state unavailable ({why})", u.name)),
            }
            match &u.journal {
                Ok(lines) if lines.is_empty() => {
                    evidence.push(format!("journal of {}: no lines", u.name))
                }
                Ok(lines) => evidence.extend(lines.iter().map(|l| {
                    format!(
                        "journal: {} {}",
                        crate::value::time::rfc3339(
                            std::time::UNIX_EPOCH + std::time::Duration::from_micros(l.at_us)
                        ),
                        crate::text::printable(&l.message)
                    )
                })),
                Err(why) => evidence.push(format!("journal of {}: unavailable ({why})", u.name)),
            }
            hint = Some(format!(
                "start it (systemctl start {0}) and read why it stopped (journalctl -u {0})",
                u.name
            ));
        }
        None => evidence.push("no unit known to have held it".into()),
    }
    let hint = hint.or_else(|| {
        closed
            .and_then(|c| c.process_name.as_ref())
            .map(|name| format!("start {name} again, and look at its log for why it stopped"))
            .or_else(|| {
                Some("start the service that should listen, or check the port number".into())
            })
    });
    Found::problem(verdict, evidence, hint)
}

fn address<'f>(facts: &'f Facts, host: &[&'f Listener]) -> (Found, Vec<&'f Listener>) {
    let q = &facts.question;
    if host.is_empty() {
        let mut where_: Vec<&str> = facts.listeners.iter().map(|l| l.netns.as_str()).collect();
        where_.sort_unstable();
        where_.dedup();
        let verdict = format!(
            "listening only inside {} — not in the host's namespace, so nothing on the host's addresses answers",
            where_.join(", ")
        );
        return (
            Found::problem(
                verdict,
                vec![],
                Some(format!(
                    "publish the port from the container (e.g. docker run -p {0}:{0}), or connect from inside its namespace",
                    q.port
                )),
            ),
            vec![],
        );
    }
    let mut ok = Vec::new();
    let mut refused = Vec::new();
    for l in host {
        match l.admits(&q.client) {
            Ok(()) => ok.push(*l),
            Err(why) => refused.push(format!("{}: {why}", l.address_text())),
        }
    }
    let client = q.client.describe();
    // Remote clients of either stack: one IPv6-only wildcard and nothing
    // for IPv4 leaves IPv4 clients out.
    let takes_ipv4 = |l: &&Listener| l.family == Family::Ipv4 || l.v6only != Some(true);
    if q.client == Client::Remote
        && !ok.iter().any(takes_ipv4)
        && ok.iter().any(|l| l.address.is_unspecified())
    {
        refused.extend(ok.iter().map(|l| {
            format!(
                "{}: IPv6 only (IPV6_V6ONLY): IPv4 clients are refused",
                l.address_text()
            )
        }));
        ok.clear();
    }
    if ok.is_empty() {
        let stack = |f: Family| host.iter().all(|l| l.family == f);
        let (detail, hint) = match &q.client {
            Client::Remote if host.iter().all(|l| l.address.is_loopback()) => (
                "clients on other hosts cannot connect".to_string(),
                "have it listen on 0.0.0.0 (or ::) or on the address its clients use, in its configuration".to_string(),
            ),
            Client::Remote => (
                "IPv4 clients on other hosts cannot connect".into(),
                "turn IPV6_V6ONLY off for its socket, or have it listen on 0.0.0.0 too".into(),
            ),
            Client::Address(a) if a.is_ipv4() && stack(Family::Ipv6) => (
                format!("IPv4 clients ({a}) cannot connect"),
                format!(
                    "connect over IPv6 ({}), or have it listen on IPv4 too",
                    match host[0].address.is_unspecified() {
                        true => "[::1]".to_string(),
                        false => host[0].address_text(),
                    }
                ),
            ),
            Client::Address(a) if a.is_ipv6() && stack(Family::Ipv4) => (
                format!("IPv6 clients ({a}) cannot connect"),
                format!(
                    "connect over IPv4 ({}), or have it listen on IPv6 too",
                    match host[0].address.is_unspecified() {
                        true => "127.0.0.1".to_string(),
                        false => host[0].address.to_string(),
                    }
                ),
            ),
            _ => (
                format!("{client} cannot connect"),
                "connect to the address it listens on, or have it listen on the one you use".into(),
            ),
        };
        let only = match host
            .iter()
            .all(|l| l.v6only == Some(true) && l.address.is_unspecified())
        {
            true => format!("{} (IPv6 only)", list(host)),
            false => list(host),
        };
        let verdict = format!("listening on {only} only — {detail}");
        return (Found::problem(verdict, refused, Some(hint)), vec![]);
    }
    let mut evidence = refused;
    if facts.listeners.len() > host.len() {
        evidence.push(format!(
            "{} more inside other namespaces (not reachable on the host's addresses)",
            facts.listeners.len() - host.len()
        ));
    }
    (
        Found::ok(format!("{} takes {client}", list(&ok)), evidence),
        ok,
    )
}

fn owner(admitted: &[&Listener]) -> Found {
    let owners: Vec<&OwnerFacts> = admitted.iter().flat_map(|l| &l.owners).collect();
    if owners.is_empty() {
        let why = admitted
            .iter()
            .find_map(|l| l.owner_unknown.clone())
            .unwrap_or_else(|| "no process holds it that we can see".into());
        return Found::unknown(
            // The reason says what would tell (root, capabilities, a
            // descriptor limit), or that nothing can.
            format!("unknown ({why})"),
            vec![],
        );
    }
    let mut evidence = Vec::new();
    let mut halted = Vec::new();
    for o in &owners {
        match (o.halted(), o.state) {
            (Some(why), _) => {
                evidence.push(format!("{}: {why}", o.who()));
                halted.push((*o, why));
            }
            (None, Some(s)) => evidence.push(format!("{}: {}", o.who(), s.words())),
            (None, None) => evidence.push(format!("{}: gone since the listing", o.who())),
        }
    }
    let Some((first, why)) = halted.first() else {
        return Found::ok("running", evidence);
    };
    let hint = |o: &OwnerFacts, why: &str| match &o.frozen {
        Some(Some(cgroup)) => {
            format!(
                "thaw its cgroup (echo 0 > <cgroup fs>{cgroup}/cgroup.freeze, or the freezer's state to THAWED)"
            )
        }
        _ if why.contains("zombie") => format!(
            "it exited but holds the port until its parent (see /proc/{}/status, PPid) reaps it; restart the service",
            o.pid
        ),
        _ if why.contains("debugger") => "detach the debugger".into(),
        _ => format!("resume it: kill -CONT {}", o.pid),
    };
    let distinct: std::collections::BTreeSet<u32> = owners.iter().map(|o| o.pid).collect();
    let verdict = if halted.len() < owners.len() && distinct.len() > 1 {
        format!(
            "{} of the {} processes sharing it is {why} — about {} of {} connections hang",
            first.who(),
            distinct.len(),
            halted.len(),
            distinct.len()
        )
    } else {
        format!(
            "its owner {} is {why} — connections wait and are never served",
            first.who()
        )
    };
    Found::problem(verdict, evidence, Some(hint(first, why)))
}

fn accepting(q: &Question, admitted: &[&Listener]) -> Found {
    if q.proto == Proto::Udp {
        return Found::ok(
            "UDP: bound (no connection to make; whether it answers depends on what is sent)",
            vec![],
        );
    }
    let mut evidence = Vec::new();
    for l in admitted {
        if let Some(q1) = l.queue {
            let max = q1.max.map_or("?".to_string(), |m| m.to_string());
            let mut s = format!("{}: accept queue {}/{max}", l.address_text(), q1.current);
            if let Some(q2) = l.queue_again {
                s.push_str(&format!(", a moment later {}", q2.current));
            }
            if let Some(d) = q1.drops {
                s.push_str(&format!(", {} dropped since it was made", connections(d)));
            }
            evidence.push(s);
        }
        if let Some(c) = &l.connect {
            evidence.push(match (&c.error, c.alive) {
                (_, true) => format!("connected to {} in {:.1} ms", c.target, c.seconds * 1000.0),
                (Some(e), false) => format!("a connection to {}: {e}", c.target),
                (None, false) => format!("a connection to {} failed", c.target),
            });
        }
    }
    let full = admitted.iter().find(|l| {
        l.queue.is_some_and(|q| q.is_full()) && l.queue_again.is_some_and(|q| q.is_full())
    });
    if let Some(l) = full {
        let q1 = l.queue.unwrap_or(AcceptQueue {
            current: 0,
            max: None,
            drops: None,
        });
        let drops = match q1.drops {
            Some(d) => format!(", {} dropped", connections(d)),
            None => String::new(),
        };
        let verdict = format!(
            "the accept queue is full ({}/{}) at two looks{drops} — the process does not accept connections (hung)",
            q1.current,
            q1.max.unwrap_or(0)
        );
        let pid = l
            .owners
            .first()
            .map_or("PID".to_string(), |o| o.pid.to_string());
        return Found::problem(
            verdict,
            evidence,
            Some(format!(
                "it is alive but not calling accept(): look at what its threads wait on (e.g. /proc/{pid}/task/*/stack, a thread dump), or restart it"
            )),
        );
    }
    let connects: Vec<&Connect> = admitted.iter().filter_map(|l| l.connect.as_ref()).collect();
    if !connects.is_empty() && connects.iter().all(|c| !c.alive) {
        let c = connects[0];
        let verdict = format!(
            "a connection to {} {}",
            c.target,
            c.error.as_deref().unwrap_or("failed")
        );
        return Found::problem(
            verdict,
            evidence,
            Some("look at the process's own log; restart it if it does not recover".into()),
        );
    }
    if connects.is_empty() {
        return Found::unknown("not checked (no namespace we may enter)", evidence);
    }
    Found::ok("takes connections", evidence)
}

fn connections(n: u32) -> String {
    match n {
        1 => "1 connection".into(),
        n => format!("{n} connections"),
    }
}

fn exposure(q: &Question, admitted: &[&Listener]) -> Found {
    let local = match &q.client {
        Client::Localhost => true,
        Client::Address(a) => a.is_loopback(),
        Client::Remote => false,
    };
    if local {
        return Found::ok(
            "not in the way: the client is on this host (loopback)",
            vec![],
        );
    }
    let verdicts: Vec<(&Listener, &Exposure)> = admitted
        .iter()
        .filter_map(|l| l.exposure.as_ref().map(|e| (*l, e)))
        .collect();
    let evidence: Vec<String> = verdicts
        .iter()
        .map(|(l, e)| format!("{}: {e}", l.address_text()))
        .collect();
    if verdicts.is_empty() {
        return Found::unknown("unknown (the firewall was not read)", evidence);
    }
    if let Some((_, e)) = verdicts
        .iter()
        .find(|(_, e)| matches!(e, Exposure::Open { .. }))
    {
        let summary = match e.detail() {
            Some(d) => format!("open to the world ({d})"),
            None => "open to the world".into(),
        };
        return Found::ok(summary, evidence);
    }
    if let Some((_, e)) = verdicts
        .iter()
        .find(|(_, e)| matches!(e, Exposure::Restricted { .. }))
    {
        return Found::ok(
            format!("restricted: {}", e.detail().unwrap_or_default()),
            evidence,
        );
    }
    if let Some((_, e)) = verdicts
        .iter()
        .find(|(_, e)| matches!(e, Exposure::Unknown { .. }))
    {
        let why = e.detail().unwrap_or_default();
        let why = match why.contains("permission") {
            true => format!("{why}; needs CAP_NET_ADMIN"),
            false => why,
        };
        return Found::unknown(format!("unknown ({why})"), evidence);
    }
    if let Some((_, Exposure::Blocked { by, forwarded })) = verdicts
        .iter()
        .find(|(_, e)| matches!(e, Exposure::Blocked { .. }))
    {
        let via = forwarded
            .as_ref()
            .map(|f| format!(" ({f})"))
            .unwrap_or_default();
        let verdict =
            format!("blocked by the firewall: {by}{via} drops new connections from other hosts");
        let hint = format!(
            "if other hosts should reach it, allow it before that rule (e.g. nft insert rule {} {} {} {} dport {} accept)",
            by.family.as_str(),
            by.table,
            by.chain,
            q.proto.as_str(),
            q.port
        );
        return Found::problem(verdict, evidence, Some(hint));
    }
    Found::ok("local only", evidence)
}

fn conflicts(facts: &Facts) -> Found {
    if facts.conflicts.is_empty() {
        return Found::ok("none", vec![]);
    }
    let evidence: Vec<String> = facts
        .conflicts
        .iter()
        .map(|c| format!("{}: {}", c.kind, c.detail))
        .collect();
    let c = &facts.conflicts[0];
    let (what, hint) = match c.kind {
        "address" => (
            "different programs hold this port number on different addresses or stacks — clients reach one or the other by the address they use",
            "stop the one that should not be there, or move it to another port",
        ),
        "reuseport" => (
            "different programs share one address (SO_REUSEPORT) — the kernel spreads connections between them",
            "stop the stale or foreign member of the group",
        ),
        _ => (
            "its owner runs an executable deleted or replaced since it started — an old version still serves",
            "restart the service so the new executable takes the port",
        ),
    };
    Found::problem(
        format!("conflict: {what} ({})", c.detail),
        evidence,
        Some(hint.into()),
    )
}

/// The answer for people: the verdict, each step, the fix.
pub fn render(answer: &Answer) -> String {
    let mut out = format!("{}\n\n", answer.verdict);
    for s in &answer.steps {
        let mark = match s.status {
            Status::Ok => "✔",
            Status::Problem => "✘",
            Status::Unknown => "?",
            Status::NotChecked => "·",
        };
        out.push_str(&format!(
            "  {mark} {:<10} {}\n",
            s.step.as_str(),
            crate::text::printable(&s.summary)
        ));
        for e in &s.evidence {
            out.push_str(&format!("      {}\n", crate::text::printable(e)));
        }
    }
    if let Some(h) = &answer.hint {
        out.push_str(&format!("\nfix: {}\n", crate::text::printable(h)));
    }
    out
}

#[cfg(test)]
mod tests;
