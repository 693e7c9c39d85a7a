//! The baseline of expected ports, end to end: learned, kept across a
//! restart, a killed service reported as expected-but-down, unreadable files
//! kept aside, `portwarden baseline show|accept|forget`.

mod common;

use common::*;
use serde_json::{Value, json};

/// The value of `family`'s series for a TCP `port`, if any.
fn port_value(text: &str, family: &str, port: u16) -> Option<f64> {
    let labels = format!("proto=\"tcp\",port=\"{port}\",netns=\"host\"");
    text.lines()
        .find(|l| l.starts_with(&format!("{family}{{")) && l.contains(&labels))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
}

fn baseline_cmd(dir: &TempDir, args: &[&str]) -> std::process::Output {
    let state = dir.0.to_str().expect("utf-8");
    run(
        &[&["baseline"][..], args].concat(),
        &[("PORTWARDEN_STATE_DIR", state)],
    )
}

/// The file's entry for TCP `port`, once the baseline's writer (a thread
/// of its own, a moment after the port is exported as expected) put it
/// there; waits up to `seconds`.
fn written(dir: &TempDir, port: u16, seconds: u64, what: &str) -> Value {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(seconds);
    loop {
        if let Some(entry) = shown(dir).into_iter().find(|e| e["port"] == port) {
            return entry;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{what}: never in the file"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

fn shown(dir: &TempDir) -> Vec<Value> {
    let out = baseline_cmd(dir, &["show", "--json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("json")
}

#[test]
fn the_baseline_survives_a_restart_and_reports_a_killed_service_until_forgotten() {
    let dir = TempDir::new("baseline");
    let state = dir.0.to_str().expect("utf-8").to_string();
    let env = [
        ("PORTWARDEN_STATE_DIR", state.as_str()),
        ("PORTWARDEN_BASELINE_LEARN", "1s"),
        ("ENABLE_HTTP_DETECTION", "false"),
    ];
    let service = Holder::start(&json!({"sockets": [{"proto": "tcp", "addr": "127.0.0.1"}]}));
    let port = service.port(0);
    let first = Exporter::start(&env);
    let text = first.wait_for(15, "the port learned", |t| {
        port_value(t, "portwarden_expected_port_up", port) == Some(1.0)
    });
    assert_eq!(
        port_value(&text, "portwarden_port_unexpected", port),
        Some(0.0)
    );
    let entry = written(&dir, port, 10, "learnt");
    assert_eq!(entry["proto"], "tcp");
    assert_eq!(entry["netns"], "host");
    assert!(
        entry["process_name"]
            .as_str()
            .is_some_and(|n| n.starts_with("python3"))
    );

    // Reboot: the exporter goes, the service dies, the exporter comes back.
    drop(first);
    drop(service);
    let second = Exporter::start(&env);
    second.wait_for(15, "expected but down", |t| {
        port_value(t, "portwarden_expected_port_up", port) == Some(0.0)
    });

    let out = baseline_cmd(&dir, &["forget", "--port", &port.to_string()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    second.wait_for(15, "forgotten", |t| {
        port_value(t, "portwarden_expected_port_up", port).is_none()
    });
    assert!(!shown(&dir).iter().any(|e| e["port"] == port));
    // Forgetting it again matches nothing: status 1.
    let again = baseline_cmd(&dir, &["forget", "--port", &port.to_string()]);
    assert_eq!(again.status.code(), Some(1));
}

#[test]
fn an_unreadable_baseline_is_kept_aside_and_a_fresh_one_started() {
    let valid = serde_json::to_vec_pretty(&json!({"version": 1, "ports": [
        {"proto": "tcp", "port": 1, "netns": "host", "process_name": "a", "exe_path": "/a", "since": 1},
    ]}))
    .expect("json");
    let truncated = valid[..valid.len() / 2].to_vec();
    let garbage = b"\x00\xffnot a baseline\n".to_vec();
    for (what, content) in [("truncated", truncated), ("garbage", garbage)] {
        let dir = TempDir::new(what);
        std::fs::write(dir.0.join("baseline.json"), &content).expect("write");
        let state = dir.0.to_str().expect("utf-8").to_string();
        let service = Holder::start(&json!({"sockets": [{"proto": "tcp", "addr": "127.0.0.1"}]}));
        let port = service.port(0);
        let exporter = Exporter::start(&[
            ("PORTWARDEN_STATE_DIR", state.as_str()),
            ("PORTWARDEN_BASELINE_LEARN", "1s"),
            ("ENABLE_HTTP_DETECTION", "false"),
        ]);
        let text = exporter.wait_for(15, "a fresh baseline learning", |t| {
            port_value(t, "portwarden_expected_port_up", port) == Some(1.0)
        });
        assert!(
            text.contains("portwarden_baseline_errors_total{reason=\"unreadable\"} 1"),
            "{what}: {text}"
        );
        let kept: Vec<_> = std::fs::read_dir(&dir.0)
            .expect("state dir")
            .flatten()
            .filter(|e| {
                e.file_name()
                    .to_string_lossy()
                    .starts_with("baseline.json.bad.")
            })
            .collect();
        assert_eq!(kept.len(), 1, "{what}");
        assert_eq!(
            std::fs::read(kept[0].path()).expect("kept aside"),
            content,
            "{what}"
        );
        written(&dir, port, 10, what);
    }
}

#[test]
fn ports_are_unexpected_until_accepted_or_allowlisted() {
    let dir = TempDir::new("unexpected");
    let state = dir.0.to_str().expect("utf-8").to_string();
    let service = Holder::start(&json!({"sockets": [
        {"proto": "tcp", "addr": "127.0.0.1"},
        {"proto": "tcp", "addr": "127.0.0.1"},
    ]}));
    let (a, b) = (service.port(0), service.port(1));
    let allowlist = dir.0.join("allow");
    std::fs::write(&allowlist, format!("# allowed\ntcp/{b} python3*\n")).expect("write");
    let allow = allowlist.to_str().expect("utf-8").to_string();
    let exporter = Exporter::start(&[
        ("PORTWARDEN_STATE_DIR", state.as_str()),
        ("PORTWARDEN_BASELINE_ALLOWLIST", allow.as_str()),
        ("ENABLE_HTTP_DETECTION", "false"),
    ]);
    exporter.wait_for(15, "a unexpected, b allowed", |t| {
        port_value(t, "portwarden_port_unexpected", a) == Some(1.0)
            && port_value(t, "portwarden_port_unexpected", b) == Some(0.0)
    });
    let out = baseline_cmd(&dir, &["accept", "--port", &a.to_string()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    exporter.wait_for(15, "a accepted", |t| {
        port_value(t, "portwarden_port_unexpected", a) == Some(0.0)
            && port_value(t, "portwarden_expected_port_up", a) == Some(1.0)
    });
    // Only what was asked for.
    assert!(!shown(&dir).iter().any(|e| e["port"] == b));

    // A bad allowlist is a usage error naming the setting and the line.
    std::fs::write(&allowlist, "tcp:22\n").expect("write");
    let out = run(
        &["serve"],
        &[
            ("PORTWARDEN_BASELINE_ALLOWLIST", allow.as_str()),
            ("PORTWARDEN_STATE_DIR", state.as_str()),
        ],
    );
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("PORTWARDEN_BASELINE_ALLOWLIST") && stderr.contains("line 1"),
        "{stderr}"
    );
}

/// A baseline file expecting `ports` (TCP, host) of `exe` (`svc` when
/// none), as `portwarden baseline` would have written it.
fn baseline_file(dir: &std::path::Path, ports: &[(u16, Option<u32>)]) {
    let entries: Vec<Value> = ports
        .iter()
        .map(|&(port, pid)| {
            let exe = pid.map_or_else(
                || "/usr/bin/svc".to_string(),
                |pid| {
                    let exe = std::fs::read_link(format!("/proc/{pid}/exe")).expect("exe");
                    exe.to_str().expect("utf-8").to_string()
                },
            );
            let name = exe.rsplit('/').next().unwrap_or_default().to_string();
            json!({"proto": "tcp", "port": port, "netns": "host", "process_name": name,
                   "exe_path": exe, "since": 1})
        })
        .collect();
    let text = json!({"version": 1, "ports": entries}).to_string();
    std::fs::write(dir.join("baseline.json"), text).expect("write baseline");
}

/// A read-only bind mount of a directory, undone on drop.
struct ReadOnly(std::path::PathBuf);

impl ReadOnly {
    fn mount(from: &std::path::Path, at: &std::path::Path) -> ReadOnly {
        std::fs::create_dir_all(at).expect("mount point");
        for args in [
            vec![
                "--bind",
                from.to_str().expect("utf-8"),
                at.to_str().expect("utf-8"),
            ],
            vec!["-o", "remount,ro,bind", at.to_str().expect("utf-8")],
        ] {
            let st = std::process::Command::new("mount")
                .args(&args)
                .status()
                .expect("mount");
            assert!(st.success(), "mount {args:?}");
        }
        ReadOnly(at.to_path_buf())
    }
}

impl Drop for ReadOnly {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg(&self.0).status();
    }
}

#[test]
fn a_read_only_state_dir_still_exports_the_expected_ports() {
    if !is_root() {
        cannot_run("a read-only bind mount needs root");
        return;
    }
    let dir = TempDir::new("ro-src");
    let service = Holder::start(&json!({"sockets": [{"proto": "tcp", "addr": "127.0.0.1"}]}));
    let port = service.port(0);
    // One expected port that listens and one that does not.
    let gone = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port();
    baseline_file(&dir.0, &[(port, Some(service.pid)), (gone, None)]);
    let mount = TempDir::new("ro");
    let ro = ReadOnly::mount(&dir.0, &mount.0.join("state"));
    let state = ro.0.to_str().expect("utf-8").to_string();
    let exporter = Exporter::start(&[
        ("PORTWARDEN_STATE_DIR", state.as_str()),
        ("PORTWARDEN_BASELINE_LEARN", "1s"),
        ("ENABLE_HTTP_DETECTION", "false"),
    ]);
    let text = exporter.wait_for(15, "expected ports exported", |t| {
        port_value(t, "portwarden_expected_port_up", port) == Some(1.0)
            && port_value(t, "portwarden_expected_port_up", gone) == Some(0.0)
    });
    assert!(
        text.lines()
            .any(|l| l.starts_with("portwarden_baseline_ports ") && !l.ends_with(" 0")),
        "{text}"
    );
    // What it learns (the exporter's own ports, this test's) cannot be
    // written: counted, and kept in memory as expected.
    let text = exporter.wait_for(15, "a write failed", |t| {
        t.lines().any(|l| {
            l.starts_with("portwarden_baseline_errors_total{reason=\"write_failed\"}")
                && !l.ends_with(" 0")
        })
    });
    let learned = text
        .lines()
        .filter(|l| l.starts_with("portwarden_expected_port_up{"))
        .count();
    assert!(learned > 2, "{text}");
}

#[test]
fn a_state_dir_that_is_a_file_is_a_usage_error() {
    let dir = TempDir::new("notdir");
    let file = dir.0.join("plain");
    std::fs::write(&file, b"").expect("write");
    let mut child = std::process::Command::new(bin())
        .args(["serve", "--web.listen-address", "127.0.0.1:0"])
        .env("PORTWARDEN_STATE_DIR", &file)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while child.try_wait().expect("wait").is_none() {
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("serve started with a state dir that is a file");
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let out = child.wait_with_output().expect("output");
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("PORTWARDEN_STATE_DIR") && stderr.contains("not a directory"),
        "{stderr}"
    );
}

#[test]
fn another_process_holding_the_lock_never_stops_discovery() {
    let dir = TempDir::new("locked");
    // Holds baseline.lock for 8 s, as a long `portwarden baseline` or a
    // backup tool might.
    let mut holder = hold_flock(&dir.0.join("baseline.lock"), 8);
    let state = dir.0.to_str().expect("utf-8").to_string();
    let service = Holder::start(&json!({"sockets": [{"proto": "tcp", "addr": "127.0.0.1"}]}));
    let exporter = Exporter::start(&[
        ("PORTWARDEN_STATE_DIR", state.as_str()),
        ("PORTWARDEN_BASELINE_LEARN", "1s"),
        ("ENABLE_HTTP_DETECTION", "false"),
    ]);
    let stamp = |t: &str| {
        t.lines()
            .find_map(|l| l.strip_prefix("portwarden_last_discovery_timestamp_seconds "))
            .and_then(|v| v.trim().parse::<f64>().ok())
    };
    // Passes go on while the lock is held: the timestamp advances.
    let first =
        stamp(&exporter.wait_for(10, "a discovery", |t| stamp(t).is_some())).expect("stamp");
    exporter.wait_for(4, "discovery going on under the lock", |t| {
        stamp(t).is_some_and(|s| s >= first + 1.0)
    });
    assert!(
        holder.0.try_wait().expect("wait").is_none(),
        "the lock holder ended early"
    );
    // Once free, what was learnt is written.
    let _ = holder.0.wait();
    exporter.wait_for(15, "learnt once the lock is free", |t| {
        port_value(t, "portwarden_expected_port_up", service.port(0)) == Some(1.0)
    });
    // The file's writer retries the write off the owner's thread, once
    // the lock is free (a second at most).
    written(&dir, service.port(0), 10, "learnt once the lock is free");
}

#[test]
fn expected_ports_are_bounded_by_max_ports() {
    let dir = TempDir::new("bounded");
    let ports: Vec<(u16, Option<u32>)> = (40_000..40_050).map(|p| (p, None)).collect();
    baseline_file(&dir.0, &ports);
    let state = dir.0.to_str().expect("utf-8").to_string();
    let exporter = Exporter::start(&[
        ("PORTWARDEN_STATE_DIR", state.as_str()),
        ("PORTWARDEN_DISCOVERY_MAX_PORTS", "10"),
        ("ENABLE_HTTP_DETECTION", "false"),
    ]);
    let text = exporter.wait_for(15, "expected ports exported", |t| {
        t.contains("portwarden_expected_port_up{")
    });
    let series = text
        .lines()
        .filter(|l| l.starts_with("portwarden_expected_port_up{"))
        .count();
    assert!(
        series <= 10,
        "{series} expected-port series with max-ports 10"
    );
}

/// `baseline accept` while another process holds the lock says it waits,
/// then gives up (exit 1) rather than hang in silence.
#[test]
fn accept_says_it_waits_for_a_held_lock_and_gives_up() {
    let dir = TempDir::new("accept-locked");
    let holder = hold_flock(&dir.0.join("baseline.lock"), 30);
    let started = std::time::Instant::now();
    let out = baseline_cmd(&dir, &["accept"]);
    let took = started.elapsed();
    drop(holder);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("waiting for the baseline's lock") && err.contains("held by another process"),
        "{err}"
    );
    assert!(err.contains("gave up"), "{err}");
    assert!(
        took >= std::time::Duration::from_secs(10) && took < std::time::Duration::from_secs(25),
        "{took:?}"
    );
}

/// A value of an unlabelled family, or of one with `labels` (as written).
fn value(text: &str, family: &str, labels: &str) -> Option<f64> {
    let head = if labels.is_empty() {
        format!("{family} ")
    } else {
        format!("{family}{{{labels}}} ")
    };
    text.lines()
        .find_map(|l| l.strip_prefix(&head))
        .and_then(|v| v.trim().parse().ok())
}

#[test]
fn a_stalled_baseline_writer_holds_up_nothing() {
    let dir = TempDir::new("stalled");
    let state = dir.0.to_str().expect("utf-8").to_string();
    let exporter = Exporter::start(&[
        ("PORTWARDEN_STATE_DIR", state.as_str()),
        ("PORTWARDEN_BASELINE_LEARN", "1s"),
        ("PORT_STATUS_INTERVAL", "1s"),
        ("ENABLE_HTTP_DETECTION", "false"),
    ]);
    let round = |t: &str| {
        value(
            t,
            "portwarden_last_probe_round_timestamp_seconds",
            "kind=\"tcp\"",
        )
    };
    exporter.wait_for(10, "a first TCP round", |t| round(t).is_some());
    // A FIFO in place of the file, as a hung disk would: the writer's next
    // look (a stat: the file changed) opens it to read, and waits there
    // until someone writes to it.
    let fifo = dir.0.join("fifo");
    let made = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .expect("mkfifo");
    assert!(made.success());
    std::fs::rename(&fifo, dir.0.join("baseline.json")).expect("the FIFO in place");
    let stalled_at = std::time::Instant::now();
    // A service that starts during the stall is learnt all the same.
    let service = Holder::start(&json!({"sockets": [{"proto": "tcp", "addr": "127.0.0.1"}]}));
    let mut rounds = Vec::new();
    let mut learnt = false;
    while stalled_at.elapsed() < std::time::Duration::from_secs(10) {
        let text = exporter.scrape();
        rounds.push(round(&text).expect("rounds go on"));
        learnt |= port_value(&text, "portwarden_expected_port_up", service.port(0)) == Some(1.0);
        let (status, _) = exporter.get("/-/healthy").expect("healthy");
        assert!(
            status.contains("200"),
            "/-/healthy during the stall: {status}"
        );
        std::thread::sleep(std::time::Duration::from_millis(500));
    }
    let text = exporter.scrape();
    let stalled = value(
        &text,
        "portwarden_baseline_errors_total",
        "reason=\"writer_stalled\"",
    )
    .expect("the writer's stalls are counted");
    // Release the writer: it reads an empty file (kept aside as unreadable).
    std::fs::OpenOptions::new()
        .write(true)
        .open(dir.0.join("baseline.json"))
        .expect("open the FIFO")
        .sync_all()
        .ok();
    // Rounds kept their 1 s interval through the stall: scrapes saw a new
    // round every second or so, never one frozen for the stall's length.
    let advanced = rounds.windows(2).filter(|w| w[1] > w[0]).count();
    let longest_still = rounds.windows(2).map(|w| w[1] - w[0]).fold(0.0, f64::max);
    assert!(
        advanced >= 6,
        "rounds advanced {advanced} times in 10 s: {rounds:?}"
    );
    assert!(
        rounds.last().expect("rounds") - rounds.first().expect("rounds") >= 7.0,
        "rounds froze: {rounds:?} (largest step {longest_still})"
    );
    assert!(learnt, "a port that started during the stall was learnt");
    assert!(stalled >= 1.0, "writer_stalled {stalled}");
    // Once released, the writer catches up: the learnt port reaches the file.
    written(
        &dir,
        service.port(0),
        15,
        "the writer catching up after the stall",
    );
}
