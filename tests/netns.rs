//! Network namespaces made with `ip netns` (root only): their sockets are
//! discovered with the right `netns` label and owner, beside the host's.

mod common;

use common::*;
use serde_json::json;

fn skip_unless_root() -> bool {
    if !is_root() {
        eprintln!("skipped: creating network namespaces needs root");
        return true;
    }
    false
}

#[test]
fn listeners_in_two_namespaces_and_the_host_each_with_their_label() {
    if skip_unless_root() {
        return;
    }
    let (a, b) = (TestNetns::new("a"), TestNetns::new("b"));
    // The same port number in all three, loopback-only inside the namespaces.
    let host = Holder::start(&json!({"sockets": [{"proto": "tcp", "addr": "127.0.0.1"}]}));
    let port = host.port(0);
    let in_a = Holder::start_in(
        &a.0,
        &json!({"sockets": [{"proto": "tcp", "addr": "127.0.0.1", "port": port}, {"proto": "udp", "addr": "::1"}]}),
    );
    let in_b = Holder::start_in(
        &b.0,
        &json!({"sockets": [{"proto": "tcp", "addr": "0.0.0.0", "port": port}]}),
    );

    let list = ls_json(&["--port", &port.to_string(), "--tcp"]);
    let entry = |h: &Holder| {
        entry_for_inode(&list, h.inode(0))
            .unwrap_or_else(|| panic!("{} not listed: {list:?}", h.pid))
    };
    for (holder, label, address) in [
        (&host, "host".to_string(), "127.0.0.1"),
        (&in_a, a.label(), "127.0.0.1"),
        (&in_b, b.label(), "0.0.0.0"),
    ] {
        let e = entry(holder);
        assert_eq!(e["netns"], label.as_str(), "{e}");
        assert_eq!(e["address"], address);
        assert_eq!(e["port"].as_u64(), Some(u64::from(port)));
        assert_eq!(owner_pids(&e), vec![holder.pid]);
    }
    let udp = entry_for_inode(&ls_json(&["--udp"]), in_a.inode(1)).expect("udp in namespace a");
    assert_eq!(udp["netns"], a.label().as_str());
}

#[test]
fn the_exporter_labels_namespaced_ports_and_never_probes_them_from_outside() {
    if skip_unless_root() {
        return;
    }
    let ns = TestNetns::new("serve");
    let host = Holder::start(&json!({"sockets": [{"proto": "tcp", "addr": "127.0.0.1"}]}));
    let port = host.port(0);
    // Same port number inside: a probe from the host's namespace would
    // reach the host's listener and call this one alive.
    let inside = Holder::start_in(
        &ns.0,
        &json!({"sockets": [
            {"proto": "tcp", "addr": "127.0.0.1", "port": port},
            {"proto": "udp", "addr": "127.0.0.1"},
        ]}),
    );
    let exporter = Exporter::start(&[("ENABLE_HTTP_DETECTION", "false")]);
    let in_ns = format!("port=\"{}\",netns=\"{}\"", inside.port(1), ns.label());
    let text = exporter.wait_for(
        15,
        "the host's port checked and the namespace's UDP port seen",
        |t| {
            series_value(t, "node_tcp_port_alive", port) == Some(1.0)
                && t.lines().any(|l| {
                    l.starts_with("node_udp_port_alive{") && l.contains(&in_ns) && l.ends_with(" 1")
                })
        },
    );
    let tcp_lines: Vec<&str> = text
        .lines()
        .filter(|l| {
            l.starts_with("node_tcp_port_alive{") && l.contains(&format!("port=\"{port}\""))
        })
        .collect();
    assert_eq!(tcp_lines.len(), 1, "{tcp_lines:?}");
    assert!(tcp_lines[0].contains("netns=\"host\""), "{tcp_lines:?}");
}
