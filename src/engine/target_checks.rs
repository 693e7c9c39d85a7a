//! Checks by list in the background: each target at its own interval
//! (`interval:` in the file, else `--targets.interval`), never two checks
//! of one target at once, every check within the global cap on checks in
//! flight that the port rounds share. The targets are read from the latest
//! snapshot; results go to the state's owner, which publishes them when
//! the checks in flight are done, and every 5 s while checks keep running
//! (a snapshot of a busy host is encoded at each publish: not once a
//! second for the sake of a target).

use super::inbox::Outbox;
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio::time::Instant;

use super::state::Msg;
use super::targets::same_check;
use super::{Shared, supervise};
use crate::probe::check;
use crate::targets::Job;

/// The scheduler's name in `/-/healthy`.
pub const NAME: &str = "target checks";

/// How often new results are published while checks keep running.
const PUBLISH_EVERY: Duration = Duration::from_secs(5);

/// Runs until the owner is gone. Each loop is O(log n) in the targets:
/// the next checks wait in a heap by time, a target in flight is out of it
/// until its check ends.
pub async fn run(
    shared: Arc<Shared>,
    owner: Outbox,
    global: Arc<Semaphore>,
    interval: Duration,
    timeout: Duration,
    destinations: Arc<check::Destinations>,
) {
    let mut updates = shared.subscribe();
    let mut jobs: Arc<[Arc<Job>]> = Arc::from([]);
    // Where each target of `jobs` is, by name.
    let mut index: HashMap<String, usize> = HashMap::new();
    // The next check of each target not in flight: (when, index in jobs).
    let mut next: BinaryHeap<Reverse<(Instant, usize)>> = BinaryHeap::new();
    let mut in_flight: HashSet<String> = HashSet::new();
    let mut running: JoinSet<(Arc<Job>, Instant, check::Report)> = JoinSet::new();
    let mut unpublished = false;
    let mut publish = tokio::time::interval(PUBLISH_EVERY);
    publish.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let every = |job: &Job| job.target.interval.unwrap_or(interval);
    loop {
        let latest = Arc::clone(&updates.borrow_and_update().by_list.jobs);
        if !Arc::ptr_eq(&latest, &jobs) {
            // New targets: those checked the same way keep their time.
            let mut kept: HashMap<&str, Instant> = HashMap::new();
            for Reverse((at, i)) in next.iter() {
                kept.insert(&jobs[*i].target.name, *at);
            }
            let now = Instant::now();
            let mut heap = BinaryHeap::with_capacity(latest.len());
            for (i, job) in latest.iter().enumerate() {
                if in_flight.contains(&job.target.name) {
                    continue;
                }
                let old = index.get(&job.target.name).map(|&j| &jobs[j]);
                let at = match (old, kept.get(job.target.name.as_str())) {
                    (Some(old), Some(at)) if same_check(old, job) => *at,
                    _ => now,
                };
                heap.push(Reverse((at, i)));
            }
            next = heap;
            index = latest
                .iter()
                .enumerate()
                .map(|(i, j)| (j.target.name.clone(), i))
                .collect();
            jobs = latest;
        }
        // Due checks wait here for a slot of the cap, not as tasks: no more
        // checks exist at a time than the cap lets run.
        let now = Instant::now();
        let due = next.peek().is_some_and(|r| r.0.0 <= now);
        // How far behind we are, for `/-/healthy`: the oldest check due.
        shared.behind(
            NAME,
            next.peek()
                .map(|r| r.0.0)
                .filter(|_| due)
                .map(Instant::into_std),
        );
        let wake = next
            .peek()
            .map_or_else(|| now + Duration::from_secs(3600), |r| r.0.0);
        tokio::select! {
            changed = updates.changed() => {
                if changed.is_err() {
                    return;
                }
            }
            () = tokio::time::sleep_until(wake), if !due => {}
            slot = Arc::clone(&global).acquire_owned(), if due => {
                let Ok(slot) = slot else {
                    return;
                };
                let Some(Reverse((_, i))) = next.pop() else {
                    continue;
                };
                // The next check is an interval after this one starts.
                let started = Instant::now();
                let job = Arc::clone(&jobs[i]);
                in_flight.insert(job.target.name.clone());
                let limit = job
                    .module
                    .timeout
                    .map_or(timeout, |t| t.min(timeout))
                    .min(every(&job));
                let destinations = Arc::clone(&destinations);
                running.spawn(async move {
                    let _slot = slot;
                    supervise::fault("target");
                    let report = check::run(&job.endpoint, &job.module, limit, &destinations).await;
                    (job, started, report)
                });
            }
            Some(done) = running.join_next(), if !running.is_empty() => {
                match done {
                    Ok((job, started, report)) => {
                        in_flight.remove(&job.target.name);
                        // Its next check, if it is still a target (at once
                        // if it changed meanwhile).
                        if let Some(&i) = index.get(&job.target.name) {
                            let at = if same_check(&job, &jobs[i]) {
                                started + every(&jobs[i])
                            } else {
                                Instant::now()
                            };
                            next.push(Reverse((at, i)));
                        }
                        if owner.post(Msg::Target { job, report: Box::new(report) }).await.is_err() {
                            return;
                        }
                        unpublished = true;
                        // The last of a burst: publish now rather than at
                        // the next tick.
                        if running.is_empty() {
                            unpublished = false;
                            if owner.post(Msg::Publish).await.is_err() {
                                return;
                            }
                        }
                    }
                    Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
                    Err(_) => {}
                }
            }
            _ = publish.tick(), if unpublished => {
                unpublished = false;
                if owner.post(Msg::Publish).await.is_err() {
                    return;
                }
            }
        }
    }
}
