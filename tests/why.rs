//! `portwarden why`: every branch of the fault tree made for real — a port
//! gone with its baseline entry and closing event, loopback-only, `::1`
//! only, IPv6-only, an owner stopped, a frozen cgroup, a full accept queue,
//! a firewall rule in a namespace of the test's own, a conflict, and a
//! healthy port — each checked by its verdict line, the step that stopped
//! the walk, the steps left "not checked" and the exit status, and in
//! `--json` field by field.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::*;
use serde_json::{Value, json};

const STEPS: [&str; 6] = [
    "listening",
    "address",
    "owner",
    "accepting",
    "exposure",
    "conflicts",
];

/// `why <asked> --json` with `state` as the state directory: the exit
/// status and the answer.
fn why_json(asked: &str, state: &Path) -> (i32, Value) {
    let out = run(
        &["why", asked, "--json", "--timeout", "1s"],
        &[("PORTWARDEN_STATE_DIR", state.to_str().expect("path"))],
    );
    let answer: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "why {asked}: {e}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (out.status.code().expect("exit status"), answer)
}

/// `why <asked>` for people: the exit status and the text.
fn why_text(asked: &str, state: &Path) -> (i32, String) {
    let out = run(
        &["why", asked, "--timeout", "1s"],
        &[("PORTWARDEN_STATE_DIR", state.to_str().expect("path"))],
    );
    (
        out.status.code().expect("exit status"),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

/// Checks the answer's shape: stopped at `step` (None: healthy), every
/// step before it ok or unknown, every one after it not checked, the exit
/// status to match; returns the verdict.
fn stopped(asked: &str, state: &Path, step: Option<&str>) -> (String, Value) {
    let (code, a) = why_json(asked, state);
    let verdict = a["verdict"].as_str().expect("verdict").to_string();
    assert_eq!(a["question"], asked);
    assert_eq!(a["stopped_at"].as_str(), step, "{a:#}");
    assert_eq!(a["healthy"], step.is_none(), "{a:#}");
    assert_eq!(code, if step.is_none() { 0 } else { 1 }, "{verdict}");
    let at = step.map_or(STEPS.len(), |s| {
        STEPS.iter().position(|x| *x == s).expect("a step")
    });
    let steps = a["steps"].as_array().expect("steps");
    assert_eq!(steps.len(), STEPS.len());
    for (i, s) in steps.iter().enumerate() {
        assert_eq!(s["step"], STEPS[i]);
        let status = s["status"].as_str().expect("status");
        match i.cmp(&at) {
            std::cmp::Ordering::Less => {
                assert!(matches!(status, "ok" | "unknown"), "{}: {status}", STEPS[i])
            }
            std::cmp::Ordering::Equal => {
                assert_eq!(status, "problem");
                assert_eq!(s["summary"].as_str(), verdict.split_once(": ").map(|v| v.1));
            }
            std::cmp::Ordering::Greater => {
                assert_eq!(status, "not_checked", "{}", STEPS[i]);
                assert_eq!(s["summary"], "not checked");
                assert_eq!(s["evidence"], json!([]));
            }
        }
    }
    assert_eq!(a["hint"].is_string(), step.is_some(), "{a:#}");
    // The text says the same, the verdict first.
    let (text_code, text) = why_text(asked, state);
    assert_eq!(text_code, code);
    // (Its figures may differ: a connect time, a queue our connect joined.)
    assert_eq!(
        text.lines().next().map(figures_masked),
        Some(figures_masked(&verdict))
    );
    (verdict, a)
}

fn figures_masked(s: &str) -> String {
    let mut out = String::new();
    for c in s.chars() {
        match c.is_ascii_digit() {
            true if out.ends_with('#') => {}
            true => out.push('#'),
            false => out.push(c),
        }
    }
    out
}

fn tcp(addr: &str) -> Value {
    json!({"proto": "tcp", "addr": addr})
}

fn wait(what: &str, seconds: u64, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(seconds);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn a_port_gone_is_told_with_its_baseline_entry_its_closing_and_its_unit() {
    let _serial = serial();
    if !is_root() {
        return cannot_run("needs root to see owners and make cgroups");
    }
    let state = TempDir::new("why-gone");
    let dir = TempDir::new("why-gone-exe");
    let holder = Holder::start_as(
        &python_named(&dir.0, "svc-gone"),
        &json!({"sockets": [tcp("0.0.0.0")]}),
    );
    let port = holder.port(0);
    // Its unit, as systemd would have made it (both hierarchies: systemd's
    // own names the unit on a hybrid host).
    let unit = format!("pwtest-why-{}.service", std::process::id());
    let (Some(mut v1), Some(mut v2)) = (
        Tree::new("/sys/fs/cgroup/systemd", "why"),
        Tree::new("/sys/fs/cgroup/unified", "why"),
    ) else {
        return cannot_run("cannot make cgroups under /sys/fs/cgroup/systemd and /unified");
    };
    v1.place(&unit, holder.pid);
    v2.place(&unit, holder.pid);
    let env = [
        ("PORTWARDEN_STATE_DIR", state.0.to_str().expect("path")),
        ("ENABLE_HTTP_DETECTION", "false"),
    ];
    let accepted = run(&["baseline", "accept", "--port", &port.to_string()], &env);
    assert!(accepted.status.success(), "{accepted:?}");
    let exporter = Exporter::start(&env);
    exporter.wait_for(20, "the port seen", |t| {
        series_value(t, "node_tcp_port_alive", port) == Some(1.0)
    });
    let pid = holder.pid;
    holder.stop();
    let record = state.0.join("events.jsonl");
    wait("the closing recorded", 20, || {
        std::fs::read_to_string(&record).is_ok_and(|t| {
            t.lines()
                .any(|l| l.contains("port_closed") && l.contains(&format!("\"port\":{port}")))
        })
    });
    drop(exporter);
    let (verdict, a) = stopped(&port.to_string(), &state.0, Some("listening"));
    let today = Command::new("date")
        .args(["-u", "+%Y-%m-%d"])
        .output()
        .expect("date");
    let today = String::from_utf8_lossy(&today.stdout).trim().to_string();
    let head = format!(
        "{port}/tcp: nothing listens, though it is expected (svc-gone since {today}) — closed at "
    );
    assert!(verdict.starts_with(&head), "{verdict}");
    assert!(
        verdict.ends_with(&format!("by svc-gone (pid {pid})")),
        "{verdict}"
    );
    let evidence: Vec<&str> = a["steps"][0]["evidence"]
        .as_array()
        .expect("evidence")
        .iter()
        .map(|e| e.as_str().expect("line"))
        .collect();
    assert!(
        evidence
            .iter()
            .any(|e| e.starts_with(&format!("expected since {today}")) && e.contains("svc-gone")),
        "{evidence:?}"
    );
    assert!(
        evidence.iter().any(|e| e.contains(&format!(
            "0.0.0.0:{port} closed, held by svc-gone (pid {pid}, {unit})"
        ))),
        "{evidence:?}"
    );
    // systemd is not PID 1 here: its state and journal are said unavailable.
    assert!(
        evidence.iter().any(|e| *e
            == format!(
                "unit {unit}: state unavailable (systemd does not run this host (no /run/systemd/system))"
            )),
        "{evidence:?}"
    );
    assert!(
        evidence
            .iter()
            .any(|e| e.starts_with(&format!("journal of {unit}: unavailable"))),
        "{evidence:?}"
    );
    assert_eq!(
        a["hint"],
        format!("start it (systemctl start {unit}) and read why it stopped (journalctl -u {unit})")
    );
}

#[test]
fn loopback_only_ipv6_only_and_the_wrong_stack_stop_at_the_address() {
    let _serial = serial();
    if !is_root() {
        return cannot_run("needs root to see every owner");
    }
    let state = TempDir::new("why-address");
    let lo = Holder::start(&json!({"sockets": [tcp("127.0.0.1")]}));
    let p = lo.port(0);
    let (verdict, a) = stopped(&p.to_string(), &state.0, Some("address"));
    assert_eq!(
        verdict,
        format!("{p}/tcp: listening on 127.0.0.1 only — clients on other hosts cannot connect")
    );
    assert_eq!(
        a["steps"][1]["evidence"],
        json!(["127.0.0.1: loopback: only this host reaches it"])
    );
    // The same port asked by a client on this host: healthy.
    let (ok, _) = stopped(&format!("127.0.0.1:{p}"), &state.0, None);
    assert!(
        ok.starts_with(&format!("{p}/tcp: healthy — listening on 127.0.0.1")),
        "{ok}"
    );

    let v6 = Holder::start(&json!({"sockets": [tcp("::1")]}));
    let p6 = v6.port(0);
    let (verdict, _) = stopped(&format!("127.0.0.1:{p6}"), &state.0, Some("address"));
    assert_eq!(
        verdict,
        format!("{p6}/tcp: listening on [::1] only — IPv4 clients (127.0.0.1) cannot connect")
    );
    stopped(&format!("[::1]:{p6}"), &state.0, None);

    let only6 =
        Holder::start(&json!({"sockets": [{"proto": "tcp", "addr": "::", "v6only": true}]}));
    let po = only6.port(0);
    let (verdict, a) = stopped(&format!("127.0.0.1:{po}"), &state.0, Some("address"));
    assert_eq!(
        verdict,
        format!(
            "{po}/tcp: listening on [::] (IPv6 only) only — IPv4 clients (127.0.0.1) cannot connect"
        )
    );
    assert_eq!(
        a["hint"],
        "connect over IPv6 ([::1]), or have it listen on IPv4 too"
    );
    // A dual-stack [::] takes the IPv4 client.
    let dual =
        Holder::start(&json!({"sockets": [{"proto": "tcp", "addr": "::", "v6only": false}]}));
    stopped(&format!("127.0.0.1:{}", dual.port(0)), &state.0, None);
}

#[test]
fn a_stopped_owner_and_a_frozen_cgroup_stop_at_the_owner() {
    let _serial = serial();
    if !is_root() {
        return cannot_run("needs root to see owners and make cgroups");
    }
    let state = TempDir::new("why-owner");
    let h = Holder::start(&json!({"sockets": [tcp("0.0.0.0")]}));
    let p = h.port(0);
    let kill = |sig: &str, pid: u32| {
        let s = Command::new("kill").args([sig, &pid.to_string()]).status();
        assert!(s.is_ok_and(|s| s.success()), "kill {sig} {pid}");
    };
    kill("-STOP", h.pid);
    let (verdict, a) = stopped(&p.to_string(), &state.0, Some("owner"));
    assert!(
        verdict.starts_with(&format!("{p}/tcp: its owner python3")),
        "{verdict}"
    );
    assert!(
        verdict.ends_with(&format!(
            "(pid {}) is stopped by a signal (SIGSTOP or Ctrl-Z) — connections wait and are never served",
            h.pid
        )),
        "{verdict}"
    );
    assert_eq!(a["hint"], format!("resume it: kill -CONT {}", h.pid));
    kill("-CONT", h.pid);
    stopped(&p.to_string(), &state.0, None);

    let Some(mut tree) = Tree::new("/sys/fs/cgroup/unified", "why-freeze") else {
        return cannot_run("cannot make a cgroup under /sys/fs/cgroup/unified");
    };
    tree.place("app", h.pid);
    let cgroup = tree.root.join("app");
    std::fs::write(cgroup.join("cgroup.freeze"), "1").expect("freeze");
    wait("the cgroup frozen", 10, || {
        std::fs::read_to_string(cgroup.join("cgroup.events")).is_ok_and(|t| t.contains("frozen 1"))
    });
    let (verdict, _) = stopped(&p.to_string(), &state.0, Some("owner"));
    let rel = format!(
        "/{}/app",
        tree.root.file_name().expect("name").to_string_lossy()
    );
    assert!(
        verdict.ends_with(&format!(
            "(pid {}) is frozen (its cgroup {rel} is frozen) — connections wait and are never served",
            h.pid
        )),
        "{verdict}"
    );
    std::fs::write(cgroup.join("cgroup.freeze"), "0").expect("thaw");
    wait("the cgroup thawed", 10, || {
        std::fs::read_to_string(cgroup.join("cgroup.events")).is_ok_and(|t| t.contains("frozen 0"))
    });
    stopped(&p.to_string(), &state.0, None);
}

#[test]
fn a_full_accept_queue_stops_at_accepting() {
    let _serial = serial();
    if !is_root() {
        return cannot_run("needs root to see every owner");
    }
    let state = TempDir::new("why-queue");
    // It never accepts; a backlog of 1 fills with two connections.
    let h = Holder::start(&json!({"sockets": [{"proto": "tcp", "addr": "0.0.0.0", "backlog": 1}]}));
    let p = h.port(0);
    let mut held = Vec::new();
    wait("the queue full", 10, || {
        if let Ok(c) = std::net::TcpStream::connect_timeout(
            &format!("127.0.0.1:{p}").parse().expect("addr"),
            Duration::from_millis(200),
        ) {
            held.push(c);
        }
        let list = ls_json(&["--port", &p.to_string()]);
        list.iter().any(|e| {
            e["accept_queue"]["current"].as_u64() >= e["accept_queue"]["max"].as_u64()
                && e["accept_queue"]["max"].as_u64().is_some()
        })
    });
    let (verdict, a) = stopped(&p.to_string(), &state.0, Some("accepting"));
    let head = format!("{p}/tcp: the accept queue is full (");
    assert!(verdict.starts_with(&head), "{verdict}");
    assert!(
        verdict.ends_with("— the process does not accept connections (hung)"),
        "{verdict}"
    );
    assert!(
        a["hint"]
            .as_str()
            .expect("hint")
            .contains(&format!("/proc/{}/task/*/stack", h.pid))
    );
}

#[test]
fn a_firewall_rule_in_a_namespace_stops_at_the_exposure() {
    let _serial = serial();
    if !is_root() {
        return cannot_run("needs root for network namespaces and nft");
    }
    let ns = TestNetns::new("why");
    let state = TempDir::new("why-fw");
    let h = Holder::start_in(&ns.0, &json!({"sockets": [tcp("0.0.0.0")]}));
    let p = h.port(0);
    let rules = format!(
        "table inet filter {{\n  chain input {{\n    type filter hook input priority 0; policy accept;\n    iifname \"lo\" accept\n    tcp dport {p} drop\n  }}\n}}\n"
    );
    let load = Command::new("ip")
        .args(["netns", "exec", &ns.0, "nft", "-f", "-"])
        .stdin(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            use std::io::Write;
            c.stdin.take().expect("stdin").write_all(rules.as_bytes())?;
            c.wait()
        });
    assert!(load.is_ok_and(|s| s.success()), "nft -f");
    let handle = Command::new("ip")
        .args([
            "netns", "exec", &ns.0, "nft", "-a", "list", "chain", "inet", "filter", "input",
        ])
        .output()
        .expect("nft list");
    let listing = String::from_utf8_lossy(&handle.stdout);
    let handle = listing
        .lines()
        .find(|l| l.contains("drop") && l.contains("# handle"))
        .and_then(|l| l.rsplit(' ').next())
        .expect("the rule's handle")
        .to_string();
    // Asked from inside the namespace, as its own host.
    let out = Command::new("ip")
        .args(["netns", "exec", &ns.0])
        .arg(bin())
        .args(["why", &p.to_string(), "--json", "--timeout", "1s"])
        .env("PORTWARDEN_STATE_DIR", &state.0)
        .output()
        .expect("why in the namespace");
    assert_eq!(out.status.code(), Some(1));
    let a: Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(a["stopped_at"], "exposure", "{a:#}");
    assert_eq!(
        a["verdict"],
        format!(
            "{p}/tcp: blocked by the firewall: inet filter input handle {handle} drops new connections from other hosts"
        )
    );
    assert_eq!(
        a["steps"][3]["status"], "ok",
        "the port itself answers: {a:#}"
    );
    assert_eq!(a["steps"][5]["status"], "not_checked");
    assert_eq!(
        a["hint"],
        format!(
            "if other hosts should reach it, allow it before that rule (e.g. nft insert rule inet filter input tcp dport {p} accept)"
        )
    );
}

#[test]
fn a_conflict_stops_at_the_last_step_and_a_healthy_port_exits_0() {
    let _serial = serial();
    if !is_root() {
        return cannot_run("needs root to see every owner");
    }
    let state = TempDir::new("why-conflict");
    let dir = TempDir::new("why-conflict-exe");
    let proxy = Holder::start_as(
        &python_named(&dir.0, "proxy"),
        &json!({"sockets": [tcp("0.0.0.0")]}),
    );
    let p = proxy.port(0);
    let _dev = Holder::start_as(
        &python_named(&dir.0, "devserver"),
        &json!({"sockets": [{"proto": "tcp", "addr": "::1", "port": p}]}),
    );
    let (verdict, a) = stopped(&p.to_string(), &state.0, Some("conflicts"));
    assert!(
        verdict.starts_with(&format!(
            "{p}/tcp: conflict: different programs hold this port number on different addresses or stacks"
        )),
        "{verdict}"
    );
    assert!(
        verdict.contains("proxy") && verdict.contains("devserver"),
        "{verdict}"
    );
    assert_eq!(
        a["steps"][5]["evidence"]
            .as_array()
            .expect("evidence")
            .len(),
        1
    );

    // A plain dual-stack service: healthy, exit 0.
    // (The port picked for 0.0.0.0 may be taken on [::]: pick again.)
    let dual = (0..10)
        .find_map(|_| {
            std::panic::catch_unwind(|| {
                Holder::start(&json!({"sockets": [
                    {"proto": "tcp", "addr": "0.0.0.0"},
                    {"proto": "tcp", "addr": "::", "port": "previous"}
                ]}))
            })
            .ok()
        })
        .expect("a port free on both stacks");
    let pd = dual.port(0);
    let (verdict, a) = stopped(&pd.to_string(), &state.0, None);
    assert!(
        verdict.starts_with(&format!(
            "{pd}/tcp: healthy — listening on 0.0.0.0, [::], held by python3"
        )),
        "{verdict}"
    );
    assert_eq!(a["hint"], Value::Null);
    for step in a["steps"].as_array().expect("steps") {
        assert!(
            matches!(step["status"].as_str(), Some("ok" | "unknown")),
            "{step}"
        );
    }
    // Bad input: exit 2, naming the forms.
    let out = run(&["why", "example.com:80"], &[]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("give PORT, PORT/tcp"));
}

#[test]
fn without_privileges_the_owner_and_the_firewall_are_unknown_not_problems() {
    let _serial = serial();
    if !is_root() {
        return cannot_run("needs root to drop privileges with setpriv");
    }
    let state = TempDir::new("why-nobody");
    std::fs::set_permissions(
        &state.0,
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .expect("chmod");
    let h = Holder::start(&json!({"sockets": [tcp("0.0.0.0")]}));
    let p = h.port(0);
    let out = as_nobody_with(&[])
        .args(["why", &p.to_string(), "--json", "--timeout", "1s"])
        .env("PORTWARDEN_STATE_DIR", &state.0)
        .output()
        .expect("why as nobody");
    let a: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stderr)));
    assert_eq!(out.status.code(), Some(0), "unknown is no problem: {a:#}");
    assert_eq!(a["healthy"], true);
    let owner = &a["steps"][2];
    assert_eq!(owner["status"], "unknown", "{a:#}");
    // The discoverer's reason, which names what would tell.
    let summary = owner["summary"].as_str().expect("summary");
    assert!(
        summary.starts_with("unknown (no readable process holds it; ")
            && summary.ends_with("(needs root, or CAP_SYS_PTRACE and CAP_DAC_READ_SEARCH))"),
        "{owner}"
    );
    let exposure = &a["steps"][4];
    assert_eq!(exposure["status"], "unknown", "{a:#}");
    assert!(
        exposure["summary"]
            .as_str()
            .expect("summary")
            .contains("needs CAP_NET_ADMIN"),
        "{exposure}"
    );
    assert_eq!(
        a["steps"][3]["status"], "ok",
        "the connect works unprivileged"
    );
    assert!(
        a["verdict"]
            .as_str()
            .expect("verdict")
            .ends_with("(owner, exposure unknown)"),
        "{a:#}"
    );
}
