//! Recovery actions against real processes: a test service killed and
//! restarted by its action (`result="success"`, its port back); an action
//! that cannot help stopping at `max_attempts` with exactly one escalation
//! reaching a local webhook; `--actions.dry-run` running nothing; a bad file
//! refused at the start.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::*;
use serde_json::{Value, json};

/// A service: listens on PORT (accepting and closing), writes its pid to
/// PIDFILE, runs until killed.
const SERVICE: &str = r#"
import os, socket, sys
port, pidfile = int(sys.argv[1]), sys.argv[2]
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", port))
s.listen(16)
open(pidfile, "w").write(str(os.getpid()))
while True:
    c, _ = s.accept()
    c.close()
"#;

/// A webhook: records each POST body, a JSON line each, in FILE.
const WEBHOOK: &str = r#"
import json, sys
from http.server import BaseHTTPRequestHandler, HTTPServer
path = sys.argv[1]
class H(BaseHTTPRequestHandler):
    def log_message(self, *a): pass
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        with open(path, "a") as f:
            f.write(json.dumps({"path": self.path, "type": self.headers.get("Content-Type"), "body": body.decode()}) + "\n")
        self.send_response(202)
        self.send_header("Content-Length", "0")
        self.end_headers()
s = HTTPServer(("127.0.0.1", 0), H)
print(s.server_address[1], flush=True)
s.serve_forever()
"#;

/// The service's pid, from its file, once it has written it.
fn pid_in(file: &Path) -> u32 {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Ok(text) = std::fs::read_to_string(file)
            && let Ok(pid) = text.trim().parse()
        {
            return pid;
        }
        assert!(Instant::now() < deadline, "no pid in {}", file.display());
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn kill(pid: u32) {
    let _ = Command::new("kill")
        .args(["-KILL", &pid.to_string()])
        .status();
}

fn counter(text: &str, line_start: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(line_start))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(-1.0)
}

fn attempts(text: &str, action: &str, result: &str) -> f64 {
    counter(
        text,
        &format!("portwarden_recovery_attempts_total{{action=\"{action}\",result=\"{result}\"}} "),
    )
}

fn escalations(text: &str, action: &str) -> f64 {
    counter(
        text,
        &format!("portwarden_recovery_escalations_total{{action=\"{action}\"}} "),
    )
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).expect("write");
    path
}

#[test]
fn a_killed_service_is_restarted_and_its_port_comes_back() {
    let _one_at_a_time = serial();
    let dir = TempDir::new("recovery-restart");
    let port = free_port();
    let python = which("python3");
    let service = write(&dir.0, "service.py", SERVICE);
    let pidfile = dir.0.join("service.pid");
    // What the action runs: starts the service again, detached.
    let restart = write(
        &dir.0,
        "restart.sh",
        &format!(
            "#!/bin/sh\nrm -f {pid}\nsetsid {py} {svc} {port} {pid} </dev/null >/dev/null 2>&1 &\n",
            pid = pidfile.display(),
            py = python.display(),
            svc = service.display(),
        ),
    );
    let first = Killed(
        Command::new(&python)
            .arg(&service)
            .arg(port.to_string())
            .arg(&pidfile)
            .spawn()
            .expect("service"),
    );
    let first_pid = pid_in(&pidfile);
    let actions = write(
        &dir.0,
        "actions.yml",
        &format!(
            "actions:\n  - name: restart-svc\n    match: {{proto: tcp, port: {port}}}\n    when: [down, hung]\n    after: 2\n    run: [/bin/sh, {}]\n    timeout: 5s\n    max_attempts: 3\n    window: 1h\n    cooldown: 15s\n",
            restart.display()
        ),
    );
    let exporter = Exporter::start_with(
        &["--actions.file", actions.to_str().expect("utf-8")],
        &[("ENABLE_HTTP_DETECTION", "false")],
    );
    let text = exporter.wait_for(15, "the service's port alive", |t| {
        series_value(t, "node_tcp_port_alive", port) == Some(1.0)
    });
    assert_eq!(
        attempts(&text, "restart-svc", "success"),
        0.0,
        "every result from the start"
    );
    assert!(!text.contains("portwarden_recovery_last_attempt_timestamp_seconds{"));

    kill(first_pid);
    drop(first);
    let text = exporter.wait_for(30, "the restart's success", |t| {
        attempts(t, "restart-svc", "success") == 1.0
    });
    assert_eq!(attempts(&text, "restart-svc", "failed"), 0.0, "{text}");
    assert!(
        text.contains("portwarden_recovery_last_attempt_timestamp_seconds{action=\"restart-svc\"}")
    );
    // The port is back, held by the new process.
    let second_pid = pid_in(&pidfile);
    assert_ne!(second_pid, first_pid);
    std::net::TcpStream::connect(("127.0.0.1", port)).expect("the port answers again");
    exporter.wait_for(10, "the port alive again", |t| {
        series_value(t, "node_tcp_port_alive", port) == Some(1.0)
    });
    kill(second_pid);
}

/// A listener of the test's on `port`, seen alive by portwarden, then
/// closed for good.
fn port_that_dies(exporter: &Exporter, port: u16) {
    let holder =
        Holder::start(&json!({"sockets": [{"proto": "tcp", "addr": "127.0.0.1", "port": port}]}));
    exporter.wait_for(15, "the port alive", |t| {
        series_value(t, "node_tcp_port_alive", port) == Some(1.0)
    });
    holder.stop();
}

#[test]
fn an_action_that_cannot_help_stops_at_max_attempts_and_escalates_once() {
    let _one_at_a_time = serial();
    let dir = TempDir::new("recovery-escalate");
    let received = dir.0.join("received.jsonl");
    let mut cmd = Command::new("python3");
    cmd.args(["-c", WEBHOOK]).arg(&received);
    let (_hook, hook_port) = serving(cmd);
    // The port is known before the action exists: it is matched by number.
    let port = free_port();
    let actions = write(
        &dir.0,
        "actions.yml",
        &format!(
            "actions:\n  - name: hopeless\n    match: {{port: {port}}}\n    when: [down]\n    after: 1\n    run: [/bin/true]\n    max_attempts: 2\n    window: 1h\n    cooldown: 1s\nescalate:\n  webhook: http://127.0.0.1:{hook_port}/portwarden\n"
        ),
    );
    let exporter = Exporter::start_with(
        &["--actions.file", actions.to_str().expect("utf-8")],
        &[("ENABLE_HTTP_DETECTION", "false")],
    );
    port_that_dies(&exporter, port);
    let text = exporter.wait_for(30, "the escalation", |t| escalations(t, "hopeless") == 1.0);
    assert_eq!(attempts(&text, "hopeless", "failed"), 2.0, "{text}");
    // Many more rounds: no third attempt, no second escalation.
    let text = exporter.wait_rounds("tcp", 8, 20);
    assert_eq!(attempts(&text, "hopeless", "failed"), 2.0, "{text}");
    assert_eq!(attempts(&text, "hopeless", "success"), 0.0);
    assert_eq!(escalations(&text, "hopeless"), 1.0);
    let deadline = Instant::now() + Duration::from_secs(10);
    let posts: Vec<Value> = loop {
        let posts: Vec<Value> = std::fs::read_to_string(&received)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).expect("JSON line"))
            .collect();
        if !posts.is_empty() || Instant::now() > deadline {
            break posts;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(posts.len(), 1, "exactly one escalation: {posts:?}");
    assert_eq!(posts[0]["path"], "/portwarden");
    assert_eq!(posts[0]["type"], "application/json");
    let body: Value =
        serde_json::from_str(posts[0]["body"].as_str().expect("body")).expect("JSON body");
    assert_eq!(body["action"], "hopeless");
    assert_eq!(body["attempts"], 2);
    assert!(
        body["ports"][0]["port"]
            .as_str()
            .is_some_and(|p| p.starts_with(&format!("tcp/{port} "))),
        "{body}"
    );
    assert_eq!(body["ports"][0]["health"], "down");
}

/// An exporter with one action in dry-run: `touch RAN` when tcp `port`
/// is down.
fn dry_run_on(dir: &Path, ran: &Path, port: u16) -> Exporter {
    let actions = write(
        dir,
        "actions.yml",
        &format!(
            "actions:\n  - name: touch\n    match: {{proto: tcp, port: {port}}}\n    when: [down]\n    after: 1\n    run: [/usr/bin/touch, {}]\n    cooldown: 1s\n",
            ran.display()
        ),
    );
    Exporter::start_with(
        &[
            "--actions.file",
            actions.to_str().expect("utf-8"),
            "--actions.dry-run",
        ],
        &[("ENABLE_HTTP_DETECTION", "false")],
    )
}

#[test]
fn dry_run_logs_and_runs_nothing() {
    let _one_at_a_time = serial();
    let dir = TempDir::new("recovery-dry");
    let ran = dir.0.join("ran");
    // An action for port 1: a port that dies elsewhere does not match it.
    let exporter = dry_run_on(&dir.0, &ran, 1);
    port_that_dies(&exporter, free_port());
    let text = exporter.wait_rounds("tcp", 3, 15);
    assert_eq!(
        attempts(&text, "touch", "dry_run"),
        0.0,
        "nothing matched, nothing to do"
    );
    drop(exporter);
    // Matched: a port that dies, by its number.
    let port = free_port();
    let exporter = dry_run_on(&dir.0, &ran, port);
    port_that_dies(&exporter, port);
    exporter.wait_for(20, "dry runs", |t| attempts(t, "touch", "dry_run") >= 2.0);
    assert!(!ran.exists(), "the command never ran");
}

#[test]
fn a_bad_actions_file_stops_the_start() {
    let dir = TempDir::new("recovery-bad");
    let bad = write(
        &dir.0,
        "actions.yml",
        "actions:\n  - name: a\n    match: {port: 80}\n    when: [down]\n    run: [systemctl, restart, web]\n",
    );
    let out = run(
        &["serve", "--actions.file", bad.to_str().expect("utf-8")],
        &[],
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("--actions.file / PORTWARDEN_ACTIONS_FILE: ")
            && err.contains("actions.yml:2: actions[0].run: 'systemctl' is not an absolute path"),
        "{err}"
    );
}

#[test]
fn the_actions_file_is_reloaded_and_a_broken_one_kept_out() {
    let _one_at_a_time = serial();
    let dir = TempDir::new("recovery-reload");
    let action = |name: &str, port: u16| {
        format!(
            "  - name: {name}\n    match: {{port: {port}}}\n    when: [down]\n    run: [/bin/true]\n"
        )
    };
    let path = write(
        &dir.0,
        "actions.yml",
        &format!("actions:\n{}", action("first", 1)),
    );
    let mut exporter = Exporter::start_with(
        &["--actions.file", path.to_str().expect("utf-8")],
        &[("ENABLE_HTTP_DETECTION", "false")],
    );
    exporter.wait_for(10, "the first action", |t| {
        attempts(t, "first", "success") == 0.0
    });
    // A second action: in force within seconds, the first kept.
    write(
        &dir.0,
        "actions.yml",
        &format!("actions:\n{}{}", action("first", 1), action("second", 2)),
    );
    let t = exporter.wait_for(10, "the second action", |t| {
        attempts(t, "second", "failed") == 0.0
    });
    assert_eq!(attempts(&t, "first", "failed"), 0.0);
    assert_eq!(
        counter(&t, "portwarden_actions_last_reload_successful "),
        1.0
    );
    // A broken file: the two stay, the failed reload counted.
    write(
        &dir.0,
        "actions.yml",
        "actions:\n  - name: x\n    when: [down]\n",
    );
    let t = exporter.wait_for(10, "the failed reload counted", |t| {
        counter(t, "portwarden_actions_reload_failures_total ") == 1.0
            && counter(t, "portwarden_actions_last_reload_successful ") == 0.0
    });
    assert_eq!(attempts(&t, "first", "failed"), 0.0, "{t}");
    assert_eq!(attempts(&t, "second", "failed"), 0.0, "{t}");
    // SIGHUP reads it again: one action left.
    write(
        &dir.0,
        "actions.yml",
        &format!("actions:\n{}", action("third", 3)),
    );
    assert!(
        Command::new("kill")
            .args(["-HUP", &exporter.pid().to_string()])
            .status()
            .expect("kill")
            .success()
    );
    let t = exporter.wait_for(10, "only the third", |t| {
        attempts(t, "third", "failed") == 0.0 && attempts(t, "first", "failed") == -1.0
    });
    assert_eq!(attempts(&t, "second", "failed"), -1.0);
    assert_eq!(
        counter(&t, "portwarden_actions_last_reload_successful "),
        1.0
    );
    assert_eq!(
        counter(&t, "portwarden_actions_reload_failures_total "),
        1.0
    );
    // Made writable by anyone: kept out like a broken file, counted.
    chmod(&path, 0o666);
    let t = exporter.wait_for(10, "the writable file kept out", |t| {
        counter(t, "portwarden_actions_reload_failures_total ") == 2.0
    });
    assert_eq!(attempts(&t, "third", "failed"), 0.0, "{t}");
    assert!(exporter.try_wait().is_none(), "SIGHUP does not end it");
}

fn chmod(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).expect("chmod");
}

/// A file that makes the host run commands must be private: one anyone can
/// write (or whose directory anyone can write, or whose program anyone can
/// write) stops the start, naming it and why; a private one starts.
#[test]
fn an_actions_file_others_can_write_stops_the_start() {
    let dir = TempDir::new("recovery-private");
    let script = write(&dir.0, "fix.sh", "#!/bin/sh\nexit 0\n");
    chmod(&script, 0o755);
    let path = write(
        &dir.0,
        "actions.yml",
        &format!(
            "actions:\n  - name: fix\n    match: {{port: 1}}\n    when: [down]\n    run: [{}]\n",
            script.display()
        ),
    );
    // A taken address: a start that gets past the file fails to bind.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let taken = taken.local_addr().expect("addr").to_string();
    let start = || {
        run(
            &["serve", "--actions.file", path.to_str().expect("utf-8")],
            &[("PORTWARDEN_LISTEN_ADDRESS", taken.as_str())],
        )
    };
    chmod(&path, 0o666);
    let out = start();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("--actions.file / PORTWARDEN_ACTIONS_FILE: ")
            && err.contains(&format!(
                "{} (the file) is writable by anyone (mode 666)",
                path.display()
            )),
        "{err}"
    );
    chmod(&path, 0o600);
    chmod(&script, 0o777);
    let out = start();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("action 'fix' runs")
            && err.contains("fix.sh (the file) is writable by anyone"),
        "{err}"
    );
    chmod(&script, 0o755);
    chmod(&dir.0, 0o777);
    let out = start();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("(its directory) is writable by anyone"),
        "{err}"
    );
    chmod(&dir.0, 0o755);
    // Private: it starts (and fails only to bind the taken address).
    let out = start();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains(&format!("cannot listen on {taken}")), "{err}");
}

/// Processes whose command line contains `needle`.
fn processes_with(needle: &str) -> Vec<u32> {
    std::fs::read_dir("/proc")
        .expect("/proc")
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .map(|c| {
                    String::from_utf8_lossy(&c)
                        .replace('\0', " ")
                        .contains(needle)
                })
                .unwrap_or(false)
        })
        .collect()
}

/// An exporter with one action for tcp `port` when it is down: `run`
/// (a shell command line), within `timeout`, tried once.
fn acting(dir: &Path, port: u16, run: &str, timeout: &str) -> Exporter {
    let actions = write(
        dir,
        "actions.yml",
        &format!(
            "actions:\n  - name: act\n    match: {{proto: tcp, port: {port}}}\n    when: [down]\n    after: 1\n    run: [/bin/sh, -c, {run:?}]\n    timeout: {timeout}\n    max_attempts: 1\n    cooldown: 1s\n"
        ),
    );
    Exporter::start_with(
        &["--actions.file", actions.to_str().expect("utf-8")],
        &[("ENABLE_HTTP_DETECTION", "false")],
    )
}

#[test]
fn a_command_that_floods_stderr_holds_a_few_kilobytes() {
    let _one_at_a_time = serial();
    let dir = TempDir::new("recovery-stderr");
    let port = free_port();
    // 1 GB of stderr, then a failure.
    let exporter = acting(
        &dir.0,
        port,
        "head -c 1000000000 /dev/zero >&2; exit 3",
        "60s",
    );
    exporter.wait_rounds("tcp", 2, 10);
    let before = status_bytes(exporter.pid(), "VmHWM");
    port_that_dies(&exporter, port);
    exporter.wait_for(60, "the attempt failed", |t| {
        attempts(t, "act", "failed") == 1.0
    });
    let after = status_bytes(exporter.pid(), "VmHWM");
    assert!(
        after < before + 10 * 1024 * 1024,
        "peak RSS {before} -> {after} bytes: more than 10 MB for a command's stderr"
    );
}

#[test]
fn a_timed_out_command_leaves_nothing_running() {
    let _one_at_a_time = serial();
    let dir = TempDir::new("recovery-timeout");
    let port = free_port();
    // The shell waits for its child: both are killed, as one group.
    let exporter = acting(&dir.0, port, "sleep 1717; echo done", "1s");
    port_that_dies(&exporter, port);
    exporter.wait_for(20, "the timeout", |t| attempts(t, "act", "timeout") == 1.0);
    let deadline = Instant::now() + Duration::from_secs(5);
    while !processes_with("sleep 1717").is_empty() {
        assert!(
            Instant::now() < deadline,
            "left running after the timeout: {:?}",
            processes_with("sleep 1717")
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn a_command_that_starts_a_daemon_is_judged_by_its_exit() {
    let _one_at_a_time = serial();
    let dir = TempDir::new("recovery-daemon");
    let port = free_port();
    // Exits 0 at once; the daemon it leaves holds stderr open for good.
    let exporter = acting(&dir.0, port, "sleep 1718 & exit 0", "3s");
    port_that_dies(&exporter, port);
    // The daemon does not bring the port back: failed, after the cooldown.
    let t = exporter.wait_for(20, "the attempt's result", |t| {
        attempts(t, "act", "failed") + attempts(t, "act", "success") + attempts(t, "act", "timeout")
            >= 1.0
    });
    assert_eq!(attempts(&t, "act", "timeout"), 0.0, "{t}");
    assert_eq!(attempts(&t, "act", "failed"), 1.0, "{t}");
    let daemons = processes_with("sleep 1718");
    assert!(
        !daemons.is_empty(),
        "the daemon of a command that exited 0 is left alone"
    );
    for pid in daemons {
        kill(pid);
    }
}
