//! `portwarden check`: the shell loop of `nc -z` and `curl -f` in one
//! command. Every target is checked once, at most `--concurrency` at a
//! time; one line each, in the order given (✔ or ✘, name, target, time or
//! reason), or a JSON array; the exit status says whether all passed.

use std::io::Write;
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use crate::config::CheckArgs;
use crate::error::Error;
use crate::modules::Modules;
use crate::probe::check::{self, Destinations, Report};
use crate::targets::{self, Job};

/// Runs the checks and prints them; true when all passed. Bad input is an
/// [`Error::Config`] before anything is checked.
pub fn run(args: &CheckArgs, out: &mut dyn Write) -> Result<bool, Error> {
    let jobs = jobs(args)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let reports = runtime.block_on(check_all(
        &jobs,
        args.timeout,
        args.concurrency,
        &Destinations {
            deny: args.probe_deny.0.clone(),
            ..Destinations::default()
        },
    ));
    if args.json {
        let rows: Vec<Row> = jobs.iter().zip(&reports).map(|(j, r)| row(j, r)).collect();
        serde_json::to_writer_pretty(&mut *out, &rows).map_err(std::io::Error::from)?;
        writeln!(out)?;
    } else {
        write_lines(&jobs, &reports, out)?;
    }
    Ok(reports.iter().all(|r| r.success))
}

fn jobs(args: &CheckArgs) -> Result<Vec<Job>, Error> {
    let usage = |id: &str, message: String| Error::Config {
        setting: crate::config::setting(id),
        message,
    };
    let modules = match &args.modules_file {
        Some(path) => {
            let (modules, warnings) = Modules::load(path).map_err(|m| usage("modules_file", m))?;
            for w in warnings {
                eprintln!("portwarden: warning: {w}");
            }
            modules
        }
        None => Modules::builtin(),
    };
    let mut jobs = Vec::new();
    if let Some(path) = &args.file {
        let file = path.display().to_string();
        let text =
            std::fs::read_to_string(path).map_err(|e| usage("file", format!("{file}: {e}")))?;
        let list = targets::parse_file(&text, &file).map_err(|m| usage("file", m))?;
        jobs = targets::bind(list, &modules, &file).map_err(|m| usage("file", m))?;
    }
    let given = targets::from_args(&args.targets).map_err(|m| usage("TARGET", m))?;
    for t in &given {
        if jobs.iter().any(|j| j.target.name == t.name) {
            return Err(usage(
                "TARGET",
                format!("target '{}' is also in the file", t.name),
            ));
        }
    }
    jobs.extend(
        targets::bind(given, &modules, "the command line").map_err(|m| usage("TARGET", m))?,
    );
    if jobs.is_empty() {
        return Err(usage(
            "TARGET",
            "nothing to check: give targets (host:port, a URL, udp://host:port, tls://host:port) or -f FILE".into(),
        ));
    }
    Ok(jobs)
}

/// Checks every job, at most `concurrency` at once; reports in the jobs'
/// order. A check is started only once it has a slot: no more than
/// `concurrency` checks exist at a time, however long the list.
pub async fn check_all(
    jobs: &[Job],
    timeout: Duration,
    concurrency: usize,
    dest: &Destinations,
) -> Vec<Report> {
    let dest = Arc::new(dest.clone());
    let slots = Arc::new(Semaphore::new(concurrency.max(1)));
    let mut running = JoinSet::new();
    let mut reports: Vec<Option<Report>> = vec![None; jobs.len()];
    let mut collect = |done: Result<(usize, Report), tokio::task::JoinError>| match done {
        Ok((i, report)) => reports[i] = Some(report),
        Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
        Err(_) => {}
    };
    for (i, job) in jobs.iter().enumerate() {
        let Ok(slot) = slots.clone().acquire_owned().await else {
            break;
        };
        let (endpoint, module) = (job.endpoint.clone(), job.module.clone());
        let timeout = module.timeout.map_or(timeout, |t| t.min(timeout));
        let dest = Arc::clone(&dest);
        running.spawn(async move {
            let _slot = slot;
            (i, check::run(&endpoint, &module, timeout, &dest).await)
        });
        while let Some(done) = running.try_join_next() {
            collect(done);
        }
    }
    while let Some(done) = running.join_next().await {
        collect(done);
    }
    reports
        .into_iter()
        .map(|r| r.expect("every check reports"))
        .collect()
}

fn write_lines(jobs: &[Job], reports: &[Report], out: &mut dyn Write) -> std::io::Result<()> {
    let names: Vec<String> = jobs
        .iter()
        .map(|j| super::printable(&j.target.name).into_owned())
        .collect();
    let shown: Vec<String> = jobs
        .iter()
        .map(|j| super::printable(&j.target.target).into_owned())
        .collect();
    let same = jobs.iter().all(|j| j.target.name == j.target.target);
    let name_w = names.iter().map(|n| n.chars().count()).max().unwrap_or(0);
    let target_w = shown.iter().map(|n| n.chars().count()).max().unwrap_or(0);
    for (i, r) in reports.iter().enumerate() {
        let mark = if r.success { "✔" } else { "✘" };
        let what = if same {
            format!("{:<name_w$}", names[i])
        } else {
            format!("{:<name_w$}  {:<target_w$}", names[i], shown[i])
        };
        writeln!(out, "{mark} {what}  {}", outcome(r))?;
    }
    Ok(())
}

/// The time it took, or why it failed, and what else is worth a glance.
fn outcome(r: &Report) -> String {
    let ms = r.seconds * 1000.0;
    let mut s = match (r.success, error(r)) {
        (false, Some(error)) => error,
        _ => format!("{ms:.1} ms"),
    };
    if r.success
        && let Some(h) = &r.http
    {
        s.push_str(&format!(", HTTP {}", h.status));
    }
    if let Some(class) = r.udp_class
        && r.success
    {
        s.push_str(&format!(", {class}"));
    }
    if let Some(dates) = r.tls.and_then(|t| t.dates) {
        let now = crate::value::time::now() as i64;
        let days = (dates.not_after - now).div_euclid(86_400);
        s.push_str(&format!(
            ", certificate until {} ({days} days)",
            crate::value::time::date(dates.not_after)
        ));
    }
    s
}

/// A failure in words, after its reason word: `refused: nothing listens
/// on 127.0.0.1:1`; `None` for a success.
fn error(r: &Report) -> Option<String> {
    if r.success {
        return None;
    }
    Some(match (r.reason, r.detail.as_deref()) {
        (Some(reason), Some(detail)) => format!("{}: {detail}", reason.as_str()),
        (Some(reason), None) => reason.as_str().to_string(),
        // Not tried for a lack of ours: the detail says so.
        (None, Some(detail)) => detail.to_string(),
        (None, None) => "failed before it began (the target cannot be read)".into(),
    })
}

/// One check in `--json`.
#[derive(Serialize)]
struct Row<'a> {
    name: &'a str,
    target: &'a str,
    module: &'a str,
    success: bool,
    /// Why it failed: refused, timeout, unreachable, dns, tls,
    /// http_status, no_match, closed, denied.
    reason: Option<&'static str>,
    /// What happened, in words (`refused: nothing listens on
    /// 127.0.0.1:1`); set on every failure.
    error: Option<String>,
    /// Not checked for a lack of our own (descriptors, memory).
    ours: Option<&'static str>,
    seconds: f64,
    ip_protocol: Option<u8>,
    http_status: Option<u16>,
    udp_class: Option<&'static str>,
    tls_version: Option<&'static str>,
    tls_not_before: Option<i64>,
    tls_not_after: Option<i64>,
}

fn row<'a>(job: &'a Job, r: &Report) -> Row<'a> {
    let dates = r.tls.and_then(|t| t.dates);
    Row {
        name: &job.target.name,
        target: &job.target.target,
        module: &job.module.name,
        success: r.success,
        reason: r.reason.map(check::Reason::as_str),
        error: error(r),
        ours: r.ours,
        seconds: r.seconds,
        ip_protocol: r.ip_protocol,
        http_status: r.http.as_ref().map(|h| h.status).filter(|s| *s > 0),
        udp_class: r.udp_class,
        tls_version: r.tls.and_then(|t| t.version),
        tls_not_before: dates.map(|d| d.not_before),
        tls_not_after: dates.map(|d| d.not_after),
    }
}
