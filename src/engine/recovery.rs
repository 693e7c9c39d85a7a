//! Recovery actions at work: after each TCP round, each action looks at the
//! ports it matches (and the expected ports of the baseline that are gone:
//! `down`); `after` rounds in a row in one of its `when` states start an
//! attempt — the command as written, no shell, within its timeout — and
//! the port is then watched for `cooldown`: healthy again is `success`,
//! still unhealthy or a failed command `failed`, a command past its
//! timeout (killed) `timeout`. At most `max_attempts` in `window`; when
//! they run out and the port is still unhealthy, one escalation goes to
//! the webhook. Results go to the state's owner as messages, like every
//! other result. Nothing of a label or a process name is ever in a command.
//! The file is watched by [`crate::reload::watch`], which hands each new
//! version in.

use super::inbox::Outbox;
use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio::time::Instant;

use super::state::Msg;
use super::{Shared, Snapshot};
use crate::actions::{Action, Actions};
use crate::health::Health;
use crate::model::{PortKey, Proto};
use crate::modules::{HttpModule, Module, Prober, Secret};

/// How long the webhook has to take an escalation.
const WEBHOOK_TIMEOUT: Duration = Duration::from_secs(10);

struct Slot {
    action: Arc<Action>,
    /// Rounds in a row with a matching port in a `when` state.
    streak: u32,
    /// Starts of the attempts still in the window.
    attempts: VecDeque<Instant>,
    /// No attempt before this (the cooldown).
    not_before: Option<Instant>,
    running: bool,
    /// Escalated since the port was last healthy.
    escalated: bool,
}

impl Slot {
    fn new(action: Action) -> Slot {
        Slot {
            action: Arc::new(action),
            streak: 0,
            attempts: VecDeque::new(),
            not_before: None,
            running: false,
            escalated: false,
        }
    }
}

/// A port an action matches: where it is, whose, and its health.
type Seen<'a> = (Proto, u16, &'a str, &'a str, Health);

/// What an action sees of a snapshot: each matching port's health (present
/// ports, gone ones kept at `down`, expected ones that do not listen and
/// have no series any more). No allocation: it runs after every round.
fn each<'a>(action: &'a Action, s: &'a Snapshot) -> impl Iterator<Item = Seen<'a>> + 'a {
    let series = s.ports.iter().map(|p| {
        let health = if p.present { p.health } else { Health::Down };
        (
            p.key.proto,
            p.key.port,
            &*p.key.netns,
            &*p.process_name,
            health,
        )
    });
    let gone = s
        .baseline
        .iter()
        .flat_map(|b| b.expected.iter())
        .filter(|(e, up)| {
            !up && s
                .port(&PortKey {
                    proto: e.proto,
                    port: e.port,
                    netns: Arc::clone(&e.netns),
                })
                .is_none()
        })
        .map(|(e, _)| (e.proto, e.port, &*e.netns, &*e.process_name, Health::Down));
    series
        .chain(gone)
        .filter(|(proto, port, netns, process, _)| {
            action.matcher.matches(*proto, *port, process, netns)
        })
}

/// The matching ports described, for the log and the escalation.
fn matching(action: &Action, s: &Snapshot) -> Vec<(String, Health)> {
    each(action, s)
        .map(|(proto, port, netns, process, health)| {
            (
                format!("{}/{port} (netns {netns}, {process})", proto.as_str()),
                health,
            )
        })
        .collect()
}

/// Whether a matching port is in one of the action's `when` states.
fn unhealthy(action: &Action, s: &Snapshot) -> bool {
    each(action, s).any(|seen| action.when.contains(&seen.4))
}

/// Healthy again: some matching port listens, and none is down, hung,
/// unknown or in a `when` state.
fn healthy(action: &Action, s: &Snapshot) -> bool {
    let mut any = false;
    each(action, s).all(|seen| {
        any = true;
        !action.when.contains(&seen.4) && matches!(seen.4, Health::Ok | Health::Slow)
    }) && any
}

/// The TCP round a snapshot comes after.
fn round_of(s: &Snapshot) -> Option<SystemTime> {
    s.telemetry
        .probes
        .iter()
        .find(|(kind, _)| *kind == "tcp")
        .and_then(|(_, stats)| stats.last_round)
}

/// Runs until the owner is gone.
pub async fn run(
    shared: Arc<Shared>,
    owner: Outbox,
    mut reloaded: tokio::sync::mpsc::UnboundedReceiver<Actions>,
    loaded: Actions,
    dry_run: bool,
    destinations: Arc<crate::probe::check::Destinations>,
) {
    let mut updates = shared.subscribe();
    let mut slots: Vec<Slot> = loaded.actions.into_iter().map(Slot::new).collect();
    let mut webhook = loaded.webhook;
    let _ = owner
        .post(Msg::Actions(
            slots
                .iter()
                .map(|s| Arc::from(s.action.name.as_str()))
                .collect(),
        ))
        .await;
    let mut running: JoinSet<(Arc<Action>, &'static str)> = JoinSet::new();
    let mut escalations: JoinSet<()> = JoinSet::new();
    let mut last_round = round_of(&shared.snapshot());
    loop {
        tokio::select! {
            changed = updates.changed() => {
                if changed.is_err() {
                    return;
                }
                let snapshot = Arc::clone(&updates.borrow_and_update());
                let round = round_of(&snapshot);
                if round == last_round {
                    continue;
                }
                last_round = round;
                super::supervise::fault("recovery");
                let now = Instant::now();
                for slot in slots.iter_mut() {
                    let action = Arc::clone(&slot.action);
                    if unhealthy(&action, &snapshot) {
                        slot.streak += 1;
                    } else {
                        slot.streak = 0;
                        if healthy(&action, &snapshot) {
                            slot.escalated = false;
                        }
                        continue;
                    }
                    if slot.running
                        || slot.streak < action.after
                        || slot.not_before.is_some_and(|t| now < t)
                    {
                        continue;
                    }
                    while slot.attempts.front().is_some_and(|t| now.duration_since(*t) >= action.window) {
                        slot.attempts.pop_front();
                    }
                    if slot.attempts.len() as u32 >= action.max_attempts {
                        if !slot.escalated {
                            slot.escalated = true;
                            let ports: Vec<(String, Health)> = matching(&action, &snapshot)
                                .into_iter()
                                .filter(|(_, h)| action.when.contains(h))
                                .collect();
                            tracing::error!(
                                action = %action.name,
                                attempts = slot.attempts.len(),
                                "recovery attempts exhausted and the port is still unhealthy: escalating"
                            );
                            if owner.post(Msg::Escalated(Arc::from(action.name.as_str()))).await.is_err() {
                                return;
                            }
                            if let Some(hook) = webhook.clone() {
                                let attempts = slot.attempts.len();
                                escalations.spawn(escalate(hook, action, attempts, ports, Arc::clone(&destinations)));
                            }
                        }
                        continue;
                    }
                    slot.attempts.push_back(now);
                    slot.not_before = Some(now + action.cooldown);
                    slot.streak = 0;
                    if dry_run {
                        tracing::warn!(
                            action = %action.name,
                            command = ?action.run,
                            "dry run: would run the recovery command ({})", crate::config::flag("actions_dry_run")
                        );
                        if owner.post(Msg::Recovery { action: Arc::from(action.name.as_str()), result: "dry_run", at: SystemTime::now() }).await.is_err() {
                            return;
                        }
                        continue;
                    }
                    slot.running = true;
                    let updates = updates.clone();
                    running.spawn(attempt(action, updates));
                }
            }
            Some(done) = running.join_next(), if !running.is_empty() => {
                match done {
                    Ok((action, result)) => {
                        if let Some(slot) = slots.iter_mut().find(|s| Arc::ptr_eq(&s.action, &action)) {
                            slot.running = false;
                        }
                        if owner.post(Msg::Recovery { action: Arc::from(action.name.as_str()), result, at: SystemTime::now() }).await.is_err() {
                            return;
                        }
                    }
                    Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
                    Err(_) => {}
                }
            }
            Some(done) = escalations.join_next(), if !escalations.is_empty() => {
                // One rule for a panic in any task of ours: its supervisor
                // sees it (503, exit 1), never a silent loss.
                if let Err(e) = done
                    && e.is_panic()
                {
                    std::panic::resume_unwind(e.into_panic());
                }
            }
            Some(new) = reloaded.recv() => {
                // Actions that stay the same keep their counts.
                let mut old: Vec<Slot> = std::mem::take(&mut slots);
                for action in new.actions {
                    let kept = old
                        .iter()
                        .position(|s| *s.action == action)
                        .map(|i| old.swap_remove(i));
                    slots.push(kept.unwrap_or_else(|| Slot::new(action)));
                }
                webhook = new.webhook;
                tracing::info!(actions = slots.len(), "recovery actions in force");
                let _ = owner.post(Msg::Actions(
                    slots.iter().map(|s| Arc::from(s.action.name.as_str())).collect(),
                )).await;
            }
        }
    }
}

/// The most of a command's stderr kept, its last bytes: logged (escaped)
/// when it fails; the rest is read and dropped.
const STDERR_TAIL: usize = 4096;
/// How long a command's stderr is read after it exits, for its last words
/// (a daemon it started may hold the pipe for good).
const STDERR_GRACE: Duration = Duration::from_millis(200);

/// One attempt: the command within its timeout, then up to `cooldown` for
/// the port to be healthy again. The command is judged by its exit status
/// (a script that starts a daemon and exits 0 has succeeded at once,
/// whatever the daemon holds open); it runs in a process group of its own,
/// killed whole at the timeout, so nothing it started outlives a timed-out
/// attempt.
async fn attempt(
    action: Arc<Action>,
    mut updates: watch::Receiver<Arc<Snapshot>>,
) -> (Arc<Action>, &'static str) {
    tracing::warn!(action = %action.name, command = ?action.run, "running a recovery command");
    let started = Instant::now();
    let mut command = tokio::process::Command::new(&action.run[0]);
    command
        .args(&action.run[1..])
        .env_clear()
        .env("PATH", crate::actions::COMMAND_PATH)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true);
    crate::discover::os::own_group(&mut command);
    let mut child = match command.spawn() {
        Ok(child) => child,
        Err(e) => {
            tracing::error!(action = %action.name, error = %e, "the recovery command could not start");
            return (action, "failed");
        }
    };
    let group = child.id();
    let tail = Arc::new(std::sync::Mutex::new(Tail::default()));
    let mut reader = tokio::spawn(read_tail(child.stderr.take(), Arc::clone(&tail)));
    let status = match tokio::time::timeout(action.timeout, child.wait()).await {
        Ok(status) => status,
        Err(_) => {
            if let Some(group) = group {
                crate::discover::os::kill_group(group);
            }
            let _ = child.wait().await;
            tracing::error!(action = %action.name, timeout = ?action.timeout, "the recovery command took too long: killed with its process group");
            return (action, "timeout");
        }
    };
    // Its last words, if the pipe closes soon; a daemon it started may
    // keep it open, and then the reader goes on alone, dropping what comes.
    let _ = tokio::time::timeout(STDERR_GRACE, &mut reader).await;
    let stderr = tail.lock().unwrap_or_else(|e| e.into_inner()).text();
    match status {
        Err(e) => {
            tracing::error!(action = %action.name, error = %e, "the recovery command failed");
            return (action, "failed");
        }
        Ok(status) if !status.success() => {
            tracing::error!(action = %action.name, status = %status, stderr = %stderr, "the recovery command failed");
            return (action, "failed");
        }
        Ok(_) => {}
    }
    let deadline = started + action.cooldown;
    let healthy_again =
        tokio::time::timeout_at(deadline, updates.wait_for(|s| healthy(&action, s))).await;
    match healthy_again {
        Ok(Ok(_)) => {
            tracing::info!(action = %action.name, "recovered: the port is healthy again");
            (action, "success")
        }
        _ => {
            tracing::error!(action = %action.name, "the recovery command ran, and the port is still unhealthy");
            (action, "failed")
        }
    }
}

/// The last [`STDERR_TAIL`] bytes of a command's stderr.
#[derive(Debug, Default)]
struct Tail {
    bytes: std::collections::VecDeque<u8>,
    dropped: u64,
}

impl Tail {
    fn push(&mut self, chunk: &[u8]) {
        self.bytes.extend(chunk);
        let over = self.bytes.len().saturating_sub(STDERR_TAIL);
        self.bytes.drain(..over);
        self.dropped += over as u64;
    }

    /// What is kept, escaped for a log line (control characters and
    /// invalid UTF-8 written out), trimmed.
    fn text(&self) -> String {
        let (a, b) = self.bytes.as_slices();
        let text = String::from_utf8_lossy(&[a, b].concat()).into_owned();
        let escaped: String = text.trim().escape_debug().collect();
        if self.dropped > 0 {
            format!("[{} bytes before] {escaped}", self.dropped)
        } else {
            escaped
        }
    }
}

/// Reads `stderr` to its end, keeping its tail in `tail`.
async fn read_tail(stderr: Option<tokio::process::ChildStderr>, tail: Arc<std::sync::Mutex<Tail>>) {
    use tokio::io::AsyncReadExt;
    let Some(mut stderr) = stderr else {
        return;
    };
    let mut buf = [0u8; 4096];
    while let Ok(n @ 1..) = stderr.read(&mut buf).await {
        tail.lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(&buf[..n]);
    }
}

/// Sends one escalation: a JSON POST, through the same client the checks
/// use (no proxy, no redirect, bounded).
async fn escalate(
    hook: crate::actions::Webhook,
    action: Arc<Action>,
    attempts: usize,
    ports: Vec<(String, Health)>,
    destinations: Arc<crate::probe::check::Destinations>,
) {
    let body = serde_json::json!({
        "source": "portwarden",
        "action": action.name,
        "attempts": attempts,
        "window_seconds": action.window.as_secs(),
        "ports": ports
            .iter()
            .map(|(port, health)| serde_json::json!({"port": port, "health": health.as_str()}))
            .collect::<Vec<_>>(),
        "message": format!(
            "{} recovery attempts of '{}' within {:?} did not make the port healthy",
            attempts, action.name, action.window
        ),
    });
    let module = Module {
        name: "escalate".into(),
        timeout: Some(WEBHOOK_TIMEOUT),
        prober: Prober::Http(Box::new(HttpModule {
            method: "POST".into(),
            headers: vec![("Content-Type".into(), Secret("application/json".into()))],
            body: Some(body.to_string()),
            follow_redirects: false,
            ..HttpModule::default()
        })),
    };
    let report =
        crate::probe::check::run(&hook.endpoint, &module, WEBHOOK_TIMEOUT, &destinations).await;
    if report.success {
        tracing::info!(action = %action.name, webhook = %hook.url, "escalation delivered");
    } else {
        tracing::error!(
            action = %action.name,
            webhook = %hook.url,
            reason = report.reason.map_or("ours", |r| r.as_str()),
            "escalation not delivered"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::baseline::Expected;
    use crate::collectors::Collectors;
    use crate::engine::BaselineView;
    use crate::model::Proto;

    fn action(yaml_match: &str, when: &str) -> Action {
        let text = format!(
            "actions:\n  - name: a\n    match: {yaml_match}\n    when: {when}\n    run: [/bin/true]\n"
        );
        Actions::parse(&text, "a.yml")
            .expect("valid")
            .actions
            .remove(0)
    }

    fn expected(port: u16, up: bool) -> (Expected, bool) {
        (
            Expected {
                proto: Proto::Tcp,
                port,
                netns: Arc::from("host"),
                process_name: Arc::from("web"),
                exe_path: Arc::from("/usr/bin/web"),
            },
            up,
        )
    }

    #[test]
    fn an_expected_port_that_is_gone_counts_as_down() {
        let mut s = Snapshot::empty(Collectors::default());
        s.baseline = Some(Arc::new(BaselineView {
            expected: vec![expected(8080, false), expected(9090, true)],
            present: Vec::new(),
            recovered: 0,
            write_errors: 0,
            lock_busy: 0,
            writer_stalled: 0,
        }));
        let gone = action("{port: 8080}", "[down]");
        assert_eq!(
            matching(&gone, &s),
            [("tcp/8080 (netns host, web)".to_string(), Health::Down)]
        );
        assert!(unhealthy(&gone, &s));
        assert!(!healthy(&gone, &s), "nothing listens: not healthy again");
        // By process name too; and an expected port that listens is no
        // reason (its own series says how it is).
        let by_name = action("{process: 'we*'}", "[down]");
        assert_eq!(matching(&by_name, &s).len(), 1);
        let hung_only = action("{port: 8080}", "[hung]");
        assert!(!unhealthy(&hung_only, &s), "down is not in its when");
    }
}
