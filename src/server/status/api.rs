//! `/api/v1/ports` and `/api/v1/targets`: the snapshot as JSON. A port's
//! element carries the fields of `ls --json` (one element per listening
//! socket) and, from the engine, its health, last check, connect time,
//! uptime and last day (schema in docs/status-page.md).

use std::borrow::Cow;
use std::time::SystemTime;

use serde::Serialize;

use super::view::{self, Query, Row};
use crate::engine::history::{self, Day};
use crate::engine::{Snapshot, TargetSeries};
use crate::model::{AcceptQueue, Family, Owner, Proto};
use crate::text::printable;
use crate::value::time::unix_seconds as unix;

/// What is common to both answers.
#[derive(Serialize)]
struct Header<'a> {
    host: &'a str,
    /// When the answer was made, Unix seconds.
    generated: f64,
    /// When the last discovery pass ended.
    last_discovery: Option<f64>,
    /// When the last round of each kind of check ended.
    last_rounds: std::collections::BTreeMap<&'static str, f64>,
    /// Port series per health word (the whole host, whatever the filter).
    counts: std::collections::BTreeMap<&'static str, usize>,
}

fn header<'a>(snapshot: &Snapshot, host: &'a str) -> Header<'a> {
    Header {
        host,
        generated: unix(SystemTime::now()),
        last_discovery: snapshot.telemetry.last_discovery.map(|(t, _)| unix(t)),
        last_rounds: snapshot
            .telemetry
            .probes
            .iter()
            .filter_map(|(kind, p)| Some((*kind, unix(p.last_round?))))
            .collect(),
        counts: view::counts(snapshot)
            .into_iter()
            .map(|(h, n)| (h.as_str(), n))
            .collect(),
    }
}

/// A last day: the window's first minute and the spans with data in it.
#[derive(Serialize)]
struct DayJson {
    /// The first minute of the window (Unix seconds); it ends with the
    /// current minute, [`history::MINUTES`] minutes in all.
    since: u64,
    minutes: u32,
    spans: Vec<Span>,
}

#[derive(Serialize)]
struct Span {
    /// Unix seconds of its first minute.
    start: u64,
    minutes: u32,
    /// The worst health seen in each of its minutes.
    health: &'static str,
    /// The median connect time of its first minute, seconds.
    connect_seconds: Option<f64>,
}

fn day(h: &Day, now: u32) -> DayJson {
    DayJson {
        since: u64::from(now.saturating_sub(history::MINUTES - 1)) * 60,
        minutes: history::MINUTES,
        spans: h
            .spans(now)
            .map(|s| Span {
                start: u64::from(s.start) * 60,
                minutes: s.minutes,
                health: s.worst.as_str(),
                connect_seconds: s.connect_seconds.map(three_digits),
            })
            .collect(),
    }
}

/// A figure known to ±4.5 % (a history's connect time), with the digits
/// that mean something.
fn three_digits(x: f64) -> f64 {
    format!("{x:.2e}").parse().unwrap_or(x)
}

/// An owner as `ls --json` gives it, but for its command line: arguments
/// carry secrets, and this answer leaves the host (`ls --json` on the host
/// shows them to whoever may read /proc).
#[derive(Serialize)]
struct ApiOwner<'a> {
    pid: u32,
    start_time: u64,
    process_name: Cow<'a, str>,
    exe_path: Cow<'a, str>,
    user: Cow<'a, str>,
    unit: Option<&'a crate::discover::cgroup::Unit>,
}

impl<'a> ApiOwner<'a> {
    fn of(o: &'a Owner) -> Self {
        ApiOwner {
            pid: o.pid,
            start_time: o.start_time,
            process_name: printable(&o.process_name),
            exe_path: printable(&o.exe_path),
            user: printable(&o.user),
            unit: o.unit.as_ref(),
        }
    }
}

/// One element of `ports`.
#[derive(Serialize)]
struct Port<'a> {
    // As `ls --json`.
    proto: Proto,
    family: Option<Family>,
    address: Option<String>,
    port: u16,
    inode: Option<u64>,
    uid: Option<u32>,
    netns: &'a str,
    container: Option<&'a str>,
    pod_uid: Option<&'a str>,
    /// The primary owner's unit, and the row's as `ls` shows it.
    unit: Option<&'a crate::discover::cgroup::Unit>,
    unit_display: Option<String>,
    socket_activation: Option<&'a crate::model::Activation>,
    accept_queue: Option<AcceptQueue>,
    health: &'static str,
    connect_seconds: Option<f64>,
    owners: Vec<ApiOwner<'a>>,
    owner_unknown_reason: Option<&'a str>,
    /// Always false: excluded processes' ports are not watched.
    excluded: bool,
    /// Kinds of conflict on its port number, as `ls --json` has them.
    conflicts: Vec<&'static str>,
    /// The same, with who is in each.
    conflict_details: &'a [crate::conflicts::Conflict],
    /// Whether outside hosts may reach it, by the firewall, as `ls --json`.
    exposure: Option<&'a crate::exposure::Exposure>,
    // The engine's.
    /// Still listening; false for a gone port kept for the retention
    /// (its last sockets shown).
    present: bool,
    process_name: Cow<'a, str>,
    exe_path: Cow<'a, str>,
    /// When its last TCP check ended (Unix seconds).
    last_check: Option<f64>,
    /// For a port that answers HTTP: whether it did at the last check.
    http_alive: Option<bool>,
    uptime_1h: Option<f64>,
    uptime_24h: Option<f64>,
    history: Option<DayJson>,
}

fn port<'a>(row: &Row<'a>, now: u32, with_history: bool) -> Port<'a> {
    let p = row.port;
    let s = row.socket;
    let owner = row.owner();
    Port {
        proto: p.key.proto,
        family: s.map(|s| s.family),
        address: s.map(|s| s.address.to_string()),
        port: p.key.port,
        inode: s.map(|s| s.inode),
        uid: s.map(|s| s.uid),
        netns: &p.key.netns,
        container: row.container(),
        pod_uid: owner
            .and_then(|o| o.container.as_ref())
            .and_then(|c| c.pod_uid.as_deref()),
        unit: owner.and_then(|o| o.unit.as_ref()),
        unit_display: row.unit(),
        socket_activation: s.and_then(|s| s.activation.as_deref()),
        accept_queue: row.queue(),
        health: p.health.as_str(),
        connect_seconds: row.connect_seconds(),
        owners: s.map_or_else(Vec::new, |s| {
            s.owners.iter().map(|o| ApiOwner::of(o)).collect()
        }),
        owner_unknown_reason: s.and_then(|s| s.owner_unknown_reason.as_deref()),
        excluded: false,
        conflicts: row.conflicts.iter().map(|c| c.kind.as_str()).collect(),
        conflict_details: row.conflicts,
        exposure: s.and_then(|s| s.exposure.as_deref()),
        present: p.present,
        process_name: printable(&p.process_name),
        exe_path: printable(&p.exe_path),
        last_check: p.last_check.map(f64::from),
        http_alive: p.http_alive,
        uptime_1h: row.uptime.0,
        uptime_24h: row.uptime.1,
        history: with_history.then(|| day(&p.day, now)),
    }
}

#[derive(Serialize)]
struct Ports<'a> {
    #[serde(flatten)]
    header: Header<'a>,
    ports: Vec<Port<'a>>,
}

/// The `/api/v1/ports` body.
pub fn ports(snapshot: &Snapshot, host: &str, query: &Query) -> Vec<u8> {
    let now = view::now_minute();
    let rows = view::rows(snapshot, query, now);
    let body = Ports {
        header: header(snapshot, host),
        ports: rows
            .iter()
            .take(query.limit.unwrap_or(view::MAX_ROWS))
            .map(|r| port(r, now, query.history))
            .collect(),
    };
    serde_json::to_vec(&body).unwrap_or_default()
}

/// One element of `targets`.
#[derive(Serialize)]
struct Target<'a> {
    name: &'a str,
    target: &'a str,
    module: &'a str,
    labels: &'a std::collections::BTreeMap<String, String>,
    /// `ok` after a successful check, `down` after a failed one,
    /// `unknown` before the first.
    health: &'static str,
    /// Why the last check failed.
    reason: Option<&'static str>,
    /// How long the last check took.
    seconds: Option<f64>,
    http_status: Option<u16>,
    tls_not_after: Option<i64>,
    last_check: Option<f64>,
    uptime_1h: Option<f64>,
    uptime_24h: Option<f64>,
    /// As a port's; `connect_seconds` is the whole check's time.
    history: Option<DayJson>,
}

fn target<'a>(t: &'a TargetSeries, now: u32, with_history: bool) -> Target<'a> {
    let last = t.last.as_ref();
    let d = t.history.day();
    Target {
        name: &t.job.target.name,
        target: &t.job.target.target,
        module: &t.job.module.name,
        labels: &t.job.target.labels,
        health: view::target_health(t).as_str(),
        reason: last.and_then(|l| l.reason).map(|r| r.as_str()),
        seconds: last.map(|l| l.seconds),
        http_status: last.and_then(|l| l.http_status),
        tls_not_after: last.and_then(|l| l.tls).map(|d| d.not_after),
        last_check: t.last_check.map(unix),
        uptime_1h: d.uptime(now, 60),
        uptime_24h: d.uptime(now, history::MINUTES),
        history: with_history.then(|| day(&d, now)),
    }
}

#[derive(Serialize)]
struct Targets<'a> {
    #[serde(flatten)]
    header: Header<'a>,
    targets: Vec<Target<'a>>,
}

/// The `/api/v1/targets` body.
pub fn targets(snapshot: &Snapshot, host: &str, query: &Query) -> Vec<u8> {
    let now = view::now_minute();
    let body = Targets {
        header: header(snapshot, host),
        targets: view::targets(snapshot, &query.filter)
            .into_iter()
            .take(query.limit.unwrap_or(view::MAX_ROWS))
            .map(|t| target(t, now, query.history))
            .collect(),
    };
    serde_json::to_vec(&body).unwrap_or_default()
}

/// `/api/v1/events`: `{"host", "last", "kept", "events": [...]}`, the
/// events after `since` (of `action`, if given), oldest first, each as the
/// events output writes it; `last` is the newest sequence made (to ask
/// `since=last` next time), `kept` how many the ring holds.
pub fn events(
    snapshot: &Snapshot,
    host: &str,
    since: u64,
    action: Option<crate::events::Action>,
) -> Vec<u8> {
    let view = &snapshot.events;
    let events: Vec<serde_json::Value> = view
        .recent
        .since(since)
        .filter(|e| action.is_none_or(|a| e.action == a))
        .map(|e| e.to_json(host))
        .collect();
    let last = view.recent.events.back().map_or(0, |e| e.sequence);
    serde_json::to_vec(&serde_json::json!({
        "host": host,
        "last": last,
        "kept": view.recent.events.len(),
        "events": events,
    }))
    .unwrap_or_default()
}

/// `/api/v1/sd`: this host's listening sockets that another host can
/// address, as Prometheus HTTP service discovery reads them (a JSON list
/// of target groups), so that a central Prometheus can have each probed
/// from elsewhere. One group per socket: its address and port as the
/// target, and `__meta_portwarden_*` labels for relabelling (proto, port,
/// netns, process, unit, exposure). Loopback sockets are left out; a
/// wildcard socket of the host's own namespace is given at `host` (the
/// address the asker reached us at, or `?host=`), and left out without
/// one.
pub fn sd(snapshot: &Snapshot, host: Option<&str>) -> Vec<u8> {
    let mut groups = Vec::new();
    for p in snapshot.ports.iter().filter(|p| p.present) {
        for s in p.sockets.iter() {
            let address = if s.address.is_unspecified() {
                match host {
                    Some(h) if &*p.key.netns == "host" => h.to_string(),
                    _ => continue,
                }
            } else if s.address.is_loopback() {
                continue;
            } else {
                s.address.to_string()
            };
            let target = if address.contains(':') {
                format!("[{address}]:{}", p.key.port)
            } else {
                format!("{address}:{}", p.key.port)
            };
            let owner = s.owner();
            let mut labels = serde_json::Map::new();
            let mut label = |k: &str, v: String| {
                labels.insert(
                    format!("__meta_portwarden_{k}"),
                    serde_json::Value::String(v),
                );
            };
            label("proto", p.key.proto.as_str().to_string());
            label("port", p.key.port.to_string());
            label("netns", p.key.netns.to_string());
            label("address", s.address.to_string());
            label("process", p.process_name.to_string());
            if let Some(unit) =
                crate::model::unit_display(owner.map(|o| &**o), s.activation.as_deref())
            {
                label("unit", unit);
            }
            if let Some(e) = &s.exposure {
                label("exposure", e.word().to_string());
            }
            groups.push(serde_json::json!({"targets": [target], "labels": labels}));
        }
    }
    serde_json::to_vec(&groups).unwrap_or_default()
}
