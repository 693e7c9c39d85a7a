//! The background engine: rediscover, probe, publish a [`Snapshot`].
//!
//! Nothing here runs on the scrape path. A discovery thread (blocking /proc
//! and netlink work) refreshes the port list every status interval, with a
//! full owner rescan at least every label interval, and checks owner
//! processes for liveness. Async rounds probe TCP ports (and HTTP) with a
//! global cap on checks in flight, paced over the interval. Every change
//! ends in a new immutable `Snapshot`; a scrape encodes the latest one.

use std::collections::HashMap;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Condvar, Mutex, OnceLock, RwLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tokio::sync::{Semaphore, watch};

use crate::baseline::{self, Allowlist, Baseline, Expected};
use crate::config::Settings;
use crate::discover::procfs::{self, ProcRoot};
use crate::discover::sockets::CONNECTION_STATES;
use crate::discover::{Discoverer, Discovery, ListenCounters, SocketSource};
use crate::health::{self, ConnectHistory, Health};
use crate::metrics::{Encoder, Format, Kind};
use crate::model::{Family, Proto, Socket};
use crate::probe::http::{HttpOutcome, Verdict};
use crate::probe::{self, tcp::TcpOutcome};

/// Upper bounds of the probe duration histogram, in seconds.
const DURATION_BUCKETS: [f64; 12] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
];

/// One port series: a protocol and port number in one network namespace.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PortKey {
    pub proto: Proto,
    pub port: u16,
    pub netns: Arc<str>,
}

/// Whether a TCP port speaks HTTP.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HttpClass {
    /// Has not answered HTTP (yet): a new port, a new owner on it, or one
    /// that answered something else or nothing. Asked again from `next` on,
    /// with a back-off: a first answer is never the last word (a busy server
    /// drops or delays a request now and then).
    Unknown {
        /// Definitive answers that were not HTTP, in a row.
        refused: u16,
        /// Inconclusive ones (timeout, unreachable), in a row.
        silent: u16,
        next: Instant,
    },
    /// Answered HTTP once; `alive` is the last check.
    Http { alive: bool },
}

/// Inconclusive answers asked again at the very next round before backing off.
const SILENT_RETRIES: u16 = 3;

impl HttpClass {
    /// Not known: to be asked at the next round.
    fn unknown() -> HttpClass {
        HttpClass::Unknown {
            refused: 0,
            silent: 0,
            next: Instant::now(),
        }
    }

    /// Whether a round starting at `now` asks it.
    fn due(&self, now: Instant) -> bool {
        match self {
            HttpClass::Unknown { next, .. } => *next <= now,
            HttpClass::Http { .. } => true,
        }
    }

    /// What an answer to a check started at `asked` makes of it. `period`
    /// is the HTTP interval; no port goes unasked for longer than `longest`
    /// (the label interval, when owners are rescanned in full).
    fn after(
        self,
        outcome: &HttpOutcome,
        asked: Instant,
        period: Duration,
        longest: Duration,
    ) -> HttpClass {
        let (mut refused, mut silent) = match self {
            _ if outcome.is_http() => return HttpClass::Http { alive: true },
            // Our own fault: the last value stands.
            _ if outcome.verdict() == Verdict::Ours => return self,
            // Once HTTP, any other answer is a stop: 0, kept.
            HttpClass::Http { .. } => return HttpClass::Http { alive: false },
            HttpClass::Unknown {
                refused, silent, ..
            } => (refused, silent),
        };
        let wait = match outcome.verdict() {
            // A server that speaks first: not asked again before the next
            // full rescan (or a new owner).
            _ if *outcome == HttpOutcome::Banner => {
                refused = refused.saturating_add(1);
                longest
            }
            Verdict::NotHttp => {
                refused = refused.saturating_add(1);
                silent = 0;
                backoff(period, refused, longest)
            }
            _ => {
                silent = silent.saturating_add(1);
                if silent <= SILENT_RETRIES {
                    period
                } else {
                    backoff(period, silent - SILENT_RETRIES, longest)
                }
            }
        };
        HttpClass::Unknown {
            refused,
            silent,
            // Due at the round that starts `wait` after this one; half a
            // period of slack for where in its round the check ran.
            next: asked + wait.saturating_sub(period / 2),
        }
    }
}

/// One period after the first miss, doubling after each, at most `longest`.
fn backoff(period: Duration, misses: u16, longest: Duration) -> Duration {
    let doublings = u32::from(misses.max(1) - 1).min(20);
    period.saturating_mul(1 << doublings).min(longest)
}

#[derive(Debug, Clone)]
struct PortState {
    /// Shared with the snapshots (and, unchanged, kept across passes): a
    /// publish copies no name.
    process_name: Arc<str>,
    exe_path: Arc<str>,
    /// (pid, start time) of the primary owner: when it changes, HTTP is
    /// detected again.
    owner: Option<(u32, u64)>,
    targets: Vec<SocketAddr>,
    present: bool,
    last_seen: Instant,
    tcp: Option<TcpOutcome>,
    http: HttpClass,
    /// The sockets behind the series, for `portwarden_port_info`; shared
    /// with the snapshots.
    sockets: Arc<[SocketInfo]>,
    /// Accept queue over the port's listeners (summed), when known.
    queue: Option<QueueState>,
    /// Consecutive passes with a full accept queue.
    queue_full_passes: u32,
    /// Connections of the port's listeners, when counted.
    connections: Option<ConnSummary>,
    /// Recent connect times, for `slow`.
    history: ConnectHistory,
}

/// An owner process as its series name it: (process_name, exe_path).
type ProcKey = (Arc<str>, Arc<str>);

/// A port's accept queues, summed over its listeners.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueueState {
    pub current: u64,
    pub max: Option<u64>,
    /// The listeners' drop counters, summed (netlink only).
    pub drops: Option<u64>,
}

/// A port's connections: counts by state, distinct peers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnSummary {
    pub by_state: [u64; 12],
    pub peers: u64,
}

impl ConnSummary {
    fn of<'a>(all: impl IntoIterator<Item = &'a crate::model::Connections>) -> Option<Self> {
        let mut by_state = [0u64; 12];
        let mut peers: Vec<IpAddr> = Vec::new();
        let mut any = false;
        for c in all {
            any = true;
            for (slot, n) in by_state.iter_mut().zip(c.by_state) {
                *slot += u64::from(n);
            }
            peers.extend_from_slice(&c.peers);
        }
        peers.sort_unstable();
        peers.dedup();
        any.then_some(ConnSummary {
            by_state,
            peers: peers.len() as u64,
        })
    }
}

/// One socket of a port series, as `portwarden_port_info` describes it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct SocketInfo {
    pub family: Family,
    pub address: IpAddr,
    pub pid: Option<u32>,
    pub user: String,
    pub container: String,
    pub pod_uid: String,
}

impl PortState {
    /// The port's one word, from what the engine knows now.
    fn health(&self, proto: Proto) -> Health {
        let tcp_alive = self.tcp.map(|t| t.alive);
        health::assess(&health::Signals {
            proto,
            present: self.present,
            tcp_alive,
            queue_full_passes: self.queue_full_passes,
            http_stopped: tcp_alive == Some(true) && self.http == HttpClass::Http { alive: false },
            slow: self.history.is_slow(),
        })
    }
}

impl QueueState {
    fn of(sockets: &[&Socket]) -> Option<Self> {
        let queues: Vec<_> = sockets.iter().filter_map(|s| s.accept_queue).collect();
        if queues.is_empty() {
            return None;
        }
        let sum = |f: fn(&crate::model::AcceptQueue) -> Option<u32>| {
            queues
                .iter()
                .map(|q| f(q).map(u64::from))
                .sum::<Option<u64>>()
        };
        Some(QueueState {
            current: queues.iter().map(|q| u64::from(q.current)).sum(),
            max: sum(|q| q.max),
            drops: sum(|q| q.drops),
        })
    }
}

impl SocketInfo {
    fn new(socket: &Socket, owner: Option<&crate::model::Owner>) -> Self {
        let container = owner.and_then(|o| o.container.as_ref());
        SocketInfo {
            family: socket.family,
            address: socket.address,
            pid: owner.map(|o| o.pid),
            user: owner.map_or_else(String::new, |o| o.user.clone()),
            container: container.map_or_else(String::new, |c| c.id.clone()),
            pod_uid: container
                .and_then(|c| c.pod_uid.clone())
                .unwrap_or_default(),
        }
    }
}

#[derive(Debug, Clone)]
struct ProcState {
    pid: u32,
    start_time: u64,
    alive: bool,
    last_seen: Instant,
}

/// Probe counters and durations of one kind.
#[derive(Debug, Clone, Default)]
struct ProbeStats {
    results: HashMap<&'static str, u64>,
    buckets: [u64; DURATION_BUCKETS.len()],
    sum: f64,
    count: u64,
    last_round: Option<SystemTime>,
    last_round_seconds: f64,
}

impl ProbeStats {
    fn record(&mut self, result: &'static str, seconds: f64) {
        *self.results.entry(result).or_default() += 1;
        for (i, le) in DURATION_BUCKETS.iter().enumerate() {
            if seconds <= *le {
                self.buckets[i] += 1;
            }
        }
        self.sum += seconds;
        self.count += 1;
    }
}

/// Everything the engine knows; behind one lock, held briefly.
#[derive(Debug)]
struct State {
    /// Boxed: the table keeps ~40% of its slots empty, and a slot is a
    /// pointer rather than a whole state (~380 bytes).
    ports: HashMap<PortKey, Box<PortState>>,
    procs: HashMap<ProcKey, ProcState>,
    probes: HashMap<&'static str, ProbeStats>,
    discovery_errors: HashMap<&'static str, u64>,
    discovery_runs: HashMap<&'static str, u64>,
    last_discovery: Option<(SystemTime, f64)>,
    retention: Duration,
    /// How to reach each namespace's ports: from our own sockets, or from
    /// sockets made inside it.
    vias: HashMap<Arc<str>, probe::Via>,
    /// Whether the first refused namespace entry was logged.
    warned_unsupported: bool,
    /// Each namespace's `TcpExt` listen counters.
    netns_listen: Vec<(Arc<str>, ListenCounters)>,
    /// Whether discovery counts connections (so a port without any has 0).
    counting_connections: bool,
    /// Expected ports, when a baseline is kept.
    baseline: Option<BaselineView>,
    /// `--discovery.max-ports`: most port series kept, present or retained.
    max_ports: usize,
    /// Ports found at the last pass and not exported for the cap.
    over_limit: usize,
    /// A port had its first TCP check since the last round ended.
    first_checks: bool,
    /// When a check that failed on our side was last logged.
    our_fault_logged: Option<Instant>,
}

/// A published, immutable view of the engine, encoded on demand.
#[derive(Debug, Default)]
pub struct Snapshot {
    pub ports: Vec<PortSeries>,
    pub processes: Vec<ProcessSeries>,
    /// Each namespace's listen overflow and drop counters.
    pub netns_listen: Vec<(Arc<str>, ListenCounters)>,
    pub baseline: Option<BaselineView>,
    pub telemetry: Telemetry,
    /// Format × gzip.
    encoded: [OnceLock<Arc<[u8]>>; 4],
}

/// One port's series values.
#[derive(Debug, Clone, PartialEq)]
pub struct PortSeries {
    pub key: PortKey,
    pub process_name: Arc<str>,
    pub exe_path: Arc<str>,
    pub present: bool,
    /// (alive, connect seconds) of the last TCP check.
    pub tcp: Option<(bool, f64)>,
    /// Only for ports that once answered HTTP.
    pub http_alive: Option<bool>,
    /// Empty once the port is gone.
    pub sockets: Arc<[SocketInfo]>,
    pub queue: Option<QueueState>,
    pub connections: Option<ConnSummary>,
    pub health: Health,
}

/// One owner process's series value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcessSeries {
    pub process_name: Arc<str>,
    pub exe_path: Arc<str>,
    pub alive: bool,
}

/// The exporter's own health.
#[derive(Debug, Clone, Default)]
pub struct Telemetry {
    probes: Vec<(&'static str, ProbeStats)>,
    discovery_errors: Vec<(&'static str, u64)>,
    discovery_runs: Vec<(&'static str, u64)>,
    last_discovery: Option<(SystemTime, f64)>,
    process: Option<SelfProcess>,
    /// `--discovery.max-ports`.
    max_ports: usize,
    /// Ports left out for it at the last pass.
    over_limit: usize,
}

/// `process_*` figures of portwarden itself, read in the background.
#[derive(Debug, Clone, Copy, Default)]
struct SelfProcess {
    cpu_seconds: f64,
    resident_bytes: f64,
    virtual_bytes: f64,
    open_fds: f64,
    max_fds: f64,
    start_time_seconds: f64,
}

impl Snapshot {
    /// The exposition in `format`, gzipped or not: encoded at the first
    /// request of that variant and kept for the snapshot's life; variants
    /// nobody asks for are never built. CPU only, no I/O.
    pub fn body(&self, format: Format, gzip: bool) -> Arc<[u8]> {
        let slot = &self.encoded[format as usize * 2 + usize::from(gzip)];
        Arc::clone(slot.get_or_init(|| {
            let mut enc = if gzip {
                Encoder::gzip(format)
            } else {
                Encoder::new(format)
            };
            self.write(&mut enc);
            let body = enc.finish();
            // Into an Arc<[u8]> of exactly its size.
            body.into()
        }))
    }

    /// The exposition in `format`, as text.
    #[cfg(test)]
    fn encode(&self, format: Format) -> String {
        let mut enc = Encoder::new(format);
        self.write(&mut enc);
        String::from_utf8(enc.finish()).unwrap_or_default()
    }

    fn write(&self, enc: &mut Encoder) {
        let tcp = |p: &PortSeries| p.key.proto == Proto::Tcp;
        let gone_is_zero = |p: &PortSeries, up: bool| f64::from(u8::from(up && p.present));
        port_family(
            enc,
            "node_tcp_port_alive",
            "1 if a TCP connection to the port succeeded at the last check, 0 if not.",
            &self.ports,
            |p| {
                tcp(p)
                    .then_some(p.tcp?)
                    .map(|(alive, _)| gone_is_zero(p, alive))
            },
        );
        port_family(
            enc,
            "node_tcp_port_response_seconds",
            "TCP connect time of the last check, in seconds (0 once the port is gone).",
            &self.ports,
            |p| {
                tcp(p)
                    .then_some(p.tcp?)
                    .map(|(_, seconds)| if p.present { seconds } else { 0.0 })
            },
        );
        port_family(
            enc,
            "node_http_port_alive",
            "1 if the port answered an HTTP request with a status line and headers, 0 if it stopped; only ports that once answered HTTP.",
            &self.ports,
            |p| {
                tcp(p)
                    .then_some(p.http_alive?)
                    .map(|alive| gone_is_zero(p, alive))
            },
        );
        port_family(
            enc,
            "node_udp_port_alive",
            "1 while a UDP socket is bound (with no peer) on the port, 0 once it is gone.",
            &self.ports,
            |p| (p.key.proto == Proto::Udp).then(|| gone_is_zero(p, true)),
        );
        {
            let mut f = enc.family(
                "node_process_alive",
                "1 if the process owning the port(s) is running (same pid and start time, or its successor), 0 if not.",
                Kind::Gauge,
            );
            for p in &self.processes {
                let labels = [
                    ("process_name", or_slash(&p.process_name)),
                    ("exe_path", or_slash(&p.exe_path)),
                ];
                f.sample(&labels, f64::from(u8::from(p.alive)));
            }
        }
        {
            let mut f = enc.family(
                "portwarden_port_info",
                "One series per listening socket (while it listens): its address, namespace, primary owner's pid and user, and container; always 1.",
                Kind::Gauge,
            );
            for p in self.ports.iter().filter(|p| p.present) {
                let port = p.key.port.to_string();
                for s in p.sockets.iter() {
                    let address = s.address.to_string();
                    let pid = s.pid.map(|p| p.to_string()).unwrap_or_default();
                    let labels = [
                        ("proto", p.key.proto.as_str()),
                        ("family", s.family.as_str()),
                        ("address", address.as_str()),
                        ("port", port.as_str()),
                        ("netns", &*p.key.netns),
                        ("pid", pid.as_str()),
                        ("user", s.user.as_str()),
                        ("container", s.container.as_str()),
                        ("pod_uid", s.pod_uid.as_str()),
                    ];
                    f.sample(&labels, 1.0);
                }
            }
        }
        self.encode_load(enc);
        if let Some(b) = &self.baseline {
            encode_baseline(enc, b);
        }
        self.telemetry.encode(enc, &self.ports);
    }

    /// Accept queues, drops, connections and health: how loaded each port is.
    fn encode_load(&self, enc: &mut Encoder) {
        let queue = |p: &PortSeries| p.queue.filter(|_| p.key.proto == Proto::Tcp);
        port_family(
            enc,
            "portwarden_tcp_listen_queue_length",
            "Connections waiting in the port's accept queues (summed over its listeners): the application has not accepted them yet.",
            &self.ports,
            |p| queue(p).map(|q| q.current as f64),
        );
        port_family(
            enc,
            "portwarden_tcp_listen_queue_max",
            "The port's accept queue limit (the listen backlog, summed over its listeners).",
            &self.ports,
            |p| queue(p)?.max.map(|m| m as f64),
        );
        port_family_with(
            enc,
            ("portwarden_tcp_listen_drops", Kind::Counter),
            "Connections the port's listeners dropped because their accept queue was full (the sockets' own drop counters).",
            &self.ports,
            None,
            |p| queue(p)?.drops.map(|d| vec![("", d as f64)]),
        );
        {
            let mut overflows = enc.family(
                "portwarden_netns_listen_overflows",
                "ListenOverflows of the namespace (TcpExt): handshakes completed while an accept queue was full.",
                Kind::Counter,
            );
            for (netns, c) in &self.netns_listen {
                overflows.sample(&[("netns", netns)], c.overflows as f64);
            }
        }
        {
            let mut drops = enc.family(
                "portwarden_netns_listen_drops",
                "ListenDrops of the namespace (TcpExt): connections dropped at any listener, overflows included.",
                Kind::Counter,
            );
            for (netns, c) in &self.netns_listen {
                drops.sample(&[("netns", netns)], c.drops as f64);
            }
        }
        port_family_with(
            enc,
            ("portwarden_tcp_port_connections", Kind::Gauge),
            "Connections the port accepted, by TCP state (established always; syn_recv, close_wait and the others when any).",
            &self.ports,
            Some("state"),
            |p| {
                let c = p.connections.as_ref()?;
                Some(
                    CONNECTION_STATES
                        .iter()
                        .filter(|(state, name)| {
                            c.by_state[usize::from(*state)] > 0 || *name == "established"
                        })
                        .map(|(state, name)| (*name, c.by_state[usize::from(*state)] as f64))
                        .collect(),
                )
            },
        );
        port_family(
            enc,
            "portwarden_tcp_port_peers",
            "Distinct remote addresses among the port's connections.",
            &self.ports,
            |p| p.connections.as_ref().map(|c| c.peers as f64),
        );
        let mut f = enc.family(
            "portwarden_port_health",
            "The port's health now, in the health label (one series per port, always 1): ok, slow (connect time far above its own recent median), hung (accept queue full at two passes in a row, or a once-HTTP port no longer answering HTTP), down (gone or refusing), unknown (not checked yet, or its namespace cannot be entered).",
            Kind::Gauge,
        );
        for p in &self.ports {
            let port = p.key.port.to_string();
            let labels = [
                ("process_name", or_slash(&p.process_name)),
                ("exe_path", or_slash(&p.exe_path)),
                ("proto", p.key.proto.as_str()),
                ("port", port.as_str()),
                ("netns", &*p.key.netns),
                ("health", p.health.as_str()),
            ];
            f.sample(&labels, 1.0);
        }
    }
}

/// Expected ports, up or not, and unexpected ones.
fn encode_baseline(enc: &mut Encoder, b: &BaselineView) {
    let labels = |p: &Expected, port: &str| -> [(&'static str, String); 5] {
        [
            ("process_name", or_slash(&p.process_name).to_string()),
            ("exe_path", or_slash(&p.exe_path).to_string()),
            ("proto", p.proto.as_str().to_string()),
            ("port", port.to_string()),
            ("netns", p.netns.clone()),
        ]
    };
    {
        let mut f = enc.family(
            "portwarden_expected_port_up",
            "1 if an expected port (in the baseline) listens now, 0 if not: after a restart or reboot, a service that did not come back.",
            Kind::Gauge,
        );
        for (p, up) in &b.expected {
            let l = labels(p, &p.port.to_string());
            let l: Vec<(&str, &str)> = l.iter().map(|(k, v)| (*k, v.as_str())).collect();
            f.sample(&l, f64::from(u8::from(*up)));
        }
    }
    {
        let mut f = enc.family(
            "portwarden_port_unexpected",
            "1 for a listening port that is neither in the baseline nor in the allowlist; 0 for one that is.",
            Kind::Gauge,
        );
        let mut present: Vec<&(Expected, bool)> = b.present.iter().collect();
        present.sort();
        for (p, unexpected) in present {
            let l = labels(p, &p.port.to_string());
            let l: Vec<(&str, &str)> = l.iter().map(|(k, v)| (*k, v.as_str())).collect();
            f.sample(&l, f64::from(u8::from(*unexpected)));
        }
    }
    enc.family(
        "portwarden_baseline_ports",
        "Ports in the baseline of expected ports.",
        Kind::Gauge,
    )
    .sample(&[], b.expected.len() as f64);
    enc.by_label(
        "portwarden_baseline_errors",
        "Baseline files found unreadable (kept aside as .bad.<time>, a fresh one started), failed writes (learning goes on in memory), and writes put off because another process held the lock.",
        Kind::Counter,
        "reason",
        [
            ("unreadable", b.recovered as f64),
            ("write_failed", b.write_errors as f64),
            ("lock_busy", b.lock_busy as f64),
        ],
    );
}

/// One of the port gauges: a sample for every port `value` has one for.
fn port_family(
    enc: &mut Encoder,
    name: &str,
    help: &str,
    ports: &[PortSeries],
    value: impl Fn(&PortSeries) -> Option<f64>,
) {
    port_family_with(enc, (name, Kind::Gauge), help, ports, None, |p| {
        value(p).map(|v| vec![("", v)])
    });
}

/// A port family of any kind, with an optional extra label: `values` gives
/// each port's samples as (extra label value, value).
fn port_family_with(
    enc: &mut Encoder,
    (name, kind): (&str, Kind),
    help: &str,
    ports: &[PortSeries],
    extra: Option<&str>,
    values: impl Fn(&PortSeries) -> Option<Vec<(&'static str, f64)>>,
) {
    let mut f = enc.family(name, help, kind);
    for p in ports {
        let Some(samples) = values(p) else { continue };
        let port = p.key.port.to_string();
        for (extra_value, v) in samples {
            let base = [
                ("process_name", or_slash(&p.process_name)),
                ("exe_path", or_slash(&p.exe_path)),
                ("port", port.as_str()),
                ("netns", &*p.key.netns),
            ];
            match extra {
                Some(label) => {
                    let mut labels = base.to_vec();
                    labels.push((label, extra_value));
                    f.sample(&labels, v);
                }
                None => f.sample(&base, v),
            }
        }
    }
}

/// The plugin we replace wrote an empty label value as `/`; dashboards
/// filter on it, so we keep a non-empty placeholder.
fn or_slash(v: &str) -> &str {
    if v.is_empty() { "/" } else { v }
}

fn unix_seconds(t: SystemTime) -> f64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

impl Telemetry {
    fn encode(&self, enc: &mut Encoder, ports: &[PortSeries]) {
        enc.family(
            "portwarden_build_info",
            "Version of portwarden; always 1.",
            Kind::Gauge,
        )
        .sample(&[("version", env!("CARGO_PKG_VERSION"))], 1.0);
        let present = |proto: Proto| {
            ports
                .iter()
                .filter(|p| p.key.proto == proto && p.present)
                .count() as f64
        };
        enc.by_label(
            "portwarden_ports",
            "Listening ports discovered and exported, by protocol.",
            Kind::Gauge,
            "proto",
            [Proto::Tcp, Proto::Udp].map(|p| (p.as_str(), present(p))),
        );
        enc.family(
            "portwarden_ports_over_limit",
            "Ports found at the last discovery pass and not exported: more than --discovery.max-ports.",
            Kind::Gauge,
        )
        .sample(&[], self.over_limit as f64);
        enc.family(
            "portwarden_ports_limit",
            "--discovery.max-ports: the most port series exported.",
            Kind::Gauge,
        )
        .sample(&[], self.max_ports as f64);
        if let Some((at, seconds)) = self.last_discovery {
            enc.family(
                "portwarden_discovery_duration_seconds",
                "Duration of the last discovery pass.",
                Kind::Gauge,
            )
            .sample(&[], seconds);
            enc.family(
                "portwarden_last_discovery_timestamp_seconds",
                "When the last discovery pass completed, in seconds since the epoch.",
                Kind::Gauge,
            )
            .sample(&[], unix_seconds(at));
        }
        enc.by_label(
            "portwarden_discovery_runs",
            "Discovery passes, by kind (full: every fd table read).",
            Kind::Counter,
            "kind",
            self.discovery_runs.iter().map(|(k, n)| (*k, *n as f64)),
        );
        enc.by_label(
            "portwarden_discovery_errors",
            "Things discovery had to skip or work around, by reason; none fails a pass but `failed`.",
            Kind::Counter,
            "reason",
            self.discovery_errors.iter().map(|(k, n)| (*k, *n as f64)),
        );
        {
            let mut f = enc.family(
                "portwarden_probes",
                "Checks run, by kind and result.",
                Kind::Counter,
            );
            for (kind, stats) in &self.probes {
                let mut results: Vec<_> = stats.results.iter().collect();
                results.sort();
                for (result, n) in results {
                    f.sample(&[("kind", kind), ("result", result)], *n as f64);
                }
            }
        }
        {
            let mut f = enc.family(
                "portwarden_probe_duration_seconds",
                "Duration of checks, by kind.",
                Kind::Histogram,
            );
            for (kind, stats) in &self.probes {
                let buckets: Vec<(f64, u64)> = DURATION_BUCKETS
                    .iter()
                    .copied()
                    .zip(stats.buckets)
                    .collect();
                f.histogram(&[("kind", kind)], &buckets, stats.sum, stats.count);
            }
        }
        let rounds = || {
            self.probes
                .iter()
                .filter_map(|(k, s)| s.last_round.map(|at| (*k, s, at)))
        };
        enc.by_label(
            "portwarden_probe_round_duration_seconds",
            "How long the last round of checks of each kind took, from first start to last result.",
            Kind::Gauge,
            "kind",
            rounds().map(|(k, s, _)| (k, s.last_round_seconds)),
        );
        enc.by_label(
            "portwarden_last_probe_round_timestamp_seconds",
            "When the last round of checks of each kind completed, in seconds since the epoch.",
            Kind::Gauge,
            "kind",
            rounds().map(|(k, _, at)| (k, unix_seconds(at))),
        );
        if let Some(p) = self.process {
            let gauges = [
                (
                    "process_resident_memory_bytes",
                    "Resident memory size in bytes.",
                    p.resident_bytes,
                ),
                (
                    "process_virtual_memory_bytes",
                    "Virtual memory size in bytes.",
                    p.virtual_bytes,
                ),
                (
                    "process_open_fds",
                    "Number of open file descriptors.",
                    p.open_fds,
                ),
                (
                    "process_max_fds",
                    "Maximum number of open file descriptors.",
                    p.max_fds,
                ),
                (
                    "process_start_time_seconds",
                    "Start time of the process since unix epoch in seconds.",
                    p.start_time_seconds,
                ),
            ];
            enc.family(
                "process_cpu_seconds",
                "Total user and system CPU time spent in seconds.",
                Kind::Counter,
            )
            .sample(&[], p.cpu_seconds);
            for (name, help, v) in gauges {
                enc.family(name, help, Kind::Gauge).sample(&[], v);
            }
        }
    }
}

/// What the HTTP server reads: the latest snapshot.
#[derive(Debug, Default)]
pub struct Shared {
    snapshot: RwLock<Arc<Snapshot>>,
    /// The variant scrapers asked for last (format × gzip), encoded ahead
    /// at each publish so that a scrape finds it ready.
    last_variant: AtomicU8,
}

impl Shared {
    pub fn snapshot(&self) -> Arc<Snapshot> {
        Arc::clone(&self.snapshot.read().unwrap_or_else(|e| e.into_inner()))
    }

    /// Notes what a scraper asked for.
    pub fn asked(&self, format: Format, gzip: bool) {
        self.last_variant
            .store(1 + format as u8 * 2 + u8::from(gzip), Ordering::Relaxed);
    }

    fn publish(&self, snapshot: Snapshot) {
        let snapshot = Arc::new(snapshot);
        // Encode ahead what the scrapers want, here in the background.
        match self.last_variant.load(Ordering::Relaxed) {
            0 => {}
            v => {
                let format = if (v - 1) / 2 == 1 {
                    Format::OpenMetrics
                } else {
                    Format::Text
                };
                snapshot.body(format, (v - 1) % 2 == 1);
            }
        }
        let old = std::mem::replace(
            &mut *self.snapshot.write().unwrap_or_else(|e| e.into_inner()),
            snapshot,
        );
        drop(old);
        release_free_memory();
    }
}

/// Tunes glibc's allocator for a long-running process, before any thread
/// starts. Arenas are capped at two: glibc gives each thread that allocates
/// concurrently an arena of its own (up to 8 per core), and memory freed in
/// one stays resident there; with the discovery threads of every pass, the
/// tokio workers and the blocking pool, that cost ~5–9 MB of RSS on a busy
/// host (bench/serve.sh) for no speed we could measure. And blocks from
/// 256 KiB up are always their own mappings, returned whole when freed:
/// left to itself glibc raises that threshold to the largest block freed so
/// far (up to 32 MB), after which the per-pass tables and encoded bodies
/// are carved from the heap and leave it fragmented (bench/soak.sh).
pub fn tune_allocator() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets allocator tunables; it takes no pointer.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 2);
        libc::mallopt(libc::M_MMAP_THRESHOLD, 256 * 1024);
    }
}

/// Hands freed heap back to the kernel. glibc keeps freed memory in its
/// arenas; with the old snapshot (a few MB of text) freed at every publish,
/// that would count as resident for nothing.
fn release_free_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only walks and trims the allocator's own free
    // lists; it takes no pointer of ours.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// The running engine: its shared view, and how to stop it.
pub struct Engine {
    pub shared: Arc<Shared>,
    state: Arc<Mutex<State>>,
    wake: Arc<Wake>,
    discovery: Option<std::thread::JoinHandle<()>>,
}

impl Engine {
    /// Starts discovery (on its own thread) and the probe rounds (on the
    /// current tokio runtime).
    pub fn start(settings: Settings, discoverer: Discoverer) -> Engine {
        let shared = Arc::new(Shared::default());
        let state = Arc::new(Mutex::new(State::new(
            settings.retention,
            discoverer.counts_connections(),
            settings.max_ports,
        )));
        let wake = Arc::new(Wake::default());
        let (discovered_tx, discovered_rx) = watch::channel(0u64);
        let settings = Arc::new(settings);

        let discovery = {
            let (state, shared, wake, settings) = (
                state.clone(),
                shared.clone(),
                wake.clone(),
                settings.clone(),
            );
            std::thread::Builder::new()
                .name("discovery".into())
                .spawn(move || {
                    discovery_loop(&settings, discoverer, &state, &shared, &wake, discovered_tx)
                })
                .ok()
        };
        if discovery.is_none() {
            tracing::error!("could not start the discovery thread");
        }
        let global = Arc::new(Semaphore::new(settings.probe_concurrency));
        let engine = (state.clone(), shared.clone(), wake.clone());
        tokio::spawn(rounds(
            tcp_round(&settings, &state),
            settings.clone(),
            engine.clone(),
            global.clone(),
            discovered_rx.clone(),
        ));
        if settings.http_detection {
            tokio::spawn(rounds(
                http_round(&settings, &state),
                settings.clone(),
                engine,
                global,
                discovered_rx,
            ));
        }
        Engine {
            shared,
            state,
            wake,
            discovery,
        }
    }

    /// Stops the discovery thread (probe tasks end with the runtime).
    pub fn stop(mut self) {
        self.wake.stop();
        if let Some(handle) = self.discovery.take() {
            let _ = handle.join();
        }
        drop(self.state);
    }
}

/// Wakes the discovery thread between passes: to stop, or to refresh now.
#[derive(Debug, Default)]
struct Wake {
    flags: Mutex<WakeFlags>,
    cvar: Condvar,
}

#[derive(Debug, Default)]
struct WakeFlags {
    stop: bool,
    refresh: bool,
}

/// Why a wait on [`Wake`] ended.
#[derive(Debug, PartialEq, Eq)]
enum Woken {
    Stop,
    Refresh,
    Timeout,
}

impl Wake {
    fn stop(&self) {
        self.flags.lock().unwrap_or_else(|e| e.into_inner()).stop = true;
        self.cvar.notify_all();
    }

    fn refresh(&self) {
        self.flags.lock().unwrap_or_else(|e| e.into_inner()).refresh = true;
        self.cvar.notify_all();
    }

    /// Waits up to `timeout` for a stop or a refresh request.
    fn wait(&self, timeout: Duration) -> Woken {
        let guard = self.flags.lock().unwrap_or_else(|e| e.into_inner());
        let (mut flags, _) = self
            .cvar
            .wait_timeout_while(guard, timeout, |f| !f.stop && !f.refresh)
            .unwrap_or_else(|e| e.into_inner());
        if flags.stop {
            Woken::Stop
        } else if std::mem::take(&mut flags.refresh) {
            Woken::Refresh
        } else {
            Woken::Timeout
        }
    }
}

fn discovery_loop(
    settings: &Settings,
    mut discoverer: Discoverer,
    state: &Mutex<State>,
    shared: &Shared,
    wake: &Wake,
    discovered: watch::Sender<u64>,
) {
    let every = settings.status_interval.min(settings.udp_status_interval);
    let mut baseline = BaselineState::open(settings);
    let now = Instant::now();
    let (mut next_discovery, mut next_full, mut next_procs) =
        (now, now, now + settings.process_interval);
    let mut generation = 0u64;
    loop {
        let now = Instant::now();
        if now >= next_discovery {
            let full = now >= next_full;
            let pass = if full {
                discoverer.discover_full()
            } else {
                discoverer.refresh()
            };
            let mut st = lock(state);
            match pass {
                Ok(d) => {
                    st.apply_discovery(&d, full);
                    // A fresh owner list is also a process check.
                    next_procs = Instant::now() + settings.process_interval;
                    if let Some(b) = baseline.as_mut() {
                        // The file work happens without the lock.
                        let present = st.present_ports();
                        drop(st);
                        let view = b.observe(&present);
                        st = lock(state);
                        st.baseline = Some(view);
                    }
                }
                Err(e) => {
                    tracing::warn!("discovery failed: {e}");
                    *st.discovery_errors.entry("failed").or_default() += 1;
                }
            }
            shared.publish(st.snapshot());
            drop(st);
            generation += 1;
            let _ = discovered.send(generation);
            if full {
                next_full = Instant::now() + settings.label_interval;
            }
            next_discovery = Instant::now() + every;
        }
        if Instant::now() >= next_procs {
            check_processes(state, discoverer.proc_root());
            shared.publish(lock(state).snapshot());
            next_procs = Instant::now() + settings.process_interval;
        }
        let wake_at = next_discovery.min(next_procs);
        match wake.wait(wake_at.saturating_duration_since(Instant::now())) {
            Woken::Stop => return,
            // A refresh now; the next full pass stays when it was due.
            Woken::Refresh => next_discovery = Instant::now(),
            Woken::Timeout => {}
        }
    }
}

/// The baseline as the discovery thread keeps it: the file, and since when
/// each present port has listened without a break.
struct BaselineState {
    file: Baseline,
    learn: Duration,
    allowlist: Allowlist,
    since: HashMap<Expected, Instant>,
    recovered: u64,
    write_errors: u64,
    /// Writes put off because another process held the lock.
    lock_busy: u64,
    /// A failed write was logged (once is enough: it is counted).
    warned_write: bool,
    /// `--discovery.max-ports`: expected ports exported at most.
    max_ports: usize,
}

/// What the metrics show of the baseline.
#[derive(Debug, Clone, Default)]
pub struct BaselineView {
    /// Every expected port and whether it listens now.
    pub expected: Vec<(Expected, bool)>,
    /// Every present port, and whether it is neither expected nor allowed.
    pub present: Vec<(Expected, bool)>,
    /// Baseline files found unreadable and kept aside.
    pub recovered: u64,
    /// Failed writes of the file (learning goes on in memory).
    pub write_errors: u64,
    /// Writes put off for another process holding the lock.
    pub lock_busy: u64,
}

impl BaselineState {
    /// Opens the baseline in the state directory; without one, the
    /// exporter runs without expected ports and says why once.
    fn open(settings: &Settings) -> Option<BaselineState> {
        let dir = match baseline::state_dir(settings.state_dir.as_deref()) {
            Ok(dir) => dir,
            Err(e) => {
                tracing::warn!("no state directory for the baseline of expected ports: {e}");
                return None;
            }
        };
        let (file, recovered) = match Baseline::open(&dir) {
            Ok(opened) => opened,
            Err(e) => {
                tracing::warn!(dir = %dir.display(), "cannot open the baseline of expected ports: {e}");
                return None;
            }
        };
        let mut b = BaselineState {
            file,
            learn: settings.baseline_learn,
            allowlist: settings.allowlist.clone(),
            since: HashMap::new(),
            recovered: 0,
            write_errors: 0,
            lock_busy: 0,
            warned_write: false,
            max_ports: settings.max_ports,
        };
        b.note(recovered);
        tracing::info!(
            file = %b.file.path().display(),
            expected = b.file.entries().len(),
            "baseline of expected ports"
        );
        if let Some(why) = b.file.read_only() {
            tracing::warn!(
                "the baseline is read-only ({why}): it is exported, and what is learnt is kept in memory only"
            );
        }
        if b.file.entries().len() > b.max_ports {
            tracing::warn!(
                expected = b.file.entries().len(),
                "more expected ports than --discovery.max-ports ({}): the first {0} are exported",
                b.max_ports
            );
        }
        Some(b)
    }

    fn note(&mut self, recovered: Option<baseline::Recovered>) {
        if let Some(r) = recovered {
            self.recovered += 1;
            tracing::error!(
                kept_as = %r.kept_as.display(),
                "the baseline file was unreadable ({}); kept aside, starting a fresh one",
                r.reason
            );
        }
    }

    /// Takes in the ports present now: picks up edits made by `portwarden
    /// baseline`, learns ports that listened long enough, and says what is
    /// expected, up or not, and what is unexpected.
    fn observe(&mut self, present: &[Expected]) -> BaselineView {
        let now = Instant::now();
        match self.file.reload_if_changed() {
            Ok((changed, recovered)) => {
                self.note(recovered);
                if changed {
                    // A forgotten port that still listens is learned anew.
                    let file = &self.file;
                    self.since.retain(|p, _| file.contains(p));
                }
            }
            Err(e) => tracing::warn!("cannot re-read the baseline: {e}"),
        }
        let here: std::collections::HashSet<&Expected> = present.iter().collect();
        self.since.retain(|p, _| here.contains(p));
        for p in present {
            self.since.entry(p.clone()).or_insert(now);
        }
        let learned: Vec<Expected> = self
            .since
            .iter()
            .filter(|(p, since)| {
                !self.file.contains(p) && now.duration_since(**since) >= self.learn
            })
            .map(|(p, _)| p.clone())
            .collect();
        if !learned.is_empty() {
            let at = baseline::now();
            // Never waits: another process's lock puts the write off to the
            // next pass; a failed write keeps what was learnt in memory.
            let result = self.file.try_update(|entries| {
                for p in &learned {
                    entries.entry(p.clone()).or_insert(at);
                }
                true
            });
            match result {
                Ok(recovered) => self.note(recovered),
                Err(baseline::UpdateError::Busy) => self.lock_busy += 1,
                Err(e) => {
                    self.write_errors += 1;
                    if !std::mem::replace(&mut self.warned_write, true) {
                        tracing::warn!(file = %self.file.path().display(), "cannot write the baseline ({e}); learning goes on in memory (counted in portwarden_baseline_errors_total)");
                    }
                }
            }
        }
        BaselineView {
            expected: self
                .file
                .entries()
                .keys()
                .take(self.max_ports)
                .map(|p| (p.clone(), here.contains(p)))
                .collect(),
            present: present
                .iter()
                .map(|p| {
                    let unexpected = !self.file.contains(p)
                        && !self.allowlist.allows(p.proto, p.port, &p.process_name);
                    (p.clone(), unexpected)
                })
                .collect(),
            recovered: self.recovered,
            write_errors: self.write_errors,
            lock_busy: self.lock_busy,
        }
    }
}

fn lock(state: &Mutex<State>) -> std::sync::MutexGuard<'_, State> {
    state.lock().unwrap_or_else(|e| e.into_inner())
}

/// Checks each owner by pid and start time: a reused pid is not the owner.
fn check_processes(state: &Mutex<State>, proc_root: &ProcRoot) {
    let targets: Vec<(ProcKey, u32, u64)> = lock(state)
        .procs
        .iter()
        .map(|(k, p)| (k.clone(), p.pid, p.start_time))
        .collect();
    let mut buf = Vec::new();
    let verdicts: Vec<(ProcKey, bool)> = targets
        .into_iter()
        .map(|(key, pid, start)| {
            let alive = proc_root.read(pid, "stat", &mut buf).is_ok()
                && procfs::parse_stat(&buf).is_some_and(|s| s.start_time == start);
            (key, alive)
        })
        .collect();
    let mut st = lock(state);
    for (key, alive) in verdicts {
        if let Some(p) = st.procs.get_mut(&key) {
            p.alive = alive;
        }
    }
}

impl State {
    fn new(retention: Duration, counting_connections: bool, max_ports: usize) -> Self {
        State {
            max_ports,
            over_limit: 0,
            first_checks: false,
            our_fault_logged: None,
            ports: HashMap::new(),
            procs: HashMap::new(),
            probes: HashMap::new(),
            discovery_errors: HashMap::new(),
            discovery_runs: HashMap::new(),
            last_discovery: None,
            retention,
            vias: HashMap::new(),
            warned_unsupported: false,
            netns_listen: Vec::new(),
            counting_connections,
            baseline: None,
        }
    }

    /// Keeps the port series within `--discovery.max-ports`: ports already
    /// known first (a series never flaps for the cap), then new ones in
    /// (protocol, port, namespace) order while there is room; retained
    /// series of gone ports make room first, oldest first. Past the cap,
    /// counts what was left out and says so once in the log.
    fn within_limit<G>(&mut self, seen: &mut HashMap<PortKey, G>) {
        let found = seen.len();
        let mut new: Vec<PortKey> = seen
            .keys()
            .filter(|k| !self.ports.contains_key(*k))
            .cloned()
            .collect();
        let room = self.max_ports.saturating_sub(found - new.len());
        let over = new.len().saturating_sub(room);
        if over > 0 {
            new.sort_unstable();
            for key in new.drain(room..) {
                seen.remove(&key);
            }
        }
        // Room for the newcomers: drop retained series of gone ports.
        let excess = (self.ports.len() + new.len()).saturating_sub(self.max_ports);
        if excess > 0 {
            let mut gone: Vec<(Instant, PortKey)> = self
                .ports
                .iter()
                .filter(|(k, _)| !seen.contains_key(*k))
                .map(|(k, p)| (p.last_seen, k.clone()))
                .collect();
            gone.sort();
            for (_, key) in gone.into_iter().take(excess) {
                self.ports.remove(&key);
            }
        }
        if over > 0 && self.over_limit == 0 {
            tracing::warn!(
                "{found} ports found, more than --discovery.max-ports ({}): {over} are not exported (portwarden_ports_over_limit)",
                self.max_ports
            );
        } else if over == 0 && self.over_limit > 0 {
            tracing::info!("every port is exported again (within --discovery.max-ports)");
        }
        self.over_limit = over;
    }

    /// The ports listening now, as the baseline knows ports.
    fn present_ports(&self) -> Vec<Expected> {
        self.ports
            .iter()
            .filter(|(_, p)| p.present)
            .map(|(k, p)| Expected {
                proto: k.proto,
                port: k.port,
                netns: k.netns.to_string(),
                process_name: p.process_name.to_string(),
                exe_path: p.exe_path.to_string(),
            })
            .collect()
    }

    fn apply_discovery(&mut self, d: &Discovery, full: bool) {
        let now = Instant::now();
        *self
            .discovery_runs
            .entry(if full { "full" } else { "refresh" })
            .or_default() += 1;
        let st = &d.stats;
        for (reason, n) in [
            ("fd_denied", st.fd_denied),
            ("vanished", st.vanished),
            ("fd_exhausted", st.fd_exhausted),
            ("netns_vanished", st.netns_vanished),
            ("setns_denied", st.setns_denied),
            ("netns_denied", st.netns_denied),
            ("container_unrecognized", st.container_unrecognized),
        ] {
            *self.discovery_errors.entry(reason).or_default() += n;
        }
        if d.source == SocketSource::ProcNet {
            *self.discovery_errors.entry("netlink_refused").or_default() += 1;
        }
        self.last_discovery = Some((SystemTime::now(), d.duration_seconds));
        // How to reach each series' namespace, by the series' label (a
        // container's id names its namespace once an owner is known).
        let by_namespace: HashMap<&str, probe::Via> = d
            .namespaces
            .iter()
            .map(|ns| {
                let via = match &ns.entry {
                    Some(path) => probe::Via::Netns(path.as_path().into()),
                    _ => probe::Via::Here,
                };
                (&*ns.label, via)
            })
            .collect();
        self.vias = d
            .ports
            .iter()
            .filter_map(|p| {
                let via = by_namespace.get(&*p.namespace)?;
                Some((Arc::clone(&p.netns), via.clone()))
            })
            .collect();
        self.netns_listen = d
            .namespaces
            .iter()
            .filter_map(|ns| Some((Arc::clone(&ns.label), ns.listen?)))
            .collect();

        // Group sockets into port series; the first owned socket names it.
        type Group<'a> = (
            Vec<&'a Socket>,
            Option<&'a crate::model::Owner>,
            Vec<SocketInfo>,
            Vec<&'a crate::model::Connections>,
        );
        let mut seen: HashMap<PortKey, Group<'_>> = HashMap::new();
        for port in d.ports.iter().filter(|p| !p.excluded) {
            let key = PortKey {
                proto: port.socket.proto,
                port: port.socket.port,
                netns: Arc::clone(&port.netns),
            };
            let entry = seen.entry(key).or_default();
            entry.0.push(&port.socket);
            if entry.1.is_none() {
                entry.1 = port.primary_owner();
            }
            entry
                .2
                .push(SocketInfo::new(&port.socket, port.primary_owner()));
            if let Some(c) = &port.connections {
                entry.3.push(c);
            }
        }
        for p in self.ports.values_mut() {
            p.present = false;
        }
        self.within_limit(&mut seen);
        for (key, (sockets, owner, mut infos, conns)) in seen {
            infos.sort();
            // SO_REUSEPORT: listeners on one address and port in one
            // process are one socket to a reader, and one series.
            infos.dedup();
            let queue = QueueState::of(&sockets);
            let full = sockets
                .iter()
                .any(|s| s.accept_queue.is_some_and(|q| q.is_full()));
            let connections = ConnSummary::of(conns).or_else(|| {
                // Counted, and none: zero, not unknown.
                (self.counting_connections && key.proto == Proto::Tcp).then_some(ConnSummary {
                    by_state: [0; 12],
                    peers: 0,
                })
            });
            let identity = owner.map(|o| (o.pid, o.start_time));
            // The names in force when unchanged (no allocation), else new.
            let known = self.ports.get(&key);
            let share = |new: &str, old: Option<&Arc<str>>| match old {
                Some(old) if **old == *new => Arc::clone(old),
                _ => Arc::from(new),
            };
            let (name, exe) = owner.map_or(("".into(), "".into()), |o| {
                (
                    share(&o.process_name, known.map(|k| &k.process_name)),
                    share(&o.exe_path, known.map(|k| &k.exe_path)),
                )
            });
            let infos: Arc<[SocketInfo]> = match known {
                Some(k) if *k.sockets == *infos => Arc::clone(&k.sockets),
                _ => infos.into(),
            };
            if let Some(o) = owner {
                let proc = self
                    .procs
                    .entry((name.clone(), exe.clone()))
                    .or_insert(ProcState {
                        pid: o.pid,
                        start_time: o.start_time,
                        alive: true,
                        last_seen: now,
                    });
                // A restarted owner (new pid, same executable) takes over.
                proc.pid = o.pid;
                proc.start_time = o.start_time;
                proc.alive = true;
                proc.last_seen = now;
            }
            let mut targets = probe::targets(sockets.iter().copied());
            targets.shrink_to_fit();
            let state = self.ports.entry(key).or_insert_with(|| {
                Box::new(PortState {
                    process_name: name.clone(),
                    exe_path: exe.clone(),
                    owner: identity,
                    targets: targets.clone(),
                    present: true,
                    last_seen: now,
                    tcp: None,
                    http: HttpClass::unknown(),
                    sockets: Arc::from([]),
                    queue: None,
                    queue_full_passes: 0,
                    connections: None,
                    history: ConnectHistory::default(),
                })
            });
            if state.owner != identity {
                // Another process now: HTTP or not is asked anew, at once;
                // an HTTP port keeps its series until the answer says
                // otherwise.
                if let HttpClass::Unknown { .. } = state.http {
                    state.http = HttpClass::unknown();
                }
                state.owner = identity;
            }
            state.process_name = name;
            state.exe_path = exe;
            state.targets = targets;
            state.sockets = infos;
            state.queue = queue;
            state.queue_full_passes = if full { state.queue_full_passes + 1 } else { 0 };
            state.connections = connections;
            state.present = true;
            state.last_seen = now;
        }
        let retention = self.retention;
        self.ports
            .retain(|_, p| p.present || now.duration_since(p.last_seen) < retention);
        // A process is seen while it owns a port; gone ones stay at 0 for
        // the retention too.
        let owners: std::collections::HashSet<ProcKey> = self
            .ports
            .values()
            .filter(|p| p.present && p.owner.is_some())
            .map(|p| (p.process_name.clone(), p.exe_path.clone()))
            .collect();
        for (key, p) in self.procs.iter_mut() {
            if !owners.contains(key) && p.last_seen < now {
                p.alive = false;
            }
        }
        self.procs
            .retain(|k, p| owners.contains(k) || now.duration_since(p.last_seen) < retention);
    }

    /// A check that could not be made for a lack of our own: counted as
    /// `result="error"`, logged at most once a minute, and the port's last
    /// value kept — never a 0 that pages someone for our limits.
    fn our_fault(&mut self, kind: &'static str, reason: &'static str, seconds: f64) {
        self.probes
            .entry(kind)
            .or_default()
            .record("error", seconds);
        let now = Instant::now();
        if self
            .our_fault_logged
            .is_none_or(|t| now.duration_since(t) >= Duration::from_secs(60))
        {
            self.our_fault_logged = Some(now);
            tracing::warn!(
                kind,
                reason,
                "a check could not be made on our side (raise LimitNOFILE / ulimit -n, or lower --probe.concurrency); the ports keep their last values"
            );
        }
    }

    /// How a check reaches the port's namespace, if it can.
    fn via(&self, key: &PortKey) -> Option<probe::Via> {
        self.vias.get(&key.netns).cloned()
    }

    fn snapshot(&self) -> Snapshot {
        let mut ports: Vec<PortSeries> = self
            .ports
            .iter()
            .map(|(key, p)| PortSeries {
                key: key.clone(),
                process_name: p.process_name.clone(),
                exe_path: p.exe_path.clone(),
                present: p.present,
                tcp: p.tcp.map(|t| (t.alive, t.seconds)),
                http_alive: match p.http {
                    HttpClass::Http { alive } => Some(alive),
                    _ => None,
                },
                // Gone ports' series have no sockets.
                sockets: if p.present {
                    Arc::clone(&p.sockets)
                } else {
                    Arc::from([])
                },
                queue: p.queue.filter(|_| p.present),
                connections: p.connections.clone().filter(|_| p.present),
                health: p.health(key.proto),
            })
            .collect();
        ports.sort_by(|a, b| a.key.cmp(&b.key));
        let mut processes: Vec<ProcessSeries> = self
            .procs
            .iter()
            .map(|((name, exe), p)| ProcessSeries {
                process_name: name.clone(),
                exe_path: exe.clone(),
                alive: p.alive,
            })
            .collect();
        processes
            .sort_by(|a, b| (&a.process_name, &a.exe_path).cmp(&(&b.process_name, &b.exe_path)));
        let mut probes: Vec<(&'static str, ProbeStats)> =
            self.probes.iter().map(|(k, v)| (*k, v.clone())).collect();
        probes.sort_by_key(|(k, _)| *k);
        let mut discovery_errors: Vec<_> = self
            .discovery_errors
            .iter()
            .map(|(k, v)| (*k, *v))
            .collect();
        discovery_errors.sort();
        let mut discovery_runs: Vec<_> =
            self.discovery_runs.iter().map(|(k, v)| (*k, *v)).collect();
        discovery_runs.sort();
        let mut netns_listen = self.netns_listen.clone();
        netns_listen.sort_by(|a, b| a.0.cmp(&b.0));
        Snapshot {
            ports,
            processes,
            netns_listen,
            baseline: self.baseline.clone(),
            telemetry: Telemetry {
                probes,
                discovery_errors,
                discovery_runs,
                last_discovery: self.last_discovery,
                process: self_process(),
                max_ports: self.max_ports,
                over_limit: self.over_limit,
            },
            encoded: Default::default(),
        }
    }
}

/// Reads portwarden's own `process_*` figures (in the background), from
/// our own /proc: under `PROC_PREFIX` the host's /proc knows us by another pid.
fn self_process() -> Option<SelfProcess> {
    let text = std::fs::read_to_string("/proc/self/stat").ok()?;
    let fields: Vec<&str> = text.rsplit_once(')')?.1.split_whitespace().collect();
    // After the comm: index 0 is field 3 (state).
    let num = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    let ticks = rustix::param::clock_ticks_per_second() as f64;
    let page = rustix::param::page_size() as f64;
    let boot = std::fs::read_to_string("/proc/stat")
        .ok()
        .and_then(|s| {
            s.lines().find_map(|l| {
                l.strip_prefix("btime ")
                    .and_then(|v| v.trim().parse::<f64>().ok())
            })
        })
        .unwrap_or(0.0);
    let open_fds = std::fs::read_dir("/proc/self/fd")
        .map(|d| d.count() as f64)
        .unwrap_or(0.0);
    let limit = rustix::process::getrlimit(rustix::process::Resource::Nofile);
    Some(SelfProcess {
        cpu_seconds: (num(11) + num(12)) / ticks,
        resident_bytes: num(21) * page,
        virtual_bytes: num(20),
        open_fds,
        max_fds: limit.current.map_or(f64::INFINITY, |v| v as f64),
        start_time_seconds: boot + num(19) / ticks,
    })
}

/// Waits for the first discovery, then for a newer one or `period`.
async fn next_round(
    discovered: &mut watch::Receiver<u64>,
    first: &mut bool,
    after_pass: u64,
    period: Duration,
) -> bool {
    if *first {
        *first = false;
        return discovered.wait_for(|g| *g >= after_pass).await.is_ok();
    }
    tokio::time::sleep(period).await;
    true
}

/// Probe starts are spread over up to half the interval, so 10,000 ports
/// do not open 10,000 connections in one burst (unless spreading is off:
/// then only the concurrency cap paces them).
fn pacing(spread: bool, interval: Duration, jobs: usize) -> Duration {
    if jobs == 0 || !spread {
        return Duration::ZERO;
    }
    (interval / 2 / jobs as u32).min(Duration::from_millis(100))
}

/// Runs one job of a round to completion, recording its result.
type Check<J> = Arc<dyn Fn(J) -> Pin<Box<dyn Future<Output = ()> + Send>> + Send + Sync>;

/// Whether a job goes ahead, decided from the latest state just before it
/// would start (after the wait for a permit).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Admit {
    Now,
    /// After every other job of this round.
    Later,
    /// Not this round.
    Skip,
}

/// Where a round of one kind of check gets its jobs and how it runs one.
struct Round<J> {
    kind: &'static str,
    period: Duration,
    /// The jobs of a round, read from the state at its start.
    jobs: fn(&State) -> Vec<J>,
    /// Each job's go-ahead, from the state as it is when its turn comes.
    admit: fn(&State, &J) -> Admit,
    /// Runs one job (permits taken inside) and records its result.
    check: Check<J>,
    /// Runs after each round, with the state.
    after: fn(&mut State, &Wake),
    /// The discovery pass the first round waits for.
    first_after: u64,
}

/// Runs rounds of one kind forever: the first after the first discovery,
/// then every `period` from the start of the last; each round's starts
/// paced, at most `--probe.concurrency` checks in flight across kinds.
async fn rounds<J: Send + 'static>(
    round: Round<J>,
    settings: Arc<Settings>,
    (state, shared, wake): (Arc<Mutex<State>>, Arc<Shared>, Arc<Wake>),
    global: Arc<Semaphore>,
    mut discovered: watch::Receiver<u64>,
) {
    let mut first = true;
    let mut round_start = tokio::time::Instant::now();
    loop {
        let wait = round.period.saturating_sub(round_start.elapsed());
        if !next_round(&mut discovered, &mut first, round.first_after, wait).await {
            return;
        }
        round_start = tokio::time::Instant::now();
        let mut jobs = std::collections::VecDeque::from((round.jobs)(&lock(&state)));
        let gap = pacing(settings.spread, round.period, jobs.len());
        let mut later = Vec::new();
        let mut deferring = true;
        let mut started = 0u32;
        let mut tasks = tokio::task::JoinSet::new();
        loop {
            let Some(job) = jobs.pop_front() else {
                if !deferring || later.is_empty() {
                    break;
                }
                deferring = false;
                jobs.extend(later.drain(..));
                continue;
            };
            let Ok(permit) = global.clone().acquire_owned().await else {
                return;
            };
            match (round.admit)(&lock(&state), &job) {
                Admit::Now => {}
                Admit::Later if !deferring => {}
                Admit::Later => {
                    later.push(job);
                    continue;
                }
                Admit::Skip => continue,
            }
            let check = (round.check)(job);
            tasks.spawn(async move {
                check.await;
                drop(permit);
            });
            // Finished checks are reaped as we go: a round of 10,000 must
            // not keep 10,000 task records.
            while tasks.try_join_next().is_some() {}
            // Each start at its place on the round's schedule: a gap below
            // the timer's millisecond is taken in batches, not rounded up
            // to a millisecond per check (10,000 checks would take 10 s
            // where 2.5 s were meant).
            if !gap.is_zero() {
                started += 1;
                tokio::time::sleep_until(round_start + gap * started).await;
            }
        }
        while tasks.join_next().await.is_some() {}
        let snapshot = {
            let mut st = lock(&state);
            let stats = st.probes.entry(round.kind).or_default();
            stats.last_round = Some(SystemTime::now());
            stats.last_round_seconds = round_start.elapsed().as_secs_f64();
            (round.after)(&mut st, &wake);
            st.snapshot()
        };
        shared.publish(snapshot);
    }
}

/// TCP: every present TCP port, at its sockets' addresses.
fn tcp_round(
    settings: &Arc<Settings>,
    state: &Arc<Mutex<State>>,
) -> Round<(PortKey, Vec<SocketAddr>, probe::Via)> {
    let (settings, state) = (settings.clone(), state.clone());
    Round {
        kind: "tcp",
        period: settings.status_interval,
        jobs: |st| {
            st.ports
                .iter()
                .filter(|(k, p)| k.proto == Proto::Tcp && p.present && !p.targets.is_empty())
                .filter_map(|(k, p)| Some((k.clone(), p.targets.clone(), st.via(k)?)))
                .collect()
        },
        admit: |_, _| Admit::Now,
        check: Arc::new(move |(key, targets, via)| {
            let (settings, state) = (settings.clone(), state.clone());
            Box::pin(async move {
                let outcome = probe::tcp::probe(
                    &targets,
                    &via,
                    settings.check_timeout,
                    settings.max_parallel_ip_checks,
                )
                .await;
                let mut st = lock(&state);
                if outcome.unsupported {
                    // Not down: unknown. Said once, counted always.
                    if !st.warned_unsupported {
                        st.warned_unsupported = true;
                        tracing::warn!(
                            netns = %key.netns,
                            "cannot enter a network namespace to check its ports (needs CAP_SYS_ADMIN); such ports get no TCP series"
                        );
                    }
                    st.probes
                        .entry("tcp")
                        .or_default()
                        .record("unsupported", outcome.seconds);
                    return;
                }
                if let Some(reason) = outcome.error {
                    // Not the port's fault: its last value stands.
                    st.our_fault("tcp", reason, outcome.seconds);
                    return;
                }
                let result = if outcome.alive { "alive" } else { "dead" };
                st.probes
                    .entry("tcp")
                    .or_default()
                    .record(result, outcome.seconds);
                let mut first = false;
                if let Some(p) = st.ports.get_mut(&key)
                    && p.present
                {
                    if outcome.alive {
                        p.history.record(outcome.seconds);
                    }
                    first = p.tcp.is_none();
                    p.tcp = Some(outcome);
                }
                st.first_checks |= first;
            })
        }),
        // A port's first connection sits in its accept queue until the
        // owner accepts it: one that never does shows itself there. A
        // refresh now lets HTTP detection pass such ports over at once,
        // instead of spending a slot and a timeout on each until the next
        // scheduled pass.
        after: |st, wake| {
            if std::mem::take(&mut st.first_checks) {
                wake.refresh();
            }
        },
        first_after: 1,
    }
}

/// One HTTP check: the port, where to connect, and how to ask.
type HttpJob = (PortKey, SocketAddr, probe::Via, HttpClass);

/// HTTP: ports that answered HTTP are checked every round; the others are
/// asked whether they speak HTTP when due (new ports at once, then with a
/// back-off), never while their accept queue is full, and after the rest
/// of the round while it holds connections not yet accepted.
fn http_round(settings: &Arc<Settings>, state: &Arc<Mutex<State>>) -> Round<HttpJob> {
    let (settings, state) = (settings.clone(), state.clone());
    let banner_wait = (settings.check_timeout / 4).min(Duration::from_millis(250));
    // HTTP_DETECTION_CONCURRENCY caps requests in flight; the banner wait
    // before one only listens, under the global cap alone.
    let requests = Arc::new(Semaphore::new(settings.http_concurrency));
    Round {
        kind: "http",
        period: settings.http_status_interval,
        // After the pass that follows the first TCP round: its connections
        // wait in the queues of listeners that never accept, which that
        // pass sees, so detection passes them over instead of spending a
        // request and a timeout on each.
        first_after: 2,
        jobs: |st| {
            let now = Instant::now();
            let mut jobs: Vec<HttpJob> = st
                .ports
                .iter()
                .filter(|(k, p)| k.proto == Proto::Tcp && p.present && p.http.due(now))
                .filter_map(|(k, p)| {
                    let addr = p
                        .tcp
                        .and_then(|t| t.answered)
                        .or_else(|| p.targets.first().copied())?;
                    Some((k.clone(), addr, st.via(k)?, p.http))
                })
                .collect();
            // Liveness of known HTTP ports first, then detection.
            jobs.sort_by_key(|j| !matches!(j.3, HttpClass::Http { .. }));
            jobs
        },
        admit: |st, (key, _, _, class)| {
            if let HttpClass::Http { .. } = class {
                return Admit::Now;
            }
            match st.ports.get(key) {
                Some(p) if !p.present => Admit::Skip,
                // It cannot take our connection: not asked, not a miss.
                Some(p) if p.queue_full_passes > 0 => Admit::Skip,
                Some(p) if p.queue.is_some_and(|q| q.current > 0) => Admit::Later,
                Some(_) => Admit::Now,
                None => Admit::Skip,
            }
        },
        check: Arc::new(move |(key, addr, via, class)| {
            let (settings, state, requests) = (settings.clone(), state.clone(), requests.clone());
            // A port that answered HTTP waits for its client: no banner wait.
            let wait = match class {
                HttpClass::Http { .. } => Duration::ZERO,
                HttpClass::Unknown { .. } => banner_wait,
            };
            Box::pin(async move {
                let started = Instant::now();
                let outcome =
                    probe::http::probe(addr, &via, settings.check_timeout, wait, Some(&requests))
                        .await;
                let mut st = lock(&state);
                let seconds = started.elapsed().as_secs_f64();
                if let HttpOutcome::Error(reason) = outcome {
                    st.our_fault("http", reason, seconds);
                    return;
                }
                st.probes
                    .entry("http")
                    .or_default()
                    .record(outcome.result(), seconds);
                if let Some(p) = st.ports.get_mut(&key)
                    && p.present
                {
                    p.http = p.http.after(
                        &outcome,
                        started,
                        settings.http_status_interval,
                        settings.label_interval,
                    );
                }
            })
        }),
        after: |_, _| {},
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Family, Owner, Port, ScanStats};

    fn owner(pid: u32, name: &str) -> Arc<Owner> {
        Arc::new(Owner {
            pid,
            start_time: u64::from(pid) * 10,
            process_name: name.into(),
            exe_path: format!("/usr/bin/{name}"),
            cmdline: String::new(),
            uid: 0,
            user: "root".into(),
            ppid: 1,
            container: None,
            cgroup_unrecognized: false,
        })
    }

    fn port(proto: Proto, addr: &str, port: u16, owner: Option<Arc<Owner>>) -> Port {
        Port {
            socket: Socket {
                proto,
                family: if addr.contains(':') {
                    Family::Ipv6
                } else {
                    Family::Ipv4
                },
                address: addr.parse().expect("ip"),
                port,
                inode: u64::from(port),
                uid: 0,
                accept_queue: None,
            },
            netns: "host".into(),
            namespace: "host".into(),
            owners: owner.into_iter().collect(),
            owner_unknown_reason: None,
            excluded: false,
            connections: None,
        }
    }

    /// A loopback TCP listener on `p`, owned by `name` (pid `pid`).
    fn listener(p: u16, pid: u32, name: &str) -> Port {
        port(Proto::Tcp, "127.0.0.1", p, Some(owner(pid, name)))
    }

    fn discovery(ports: Vec<Port>) -> Discovery {
        Discovery {
            ports,
            stats: ScanStats::default(),
            source: SocketSource::Netlink,
            duration_seconds: 0.01,
            namespaces: vec![crate::discover::Namespace {
                label: "host".into(),
                entry: None,
                listen: None,
            }],
        }
    }

    fn state(retention: Duration) -> State {
        State::new(retention, false, usize::MAX)
    }

    fn key(proto: Proto, port: u16) -> PortKey {
        PortKey {
            proto,
            port,
            netns: "host".into(),
        }
    }

    #[test]
    fn ipv4_and_ipv6_of_one_port_are_one_series_named_by_the_first_owner() {
        let mut st = state(Duration::from_secs(60));
        let nginx = owner(10, "nginx");
        st.apply_discovery(
            &discovery(vec![
                port(Proto::Tcp, "0.0.0.0", 80, Some(nginx.clone())),
                port(Proto::Tcp, "::", 80, Some(nginx)),
                port(Proto::Udp, "127.0.0.1", 80, Some(owner(11, "dns"))),
            ]),
            true,
        );
        assert_eq!(st.ports.len(), 2);
        let tcp = &st.ports[&key(Proto::Tcp, 80)];
        assert_eq!(&*tcp.process_name, "nginx");
        assert_eq!(
            tcp.targets,
            vec![
                "127.0.0.1:80".parse::<SocketAddr>().expect("addr"),
                "[::1]:80".parse().expect("addr")
            ]
        );
        assert_eq!(st.procs.len(), 2);
    }

    #[test]
    fn a_vanished_port_stays_absent_for_the_retention_then_goes() {
        let mut st = state(Duration::from_millis(50));
        st.apply_discovery(&discovery(vec![listener(8080, 20, "app")]), true);
        st.apply_discovery(&discovery(vec![]), false);
        let p = &st.ports[&key(Proto::Tcp, 8080)];
        assert!(!p.present);
        assert!(!st.procs[&(Arc::from("app"), Arc::from("/usr/bin/app"))].alive);
        let snap = st.snapshot();
        assert_eq!(snap.ports.len(), 1);
        assert!(!snap.ports[0].present);
        std::thread::sleep(Duration::from_millis(60));
        st.apply_discovery(&discovery(vec![]), false);
        assert!(st.ports.is_empty());
        assert!(st.procs.is_empty());
    }

    #[test]
    fn a_new_owner_takes_over_and_is_asked_about_http_again() {
        let mut st = state(Duration::from_secs(60));
        st.apply_discovery(&discovery(vec![listener(6379, 30, "redis")]), true);
        // Said no, and not due again for an hour.
        let later = Instant::now() + Duration::from_secs(3600);
        st.ports.get_mut(&key(Proto::Tcp, 6379)).expect("port").http = HttpClass::Unknown {
            refused: 5,
            silent: 0,
            next: later,
        };
        // Restarted under a new pid: same labels, new identity.
        st.apply_discovery(&discovery(vec![listener(6379, 31, "redis")]), false);
        let p = &st.ports[&key(Proto::Tcp, 6379)];
        assert_eq!(p.owner, Some((31, 310)));
        assert!(p.http.due(Instant::now()), "{:?}", p.http);
        assert!(matches!(
            p.http,
            HttpClass::Unknown {
                refused: 0,
                silent: 0,
                ..
            }
        ));
        let proc = &st.procs[&(Arc::from("redis"), Arc::from("/usr/bin/redis"))];
        assert_eq!((proc.pid, proc.alive), (31, true));
        assert_eq!(st.procs.len(), 1);
        // An HTTP port keeps its series through an owner change.
        st.ports.get_mut(&key(Proto::Tcp, 6379)).expect("port").http =
            HttpClass::Http { alive: true };
        st.apply_discovery(&discovery(vec![listener(6379, 32, "redis")]), false);
        assert_eq!(
            st.ports[&key(Proto::Tcp, 6379)].http,
            HttpClass::Http { alive: true }
        );
    }

    /// Where an HTTP class stands after each outcome in turn, as the
    /// number of periods until it is asked again (None: asked every round).
    fn waits(outcomes: &[HttpOutcome]) -> Vec<Option<u32>> {
        let period = Duration::from_secs(10);
        let longest = Duration::from_secs(3600);
        let asked = Instant::now();
        let mut class = HttpClass::unknown();
        outcomes
            .iter()
            .map(|o| {
                class = class.after(o, asked, period, longest);
                match class {
                    HttpClass::Http { .. } => None,
                    HttpClass::Unknown { next, .. } => {
                        // Half a period of slack is taken off `next`.
                        let wait = next - asked + period / 2;
                        Some((wait.as_secs_f64() / period.as_secs_f64()).round() as u32)
                    }
                }
            })
            .collect()
    }

    #[test]
    fn http_detection_backs_off_but_never_gives_up() {
        use HttpOutcome::*;
        // A drop, a reset, bytes that are not HTTP: asked again at the next
        // round, then after 2, 4, 8 ... rounds, at most the label interval.
        assert_eq!(
            waits(&[Closed, Closed, NotHttp, Closed]),
            [Some(1), Some(2), Some(4), Some(8)]
        );
        let many = vec![Closed; 20];
        assert_eq!(waits(&many).last(), Some(&Some(360)));
        // Silence or no connection: the next round three times, then back off.
        assert_eq!(
            waits(&[Timeout, Unreachable, Timeout, Timeout, Timeout]),
            [Some(1), Some(1), Some(1), Some(1), Some(2)]
        );
        // A banner: not before the next full rescan.
        assert_eq!(waits(&[Banner]), [Some(360)]);
        // An answer at any point: HTTP from then on, 0 when it stops.
        assert_eq!(waits(&[Closed, Timeout, Answered { status: 200 }])[2], None);
        let class = HttpClass::unknown()
            .after(
                &Closed,
                Instant::now(),
                Duration::from_secs(1),
                Duration::from_secs(60),
            )
            .after(
                &Answered { status: 404 },
                Instant::now(),
                Duration::from_secs(1),
                Duration::from_secs(60),
            );
        assert_eq!(class, HttpClass::Http { alive: true });
        for o in [Timeout, Closed, Banner, NotHttp, Unreachable] {
            assert_eq!(
                class.after(
                    &o,
                    Instant::now(),
                    Duration::from_secs(1),
                    Duration::from_secs(60)
                ),
                HttpClass::Http { alive: false },
                "{o:?}"
            );
        }
    }

    #[test]
    fn port_info_describes_each_socket_while_it_listens() {
        let mut st = state(Duration::from_secs(60));
        let mut o = (*owner(50, "app")).clone();
        o.container = Some(crate::discover::cgroup::Container {
            id: "3f4e5d6c7b8a".into(),
            pod_uid: Some("0b1c2d3e-4f50-6172-8394-a5b6c7d8e9f0".into()),
        });
        let o = Arc::new(o);
        let mut v4 = port(Proto::Tcp, "0.0.0.0", 8080, Some(Arc::clone(&o)));
        let mut v6 = port(Proto::Tcp, "::", 8080, Some(o));
        v6.socket.inode += 1;
        for p in [&mut v4, &mut v6] {
            p.netns = "3f4e5d6c7b8a".into();
        }
        st.apply_discovery(&discovery(vec![v6, v4]), true);
        let text = st.snapshot().encode(Format::Text);
        let info: Vec<&str> = text
            .lines()
            .filter(|l| l.starts_with("portwarden_port_info{"))
            .collect();
        let want = |family: &str, address: &str| {
            format!(
                "portwarden_port_info{{proto=\"tcp\",family=\"{family}\",address=\"{address}\",port=\"8080\",netns=\"3f4e5d6c7b8a\",pid=\"50\",user=\"root\",container=\"3f4e5d6c7b8a\",pod_uid=\"0b1c2d3e-4f50-6172-8394-a5b6c7d8e9f0\"}} 1"
            )
        };
        assert_eq!(info, [want("ipv4", "0.0.0.0"), want("ipv6", "::")]);
        // Gone: the port series stays for the retention, the info does not.
        st.apply_discovery(&discovery(vec![]), false);
        let snapshot = st.snapshot();
        assert_eq!(snapshot.ports.len(), 1);
        let text = snapshot.encode(Format::Text);
        assert!(!text.contains("portwarden_port_info{"), "{text}");
    }

    #[test]
    fn a_container_named_namespace_is_checked_through_its_own_entry() {
        let mut st = state(Duration::from_secs(60));
        let mut p = listener(8080, 60, "app");
        p.netns = "3f4e5d6c7b8a".into();
        p.namespace = "netns:4026532000".into();
        let mut d = discovery(vec![p]);
        d.namespaces.push(crate::discover::Namespace {
            label: "netns:4026532000".into(),
            entry: Some("/proc/60/ns/net".into()),
            listen: None,
        });
        st.apply_discovery(&d, true);
        let key = PortKey {
            proto: Proto::Tcp,
            port: 8080,
            netns: "3f4e5d6c7b8a".into(),
        };
        assert_eq!(
            st.via(&key),
            Some(probe::Via::Netns(
                std::path::Path::new("/proc/60/ns/net").into()
            ))
        );
    }

    #[test]
    fn excluded_ports_are_not_series() {
        let mut st = state(Duration::from_secs(60));
        let mut p = port(Proto::Tcp, "0.0.0.0", 22, Some(owner(40, "sshd")));
        p.excluded = true;
        st.apply_discovery(&discovery(vec![p]), true);
        assert!(st.ports.is_empty());
        assert!(st.procs.is_empty());
    }

    #[test]
    fn empty_labels_are_written_as_a_slash() {
        let mut st = state(Duration::from_secs(60));
        st.apply_discovery(
            &discovery(vec![port(Proto::Udp, "0.0.0.0", 2049, None)]),
            true,
        );
        let text = st.snapshot().encode(Format::Text);
        assert!(
            text.contains("node_udp_port_alive{process_name=\"/\",exe_path=\"/\",port=\"2049\",netns=\"host\"} 1\n"),
            "{text}"
        );
    }

    #[test]
    fn pacing_spreads_a_round_over_half_the_interval() {
        assert_eq!(
            pacing(true, Duration::from_secs(60), 10_000),
            Duration::from_millis(3)
        );
        assert_eq!(
            pacing(true, Duration::from_secs(60), 3),
            Duration::from_millis(100)
        );
        assert_eq!(
            pacing(false, Duration::from_secs(60), 10_000),
            Duration::ZERO
        );
        assert_eq!(pacing(true, Duration::from_secs(60), 0), Duration::ZERO);
    }
}
