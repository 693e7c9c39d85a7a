//! Port events end to end: real listeners opened, closed and handed from
//! one process to another, read back in order from the exporter's standard
//! output, from a file rotated mid-test (rename, then SIGHUP), from
//! `/api/v1/events`, and as journald datagrams on a socket of the test's
//! own, parsed by the native protocol's rules. Steady ports make no event.

mod common;

use std::io::BufRead;
use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;
use serde_json::{Value, json};

fn listener(port: u16, reuseport: bool) -> Holder {
    Holder::start(&json!({"sockets": [
        {"proto": "tcp", "addr": "127.0.0.1", "port": port, "reuseport": reuseport}
    ]}))
}

/// (action, port, pid) of an event.
fn brief(e: &Value) -> (String, u64, u64) {
    (
        e["event"]["action"].as_str().expect("action").to_string(),
        e["server"]["port"].as_u64().expect("port"),
        e["process"]["pid"].as_u64().unwrap_or(0),
    )
}

/// The events about `ports`, briefly.
fn about(events: &[Value], ports: &[u16]) -> Vec<(String, u64, u64)> {
    events
        .iter()
        .map(brief)
        .filter(|(_, p, _)| ports.iter().any(|q| u64::from(*q) == *p))
        .collect()
}

fn read_lines(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

/// Waits until `ready` holds of what `read` gives, up to 20 s.
fn wait_until<T>(what: &str, read: impl Fn() -> T, ready: impl Fn(&T) -> bool) -> T {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let got = read();
        if ready(&got) {
            return got;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn each_change_is_told_once_in_order_on_stdout_in_a_rotated_file_and_by_the_api() {
    let _serial = serial();
    if !is_root() {
        return cannot_run("needs root to see every owner");
    }
    let dir = TempDir::new("events");
    let file = dir.0.join("events.log");
    let rotated = dir.0.join("events.log.1");
    let a = listener(0, false);
    let env = [("ENABLE_HTTP_DETECTION", "false")];
    let (stdout_exporter, out) = Exporter::start_piped(&["--events.output", "stdout"], &env);
    let lines = Arc::new(Mutex::new(Vec::<Value>::new()));
    {
        let lines = Arc::clone(&lines);
        std::thread::spawn(move || {
            for line in out.lines().map_while(Result::ok) {
                let v: Value =
                    serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line}"));
                lines.lock().expect("lines").push(v);
            }
        });
    }
    let file_arg = file.to_str().expect("path");
    let file_exporter = Exporter::start_with(&["--events.output", file_arg], &env);
    let stdout_events = || lines.lock().expect("lines").clone();
    let file_events = || [read_lines(&rotated), read_lines(&file)].concat();
    let both_have = |what: &str, n: usize, ports: &[u16]| {
        wait_until(what, stdout_events, |e| about(e, ports).len() >= n);
        wait_until(what, file_events, |e| about(e, ports).len() >= n);
    };

    let pa = a.port(0);
    both_have("A's start record", 1, &[pa]);
    let b = listener(0, false);
    let pb = b.port(0);
    both_have("B opened", 1, &[pb]);

    // logrotate: rename, then SIGHUP; what follows goes to a new file.
    std::fs::rename(&file, &rotated).expect("rotate");
    let hup = std::process::Command::new("kill")
        .args(["-HUP", &file_exporter.pid().to_string()])
        .status()
        .expect("kill -HUP");
    assert!(hup.success());
    wait_until("the file opened again", || file.exists(), |e| *e);

    drop(a);
    both_have("A closed", 2, &[pa]);
    // Handed over: D joins C's SO_REUSEPORT group, then C goes.
    let c = listener(0, true);
    let pc = c.port(0);
    let (c_pid, d) = (c.pid, listener(pc, true));
    both_have("C opened", 1, &[pc]);
    drop(c);
    both_have("C's port re-owned", 2, &[pc]);

    let ours = [pa, pb, pc];
    let expected = vec![
        ("port_listening".to_string(), u64::from(pa), u64::from(0u32)),
        ("port_opened".into(), u64::from(pb), u64::from(b.pid)),
        ("port_closed".into(), u64::from(pa), 0),
        ("port_opened".into(), u64::from(pc), u64::from(c_pid)),
        ("owner_changed".into(), u64::from(pc), u64::from(d.pid)),
    ];
    let check = |events: &[Value], source: &str| {
        let got = about(events, &ours);
        assert_eq!(got.len(), expected.len(), "{source}: {got:?}");
        for (g, w) in got.iter().zip(&expected) {
            assert_eq!(g.0, w.0, "{source}: {got:?}");
            assert_eq!(g.1, w.1, "{source}: {got:?}");
            if w.2 != 0 {
                assert_eq!(g.2, w.2, "{source}: {got:?}");
            }
        }
        let changed = events
            .iter()
            .find(|e| e["event"]["action"] == "owner_changed" && e["server"]["port"] == pc)
            .expect("owner_changed");
        assert_eq!(
            changed["previous"]["process"]["pid"],
            json!(c_pid),
            "{source}"
        );
        // Nothing lost, nothing twice: every sequence number once, in order.
        let seqs: Vec<u64> = events
            .iter()
            .map(|e| e["event"]["sequence"].as_u64().expect("sequence"))
            .collect();
        let first = seqs[0];
        assert_eq!(
            seqs,
            (first..first + seqs.len() as u64).collect::<Vec<_>>(),
            "{source}"
        );
    };
    check(&stdout_events(), "stdout");
    let from_file = file_events();
    check(&from_file, "the rotated file and the new one");
    assert!(
        !read_lines(&rotated).is_empty() && !read_lines(&file).is_empty(),
        "events on both sides of the rotation"
    );

    // The API: the same events, and `since` pages on from a sequence.
    let api = |q: &str| -> Value {
        let (head, body) = file_exporter
            .get(&format!("/api/v1/events{q}"))
            .expect("events API");
        assert!(head.contains(" 200 "), "{head}");
        serde_json::from_slice(&body).expect("JSON")
    };
    let all = api("?since=0");
    let events = all["events"].as_array().expect("events").clone();
    check(&events, "/api/v1/events");
    let closed_seq = events
        .iter()
        .find(|e| e["event"]["action"] == "port_closed" && e["server"]["port"] == pa)
        .and_then(|e| e["event"]["sequence"].as_u64())
        .expect("closed");
    let later = api(&format!("?since={closed_seq}"));
    assert!(
        later["events"]
            .as_array()
            .expect("events")
            .iter()
            .all(|e| e["event"]["sequence"].as_u64() > Some(closed_seq))
    );
    let (head, _) = file_exporter
        .get("/api/v1/events?since=yesterday")
        .expect("API");
    assert!(head.contains(" 400 "), "{head}");
    // Counted by action.
    let text = file_exporter.scrape();
    let count = |action: &str| {
        text.lines()
            .find(|l| {
                l.starts_with(&format!(
                    "portwarden_port_events_total{{action=\"{action}\"}}"
                ))
            })
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or_else(|| panic!("{action} counted in\n{text}"))
    };
    assert!(count("owner_changed") >= 1.0 && count("port_opened") >= 2.0);
    assert!(text.contains("portwarden_events_output_total{result=\"written\"}"));
    drop((stdout_exporter, file_exporter, b, d));
}

/// One field of a journald datagram, read by the native protocol's rules.
fn journal_fields(mut data: &[u8]) -> Vec<(String, Vec<u8>)> {
    let mut fields = Vec::new();
    while !data.is_empty() {
        let end = data
            .iter()
            .position(|&b| b == b'=' || b == b'\n')
            .expect("a field ends");
        let name = std::str::from_utf8(&data[..end]).expect("name").to_string();
        assert!(
            !name.is_empty()
                && !name.starts_with('_')
                && name.len() <= 64
                && name
                    .bytes()
                    .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_'),
            "a field name journald takes: {name:?}"
        );
        if data[end] == b'=' {
            let rest = &data[end + 1..];
            let nl = rest.iter().position(|&b| b == b'\n').expect("newline");
            fields.push((name, rest[..nl].to_vec()));
            data = &rest[nl + 1..];
        } else {
            let rest = &data[end + 1..];
            let len = u64::from_le_bytes(rest[..8].try_into().expect("length")) as usize;
            assert_eq!(rest[8 + len], b'\n', "a binary field ends with a newline");
            fields.push((name, rest[8..8 + len].to_vec()));
            data = &rest[9 + len..];
        }
    }
    fields
}

#[test]
fn journald_gets_one_native_datagram_per_event_and_a_name_cannot_forge_a_field() {
    let _serial = serial();
    if !is_root() {
        return cannot_run("needs root to see every owner");
    }
    let dir = TempDir::new("journal");
    let socket_path = dir.0.join("journal.sock");
    let journal = UnixDatagram::bind(&socket_path).expect("bind the journal's socket");
    journal
        .set_read_timeout(Some(Duration::from_secs(20)))
        .expect("timeout");
    // An executable whose path holds a newline and a field of its own.
    let evil_dir = dir.0.join("evil\nPRIORITY=0");
    std::fs::create_dir(&evil_dir).expect("mkdir");
    let exe = python_named(&evil_dir, "py");
    let holder = Holder::start_as(
        &exe,
        &json!({"sockets": [{"proto": "tcp", "addr": "127.0.0.1"}]}),
    );
    let port = holder.port(0).to_string();
    let _exporter = Exporter::start_with(
        &[
            "--events.output",
            "journald",
            "--events.journal-socket",
            socket_path.to_str().expect("path"),
        ],
        &[("ENABLE_HTTP_DETECTION", "false")],
    );
    let mut buf = vec![0u8; 256 * 1024];
    let deadline = Instant::now() + Duration::from_secs(20);
    let fields = loop {
        assert!(Instant::now() < deadline, "no datagram for port {port}");
        let n = journal.recv(&mut buf).expect("a datagram");
        let fields = journal_fields(&buf[..n]);
        let has = |k: &str, v: &str| fields.iter().any(|(n, x)| n == k && x == v.as_bytes());
        if has("PORTWARDEN_PORT", &port) {
            break fields;
        }
    };
    let all = |k: &str| -> Vec<String> {
        fields
            .iter()
            .filter(|(n, _)| n == k)
            .map(|(_, v)| String::from_utf8_lossy(v).into_owned())
            .collect()
    };
    assert_eq!(all("PRIORITY"), ["6"], "one PRIORITY, ours");
    assert_eq!(all("PORTWARDEN_ACTION"), ["port_listening"]);
    assert_eq!(all("MESSAGE_ID").len(), 1);
    assert_eq!(all("MESSAGE_ID")[0].len(), 32);
    assert_eq!(all("SYSLOG_IDENTIFIER"), ["portwarden"]);
    assert_eq!(all("PORTWARDEN_EXE"), [exe.to_str().expect("path")]);
    assert_eq!(all("OBJECT_PID"), [holder.pid.to_string()]);
    assert!(all("MESSAGE")[0].contains(&format!("127.0.0.1:{port}")));
    drop(holder);
}

#[test]
fn a_thousand_steady_ports_make_no_event_after_the_start() {
    let _serial = serial();
    if !is_root() {
        return cannot_run("needs root to see every owner");
    }
    let sockets: Vec<Value> = (0..1000)
        .map(|_| json!({"proto": "tcp", "addr": "127.0.0.1"}))
        .collect();
    let holder = Holder::start(&json!({ "sockets": sockets }));
    let exporter = Exporter::start(&[("ENABLE_HTTP_DETECTION", "false")]);
    let value = |text: &str, series: &str| -> f64 {
        text.lines()
            .find(|l| l.starts_with(series))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0.0)
    };
    let runs = |text: &str| {
        value(text, "portwarden_discovery_runs_total{kind=\"full\"}")
            + value(text, "portwarden_discovery_runs_total{kind=\"refresh\"}")
    };
    let start = exporter.wait_for(30, "the start records", |t| {
        value(t, "portwarden_port_events_total{action=\"port_listening\"}") >= 1000.0
    });
    let from = runs(&start);
    let text = exporter.wait_for(60, "ten more passes", |t| runs(t) >= from + 10.0);
    for action in ["port_opened", "port_closed", "owner_changed"] {
        assert_eq!(
            value(
                &text,
                &format!("portwarden_port_events_total{{action=\"{action}\"}}")
            ),
            0.0,
            "{action} over ten steady passes"
        );
    }
    drop(holder);
}
