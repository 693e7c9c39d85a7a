//! `portwarden ls` end to end: real sockets held by real child processes,
//! read back through the real binary.

mod common;

use std::io::Read;
use std::process::{Command, Stdio};

use common::*;
use serde_json::{Value, json};

#[test]
fn ipv4_ipv6_and_wildcard_listeners_with_their_owner() {
    let holder = Holder::start(&json!({"sockets": [
        {"proto": "tcp", "addr": "127.0.0.1"},
        {"proto": "tcp", "addr": "::1"},
        {"proto": "tcp", "addr": "::", "v6only": false},
        {"proto": "udp", "addr": "::"},
        {"proto": "udp", "addr": "127.0.0.1"},
    ]}));
    let list = ls_json(&[]);
    let expect = [
        ("tcp", "ipv4", "127.0.0.1"),
        ("tcp", "ipv6", "::1"),
        ("tcp", "ipv6", "::"),
        ("udp", "ipv6", "::"),
        ("udp", "ipv4", "127.0.0.1"),
    ];
    for (i, (proto, family, address)) in expect.iter().enumerate() {
        let e = entry_for_inode(&list, holder.inode(i))
            .unwrap_or_else(|| panic!("{proto} {address} not listed"));
        let e = &e;
        assert_eq!(e["proto"], *proto);
        assert_eq!(e["port"].as_u64(), Some(u64::from(holder.port(i))));
        assert_eq!(e["family"], *family);
        assert_eq!(e["address"], *address);
        assert_eq!(e["inode"].as_u64(), Some(holder.inode(i)));
        assert_eq!(e["netns"], "host");
        assert_eq!(owner_pids(e), vec![holder.pid]);
        let owner = &e["owners"][0];
        assert!(
            owner["process_name"]
                .as_str()
                .is_some_and(|n| n.starts_with("python")),
            "{owner}"
        );
        assert!(
            owner["exe_path"]
                .as_str()
                .is_some_and(|p| p.starts_with('/')),
            "{owner}"
        );
        assert!(
            owner["cmdline"]
                .as_str()
                .is_some_and(|c| c.contains("import json")),
            "{owner}"
        );
        assert!(owner["start_time"].as_u64().is_some_and(|t| t > 0));
        assert!(e["owner_unknown_reason"].is_null());
        if *proto == "tcp" {
            assert_eq!(
                e["accept_queue"],
                json!({"current": 0, "max": 16, "drops": 0}),
                "{e}"
            );
        } else {
            assert!(e["accept_queue"].is_null());
        }
    }
}

#[test]
fn connected_udp_sockets_are_not_listed() {
    let holder = Holder::start(&json!({"sockets": [
        {"proto": "udp", "addr": "127.0.0.1", "connect": true},
        {"proto": "udp", "addr": "127.0.0.1"},
    ]}));
    let list = ls_json(&["--udp"]);
    assert!(entry_for_inode(&list, holder.inode(0)).is_none());
    assert!(entry_for_inode(&list, holder.inode(1)).is_some());
}

#[test]
fn shared_socket_lists_every_owner_parent_first() {
    // Two forked workers inherit the listener: three owners, the parent
    // (whose own parent does not hold it) first.
    let holder =
        Holder::start(&json!({"fork": 2, "sockets": [{"proto": "tcp", "addr": "127.0.0.1"}]}));
    let list = ls_json(&["--port", &holder.port(0).to_string()]);
    let pids = owner_pids(&entry_for_inode(&list, holder.inode(0)).expect("listed"));
    assert_eq!(pids[0], holder.pid);
    let mut workers = pids[1..].to_vec();
    workers.sort_unstable();
    let mut expected = holder.children.clone();
    expected.sort_unstable();
    assert_eq!(workers, expected);
}

#[test]
fn hostile_process_names_come_through_intact() {
    let dir = TempDir::new("names");
    let name = "my \"odd\" \\ prözess 名前";
    let (exe, holder) = listener_named(&dir.0, name);
    let port = holder.port(0).to_string();

    let list = ls_json(&["--port", &port]);
    let entry = entry_for_inode(&list, holder.inode(0)).expect("listed");
    let owner = &entry["owners"][0];
    assert_eq!(owner["process_name"], name);
    assert_eq!(owner["exe_path"], exe.to_str().expect("utf-8 path"));

    // --process matches the whole name, and globs work on it.
    let ino = holder.inode(0);
    assert!(entry_for_inode(&ls_json(&["--port", &port, "--process", name]), ino).is_some());
    assert!(entry_for_inode(&ls_json(&["--port", &port, "--process", "my*名前"]), ino).is_some());
    assert!(entry_for_inode(&ls_json(&["--port", &port, "--process", "my"]), ino).is_none());

    // The table prints it as is.
    let out = run(&["ls", "--port", &port], &[]);
    assert!(out.status.success());
    let table = String::from_utf8(out.stdout).expect("utf-8 table");
    assert!(table.contains(name), "{table}");
}

#[test]
fn control_characters_in_names_are_escaped_in_the_table_and_kept_in_json() {
    let dir = TempDir::new("ctrl");
    let name = "evil\n\u{1b}[2Jname";
    let (_, holder) = listener_named(&dir.0, name);
    let port = holder.port(0).to_string();

    let list = ls_json(&["--port", &port]);
    let entry = entry_for_inode(&list, holder.inode(0)).expect("listed");
    assert_eq!(entry["owners"][0]["process_name"], name);

    let out = run(&["ls", "--port", &port], &[]);
    let table = String::from_utf8(out.stdout).expect("utf-8 table");
    assert!(
        !table.contains('\u{1b}'),
        "raw escape reached the terminal: {table:?}"
    );
    assert!(table.contains("evil\\n\\u{1b}[2Jname"), "{table}");
}

#[test]
fn a_name_that_reorders_the_row_is_escaped_in_the_table() {
    let dir = TempDir::new("bidi");
    let name = "evil\u{202E}fdp.sh";
    let (_, holder) = listener_named(&dir.0, name);
    let port = holder.port(0).to_string();
    let out = run(&["ls", "--port", &port], &[]);
    let table = String::from_utf8(out.stdout).expect("utf-8 table");
    assert!(
        !table.contains('\u{202E}'),
        "raw override reached the terminal: {table:?}"
    );
    assert!(table.contains("evil\\u{202e}fdp.sh"), "{table}");
    let list = ls_json(&["--port", &port]);
    let entry = entry_for_inode(&list, holder.inode(0)).expect("listed");
    assert_eq!(entry["owners"][0]["process_name"], name);
}

#[test]
fn a_process_named_with_invalid_utf8_is_still_its_sockets_owner() {
    let holder = Holder::start(&json!({
        "comm_hex": "626164fffe",
        "sockets": [{"proto": "tcp", "addr": "127.0.0.1"}]
    }));
    let comm = std::fs::read(format!("/proc/{}/comm", holder.pid)).expect("comm");
    assert_eq!(comm, b"bad\xff\xfe\n", "the name did not take");
    let list = ls_json(&["--port", &holder.port(0).to_string()]);
    let entry = entry_for_inode(&list, holder.inode(0)).expect("listed");
    assert_eq!(owner_pids(&entry), vec![holder.pid], "{entry}");
}

#[test]
fn a_terminal_of_zero_columns_is_of_unknown_width_and_columns_is_honoured() {
    let holder = Holder::start(&json!({"sockets": [{"proto": "tcp", "addr": "127.0.0.1"}]}));
    let port = holder.port(0).to_string();
    // `script` runs ls on a pseudo-terminal; with no terminal of ours it
    // reports 0 × 0, as some `docker exec -t` do.
    let command = format!("{} ls --port {port}", bin().display());
    let on_pty = |columns: Option<&str>| {
        let mut cmd = Command::new("script");
        cmd.args(["-qec", &command, "/dev/null"])
            .stdin(Stdio::null())
            .env_remove("COLUMNS");
        if let Some(c) = columns {
            cmd.env("COLUMNS", c);
        }
        let out = cmd.output().expect("script (util-linux)");
        assert!(out.status.success(), "{out:?}");
        String::from_utf8_lossy(&out.stdout).replace('\r', "")
    };
    let table = on_pty(None);
    let header = table.lines().next().unwrap_or_default();
    for column in ["PROTO", "ADDRESS", "PROCESS", "HEALTH", "EXE"] {
        assert!(header.contains(column), "{column} not whole in:\n{table}");
    }
    assert_eq!(table.lines().count(), 2, "rows wrapped:\n{table}");
    // COLUMNS narrows it: within 60 columns, and a row stays one line
    // (cut with an ellipsis, never a number broken over two lines).
    for columns in ["60", "50"] {
        let narrow = on_pty(Some(columns));
        let width: usize = columns.parse().expect("number");
        assert!(
            narrow
                .lines()
                .all(|l| l.trim_end().chars().count() <= width),
            "{narrow}"
        );
        let rows: Vec<&str> = narrow
            .lines()
            .skip_while(|l| !l.trim_start().starts_with("tcp"))
            .collect();
        assert_eq!(
            rows.len(),
            1,
            "a row wrapped at COLUMNS={columns}:\n{narrow}"
        );
        assert!(rows[0].contains('…'), "cut, with an ellipsis: {narrow}");
    }
}

#[test]
fn deleted_executable_suffix_is_stripped() {
    let dir = TempDir::new("deleted");
    let (exe, holder) = listener_named(&dir.0, "upgraded-daemon");
    std::fs::remove_file(&exe).expect("delete the running binary");
    let list = ls_json(&["--port", &holder.port(0).to_string()]);
    let entry = entry_for_inode(&list, holder.inode(0)).expect("listed");
    let owner = &entry["owners"][0];
    assert_eq!(owner["process_name"], "upgraded-daemon");
    assert_eq!(owner["exe_path"], exe.to_str().expect("utf-8"));
}

#[test]
fn excluded_owners_are_hidden_unless_all() {
    let dir = TempDir::new("excluded");
    // "sshd" is on the built-in list; "sshd-helper" is not (whole names only).
    let (_, sshd) = listener_named(&dir.0, "sshd");
    let (_, helper) = listener_named(&dir.0, "sshd-helper");
    let list = ls_json(&[]);
    assert!(entry_for_inode(&list, sshd.inode(0)).is_none());
    assert!(entry_for_inode(&list, helper.inode(0)).is_some());

    let all = ls_json(&["--all"]);
    let entry = entry_for_inode(&all, sshd.inode(0)).expect("listed with --all");
    assert_eq!(entry["excluded"], true);
    assert_eq!(entry["owners"][0]["process_name"], "sshd");

    // EXCLUDED_PROCESS_NAMES adds to the list; '*' makes a glob.
    let out = run(
        &["ls", "--json"],
        &[("EXCLUDED_PROCESS_NAMES", " nothing, sshd-*")],
    );
    assert!(out.status.success());
    let list: Vec<Value> = serde_json::from_slice(&out.stdout).expect("json");
    assert!(entry_for_inode(&list, helper.inode(0)).is_none());
}

#[test]
fn filters_select_protocol_and_port() {
    let holder = Holder::start(&json!({"sockets": [
        {"proto": "tcp", "addr": "127.0.0.1"},
        {"proto": "udp", "addr": "127.0.0.1"},
    ]}));
    let (tcp, udp) = (holder.port(0), holder.port(1));
    let only_tcp = ls_json(&["--tcp"]);
    assert!(only_tcp.iter().all(|e| e["proto"] == "tcp"));
    assert!(entry_for_inode(&only_tcp, holder.inode(0)).is_some());
    let only_udp = ls_json(&["--udp"]);
    assert!(only_udp.iter().all(|e| e["proto"] == "udp"));
    assert!(entry_for_inode(&only_udp, holder.inode(1)).is_some());
    let both = ls_json(&["--port", &tcp.to_string(), "--port", &udp.to_string()]);
    assert!(
        both.iter()
            .all(|e| [tcp, udp].contains(&(e["port"].as_u64().expect("port") as u16)))
    );
    assert!(!entries_for(&both, "tcp", tcp).is_empty());
}

#[test]
fn table_is_sorted_by_protocol_then_port() {
    let _holder = Holder::start(&json!({"sockets": [
        {"proto": "udp", "addr": "127.0.0.1"},
        {"proto": "tcp", "addr": "127.0.0.1"},
        {"proto": "tcp", "addr": "::1"},
    ]}));
    let list = ls_json(&["--all"]);
    let keys: Vec<(String, u64)> = list
        .iter()
        .map(|e| {
            (
                e["proto"].as_str().expect("proto").to_string(),
                e["port"].as_u64().expect("port"),
            )
        })
        .collect();
    let mut sorted = keys.clone();
    sorted.sort();
    assert_eq!(keys, sorted);

    let out = run(&["ls", "--all"], &[]);
    let table = String::from_utf8(out.stdout).expect("table");
    let header = table.lines().next().expect("header");
    for column in [
        "PROTO", "ADDRESS", "PORT", "PID", "PROCESS", "USER", "QUEUE", "EXE",
    ] {
        assert!(header.contains(column), "{header}");
    }
}

#[test]
fn closed_pipe_is_not_an_error() {
    let _holder = Holder::start(&json!({"sockets": [{"proto": "tcp", "addr": "127.0.0.1"}]}));
    let mut child = Command::new(bin())
        .args(["ls", "--all"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    // Close our end before it writes: its write gets EPIPE, as under `| head`.
    drop(child.stdout.take());
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .expect("stderr")
        .read_to_string(&mut stderr)
        .expect("read");
    let status = child.wait().expect("wait");
    assert!(status.success(), "{status:?}: {stderr}");
    assert!(stderr.is_empty(), "{stderr}");
}

#[test]
fn missing_proc_root_is_a_usage_error() {
    let out = run(&["ls"], &[("PROC_PREFIX", "/nonexistent/proc")]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("PROC_PREFIX") && err.contains("/nonexistent/proc"),
        "{err}"
    );

    let out = run(&["ls", "--path.procfs", "/nonexistent/proc"], &[]);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn bad_flags_and_values_exit_2_naming_the_setting() {
    /// Arguments, environment, and a word the error message must contain.
    type Case<'a> = (&'a [&'a str], &'a [(&'a str, &'a str)], &'a str);
    let cases: &[Case] = &[
        (&["ls", "--bogus"], &[], "--bogus"),
        (&["ls", "--port", "0"], &[], "--port"),
        (&["ls", "--port", "http"], &[], "1 to 65535"),
        (&["ls", "--port", "70000"], &[], "--port"),
        (&["frobnicate"], &[], "frobnicate"),
        (
            &["ls"],
            &[("EXCLUDED_PROCESS_NAMES", "ok,bad\u{7}")],
            "EXCLUDED_PROCESS_NAMES",
        ),
    ];
    for (args, env, needle) in cases {
        let out = run(args, env);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?} {env:?}: {err}");
        assert!(err.contains(needle), "{args:?}: {err}");
    }
}

#[test]
fn empty_proc_prefix_means_proc() {
    let holder = Holder::start(&json!({"sockets": [{"proto": "tcp", "addr": "127.0.0.1"}]}));
    let out = run(
        &["ls", "--json", "--port", &holder.port(0).to_string()],
        &[("PROC_PREFIX", "")],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let list: Vec<Value> = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(
        owner_pids(&entry_for_inode(&list, holder.inode(0)).expect("listed")),
        vec![holder.pid]
    );
}

#[test]
fn unprivileged_run_lists_sockets_and_warns_once() {
    if !is_root() {
        cannot_run("needs root to start a listener as root and run portwarden as nobody");
        return;
    }
    let holder = Holder::start(&json!({"sockets": [{"proto": "tcp", "addr": "127.0.0.1"}]}));
    let port = holder.port(0).to_string();
    let out = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
        .arg(bin())
        .args(["ls", "--json", "--port", &port])
        .output()
        .expect("setpriv runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    // One about owners; the firewall's (no CAP_NET_ADMIN either) apart.
    let warnings: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains("warning") && !l.contains("firewall ruleset"))
        .collect();
    assert_eq!(warnings.len(), 1, "{stderr}");
    assert!(warnings[0].contains("could not be read"), "{stderr}");
    let firewall = stderr
        .lines()
        .filter(|l| l.contains("firewall ruleset"))
        .count();
    assert_eq!(firewall, 1, "{stderr}");
    let list: Vec<Value> = serde_json::from_slice(&out.stdout).expect("json");
    let entry = entry_for_inode(&list, holder.inode(0)).expect("listed without owner");
    assert!(entry["owners"].as_array().expect("owners").is_empty());
    let reason = entry["owner_unknown_reason"].as_str().expect("a reason");
    assert!(reason.contains("could not be read"), "{reason}");
}

#[test]
fn hostsim_sockets_all_listed_with_their_owner() {
    let sim = Sim::start(&[
        "--procs", "20", "--tcp", "6", "--udp", "2", "--fds", "30", "--http", "1", "--hung", "1",
    ]);
    let list = ls_json(&["--all"]);
    let mut missing = Vec::new();
    for s in &sim.sockets {
        let proto = if s["proto"].as_str().expect("proto").starts_with("tcp") {
            "tcp"
        } else {
            "udp"
        };
        let port = s["port"].as_u64().expect("port") as u16;
        let found = entries_for(&list, proto, port).into_iter().find(|e| {
            e["address"] == s["addr"]
                && owner_pids(e).first().map(|&p| u64::from(p)) == s["pid"].as_u64()
        });
        if found.is_none() {
            missing.push(s.clone());
        }
    }
    assert_eq!(sim.sockets.len(), 20 * 8);
    assert!(
        missing.is_empty(),
        "not listed with the right owner: {missing:?}"
    );
}

#[test]
fn ls_checks_each_listener_and_says_which_is_hung() {
    // Backlog 1 and never accepts: full after two handshakes, both looks.
    let stuck =
        Holder::start(&json!({"sockets": [{"proto": "tcp", "addr": "127.0.0.1", "backlog": 1}]}));
    let _clients: Vec<_> = (0..4)
        .map(|_| connect_from("127.0.0.1", stuck.port(0)))
        .collect();
    let fine = Holder::start(
        &json!({"sockets": [{"proto": "tcp", "addr": "127.0.0.1"}, {"proto": "udp", "addr": "127.0.0.1"}]}),
    );
    let ports = [stuck.port(0), fine.port(0), fine.port(1)].map(|p| p.to_string());
    let args = [
        "--port", &ports[0], "--port", &ports[1], "--port", &ports[2],
    ];

    let list = ls_json(&[&args[..], &["--check", "--timeout", "300ms"]].concat());
    let entry = |h: &Holder, i| entry_for_inode(&list, h.inode(i)).expect("listed");
    assert_eq!(entry(&stuck, 0)["health"], "hung", "{list:?}");
    let ok = entry(&fine, 0);
    assert_eq!(ok["health"], "ok", "{ok}");
    assert!(
        ok["connect_seconds"]
            .as_f64()
            .is_some_and(|s| s > 0.0 && s < 0.3)
    );
    assert_eq!(entry(&fine, 1)["health"], "ok");

    // The table has the column, and without --check the queues alone say
    // which is hung; no connection is made, so no connect time.
    let out = run(&[&["ls"][..], &args[..]].concat(), &[]);
    let table = String::from_utf8(out.stdout).expect("utf-8");
    assert!(
        table.lines().next().is_some_and(|h| h.contains("HEALTH")),
        "{table}"
    );
    assert!(table.contains(" hung "), "{table}");
    for unchecked in [
        ls_json(&args),
        ls_json(&[&args[..], &["--no-check"]].concat()),
    ] {
        let entry = |h: &Holder, i| entry_for_inode(&unchecked, h.inode(i)).expect("listed");
        assert_eq!(entry(&stuck, 0)["health"], "hung", "{unchecked:?}");
        assert_eq!(entry(&fine, 0)["health"], "ok", "{unchecked:?}");
        assert_eq!(entry(&fine, 1)["health"], "ok", "{unchecked:?}");
        for e in &unchecked {
            assert!(e["connect_seconds"].is_null(), "{e}");
        }
    }
}

#[test]
fn ls_connects_to_nothing_unless_asked() {
    // Counts the connections it accepts (one entry each).
    let mut server = Server::start("silent");
    let port = server.port.to_string();
    let accepted = |server: &mut Server, want: usize| {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(3);
        loop {
            let n = server.received().len();
            if n >= want || std::time::Instant::now() > deadline {
                return n;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    };
    for args in [
        &["ls", "--port", &port][..],
        &["ls", "--json", "--port", &port],
    ] {
        let out = run(args, &[]);
        assert!(out.status.success(), "{out:?}");
    }
    assert_eq!(accepted(&mut server, 1), 0, "ls connected");
    let list = ls_json(&["--check", "--port", &port]);
    assert_eq!(
        accepted(&mut server, 1),
        1,
        "ls --check did not connect once"
    );
    assert!(
        list.iter().any(|e| e["connect_seconds"].as_f64().is_some()),
        "{list:?}"
    );
    let out = run(&["ls", "--check", "--no-check"], &[]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
}

/// `ls --watch` under a pseudo-terminal (`script`): a row that appears is
/// marked `+`, one that goes `-`; Ctrl-C (a `^C` typed into the terminal)
/// ends it and leaves the terminal as it was.
#[test]
fn watch_marks_rows_that_come_and_go_and_ctrl_c_restores_the_terminal() {
    use std::io::{Read, Write};
    use std::sync::{Arc, Mutex};
    let _serial = serial();
    if !is_root() {
        return cannot_run("needs root to see every owner");
    }
    if std::process::Command::new("script")
        .arg("--version")
        .output()
        .is_err()
    {
        return cannot_run("script (util-linux) is missing");
    }
    let a = Holder::start(&json!({"sockets": [{"proto": "tcp", "addr": "127.0.0.1"}]}));
    let pb = free_port();
    // `exec`: script(1) runs the command through $SHELL -c, and a shell
    // that stays (dash) would take the ^C itself and end with 130.
    let command = format!(
        "exec {} ls --tcp --watch 300ms --port {} --port {pb}",
        bin().display(),
        a.port(0)
    );
    let mut script = std::process::Command::new("script")
        .args(["-qfec", &command, "/dev/null"])
        .env("COLUMNS", "250")
        .env("SHELL", "/bin/sh")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("start script");
    let mut keys = script.stdin.take().expect("stdin");
    let screen = Arc::new(Mutex::new(Vec::<u8>::new()));
    {
        let screen = Arc::clone(&screen);
        let mut out = script.stdout.take().expect("stdout");
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = out.read(&mut buf) {
                if n == 0 {
                    break;
                }
                screen.lock().expect("screen").extend_from_slice(&buf[..n]);
            }
        });
    }
    let text = || String::from_utf8_lossy(&screen.lock().expect("screen")).into_owned();
    // A row whose first cell is `mark` (or none) and that shows `port`.
    let has_row = |mark: Option<&str>, port: u16, also: &str| {
        let port = port.to_string();
        text().split('\n').any(|l| {
            let cells: Vec<&str> = l.split_whitespace().collect();
            let marked = match mark {
                Some(m) => cells.first() == Some(&m),
                None => cells.first() == Some(&"tcp"),
            };
            marked && cells.contains(&port.as_str()) && l.contains(also)
        })
    };
    let wait = |what: &str, ok: &dyn Fn() -> bool| {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
        while !ok() {
            assert!(std::time::Instant::now() < deadline, "{what}:\n{}", text());
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    };
    wait("the first draw", &|| has_row(None, a.port(0), ""));
    assert!(
        text().starts_with("\x1b[?1049h\x1b[?25l"),
        "the alternate screen"
    );
    let b = Holder::start(&json!({"sockets": [{"proto": "tcp", "addr": "127.0.0.1", "port": pb}]}));
    wait("B marked as new", &|| has_row(Some("+"), pb, ""));
    let gone = a.port(0);
    drop(a);
    wait("A marked as gone", &|| has_row(Some("-"), gone, "gone"));

    keys.write_all(b"\x03").expect("type ^C");
    keys.flush().expect("flush");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let status = loop {
        if let Some(s) = script.try_wait().expect("wait") {
            break s;
        }
        assert!(std::time::Instant::now() < deadline, "^C did not end it");
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    assert!(status.success(), "{status:?}");
    std::thread::sleep(std::time::Duration::from_millis(200));
    let all = text();
    let tail = &all[all.rfind("\x1b[H\x1b[2J").expect("a draw")..];
    assert!(
        tail.trim_end().ends_with("\x1b[?25h\x1b[?1049l"),
        "cursor shown and the screen left: {:?}",
        &tail[tail.len().saturating_sub(80)..]
    );
    drop(b);
}
