//! Probe rounds: every `period`, the jobs of one kind of check are read
//! from the latest snapshot, started paced over the interval within one
//! global cap on checks in flight, and each result is sent to the state's
//! owner. Nothing here writes state.

use super::inbox::Outbox;
use std::collections::VecDeque;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::Semaphore;

use super::http_class::HttpClass;
use super::snapshot::{Shared, Snapshot};
use super::state::Msg;
use super::supervise::{Fault, fault};
use crate::config::Settings;
use crate::model::{PortKey, Proto};
use crate::probe;

/// Runs one job of a round to completion and sends its result.
type Check<J> = Arc<dyn Fn(J) -> Pin<Box<dyn Future<Output = ()> + Send>> + Send + Sync>;

/// Whether a job goes ahead, decided from the latest snapshot just before
/// it would start (after the wait for a permit).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Admit {
    Now,
    /// After every other job of this round.
    Later,
    /// Not this round.
    Skip,
}

/// Where a round of one kind of check gets its jobs and how it runs one.
pub struct Round<J> {
    kind: &'static str,
    period: Duration,
    /// The jobs of a round, read from the snapshot at its start.
    jobs: fn(&Snapshot) -> Vec<J>,
    /// Each job's go-ahead, from the snapshot as it is when its turn comes.
    admit: fn(&Snapshot, &J) -> Admit,
    /// Runs one job (permits taken inside) and sends its result.
    check: Check<J>,
    /// The discovery pass the first round waits for.
    first_after: u64,
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

/// Runs rounds of one kind forever: the first after discovery pass
/// `first_after`, then every `period` from the start of the last; each
/// round's starts paced, at most `--probe.concurrency` checks in flight
/// across kinds.
pub async fn run<J: Send + 'static>(
    round: Round<J>,
    spread: bool,
    shared: Arc<Shared>,
    owner: Outbox,
    global: Arc<Semaphore>,
) {
    let mut published = shared.subscribe();
    if published
        .wait_for(|s| s.generation >= round.first_after)
        .await
        .is_err()
    {
        return;
    }
    loop {
        let round_start = tokio::time::Instant::now();
        if fault(round.kind) == Fault::Stall {
            return std::future::pending().await;
        }
        let mut jobs = VecDeque::from((round.jobs)(&shared.snapshot()));
        jobs.shrink_to_fit();
        let gap = pacing(spread, round.period, jobs.len());
        let mut later = Vec::new();
        let mut deferring = true;
        let mut started = 0u32;
        let mut tasks = tokio::task::JoinSet::new();
        loop {
            // A round of 10,000 spread over its interval: the list gives
            // back what it no longer holds as it drains.
            if jobs.capacity() > 1024 && jobs.len() < jobs.capacity() / 4 {
                jobs.shrink_to_fit();
            }
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
            match (round.admit)(&shared.snapshot(), &job) {
                Admit::Now => {}
                Admit::Later if !deferring => {}
                Admit::Later => {
                    later.push(job);
                    continue;
                }
                Admit::Skip => continue,
            }
            let check = (round.check)(job);
            let point = if round.kind == "tcp" {
                "tcp-check"
            } else {
                "http-check"
            };
            tasks.spawn(async move {
                fault(point);
                check.await;
                drop(permit);
            });
            // Finished checks are reaped as we go (a round of 10,000 must
            // not keep 10,000 task records), each seen as at the end.
            while let Some(done) = tasks.try_join_next() {
                reap(done, &shared, round.kind);
            }
            // Each start at its place on the round's schedule: a gap below
            // the timer's millisecond is taken in batches, not rounded up
            // to a millisecond per check (10,000 checks would take 10 s
            // where 2.5 s were meant).
            if !gap.is_zero() {
                started += 1;
                tokio::time::sleep_until(round_start + gap * started).await;
            }
        }
        while let Some(done) = tasks.join_next().await {
            reap(done, &shared, round.kind);
        }
        shared.round_moved(round.kind);
        let seconds = round_start.elapsed().as_secs_f64();
        if owner
            .send(Msg::RoundDone {
                kind: round.kind,
                seconds,
                every: round.period,
            })
            .is_err()
        {
            return;
        }
        tokio::time::sleep_until(round_start + round.period).await;
    }
}

/// A finished check: the round moves (for `/-/healthy`). One that panicked
/// is a bug of ours: the round (and so the process, through its
/// supervisor: `/-/healthy` 503, exit 1) ends rather than go on without it
/// and leave its port's last value standing.
fn reap(done: Result<(), tokio::task::JoinError>, shared: &Shared, kind: &'static str) {
    if let Err(e) = done
        && e.is_panic()
    {
        std::panic::resume_unwind(e.into_panic());
    }
    shared.round_moved(kind);
}

/// One TCP check: the port, where to connect, and how.
type TcpJob = (PortKey, Arc<[SocketAddr]>, probe::Via);

/// TCP: every present TCP port, at its sockets' addresses.
pub fn tcp(settings: &Arc<Settings>, owner: &Outbox) -> Round<TcpJob> {
    let (settings, owner) = (settings.clone(), owner.clone());
    Round {
        kind: "tcp",
        period: settings.status_interval,
        jobs: |s| {
            s.ports
                .iter()
                .filter(|p| p.key.proto == Proto::Tcp && p.present && !p.check.targets.is_empty())
                .filter_map(|p| {
                    Some((
                        p.key.clone(),
                        Arc::clone(&p.check.targets),
                        s.via(&p.key.netns)?,
                    ))
                })
                .collect()
        },
        admit: |_, _| Admit::Now,
        check: Arc::new(move |(key, targets, via)| {
            let (settings, owner) = (settings.clone(), owner.clone());
            Box::pin(async move {
                let outcome = probe::tcp::probe(
                    &targets,
                    &via,
                    settings.check_timeout,
                    settings.max_parallel_ip_checks,
                )
                .await;
                let _ = owner.post(Msg::Tcp { key, outcome }).await;
            })
        }),
        first_after: 1,
    }
}

/// One HTTP check: the port, where to connect, and how to ask.
type HttpJob = (PortKey, SocketAddr, probe::Via, HttpClass);

/// HTTP: ports that answered HTTP are checked every round; the others are
/// asked whether they speak HTTP when due (new ports at once, then with a
/// back-off), never while their accept queue is full, and after the rest
/// of the round while it holds connections not yet accepted.
pub fn http(settings: &Arc<Settings>, owner: &Outbox) -> Round<HttpJob> {
    let (settings, owner) = (settings.clone(), owner.clone());
    let banner_wait = (settings.check_timeout / 4).min(Duration::from_millis(250));
    // HTTP_DETECTION_CONCURRENCY caps requests in flight; the banner wait
    // before one only listens, under the global cap alone.
    let requests = Arc::new(Semaphore::new(settings.http_concurrency));
    Round {
        kind: "http",
        period: settings.http_interval(),
        // After the pass that follows the first TCP round: its connections
        // wait in the queues of listeners that never accept, which that
        // pass sees, so detection passes them over instead of spending a
        // request and a timeout on each.
        first_after: 2,
        jobs: |s| {
            let now = Instant::now();
            let mut jobs: Vec<HttpJob> = s
                .ports
                .iter()
                .filter(|p| p.key.proto == Proto::Tcp && p.present && p.check.http.due(now))
                .filter_map(|p| {
                    let addr = p.address()?;
                    Some((p.key.clone(), addr, s.via(&p.key.netns)?, p.check.http))
                })
                .collect();
            // Liveness of known HTTP ports first, then detection.
            jobs.sort_by_key(|j| !matches!(j.3, HttpClass::Http { .. }));
            jobs
        },
        admit: |s, (key, _, _, class)| {
            if let HttpClass::Http { .. } = class {
                return Admit::Now;
            }
            match s.port(key) {
                Some(p) if !p.present => Admit::Skip,
                // It cannot take our connection: not asked, not a miss.
                Some(p) if p.check.queue_full_passes > 0 => Admit::Skip,
                Some(p) if p.queue.is_some_and(|q| q.current > 0) => Admit::Later,
                Some(_) => Admit::Now,
                None => Admit::Skip,
            }
        },
        check: Arc::new(move |(key, addr, via, class)| {
            let (settings, owner, requests) = (settings.clone(), owner.clone(), requests.clone());
            // A port that answered HTTP waits for its client: no banner wait.
            let wait = match class {
                HttpClass::Http { .. } => Duration::ZERO,
                HttpClass::Unknown { .. } => banner_wait,
            };
            Box::pin(async move {
                let asked = Instant::now();
                let outcome =
                    probe::http::probe(addr, &via, settings.check_timeout, wait, Some(&requests))
                        .await;
                let seconds = asked.elapsed().as_secs_f64();
                let _ = owner
                    .post(Msg::Http {
                        key,
                        outcome,
                        asked,
                        seconds,
                    })
                    .await;
            })
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
