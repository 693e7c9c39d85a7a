//! What the engine publishes: an immutable [`Snapshot`] of every port,
//! owner and figure of its own, and the store that hands the latest one to
//! readers (the server, the probe rounds). A snapshot is encoded on demand,
//! once per variant, outside any lock.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant, SystemTime};

use tokio::sync::watch;

use super::history::Day;
use super::http_class::HttpClass;
use super::targets::{Reloads, TargetSeries};
use crate::baseline::Expected;
use crate::collectors::Collectors;
use crate::discover::ListenCounters;
use crate::encoder::{Encoder, Format};
use crate::health::Health;
use crate::model::{AcceptQueue, Family, Owner, Owners, Port, PortKey};
use crate::probe::Via;
use crate::targets::files::InForce;

/// Upper bounds of the probe duration histogram, in seconds.
pub const DURATION_BUCKETS: [f64; 12] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
];

/// A published, immutable view of the engine, encoded on demand.
#[derive(Debug)]
pub struct Snapshot {
    /// Sorted by key.
    pub ports: Vec<PortSeries>,
    pub processes: Vec<ProcessSeries>,
    /// Each namespace's listen overflow and drop counters.
    pub netns_listen: Vec<(Arc<str>, ListenCounters)>,
    /// Shared by every snapshot of one discovery pass.
    pub baseline: Option<Arc<BaselineView>>,
    pub telemetry: Telemetry,
    /// Which optional families are written.
    pub collectors: Collectors,
    /// Discovery passes applied so far (a failed one is not a pass).
    pub generation: u64,
    /// When the last discovery pass was applied.
    pub discovered: Option<Instant>,
    /// How each namespace label's ports are reached (a label missing: they
    /// cannot be); shared by every snapshot of one discovery pass.
    pub vias: Arc<HashMap<Arc<str>, Via>>,
    /// The targets and modules in force (the modules `/probe` uses too).
    pub by_list: InForce,
    /// Each target's series, by name.
    pub targets: Vec<TargetSeries>,
    /// Reloads of the targets and modules files.
    pub reloads: Reloads,
    /// Each recovery action's attempts; None without an actions file.
    pub recovery: Option<std::collections::BTreeMap<Arc<str>, RecoveryStats>>,
    /// Reloads of the actions file.
    pub actions_reloads: Reloads,
    /// The recent port events and their counts; shared while none come.
    pub events: Arc<super::EventsView>,
    /// Conflicts found at the last pass; shared while they stay the same.
    pub conflicts: Arc<[crate::conflicts::Conflict]>,
    /// Format × gzip.
    encoded: [OnceLock<Arc<[u8]>>; 4],
}

/// One port's series values, and what the probe rounds need to check it.
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
    /// While it listens: its sockets; once gone: the last it had.
    pub sockets: Arc<[SocketInfo]>,
    /// Its listeners' accept queues, summed.
    pub queue: Option<AcceptQueue>,
    /// Shared with the engine's state until the next pass.
    pub connections: Option<Arc<ConnSummary>>,
    pub health: Health,
    pub check: PortCheck,
    /// When its last TCP check ended (Unix seconds).
    pub last_check: Option<u32>,
    /// Its last day, a bucket a minute.
    pub day: Day,
}

impl PortSeries {
    /// The address that answered its last TCP check, or else its first.
    pub fn address(&self) -> Option<SocketAddr> {
        let targets = &self.check.targets;
        self.check
            .answered
            .and_then(|i| targets.get(usize::from(i)))
            .or_else(|| targets.first())
            .copied()
    }
}

/// How the probe rounds check a port.
#[derive(Debug, Clone, PartialEq)]
pub struct PortCheck {
    /// Where a TCP check connects (one per address family, loopback for
    /// wildcards); shared with the engine's state.
    pub targets: Arc<[SocketAddr]>,
    /// Which of `targets` answered the last TCP check.
    pub answered: Option<u8>,
    pub http: HttpClass,
    /// Consecutive passes with a full accept queue.
    pub queue_full_passes: u32,
}

/// One owner process's series value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcessSeries {
    pub process_name: Arc<str>,
    pub exe_path: Arc<str>,
    pub alive: bool,
    /// The identity checked for liveness: a reused pid is not the owner.
    pub pid: u32,
    pub start_time: u64,
}

/// A port's connections: counts by state, distinct peers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnSummary {
    pub by_state: [u32; 12],
    pub peers: u32,
}

impl ConnSummary {
    pub fn of<'a>(all: impl IntoIterator<Item = &'a crate::model::Connections>) -> Option<Self> {
        let mut by_state = [0u32; 12];
        let mut peers: Vec<IpAddr> = Vec::new();
        let mut any = false;
        for c in all {
            any = true;
            for (slot, n) in by_state.iter_mut().zip(c.by_state) {
                *slot = slot.saturating_add(n);
            }
            peers.extend_from_slice(&c.peers);
        }
        peers.sort_unstable();
        peers.dedup();
        any.then_some(ConnSummary {
            by_state,
            peers: u32::try_from(peers.len()).unwrap_or(u32::MAX),
        })
    }
}

/// One socket of a port series, as `portwarden_port_info` and the status
/// page describe it: its owners are shared with discovery's owner index,
/// not copied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SocketInfo {
    pub family: Family,
    pub address: IpAddr,
    /// The first such socket's inode and uid.
    pub inode: u64,
    pub uid: u32,
    /// Summed over the sockets this one stands for (`SO_REUSEPORT`).
    pub accept_queue: Option<AcceptQueue>,
    /// Primary owner first.
    pub owners: Owners,
    /// Why `owners` is empty, when it is.
    pub owner_unknown_reason: Option<Arc<str>>,
    /// How a service manager made it, when one did; boxed, as few are.
    pub activation: Option<Box<crate::model::Activation>>,
    /// Whether outside hosts may reach it, when the ruleset was read.
    pub exposure: Option<Arc<crate::exposure::Exposure>>,
}

impl SocketInfo {
    pub fn new(port: &Port) -> Self {
        let socket = &port.socket;
        SocketInfo {
            family: socket.family,
            address: socket.address,
            inode: socket.inode,
            uid: socket.uid,
            accept_queue: socket.accept_queue,
            owners: port.owners.clone(),
            owner_unknown_reason: port.owner_unknown_reason.as_deref().map(Arc::from),
            activation: port.activation.clone(),
            exposure: port.exposure.clone(),
        }
    }

    /// The primary owner, whose labels the series carry.
    pub fn owner(&self) -> Option<&Arc<Owner>> {
        self.owners.first()
    }

    /// Sockets sort and deduplicate by family, address and owner's pid.
    pub fn order(&self) -> (Family, IpAddr, Option<u32>) {
        (self.family, self.address, self.owner().map(|o| o.pid))
    }

    /// Takes in `other`, a socket of the same [`SocketInfo::order`]: a
    /// reader sees one socket, with the queues of both.
    pub fn absorb(&mut self, other: &SocketInfo) {
        self.accept_queue = match (self.accept_queue, other.accept_queue) {
            (Some(a), Some(b)) => Some(a.plus(b)),
            (a, b) => a.or(b),
        };
    }
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
    /// Discovery passes that found the writer stuck in a file operation
    /// (or its queue full): learning went on in memory.
    pub writer_stalled: u64,
}

/// One recovery action's attempts by result, escalations, and when it
/// last tried.
#[derive(Debug, Clone, Default)]
pub struct RecoveryStats {
    pub attempts: std::collections::BTreeMap<&'static str, u64>,
    pub escalations: u64,
    pub last_attempt: Option<SystemTime>,
}

/// Probe counters and durations of one kind.
#[derive(Debug, Clone, Default)]
pub struct ProbeStats {
    pub results: HashMap<&'static str, u64>,
    pub buckets: [u64; DURATION_BUCKETS.len()],
    pub sum: f64,
    pub count: u64,
    pub last_round: Option<SystemTime>,
    pub last_round_seconds: f64,
    /// How often a round of this kind is due.
    pub interval: Duration,
}

impl ProbeStats {
    pub fn record(&mut self, result: &'static str, seconds: f64) {
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

/// The exporter's own health.
#[derive(Debug, Clone, Default)]
pub struct Telemetry {
    /// By kind, sorted.
    pub probes: Vec<(&'static str, ProbeStats)>,
    pub discovery_errors: Vec<(&'static str, u64)>,
    pub discovery_runs: Vec<(&'static str, u64)>,
    /// When the last pass completed, and how long it took.
    pub last_discovery: Option<(SystemTime, f64)>,
    pub process: Option<SelfProcess>,
    /// `--discovery.max-ports`.
    pub max_ports: usize,
    /// Ports left out for it at the last pass.
    pub over_limit: usize,
    /// Bytes the last day of every port and target holds on the heap.
    pub history_bytes: usize,
    /// Messages that found the state owner's queue full and waited.
    pub queue_full: u64,
}

/// `process_*` figures of portwarden itself, read in the background.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct SelfProcess {
    pub figures: crate::discover::own::Figures,
    /// What the server turned away or failed at.
    pub server: crate::counters::Counts,
}

impl SelfProcess {
    /// Reads our own figures and the server's counts.
    pub fn read() -> Option<SelfProcess> {
        Some(SelfProcess {
            figures: crate::discover::own::figures()?,
            server: crate::counters::now(),
        })
    }
}

impl Snapshot {
    /// An empty snapshot: nothing discovered yet.
    pub fn empty(collectors: Collectors) -> Snapshot {
        Snapshot {
            ports: Vec::new(),
            processes: Vec::new(),
            netns_listen: Vec::new(),
            baseline: None,
            telemetry: Telemetry::default(),
            collectors,
            generation: 0,
            discovered: None,
            vias: Arc::default(),
            by_list: InForce::default(),
            targets: Vec::new(),
            reloads: Reloads::default(),
            recovery: None,
            actions_reloads: Reloads::default(),
            events: Arc::default(),
            conflicts: Arc::from([]),
            encoded: Default::default(),
        }
    }

    /// The exposition in `format`, gzipped or not: encoded once and kept
    /// for the snapshot's life; variants nobody asks for are never built.
    /// CPU only, no I/O, no lock of the engine's — but milliseconds on a
    /// busy host: the encoder calls it ahead of demand, a request only off
    /// the async workers.
    pub fn body(&self, format: Format, gzip: bool) -> Arc<[u8]> {
        let slot = &self.encoded[variant(format, gzip)];
        Arc::clone(slot.get_or_init(|| {
            let mut enc = if gzip {
                Encoder::gzip(format)
            } else {
                Encoder::new(format)
            };
            crate::collectors::write(self, &mut enc);
            enc.finish().into()
        }))
    }

    /// The body of `format` × `gzip` if it is encoded already.
    pub fn ready(&self, format: Format, gzip: bool) -> Option<Arc<[u8]>> {
        self.encoded[variant(format, gzip)].get().cloned()
    }

    /// How a port of namespace `netns` is reached, if it can be.
    pub fn via(&self, netns: &str) -> Option<Via> {
        self.vias.get(netns).cloned()
    }

    /// The port series of `key`, if any.
    pub fn port(&self, key: &PortKey) -> Option<&PortSeries> {
        let i = self.ports.binary_search_by(|p| p.key.cmp(key)).ok()?;
        self.ports.get(i)
    }
}

/// The slot of a variant of the exposition.
fn variant(format: Format, gzip: bool) -> usize {
    format as usize * 2 + usize::from(gzip)
}

/// Every variant of the exposition, by slot.
pub const VARIANTS: [(Format, bool); 4] = [
    (Format::Text, false),
    (Format::Text, true),
    (Format::OpenMetrics, false),
    (Format::OpenMetrics, true),
];

/// Where readers find the latest snapshot, and whether the engine is well.
#[derive(Debug)]
pub struct Shared {
    latest: watch::Sender<Arc<Snapshot>>,
    /// The first long-lived task or thread that ended, and how.
    failed: Mutex<Option<String>>,
    /// Discovery older than this is stale (3 × its interval).
    stale_after: Duration,
    started: Instant,
    /// The loops of checks that must keep up: the TCP and HTTP rounds, the
    /// targets' scheduler.
    loops: Mutex<Vec<Loop>>,
    /// The variants of the exposition scrapers have asked for (a bit per
    /// slot): each new snapshot is published with them encoded.
    wanted: std::sync::atomic::AtomicU8,
}

/// One loop of checks, as `/-/healthy` judges it: stale when for 3 × its
/// interval no round of it and no check of its rounds has completed (a
/// round of 10,000 ports that takes long but moves is slow, not frozen), or
/// a check of it has waited to start (the targets).
#[derive(Debug)]
struct Loop {
    name: &'static str,
    every: Duration,
    /// When a round, or a check of one, last completed.
    moved: Option<Instant>,
    /// Since when a check has been due and not started (a scheduler).
    behind: Option<Instant>,
    /// Rounds wait for their first discovery; a scheduler does not.
    is_round: bool,
}

impl Shared {
    pub fn new(collectors: Collectors, stale_after: Duration) -> Shared {
        Shared {
            latest: watch::Sender::new(Arc::new(Snapshot::empty(collectors))),
            failed: Mutex::new(None),
            stale_after,
            started: Instant::now(),
            loops: Mutex::new(Vec::new()),
            // What Prometheus asks for by default.
            wanted: std::sync::atomic::AtomicU8::new(1 << variant(Format::OpenMetrics, true)),
        }
    }

    /// From now on, snapshots are published with `format` × `gzip` encoded.
    pub fn want(&self, format: Format, gzip: bool) {
        self.wanted.fetch_or(
            1 << variant(format, gzip),
            std::sync::atomic::Ordering::Relaxed,
        );
    }

    /// The variants to encode ahead of demand.
    pub fn wanted(&self) -> impl Iterator<Item = (Format, bool)> + use<> {
        let bits = self.wanted.load(std::sync::atomic::Ordering::Relaxed);
        VARIANTS
            .into_iter()
            .filter(move |&(f, g)| bits & (1 << variant(f, g)) != 0)
    }

    /// From now on `/-/healthy` fails when rounds `name` (due every
    /// `every`) stop completing.
    pub fn watch_rounds(&self, name: &'static str, every: Duration) {
        self.watch(name, every, true);
    }

    /// From now on `/-/healthy` fails when a check of scheduler `name`
    /// waits past 3 × `every`.
    pub fn watch_scheduler(&self, name: &'static str, every: Duration) {
        self.watch(name, every, false);
    }

    fn watch(&self, name: &'static str, every: Duration, is_round: bool) {
        self.loops().push(Loop {
            name,
            every,
            moved: None,
            behind: None,
            is_round,
        });
    }

    /// A round of `name`, or a check of one, completed.
    pub fn round_moved(&self, name: &'static str) {
        if let Some(l) = self.loops().iter_mut().find(|l| l.name == name) {
            l.moved = Some(Instant::now());
        }
    }

    /// Scheduler `name`'s oldest check that is due and not started, if any.
    pub fn behind(&self, name: &'static str, since: Option<Instant>) {
        if let Some(l) = self.loops().iter_mut().find(|l| l.name == name) {
            l.behind = since;
        }
    }

    fn loops(&self) -> std::sync::MutexGuard<'_, Vec<Loop>> {
        // Plain values: a panic elsewhere leaves them whole.
        self.loops.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The latest snapshot.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        Arc::clone(&self.latest.borrow())
    }

    /// Wakes at each publish.
    pub fn subscribe(&self) -> watch::Receiver<Arc<Snapshot>> {
        self.latest.subscribe()
    }

    /// Makes `snapshot` the latest; the one before goes once its last
    /// reader is done with it.
    pub fn publish(&self, snapshot: Arc<Snapshot>) {
        drop(self.latest.send_replace(snapshot));
        crate::discover::alloc::release_free_memory();
    }

    /// Records the first failure of a task or thread the engine needs.
    pub fn fail(&self, what: String) {
        let mut failed = self.failed.lock().unwrap_or_else(|e| e.into_inner());
        failed.get_or_insert(what);
    }

    /// `Ok` while every task runs and discovery is fresh; otherwise why not
    /// (for `/-/healthy`). Every pass publishes a snapshot, so a fresh
    /// discovery is a fresh snapshot too.
    pub fn health(&self) -> Result<(), String> {
        if let Some(why) = &*self.failed.lock().unwrap_or_else(|e| e.into_inner()) {
            return Err(why.clone());
        }
        let snapshot = self.snapshot();
        let limit = self.stale_after;
        let age = |at: Instant| at.elapsed().as_secs_f64();
        match snapshot.discovered {
            None if self.started.elapsed() > limit => Err(format!(
                "no discovery pass in the {:.0} s since the start (stale after {:.0} s: 3 x the discovery interval)",
                age(self.started),
                limit.as_secs_f64()
            )),
            Some(at) if at.elapsed() > limit => Err(format!(
                "discovery is stale: the last pass was {:.0} s ago (stale after {:.0} s: 3 x the discovery interval)",
                age(at),
                limit.as_secs_f64()
            )),
            _ => self.loops_health(),
        }
    }

    /// Every loop of checks keeping up, or the first that does not.
    fn loops_health(&self) -> Result<(), String> {
        for l in self.loops().iter() {
            let limit = l.every * 3;
            let stale = |since: Instant| since.elapsed() > limit;
            let why = match (l.is_round, l.moved, l.behind) {
                // The first round waits for the first discovery pass.
                (true, None, _) if self.started.elapsed() > limit + self.stale_after => {
                    Some(format!(
                        "the {} rounds have not completed one since the start",
                        l.name
                    ))
                }
                (true, Some(at), _) if stale(at) => Some(format!(
                    "the {} rounds are stale: nothing of theirs completed for {:.0} s",
                    l.name,
                    at.elapsed().as_secs_f64()
                )),
                (false, _, Some(since)) if stale(since) => Some(format!(
                    "the {} are behind: a check due {:.0} s ago has not started",
                    l.name,
                    since.elapsed().as_secs_f64()
                )),
                _ => None,
            };
            if let Some(why) = why {
                return Err(format!(
                    "{why} (stale after {:.0} s: 3 x their interval)",
                    limit.as_secs_f64()
                ));
            }
        }
        Ok(())
    }
}
