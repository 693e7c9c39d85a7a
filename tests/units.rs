//! The owner's systemd unit, end to end: real listeners moved into real
//! cgroups the test makes in both of this host's hierarchies (systemd's v1
//! one, `name=systemd`, and the unified one), named right by `ls`,
//! `ls --json`, `portwarden_port_info` and the API; sockets passed by
//! `systemd-socket-activate` named after their socket. Every unit name is
//! made by `systemd-escape`, as systemd makes them.

mod common;

use std::process::Command;

use common::*;
use serde_json::{Value, json};

const V1: &str = "/sys/fs/cgroup/systemd";
const V2: &str = "/sys/fs/cgroup/unified";

/// `systemd-escape <args>`: unit names as systemd writes them.
fn escape(args: &[&str]) -> String {
    let out = Command::new("systemd-escape")
        .args(args)
        .output()
        .expect("run systemd-escape");
    assert!(out.status.success(), "systemd-escape {args:?}");
    String::from_utf8(out.stdout)
        .expect("utf-8")
        .trim()
        .to_string()
}

/// `name`, once `systemd-escape --mangle` has left it as it is (a valid
/// unit name).
fn valid(name: &str) -> String {
    assert_eq!(escape(&["--mangle", name]), name, "a valid unit name");
    name.to_string()
}

fn unescape(name: &str) -> String {
    escape(&["--unescape", name])
}

fn listener() -> Holder {
    Holder::start(&json!({"sockets": [{"proto": "tcp", "addr": "127.0.0.1"}]}))
}

/// What a row says of its unit: (name, system, user, display, transient).
fn unit_of(entry: &Value) -> (String, String, Option<String>, String, bool) {
    let u = &entry["unit"];
    assert!(u.is_object(), "no unit in {entry}");
    (
        u["name"].as_str().expect("name").to_string(),
        u["system"].as_str().expect("system").to_string(),
        u["user"].as_str().map(str::to_string),
        entry["unit_display"].as_str().expect("display").to_string(),
        u["transient"].as_bool().expect("transient"),
    )
}

fn tool(name: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {name} >/dev/null")])
        .status()
        .is_ok_and(|s| s.success())
}

#[test]
fn each_listener_is_named_by_its_unit_everywhere() {
    let _serial = serial();
    if !is_root() {
        return cannot_run("needs root to make cgroups");
    }
    if !tool("systemd-escape") {
        return cannot_run("systemd-escape is missing (apt-get install systemd)");
    }
    let (Some(mut v1), Some(mut v2)) = (Tree::new(V1, "units"), Tree::new(V2, "units")) else {
        return cannot_run("cannot make cgroups under /sys/fs/cgroup/systemd and /unified");
    };
    let docker_id = "3f4e5d6c7b8a99887766554433221100ffeeddccbbaa00112233445566778899";
    let web = format!("{}.service", escape(&["web"]));
    let demo = escape(&["--template=demo@.service", "a-b"]);
    assert_eq!(demo, "demo@a\\x2db.service");
    let vite = format!("{}.service", escape(&["vite"]));
    // Scopes are named by their manager, not escaped from a string: the
    // name is checked as one systemd accepts unchanged.
    let session = valid("session-7.scope");
    let docker = valid(&format!("docker-{docker_id}.scope"));
    let manager = escape(&["--template=user@.service", "1000"]);
    // (where, the path below the test slice, system unit, user unit, shown)
    let cases = [
        (
            1,
            format!("system.slice/{web}"),
            web.clone(),
            None,
            "web.service".to_string(),
        ),
        (
            2,
            format!("system.slice/system-demo.slice/{demo}"),
            demo.clone(),
            None,
            unescape(&demo),
        ),
        (
            2,
            format!("user.slice/user-1000.slice/{manager}/app.slice/{vite}"),
            manager.clone(),
            Some(vite.clone()),
            "vite.service (user@1000)".to_string(),
        ),
        (
            1,
            format!("user.slice/user-1000.slice/{session}"),
            session.clone(),
            None,
            session.clone(),
        ),
        (
            2,
            format!("system.slice/{docker}"),
            docker.clone(),
            None,
            docker.clone(),
        ),
    ];
    let holders: Vec<Holder> = cases.iter().map(|_| listener()).collect();
    for ((hierarchy, path, ..), h) in cases.iter().zip(&holders) {
        let tree = if *hierarchy == 1 { &mut v1 } else { &mut v2 };
        tree.place(path, h.pid);
    }
    assert_eq!(unescape(&demo), "demo@a-b.service");

    // ls --json
    let list = ls_json(&[]);
    for ((_, path, system, user, shown), h) in cases.iter().zip(&holders) {
        let e = entry_for_inode(&list, h.inode(0)).unwrap_or_else(|| panic!("{path} listed"));
        let (name, got_system, got_user, display, transient) = unit_of(&e);
        assert_eq!(&got_system, system, "{path}");
        assert_eq!(&got_user, user, "{path}");
        assert_eq!(&name, user.as_ref().unwrap_or(system), "{path}");
        assert_eq!(&display, shown, "{path}");
        assert_eq!(transient, name.ends_with(".scope"), "{path}");
        assert_eq!(e["owners"][0]["unit"]["system"], json!(system), "{path}");
    }
    let docker_row = entry_for_inode(&list, holders[4].inode(0)).expect("docker row");
    assert_eq!(docker_row["container"], json!(&docker_id[..12]));

    // ls: the UNIT column
    let out = run(&["ls", "--tcp"], &[("COLUMNS", "400")]);
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(
        table.lines().next().is_some_and(|h| h.contains("UNIT")),
        "{table}"
    );
    for ((_, path, _, _, shown), h) in cases.iter().zip(&holders) {
        let port = h.port(0).to_string();
        let line = table
            .lines()
            .find(|l| l.split_whitespace().nth(2) == Some(port.as_str()))
            .unwrap_or_else(|| panic!("{path}: port {port} in\n{table}"));
        assert!(
            line.contains(shown.as_str()),
            "{path}: {shown:?} in {line:?}"
        );
    }

    // The exporter: portwarden_port_info and the API.
    let exporter = Exporter::start(&[("ENABLE_HTTP_DETECTION", "false")]);
    let text = exporter.wait_for(30, "every holder's port_info", |t| {
        holders.iter().all(|h| {
            t.lines().any(|l| {
                l.starts_with("portwarden_port_info{")
                    && l.contains(&format!("port=\"{}\"", h.port(0)))
            })
        })
    });
    for ((_, path, system, user, _), h) in cases.iter().zip(&holders) {
        let line = text
            .lines()
            .find(|l| {
                l.starts_with("portwarden_port_info{")
                    && l.contains(&format!("port=\"{}\"", h.port(0)))
            })
            .expect("port_info");
        // Label values escape the backslash of `\x2d`.
        let label = |v: &str| v.replace('\\', "\\\\");
        assert!(
            line.contains(&format!("unit=\"{}\"", label(system))),
            "{path}: {line}"
        );
        assert!(
            line.contains(&format!(
                "user_unit=\"{}\"",
                label(user.as_deref().unwrap_or(""))
            )),
            "{path}: {line}"
        );
    }
    let (_, body) = exporter.get("/api/v1/ports?history=false").expect("API");
    let api: Value = serde_json::from_slice(&body).expect("JSON");
    let rows = api["ports"].as_array().expect("ports");
    for ((_, path, system, user, shown), h) in cases.iter().zip(&holders) {
        let row = rows
            .iter()
            .find(|r| r["inode"].as_u64() == Some(h.inode(0)))
            .unwrap_or_else(|| panic!("{path} in the API"));
        let (_, got_system, got_user, display, _) = unit_of(row);
        assert_eq!(
            (&got_system, &got_user, &display),
            (system, user, shown),
            "{path}"
        );
    }
    // Filtered by unit, as shown or exact; grouped by unit on the page.
    for wanted in ["demo@a-b.service", "demo@a%5Cx2db.service"] {
        let (_, body) = exporter
            .get(&format!("/api/v1/ports?history=false&unit={wanted}"))
            .expect("API");
        let api: Value = serde_json::from_slice(&body).expect("JSON");
        let inodes: Vec<u64> = api["ports"]
            .as_array()
            .expect("ports")
            .iter()
            .filter_map(|r| r["inode"].as_u64())
            .collect();
        assert_eq!(inodes, [holders[1].inode(0)], "unit={wanted}");
    }
    let (head, page) = exporter.get("/?group=unit").expect("page");
    assert!(head.contains(" 200 "), "{head}");
    let page = String::from_utf8_lossy(&page);
    assert!(
        page.contains("<tr class=\"group\"><th colspan=\"13\">vite.service (user@1000)</th></tr>"),
        "the page has a section for the user's unit"
    );
    drop(exporter);
    drop(holders);
}

#[test]
fn a_passed_socket_is_named_after_its_socket_unit_and_one_held_by_the_manager_is_unresolved() {
    let _serial = serial();
    if !is_root() {
        return cannot_run("needs root to make cgroups");
    }
    if !tool("systemd-socket-activate") || !tool("systemd-escape") {
        return cannot_run("systemd-socket-activate is missing (apt-get install systemd)");
    }
    let Some(mut v2) = Tree::new(V2, "activation") else {
        return cannot_run("cannot make cgroups under /sys/fs/cgroup/unified");
    };
    // Passed: systemd-socket-activate listens, waits for the first
    // connection, then execs the service with the socket as fd 3,
    // LISTEN_PID its own pid and LISTEN_FDNAMES the name.
    let socket = format!("{}.socket", escape(&["api"]));
    let port = free_port();
    let mut service = Command::new("systemd-socket-activate")
        .arg("-l")
        .arg(format!("127.0.0.1:{port}"))
        .arg(format!("--fdname={socket}"))
        .args(["python3", "-c", "import time; time.sleep(600)"])
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("start systemd-socket-activate");
    let service_unit = format!("{}.service", escape(&["api"]));
    v2.place(&format!("system.slice/{service_unit}"), service.id());
    // Held by the service manager alone: a process in `init.scope`.
    let manager = listener();
    v2.place("init.scope", manager.pid);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let _first = loop {
        match std::net::TcpStream::connect(("127.0.0.1", port)) {
            Ok(c) => break c,
            Err(e) => {
                assert!(
                    std::time::Instant::now() < deadline,
                    "connect to the socket: {e}"
                );
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
        }
    };

    let rows = wait_ls(|list| {
        list.iter().any(|e| {
            e["port"].as_u64() == Some(u64::from(port))
                && e["owners"][0]["process_name"]
                    .as_str()
                    .is_some_and(|n| n.starts_with("python3"))
        }) && list
            .iter()
            .any(|e| e["port"].as_u64() == Some(u64::from(manager.port(0))))
    });
    let passed = rows
        .iter()
        .find(|e| e["port"].as_u64() == Some(u64::from(port)))
        .expect("the passed socket");
    assert_eq!(
        passed["socket_activation"],
        json!({"socket": socket, "resolved": true})
    );
    assert_eq!(passed["unit"]["system"], json!(service_unit));
    assert_eq!(
        passed["unit_display"],
        json!(format!("{socket} → {service_unit}"))
    );
    let held = rows
        .iter()
        .find(|e| e["port"].as_u64() == Some(u64::from(manager.port(0))))
        .expect("the manager's socket");
    assert_eq!(
        held["socket_activation"],
        json!({"socket": null, "resolved": false})
    );
    assert_eq!(
        held["unit_display"],
        json!("(socket activation, unresolved)")
    );

    let exporter = Exporter::start(&[("ENABLE_HTTP_DETECTION", "false")]);
    let text = exporter.wait_for(30, "both port_info series", |t| {
        [port, manager.port(0)].iter().all(|p| {
            t.lines().any(|l| {
                l.starts_with("portwarden_port_info{") && l.contains(&format!("port=\"{p}\""))
            })
        })
    });
    let info = |p: u16| {
        text.lines()
            .find(|l| {
                l.starts_with("portwarden_port_info{") && l.contains(&format!("port=\"{p}\""))
            })
            .expect("port_info")
            .to_string()
    };
    assert!(
        info(port).contains(&format!("socket_unit=\"{socket}\"")),
        "{}",
        info(port)
    );
    assert!(
        info(manager.port(0)).contains("socket_unit=\"(unresolved)\""),
        "{}",
        info(manager.port(0))
    );
    drop(exporter);
    let _ = service.kill();
    let _ = service.wait();
}

/// `ls --json` until `ready` holds (the listener may still be starting).
fn wait_ls(ready: impl Fn(&[Value]) -> bool) -> Vec<Value> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let list = ls_json(&[]);
        if ready(&list) {
            return list;
        }
        assert!(std::time::Instant::now() < deadline, "not listed in time");
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}
