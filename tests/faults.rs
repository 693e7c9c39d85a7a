//! Our own limits are never the watched ports' faults: out of file
//! descriptors, the exporter keeps every port's last value and names every
//! owner; `ls` too.

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use serde_json::Value;

fn prlimit(nofile: u32) -> Command {
    let mut cmd = Command::new("prlimit");
    cmd.arg(format!("--nofile={nofile}:{nofile}"))
        .arg("--")
        .arg(bin());
    cmd
}

#[test]
fn out_of_descriptors_no_port_reads_down() {
    let _serial = serial();
    let sim = Sim::start(&[
        "--procs", "1", "--tcp", "200", "--udp", "0", "--fds", "0", "--accept",
    ]);
    let ports = sim.ports();
    let exporter = Exporter::start_cmd(
        prlimit(64),
        &[
            ("PORT_STATUS_INTERVAL", "2s"),
            ("PORTWARDEN_PROBE_SPREAD", "false"),
            ("ENABLE_HTTP_DETECTION", "false"),
        ],
    );
    exporter.wait_for(20, "every port checked", |t| {
        ports
            .iter()
            .all(|&p| series_value(t, "node_tcp_port_alive", p).is_some())
    });
    // A minute of 2 s rounds: every one of them accepts every connection.
    let until = Instant::now() + Duration::from_secs(60);
    let mut scrapes = 0;
    while Instant::now() < until {
        let text = exporter.scrape();
        let down: Vec<u16> = ports
            .iter()
            .copied()
            .filter(|&p| series_value(&text, "node_tcp_port_alive", p) != Some(1.0))
            .collect();
        assert!(down.is_empty(), "read down under nofile=64: {down:?}");
        scrapes += 1;
        std::thread::sleep(Duration::from_millis(500));
    }
    assert!(scrapes > 50);
}

#[test]
fn eleven_hundred_owners_are_all_named_at_an_ordinary_file_limit() {
    let _serial = serial();
    let sim = Sim::start(&[
        "--procs", "1100", "--tcp", "1", "--udp", "0", "--fds", "0", "--accept",
    ]);
    // ls under the common default limit.
    let out = prlimit(1024)
        .args(["ls", "--json", "--tcp"])
        .stderr(Stdio::piped())
        .output()
        .expect("ls");
    assert!(out.status.success(), "{out:?}");
    let list: Vec<Value> = serde_json::from_slice(&out.stdout).expect("json");
    let mut unnamed = Vec::new();
    for s in &sim.sockets {
        let port = s["port"].as_u64().expect("port") as u16;
        let named = entries_for(&list, "tcp", port)
            .iter()
            .any(|e| owner_pids(e).first().map(|&p| u64::from(p)) == s["pid"].as_u64());
        if !named {
            unnamed.push(port);
        }
    }
    assert!(
        unnamed.is_empty(),
        "{} of 1100 without their owner",
        unnamed.len()
    );

    // And the exporter, under the same limit.
    let ports = sim.ports();
    let exporter = Exporter::start_cmd(prlimit(1024), &[("ENABLE_HTTP_DETECTION", "false")]);
    let text = exporter.wait_for(60, "every port checked", |t| {
        ports
            .iter()
            .all(|&p| series_value(t, "node_tcp_port_alive", p).is_some())
    });
    let unnamed: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("node_tcp_port_alive{") && l.contains("process_name=\"/\""))
        .filter(|l| ports.iter().any(|p| l.contains(&format!("port=\"{p}\""))))
        .collect();
    assert!(
        unnamed.is_empty(),
        "{} ports without owner: {:?}",
        unnamed.len(),
        &unnamed[..unnamed.len().min(3)]
    );
}
