//! Checks by list in the background: each target at its own interval
//! (`interval:` in the file, else `--targets.interval`), never two checks
//! of one target at once, every check within the global cap on checks in
//! flight that the port rounds share. The targets are read from the latest
//! snapshot; results go to the state's owner, which publishes them at most
//! once a second.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::mpsc::Sender;
use std::time::Duration;

use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio::time::Instant;

use super::state::Msg;
use super::targets::same_check;
use super::{Shared, supervise};
use crate::probe::check;
use crate::targets::Job;

/// How often new results are published, at most.
const PUBLISH_EVERY: Duration = Duration::from_secs(1);

/// Runs until the owner is gone.
pub async fn run(
    shared: Arc<Shared>,
    owner: Sender<Msg>,
    global: Arc<Semaphore>,
    interval: Duration,
    timeout: Duration,
) {
    let mut updates = shared.subscribe();
    let mut jobs: Arc<[Arc<Job>]> = Arc::from([]);
    // Each target's next check, by name.
    let mut due: HashMap<String, (Arc<Job>, Instant)> = HashMap::new();
    let mut running: JoinSet<(Arc<Job>, check::Report)> = JoinSet::new();
    let mut in_flight: HashSet<String> = HashSet::new();
    let mut unpublished = false;
    let mut publish = tokio::time::interval(PUBLISH_EVERY);
    publish.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let latest = Arc::clone(&updates.borrow_and_update().by_list.jobs);
        if !Arc::ptr_eq(&latest, &jobs) {
            jobs = latest;
            let now = Instant::now();
            let mut next = HashMap::with_capacity(jobs.len());
            for job in jobs.iter() {
                let at = match due.remove(&job.target.name) {
                    Some((old, at)) if same_check(&old, job) => at,
                    _ => now,
                };
                next.insert(job.target.name.clone(), (Arc::clone(job), at));
            }
            due = next;
        }
        let wake = due
            .values()
            .filter(|(job, _)| !in_flight.contains(&job.target.name))
            .map(|(_, at)| *at)
            .min()
            .unwrap_or_else(|| Instant::now() + Duration::from_secs(3600));
        tokio::select! {
            changed = updates.changed() => {
                if changed.is_err() {
                    return;
                }
            }
            () = tokio::time::sleep_until(wake) => {
                let now = Instant::now();
                for (name, (job, at)) in due.iter_mut() {
                    if *at > now || in_flight.contains(name) {
                        continue;
                    }
                    let every = job.target.interval.unwrap_or(interval);
                    *at = now + every;
                    in_flight.insert(name.clone());
                    let limit = job
                        .module
                        .timeout
                        .map_or(timeout, |t| t.min(timeout))
                        .min(every);
                    let (job, global) = (Arc::clone(job), Arc::clone(&global));
                    running.spawn(async move {
                        let _slot = global.acquire_owned().await;
                        supervise::fault("target");
                        let report = check::run(&job.endpoint, &job.module, limit).await;
                        (job, report)
                    });
                }
            }
            Some(done) = running.join_next(), if !running.is_empty() => {
                match done {
                    Ok((job, report)) => {
                        in_flight.remove(&job.target.name);
                        if owner.send(Msg::Target { job, report: Box::new(report) }).is_err() {
                            return;
                        }
                        unpublished = true;
                    }
                    Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
                    Err(_) => {}
                }
            }
            _ = publish.tick(), if unpublished => {
                unpublished = false;
                if owner.send(Msg::Publish).is_err() {
                    return;
                }
            }
        }
    }
}
