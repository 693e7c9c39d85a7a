//! Network namespaces made with `ip netns` (root only): their sockets are
//! discovered with the right `netns` label and owner, beside the host's.

mod common;

use common::*;
use serde_json::json;

fn skip_unless_root() -> bool {
    if !is_root() {
        cannot_run("creating network namespaces needs root");
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

/// What a port's entry says, but for pids and start times, which depend on
/// the PID namespace that reads them.
fn pidless(entry: &serde_json::Value) -> serde_json::Value {
    let mut e = entry.clone();
    for o in e["owners"].as_array_mut().expect("owners") {
        let o = o.as_object_mut().expect("owner");
        o.remove("pid");
        o.remove("start_time");
    }
    e
}

#[test]
fn run_from_another_namespace_with_the_hosts_proc_reports_what_a_host_run_does() {
    if skip_unless_root() {
        return;
    }
    // Our own PID namespace with its proc mounted aside: PID 1 there sits
    // in the host's network namespace, as the host's /proc at /host/proc
    // looks from a container. Portwarden runs in namespace `pw`.
    let view = ProcView::new();
    let (a, pw) = (TestNetns::new("va"), TestNetns::new("pw"));
    let python = |netns: Option<&str>| match netns {
        None => view.command("python3"),
        Some(ns) => {
            let mut cmd = view.command("ip");
            cmd.args(["netns", "exec", ns, "python3"]);
            cmd
        }
    };
    let host = Holder::spawn(
        python(None),
        &json!({"sockets": [{"proto": "tcp", "addr": "127.0.0.1"}, {"proto": "udp", "addr": "::1"}]}),
    );
    let port = host.port(0);
    let inside = Holder::spawn(
        python(Some(&a.0)),
        &json!({"sockets": [{"proto": "tcp", "addr": "127.0.0.1", "port": port}]}),
    );
    let proc_prefix = view.proc.to_str().expect("utf-8 path").to_string();

    // Without checks: they would change the queues between the two runs.
    let here = ls_json(&["--no-check"]);
    let out = std::process::Command::new("ip")
        .args(["netns", "exec", &pw.0])
        .arg(bin())
        .args(["ls", "--json", "--no-check"])
        .env("PROC_PREFIX", &proc_prefix)
        .env_remove("EXCLUDED_PROCESS_NAMES")
        .output()
        .expect("run portwarden in pw");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let there: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).expect("json");
    for (holder, i, label) in [
        (&host, 0, "host".to_string()),
        (&host, 1, "host".to_string()),
        (&inside, 0, a.label()),
    ] {
        let find = |list: &[serde_json::Value]| {
            entry_for_inode(list, holder.inode(i))
                .unwrap_or_else(|| panic!("socket {i} of {} not listed: {list:?}", holder.pid))
        };
        let (h, t) = (find(&here), find(&there));
        assert_eq!(t["netns"], label.as_str(), "{t}");
        assert_eq!(pidless(&h), pidless(&t));
        // Pids as the proc root numbers them: the holders' own view.
        assert_eq!(owner_pids(&t), vec![holder.pid]);
    }

    let exporter = Exporter::start_in(
        &pw.0,
        &[
            ("PROC_PREFIX", proc_prefix.as_str()),
            ("ENABLE_HTTP_DETECTION", "false"),
            ("PORTWARDEN_PORT_RETENTION", "1m"),
        ],
    );
    let (label, udp_port, host_pid) = (a.label(), host.port(1), host.pid);
    let value = |t: &str, family: &str, p: u16, netns: &str| -> Option<String> {
        let labels = format!("port=\"{p}\",netns=\"{netns}\"");
        t.lines()
            .find(|l| l.starts_with(&format!("{family}{{")) && l.contains(&labels))
            .and_then(|l| l.rsplit(' ').next().map(str::to_string))
    };
    let text = exporter.wait_for(15, "host and namespace ports alive", |t| {
        value(t, "node_tcp_port_alive", port, "host").as_deref() == Some("1")
            && value(t, "node_tcp_port_alive", port, &label).as_deref() == Some("1")
            && value(t, "node_udp_port_alive", udp_port, "host").as_deref() == Some("1")
    });
    let info = format!(
        "portwarden_port_info{{proto=\"tcp\",family=\"ipv4\",address=\"127.0.0.1\",port=\"{port}\",netns=\"host\",pid=\"{host_pid}\","
    );
    assert!(text.lines().any(|l| l.starts_with(&info)), "{info}\n{text}");
    // The host's loopback listener is checked in the host's namespace (not
    // in pw, where nothing listens): it goes to 0 when it closes, and the
    // namespace's stays up.
    drop(host);
    exporter.wait_for(15, "the host's port at 0", |t| {
        value(t, "node_tcp_port_alive", port, "host").as_deref() == Some("0")
            && value(t, "node_tcp_port_alive", port, &label).as_deref() == Some("1")
    });
    drop(inside);
}

/// The capabilities the README promises are enough: other users' owners
/// (CAP_SYS_PTRACE + CAP_DAC_READ_SEARCH) and other namespaces' ports,
/// listed and checked from inside (CAP_SYS_ADMIN), as `nobody` with those
/// three and nothing else.
#[test]
fn nobody_with_the_documented_capabilities_sees_and_checks_everything() {
    if skip_unless_root() {
        return;
    }
    let ns = TestNetns::new("caps");
    let host = Holder::start(&json!({"sockets": [{"proto": "tcp", "addr": "127.0.0.1"}]}));
    let port = host.port(0);
    let inside = Holder::start_in(
        &ns.0,
        &json!({"sockets": [{"proto": "tcp", "addr": "127.0.0.1", "port": port}]}),
    );
    let caps = ["sys_ptrace", "dac_read_search", "sys_admin", "net_admin"];

    let mut cmd = as_nobody_with(&caps);
    let out = cmd
        .args(["ls", "--json", "--port", &port.to_string()])
        .env_remove("PROC_PREFIX")
        .output()
        .expect("setpriv");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(!stderr.contains("warning"), "{stderr}");
    let list: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).expect("json");
    for (holder, label) in [(&host, "host".to_string()), (&inside, ns.label())] {
        let e = entry_for_inode(&list, holder.inode(0)).expect("listed");
        assert_eq!(e["netns"], label.as_str(), "{e}");
        // A root process's owner, read by nobody.
        assert_eq!(owner_pids(&e), vec![holder.pid], "{e}");
        assert_eq!(e["owners"][0]["user"], "root", "{e}");
    }

    let exporter = Exporter::start_cmd(
        as_nobody_with(&caps),
        &[
            ("ENABLE_HTTP_DETECTION", "false"),
            ("PORTWARDEN_PORT_RETENTION", "1m"),
        ],
    );
    let label = ns.label();
    let line = |t: &str, netns: &str| {
        let labels = format!("port=\"{port}\",netns=\"{netns}\"");
        t.lines()
            .find(|l| l.starts_with("node_tcp_port_alive{") && l.contains(&labels))
            .map(str::to_string)
    };
    let text = exporter.wait_for(15, "both ports checked alive", |t| {
        line(t, "host").is_some_and(|l| l.ends_with(" 1"))
            && line(t, &label).is_some_and(|l| l.ends_with(" 1"))
    });
    // A root-owned listener, named by nobody.
    assert!(
        line(&text, "host").is_some_and(|l| l.contains("process_name=\"python3")),
        "{text}"
    );
    assert!(
        !text.contains("result=\"unsupported\""),
        "a check could not enter its namespace:\n{text}"
    );
    drop(inside);
    exporter.wait_for(15, "the namespace's port at 0", |t| {
        line(t, &label).is_some_and(|l| l.ends_with(" 0"))
    });
}

/// Without CAP_SYS_ADMIN, a namespace's ports are still listed (from
/// `/proc/<pid>/net`), but their checks say `unsupported`, never 0.
#[test]
fn without_sys_admin_namespaced_checks_are_unsupported_not_down() {
    if skip_unless_root() {
        return;
    }
    let ns = TestNetns::new("nocap");
    let inside = Holder::start_in(
        &ns.0,
        &json!({"sockets": [{"proto": "tcp", "addr": "127.0.0.1"}]}),
    );
    let port = inside.port(0);
    let exporter = Exporter::start_cmd(
        as_nobody_with(&["sys_ptrace", "dac_read_search"]),
        &[("ENABLE_HTTP_DETECTION", "false")],
    );
    let label = ns.label();
    let text = exporter.wait_for(15, "an unsupported check", |t| {
        t.lines()
            .any(|l| l.starts_with("portwarden_probes_total{kind=\"tcp\",result=\"unsupported\"}"))
    });
    let listed = format!("port=\"{port}\",netns=\"{label}\"");
    assert!(
        text.lines()
            .any(|l| l.starts_with("portwarden_port_info{") && l.contains(&listed)),
        "the namespace's port is not listed:\n{text}"
    );
    assert!(
        !text
            .lines()
            .any(|l| l.starts_with("node_tcp_port_alive{") && l.contains(&listed)),
        "an unsupported check must not be reported as a state:\n{text}"
    );
    assert!(
        text.lines().any(|l| l
            .starts_with("portwarden_discovery_errors_total{reason=\"setns_denied\"}")
            && !l.ends_with(" 0")),
        "{text}"
    );
}
