//! Port events: each discovery pass compared with the one before it.
//!
//! A listening address (namespace, protocol, address, port) is one key.
//! The first pass records each key once (`port_listening`, so that a log
//! store can rebuild the state from the records of a start); later passes
//! say what changed: `port_opened`, `port_closed`, and `owner_changed` (a
//! new process, executable or unit on a key that stayed). A key whose
//! state did not change says nothing.
//!
//! [`Tracker`] is pure (the engine's state owner and `ls --watch` feed it
//! passes); [`output`] writes events out (JSON lines to stdout or a file,
//! or journald's native protocol) from a thread of its own.
//!
//! Limits: a listener that lives shorter than a discovery interval is not
//! seen; an owner we cannot read (no privilege, a process gone mid-scan)
//! keeps the last one known rather than making a change up; a namespace
//! we were refused this pass keeps its ports as they were.

pub mod history;
pub mod journald;
pub mod output;

use std::cmp::Ordering;
use std::collections::HashSet;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::SystemTime;

use serde_json::{Map, Value, json};

use crate::discover::Discovery;
use crate::model::{Activation, Family, Owner, Port, Proto};

/// What happened to a listening address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Action {
    /// The state at the start: one per address.
    Listening,
    Opened,
    Closed,
    /// Another process, executable or unit holds the same address.
    OwnerChanged,
}

impl Action {
    pub const ALL: [Action; 4] = [
        Action::Listening,
        Action::Opened,
        Action::Closed,
        Action::OwnerChanged,
    ];

    /// `event.action`.
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Listening => "port_listening",
            Action::Opened => "port_opened",
            Action::Closed => "port_closed",
            Action::OwnerChanged => "owner_changed",
        }
    }

    /// ECS `event.type`.
    fn ecs_type(self) -> &'static str {
        match self {
            Action::Listening => "info",
            Action::Opened => "start",
            Action::Closed => "end",
            Action::OwnerChanged => "change",
        }
    }

    /// journald's `MESSAGE_ID`: one stable 128-bit id per action, so that
    /// `journalctl MESSAGE_ID=…` finds every event of a kind.
    pub fn message_id(self) -> &'static str {
        match self {
            Action::Listening => "3300368f68f94e4cb78cbe849b26b2e3",
            Action::Opened => "348ab40ca1e740f18908a2204b85f510",
            Action::Closed => "5735248c34e14866ab1c119544bcc036",
            Action::OwnerChanged => "9c89a8e7040248e6a088a8beb83a3b81",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// A listening address: what an event is about.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Key {
    /// The namespace as discovery lists it (`host`, `netns:<inode>`):
    /// stable, unlike the label a container's id gives it once known.
    pub namespace: Arc<str>,
    pub proto: Proto,
    pub address: IpAddr,
    pub port: u16,
}

impl Key {
    /// The address a socket listens on.
    pub fn of(p: &Port) -> Key {
        Key {
            namespace: Arc::clone(&p.namespace),
            proto: p.socket.proto,
            address: p.socket.address,
            port: p.socket.port,
        }
    }
}

/// What is known of an address while it listens.
#[derive(Debug, Clone)]
struct Facts {
    family: Family,
    /// The primary owner of its oldest socket; `None` while unknown.
    owner: Option<Arc<Owner>>,
    /// Boxed: few sockets have one, and every address keeps its facts.
    activation: Option<Box<Activation>>,
}

/// One change of one listening address.
#[derive(Debug, Clone)]
pub struct Event {
    /// Numbered from 1 in the order made (`/api/v1/events?since=`).
    pub sequence: u64,
    pub at: SystemTime,
    pub action: Action,
    pub key: Key,
    pub netns: Arc<str>,
    pub family: Family,
    /// The owner now; for `port_closed`, the last one known.
    pub owner: Option<Arc<Owner>>,
    /// For `owner_changed`: the owner before.
    pub previous: Option<Arc<Owner>>,
    pub activation: Option<Activation>,
}

/// Compares passes. Pure: given the same passes, the same events.
#[derive(Debug, Default)]
pub struct Tracker {
    /// Each address, with the inode of the socket that speaks for it,
    /// sorted by address: a vector the size of the host's listeners (a
    /// hash map of them cost ~1.7 MB on a host of 11,000), compared with
    /// the next pass by one merge.
    known: Vec<Entry>,
    started: bool,
    sequence: u64,
}

/// An address, the inode of the socket that speaks for it, and its facts.
type Entry = (Key, u64, Facts);

/// The same process, executable and unit: no change worth an event.
fn same_owner(a: &Owner, b: &Owner) -> bool {
    (a.pid, a.start_time) == (b.pid, b.start_time)
        && a.exe_path == b.exe_path
        && a.unit.as_ref().map(|u| u.name()) == b.unit.as_ref().map(|u| u.name())
}

impl Tracker {
    pub fn new() -> Tracker {
        Tracker::default()
    }

    /// The events of one pass (the start records at the first), in order:
    /// closed, then opened, then changed, each by address.
    pub fn observe(&mut self, pass: &Discovery, at: SystemTime) -> Vec<Event> {
        let listed: HashSet<&str> = pass.namespaces.iter().map(|n| &*n.label).collect();
        // Refused a namespace this pass: one not listed may still be there.
        let partial = pass.stats.setns_denied + pass.stats.netns_denied > 0;
        self.observe_ports(pass.ports.iter(), at, |namespace| {
            !partial || listed.contains(namespace)
        })
    }

    /// As [`Tracker::observe`], from ports alone; `seen(namespace)` says
    /// whether a namespace was looked at (its ports missing are closed).
    pub fn observe_ports<'p>(
        &mut self,
        ports: impl IntoIterator<Item = &'p Port>,
        at: SystemTime,
        seen: impl Fn(&str) -> bool,
    ) -> Vec<Event> {
        let mut now: Vec<Entry> = ports
            .into_iter()
            .filter(|p| !p.excluded)
            .map(|p| {
                let key = Key::of(p);
                let facts = Facts {
                    family: p.socket.family,
                    owner: p.owners.first().cloned(),
                    activation: p.activation.clone(),
                };
                (key, p.socket.inode, facts)
            })
            .collect();
        // A SO_REUSEPORT group is one address, and one socket speaks for it.
        now.sort_unstable_by(|a, b| (&a.0, a.1).cmp(&(&b.0, b.1)));
        let mut now = self.speakers(now);
        let mut out: Vec<(Action, Key, Facts, Option<Arc<Owner>>)> = Vec::new();
        if !self.started {
            self.started = true;
            for (key, _, facts) in &now {
                out.push((Action::Listening, key.clone(), facts.clone(), None));
            }
            now.shrink_to_fit();
            self.known = now;
        } else {
            let (mut closed, mut opened, mut changed) = (Vec::new(), Vec::new(), Vec::new());
            let mut next: Vec<Entry> = Vec::with_capacity(now.len());
            let mut old = std::mem::take(&mut self.known).into_iter().peekable();
            let mut new = now.into_iter().peekable();
            loop {
                let order = match (old.peek(), new.peek()) {
                    (None, None) => break,
                    (Some(_), None) => Ordering::Less,
                    (None, Some(_)) => Ordering::Greater,
                    (Some(o), Some(n)) => o.0.cmp(&n.0),
                };
                match order {
                    // Gone, or in a namespace not looked at this pass.
                    Ordering::Less => {
                        let entry = old.next().expect("peeked");
                        if seen(&entry.0.namespace) {
                            closed.push((Action::Closed, entry.0, entry.2, None));
                        } else {
                            next.push(entry);
                        }
                    }
                    Ordering::Greater => {
                        let entry = new.next().expect("peeked");
                        opened.push((Action::Opened, entry.0.clone(), entry.2.clone(), None));
                        next.push(entry);
                    }
                    Ordering::Equal => {
                        let (_, _, before) = old.next().expect("peeked");
                        let mut entry = new.next().expect("peeked");
                        match (before.owner, &entry.2.owner) {
                            // Unknown now: the last known stands.
                            (Some(before), None) => entry.2.owner = Some(before),
                            (Some(before), Some(owner))
                                if !Arc::ptr_eq(&before, owner) && !same_owner(&before, owner) =>
                            {
                                changed.push((
                                    Action::OwnerChanged,
                                    entry.0.clone(),
                                    entry.2.clone(),
                                    Some(before),
                                ));
                            }
                            _ => {}
                        }
                        next.push(entry);
                    }
                }
            }
            out.extend(closed);
            out.extend(opened);
            out.extend(changed);
            next.shrink_to_fit();
            self.known = next;
        }
        out.into_iter()
            .map(|(action, key, facts, previous)| {
                self.sequence += 1;
                // Derived, not kept: every address would hold a copy.
                let netns = crate::model::netns_label(&key.namespace, facts.owner.as_deref());
                Event {
                    sequence: self.sequence,
                    at,
                    action,
                    key,
                    netns,
                    family: facts.family,
                    owner: facts.owner,
                    previous,
                    activation: facts.activation.map(|a| *a),
                }
            })
            .collect()
    }
}

impl Tracker {
    /// One entry per address from `members` (sorted by address): the
    /// socket that spoke for it last pass while it stays, so that a process
    /// joining a group takes nothing over; otherwise the socket of the
    /// process started first (the old instance of an upgrade), unknown
    /// owners last. Not the lowest inode: the kernel hands inode numbers
    /// out in per-CPU batches, so a later socket may have a lower one.
    fn speakers(&self, members: Vec<Entry>) -> Vec<Entry> {
        let mut out: Vec<Entry> = Vec::with_capacity(members.len());
        let mut members = members.into_iter().peekable();
        while let Some(first) = members.next() {
            let mut group = vec![first];
            while members.peek().is_some_and(|m| m.0 == group[0].0) {
                group.push(members.next().expect("peeked"));
            }
            if group.len() == 1 {
                out.extend(group);
                continue;
            }
            let spoke = self
                .known
                .binary_search_by(|k| k.0.cmp(&group[0].0))
                .ok()
                .map(|i| self.known[i].1);
            let age = |e: &Entry| match &e.2.owner {
                Some(o) => (false, o.start_time, o.pid, e.1),
                None => (true, 0, 0, e.1),
            };
            let pick = group
                .iter()
                .position(|e| Some(e.1) == spoke)
                .or_else(|| (0..group.len()).min_by(|&a, &b| age(&group[a]).cmp(&age(&group[b]))))
                .expect("a group has a member");
            out.push(group.swap_remove(pick));
        }
        out
    }
}

/// Events made, by action; and what the output could not write.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    pub by_action: [u64; 4],
}

impl Counts {
    pub fn add(&mut self, events: &[Event]) {
        for e in events {
            self.by_action[e.action.index()] += 1;
        }
    }

    pub fn of(&self, action: Action) -> u64 {
        self.by_action[action.index()]
    }
}

/// The recent events, oldest first, at most `capacity`.
#[derive(Debug, Clone, Default)]
pub struct Recent {
    pub events: std::collections::VecDeque<Event>,
    pub capacity: usize,
}

impl Recent {
    pub fn new(capacity: usize) -> Recent {
        Recent {
            events: std::collections::VecDeque::with_capacity(capacity.min(1024)),
            capacity,
        }
    }

    pub fn push(&mut self, events: &[Event]) {
        for e in events {
            if self.events.len() == self.capacity {
                self.events.pop_front();
            }
            self.events.push_back(e.clone());
        }
    }

    /// Those after `sequence`, oldest first.
    pub fn since(&self, sequence: u64) -> impl Iterator<Item = &Event> {
        let skip = self.events.partition_point(|e| e.sequence <= sequence);
        self.events.iter().skip(skip)
    }
}

impl Event {
    /// The address as people write it: `127.0.0.1:80`, `[::1]:80`.
    pub fn address(&self) -> String {
        std::net::SocketAddr::from((self.key.address, self.key.port)).to_string()
    }

    /// One line for people (and journald's `MESSAGE`).
    pub fn message(&self) -> String {
        let who = |o: &Owner| {
            let unit = o
                .unit
                .as_ref()
                .map(|u| format!(", {}", u.display()))
                .unwrap_or_default();
            format!("{} (pid {}{unit})", o.process_name, o.pid)
        };
        let by = self.owner.as_deref().map(who);
        let place = format!(
            "{} {}{}",
            self.key.proto.as_str(),
            self.address(),
            match &*self.netns {
                "host" => String::new(),
                netns => format!(" in {netns}"),
            }
        );
        match (self.action, by) {
            (Action::Listening, Some(by)) => format!("{place} listening: {by}"),
            (Action::Opened, Some(by)) => format!("{place} opened by {by}"),
            (Action::Closed, Some(by)) => format!("{place} closed, held by {by}"),
            (Action::OwnerChanged, Some(by)) => format!(
                "{place} now held by {by}, before by {}",
                self.previous
                    .as_deref()
                    .map_or_else(|| "?".to_string(), who)
            ),
            (action, None) => format!(
                "{place} {}, owner unknown",
                action.as_str().trim_start_matches("port_")
            ),
        }
    }

    /// The event as one JSON object with the field names log stores expect
    /// (ECS): `@timestamp`, `event.*`, `host.name`, `network.*`,
    /// `server.ip/port`, `process.*`, `user.*`, `systemd.*`, `container.id`,
    /// `netns`, and `previous.*` for a change.
    pub fn to_json(&self, host: &str) -> Value {
        let mut v = Map::new();
        v.insert(
            "@timestamp".into(),
            json!(crate::value::time::rfc3339(self.at)),
        );
        v.insert(
            "event".into(),
            json!({
                "action": self.action.as_str(),
                "kind": "event",
                "category": ["network"],
                "type": [self.action.ecs_type()],
                "sequence": self.sequence,
                "dataset": "portwarden.ports",
            }),
        );
        v.insert("message".into(), json!(self.message()));
        v.insert("host".into(), json!({ "name": host }));
        v.insert(
            "network".into(),
            json!({"transport": self.key.proto.as_str(), "type": self.family.as_str()}),
        );
        v.insert(
            "server".into(),
            json!({"ip": self.key.address.to_string(), "port": self.key.port}),
        );
        v.insert("netns".into(), json!(&*self.netns));
        if let Some(o) = &self.owner {
            owner_fields(&mut v, o);
        }
        if let Some(a) = &self.activation
            && let Some(m) = v
                .entry("systemd")
                .or_insert_with(|| json!({}))
                .as_object_mut()
        {
            m.insert("socket".into(), json!(a.socket_label()));
        }
        if let Some(before) = &self.previous {
            let mut p = Map::new();
            owner_fields(&mut p, before);
            v.insert("previous".into(), Value::Object(p));
        }
        Value::Object(v)
    }
}

/// `process.*`, `user.*`, `systemd.*`, `container.id` of an owner.
fn owner_fields(v: &mut Map<String, Value>, o: &Owner) {
    v.insert(
        "process".into(),
        json!({
            "pid": o.pid,
            "name": o.process_name,
            "executable": o.exe_path,
            "command_line": o.cmdline,
        }),
    );
    v.insert(
        "user".into(),
        json!({"id": o.uid.to_string(), "name": o.user}),
    );
    if let Some(u) = &o.unit {
        v.insert(
            "systemd".into(),
            json!({"unit": u.name(), "system_unit": u.system, "user_unit": u.user}),
        );
    }
    if let Some(c) = &o.container {
        v.insert("container".into(), json!({ "id": c.id }));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::fixtures;
    use std::time::Duration;

    fn owner(pid: u32, exe: &str) -> Arc<Owner> {
        fixtures::owner(pid, exe, 0)
    }

    fn port(namespace: &str, port: u16, inode: u64, holder: Option<Arc<Owner>>) -> Port {
        let mut p = fixtures::port(Proto::Tcp, "127.0.0.1", port, inode, holder);
        p.netns = namespace.into();
        p.namespace = namespace.into();
        p
    }

    fn actions(events: &[Event]) -> Vec<(&'static str, u16)> {
        events
            .iter()
            .map(|e| (e.action.as_str(), e.key.port))
            .collect()
    }

    const T: SystemTime = SystemTime::UNIX_EPOCH;

    #[test]
    fn the_start_is_recorded_then_only_changes() {
        let mut t = Tracker::new();
        let web = owner(10, "/usr/sbin/web");
        let first = [
            port("host", 80, 1, Some(web.clone())),
            port("host", 22, 2, None),
        ];
        let e = t.observe_ports(&first[..], T, |_| true);
        assert_eq!(
            actions(&e),
            [("port_listening", 22), ("port_listening", 80)]
        );
        for _ in 0..10 {
            assert!(t.observe_ports(&first[..], T, |_| true).is_empty());
        }
        // 22 closes, 443 opens, 80 is now another process.
        let next = [
            port("host", 80, 5, Some(owner(11, "/usr/sbin/web"))),
            port("host", 443, 6, Some(web.clone())),
        ];
        let e = t.observe_ports(&next[..], T, |_| true);
        assert_eq!(
            actions(&e),
            [
                ("port_closed", 22),
                ("port_opened", 443),
                ("owner_changed", 80)
            ]
        );
        assert_eq!(e[2].previous.as_ref().map(|o| o.pid), Some(10));
        assert_eq!(e[2].owner.as_ref().map(|o| o.pid), Some(11));
        assert_eq!(
            e.iter().map(|e| e.sequence).collect::<Vec<_>>(),
            [3, 4, 5],
            "numbered on from the start records"
        );
    }

    #[test]
    fn an_owner_unknown_for_a_pass_is_no_change_and_a_refused_namespace_keeps_its_ports() {
        let mut t = Tracker::new();
        let web = owner(10, "/usr/sbin/web");
        let all = [
            port("host", 80, 1, Some(web.clone())),
            port("netns:9", 81, 2, None),
        ];
        t.observe_ports(&all[..], T, |_| true);
        let unknown = [port("host", 80, 1, None)];
        assert!(
            t.observe_ports(&unknown[..], T, |ns| ns == "host")
                .is_empty()
        );
        // Known again, the same: still nothing.
        assert!(t.observe_ports(&all[..], T, |_| true).is_empty());
        // Looked at, and gone.
        let e = t.observe_ports(&all[..1], T, |_| true);
        assert_eq!(actions(&e), [("port_closed", 81)]);
    }

    fn started(pid: u32, exe: &str, start_time: u64) -> Arc<Owner> {
        let mut o = Owner::clone(&fixtures::owner(pid, exe, 0));
        o.start_time = start_time;
        Arc::new(o)
    }

    #[test]
    fn a_reuseport_group_is_one_address_named_by_its_oldest_process_not_its_lowest_inode() {
        let mut t = Tracker::new();
        let old = started(10, "/opt/v1/app", 100);
        let new = started(20, "/opt/v2/app", 900);
        // The new instance's socket has the lower inode (another CPU's batch).
        let pair = [
            port("host", 80, 3, Some(new.clone())),
            port("host", 80, 7, Some(old)),
        ];
        let e = t.observe_ports(&pair[..], T, |_| true);
        assert_eq!(e.len(), 1);
        assert_eq!(e[0].owner.as_ref().map(|o| o.pid), Some(10));
        assert!(t.observe_ports(&pair[..], T, |_| true).is_empty());
        // The old instance leaves: the address stays, its owner changes.
        let e = t.observe_ports(&pair[..1], T, |_| true);
        assert_eq!(actions(&e), [("owner_changed", 80)]);
        assert_eq!(e[0].previous.as_ref().map(|o| o.pid), Some(10));
        assert_eq!(e[0].owner.as_ref().map(|o| o.pid), Some(20));
    }

    #[test]
    fn a_process_joining_a_group_takes_nothing_over_while_the_speaker_stays() {
        let mut t = Tracker::new();
        // The speaker started later than the one that joins (a restarted
        // old binary, say): it still speaks while its socket stays.
        let first = started(30, "/opt/app", 900);
        let joins = started(31, "/opt/app", 100);
        t.observe_ports(&[port("host", 80, 9, Some(first))][..], T, |_| true);
        let both = [
            port("host", 80, 2, Some(joins.clone())),
            port("host", 80, 9, Some(started(30, "/opt/app", 900))),
        ];
        assert!(t.observe_ports(&both[..], T, |_| true).is_empty());
        // An owner unknown for a pass sorts last, and is no change.
        let unknown = [port("host", 80, 2, None), port("host", 80, 9, None)];
        assert!(t.observe_ports(&unknown[..], T, |_| true).is_empty());
        let e = t.observe_ports(&both[..1], T, |_| true);
        assert_eq!(actions(&e), [("owner_changed", 80)]);
        assert_eq!(e[0].owner.as_ref().map(|o| o.pid), Some(31));
    }

    #[test]
    fn events_speak_ecs() {
        let mut t = Tracker::new();
        let at = SystemTime::UNIX_EPOCH + Duration::from_millis(1_796_389_509_123);
        let e = t.observe_ports(
            &[port("host", 80, 1, Some(owner(10, "/usr/sbin/web")))],
            at,
            |_| true,
        );
        let v = e[0].to_json("box");
        assert_eq!(v["@timestamp"], "2026-12-04T13:05:09.123Z");
        assert_eq!(v["event"]["action"], "port_listening");
        assert_eq!(v["host"]["name"], "box");
        assert_eq!(v["network"]["transport"], "tcp");
        assert_eq!(v["server"]["ip"], "127.0.0.1");
        assert_eq!(v["server"]["port"], 80);
        assert_eq!(v["process"]["pid"], 10);
        assert_eq!(v["process"]["executable"], "/usr/sbin/web");
        assert_eq!(v["user"]["id"], "0");
        assert_eq!(v["netns"], "host");
        assert_eq!(v["message"], "tcp 127.0.0.1:80 listening: web (pid 10)");
    }

    #[test]
    fn the_ring_keeps_the_newest_and_pages_by_sequence() {
        let mut t = Tracker::new();
        let ports: Vec<Port> = (1..=5)
            .map(|p| port("host", p, u64::from(p), None))
            .collect();
        let e = t.observe_ports(&ports[..], T, |_| true);
        let mut r = Recent::new(3);
        r.push(&e);
        let seqs =
            |it: &mut dyn Iterator<Item = &Event>| it.map(|e| e.sequence).collect::<Vec<_>>();
        assert_eq!(seqs(&mut r.since(0)), [3, 4, 5]);
        assert_eq!(seqs(&mut r.since(4)), [5]);
        assert!(r.since(5).next().is_none());
    }
}
