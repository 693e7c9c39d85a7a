//! Port conflicts made for real: two programs on two stacks of one port, a
//! SO_REUSEPORT pair of two executables, a running process whose executable
//! file is then replaced — each reported once, by `ls`, `ls --json`, the
//! exporter and the status page; and none for one program on both stacks
//! or a multi-worker SO_REUSEPORT server of one executable.

mod common;

use common::*;
use serde_json::{Value, json};

fn tcp(addr: &str, port: u16, reuseport: bool) -> Value {
    json!({"proto": "tcp", "addr": addr, "port": port, "reuseport": reuseport})
}

#[test]
fn each_kind_of_conflict_is_reported_once_and_tidy_services_are_not() {
    let _serial = serial();
    if !is_root() {
        return cannot_run("needs root to see every owner");
    }
    let dir = TempDir::new("conflicts");
    // address: a dev server on [::1] beside a proxy on 0.0.0.0, one port.
    // The proxy first: the kernel's pick is free on every IPv4 address
    // (one picked on ::1 may be some IPv4 client's, and 0.0.0.0 refused).
    let proxy = Holder::start_as(
        &python_named(&dir.0, "proxy"),
        &json!({"sockets": [tcp("0.0.0.0", 0, false)]}),
    );
    let p_address = proxy.port(0);
    let dev = Holder::start_as(
        &python_named(&dir.0, "devserver"),
        &json!({"sockets": [tcp("::1", p_address, false)]}),
    );
    // reuseport: two executables in one group.
    let v1 = Holder::start_as(
        &python_named(&dir.0, "app-v1"),
        &json!({"sockets": [tcp("127.0.0.1", 0, true)]}),
    );
    let p_group = v1.port(0);
    let v2 = Holder::start_as(
        &python_named(&dir.0, "app-v2"),
        &json!({"sockets": [tcp("127.0.0.1", p_group, true)]}),
    );
    // replaced_exe: the file replaced under a running process (as a
    // package upgrade does: a new file renamed over the old).
    let old = python_named(&dir.0, "svc");
    let stale = Holder::start_as(&old, &json!({"sockets": [tcp("127.0.0.1", 0, false)]}));
    let p_stale = stale.port(0);
    let new = python_named(&dir.0, "svc.new");
    std::fs::rename(&new, &old).expect("replace the executable");
    // Tidy: one program on both stacks; one executable's workers in a group.
    let dual = Holder::start(&json!({"sockets": [
        {"proto": "tcp", "addr": "0.0.0.0"},
        {"proto": "tcp", "addr": "::", "port": "previous"}
    ]}));
    let p_dual = dual.port(0);
    let worker = python_named(&dir.0, "worker");
    let w1 = Holder::start_as(&worker, &json!({"sockets": [tcp("127.0.0.1", 0, true)]}));
    let p_workers = w1.port(0);
    let w2 = Holder::start_as(
        &worker,
        &json!({"sockets": [tcp("127.0.0.1", p_workers, true)]}),
    );

    let expected = [
        (p_address, "address"),
        (p_group, "reuseport"),
        (p_stale, "replaced_exe"),
    ];
    let ours = [p_address, p_group, p_stale, p_dual, p_workers];

    // ls --json: each row of a port in conflict says so; tidy ones do not.
    let list = ls_json(&[]);
    for e in &list {
        let port = e["port"].as_u64().expect("port") as u16;
        if !ours.contains(&port) {
            continue;
        }
        let want: Vec<&str> = expected
            .iter()
            .filter(|(p, _)| *p == port)
            .map(|(_, k)| *k)
            .collect();
        assert_eq!(e["conflicts"], json!(want), "port {port}: {e}");
    }
    // ls: one line each on stderr, and the mark in HEALTH.
    let out = run(&["ls", "--tcp"], &[("COLUMNS", "400")]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    for (port, kind) in expected {
        let lines = stderr
            .lines()
            .filter(|l| l.contains(&format!("conflict on tcp port {port} (host): {kind}:")))
            .count();
        assert_eq!(lines, 1, "{kind} on {port} once in:\n{stderr}");
    }
    for port in [p_dual, p_workers] {
        assert!(
            !stderr.contains(&format!("port {port} ")),
            "{port}: {stderr}"
        );
    }
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(
        table.lines().any(
            |l| l.split_whitespace().nth(2) == Some(&*p_group.to_string())
                && l.contains("!reuseport")
        ),
        "{table}"
    );

    // The exporter: one series per port and kind.
    let exporter = Exporter::start(&[("ENABLE_HTTP_DETECTION", "false")]);
    let text = exporter.wait_for(30, "the three conflicts", |t| {
        expected.iter().all(|(p, k)| {
            t.contains(&format!(
                "portwarden_port_conflict{{proto=\"tcp\",port=\"{p}\",netns=\"host\",kind=\"{k}\"}} 1"
            ))
        })
    });
    for port in ours {
        let series = text
            .lines()
            .filter(|l| {
                l.starts_with("portwarden_port_conflict{")
                    && l.contains(&format!("port=\"{port}\""))
            })
            .count();
        let want = expected.iter().filter(|(p, _)| *p == port).count();
        assert_eq!(series, want, "port {port}:\n{text}");
    }
    let (_, page) = exporter.get(&format!("/?q={p_group}")).expect("page");
    let page = String::from_utf8_lossy(&page);
    assert!(page.contains("conflict: reuseport"), "the page marks it");
    drop((exporter, dev, proxy, v1, v2, stale, dual, w1, w2));
}
