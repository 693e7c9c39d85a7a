//! Where events go (`--events.output`): JSON lines to standard output or a
//! file, or journald's native protocol. The writer is a thread of its
//! own: the state's owner hands it each pass's events through a bounded
//! queue and never waits on it, so a stuck disk or a full journal holds up
//! nothing but the writer (what found the queue full is counted as
//! dropped).
//!
//! A file is opened for appending and opened again on SIGHUP (as logrotate
//! expects: rename the file, then send SIGHUP): what was written before the
//! signal is in the renamed file, what comes after in the new one — none
//! lost, none twice.
//!
//! The same writer keeps the exporter's own record of changes in its
//! state directory ([`super::history`]), output or none.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::time::Duration;

use super::history::History;
use super::{Action, Event, journald};
use crate::value::Sink;

/// Batches (a pass's events each) the writer's queue holds.
const QUEUE: usize = 256;

/// How often the writer looks whether it was asked to reopen its file.
const LOOK_EVERY: Duration = Duration::from_millis(200);

/// What the writer counts.
#[derive(Debug, Default)]
pub struct OutputCounts {
    /// Events written.
    pub written: AtomicU64,
    /// Events that found the writer's queue full.
    pub dropped: AtomicU64,
    /// Events a write failed for.
    pub failed: AtomicU64,
}

/// Where the writer writes.
enum Place {
    /// No output: the record alone.
    None,
    Stdout,
    File {
        path: PathBuf,
        file: File,
    },
    Journald {
        socket: crate::discover::os::LocalDatagrams,
        path: PathBuf,
    },
}

/// The writer's end: it owns the place.
pub struct Writer {
    place: Place,
    host: String,
    rx: Receiver<Vec<Event>>,
    reopen: Arc<AtomicBool>,
    counts: Arc<OutputCounts>,
    /// Whether the last write failed (logged once per run of failures).
    failing: bool,
    history: Option<History>,
    /// Whether the last write to the record failed.
    history_failing: bool,
}

/// The owner's end: hands events over without waiting.
#[derive(Debug, Clone)]
pub struct Handle {
    tx: SyncSender<Vec<Event>>,
    pub counts: Arc<OutputCounts>,
    /// Set on SIGHUP: the file is opened again.
    pub reopen: Arc<AtomicBool>,
    /// Whether `--events.output` names a place (else the record alone).
    pub output: bool,
}

impl Handle {
    /// Queues a pass's events; a full queue drops them, counted.
    pub fn send(&self, events: Vec<Event>) {
        if events.is_empty() {
            return;
        }
        let n = events.len() as u64;
        match self.tx.try_send(events) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => {
                if self.counts.dropped.fetch_add(n, Relaxed) == 0 {
                    tracing::warn!("the events writer is behind: events dropped (counted)");
                }
            }
            Err(TrySendError::Disconnected(_)) => {
                self.counts.failed.fetch_add(n, Relaxed);
            }
        }
    }
}

/// Opens the place `sink` names; `journal` is journald's socket; `state`:
/// the state directory to keep the record in (`None`: no record). `None`
/// when there is neither. An error names what could not be opened; a
/// record that cannot be opened is logged and left out.
pub fn open(
    sink: &Sink,
    journal: &Path,
    host: String,
    state: Option<&Path>,
) -> Result<Option<(Handle, Writer)>, String> {
    let history = state.and_then(|dir| match History::open(dir) {
        Ok(h) => Some(h),
        Err(e) => {
            tracing::warn!(
                dir = %dir.display(),
                "cannot keep the record of port changes ({e}): `portwarden why` will not know when a port closed"
            );
            None
        }
    });
    let place = match sink {
        Sink::None if history.is_none() => return Ok(None),
        Sink::None => Place::None,
        Sink::Stdout => Place::Stdout,
        Sink::File(path) => Place::File {
            file: crate::discover::os::open_append(path)
                .map_err(|e| format!("cannot open {}: {e}", path.display()))?,
            path: path.clone(),
        },
        Sink::Journald => {
            let socket = crate::discover::os::LocalDatagrams::new()
                .map_err(|e| format!("a datagram socket: {e}"))?;
            if !journal.exists() {
                return Err(format!(
                    "no journal at {} (is systemd-journald running?)",
                    journal.display()
                ));
            }
            Place::Journald {
                socket,
                path: journal.to_path_buf(),
            }
        }
    };
    let (tx, rx) = std::sync::mpsc::sync_channel(QUEUE);
    let counts = Arc::new(OutputCounts::default());
    let reopen = Arc::new(AtomicBool::new(false));
    Ok(Some((
        Handle {
            tx,
            counts: Arc::clone(&counts),
            reopen: Arc::clone(&reopen),
            output: !matches!(place, Place::None),
        },
        Writer {
            place,
            host,
            rx,
            reopen,
            counts,
            failing: false,
            history,
            history_failing: false,
        },
    )))
}

impl Writer {
    /// Writes what comes until the owner's end is dropped.
    pub fn run(mut self) {
        loop {
            match self.rx.recv_timeout(LOOK_EVERY) {
                Ok(events) => {
                    self.reopen_if_asked();
                    self.write(&events);
                }
                Err(RecvTimeoutError::Timeout) => self.reopen_if_asked(),
                Err(RecvTimeoutError::Disconnected) => return,
            }
        }
    }

    fn reopen_if_asked(&mut self) {
        if !self.reopen.swap(false, Relaxed) {
            return;
        }
        if let Place::File { path, file } = &mut self.place {
            match crate::discover::os::open_append(path) {
                Ok(new) => {
                    *file = new;
                    tracing::info!(path = %path.display(), "events file opened again");
                }
                Err(e) => tracing::warn!(
                    path = %path.display(),
                    "cannot open the events file again ({e}): writing on to the one open"
                ),
            }
        }
    }

    /// The events as JSON lines; `changes`: the start's records left out.
    fn lines(&self, events: &[Event], changes: bool) -> Vec<u8> {
        let mut lines = Vec::with_capacity(events.len() * 512);
        for e in events
            .iter()
            .filter(|e| !changes || e.action != Action::Listening)
        {
            // Serializing a JSON value cannot fail.
            let _ = serde_json::to_writer(&mut lines, &e.to_json(&self.host));
            lines.push(b'\n');
        }
        lines
    }

    fn write(&mut self, events: &[Event]) {
        if self.history.is_some() {
            let lines = self.lines(events, true);
            if let Some(h) = &mut self.history {
                match h.append(&lines) {
                    Ok(()) => self.history_failing = false,
                    Err(e) => {
                        if !self.history_failing {
                            tracing::warn!(
                                "cannot add to the record of port changes ({e}): trying again with the next"
                            );
                        }
                        self.history_failing = true;
                    }
                }
            }
        }
        let n = events.len() as u64;
        let lines = match self.place {
            Place::Stdout | Place::File { .. } => self.lines(events, false),
            _ => Vec::new(),
        };
        let done = match &mut self.place {
            Place::None => return,
            Place::Stdout | Place::File { .. } => match &mut self.place {
                Place::File { file, .. } => file.write_all(&lines),
                _ => {
                    let mut out = std::io::stdout().lock();
                    out.write_all(&lines).and_then(|()| out.flush())
                }
            },
            Place::Journald { socket, path } => {
                // One datagram each: count each.
                let mut last = Ok(());
                for e in events {
                    match socket.send_to(&journald::datagram(e, &self.host), &*path) {
                        Ok(_) => self.counts.written.fetch_add(1, Relaxed),
                        Err(err) => {
                            last = Err(err);
                            self.counts.failed.fetch_add(1, Relaxed)
                        }
                    };
                }
                return self.note(last.map_err(|e| (e, 0)), 0);
            }
        };
        self.note(done.map_err(|e| (e, n)), n);
    }

    /// Counts a write's outcome (`n` events, or the error and how many it
    /// failed), logging the first failure of a run.
    fn note(&mut self, done: Result<(), (std::io::Error, u64)>, n: u64) {
        match done {
            Ok(()) => {
                self.counts.written.fetch_add(n, Relaxed);
                self.failing = false;
            }
            Err((e, failed)) => {
                self.counts.failed.fetch_add(failed, Relaxed);
                if !self.failing {
                    tracing::warn!(
                        "cannot write events ({e}): counted, trying again with the next"
                    );
                }
                self.failing = true;
            }
        }
    }
}
