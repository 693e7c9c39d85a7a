//! The engine's supervision and its collectors, end to end: a thread or
//! task that panics (made to, in this debug build, by `PORTWARDEN_FAULT`)
//! makes `/-/healthy` answer 503 naming it and the process exit 1; a
//! stalled discovery makes it 503 while scrapes go on; each collector
//! switched off takes its families with it.

mod common;

use std::time::{Duration, Instant};

use common::{Exporter, Holder, promtool_check, serial};
use serde_json::json;

/// Polls `/-/healthy` until it answers 503; returns its body.
fn wait_unhealthy(exporter: &Exporter, seconds: u64) -> String {
    let deadline = Instant::now() + Duration::from_secs(seconds);
    loop {
        if let Ok((head, body)) = exporter.get("/-/healthy")
            && head.contains(" 503 ")
        {
            return String::from_utf8_lossy(&body).into_owned();
        }
        assert!(Instant::now() < deadline, "never unhealthy in {seconds} s");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_thread_or_task_that_panics_fails_health_and_ends_the_process_with_1() {
    let _serial = serial();
    let listener = Holder::start(&json!({"sockets": [{"proto": "tcp", "addr": "127.0.0.1"}]}));
    // A target, so that the target checks run.
    let dir = common::TempDir::new("engine-targets");
    let targets = dir.0.join("targets.yml");
    std::fs::write(
        &targets,
        format!("targets:\n  - target: '127.0.0.1:{}'\n", listener.port(0)),
    )
    .expect("targets.yml");
    let targets = targets.to_str().expect("utf-8");
    // An action, so that the recovery task runs.
    let actions = dir.0.join("actions.yml");
    std::fs::write(
        &actions,
        "actions:\n  - name: never\n    match: {port: 1}\n    when: [down]\n    run: [/bin/true]\n",
    )
    .expect("actions.yml");
    let actions = actions.to_str().expect("utf-8");
    for (point, name) in [
        ("tcp", "the TCP rounds panicked"),
        ("http", "the HTTP rounds panicked"),
        ("discovery:2", "the discovery panicked"),
        ("owner:3", "the state owner panicked"),
        ("encoder:3", "the encoder panicked"),
        ("target", "the target checks panicked"),
        ("recovery", "the recovery actions panicked"),
        ("baseline-writer:2", "the baseline writer panicked"),
    ] {
        let mut exporter = Exporter::start(&[
            ("PORTWARDEN_FAULT", &format!("panic:{point}")),
            ("PORTWARDEN_TARGETS_FILE", targets),
            ("PORTWARDEN_ACTIONS_FILE", actions),
        ]);
        let body = wait_unhealthy(&exporter, 20);
        assert!(body.contains(name), "{point}: {body}");
        let deadline = Instant::now() + Duration::from_secs(10);
        let status = loop {
            if let Some(status) = exporter.try_wait() {
                break status;
            }
            assert!(Instant::now() < deadline, "{point}: still running");
            std::thread::sleep(Duration::from_millis(50));
        };
        assert_eq!(status.code(), Some(1), "{point}");
    }
}

#[test]
fn without_faults_the_exporter_stays_healthy() {
    let _serial = serial();
    let exporter = Exporter::start(&[]);
    exporter.wait_rounds("tcp", 3, 20);
    let (head, body) = exporter.get("/-/healthy").expect("healthy");
    assert!(head.contains(" 200 "), "{head}");
    assert_eq!(body, b"Healthy\n");
}

#[test]
fn a_stalled_discovery_fails_health_while_scrapes_go_on() {
    let _serial = serial();
    let holder = Holder::start(&json!({"sockets": [{"proto": "tcp", "addr": "127.0.0.1"}]}));
    let port = holder.port(0);
    // Discovery stops at its fourth pass; the interval is 500 ms, so it is
    // stale 1.5 s after the third.
    let mut exporter = Exporter::start(&[("PORTWARDEN_FAULT", "stall:discovery:4")]);
    let text = exporter.wait_for(10, "the port", |t| {
        common::series_value(t, "node_tcp_port_alive", port) == Some(1.0)
    });
    assert!(text.contains("portwarden_discovery_runs_total"), "{text}");
    let body = wait_unhealthy(&exporter, 20);
    assert!(body.contains("discovery is stale"), "{body}");
    // Scrapes still answer, from the last snapshot, and the process runs.
    let text = exporter.scrape();
    assert_eq!(
        common::series_value(&text, "node_tcp_port_alive", port),
        Some(1.0)
    );
    std::thread::sleep(Duration::from_secs(3));
    assert!(
        exporter.try_wait().is_none(),
        "a stale discovery is no exit"
    );
}

#[test]
fn a_failed_discovery_is_tried_again_in_seconds_not_at_the_next_interval() {
    let _serial = serial();
    let holder = Holder::start(&json!({"sockets": [{"proto": "tcp", "addr": "127.0.0.1"}]}));
    let port = holder.port(0);
    // Passes every minute (the default), the first three refused: as a
    // service started at boot finds the OS's socket table not served yet.
    let started = Instant::now();
    let exporter = Exporter::start(&[
        ("PORTWARDEN_FAULT", "fail:discovery:3"),
        ("PORT_STATUS_INTERVAL", "1m"),
        ("PORT_UDP_STATUS_INTERVAL", "1m"),
    ]);
    let text = exporter.wait_for(30, "the port after three failed passes", |t| {
        common::series_value(t, "node_tcp_port_alive", port) == Some(1.0)
    });
    let took = started.elapsed();
    assert!(
        text.contains("portwarden_discovery_errors_total{reason=\"failed\"} 3\n"),
        "{text}"
    );
    // Tried again after 1, 2 and 4 s: not a minute later.
    assert!(took >= Duration::from_secs(7), "{took:?}");
    let (head, _) = exporter.get("/-/healthy").expect("healthy");
    assert!(head.contains(" 200 "), "{head}");
}

/// The families each optional collector writes.
const COLLECTORS: [(&str, &[&str]); 4] = [
    (
        "load",
        &[
            "portwarden_tcp_listen_queue_length",
            "portwarden_tcp_listen_queue_max",
            "portwarden_tcp_listen_drops",
            "portwarden_netns_listen_overflows",
            "portwarden_netns_listen_drops",
            "portwarden_tcp_port_connections",
            "portwarden_tcp_port_peers",
        ],
    ),
    ("health", &["portwarden_port_health"]),
    ("info", &["portwarden_port_info"]),
    (
        "baseline",
        &[
            "portwarden_expected_port_up",
            "portwarden_port_unexpected",
            "portwarden_baseline_ports",
            "portwarden_baseline_errors",
        ],
    ),
];

fn has_family(text: &str, family: &str) -> bool {
    text.lines().any(|l| {
        l.strip_prefix("# TYPE ")
            .and_then(|l| l.split(' ').next())
            .is_some_and(|name| name == family || name == format!("{family}_total"))
    })
}

#[test]
fn each_collector_switched_off_takes_its_families_and_the_rest_stays_valid() {
    let _serial = serial();
    let holder = Holder::start(&json!({"sockets": [
        {"proto": "tcp", "addr": "127.0.0.1"},
        {"proto": "udp", "addr": "127.0.0.1"}
    ]}));
    let port = holder.port(0);
    for (off, families) in COLLECTORS {
        let flag = format!("--no-collector.{off}");
        let exporter = Exporter::start_with(&[&flag], &[]);
        let text = exporter.wait_for(20, "the port checked", |t| {
            common::series_value(t, "node_tcp_port_alive", port) == Some(1.0)
        });
        let said = promtool_check(&text);
        assert!(said.is_empty(), "{flag}: promtool: {said}");
        for family in families {
            assert!(!has_family(&text, family), "{flag}: {family} still there");
        }
        // The others' families stay.
        for (on, theirs) in COLLECTORS.iter().filter(|(name, _)| *name != off) {
            for family in *theirs {
                assert!(has_family(&text, family), "{flag}: {on}'s {family} missing");
            }
        }
        for family in [
            "node_tcp_port_alive",
            "node_udp_port_alive",
            "node_process_alive",
        ] {
            assert!(has_family(&text, family), "{flag}: {family} missing");
        }
    }
}

#[test]
fn the_golden_exposition_passes_promtool() {
    let text = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden/exposition.prom"),
    )
    .expect("golden file");
    let said = promtool_check(&text);
    assert!(said.is_empty(), "promtool: {said}");
}
