//! The part of the state that is checked by list: the targets in force,
//! each one's last result and failures by reason, and the reloads of the
//! files. Pure, like the rest of the state: changed by messages, read as a
//! snapshot.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use super::history::{self, History};
use crate::probe::check::{Reason, Report};
use crate::probe::tls::CertDates;
use crate::targets::Job;
use crate::targets::files::InForce;

/// The last verdict on a target.
#[derive(Debug, Clone, PartialEq)]
pub struct TargetLast {
    pub success: bool,
    pub seconds: f64,
    pub reason: Option<Reason>,
    /// Of the certificates presented at the last check that saw any.
    pub tls: Option<CertDates>,
    pub udp_class: Option<&'static str>,
    pub http_status: Option<u16>,
}

/// One target's series, as published.
#[derive(Debug, Clone)]
pub struct TargetSeries {
    pub job: Arc<Job>,
    /// None until its first check with a verdict.
    pub last: Option<TargetLast>,
    /// By [`Reason::ALL`]'s order.
    pub failures: [u64; Reason::ALL.len()],
    /// Checks not tried for a lack of our own: no verdict, nothing changed.
    pub errors: u64,
    /// When its last check with a verdict ended.
    pub last_check: Option<SystemTime>,
    /// Its last day: a minute with a failed check is `down`.
    pub history: History,
}

/// Reloads of the targets and modules files.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Reloads {
    pub failures: u64,
    pub last_ok: bool,
}

#[derive(Debug, Default)]
pub struct ByList {
    pub in_force: InForce,
    targets: HashMap<Arc<str>, TargetSeries>,
    pub reloads: Reloads,
    /// When a check that failed on our side was last logged.
    our_fault_logged: Option<Instant>,
    /// `--targets.interval`: a target's, unless it has its own.
    default_interval: std::time::Duration,
}

impl ByList {
    /// No targets yet; `default_interval` is `--targets.interval`.
    pub fn new(default_interval: std::time::Duration) -> ByList {
        ByList {
            default_interval,
            ..ByList::default()
        }
    }

    /// New targets and modules: the results of targets still checked the
    /// same way are kept, the others' dropped.
    pub fn replace(&mut self, in_force: InForce) {
        let mut kept = HashMap::with_capacity(in_force.jobs.len());
        for job in in_force.jobs.iter() {
            let name: Arc<str> = Arc::from(job.target.name.as_str());
            let series = match self.targets.remove(&name) {
                Some(old) if same_check(&old.job, job) => TargetSeries {
                    job: Arc::clone(job),
                    ..old
                },
                _ => TargetSeries {
                    job: Arc::clone(job),
                    last: None,
                    failures: [0; Reason::ALL.len()],
                    errors: 0,
                    last_check: None,
                    history: History::carrying(History::carry_for(
                        job.target.interval.unwrap_or(self.default_interval),
                    )),
                },
            };
            kept.insert(name, series);
        }
        self.targets = kept;
        self.in_force = in_force;
        self.reloads.last_ok = true;
    }

    pub fn reload_failed(&mut self) {
        self.reloads.failures += 1;
        self.reloads.last_ok = false;
    }

    /// A check's report; ignored when its target was since removed or
    /// changed. Returns the result as `portwarden_probes` counts it.
    pub fn apply(&mut self, job: &Job, report: &Report) -> Option<&'static str> {
        let series = self.targets.get_mut(job.target.name.as_str())?;
        if !same_check(&series.job, job) {
            return None;
        }
        if let Some(ours) = report.ours {
            series.errors += 1;
            let now = Instant::now();
            if self
                .our_fault_logged
                .is_none_or(|t| now.duration_since(t).as_secs() >= 60)
            {
                tracing::warn!(
                    target = %job.target.name,
                    "a target's check could not be tried ({ours}): its last value is kept"
                );
                self.our_fault_logged = Some(now);
            }
            return Some("error");
        }
        if let Some(reason) = report.reason
            && let Some(i) = Reason::ALL.iter().position(|r| *r == reason)
        {
            series.failures[i] += 1;
        }
        let tls = report.tls.and_then(|t| t.dates).or(series
            .last
            .as_ref()
            .and_then(|l| l.tls)
            .filter(|_| report.tls.is_some()));
        series.last = Some(TargetLast {
            success: report.success,
            seconds: report.seconds,
            reason: report.reason,
            tls,
            udp_class: report.udp_class,
            http_status: report.http.as_ref().map(|h| h.status).filter(|s| *s > 0),
        });
        let at = SystemTime::now();
        series.last_check = Some(at);
        let health = crate::health::of_target(Some(report.success));
        let connected = report.success.then_some(report.seconds);
        series
            .history
            .record(history::minute_of(at), health, connected);
        Some(report.reason.map_or("success", Reason::as_str))
    }

    /// Every target's series, by name.
    pub fn series(&self) -> Vec<TargetSeries> {
        let mut out: Vec<TargetSeries> = self.targets.values().cloned().collect();
        out.sort_by(|a, b| a.job.target.name.cmp(&b.job.target.name));
        out
    }
}

/// Whether two jobs check the same thing the same way (the same target by
/// the same module name, with the same labels).
pub fn same_check(a: &Job, b: &Job) -> bool {
    a.target.same_check(&b.target)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::modules::Modules;
    use crate::probe::check::TlsSeen;

    fn in_force(targets: &[&str]) -> InForce {
        let modules = Modules::builtin();
        let list =
            crate::targets::from_args(&targets.iter().map(|s| s.to_string()).collect::<Vec<_>>())
                .expect("targets");
        let jobs = crate::targets::bind(list, &modules, "test").expect("bind");
        InForce {
            modules: Arc::new(modules),
            jobs: jobs.into_iter().map(Arc::new).collect(),
            from_files: true,
        }
    }

    fn report(success: bool, reason: Option<Reason>) -> Report {
        Report {
            success,
            reason,
            seconds: 0.01,
            ..Report::failed_before_start()
        }
    }

    #[test]
    fn failures_count_by_reason_and_our_faults_keep_the_last_verdict() {
        let mut s = ByList::default();
        s.replace(in_force(&["127.0.0.1:1", "tls://127.0.0.1:2"]));
        let job = Arc::clone(&s.in_force.jobs[0]);
        assert_eq!(s.apply(&job, &report(true, None)), Some("success"));
        assert_eq!(
            s.apply(&job, &report(false, Some(Reason::Refused))),
            Some("refused")
        );
        let mut ours = report(false, None);
        ours.ours = Some("fd_exhausted");
        assert_eq!(s.apply(&job, &ours), Some("error"));
        let series = s.series();
        let t = series
            .iter()
            .find(|t| t.job.target.name == "127.0.0.1:1")
            .expect("series");
        assert_eq!(t.failures[0], 1, "refused once");
        assert_eq!(t.errors, 1);
        let last = t.last.as_ref().expect("a verdict");
        assert!(
            !last.success,
            "the fault of ours did not replace the verdict"
        );
        assert_eq!(last.reason, Some(Reason::Refused));
    }

    #[test]
    fn a_reload_keeps_unchanged_targets_and_drops_the_rest() {
        let mut s = ByList::default();
        s.replace(in_force(&["127.0.0.1:1", "127.0.0.1:2"]));
        let old = Arc::clone(&s.in_force.jobs[1]);
        let mut tls = report(true, None);
        tls.tls = Some(TlsSeen {
            version: Some("TLS 1.3"),
            dates: Some(CertDates {
                not_before: 1,
                not_after: 2,
            }),
        });
        s.apply(&old, &tls);
        s.replace(in_force(&["127.0.0.1:2", "127.0.0.1:3"]));
        let names: Vec<_> = s
            .series()
            .iter()
            .map(|t| t.job.target.name.clone())
            .collect();
        assert_eq!(names, ["127.0.0.1:2", "127.0.0.1:3"]);
        assert!(s.series()[0].last.as_ref().is_some_and(|l| l.tls.is_some()));
        // A late report for a target that is gone changes nothing.
        let gone = in_force(&["127.0.0.1:1"]).jobs[0].clone();
        assert_eq!(s.apply(&gone, &report(false, Some(Reason::Timeout))), None);
        s.reload_failed();
        assert_eq!(
            s.reloads,
            Reloads {
                failures: 1,
                last_ok: false
            }
        );
    }
}
