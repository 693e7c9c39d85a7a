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
    let entry = shown(&dir)
        .into_iter()
        .find(|e| e["port"] == port)
        .expect("in the file");
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
        let kept = std::fs::read(dir.0.join("baseline.json.bad")).expect("kept aside");
        assert_eq!(kept, content, "{what}");
        assert!(shown(&dir).iter().any(|e| e["port"] == port), "{what}");
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
