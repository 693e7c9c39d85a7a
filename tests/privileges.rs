//! Least privilege, end to end: as `nobody` with only CAP_SYS_PTRACE and
//! CAP_DAC_READ_SEARCH the exporter names other users' listeners; with no
//! capability at all it still lists and checks every port, names none of
//! root's, and says so in a metric. Root only (setpriv).

mod common;

use common::*;
use serde_json::json;

/// The `node_tcp_port_alive` line of `port`.
fn alive_line(text: &str, port: u16) -> Option<String> {
    let label = format!("port=\"{port}\",netns=\"host\"");
    text.lines()
        .find(|l| l.starts_with("node_tcp_port_alive{") && l.contains(&label))
        .map(str::to_string)
}

/// The sum of `portwarden_discovery_errors_total{reason="fd_denied"}`.
fn fd_denied(text: &str) -> f64 {
    samples(text, "portwarden_discovery_errors_total")
        .iter()
        .filter(|(labels, _)| labels.contains("reason=\"fd_denied\""))
        .map(|(_, v)| v)
        .sum()
}

#[test]
fn nobody_with_ptrace_and_dac_read_search_names_roots_listeners_and_without_degrades() {
    if !is_root() {
        cannot_run("running the exporter as another user needs root (setpriv)");
        return;
    }
    // A root-owned listener.
    let root = Holder::start(&json!({"sockets": [{"proto": "tcp", "addr": "127.0.0.1"}]}));
    let port = root.port(0);
    let env = [("ENABLE_HTTP_DETECTION", "false")];

    let with = Exporter::start_cmd(as_nobody_with(&["sys_ptrace", "dac_read_search"]), &env);
    let text = with.wait_for(15, "the root listener checked", |t| {
        alive_line(t, port).is_some_and(|l| l.ends_with(" 1"))
    });
    let line = alive_line(&text, port).unwrap_or_default();
    assert!(line.contains("process_name=\"python3"), "{line}");
    assert_eq!(fd_denied(&text), 0.0, "{text}");
    drop(with);

    let without = Exporter::start_cmd(as_nobody_with(&[]), &env);
    let text = without.wait_for(15, "the root listener checked", |t| {
        alive_line(t, port).is_some_and(|l| l.ends_with(" 1"))
    });
    // Listed and checked, its owner unknown (written `/`), and the reason
    // counted.
    let line = alive_line(&text, port).unwrap_or_default();
    assert!(line.contains("process_name=\"/\""), "{line}");
    assert!(fd_denied(&text) > 0.0, "{text}");
}
