//! Limits, end to end: more ports than `--discovery.max-ports` are not all
//! exported, the rest is counted, and memory stays bounded by the cap.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

use common::*;

/// A process holding sockets; killed when dropped, even by a failed test.
struct Binder(Child);

impl Drop for Binder {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A process binding TCP and UDP sockets on every port of `ports` on
/// 127.0.0.1 (a port already taken is skipped); returns it once ready, with
/// how many it bound.
fn bind_range(ports: std::ops::Range<u16>) -> (Binder, usize) {
    let mut child = Command::new("python3")
        .args([
            "-c",
            r#"
import socket, sys, time
keep = []
for port in range(int(sys.argv[1]), int(sys.argv[2])):
    for kind in (socket.SOCK_STREAM, socket.SOCK_DGRAM):
        s = socket.socket(socket.AF_INET, kind)
        try:
            s.bind(("127.0.0.1", port))
            if kind == socket.SOCK_STREAM:
                s.listen(1)
            keep.append(s)
        except OSError:
            s.close()
print(len(keep), flush=True)
time.sleep(3600)
"#,
            &ports.start.to_string(),
            &ports.end.to_string(),
        ])
        .stdout(Stdio::piped())
        .spawn()
        .expect("python3");
    let stdout = child.stdout.take().expect("stdout");
    let child = Binder(child);
    let mut line = String::new();
    BufReader::new(stdout)
        .read_line(&mut line)
        .expect("ready line");
    (child, line.trim().parse().expect("a count"))
}

#[test]
fn past_max_ports_the_cap_is_exported_and_the_rest_counted() {
    // 30,000 sockets: TCP and UDP on 15,000 ports, in two processes (each
    // within the usual 20,000 open files).
    let (_a, bound_a) = bind_range(2000..9500);
    let (_b, bound_b) = bind_range(9500..17000);
    let bound = bound_a + bound_b;
    assert!(bound >= 29_000, "only {bound} sockets bound");

    let exporter = Exporter::start(&[
        ("PORTWARDEN_DISCOVERY_MAX_PORTS", "20000"),
        ("PORT_STATUS_INTERVAL", "3s"),
        ("ENABLE_HTTP_DETECTION", "false"),
    ]);
    // Once every exported TCP port has been checked.
    let series =
        |t: &str| samples(t, "node_tcp_port_alive").len() + samples(t, "node_udp_port_alive").len();
    let text = exporter.wait_for(120, "a full round of checks", |t| series(t) >= 20_000);
    assert_eq!(total(&text, "portwarden_ports"), 20_000.0, "ports exported");
    assert_eq!(total(&text, "portwarden_ports_limit"), 20_000.0);
    let over = total(&text, "portwarden_ports_over_limit");
    // Ours, plus whatever else listens on this host.
    assert!(over >= (bound - 20_000) as f64, "over the limit: {over}");

    // Exactly 20,000 port series in each per-port family.
    assert_eq!(series(&text), 20_000);
    assert_eq!(samples(&text, "portwarden_port_health").len(), 20_000);
    // New ports are admitted in order: every TCP port first, then the
    // lowest UDP ports; the highest UDP ports are the ones left out.
    let has = |family: &str, port: u16| {
        samples(&text, family)
            .iter()
            .any(|(l, _)| l.contains(&format!("port=\"{port}\"")))
    };
    assert!(has("node_tcp_port_alive", 16_999));
    assert!(has("node_udp_port_alive", 2000));
    assert!(!has("node_udp_port_alive", 16_999));

    // The next pass keeps the same ports: a series never flaps for the cap.
    let pid = exporter.pid();
    let runs = |t: &str| total(t, "portwarden_discovery_runs_total");
    let first = runs(&text);
    let later = exporter.wait_for(60, "another pass", |t| runs(t) > first);
    assert_eq!(total(&later, "portwarden_ports"), 20_000.0);
    assert!(
        samples(&later, "node_udp_port_alive")
            .iter()
            .any(|(l, _)| l.contains("port=\"2000\""))
    );
    assert_eq!(series(&later), 20_000);
    assert!(std::path::Path::new(&format!("/proc/{pid}")).exists());
}
