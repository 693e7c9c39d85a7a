//! The smoke test of what users deploy. `.ci/run` runs it a second time with
//! `PORTWARDEN_BIN` set to the static binary that `deploy/build-static.sh`
//! builds for the image: it must name a listener's owner, and serve as
//! `nobody` with only the four capabilities the deploy files grant, with
//! `PROC_PREFIX` set as in the container, and check targets by name (the
//! static binary resolves with musl's own resolver).

mod common;

use std::process::Command;

use common::*;
use serde_json::json;

#[test]
fn version_names_the_package() {
    let out = Command::new(bin()).arg("--version").output().expect("run");
    assert!(out.status.success(), "{out:?}");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        format!("portwarden {}", env!("CARGO_PKG_VERSION"))
    );
}

#[test]
fn ls_names_the_owner_and_serve_checks_it_with_the_deploy_files_capabilities() {
    if !is_root() {
        cannot_run("serving as nobody with capabilities needs root (setpriv)");
        return;
    }
    let holder = Holder::start(&json!({"sockets": [{"proto": "tcp", "addr": "127.0.0.1"}]}));
    let port = holder.port(0);

    let list = ls_json(&["--port", &port.to_string()]);
    let entry = entry_for_inode(&list, holder.inode(0)).expect("listed");
    assert_eq!(owner_pids(&entry), vec![holder.pid], "{entry}");
    let name = entry["owners"][0]["process_name"]
        .as_str()
        .unwrap_or_default();
    assert!(name.starts_with("python3"), "{entry}");

    // The capabilities of deploy/kubernetes/daemonset.yaml and the unit.
    let cmd = as_nobody_with(&["sys_ptrace", "dac_read_search", "sys_admin", "net_admin"]);
    let exporter = Exporter::start_cmd(
        cmd,
        &[("ENABLE_HTTP_DETECTION", "false"), ("PROC_PREFIX", "/proc")],
    );
    let (head, body) = http_get(exporter.addr, "/-/healthy", &[]).expect("healthy");
    assert!(head.starts_with("HTTP/1.0 200"), "{head}");
    assert_eq!(String::from_utf8_lossy(&body).trim(), "Healthy");
    let text = exporter.wait_for(20, "the listener checked", |t| {
        series_value(t, "node_tcp_port_alive", port) == Some(1.0)
    });
    let line = text
        .lines()
        .find(|l| l.starts_with("node_tcp_port_alive{") && l.contains(&format!("port=\"{port}\"")))
        .unwrap_or_default();
    assert!(line.contains(&format!("process_name=\"{name}\"")), "{line}");
}

#[test]
fn check_resolves_a_name_connects_and_asks_http() {
    let server = Server::start("http");
    let by_name = format!("localhost:{}", server.port);
    let url = format!("http://127.0.0.1:{}/", server.port);
    let out = run(&["check", "--json", &by_name, &url], &[]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{text}");
    let rows: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(rows[0]["success"], true, "{text}");
    assert_eq!(rows[1]["http_status"], 200, "{text}");
}
