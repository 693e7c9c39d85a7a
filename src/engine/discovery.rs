//! The discovery thread: blocking /proc and netlink work. Rediscovers the
//! ports every status interval (a full owner rescan at least every label
//! interval), checks owner processes for liveness in between, and sends
//! each result to the state's owner. A failed pass is tried again after
//! 1 s, then 2, 4… up to the interval.

use super::inbox::Outbox;
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

use super::snapshot::Shared;
use super::state::Msg;
use super::supervise::{Fault, fault};
use crate::config::Settings;
use crate::discover::Discoverer;

/// The first wait after a failed pass; each failure after doubles it, up
/// to the discovery interval.
const RETRY_FIRST: Duration = Duration::from_secs(1);

/// Wakes the discovery thread between passes: to stop, or to refresh now.
#[derive(Debug, Default)]
pub struct Wake {
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
    pub fn stop(&self) {
        // The flags are two booleans: a panic elsewhere leaves them whole.
        self.flags.lock().unwrap_or_else(|e| e.into_inner()).stop = true;
        self.cvar.notify_all();
    }

    pub fn refresh(&self) {
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

/// Runs until stopped (or until the state's owner is gone).
pub fn run(
    settings: &Settings,
    mut discoverer: Discoverer,
    shared: &Shared,
    owner: &Outbox,
    wake: &Wake,
) {
    let every = settings.discovery_interval();
    let now = Instant::now();
    let (mut next_discovery, mut next_full, mut next_procs) =
        (now, now, now + settings.process_interval);
    // After a failed pass, how long until the next try.
    let mut retry: Option<Duration> = None;
    loop {
        let now = Instant::now();
        if now >= next_discovery {
            let fault = fault("discovery");
            if fault == Fault::Stall {
                while wake.wait(Duration::from_secs(3600)) != Woken::Stop {}
                return;
            }
            let full = now >= next_full;
            let pass = if fault == Fault::Fail {
                Err("fault injected".to_string())
            } else if full {
                discoverer.discover_full().map_err(|e| e.to_string())
            } else {
                discoverer.refresh().map_err(|e| e.to_string())
            };
            let (msg, wait) = match pass {
                Ok(d) => {
                    // A fresh owner list is also a process check.
                    next_procs = Instant::now() + settings.process_interval;
                    if full {
                        next_full = Instant::now() + settings.label_interval;
                    }
                    retry = None;
                    let pass = Box::new(d);
                    (Msg::Discovered { pass, full }, every)
                }
                Err(why) => {
                    // What the OS refused at boot (a table not served yet)
                    // it may answer in a moment: tried again soon, then
                    // less often, never less often than the interval —
                    // and a failed full pass is still due.
                    let wait = retry.map_or(RETRY_FIRST, |r| r * 2).min(every);
                    retry = Some(wait);
                    (Msg::DiscoveryFailed(why), wait)
                }
            };
            if owner.send(msg).is_err() {
                return;
            }
            next_discovery = Instant::now() + wait;
        }
        if Instant::now() >= next_procs {
            let verdicts = check_owners(shared, &discoverer);
            if owner.send(Msg::Owners(verdicts)).is_err() {
                return;
            }
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

/// Checks each owner of the latest snapshot by pid and start time: a reused
/// pid is not the owner.
fn check_owners(shared: &Shared, discoverer: &Discoverer) -> Vec<(u32, u64, bool)> {
    let snapshot = shared.snapshot();
    let processes: Vec<(u32, u64)> = snapshot
        .processes
        .iter()
        .map(|p| (p.pid, p.start_time))
        .collect();
    let alive = discoverer.alive(&processes);
    processes
        .into_iter()
        .zip(alive)
        .map(|((pid, start_time), alive)| (pid, start_time, alive))
        .collect()
}
