//! The baseline of expected ports as the engine keeps it: the file (read
//! again when `portwarden baseline` edits it, written as ports are
//! learnt, never waiting on another process's lock) and since when each
//! present port has listened.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use super::snapshot::BaselineView;
use crate::baseline::{self, Allowlist, Baseline, Expected};
use crate::config::Settings;

/// The baseline as the state's owner keeps it: the file, and since when
/// each present port has listened without a break.
pub struct BaselineState {
    file: Baseline,
    learn: Duration,
    allowlist: Allowlist,
    /// When the file last changed under us (`portwarden baseline`): no
    /// port learns from listening before it (a forgotten port that still
    /// listens is learned anew).
    changed: Option<Instant>,
    recovered: u64,
    write_errors: u64,
    /// Writes put off because another process held the lock.
    lock_busy: u64,
    /// A failed write was logged (once is enough: it is counted).
    warned_write: bool,
    /// `--discovery.max-ports`: expected ports exported at most.
    max_ports: usize,
}

/// Where the baseline is kept (`--state.dir`, a flag every command shares)
/// and the ports it never calls unexpected (`--baseline.allowlist`, read
/// at the start).
#[derive(Debug, Clone, Default)]
pub struct BaselinePlace {
    pub state_dir: Option<std::path::PathBuf>,
    pub allowlist: crate::baseline::Allowlist,
}

impl BaselineState {
    /// Opens the baseline in the state directory; without one, the
    /// exporter runs without expected ports and says why once.
    pub fn open(settings: &Settings, place: BaselinePlace) -> Option<BaselineState> {
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
        let mut b = BaselineState {
            file,
            learn: settings.baseline_learn,
            allowlist: place.allowlist,
            changed: None,
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

    /// Takes in the ports present now, each with the time since which it
    /// has listened under its present names: picks up edits made by `portwarden
    /// baseline`, learns ports that listened long enough, and says what is
    /// expected, up or not, and what is unexpected.
    pub fn observe(&mut self, present: &[(Expected, Instant)]) -> BaselineView {
        let now = Instant::now();
        match self.file.reload_if_changed() {
            Ok((changed, recovered)) => {
                self.note(recovered);
                if changed {
                    self.changed = Some(now);
                }
            }
            Err(e) => tracing::warn!("cannot re-read the baseline: {e}"),
        }
        let here: HashSet<&Expected> = present.iter().map(|(p, _)| p).collect();
        let learned: Vec<Expected> = present
            .iter()
            .filter(|(p, since)| {
                let since = self.changed.map_or(*since, |c| c.max(*since));
                !self.file.contains(p) && now.duration_since(since) >= self.learn
            })
            .map(|(p, _)| p.clone())
            .collect();
        if !learned.is_empty() {
            let at = crate::value::time::now();
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
                .map(|(p, _)| {
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
