//! What the status page and its API show of a snapshot: a row per socket
//! of every port series (one per listener as `ls` lists them, the series'
//! health and history on each), the filters both understand, and the
//! sort orders of the page. Pure: a snapshot and a query in, rows out.

use std::cmp::Ordering;

use crate::engine::history;
use crate::engine::{PortSeries, Snapshot, SocketInfo, TargetSeries};
use crate::health::Health;
use crate::model::{AcceptQueue, Family, Owner, Proto};

/// A bad query parameter: which, and what it accepts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadQuery(pub String);

impl std::fmt::Display for BadQuery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Which rows to show, as the query asks.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Filter {
    pub proto: Option<Proto>,
    pub port: Option<u16>,
    pub netns: Option<String>,
    /// Any of these words; empty: all.
    pub health: Vec<Health>,
    /// The row's unit, exact or as shown (a user's unit by its own name too),
    /// or the socket unit that passed it the socket.
    pub unit: Option<String>,
    /// Every word must be in the row's text (the page's filter box).
    pub words: Vec<String>,
}

/// A column the page sorts by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SortKey {
    Proto,
    Address,
    #[default]
    Port,
    Netns,
    Process,
    User,
    Unit,
    Health,
    Connect,
    Queue,
    Uptime,
}

impl SortKey {
    pub const ALL: [(SortKey, &'static str); 11] = [
        (SortKey::Proto, "proto"),
        (SortKey::Address, "address"),
        (SortKey::Port, "port"),
        (SortKey::Netns, "netns"),
        (SortKey::Process, "process"),
        (SortKey::User, "user"),
        (SortKey::Unit, "unit"),
        (SortKey::Health, "health"),
        (SortKey::Connect, "connect"),
        (SortKey::Queue, "queue"),
        (SortKey::Uptime, "uptime"),
    ];

    pub fn name(self) -> &'static str {
        SortKey::ALL
            .iter()
            .find(|(k, _)| *k == self)
            .map_or("port", |(_, n)| n)
    }
}

/// How the page arranges the rows.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Arrange {
    pub sort: SortKey,
    pub descending: bool,
    /// One table section per namespace / container, or per unit.
    pub group: Group,
}

/// What the page's sections are.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Group {
    #[default]
    None,
    Netns,
    Unit,
}

impl Group {
    pub const ALL: [(Group, &'static str); 3] = [
        (Group::None, "none"),
        (Group::Netns, "netns"),
        (Group::Unit, "unit"),
    ];

    pub fn name(self) -> &'static str {
        Group::ALL
            .iter()
            .find(|(g, _)| *g == self)
            .map_or("none", |(_, n)| n)
    }
}

/// Everything a query can say.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Query {
    pub filter: Filter,
    pub arrange: Arrange,
    /// Whether the API includes each row's history (default yes).
    pub history: bool,
    /// The most rows to answer with (the page's default:
    /// [`PAGE_ROWS`]; the API's: [`MAX_ROWS`]).
    pub limit: Option<usize>,
}

/// Rows the page shows unless asked for more: a host with thousands of
/// ports is read through the filter.
pub const PAGE_ROWS: usize = 1000;

/// The most rows one answer has, asked or not (the default
/// `--discovery.max-ports`): what one response can hold is bounded, and so
/// is what [`super::RENDERS`] of them hold for slow readers.
pub const MAX_ROWS: usize = 20_000;

impl Query {
    /// Parses the query string's pairs; an unknown value is an error that
    /// names the parameter and what it accepts. Unknown parameters are
    /// ignored (a browser may add its own).
    pub fn parse(pairs: &[(String, String)]) -> Result<Query, BadQuery> {
        let mut q = Query {
            history: true,
            ..Query::default()
        };
        for (k, v) in pairs {
            let v = v.trim();
            if v.is_empty() {
                continue;
            }
            match k.as_str() {
                "proto" => {
                    q.filter.proto = Some(
                        Proto::parse(v).map_err(|why| BadQuery(format!("proto={v:?}: {why}")))?,
                    );
                }
                "port" => {
                    q.filter.port = Some(
                        crate::value::parse_port(v)
                            .map_err(|why| BadQuery(format!("port={v:?}: {why}")))?,
                    );
                }
                "netns" => q.filter.netns = Some(v.to_string()),
                "health" => {
                    for word in v.split(',').map(str::trim).filter(|w| !w.is_empty()) {
                        q.filter.health.push(Health::parse(word).ok_or_else(|| {
                            BadQuery(format!(
                                "health={word:?}: expected ok, slow, hung, down or unknown (several separated by commas)"
                            ))
                        })?);
                    }
                }
                "q" => {
                    q.filter.words = v.split_whitespace().map(str::to_lowercase).collect();
                }
                "sort" => {
                    q.arrange.sort = SortKey::ALL
                        .iter()
                        .find(|(_, n)| *n == v)
                        .map(|(k, _)| *k)
                        .ok_or_else(|| {
                            BadQuery(format!(
                                "sort={v:?}: expected one of {}",
                                SortKey::ALL.map(|(_, n)| n).join(", ")
                            ))
                        })?;
                }
                "dir" => {
                    q.arrange.descending = match v {
                        "asc" => false,
                        "desc" => true,
                        _ => return Err(BadQuery(format!("dir={v:?}: expected asc or desc"))),
                    }
                }
                "group" => {
                    q.arrange.group = Group::ALL
                        .iter()
                        .find(|(_, n)| *n == v)
                        .map(|(g, _)| *g)
                        .ok_or_else(|| {
                            BadQuery(format!("group={v:?}: expected netns, unit or none"))
                        })?;
                }
                "unit" => q.filter.unit = Some(v.to_string()),
                "limit" => {
                    q.limit = Some(
                        v.parse()
                            .ok()
                            .filter(|n| (1..=MAX_ROWS).contains(n))
                            .ok_or_else(|| {
                                BadQuery(format!(
                                    "limit={v:?}: expected a number of rows from 1 to {MAX_ROWS}"
                                ))
                            })?,
                    );
                }
                "history" => {
                    q.history = crate::value::parse_go_bool(v)
                        .map_err(|why| BadQuery(format!("history={v:?}: {why}")))?;
                }
                _ => {}
            }
        }
        Ok(q)
    }
}

/// One row: a socket of a port series (or the series alone, when none of
/// its sockets is known).
#[derive(Debug, Clone, Copy)]
pub struct Row<'a> {
    pub port: &'a PortSeries,
    pub socket: Option<&'a SocketInfo>,
    /// Uptime over the last hour and day.
    pub uptime: (Option<f64>, Option<f64>),
    /// Conflicts on its port number, by kind.
    pub conflicts: &'a [crate::conflicts::Conflict],
}

impl<'a> Row<'a> {
    pub fn owner(&self) -> Option<&'a Owner> {
        self.socket.and_then(|s| s.owner()).map(|o| &**o)
    }

    /// `tcp`, `tcp6`, `udp`, `udp6`, as `ls` and `ss` write them.
    pub fn proto_label(&self) -> String {
        let proto = self.port.key.proto.as_str();
        match self.socket.map(|s| s.family) {
            Some(Family::Ipv6) => format!("{proto}6"),
            _ => proto.to_string(),
        }
    }

    pub fn address(&self) -> String {
        self.socket
            .map(|s| s.address.to_string())
            .unwrap_or_default()
    }

    pub fn container(&self) -> Option<&'a str> {
        self.owner()
            .and_then(|o| o.container.as_ref())
            .map(|c| c.id.as_str())
    }

    pub fn process(&self) -> &'a str {
        &self.port.process_name
    }

    pub fn user(&self) -> &'a str {
        self.owner().map_or("", |o| o.user.as_str())
    }

    /// The unit the row shows (after the socket unit that passed it the
    /// socket), when one is known.
    pub fn unit(&self) -> Option<String> {
        crate::model::unit_display(
            self.owner(),
            self.socket.and_then(|s| s.activation.as_deref()),
        )
    }

    /// Whether the row's unit is `name`: exact (as labels have it) or as
    /// shown, the system unit, a user's unit, or the socket unit.
    pub fn has_unit(&self, name: &str) -> bool {
        let unit = self.owner().and_then(|o| o.unit.as_ref());
        let socket = self
            .socket
            .and_then(|s| s.activation.as_ref())
            .map(|a| a.socket_label());
        let mut names = unit
            .into_iter()
            .flat_map(|u| [Some(u.system.as_str()), u.user.as_deref()])
            .chain([socket])
            .flatten();
        names.any(|n| n == name || crate::discover::cgroup::unescape(n) == name)
            || self.unit().is_some_and(|shown| shown == name)
    }

    pub fn health(&self) -> Health {
        self.port.health
    }

    /// The last TCP check's connect time, when it connected and the port
    /// still listens.
    pub fn connect_seconds(&self) -> Option<f64> {
        self.port
            .tcp
            .filter(|(alive, _)| *alive && self.port.present)
            .map(|(_, s)| s)
    }

    /// This socket's accept queue, while it listens.
    pub fn queue(&self) -> Option<AcceptQueue> {
        self.socket
            .and_then(|s| s.accept_queue)
            .filter(|_| self.port.present)
    }

    /// What the filter box searches, lowercase.
    pub fn text(&self) -> String {
        let mut t = format!(
            "{} {} {} {} {} {} {}",
            self.proto_label(),
            self.address(),
            self.port.key.port,
            self.port.key.netns,
            self.process(),
            self.user(),
            self.health(),
        );
        if let Some(c) = self.container() {
            t.push(' ');
            t.push_str(c);
        }
        if let Some(u) = self.unit() {
            t.push(' ');
            t.push_str(&u);
        }
        if let Some(o) = self.owner() {
            t.push_str(&format!(" {}", o.pid));
        }
        for c in self.conflicts {
            t.push_str(" conflict ");
            t.push_str(c.kind.as_str());
        }
        t.to_lowercase()
    }
}

fn matches_series(f: &Filter, p: &PortSeries) -> bool {
    f.proto.is_none_or(|x| x == p.key.proto)
        && f.port.is_none_or(|x| x == p.key.port)
        && f.netns.as_deref().is_none_or(|x| x == &*p.key.netns)
        && (f.health.is_empty() || f.health.contains(&p.health))
}

/// The conflicts on `p`'s port number (they are sorted by protocol, port
/// and namespace, so those of one series are side by side).
pub fn conflicts_of<'a>(
    all: &'a [crate::conflicts::Conflict],
    p: &PortSeries,
) -> &'a [crate::conflicts::Conflict] {
    let key = (p.key.proto, p.key.port, &*p.key.netns);
    let start = all.partition_point(|c| (c.proto, c.port, &*c.netns) < key);
    let len = all[start..]
        .iter()
        .take_while(|c| (c.proto, c.port, &*c.netns) == key)
        .count();
    &all[start..start + len]
}

/// The rows of `snapshot` that `query` asks for, arranged as it says
/// (grouped rows are ordered by group first); `now` is the current minute.
pub fn rows<'a>(snapshot: &'a Snapshot, query: &Query, now: u32) -> Vec<Row<'a>> {
    let f = &query.filter;
    let mut out = Vec::new();
    for p in snapshot.ports.iter().filter(|p| matches_series(f, p)) {
        let uptime = (p.day.uptime(now, 60), p.day.uptime(now, history::MINUTES));
        // Its sockets; the series alone when none is known.
        let alone = p.sockets.is_empty().then_some(None);
        let conflicts = conflicts_of(&snapshot.conflicts, p);
        for socket in p.sockets.iter().map(Some).chain(alone) {
            let row = Row {
                port: p,
                socket,
                uptime,
                conflicts,
            };
            let unit_ok = f.unit.as_deref().is_none_or(|u| row.has_unit(u));
            if unit_ok
                && (f.words.is_empty() || {
                    let text = row.text();
                    f.words.iter().all(|w| text.contains(w.as_str()))
                })
            {
                out.push(row);
            }
        }
    }
    arrange(&mut out, &query.arrange);
    out
}

fn by_key(a: &Row<'_>, b: &Row<'_>, key: SortKey) -> Ordering {
    let float = |x: Option<f64>, y: Option<f64>| match (x, y) {
        (Some(x), Some(y)) => x.total_cmp(&y),
        (x, y) => y.is_some().cmp(&x.is_some()),
    };
    match key {
        SortKey::Proto => a.proto_label().cmp(&b.proto_label()),
        SortKey::Address => a
            .socket
            .map(|s| s.address)
            .cmp(&b.socket.map(|s| s.address)),
        SortKey::Port => Ordering::Equal,
        SortKey::Netns => a.port.key.netns.cmp(&b.port.key.netns),
        SortKey::Process => a.process().cmp(b.process()),
        SortKey::User => a.user().cmp(b.user()),
        SortKey::Unit => a.unit().cmp(&b.unit()),
        SortKey::Health => a.health().severity().cmp(&b.health().severity()),
        SortKey::Connect => float(a.connect_seconds(), b.connect_seconds()),
        SortKey::Queue => a
            .queue()
            .map(|q| q.current)
            .cmp(&b.queue().map(|q| q.current)),
        SortKey::Uptime => float(a.uptime.1, b.uptime.1),
    }
}

fn arrange(rows: &mut [Row<'_>], how: &Arrange) {
    rows.sort_by(|a, b| {
        let group = match how.group {
            Group::None => Ordering::Equal,
            g => group_of(a, g).cmp(&group_of(b, g)),
        };
        let key = by_key(a, b, how.sort);
        let key = if how.descending { key.reverse() } else { key };
        // Ties: the series' order, then the address.
        group
            .then(key)
            .then_with(|| a.port.key.cmp(&b.port.key))
            .then_with(|| by_key(a, b, SortKey::Address))
    });
}

/// The group a row belongs to: its namespace label, with the container
/// beside it when the label is not the container's id already; or its unit.
pub fn group_of(row: &Row<'_>, group: Group) -> String {
    if group == Group::Unit {
        return row.unit().unwrap_or_else(|| "(no unit)".to_string());
    }
    let netns = &*row.port.key.netns;
    match row.container() {
        Some(c) if c != netns => format!("{netns} (container {c})"),
        _ => netns.to_string(),
    }
}

/// Counts of port series per health word, worst first.
pub fn counts(snapshot: &Snapshot) -> [(Health, usize); 5] {
    Health::WORST_FIRST.map(|h| (h, snapshot.ports.iter().filter(|p| p.health == h).count()))
}

/// A target's one word: `ok` after a successful check, `down` after a
/// failed one, `unknown` before the first.
pub fn target_health(t: &TargetSeries) -> Health {
    crate::health::of_target(t.last.as_ref().map(|l| l.success))
}

/// The targets the filter box and `health` select (the port filters do
/// not apply to them).
pub fn targets<'a>(snapshot: &'a Snapshot, filter: &Filter) -> Vec<&'a TargetSeries> {
    snapshot
        .targets
        .iter()
        .filter(|t| filter.health.is_empty() || filter.health.contains(&target_health(t)))
        .filter(|t| {
            let text = target_text(t);
            filter.words.iter().all(|w| text.contains(w.as_str()))
        })
        .collect()
}

/// What the filter box searches in a target's row, lowercase.
pub fn target_text(t: &TargetSeries) -> String {
    format!(
        "{} {} {} {}",
        t.job.target.name,
        t.job.target.target,
        t.job.module.name,
        target_health(t)
    )
    .to_lowercase()
}

/// A day's uptime of a history, as the page writes it.
pub fn percent(uptime: Option<f64>) -> String {
    match uptime {
        None => "–".to_string(),
        Some(u) if u >= 1.0 => "100%".to_string(),
        // Never rounds up to 100 %: a bad minute shows.
        Some(u) => format!("{:.1}%", (u * 1000.0).floor() / 10.0),
    }
}

/// A connect time as people read it.
pub fn duration(seconds: f64) -> String {
    if seconds < 1e-3 {
        format!("{:.0} µs", seconds * 1e6)
    } else if seconds < 1.0 {
        format!("{:.1} ms", seconds * 1e3)
    } else {
        format!("{seconds:.2} s")
    }
}

/// The current minute, for a request.
pub fn now_minute() -> u32 {
    history::minute_of(std::time::SystemTime::now())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(q: &str) -> Result<Query, BadQuery> {
        let pairs: Vec<(String, String)> = q
            .split('&')
            .filter_map(|p| p.split_once('='))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Query::parse(&pairs)
    }

    #[test]
    fn queries_parse_and_bad_values_name_the_parameter_and_the_form() {
        let q = parse("proto=udp&port=53&netns=host&health=down,hung&q=Nginx 80&sort=health&dir=desc&group=netns&history=false&utm=x")
            .expect("good query");
        assert_eq!(q.filter.proto, Some(Proto::Udp));
        assert_eq!(q.filter.port, Some(53));
        assert_eq!(q.filter.netns.as_deref(), Some("host"));
        assert_eq!(q.filter.health, vec![Health::Down, Health::Hung]);
        assert_eq!(q.filter.words, vec!["nginx", "80"]);
        assert_eq!(q.arrange.sort, SortKey::Health);
        assert!(q.arrange.descending && q.arrange.group == Group::Netns && !q.history);
        // Empty values are no filter.
        assert_eq!(
            parse("proto=&port=").expect("empty"),
            parse("").expect("none")
        );
        for (bad, starts) in [
            (
                "proto=sctp",
                "proto=\"sctp\": invalid protocol 'sctp' (expected tcp or udp)",
            ),
            (
                "port=-1",
                "port=\"-1\": invalid port '-1' (expected a number from 1 to 65535)",
            ),
            ("port=0", "port=\"0\": invalid port"),
            ("history=maybe", "history=\"maybe\": invalid boolean"),
            ("health=ok,meh", "health=\"meh\": expected ok, slow"),
            ("sort=pid", "sort=\"pid\": expected one of proto, address"),
            ("dir=up", "dir=\"up\": expected asc or desc"),
            ("group=pod", "group=\"pod\": expected netns, unit or none"),
        ] {
            let e = parse(bad).expect_err(bad).to_string();
            assert!(e.starts_with(starts), "{bad}: {e}");
        }
    }

    #[test]
    fn percentages_never_round_up_to_a_full_day() {
        assert_eq!(percent(Some(1.0)), "100%");
        assert_eq!(percent(Some(1439.0 / 1440.0)), "99.9%");
        assert_eq!(percent(Some(0.0)), "0.0%");
        assert_eq!(percent(None), "–");
        assert_eq!(duration(42e-6), "42 µs");
        assert_eq!(duration(0.0123), "12.3 ms");
        assert_eq!(duration(2.5), "2.50 s");
    }
}
