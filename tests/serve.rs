//! `portwarden serve` end to end: real listeners and servers in child
//! processes, the real binary, scraped over loopback.

mod common;

use std::io::Read;
use std::process::Command;
use std::time::{Duration, Instant};

use common::*;
use serde_json::json;

#[test]
fn tcp_alive_then_zero_for_the_retention_then_gone() {
    let _serial = serial();
    let exporter = Exporter::start(&[
        ("PORTWARDEN_PORT_RETENTION", "3s"),
        ("ENABLE_HTTP_DETECTION", "false"),
    ]);
    let holder = Holder::start(&json!({"sockets": [{"proto": "tcp", "addr": "127.0.0.1"}]}));
    let port = holder.port(0);
    let text = exporter.wait_for(15, "alive 1", |t| {
        series_value(t, "node_tcp_port_alive", port) == Some(1.0)
    });
    let seconds =
        series_value(&text, "node_tcp_port_response_seconds", port).expect("response time");
    assert!(seconds > 0.0 && seconds < 0.5, "{seconds}");
    let exe = std::fs::read_link(format!("/proc/{}/exe", holder.pid)).expect("exe");
    let name = exe
        .file_name()
        .expect("name")
        .to_string_lossy()
        .into_owned();
    let line = format!(
        "node_tcp_port_alive{{process_name=\"{name}\",exe_path=\"{}\",port=\"{port}\",netns=\"host\"}} 1",
        exe.display()
    );
    assert!(text.lines().any(|l| l == line), "{line} not in:\n{text}");

    holder.stop();
    let gone_at = Instant::now();
    exporter.wait_for(15, "alive 0", |t| {
        series_value(t, "node_tcp_port_alive", port) == Some(0.0)
    });
    exporter.wait_for(20, "series gone", |t| {
        series_value(t, "node_tcp_port_alive", port).is_none()
    });
    assert!(
        gone_at.elapsed() >= Duration::from_secs(2),
        "went before the retention: {:?}",
        gone_at.elapsed()
    );
}

#[test]
fn http_detected_only_on_http_ports_and_zero_once_hung() {
    let _serial = serial();
    let exporter = Exporter::start(&[("PORT_HTTP_STATUS_INTERVAL", "500ms")]);
    let mut http = Server::start("http");
    let silent = Server::start("silent");
    exporter.wait_for(20, "http alive 1", |t| {
        series_value(t, "node_http_port_alive", http.port) == Some(1.0)
    });
    let text = exporter.wait_for(20, "silent port probed", |t| {
        series_value(t, "node_tcp_port_alive", silent.port) == Some(1.0)
            && t.contains("portwarden_probes_total{kind=\"http\",result=\"timeout\"}")
    });
    assert_eq!(
        series_value(&text, "node_http_port_alive", silent.port),
        None,
        "{text}"
    );

    http.hang();
    exporter.wait_for(20, "http alive 0", |t| {
        series_value(t, "node_http_port_alive", http.port) == Some(0.0)
    });
    // Still listening, still accepting: TCP says alive, HTTP says hung.
    let text = exporter.scrape();
    assert_eq!(
        series_value(&text, "node_tcp_port_alive", http.port),
        Some(1.0)
    );
}

#[test]
fn a_first_request_dropped_or_stalled_is_asked_again() {
    let _serial = serial();
    let exporter = Exporter::start(&[("PORT_HTTP_STATUS_INTERVAL", "500ms")]);
    let mut dropped = Server::start("drop-first");
    let mut stalled = Server::start("stall-first");
    // Closed without a word, or silent past the timeout: neither is the
    // last word. Both answer HTTP from their second request on.
    exporter.wait_for(20, "both http alive 1", |t| {
        series_value(t, "node_http_port_alive", dropped.port) == Some(1.0)
            && series_value(t, "node_http_port_alive", stalled.port) == Some(1.0)
    });
    for server in [&mut dropped, &mut stalled] {
        let asked = server.received();
        assert!(
            asked.iter().filter(|r| r.starts_with("GET / ")).count() >= 2,
            "{asked:?}"
        );
    }
    let text = exporter.scrape();
    assert!(text.contains("result=\"closed\""), "{text}");
    assert!(text.contains("result=\"timeout\""), "{text}");
}

#[test]
fn banner_servers_are_sent_nothing_and_redis_never_sees_host_or_post() {
    let _serial = serial();
    let mut banner = Server::start("banner");
    let mut redis = Server::start("redis");
    // TCP checks connect too: one round at start, the next in an hour.
    let exporter = Exporter::start(&[
        ("PORT_STATUS_INTERVAL", "1h"),
        ("PORT_UDP_STATUS_INTERVAL", "500ms"),
        ("PORT_HTTP_STATUS_INTERVAL", "500ms"),
    ]);
    exporter.wait_for(20, "both probed for HTTP", |t| {
        t.contains("result=\"banner\"") && t.contains("result=\"not_http\"")
    });
    // Eight more rounds: the banner server is not connected to again before
    // the next full rescan (an hour); Redis is asked again with a back-off
    // (after 1, 2 and 4 rounds), never every round.
    let text = exporter.wait_rounds("http", 8, 30);
    assert_eq!(
        series_value(&text, "node_http_port_alive", banner.port),
        None
    );
    assert_eq!(
        series_value(&text, "node_http_port_alive", redis.port),
        None
    );

    let to_banner = banner.received();
    assert_eq!(
        to_banner.len(),
        2,
        "not one TCP and one HTTP connection to the banner server: {to_banner:?}"
    );
    assert!(
        to_banner.iter().all(String::is_empty),
        "bytes sent to a server-first port: {to_banner:?}"
    );

    let to_redis = redis.received();
    let asked: Vec<&String> = to_redis.iter().filter(|r| !r.is_empty()).collect();
    assert!(
        (2..=5).contains(&asked.len()),
        "asked {} times in 8 rounds: {to_redis:?}",
        asked.len()
    );
    for request in asked {
        assert!(request.starts_with("GET / HTTP/1.0\r\n"), "{request:?}");
        assert!(
            !request.to_ascii_lowercase().contains("host:"),
            "{request:?}"
        );
        assert!(!request.contains("POST"), "{request:?}");
    }
}

#[test]
fn a_listener_with_a_full_accept_queue_is_not_asked_about_http() {
    let _serial = serial();
    // Never accepts; one connection fills a backlog of 0.
    let holder =
        Holder::start(&json!({"sockets": [{"proto": "tcp", "addr": "127.0.0.1", "backlog": 0}]}));
    let port = holder.port(0);
    let _queued = std::net::TcpStream::connect(("127.0.0.1", port)).expect("fill the queue");
    // One TCP round (an hour apart), discovery and HTTP rounds every 500 ms.
    let exporter = Exporter::start(&[
        ("PORT_STATUS_INTERVAL", "1h"),
        ("PORT_UDP_STATUS_INTERVAL", "500ms"),
        ("PORT_HTTP_STATUS_INTERVAL", "500ms"),
    ]);
    exporter.wait_for(20, "the TCP check's verdict", |t| {
        series_value(t, "node_tcp_port_alive", port) == Some(0.0)
    });
    let text = exporter.wait_rounds("http", 6, 30);
    // Every SYN to a full queue is dropped and counted on the listener:
    // the one TCP check's (and its retransmission), none of HTTP's.
    let drops = series_value(&text, "portwarden_tcp_listen_drops_total", port).expect("drops");
    assert!(
        drops <= 2.0,
        "{drops} SYNs dropped: HTTP asked a full queue\n{text}"
    );
    assert_eq!(series_value(&text, "node_http_port_alive", port), None);
}

#[test]
fn http_detection_can_be_switched_off() {
    let _serial = serial();
    let exporter = Exporter::start(&[("ENABLE_HTTP_DETECTION", "false")]);
    let mut http = Server::start("http");
    exporter.wait_for(20, "tcp checked", |t| {
        series_value(t, "node_tcp_port_alive", http.port) == Some(1.0)
    });
    let text = exporter.wait_rounds("tcp", 2, 20);
    assert!(!text.contains("kind=\"http\""), "{text}");
    assert_eq!(series_value(&text, "node_http_port_alive", http.port), None);
    // TCP checks send nothing.
    assert!(http.received().iter().all(String::is_empty));
}

#[test]
fn udp_one_while_bound_then_zero() {
    let _serial = serial();
    let exporter = Exporter::start(&[("ENABLE_HTTP_DETECTION", "false")]);
    let holder = Holder::start(&json!({"sockets": [{"proto": "udp", "addr": "::1"}]}));
    let port = holder.port(0);
    exporter.wait_for(15, "udp 1", |t| {
        series_value(t, "node_udp_port_alive", port) == Some(1.0)
    });
    holder.stop();
    exporter.wait_for(15, "udp 0", |t| {
        series_value(t, "node_udp_port_alive", port) == Some(0.0)
    });
}

#[test]
fn restarted_owner_takes_over_its_series() {
    let _serial = serial();
    let dir = TempDir::new("restart");
    let exe = python_named(&dir.0, "svc-daemon");
    let exporter = Exporter::start(&[("ENABLE_HTTP_DETECTION", "false")]);
    let alive = "node_process_alive{process_name=\"svc-daemon\"";
    let first = Holder::start_as(
        &exe,
        &json!({"sockets": [{"proto": "tcp", "addr": "127.0.0.1"}]}),
    );
    let port = first.port(0);
    exporter.wait_for(15, "first owner alive", |t| {
        t.contains(&format!("{alive},exe_path=\"{}\"}} 1", exe.display()))
            && series_value(t, "node_tcp_port_alive", port) == Some(1.0)
    });
    first.stop();
    exporter.wait_for(15, "owner dead", |t| {
        t.contains(&format!("{alive},exe_path=\"{}\"}} 0", exe.display()))
    });

    // The service comes back on the same port under a new pid.
    let second = Holder::start_as(
        &exe,
        &json!({"sockets": [{"proto": "tcp", "addr": "127.0.0.1", "port": port}]}),
    );
    assert_eq!(second.port(0), port);
    let text = exporter.wait_for(15, "new owner alive", |t| {
        t.contains(&format!("{alive},exe_path=\"{}\"}} 1", exe.display()))
            && series_value(t, "node_tcp_port_alive", port) == Some(1.0)
    });
    // One series for the process and one for the port: taken over, not doubled.
    assert_eq!(
        text.lines().filter(|l| l.starts_with(alive)).count(),
        1,
        "{text}"
    );
    let port_series = text
        .lines()
        .filter(|l| {
            l.starts_with("node_tcp_port_alive{") && l.contains(&format!("port=\"{port}\""))
        })
        .count();
    assert_eq!(port_series, 1, "{text}");
}

#[test]
fn scrapes_stay_fast_while_probes_time_out() {
    let _serial = serial();
    // Listeners whose accept queues are full: SYNs are dropped, connects hang
    // until the probe's timeout.
    let holder = Holder::start(
        &json!({"sockets": (0..40).map(|_| json!({"proto": "tcp", "addr": "127.0.0.1", "backlog": 0})).collect::<Vec<_>>()}),
    );
    let mut fillers = Vec::new();
    for i in 0..40 {
        let addr = std::net::SocketAddr::from(([127, 0, 0, 1], holder.port(i)));
        for _ in 0..3 {
            if let Ok(s) = std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(200)) {
                fillers.push(s);
            }
        }
    }
    let exporter = Exporter::start(&[("PORT_CHECK_TIMEOUT", "5s"), ("PORT_STATUS_INTERVAL", "1s")]);
    exporter.wait_for(15, "first discovery", |t| {
        t.contains("portwarden_last_discovery_timestamp_seconds")
    });
    // The first TCP round is now waiting on 40 connects that will time out.
    let mut slowest = Duration::ZERO;
    for _ in 0..20 {
        let t = Instant::now();
        let text = exporter.scrape();
        slowest = slowest.max(t.elapsed());
        assert!(text.contains("portwarden_build_info"));
        std::thread::sleep(Duration::from_millis(100));
    }
    // A probe takes 5 s here; a scrape must not wait for any.
    assert!(
        slowest < Duration::from_secs(1),
        "a scrape took {slowest:?}"
    );
    drop(fillers);
}

#[test]
fn exposition_passes_promtool_in_both_encodings() {
    let _serial = serial();
    let Ok(promtool) = Command::new("promtool").arg("--version").output() else {
        panic!("promtool is missing: apt-get install prometheus (bash .ci/run does)");
    };
    assert!(promtool.status.success());
    let dir = TempDir::new("promtool");
    // Hostile names must come through escaped.
    let exe = python_named(&dir.0, "we\"ird \\ näme");
    let _holder = Holder::start_as(
        &exe,
        &json!({"sockets": [{"proto": "tcp", "addr": "127.0.0.1"}, {"proto": "udp", "addr": "127.0.0.1"}]}),
    );
    let _http = Server::start("http");
    let exporter = Exporter::start(&[("PORT_HTTP_STATUS_INTERVAL", "500ms")]);
    let text = exporter.wait_for(20, "probes done", |t| {
        t.contains("node_http_port_alive{") && t.contains("we\\\"ird \\\\ näme")
    });
    let said = promtool_check(&text);
    assert!(said.is_empty(), "promtool: {said}");

    // Prometheus's own Accept header gets OpenMetrics; gzip when allowed.
    let accept = "application/openmetrics-text;version=1.0.0;q=0.5,text/plain;version=0.0.4;q=0.3";
    let (head, body) = http_get(
        exporter.addr,
        "/metrics",
        &[("Accept", accept), ("Accept-Encoding", "gzip")],
    )
    .expect("scrape");
    assert!(
        head.to_ascii_lowercase()
            .contains("content-type: application/openmetrics-text; version=1.0.0"),
        "{head}"
    );
    assert!(
        head.to_ascii_lowercase().contains("content-encoding: gzip"),
        "{head}"
    );
    let mut plain = String::new();
    flate2::read::GzDecoder::new(&body[..])
        .read_to_string(&mut plain)
        .expect("gunzip");
    assert!(plain.ends_with("# EOF\n"));
    assert!(plain.contains("# TYPE portwarden_probes counter\n"));
    assert!(plain.contains("portwarden_probes_total{"));

    let (head, _) = http_get(exporter.addr, "/metrics", &[]).expect("scrape");
    assert!(
        head.to_ascii_lowercase()
            .contains("content-type: text/plain; version=0.0.4"),
        "{head}"
    );
    let (_, landing) = http_get(exporter.addr, "/", &[]).expect("landing page");
    assert!(String::from_utf8_lossy(&landing).contains("href=\"/metrics\""));
}

#[test]
fn self_metrics_are_exported() {
    let _serial = serial();
    let exporter = Exporter::start(&[]);
    let text = exporter.wait_for(15, "a tcp round", |t| {
        t.contains("portwarden_last_probe_round_timestamp_seconds{kind=\"tcp\"}")
    });
    for family in [
        "portwarden_build_info{version=",
        "portwarden_ports{proto=\"tcp\"}",
        "portwarden_discovery_duration_seconds ",
        "portwarden_discovery_runs_total{kind=\"full\"}",
        "portwarden_probe_duration_seconds_bucket{kind=\"tcp\",le=\"+Inf\"}",
        "process_cpu_seconds_total ",
        "process_resident_memory_bytes ",
        "process_open_fds ",
        "process_max_fds ",
        "process_start_time_seconds ",
    ] {
        assert!(text.contains(family), "{family} missing:\n{text}");
    }
    // Its own port is not reported: portwarden is on the exclusion list.
    assert_eq!(
        series_value(&text, "node_tcp_port_alive", exporter.addr.port()),
        None
    );
    let _ = exporter.pid();
}

#[test]
fn bad_settings_exit_2_naming_the_setting() {
    let _serial = serial();
    let cases: &[(&str, &str, &str)] = &[
        (
            "PORTWARDEN_DISCOVERY_MAX_PORTS",
            "lots",
            "PORTWARDEN_DISCOVERY_MAX_PORTS: invalid number 'lots' (expected a whole number from 1 to 100000)",
        ),
        (
            "PORTWARDEN_WEB_MAX_REQUESTS",
            "-1",
            "PORTWARDEN_WEB_MAX_REQUESTS: invalid number",
        ),
        (
            "PORT_STATUS_INTERVAL",
            "banana",
            "PORT_STATUS_INTERVAL: invalid duration 'banana' (expected e.g. 30s, 1m, 8h)",
        ),
        (
            "PORT_HTTP_STATUS_INTERVAL",
            "5 minutes",
            "PORT_HTTP_STATUS_INTERVAL: invalid duration",
        ),
        (
            "PORT_UDP_STATUS_INTERVAL",
            "-1s",
            "PORT_UDP_STATUS_INTERVAL: invalid duration",
        ),
        (
            "PROCESS_ALIVE_STATUS_INTERVAL",
            "0s",
            "PROCESS_ALIVE_STATUS_INTERVAL: must be more than zero",
        ),
        (
            "PORT_LABEL_INTERVAL",
            "8",
            "PORT_LABEL_INTERVAL: invalid duration",
        ),
        (
            "PORT_CHECK_TIMEOUT",
            "1sec",
            "PORT_CHECK_TIMEOUT: invalid duration",
        ),
        (
            "MAX_PARALLEL_IP_CHECKS",
            "many",
            "MAX_PARALLEL_IP_CHECKS: invalid number 'many'",
        ),
        (
            "HTTP_DETECTION_CONCURRENCY",
            "-3",
            "HTTP_DETECTION_CONCURRENCY: invalid number",
        ),
        (
            "ENABLE_HTTP_DETECTION",
            "yes",
            "ENABLE_HTTP_DETECTION: invalid boolean 'yes'",
        ),
        (
            "EXCLUDED_PROCESS_NAMES",
            "a\u{1}b",
            "EXCLUDED_PROCESS_NAMES:",
        ),
        ("PROC_PREFIX", "/no/such/proc", "PROC_PREFIX"),
    ];
    for (env, value, message) in cases {
        let out = Command::new(bin())
            .env(env, value)
            .args(["--web.listen-address", "127.0.0.1:1"])
            .output()
            .expect("run");
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{env}={value}: {err}");
        assert!(err.contains(message), "{env}={value}: {err}");
    }
}

#[test]
fn a_taken_listen_port_exits_1_naming_the_address() {
    let _serial = serial();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = taken.local_addr().expect("addr").to_string();
    let out = Command::new(bin())
        .args(["serve", "--web.listen-address", &addr])
        .output()
        .expect("run");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains(&addr), "{err}");
}

#[test]
fn sigterm_shuts_down_cleanly() {
    let _serial = serial();
    let exporter = Exporter::start(&[]);
    let status = Command::new("kill")
        .args(["-TERM", &exporter.pid().to_string()])
        .status()
        .expect("kill");
    assert!(status.success());
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut exporter = exporter;
    loop {
        if let Some(status) = exporter.try_wait() {
            assert!(status.success(), "{status:?}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "still running 10 s after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn reuseport_listeners_in_one_process_are_one_info_series() {
    let _serial = serial();
    let holder = Holder::start(&json!({"sockets": [
        {"proto": "tcp", "addr": "127.0.0.1", "reuseport": true},
        {"proto": "tcp", "addr": "127.0.0.1", "reuseport": true, "port": "previous"},
    ]}));
    let port = holder.port(0);
    assert_eq!(holder.port(1), port);
    let exporter = Exporter::start(&[("ENABLE_HTTP_DETECTION", "false")]);
    let text = exporter.wait_for(20, "the port checked", |t| {
        series_value(t, "node_tcp_port_alive", port) == Some(1.0)
    });
    let label = format!("port=\"{port}\"");
    let info: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("portwarden_port_info{") && l.contains(&label))
        .collect();
    assert_eq!(info.len(), 1, "{info:#?}");
    // And no family anywhere has a label set twice.
    let mut seen = std::collections::HashSet::new();
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let series = line.rsplit_once(' ').map_or(line, |(s, _)| s);
        assert!(seen.insert(series), "twice: {series}");
    }
}

#[test]
fn sighups_right_after_start_are_reloads_not_deaths() {
    let _serial = serial();
    let state = TempDir::new("hup");
    for attempt in 0..8 {
        let addr = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port");
        let mut child = Command::new(bin())
            .args(["serve", "--web.listen-address", &addr.to_string()])
            .env("PORTWARDEN_STATE_DIR", &state.0)
            .env("ENABLE_HTTP_DETECTION", "false")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("start portwarden serve");
        let pid = rustix::process::Pid::from_raw(child.id() as i32).expect("pid");
        // As `systemctl reload` right after start would: 20 at once, as
        // soon as the process runs code of its own. No program can take a
        // signal while the kernel and the dynamic loader still set it up;
        // the first thing the Rust runtime does before `main` is to ignore
        // SIGPIPE, so by then SIGHUP must be taken (before this fix it was
        // taken only once the server ran, ~5 ms later).
        let spawned = Instant::now();
        while !started_running(child.id()) {
            assert!(spawned.elapsed() < Duration::from_secs(5), "never started");
            std::hint::spin_loop();
        }
        for _ in 0..20 {
            let _ = rustix::process::kill_process(pid, rustix::process::Signal::HUP);
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while http_get(addr, "/-/healthy", &[]).is_err() {
            if let Ok(Some(status)) = child.try_wait() {
                panic!("attempt {attempt}: ended by SIGHUP: {status}");
            }
            assert!(
                Instant::now() < deadline,
                "attempt {attempt}: never healthy"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        assert!(
            child.try_wait().expect("wait").is_none(),
            "attempt {attempt}"
        );
        let _ = child.kill();
        let _ = child.wait();
    }
}

/// Whether process `pid` runs code of its own: it takes SIGHUP (bit 1 of
/// SigCgt) or ignores SIGPIPE (bit 13 of SigIgn, the Rust runtime's first
/// act).
fn started_running(pid: u32) -> bool {
    let Ok(status) = std::fs::read_to_string(format!("/proc/{pid}/status")) else {
        return false;
    };
    let mask = |key: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|m| u64::from_str_radix(m.trim(), 16).ok())
            .unwrap_or(0)
    };
    mask("SigCgt:") & 1 != 0 || mask("SigIgn:") & (1 << 12) != 0
}
