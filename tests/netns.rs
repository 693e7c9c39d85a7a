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
fn the_exporter_checks_namespaced_ports_from_inside_their_namespace() {
    if skip_unless_root() {
        return;
    }
    let ns = TestNetns::new("serve");
    let host = Holder::start(&json!({"sockets": [{"proto": "tcp", "addr": "127.0.0.1"}]}));
    let port = host.port(0);
    // The same port number inside, on the namespace's own loopback: a check
    // from the host's namespace would reach the host's listener instead.
    let inside = Holder::start_in(
        &ns.0,
        &json!({"sockets": [
            {"proto": "tcp", "addr": "127.0.0.1", "port": port},
            {"proto": "udp", "addr": "127.0.0.1"},
        ]}),
    );
    let exporter = Exporter::start(&[
        ("ENABLE_HTTP_DETECTION", "false"),
        ("PORTWARDEN_PORT_RETENTION", "1m"),
    ]);
    let label = ns.label();
    let series = move |t: &str, family: &str, p: u16, netns: &str| -> Option<String> {
        let labels = format!("port=\"{p}\",netns=\"{netns}\"");
        t.lines()
            .find(|l| l.starts_with(&format!("{family}{{")) && l.contains(&labels))
            .and_then(|l| l.rsplit(' ').next().map(str::to_string))
    };
    let (l1, l2) = (label.clone(), label.clone());
    let udp_port = inside.port(1);
    exporter.wait_for(
        15,
        "both listeners alive, each in its namespace",
        move |t| {
            series(t, "node_tcp_port_alive", port, "host").as_deref() == Some("1")
                && series(t, "node_tcp_port_alive", port, &l1).as_deref() == Some("1")
                && series(t, "node_udp_port_alive", udp_port, &l1).as_deref() == Some("1")
        },
    );
    // The namespace's listener goes: its series says so, the host's does not.
    drop(inside);
    let text = exporter.wait_for(15, "the namespaced port at 0", move |t| {
        series(t, "node_tcp_port_alive", port, &l2).as_deref() == Some("0")
    });
    assert!(
        text.lines().any(|l| l.starts_with("node_tcp_port_alive{")
            && l.contains(&format!("port=\"{port}\",netns=\"host\"}} 1"))),
        "{text}"
    );
}
