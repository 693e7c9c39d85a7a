//! The state reducer: everything the engine knows, changed only by the
//! messages its owner applies (discovery passes, check results, owner
//! liveness), turned into an immutable [`Snapshot`] on demand. No I/O, no
//! clock but `Instant::now`, no lock: unit-tested as a plain value.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use super::history::{self, History};
use super::http_class::HttpClass;
use super::snapshot::RecoveryStats;
use super::snapshot::{
    BaselineView, ConnSummary, PortCheck, PortSeries, ProbeStats, ProcessSeries, SelfProcess,
    Snapshot, SocketInfo, Telemetry,
};
use super::targets::{ByList, Reloads};
use crate::baseline::Expected;
use crate::collectors::Collectors;
use crate::discover::{Discovery, ListenCounters, SocketSource};
use crate::health::{self, ConnectHistory, Health};
use crate::model::{AcceptQueue, PortKey, Proto};
use crate::probe::http::HttpOutcome;
use crate::probe::{self, tcp::TcpOutcome};
use crate::targets::files::InForce;
use crate::value::time::Tick;

/// What the state's owner receives.
#[derive(Debug)]
pub enum Msg {
    /// A discovery pass, full (every fd table read) or a refresh.
    Discovered { pass: Box<Discovery>, full: bool },
    /// A discovery pass that failed as a whole.
    DiscoveryFailed(String),
    /// Owner liveness: each (pid, start time) checked, and whether it runs.
    Owners(Vec<(u32, u64, bool)>),
    /// A TCP check's outcome.
    Tcp { key: PortKey, outcome: TcpOutcome },
    /// An HTTP check's outcome; `asked` is when it started.
    Http {
        key: PortKey,
        outcome: HttpOutcome,
        asked: Instant,
        seconds: f64,
    },
    /// A round of checks of `kind`, due every `every`, ended after
    /// `seconds`.
    RoundDone {
        kind: &'static str,
        seconds: f64,
        every: Duration,
    },
    /// The targets and modules files, loaded (at the start, at a reload).
    Targets(InForce),
    /// A reload of those files failed: what is in force stays.
    TargetsReloadFailed,
    /// A target's check.
    Target {
        job: Arc<crate::targets::Job>,
        report: Box<crate::probe::check::Report>,
    },
    /// Results came in since the last snapshot: make one.
    Publish,
    /// The baseline file as its writer read it (edited by `portwarden
    /// baseline`, or just written).
    BaselineRead(Box<super::baseline::FileRead>),
    /// A reload of the actions file failed: what is in force stays.
    ActionsReloadFailed,
    /// The recovery actions in force (loaded at the start or reloaded), by
    /// name.
    Actions(Vec<Arc<str>>),
    /// A recovery attempt of an action ended (`success`, `failed`,
    /// `timeout`, `dry_run`).
    Recovery {
        action: Arc<str>,
        result: &'static str,
        at: SystemTime,
    },
    /// An action's attempts ran out: escalated.
    Escalated(Arc<str>),
    /// The engine stops (its owner ends; the state is not changed).
    Stop,
}

/// What the reducer needs of the settings.
#[derive(Debug, Clone)]
pub struct Limits {
    /// How long a gone port keeps its series.
    pub retention: Duration,
    /// `--discovery.max-ports`.
    pub max_ports: usize,
    /// The HTTP interval, and the longest a port goes unasked about HTTP
    /// (the label interval).
    pub http_period: Duration,
    pub http_longest: Duration,
    /// Whether discovery counts connections (so a port without any has 0).
    pub counting_connections: bool,
    pub collectors: Collectors,
    /// How often a port is looked at (checked, or seen by a pass): its
    /// verdict holds that long in its history.
    pub check_every: Duration,
    /// `--targets.interval`: a target's, unless it has its own.
    pub target_interval: Duration,
}

#[derive(Debug, Clone)]
struct PortState {
    /// Shared with the snapshots (and, unchanged, kept across passes): a
    /// publish copies no name.
    process_name: Arc<str>,
    exe_path: Arc<str>,
    /// (pid, start time) of the primary owner (a pid is never 0: the
    /// option costs nothing): when it changes, HTTP is
    /// detected again.
    owner: Option<(std::num::NonZeroU32, u64)>,
    targets: Arc<[SocketAddr]>,
    present: bool,
    last_seen: Instant,
    /// Since when it has listened without a break under these names (for
    /// the baseline's learning), to a tenth of a second.
    since: Tick,
    tcp: Option<LastTcp>,
    http: HttpClass,
    /// The sockets behind the series, for `portwarden_port_info`.
    sockets: Arc<[SocketInfo]>,
    /// Accept queue over the port's listeners (summed), when known.
    queue: Option<AcceptQueue>,
    /// Consecutive passes with a full accept queue.
    queue_full_passes: u32,
    /// Connections of the port's listeners, when counted.
    connections: Option<Arc<ConnSummary>>,
    /// Recent connect times, for `slow`.
    history: ConnectHistory,
    /// Its last day, for the status page.
    day: History,
}

/// A port's last TCP check, as the state keeps it.
#[derive(Debug, Clone, Copy, PartialEq)]
struct LastTcp {
    alive: bool,
    seconds: f64,
    /// Which of the port's targets answered.
    answered: Option<u8>,
    /// When it ended (Unix seconds).
    at: u32,
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

/// An owner process as its series name it: (process_name, exe_path).
type ProcKey = (Arc<str>, Arc<str>);

#[derive(Debug, Clone)]
struct ProcState {
    pid: u32,
    start_time: u64,
    alive: bool,
    last_seen: Instant,
}

/// Everything the engine knows.
#[derive(Debug)]
pub struct State {
    limits: Limits,
    /// Boxed: the table keeps ~40% of its slots empty, and a slot is a
    /// pointer rather than a whole state (~380 bytes).
    ports: HashMap<PortKey, Box<PortState>>,
    procs: HashMap<ProcKey, ProcState>,
    /// Process names and executable paths, one copy each: a process's
    /// ports share them (20 ports of one program, one name).
    names: HashSet<Arc<str>>,
    probes: HashMap<&'static str, ProbeStats>,
    discovery_errors: HashMap<&'static str, u64>,
    discovery_runs: HashMap<&'static str, u64>,
    last_discovery: Option<(SystemTime, f64)>,
    /// Discovery passes applied, and when the last was.
    generation: u64,
    discovered: Option<Instant>,
    /// How to reach each series' namespace.
    vias: Arc<HashMap<Arc<str>, probe::Via>>,
    /// Whether the first refused namespace entry was logged.
    warned_unsupported: bool,
    /// Each namespace's `TcpExt` listen counters.
    netns_listen: Vec<(Arc<str>, ListenCounters)>,
    /// Expected ports, when a baseline is kept.
    pub baseline: Option<Arc<BaselineView>>,
    /// The port events' view, set by the owner before each snapshot.
    pub events: Arc<super::EventsView>,
    /// Conflicts found at the last pass.
    conflicts: Arc<[crate::conflicts::Conflict]>,
    /// Ports found at the last pass and not exported for the cap.
    over_limit: usize,
    /// Messages that found the owner's queue full (read from it before
    /// each snapshot).
    pub queue_full: u64,
    /// A port had its first TCP check since the last TCP round ended.
    first_checks: bool,
    /// When a check that failed on our side was last logged.
    our_fault_logged: Option<Instant>,
    /// Targets checked by list.
    by_list: ByList,
    /// Recovery actions, by name; None without an actions file.
    recovery: Option<std::collections::BTreeMap<Arc<str>, RecoveryStats>>,
    /// Reloads of the actions file.
    actions_reloads: Reloads,
}

impl State {
    pub fn new(limits: Limits) -> Self {
        let default_interval = limits.target_interval;
        State {
            limits,
            ports: HashMap::new(),
            procs: HashMap::new(),
            names: HashSet::new(),
            probes: HashMap::new(),
            discovery_errors: HashMap::new(),
            discovery_runs: HashMap::new(),
            last_discovery: None,
            generation: 0,
            discovered: None,
            vias: Arc::default(),
            warned_unsupported: false,
            netns_listen: Vec::new(),
            baseline: None,
            events: Arc::default(),
            conflicts: Arc::from([]),
            over_limit: 0,
            queue_full: 0,
            first_checks: false,
            our_fault_logged: None,
            by_list: ByList::new(default_interval),
            recovery: None,
            actions_reloads: Reloads::default(),
        }
    }

    /// Applies one message. Returns whether discovery should run again at
    /// once: after a TCP round that made first checks, whose connections
    /// now wait in the queues of listeners that never accept (the next
    /// pass sees them, and HTTP detection passes such ports over).
    pub fn apply(&mut self, msg: Msg) -> bool {
        match msg {
            Msg::Discovered { pass, full } => self.apply_discovery(&pass, full),
            Msg::DiscoveryFailed(why) => {
                tracing::warn!("discovery failed: {why}");
                // Counted, and published (the counter moves), but not a
                // pass: the first rounds wait for a pass that listed ports.
                *self.discovery_errors.entry("failed").or_default() += 1;
            }
            Msg::Owners(verdicts) => self.apply_owners(&verdicts),
            Msg::Tcp { key, outcome } => self.apply_tcp(&key, outcome),
            Msg::Http {
                key,
                outcome,
                asked,
                seconds,
            } => self.apply_http(&key, &outcome, asked, seconds),
            Msg::Stop | Msg::Publish | Msg::BaselineRead(_) => {}
            Msg::Targets(in_force) => self.by_list.replace(in_force),
            Msg::ActionsReloadFailed => {
                self.actions_reloads.failures += 1;
                self.actions_reloads.last_ok = false;
            }
            Msg::Actions(names) => {
                self.actions_reloads.last_ok = true;
                let old = self.recovery.take().unwrap_or_default();
                self.recovery = Some(
                    names
                        .into_iter()
                        .map(|n| {
                            let stats = old.get(&n).cloned().unwrap_or_default();
                            (n, stats)
                        })
                        .collect(),
                );
            }
            Msg::Recovery { action, result, at } => {
                if let Some(stats) = self.recovery.as_mut().and_then(|r| r.get_mut(&action)) {
                    *stats.attempts.entry(result).or_default() += 1;
                    stats.last_attempt = Some(at);
                }
            }
            Msg::Escalated(action) => {
                if let Some(stats) = self.recovery.as_mut().and_then(|r| r.get_mut(&action)) {
                    stats.escalations += 1;
                }
            }
            Msg::TargetsReloadFailed => self.by_list.reload_failed(),
            Msg::Target { job, report } => {
                if let Some(result) = self.by_list.apply(&job, &report) {
                    self.probes
                        .entry("target")
                        .or_default()
                        .record(result, report.seconds);
                }
            }
            Msg::RoundDone {
                kind,
                seconds,
                every,
            } => {
                let stats = self.probes.entry(kind).or_default();
                stats.last_round = Some(SystemTime::now());
                stats.last_round_seconds = seconds;
                stats.interval = every;
                return kind == "tcp" && std::mem::take(&mut self.first_checks);
            }
        }
        false
    }

    /// The ports listening now, as the baseline knows ports, each with the
    /// time since which it has listened under its names.
    pub fn present_ports(&self) -> Vec<(Expected, Instant)> {
        self.ports
            .iter()
            .filter(|(_, p)| p.present)
            .map(|(k, p)| {
                let port = Expected {
                    proto: k.proto,
                    port: k.port,
                    netns: Arc::clone(&k.netns),
                    process_name: Arc::clone(&p.process_name),
                    exe_path: Arc::clone(&p.exe_path),
                };
                (port, p.since.instant())
            })
            .collect()
    }

    fn apply_owners(&mut self, verdicts: &[(u32, u64, bool)]) {
        let verdicts: HashMap<(u32, u64), bool> =
            verdicts.iter().map(|&(p, s, a)| ((p, s), a)).collect();
        for p in self.procs.values_mut() {
            // Checked as it was when the check began: a newer owner stands.
            if let Some(&alive) = verdicts.get(&(p.pid, p.start_time)) {
                p.alive = alive;
            }
        }
    }

    fn apply_tcp(&mut self, key: &PortKey, outcome: TcpOutcome) {
        if outcome.unsupported {
            // Not down: unknown. Said once, counted always.
            if !self.warned_unsupported {
                self.warned_unsupported = true;
                tracing::warn!(
                    netns = %key.netns,
                    "cannot enter a network namespace to check its ports (needs CAP_SYS_ADMIN); such ports get no TCP series"
                );
            }
            self.record("tcp", "unsupported", outcome.seconds);
            return;
        }
        if let Some(reason) = outcome.error {
            // Not the port's fault: its last value stands.
            self.our_fault("tcp", reason, outcome.seconds);
            return;
        }
        let result = if outcome.alive { "alive" } else { "dead" };
        self.record("tcp", result, outcome.seconds);
        let track_history = self.limits.collectors.health;
        if let Some(p) = self.ports.get_mut(key)
            && p.present
        {
            if outcome.alive && track_history {
                p.history.record(outcome.seconds);
            }
            self.first_checks |= p.tcp.is_none();
            let answered = p.targets.iter().position(|a| Some(*a) == outcome.answered);
            let at = history::unix_seconds(SystemTime::now());
            p.tcp = Some(LastTcp {
                alive: outcome.alive,
                seconds: outcome.seconds,
                answered: answered.and_then(|i| u8::try_from(i).ok()),
                at,
            });
            let health = p.health(key.proto);
            p.day
                .record(at / 60, health, outcome.alive.then_some(outcome.seconds));
        }
    }

    fn apply_http(&mut self, key: &PortKey, outcome: &HttpOutcome, asked: Instant, seconds: f64) {
        if let HttpOutcome::Error(reason) = outcome {
            self.our_fault("http", reason, seconds);
            return;
        }
        self.record("http", outcome.result(), seconds);
        let (period, longest) = (self.limits.http_period, self.limits.http_longest);
        if let Some(p) = self.ports.get_mut(key)
            && p.present
        {
            p.http = p.http.after(outcome, asked, period, longest);
            let health = p.health(key.proto);
            p.day
                .record(history::minute_of(SystemTime::now()), health, None);
        }
    }

    fn record(&mut self, kind: &'static str, result: &'static str, seconds: f64) {
        self.probes.entry(kind).or_default().record(result, seconds);
    }

    /// A check that could not be made for a lack of our own: counted as
    /// `result="error"`, logged at most once a minute, and the port's last
    /// value kept — never a 0 that pages someone for our limits.
    fn our_fault(&mut self, kind: &'static str, reason: &'static str, seconds: f64) {
        self.record(kind, "error", seconds);
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

    /// Keeps the port series within `--discovery.max-ports`: ports already
    /// known first (a series never flaps for the cap), then new ones in
    /// (protocol, port, namespace) order while there is room; retained
    /// series of gone ports make room first, oldest first. Past the cap,
    /// counts what was left out and says so once in the log.
    fn within_limit<G>(&mut self, seen: &mut HashMap<PortKey, G>) {
        let max_ports = self.limits.max_ports;
        let found = seen.len();
        let mut new: Vec<PortKey> = seen
            .keys()
            .filter(|k| !self.ports.contains_key(*k))
            .cloned()
            .collect();
        let room = max_ports.saturating_sub(found - new.len());
        let over = new.len().saturating_sub(room);
        if over > 0 {
            new.sort_unstable();
            for key in new.drain(room..) {
                seen.remove(&key);
            }
        }
        // Room for the newcomers: drop retained series of gone ports.
        let excess = (self.ports.len() + new.len()).saturating_sub(max_ports);
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
                "{found} ports found, more than {} ({max_ports}): {over} are not exported (portwarden_ports_over_limit)",
                crate::config::flag("max_ports")
            );
        } else if over == 0 && self.over_limit > 0 {
            tracing::info!(
                "every port is exported again (within {})",
                crate::config::flag("max_ports")
            );
        }
        self.over_limit = over;
    }

    fn count_pass(&mut self, d: &Discovery, full: bool) {
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
            ("thread_refused", st.threads_refused),
        ] {
            *self.discovery_errors.entry(reason).or_default() += n;
        }
        if d.source == SocketSource::ProcNet {
            *self.discovery_errors.entry("netlink_refused").or_default() += 1;
        }
        self.last_discovery = Some((SystemTime::now(), d.duration_seconds));
        self.generation += 1;
        self.discovered = Some(Instant::now());
    }

    fn apply_discovery(&mut self, d: &Discovery, full: bool) {
        let now = Instant::now();
        self.count_pass(d, full);
        let conflicts = crate::conflicts::find(&d.ports, &d.replaced);
        if *self.conflicts != *conflicts {
            self.conflicts = conflicts.into();
        }
        // How to reach each series' namespace, by the series' label (a
        // container's id names its namespace once an owner is known).
        let by_namespace = probe::vias(d);
        let vias: HashMap<Arc<str>, probe::Via> = d
            .ports
            .iter()
            .filter_map(|p| {
                let via = by_namespace.get(&*p.namespace)?;
                Some((Arc::clone(&p.netns), via.clone()))
            })
            .collect();
        if *self.vias != vias {
            self.vias = Arc::new(vias);
        }
        self.netns_listen = d
            .namespaces
            .iter()
            .filter_map(|ns| Some((Arc::clone(&ns.label), ns.listen?)))
            .collect();

        let mut seen = crate::model::series(&d.ports);
        self.within_limit(&mut seen);
        for (key, series) in seen {
            let owner = series.owner;
            let sockets: Vec<&crate::model::Socket> =
                series.ports.iter().map(|p| &p.socket).collect();
            let mut infos: Vec<SocketInfo> =
                series.ports.iter().map(|p| SocketInfo::new(p)).collect();
            infos.sort_by_key(SocketInfo::order);
            // SO_REUSEPORT: listeners on one address and port in one
            // process are one socket to a reader, and one series.
            infos.dedup_by(|later, first| {
                let same = later.order() == first.order();
                if same {
                    first.absorb(later);
                }
                same
            });
            let queue = sockets
                .iter()
                .filter_map(|s| s.accept_queue)
                .reduce(AcceptQueue::plus);
            let queue_full = sockets
                .iter()
                .any(|s| s.accept_queue.is_some_and(|q| q.is_full()));
            let connections =
                ConnSummary::of(series.ports.iter().filter_map(|p| p.connections.as_deref()))
                    .or_else(|| {
                        // Counted, and none: zero, not unknown.
                        (self.limits.counting_connections && key.proto == Proto::Tcp).then_some(
                            ConnSummary {
                                by_state: [0; 12],
                                peers: 0,
                            },
                        )
                    });
            let identity =
                owner.and_then(|o| Some((std::num::NonZeroU32::new(o.pid)?, o.start_time)));
            // The names in force when unchanged (no allocation), else new.
            let known = self.ports.get(&key);
            let names = &mut self.names;
            let mut share = |new: &str, old: Option<&Arc<str>>| match old {
                Some(old) if **old == *new => Arc::clone(old),
                _ => match names.get(new) {
                    Some(name) => Arc::clone(name),
                    None => {
                        let name: Arc<str> = Arc::from(new);
                        names.insert(Arc::clone(&name));
                        name
                    }
                },
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
            let targets = probe::targets(sockets.iter().copied());
            let targets: Arc<[SocketAddr]> = match known {
                Some(k) if *k.targets == *targets => Arc::clone(&k.targets),
                _ => targets.into(),
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
            let state = self.ports.entry(key).or_insert_with(|| {
                Box::new(PortState {
                    process_name: name.clone(),
                    exe_path: exe.clone(),
                    owner: identity,
                    targets: Arc::clone(&targets),
                    present: false,
                    last_seen: now,
                    since: Tick::at(now),
                    tcp: None,
                    http: HttpClass::unknown(),
                    sockets: Arc::from([]),
                    queue: None,
                    queue_full_passes: 0,
                    connections: None,
                    history: ConnectHistory::default(),
                    day: History::carrying(History::carry_for(self.limits.check_every)),
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
            // Back after a break, or under other names: listening anew.
            if !state.present
                || !Arc::ptr_eq(&state.process_name, &name)
                || !Arc::ptr_eq(&state.exe_path, &exe)
            {
                state.since = Tick::at(now);
            }
            state.process_name = name;
            state.exe_path = exe;
            state.targets = targets;
            state.sockets = infos;
            state.queue = queue;
            state.queue_full_passes = if queue_full {
                state.queue_full_passes + 1
            } else {
                0
            };
            state.connections = match (&state.connections, connections) {
                (Some(old), Some(new)) if **old == new => Some(Arc::clone(old)),
                (_, new) => new.map(Arc::new),
            };
            state.present = true;
            state.last_seen = now;
        }
        // Not seen at this pass: gone. Every port's minute learns what
        // the pass found (gone: down; a full queue: hung).
        let minute = history::minute_of(SystemTime::now());
        for (key, p) in self.ports.iter_mut() {
            p.present &= p.last_seen == now;
            let health = p.health(key.proto);
            p.day.record(minute, health, None);
        }
        let retention = self.limits.retention;
        self.ports
            .retain(|_, p| p.present || now.duration_since(p.last_seen) < retention);
        // A process is seen while it owns a port; gone ones stay at 0 for
        // the retention too.
        let owners: HashSet<ProcKey> = self
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
        self.names.retain(|name| Arc::strong_count(name) > 1);
    }

    /// An immutable view of everything, with our own `process` figures.
    pub fn snapshot(&self, process: Option<SelfProcess>) -> Snapshot {
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
                sockets: Arc::clone(&p.sockets),
                queue: p.queue.filter(|_| p.present),
                connections: p.connections.clone().filter(|_| p.present),
                health: p.health(key.proto),
                check: PortCheck {
                    targets: Arc::clone(&p.targets),
                    answered: p.tcp.and_then(|t| t.answered),
                    http: p.http,
                    queue_full_passes: p.queue_full_passes,
                },
                last_check: p.tcp.map(|t| t.at),
                day: p.day.day(),
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
                pid: p.pid,
                start_time: p.start_time,
            })
            .collect();
        processes
            .sort_by(|a, b| (&a.process_name, &a.exe_path).cmp(&(&b.process_name, &b.exe_path)));
        let sorted = |m: &HashMap<&'static str, u64>| {
            let mut v: Vec<(&'static str, u64)> = m.iter().map(|(k, v)| (*k, *v)).collect();
            v.sort();
            v
        };
        let mut probes: Vec<(&'static str, ProbeStats)> =
            self.probes.iter().map(|(k, v)| (*k, v.clone())).collect();
        probes.sort_by_key(|(k, _)| *k);
        let mut netns_listen = self.netns_listen.clone();
        netns_listen.sort_by(|a, b| a.0.cmp(&b.0));
        let mut snapshot = Snapshot::empty(self.limits.collectors);
        snapshot.ports = ports;
        snapshot.processes = processes;
        snapshot.netns_listen = netns_listen;
        snapshot.baseline = self.baseline.clone();
        snapshot.vias = Arc::clone(&self.vias);
        snapshot.generation = self.generation;
        snapshot.discovered = self.discovered;
        snapshot.by_list = self.by_list.in_force.clone();
        snapshot.targets = self.by_list.series();
        snapshot.reloads = self.by_list.reloads;
        snapshot.recovery = self.recovery.clone();
        snapshot.actions_reloads = self.actions_reloads;
        snapshot.events = Arc::clone(&self.events);
        snapshot.conflicts = Arc::clone(&self.conflicts);
        snapshot.telemetry = Telemetry {
            probes,
            discovery_errors: sorted(&self.discovery_errors),
            discovery_runs: sorted(&self.discovery_runs),
            last_discovery: self.last_discovery,
            process,
            max_ports: self.limits.max_ports,
            over_limit: self.over_limit,
            queue_full: self.queue_full,
            history_bytes: snapshot
                .ports
                .iter()
                .map(|p| p.day.heap_bytes())
                .chain(
                    snapshot
                        .targets
                        .iter()
                        .map(|t| t.history.day().heap_bytes()),
                )
                .sum(),
        };
        snapshot
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::encoder::Format;
    use crate::model::{Owner, Port, ScanStats};

    fn owner(pid: u32, name: &str) -> Arc<Owner> {
        crate::model::fixtures::owner(pid, &format!("/usr/bin/{name}"), 0)
    }

    fn port(proto: Proto, addr: &str, port: u16, owner: Option<Arc<Owner>>) -> Port {
        crate::model::fixtures::port(proto, addr, port, u64::from(port), owner)
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
                firewall: None,
            }],
            replaced: Default::default(),
        }
    }

    fn state(retention: Duration) -> State {
        State::new(Limits {
            retention,
            max_ports: usize::MAX,
            http_period: Duration::from_secs(60),
            http_longest: Duration::from_secs(3600),
            counting_connections: false,
            collectors: Collectors::default(),
            check_every: Duration::from_secs(15),
            target_interval: Duration::from_secs(15),
        })
    }

    fn exposition(snapshot: &Snapshot) -> String {
        String::from_utf8(snapshot.body(Format::Text, false).to_vec()).expect("UTF-8")
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
            *tcp.targets,
            [
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
        let snap = st.snapshot(None);
        assert_eq!(snap.ports.len(), 1);
        assert!(!snap.ports[0].present);
        std::thread::sleep(Duration::from_millis(60));
        st.apply_discovery(&discovery(vec![]), false);
        assert!(st.ports.is_empty());
        assert!(st.procs.is_empty());
    }

    #[test]
    fn a_port_gone_at_a_pass_is_down_in_its_day_without_any_check() {
        let mut st = state(Duration::from_secs(60));
        st.apply_discovery(&discovery(vec![listener(8080, 20, "app")]), true);
        st.apply(Msg::Tcp {
            key: key(Proto::Tcp, 8080),
            outcome: tcp(true, 0.0002, None),
        });
        let now = crate::engine::history::minute_of(SystemTime::now());
        let last = |st: &State| {
            st.snapshot(None).ports[0]
                .day
                .spans(now)
                .last()
                .map(|s| s.worst)
        };
        assert_eq!(last(&st), Some(Health::Ok));
        // Gone at the next pass, no TCP check since: the pass says down.
        st.apply_discovery(&discovery(vec![]), false);
        assert_eq!(last(&st), Some(Health::Down));
        let snap = st.snapshot(None);
        assert!(!snap.ports[0].present);
        // Its last socket and owner stay for the page.
        assert_eq!(snap.ports[0].sockets.len(), 1);
        assert_eq!(snap.ports[0].sockets[0].owner().map(|o| o.pid), Some(20));
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
            next: Tick::at(later),
        };
        // Restarted under a new pid: same labels, new identity.
        st.apply_discovery(&discovery(vec![listener(6379, 31, "redis")]), false);
        let p = &st.ports[&key(Proto::Tcp, 6379)];
        assert_eq!(p.owner.map(|(pid, st)| (pid.get(), st)), Some((31, 310)));
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

    #[test]
    fn port_info_describes_each_socket_while_it_listens() {
        let mut st = state(Duration::from_secs(60));
        let mut o = (*owner(50, "app")).clone();
        o.container = Some(crate::discover::cgroup::Container {
            id: "3f4e5d6c7b8a".into(),
            pod_uid: Some("0b1c2d3e-4f50-6172-8394-a5b6c7d8e9f0".into()),
        });
        o.unit = Some(crate::discover::cgroup::Unit {
            system: "user@1000.service".into(),
            user: Some("app@a\\x2db.service".into()),
        });
        let o = Arc::new(o);
        let mut v4 = port(Proto::Tcp, "0.0.0.0", 8080, Some(Arc::clone(&o)));
        let mut v6 = port(Proto::Tcp, "::", 8080, Some(o));
        v6.socket.inode += 1;
        v4.activation = Some(Box::new(crate::model::Activation::Passed(Some(
            "web.socket".into(),
        ))));
        v6.activation = Some(Box::new(crate::model::Activation::Unresolved));
        for p in [&mut v4, &mut v6] {
            p.netns = "3f4e5d6c7b8a".into();
        }
        st.apply_discovery(&discovery(vec![v6, v4]), true);
        let text = exposition(&st.snapshot(None));
        let info: Vec<&str> = text
            .lines()
            .filter(|l| l.starts_with("portwarden_port_info{"))
            .collect();
        let want = |family: &str, address: &str, socket_unit: &str| {
            format!(
                "portwarden_port_info{{proto=\"tcp\",family=\"{family}\",address=\"{address}\",port=\"8080\",netns=\"3f4e5d6c7b8a\",pid=\"50\",user=\"root\",container=\"3f4e5d6c7b8a\",pod_uid=\"0b1c2d3e-4f50-6172-8394-a5b6c7d8e9f0\",unit=\"user@1000.service\",user_unit=\"app@a\\\\x2db.service\",socket_unit=\"{socket_unit}\"}} 1"
            )
        };
        assert_eq!(
            info,
            [
                want("ipv4", "0.0.0.0", "web.socket"),
                want("ipv6", "::", "(unresolved)")
            ]
        );
        // Gone: the port series stays for the retention, the info does not.
        st.apply_discovery(&discovery(vec![]), false);
        let snapshot = st.snapshot(None);
        assert_eq!(snapshot.ports.len(), 1);
        let text = exposition(&snapshot);
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
            entry: Some("/run/netns/sixty".into()),
            listen: None,
            firewall: None,
        });
        st.apply_discovery(&d, true);
        let key = PortKey {
            proto: Proto::Tcp,
            port: 8080,
            netns: "3f4e5d6c7b8a".into(),
        };
        let snapshot = st.snapshot(None);
        assert_eq!(
            snapshot.via(&snapshot.port(&key).expect("series").key.netns),
            Some(probe::Via::Netns(
                std::path::Path::new("/run/netns/sixty").into()
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
        let text = exposition(&st.snapshot(None));
        assert!(
            text.contains("node_udp_port_alive{process_name=\"/\",exe_path=\"/\",port=\"2049\",netns=\"host\"} 1\n"),
            "{text}"
        );
    }

    fn tcp(alive: bool, seconds: f64, error: Option<&'static str>) -> TcpOutcome {
        TcpOutcome {
            alive,
            seconds,
            answered: None,
            unsupported: false,
            error,
        }
    }

    #[test]
    fn a_check_that_failed_on_our_side_keeps_the_last_value() {
        let mut st = state(Duration::from_secs(60));
        st.apply_discovery(&discovery(vec![listener(8080, 20, "app")]), true);
        let k = key(Proto::Tcp, 8080);
        st.apply(Msg::Tcp {
            key: k.clone(),
            outcome: tcp(true, 0.001, None),
        });
        st.apply(Msg::Tcp {
            key: k.clone(),
            outcome: tcp(false, 0.0, Some("fd_exhausted")),
        });
        let snapshot = st.snapshot(None);
        assert_eq!(snapshot.port(&k).expect("series").tcp, Some((true, 0.001)));
        let stats = &snapshot.telemetry.probes[0].1;
        assert_eq!(
            (stats.results.get("alive"), stats.results.get("error")),
            (Some(&1), Some(&1))
        );
    }

    #[test]
    fn a_tcp_round_with_first_checks_asks_for_a_refresh_once() {
        let mut st = state(Duration::from_secs(60));
        st.apply_discovery(&discovery(vec![listener(8080, 20, "app")]), true);
        let k = key(Proto::Tcp, 8080);
        let done = |kind| Msg::RoundDone {
            kind,
            seconds: 0.1,
            every: Duration::from_secs(60),
        };
        st.apply(Msg::Tcp {
            key: k.clone(),
            outcome: tcp(true, 0.001, None),
        });
        assert!(!st.apply(done("http")));
        assert!(st.apply(done("tcp")));
        st.apply(Msg::Tcp {
            key: k,
            outcome: tcp(true, 0.001, None),
        });
        assert!(!st.apply(done("tcp")), "not a first check");
    }

    #[test]
    fn owner_verdicts_apply_to_the_identity_that_was_checked() {
        let mut st = state(Duration::from_secs(60));
        st.apply_discovery(&discovery(vec![listener(8080, 20, "app")]), true);
        // Checked as pid 20; meanwhile a pass saw its successor, pid 21.
        st.apply_discovery(&discovery(vec![listener(8080, 21, "app")]), false);
        st.apply(Msg::Owners(vec![(20, 200, false)]));
        assert!(st.snapshot(None).processes[0].alive);
        st.apply(Msg::Owners(vec![(21, 210, false)]));
        assert!(!st.snapshot(None).processes[0].alive);
    }

    #[test]
    fn a_failed_pass_counts_but_is_not_a_fresh_discovery() {
        let mut st = state(Duration::from_secs(60));
        st.apply(Msg::DiscoveryFailed("netlink: EPERM".into()));
        let snapshot = st.snapshot(None);
        assert_eq!((snapshot.generation, snapshot.discovered), (0, None));
        assert_eq!(snapshot.telemetry.discovery_errors, [("failed", 1)]);
    }

    #[test]
    fn a_port_listens_since_its_first_pass_until_a_break_or_a_new_name() {
        let mut st = state(Duration::from_secs(60));
        let since = |st: &State| st.present_ports().first().map(|(_, t)| *t);
        st.apply_discovery(&discovery(vec![listener(8080, 20, "app")]), true);
        let first = since(&st).expect("present");
        // Kept to a tenth of a second: passes that far apart.
        std::thread::sleep(Duration::from_millis(150));
        st.apply_discovery(&discovery(vec![listener(8080, 21, "app")]), false);
        assert_eq!(since(&st), Some(first), "a new pid, the same names");
        st.apply_discovery(&discovery(vec![]), false);
        assert_eq!(since(&st), None);
        st.apply_discovery(&discovery(vec![listener(8080, 21, "app")]), false);
        let back = since(&st).expect("back");
        assert!(back > first, "back after a break: listening anew");
        std::thread::sleep(Duration::from_millis(150));
        st.apply_discovery(&discovery(vec![listener(8080, 22, "other")]), false);
        assert!(since(&st).expect("present") > back, "another name");
    }
}
