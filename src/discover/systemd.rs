//! What systemd knows of a unit, for `portwarden why`: its state
//! (`systemctl show`) and its last log lines (`journalctl -o json`). Both
//! are asked only when systemd runs the host (`/run/systemd/system`, as
//! `sd_booted` tells) and the tools are there; otherwise the answer says
//! why not. Read-only: `show` and the journal, nothing that starts,
//! stops or reloads. The parsers are pure and tested on recorded output.

use std::process::{Command, Stdio};
use std::time::Duration;

use serde::Serialize;

use super::cgroup::Unit;

/// The properties asked of `systemctl show`.
const PROPERTIES: &str = "LoadState,ActiveState,SubState,Result,ExecMainCode,ExecMainStatus,NRestarts,ActiveEnterTimestamp,InactiveEnterTimestamp";

/// The longest either tool may take.
const TIMEOUT: Duration = Duration::from_secs(3);

/// A unit's state as `systemctl show` gives it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct UnitState {
    pub load: String,
    /// `active`, `failed`, `inactive`, `activating`, …
    pub active: String,
    /// `running`, `dead`, `exited`, `auto-restart`, …
    pub sub: String,
    /// `success`, `exit-code`, `signal`, `timeout`, `core-dump`, …
    pub result: String,
    /// How the main process ended, and its status (the exit code or the
    /// signal number).
    pub exit: Option<String>,
    pub restarts: Option<u32>,
    /// When it last became active or inactive, as systemd writes it.
    pub active_since: Option<String>,
    pub inactive_since: Option<String>,
}

impl UnitState {
    /// Parses `systemctl show -p …` output (`Key=value` lines). Pure.
    pub fn parse(text: &str) -> UnitState {
        let mut s = UnitState::default();
        let (mut code, mut status) = (None, None);
        for line in text.lines() {
            let Some((key, value)) = line.split_once('=') else {
                continue;
            };
            let value = value.trim();
            let some = || (!value.is_empty() && value != "n/a").then(|| value.to_string());
            match key {
                "LoadState" => s.load = value.into(),
                "ActiveState" => s.active = value.into(),
                "SubState" => s.sub = value.into(),
                "Result" => s.result = value.into(),
                "ExecMainCode" => code = value.parse::<u32>().ok(),
                "ExecMainStatus" => status = value.parse::<i64>().ok(),
                "NRestarts" => s.restarts = value.parse().ok(),
                "ActiveEnterTimestamp" => s.active_since = some(),
                "InactiveEnterTimestamp" => s.inactive_since = some(),
                _ => {}
            }
        }
        // ExecMainCode is a CLD_* code: 1 exited, 2 killed, 3 dumped.
        s.exit = match (code, status) {
            (Some(1), Some(n)) => Some(format!("exited with status {n}")),
            (Some(2), Some(n)) => Some(format!("killed by signal {n}")),
            (Some(3), Some(n)) => Some(format!("dumped core on signal {n}")),
            _ => None,
        };
        s
    }

    /// One line: `failed (Result: exit-code, exited with status 1, 3 restarts)`.
    pub fn describe(&self) -> String {
        let mut parts = vec![];
        if !self.result.is_empty() && self.result != "success" {
            parts.push(format!("result {}", self.result));
        }
        if let Some(exit) = &self.exit {
            parts.push(exit.clone());
        }
        if let Some(n) = self.restarts.filter(|n| *n > 0) {
            parts.push(format!("{n} restarts"));
        }
        let since = match self.active.as_str() {
            "active" | "activating" | "reloading" => self.active_since.as_deref(),
            _ => self.inactive_since.as_deref(),
        };
        if let Some(t) = since {
            parts.push(format!("since {t}"));
        }
        let state = format!("{} ({})", self.active, self.sub);
        match parts.is_empty() {
            true => state,
            false => format!("{state}, {}", parts.join(", ")),
        }
    }
}

/// One journal entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct JournalLine {
    /// Microseconds since the epoch.
    pub at_us: u64,
    pub priority: Option<u8>,
    pub message: String,
}

/// Parses `journalctl -o json` output: one object a line; a binary
/// `MESSAGE` comes as an array of bytes. Lines that are not entries are
/// skipped. Pure.
pub fn parse_journal(text: &str) -> Vec<JournalLine> {
    text.lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter_map(|v| {
            let at_us = v.get("__REALTIME_TIMESTAMP")?.as_str()?.parse().ok()?;
            let message = match v.get("MESSAGE")? {
                serde_json::Value::String(s) => s.clone(),
                serde_json::Value::Array(bytes) => {
                    let raw: Vec<u8> = bytes
                        .iter()
                        .filter_map(|b| b.as_u64().and_then(|b| u8::try_from(b).ok()))
                        .collect();
                    String::from_utf8_lossy(&raw).into_owned()
                }
                _ => return None,
            };
            let priority = v
                .get("PRIORITY")
                .and_then(|p| p.as_str())
                .and_then(|p| p.parse().ok());
            Some(JournalLine {
                at_us,
                priority,
                message,
            })
        })
        .collect()
}

/// Whether systemd runs this host, as `sd_booted()` tells.
pub fn running() -> Result<(), String> {
    match std::path::Path::new("/run/systemd/system").is_dir() {
        true => Ok(()),
        false => Err("systemd does not run this host (no /run/systemd/system)".into()),
    }
}

/// The arguments that address `unit` (a user's unit through its manager).
fn scope(unit: &Unit) -> Vec<String> {
    match (&unit.user, unit.system.strip_prefix("user@")) {
        (Some(user), Some(rest)) => {
            let uid = rest.trim_end_matches(".service");
            vec![format!("--machine={uid}@"), "--user".into(), user.clone()]
        }
        _ => vec![unit.system.clone()],
    }
}

/// Runs a tool with a deadline; its standard output, or why not.
fn output(program: &str, args: &[String]) -> Result<String, String> {
    let mut child = Command::new(program)
        .args(args)
        .env("SYSTEMD_PAGER", "")
        .env("LC_ALL", "C")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("cannot run {program}: {e}"))?;
    let deadline = std::time::Instant::now() + TIMEOUT;
    loop {
        match child.try_wait() {
            Ok(Some(_)) => break,
            Ok(None) if std::time::Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(10))
            }
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("{program} took longer than {TIMEOUT:?}"));
            }
        }
    }
    let out = child
        .wait_with_output()
        .map_err(|e| format!("{program}: {e}"))?;
    match out.status.success() {
        true => Ok(String::from_utf8_lossy(&out.stdout).into_owned()),
        false => Err(format!("{program} failed ({})", out.status)),
    }
}

/// The unit's state, when systemd can be asked.
pub fn unit_state(unit: &Unit) -> Result<UnitState, String> {
    running()?;
    let mut args = vec!["show".to_string(), "--no-pager".into(), "-p".into()];
    args.push(PROPERTIES.into());
    args.extend(scope(unit));
    output("systemctl", &args).map(|t| UnitState::parse(&t))
}

/// The unit's last `n` log lines, when the journal can be read.
pub fn journal(unit: &Unit, n: usize) -> Result<Vec<JournalLine>, String> {
    running()?;
    let mut args = vec![
        "--no-pager".to_string(),
        "-o".into(),
        "json".into(),
        "-n".into(),
        n.to_string(),
    ];
    match (&unit.user, unit.system.strip_prefix("user@")) {
        (Some(user), Some(_)) => args.extend(["--user-unit".to_string(), user.clone()]),
        _ => args.extend(["-u".to_string(), unit.system.clone()]),
    }
    output("journalctl", &args).map(|t| parse_journal(&t))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `systemctl show -p … nginx.service` of a unit that failed to start,
    /// as systemd 252 writes it.
    const FAILED: &str = "\
LoadState=loaded
ActiveState=failed
SubState=failed
Result=exit-code
ExecMainCode=1
ExecMainStatus=1
NRestarts=5
ActiveEnterTimestamp=Thu 2026-12-03 02:58:11 UTC
InactiveEnterTimestamp=Thu 2026-12-03 03:12:40 UTC
";

    const RUNNING: &str = "\
LoadState=loaded
ActiveState=active
SubState=running
Result=success
ExecMainCode=0
ExecMainStatus=0
NRestarts=0
ActiveEnterTimestamp=Thu 2026-12-03 03:12:41 UTC
InactiveEnterTimestamp=n/a
";

    #[test]
    fn systemctl_show_of_a_failed_and_a_running_unit() {
        let s = UnitState::parse(FAILED);
        assert_eq!((s.active.as_str(), s.sub.as_str()), ("failed", "failed"));
        assert_eq!(s.exit.as_deref(), Some("exited with status 1"));
        assert_eq!(s.restarts, Some(5));
        assert_eq!(
            s.describe(),
            "failed (failed), result exit-code, exited with status 1, 5 restarts, since Thu 2026-12-03 03:12:40 UTC"
        );
        let r = UnitState::parse(RUNNING);
        assert_eq!(r.inactive_since, None);
        assert_eq!(r.exit, None);
        assert_eq!(
            r.describe(),
            "active (running), since Thu 2026-12-03 03:12:41 UTC"
        );
        let killed = UnitState::parse(
            "ActiveState=failed\nSubState=failed\nResult=signal\nExecMainCode=2\nExecMainStatus=9\n",
        );
        assert_eq!(killed.exit.as_deref(), Some("killed by signal 9"));
    }

    #[test]
    fn journalctl_json_lines_with_a_binary_message() {
        // Recorded from `journalctl -u nginx -o json -n 3` (fields trimmed);
        // the third MESSAGE held an invalid UTF-8 byte, so journald wrote bytes.
        let text = r#"{"__REALTIME_TIMESTAMP":"1764731560123456","PRIORITY":"6","_SYSTEMD_UNIT":"nginx.service","MESSAGE":"Started nginx.service - A high performance web server."}
{"__REALTIME_TIMESTAMP":"1764731561000001","PRIORITY":"3","MESSAGE":"nginx: [emerg] bind() to 0.0.0.0:80 failed (98: Address already in use)"}
{"__REALTIME_TIMESTAMP":"1764731562000002","MESSAGE":[111,107,255]}
-- No entries --
"#;
        let lines = parse_journal(text);
        assert_eq!(lines.len(), 3);
        assert_eq!(lines[0].at_us, 1_764_731_560_123_456);
        assert_eq!(lines[1].priority, Some(3));
        assert!(lines[1].message.contains("Address already in use"));
        assert_eq!(lines[2].message, "ok\u{fffd}");
    }

    #[test]
    fn a_user_unit_is_asked_of_its_manager() {
        let unit = Unit {
            system: "user@1000.service".into(),
            user: Some("vite.service".into()),
        };
        assert_eq!(scope(&unit), ["--machine=1000@", "--user", "vite.service"]);
        let system = Unit {
            system: "nginx.service".into(),
            user: None,
        };
        assert_eq!(scope(&system), ["nginx.service"]);
    }
}
