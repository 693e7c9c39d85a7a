//! The baseline of expected ports as the engine keeps it, in two parts:
//!
//! - [`BaselineState`], on the state's owner: what is expected (as last
//!   read, plus what was learnt since), since when each present port has
//!   listened, which ports are learnt: memory alone, no I/O.
//! - the writer, a thread of its own ([`BaselineState::start_writer`]):
//!   the file. It takes the learnt ports (coalescing what came while it
//!   was busy), writes them without waiting on another process's lock,
//!   and reads the file again when `portwarden baseline` edits it, handing
//!   what it read to the owner.
//!
//! A slow or stuck disk (a hung NFS mount, a FIFO in place of the file)
//! stops the writer alone: rounds, snapshots and scrapes go on, and each
//! discovery pass that finds the writer stuck is counted
//! (`portwarden_baseline_errors_total{reason="writer_stalled"}`).

use std::collections::{BTreeMap, HashSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::time::{Duration, Instant};

use super::inbox::Outbox;
use super::snapshot::BaselineView;
use super::state::Msg;
use crate::baseline::{self, Allowlist, Baseline, Expected};
use crate::config::Settings;

/// Batches of learnt ports the writer's queue holds; past it the owner
/// keeps them and hands them over at a later pass.
const QUEUE: usize = 4;

/// How often the writer looks whether the file was edited (one `stat`).
const LOOK_EVERY: Duration = Duration::from_secs(1);

/// A writer inside one file operation for this long is stuck.
pub const STALLED: Duration = Duration::from_secs(5);

/// Where the baseline is kept (`--state.dir`, a flag every command shares)
/// and the ports it never calls unexpected (`--baseline.allowlist`, read
/// at the start).
#[derive(Debug, Clone, Default)]
pub struct BaselinePlace {
    pub state_dir: Option<PathBuf>,
    pub allowlist: Allowlist,
}

/// What the writer counts, read by the owner into each view.
#[derive(Debug, Default)]
struct Counts {
    recovered: AtomicU64,
    write_errors: AtomicU64,
    lock_busy: AtomicU64,
    /// When the file operation under way began (milliseconds since the
    /// writer started, plus one); 0: none under way.
    busy_since: AtomicU64,
}

/// What the owner reads of the file: every entry, and whether someone
/// else edited it (then no port learns from listening before now).
#[derive(Debug)]
pub struct FileRead {
    pub entries: BTreeMap<Expected, u64>,
    pub edited: bool,
}

/// The baseline as the state's owner keeps it.
pub struct BaselineState {
    /// Expected ports: the file as last read, and what was learnt since.
    entries: BTreeMap<Expected, u64>,
    learn: Duration,
    allowlist: Allowlist,
    /// When the file last changed under us (`portwarden baseline`): no
    /// port learns from listening before it (a forgotten port that still
    /// listens is learned anew).
    changed: Option<Instant>,
    /// `--discovery.max-ports`: expected ports exported at most.
    max_ports: usize,
    counts: Arc<Counts>,
    started: Instant,
    /// The writer's queue.
    to_writer: SyncSender<Vec<(Expected, u64)>>,
    /// Learnt but not yet taken by the writer (its queue was full).
    unsent: Vec<(Expected, u64)>,
    /// Passes that found the writer stuck or its queue full.
    stalled: u64,
    warned_stall: bool,
}

/// The file, on the writer's thread.
pub struct Writer {
    file: Baseline,
    counts: Arc<Counts>,
    started: Instant,
    queue: Receiver<Vec<(Expected, u64)>>,
    warned_write: bool,
}

impl BaselineState {
    /// Opens the baseline in the state directory (before the owner starts);
    /// without one, the exporter runs without expected ports and says why
    /// once. Returns the owner's part and the writer's.
    pub fn open(settings: &Settings, place: BaselinePlace) -> Option<(BaselineState, Writer)> {
        let dir = match baseline::state_dir(place.state_dir.as_deref()) {
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
        let counts = Arc::new(Counts::default());
        let started = Instant::now();
        let (to_writer, queue) = std::sync::mpsc::sync_channel(QUEUE);
        let owner = BaselineState {
            entries: file.entries().clone(),
            learn: settings.baseline_learn,
            allowlist: place.allowlist,
            changed: None,
            max_ports: settings.max_ports,
            counts: counts.clone(),
            started,
            to_writer,
            unsent: Vec::new(),
            stalled: 0,
            warned_stall: false,
        };
        let writer = Writer {
            file,
            counts,
            started,
            queue,
            warned_write: false,
        };
        writer.note(recovered);
        tracing::info!(
            file = %writer.file.path().display(),
            expected = owner.entries.len(),
            "baseline of expected ports"
        );
        if let Some(why) = writer.file.read_only() {
            tracing::warn!(
                "the baseline is read-only ({why}): it is exported, and what is learnt is kept in memory only"
            );
        }
        if owner.entries.len() > owner.max_ports {
            tracing::warn!(
                expected = owner.entries.len(),
                "more expected ports than {} ({}): the first {1} are exported",
                crate::config::flag("max_ports"),
                owner.max_ports
            );
        }
        Some((owner, writer))
    }

    /// The file as the writer read it (an edit by `portwarden baseline`,
    /// or the result of a write): what is expected from now on, with what
    /// the writer has not taken yet.
    pub fn read(&mut self, read: FileRead) {
        self.entries = read.entries;
        for (p, at) in &self.unsent {
            self.entries.entry(p.clone()).or_insert(*at);
        }
        if read.edited {
            self.changed = Some(Instant::now());
        }
    }

    /// Whether the writer is stuck in one file operation, or its queue is
    /// full: counted once per pass, logged once.
    fn writer_stuck(&mut self, queue_full: bool) {
        let since = self.counts.busy_since.load(Relaxed);
        let busy_for = (since > 0).then(|| {
            self.started
                .elapsed()
                .saturating_sub(Duration::from_millis(since - 1))
        });
        if queue_full || busy_for.is_some_and(|d| d >= STALLED) {
            self.stalled += 1;
            if !std::mem::replace(&mut self.warned_stall, true) {
                tracing::warn!(
                    "the baseline's writer is stuck in a file operation (a slow or hung disk?): learning goes on in memory, and the checks and scrapes are not held up (counted in portwarden_baseline_errors_total{{reason=\"writer_stalled\"}})"
                );
            }
        }
    }

    /// Takes in the ports present now, each with the time since which it
    /// has listened under its present names: learns ports that listened
    /// long enough (handing them to the writer), and says what is expected,
    /// up or not, and what is unexpected. No I/O.
    pub fn observe(&mut self, present: &[(Expected, Instant)]) -> BaselineView {
        let now = Instant::now();
        let here: HashSet<&Expected> = present.iter().map(|(p, _)| p).collect();
        let at = crate::value::time::now();
        for (p, since) in present {
            let since = self.changed.map_or(*since, |c| c.max(*since));
            if !self.entries.contains_key(p) && now.duration_since(since) >= self.learn {
                self.entries.insert(p.clone(), at);
                self.unsent.push((p.clone(), at));
            }
        }
        let mut queue_full = false;
        if !self.unsent.is_empty() {
            match self.to_writer.try_send(std::mem::take(&mut self.unsent)) {
                Ok(()) => {}
                Err(TrySendError::Full(batch)) => {
                    self.unsent = batch;
                    queue_full = true;
                }
                // The writer ended (the engine stops): kept in memory.
                Err(TrySendError::Disconnected(_)) => {}
            }
        }
        self.writer_stuck(queue_full);
        BaselineView {
            expected: self
                .entries
                .keys()
                .take(self.max_ports)
                .map(|p| (p.clone(), here.contains(p)))
                .collect(),
            present: present
                .iter()
                .map(|(p, _)| {
                    let unexpected = !self.entries.contains_key(p)
                        && !self.allowlist.allows(p.proto, p.port, &p.process_name);
                    (p.clone(), unexpected)
                })
                .collect(),
            recovered: self.counts.recovered.load(Relaxed),
            write_errors: self.counts.write_errors.load(Relaxed),
            lock_busy: self.counts.lock_busy.load(Relaxed),
            writer_stalled: self.stalled,
        }
    }
}

impl Writer {
    fn note(&self, recovered: Option<baseline::Recovered>) {
        if let Some(r) = recovered {
            self.counts.recovered.fetch_add(1, Relaxed);
            tracing::error!(
                kept_as = %r.kept_as.display(),
                "the baseline file was unreadable ({}); kept aside, starting a fresh one",
                r.reason
            );
        }
    }

    /// A file operation, timed for the owner to see when it is stuck.
    fn busy<T>(&mut self, op: impl FnOnce(&mut Baseline) -> T) -> T {
        let ms = u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX - 1);
        self.counts.busy_since.store(ms + 1, Relaxed);
        let out = op(&mut self.file);
        self.counts.busy_since.store(0, Relaxed);
        out
    }

    /// Runs until the owner is gone: writes what it learns (what came
    /// while a write was under way goes in the next one), puts a write off
    /// when another process holds the lock, and reads the file again when
    /// someone else changed it, telling the owner.
    pub fn run(mut self, owner: &Outbox) {
        let mut pending: Vec<(Expected, u64)> = Vec::new();
        loop {
            match self.queue.recv_timeout(LOOK_EVERY) {
                Ok(batch) => pending.extend(batch),
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => return,
            }
            while let Ok(batch) = self.queue.try_recv() {
                pending.extend(batch);
            }
            super::supervise::fault("baseline-writer");
            match self.busy(Baseline::reload_if_changed) {
                Ok((true, recovered)) => {
                    self.note(recovered);
                    let read = FileRead {
                        entries: self.file.entries().clone(),
                        edited: true,
                    };
                    if owner.send(Msg::BaselineRead(Box::new(read))).is_err() {
                        return;
                    }
                }
                Ok((false, _)) => {}
                Err(e) => tracing::warn!("cannot re-read the baseline: {e}"),
            }
            if pending.is_empty() {
                continue;
            }
            let batch = std::mem::take(&mut pending);
            let result = self.busy(|file| {
                file.try_update(|entries| {
                    for (p, at) in &batch {
                        entries.entry(p.clone()).or_insert(*at);
                    }
                    true
                })
            });
            match result {
                Ok(recovered) => self.note(recovered),
                Err(baseline::UpdateError::Busy) => {
                    // Another process holds the lock: the next look tries again.
                    self.counts.lock_busy.fetch_add(1, Relaxed);
                    pending = batch;
                    continue;
                }
                Err(e) => {
                    self.counts.write_errors.fetch_add(1, Relaxed);
                    if !std::mem::replace(&mut self.warned_write, true) {
                        tracing::warn!(file = %self.file.path().display(), "cannot write the baseline ({e}); learning goes on in memory (counted in portwarden_baseline_errors_total)");
                    }
                }
            }
            let read = FileRead {
                entries: self.file.entries().clone(),
                edited: false,
            };
            if owner.send(Msg::BaselineRead(Box::new(read))).is_err() {
                return;
            }
        }
    }
}
