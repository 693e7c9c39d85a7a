//! Trust under load: no caller of `/probe` can starve the host's own
//! checks; a round that stops completing, or a check that panics, turns
//! `/-/healthy` red instead of freezing its ports' last values; a thread the
//! OS refuses is fewer workers (or a check not tried, counted as ours), never
//! a crash or a false `down`; slow readers pin a bounded amount of memory;
//! `/probe` and redirects never reach link-local addresses unless told to.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::*;
use serde_json::Value;

/// A GET with `headers`, its whole answer read within `wait`: the status
/// code (0: no answer).
fn status_of(addr: SocketAddr, path: &str, headers: &[(&str, &str)], wait: Duration) -> u16 {
    let Ok(mut stream) = TcpStream::connect_timeout(&addr, Duration::from_secs(2)) else {
        return 0;
    };
    let _ = stream.set_read_timeout(Some(wait));
    let mut request = format!("GET {path} HTTP/1.0\r\nHost: test\r\n");
    for (k, v) in headers {
        request.push_str(&format!("{k}: {v}\r\n"));
    }
    request.push_str("\r\n");
    if stream.write_all(request.as_bytes()).is_err() {
        return 0;
    }
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    String::from_utf8_lossy(&answer)
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0)
}

/// Seconds since the last round of `kind` completed, as the exporter says.
fn round_age(text: &str, kind: &str) -> Option<f64> {
    let key = format!("portwarden_last_probe_round_timestamp_seconds{{kind=\"{kind}\"}} ");
    let at: f64 = text
        .lines()
        .find_map(|l| l.strip_prefix(key.as_str()))?
        .trim()
        .parse()
        .ok()?;
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_secs_f64();
    Some(now - at)
}

fn value(text: &str, line_start: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(line_start))
        .and_then(|v| v.trim().parse().ok())
}

#[test]
fn a_flood_of_slow_probes_never_delays_the_hosts_checks() {
    let _serial = serial();
    let sim = Sim::start(&[
        "--procs", "1", "--tcp", "50", "--udp", "0", "--fds", "0", "--accept",
    ]);
    let ports = sim.ports();
    // Accepts, never answers: every probe of it lasts its whole timeout.
    let silent = Server::start("silent");
    let exporter = Exporter::start(&[
        ("PORT_STATUS_INTERVAL", "2s"),
        ("ENABLE_HTTP_DETECTION", "false"),
        ("PORTWARDEN_WEB_PROBE", "true"),
    ]);
    exporter.wait_for(20, "every port alive", |t| {
        ports
            .iter()
            .all(|&p| series_value(t, "node_tcp_port_alive", p) == Some(1.0))
    });
    let stop = Arc::new(AtomicBool::new(false));
    let (ok, busy) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let path = format!("/probe?module=http_2xx&target=127.0.0.1:{}", silent.port);
    let flood: Vec<_> = (0..300)
        .map(|_| {
            let (stop, ok, busy, path) = (stop.clone(), ok.clone(), busy.clone(), path.clone());
            let addr = exporter.addr;
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    match status_of(
                        addr,
                        &path,
                        &[("X-Prometheus-Scrape-Timeout-Seconds", "20")],
                        Duration::from_secs(30),
                    ) {
                        200 => ok.fetch_add(1, Ordering::Relaxed),
                        503 => {
                            std::thread::sleep(Duration::from_secs(1));
                            busy.fetch_add(1, Ordering::Relaxed)
                        }
                        _ => 0,
                    };
                }
            })
        })
        .collect();
    // 30 s of the flood: the TCP round is never more than two intervals
    // old, every port that accepts reads alive, and /metrics answers.
    let until = Instant::now() + Duration::from_secs(30);
    let mut scrapes = 0;
    while Instant::now() < until {
        let asked = Instant::now();
        let (head, body) = exporter.get("/metrics").expect("a scrape answers");
        assert!(head.contains(" 200 "), "{head}");
        assert!(asked.elapsed() < Duration::from_secs(2), "a slow scrape");
        let text = String::from_utf8(body).expect("utf-8");
        let age = round_age(&text, "tcp").expect("a TCP round");
        assert!(age <= 4.0, "the last TCP round ended {age:.1} s ago");
        let dead: Vec<u16> = ports
            .iter()
            .copied()
            .filter(|&p| series_value(&text, "node_tcp_port_alive", p) != Some(1.0))
            .collect();
        assert!(dead.is_empty(), "read down while they accept: {dead:?}");
        let (head, _) = exporter.get("/-/healthy").expect("healthy");
        assert!(head.contains(" 200 "), "{head}");
        scrapes += 1;
        std::thread::sleep(Duration::from_millis(500));
    }
    stop.store(true, Ordering::Relaxed);
    assert!(scrapes >= 40, "{scrapes} scrapes");
    // The budget was spent (503s, at once) and probes did run.
    assert!(busy.load(Ordering::Relaxed) > 300, "{busy:?} answered 503");
    let text = exporter.scrape();
    assert!(
        value(
            &text,
            "portwarden_http_requests_refused_total{budget=\"probes\"} "
        )
        .is_some_and(|n| n > 300.0),
        "refusals counted"
    );
    drop(exporter);
    for t in flood {
        let _ = t.join();
    }
    assert!(ok.load(Ordering::Relaxed) > 0 || busy.load(Ordering::Relaxed) > 0);
}

#[test]
fn rounds_that_stop_completing_turn_healthy_red() {
    let _serial = serial();
    // The third TCP round stalls for good (a debug build's fault point).
    let exporter = Exporter::start(&[
        ("PORT_STATUS_INTERVAL", "1s"),
        ("ENABLE_HTTP_DETECTION", "false"),
        ("PORTWARDEN_FAULT", "stall:tcp:3"),
    ]);
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (head, body) = exporter.get("/-/healthy").expect("healthy");
        if head.contains(" 503 ") {
            let why = String::from_utf8_lossy(&body);
            assert!(
                why.contains("the tcp rounds are stale: nothing of theirs completed for")
                    && why.contains("3 x their interval"),
                "{why}"
            );
            break;
        }
        assert!(
            Instant::now() < deadline,
            "still healthy with the TCP rounds stalled"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    // Discovery goes on: the rounds alone are named.
    let text = exporter.scrape();
    assert!(round_age(&text, "tcp").is_some_and(|a| a > 3.0), "{text}");
}

#[test]
fn a_panic_inside_one_check_of_a_paced_round_is_seen() {
    let _serial = serial();
    let sim = Sim::start(&[
        "--procs", "1", "--tcp", "500", "--udp", "0", "--fds", "0", "--accept",
    ]);
    assert_eq!(sim.ports().len(), 500);
    // 500 checks paced over 5 s; the 250th panics while later ones start.
    let mut exporter = Exporter::start(&[
        ("PORT_STATUS_INTERVAL", "10s"),
        ("ENABLE_HTTP_DETECTION", "false"),
        ("PORTWARDEN_FAULT", "panic:tcp-check:250"),
    ]);
    let deadline = Instant::now() + Duration::from_secs(40);
    let mut said = None;
    let status = loop {
        if let Some(status) = exporter.try_wait() {
            break status;
        }
        if let Ok((head, body)) = exporter.get("/-/healthy")
            && head.contains(" 503 ")
        {
            said = Some(String::from_utf8_lossy(&body).into_owned());
        }
        assert!(
            Instant::now() < deadline,
            "the check's panic was lost: still running and healthy"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(status.code(), Some(1), "exits 1 for its supervisor");
    let said = said.expect("/-/healthy said why before the exit");
    assert!(said.contains("the TCP rounds panicked"), "{said}");
}

/// A uid of the test's own: RLIMIT_NPROC counts every process of a uid.
const UID: &str = "64123";

#[test]
fn refused_threads_mean_fewer_workers_not_a_crash() {
    let _serial = serial();
    if !is_root() {
        return cannot_run("needs root to run the exporter as another user");
    }
    let state = TempDir::new("nproc-state");
    assert!(
        Command::new("chown")
            .args([UID, state.0.to_str().expect("utf-8")])
            .status()
            .expect("chown")
            .success()
    );
    // Eight tasks: the exporter's long-lived threads (main and the
    // runtime's, four in all; the state's owner, discovery, the baseline's
    // writer, the events' writer — it keeps the record of changes in the
    // state directory) and no more, so every worker a discovery pass asks
    // for is refused.
    let mut cmd = Command::new("prlimit");
    cmd.args(["--nproc=8:8", "--", "setpriv"])
        .arg(format!("--reuid={UID}"))
        .arg(format!("--regid={UID}"))
        .arg("--clear-groups")
        .arg(bin());
    let mut exporter = Exporter::start_cmd(
        cmd,
        &[
            ("PORTWARDEN_STATE_DIR", state.0.to_str().expect("utf-8")),
            ("ENABLE_HTTP_DETECTION", "false"),
        ],
    );
    let runs = |t: &str| {
        value(t, "portwarden_discovery_runs_total{kind=\"full\"} ").unwrap_or(0.0)
            + value(t, "portwarden_discovery_runs_total{kind=\"refresh\"} ").unwrap_or(0.0)
    };
    let text = exporter.wait_for(20, "a refused thread counted", |t| {
        value(
            t,
            "portwarden_discovery_errors_total{reason=\"thread_refused\"} ",
        )
        .is_some_and(|n| n > 0.0)
    });
    let before = runs(&text);
    exporter.wait_for(20, "more discovery passes", |t| runs(t) >= before + 5.0);
    assert!(exporter.try_wait().is_none(), "still running");
    let (head, _) = exporter.get("/-/healthy").expect("healthy");
    assert!(head.contains(" 200 "), "{head}");
}

/// A pids cgroup (v1) of the test's own, limits set as it goes, removed
/// on drop once empty.
struct Pids(std::path::PathBuf);

impl Pids {
    fn new(tag: &str) -> Option<Pids> {
        let dir = std::path::PathBuf::from(format!(
            "/sys/fs/cgroup/pids/portwarden-{tag}-{}",
            std::process::id()
        ));
        std::fs::create_dir(&dir).ok()?;
        Some(Pids(dir))
    }

    fn set(&self, file: &str, value: &str) {
        std::fs::write(self.0.join(file), value).expect("write the cgroup");
    }
}

impl Drop for Pids {
    fn drop(&mut self) {
        let _ = std::fs::write(self.0.join("pids.max"), "max");
        for _ in 0..50 {
            if std::fs::remove_dir(&self.0).is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// Accepts and closes every connection; prints its port.
const ACCEPTING: &str = r#"
import socket
s = socket.socket()
s.bind(("127.0.0.1", 0))
s.listen(64)
print(s.getsockname()[1], flush=True)
while True:
    s.accept()[0].close()
"#;

#[test]
fn a_thread_refused_for_a_namespace_check_is_ours_not_the_ports() {
    let _serial = serial();
    if !is_root() {
        return cannot_run("needs root for network namespaces and cgroups");
    }
    let Some(pids) = Pids::new("eagain") else {
        return cannot_run("cannot create a cgroup under /sys/fs/cgroup/pids");
    };
    let ns = TestNetns::new("eagain");
    // A listener in the namespace that accepts (and closes) every
    // connection: one that never accepts would fill its queue, and be hung.
    let mut cmd = Command::new("ip");
    cmd.args(["netns", "exec", &ns.0, "python3", "-c", ACCEPTING]);
    let (holder, port) = serving(cmd);
    // The exporter joins the cgroup before it starts.
    let mut cmd = Command::new("sh");
    cmd.arg("-c")
        .arg(format!(
            "echo $$ > {}/cgroup.procs && exec \"$0\" \"$@\"",
            pids.0.display()
        ))
        .arg(bin());
    let exporter = Exporter::start_cmd(
        cmd,
        &[
            ("PORT_STATUS_INTERVAL", "1s"),
            ("ENABLE_HTTP_DETECTION", "false"),
        ],
    );
    exporter.wait_for(20, "the namespace's port alive", |t| {
        series_value(t, "node_tcp_port_alive", port) == Some(1.0)
    });
    // No new thread at all (those running stay): each check into the
    // namespace needs one, and so would discovery's workers.
    pids.set("pids.max", "1");
    let errors = |t: &str| {
        value(t, "portwarden_probes_total{kind=\"tcp\",result=\"error\"} ").unwrap_or(0.0)
    };
    // Every scrape meanwhile: the port keeps its last value (and its
    // discovery, on fewer threads), the lack is ours.
    exporter.wait_for(20, "checks not tried, counted as ours", |t| {
        assert_eq!(
            series_value(t, "node_tcp_port_alive", port),
            Some(1.0),
            "a false down: {t}"
        );
        errors(t) >= 5.0
    });
    let text = exporter.scrape();
    assert!(
        value(
            &text,
            "portwarden_discovery_errors_total{reason=\"thread_refused\"} "
        )
        .is_some_and(|n| n > 0.0),
        "{text}"
    );
    pids.set("pids.max", "max");
    drop(exporter);
    drop(holder);
}

/// A client that asks for `path` and never reads, with a small receive
/// buffer: the answer waits in the exporter.
fn never_reading(addr: SocketAddr, path: &str) -> Option<std::os::fd::OwnedFd> {
    use rustix::net::{AddressFamily, SocketType, sockopt};
    let fd = rustix::net::socket(AddressFamily::INET, SocketType::STREAM, None).ok()?;
    sockopt::set_socket_recv_buffer_size(&fd, 4096).ok()?;
    rustix::net::connect(&fd, &addr).ok()?;
    let request = format!("GET {path} HTTP/1.1\r\nHost: test\r\n\r\n");
    rustix::io::write(&fd, request.as_bytes()).ok()?;
    Some(fd)
}

#[test]
fn slow_readers_pin_a_bounded_amount_of_memory() {
    let _serial = serial();
    // The busy host: 10,000 TCP listeners, 1,000 UDP sockets.
    let _sim = Sim::start(&["--procs", "500", "--tcp", "20", "--udp", "2", "--fds", "0"]);
    let exporter = Exporter::start(&[
        ("PORT_STATUS_INTERVAL", "15s"),
        ("PROCESS_ALIVE_STATUS_INTERVAL", "15s"),
        ("ENABLE_HTTP_DETECTION", "false"),
    ]);
    // (10,000 sockets are fewer port series: some share a number.)
    exporter.wait_for(60, "the busy host discovered", |t| {
        value(t, "portwarden_ports{proto=\"tcp\"} ").is_some_and(|n| n >= 5_000.0)
    });
    let pid = exporter.pid();
    let before = status_bytes(pid, "VmRSS");
    // 400 clients, half asking for the page with the most rows it gives,
    // half for the API: none reads a byte.
    let mut clients = Vec::new();
    for i in 0..400 {
        let path = if i % 2 == 0 {
            "/?limit=20000"
        } else {
            "/api/v1/ports?limit=20000"
        };
        clients.extend(never_reading(exporter.addr, path));
    }
    assert!(clients.len() >= 390, "{} clients connected", clients.len());
    let mut most = 0;
    let until = Instant::now() + Duration::from_secs(20);
    while Instant::now() < until {
        most = most.max(status_bytes(pid, "VmRSS"));
        let asked = Instant::now();
        let (head, _) = exporter.get("/metrics").expect("a scrape answers");
        assert!(head.contains(" 200 "), "{head}");
        assert!(asked.elapsed() < Duration::from_secs(5), "a slow scrape");
        std::thread::sleep(Duration::from_millis(250));
    }
    let text = exporter.scrape();
    drop(clients);
    eprintln!(
        "RSS before {:.1} MB, most {:.1} MB with 400 readers that never read",
        before as f64 / 1e6,
        most as f64 / 1e6
    );
    // The README's bound is for what is deployed, an optimized build (CI
    // runs this test again on the static binary); a debug build's figures
    // are larger, so here only its growth is bounded. What the design lets
    // pin: RENDERS bodies a reader left unread (a 12 MB page, a 7.7 MB
    // answer here) and the render of each. Measured at a93bdb1: the release
    // build grows by 42 MB at most, the debug build by 66-94 MB (its
    // renders hold more at once and last longer, so a sample catches them);
    // a body kept per refused reader would add gigabytes.
    if std::env::var_os("PORTWARDEN_BIN").is_some() || !cfg!(debug_assertions) {
        assert!(
            most < 100_000_000,
            "RSS reached {most} bytes (README's bound: 100 MB)"
        );
    } else {
        assert!(
            most - before < 120_000_000,
            "RSS grew by {} bytes (a debug build's bound: 120 MB)",
            most - before
        );
    }
    assert!(
        value(
            &text,
            "portwarden_http_requests_refused_total{budget=\"renders\"} "
        )
        .is_some_and(|n| n >= 300.0),
        "the renders past the budget were refused"
    );
}

/// A small HTTP server in a namespace: `redirect` answers 302 to
/// `LOCATION`, `ok` answers 200.
const HTTP: &str = r#"
import sys
from http.server import BaseHTTPRequestHandler, HTTPServer
mode, addr, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
location = sys.argv[4] if len(sys.argv) > 4 else ""
class H(BaseHTTPRequestHandler):
    def log_message(self, *a): pass
    def do_GET(self):
        if mode == "redirect":
            self.send_response(302)
            self.send_header("Location", location)
        else:
            self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()
HTTPServer((addr, port), H).serve_forever()
"#;

#[test]
fn a_redirect_to_a_link_local_address_is_not_followed_unless_allowed() {
    let _serial = serial();
    if !is_root() {
        return cannot_run("needs root for a network namespace");
    }
    // The metadata address lives in the test's own namespace, on its
    // loopback: nothing leaves it.
    let ns = TestNetns::new("metadata");
    assert!(
        Command::new("ip")
            .args([
                "netns",
                "exec",
                &ns.0,
                "ip",
                "addr",
                "add",
                "169.254.169.254/32",
                "dev",
                "lo"
            ])
            .status()
            .expect("ip")
            .success()
    );
    let in_ns = |args: &[&str]| {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &ns.0]).args(args);
        cmd
    };
    let _metadata = Killed(
        in_ns(&["python3", "-c", HTTP, "ok", "169.254.169.254", "8080"])
            .spawn()
            .expect("metadata server"),
    );
    let _redirect = Killed(
        in_ns(&[
            "python3",
            "-c",
            HTTP,
            "redirect",
            "127.0.0.1",
            "8081",
            "http://169.254.169.254:8080/latest/meta-data/",
        ])
        .spawn()
        .expect("redirect server"),
    );
    let check = |extra: &[&str]| -> (Option<i32>, Value) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let mut cmd = in_ns(&[]);
            cmd.arg(bin())
                .args(["check", "--json", "http://127.0.0.1:8081/"])
                .args(extra);
            let out = cmd.output().expect("check");
            let rows: Value = serde_json::from_slice(&out.stdout).expect("JSON");
            // The servers may still be starting: refused is not the answer.
            if rows[0]["reason"] != "refused" || Instant::now() > deadline {
                return (out.status.code(), rows[0].clone());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    };
    let (code, row) = check(&[]);
    assert_eq!(code, Some(1), "{row}");
    assert_eq!(row["reason"], "denied", "{row}");
    let (code, row) = check(&["--probe.deny", ""]);
    assert_eq!(code, Some(0), "{row}");
    assert_eq!(row["success"], true, "{row}");

    // /probe: the target itself may not be link-local (403), nor outside
    // the allow list; a redirect there fails the probe.
    let mut cmd = in_ns(&[]);
    cmd.arg(bin())
        .args(["serve", "--web.probe", "--web.probe-allow", "127.0.0.0/8"]);
    let exporter = Exporter::start_cmd_in(cmd, &ns.0, &[("ENABLE_HTTP_DETECTION", "false")]);
    let (head, body) = exporter
        .get("/probe?module=http_2xx&target=http://169.254.169.254:8080/")
        .expect("probe");
    assert!(head.contains(" 403 "), "{head}");
    assert!(
        String::from_utf8_lossy(&body).contains("in the deny list (--probe.deny)"),
        "{}",
        String::from_utf8_lossy(&body)
    );
    let (head, body) = exporter
        .get("/probe?module=http_2xx&target=http://127.0.0.1:8081/")
        .expect("probe");
    assert!(head.contains(" 200 "), "{head}");
    let text = String::from_utf8_lossy(&body);
    assert!(
        text.contains("probe_success 0") && text.contains("probe_http_redirects 1"),
        "{text}"
    );
}

#[test]
fn a_server_that_accepts_and_resets_is_closed_not_unreachable() {
    const RESET: &str = r#"
import socket, struct
s = socket.socket()
s.bind(("127.0.0.1", 0))
s.listen(16)
print(s.getsockname()[1], flush=True)
while True:
    c, _ = s.accept()
    c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    c.close()
"#;
    let mut cmd = Command::new("python3");
    cmd.args(["-c", RESET]);
    let (_server, port) = serving(cmd);
    let out = run(
        &[
            "check",
            "--json",
            &format!("127.0.0.1:{port}"),
            &format!("http://127.0.0.1:{port}/"),
        ],
        &[],
    );
    let rows: Vec<Value> = serde_json::from_slice(&out.stdout).expect("JSON");
    // A connect can complete before the reset comes: then it succeeded.
    assert!(
        rows[0]["success"] == true || rows[0]["reason"] == "closed",
        "{}",
        rows[0]
    );
    // A request on it always meets the reset.
    assert_eq!(rows[1]["reason"], "closed", "{}", rows[1]);
}

#[test]
fn a_handler_that_panics_is_answered_500_and_counted() {
    let _serial = serial();
    // The third scrape's handler panics (a debug build's fault point).
    let exporter = Exporter::start(&[
        ("ENABLE_HTTP_DETECTION", "false"),
        ("PORTWARDEN_FAULT", "panic:scrape:3"),
    ]);
    let codes: Vec<u16> = (0..4)
        .map(|_| status_of(exporter.addr, "/metrics", &[], Duration::from_secs(10)))
        .collect();
    assert_eq!(codes, [200, 200, 500, 200], "answered, the connection kept");
    let text = exporter.wait_for(10, "the panic counted", |t| {
        value(t, "portwarden_http_handler_panics_total ") == Some(1.0)
    });
    assert!(text.contains("node_tcp_port_alive"), "serving on: {text}");
    let (head, _) = exporter.get("/-/healthy").expect("healthy");
    assert!(
        head.contains(" 200 "),
        "a request's bug is not the engine's: {head}"
    );
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(200))]
    /// Whatever a client sends as Prometheus's timeout header, `/probe`
    /// answers (400 for what is not seconds), and never panics.
    #[test]
    fn no_timeout_header_panics_probe(
        bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..32),
        number in proptest::num::f64::ANY,
    ) {
        use tower_service::Service;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        runtime.block_on(async {
            let shared = std::sync::Arc::new(portwarden::engine::Shared::new(
                portwarden::collectors::Collectors::default(),
                Duration::from_secs(60),
            ));
            let mut app = portwarden::server::app(
                shared,
                Some(portwarden::server::ProbeLimits {
                    concurrency: 4,
                    max_timeout: Duration::from_millis(200),
                    destinations: Default::default(),
                }),
                "/metrics",
                0,
                false,
            );
            let values = [bytes.clone(), number.to_string().into_bytes()];
            for value in values {
                let Ok(value) = axum::http::HeaderValue::from_bytes(&value) else {
                    continue;
                };
                let request = axum::http::Request::get("/probe?module=tcp_connect&target=127.0.0.1:1")
                    .header("X-Prometheus-Scrape-Timeout-Seconds", value)
                    .body(axum::body::Body::empty())
                    .expect("request");
                let response = app.call(request).await.expect("infallible");
                let code = response.status().as_u16();
                proptest::prop_assert!(code == 200 || code == 400, "{code}");
            }
            Ok(())
        })?;
    }
}
