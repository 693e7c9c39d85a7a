//! The HTTP server's limits, against a real `portwarden serve`: a client
//! cannot hold it with slow headers, an idle kept-alive connection, an
//! unread response, oversized heads, bodies or a crowd of connections.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::{Exporter, Holder};
use serde_json::json;

const TIMEOUT: &str = "1s";

fn connect(exporter: &Exporter) -> TcpStream {
    let s = TcpStream::connect(exporter.addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(15)))
        .expect("read timeout");
    s
}

/// Reads until the server closes; what it sent.
fn read_all(s: &mut TcpStream) -> Vec<u8> {
    let mut out = Vec::new();
    let mut buf = [0u8; 65536];
    loop {
        match s.read(&mut buf) {
            Ok(0) | Err(_) => return out,
            Ok(n) => out.extend_from_slice(&buf[..n]),
        }
    }
}

fn status(raw: &[u8]) -> Option<u16> {
    let line = raw.split(|b| *b == b'\n').next()?;
    std::str::from_utf8(line)
        .ok()?
        .split(' ')
        .nth(1)?
        .parse()
        .ok()
}

#[test]
fn slow_headers_and_idle_connections_are_closed() {
    let exporter = Exporter::start(&[("PORTWARDEN_WEB_REQUEST_TIMEOUT", TIMEOUT)]);
    // Headers a byte at a time, never finished: closed, never answered 200.
    let mut s = connect(&exporter);
    s.set_read_timeout(Some(Duration::from_millis(200)))
        .expect("timeout");
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n")
        .expect("send");
    let started = Instant::now();
    let mut closed = None;
    while started.elapsed() < Duration::from_secs(20) {
        if s.write_all(b"X-Slow: y\r\n").is_err() {
            closed = Some(started.elapsed());
            break;
        }
        let mut buf = [0u8; 512];
        match s.read(&mut buf) {
            Ok(0) => {
                closed = Some(started.elapsed());
                break;
            }
            Ok(n) => assert_ne!(
                status(&buf[..n]),
                Some(200),
                "answered a request never finished"
            ),
            Err(_) => {}
        }
    }
    let closed = closed.expect("a client sending headers for 20 s was never cut off");
    assert!(
        closed < Duration::from_secs(10),
        "slow headers held the connection {closed:?}"
    );

    // Kept alive after one request, then idle: closed after the timeout.
    let mut s = connect(&exporter);
    s.write_all(b"GET /-/healthy HTTP/1.1\r\nHost: x\r\n\r\n")
        .expect("send");
    let mut buf = [0u8; 4096];
    let n = s.read(&mut buf).expect("answer");
    assert_eq!(status(&buf[..n]), Some(200));
    let idle = Instant::now();
    let rest = read_all(&mut s);
    assert!(rest.is_empty() || status(&rest) == Some(408), "{rest:?}");
    assert!(
        idle.elapsed() < Duration::from_secs(10),
        "idle connection kept {:?}",
        idle.elapsed()
    );
}

#[test]
fn oversized_heads_and_bodies_are_refused() {
    let exporter = Exporter::start(&[]);
    let big = format!(
        "GET /metrics HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n",
        "a".repeat(20_000)
    );
    let many: String = (0..100).map(|i| format!("X-H{i}: v\r\n")).collect();
    let many = format!("GET /metrics HTTP/1.1\r\nHost: x\r\n{many}\r\n");
    for (what, request) in [("20 KB header", big), ("100 headers", many)] {
        let mut s = connect(&exporter);
        let _ = s.write_all(request.as_bytes());
        let answer = read_all(&mut s);
        assert_eq!(
            status(&answer),
            Some(431),
            "{what}: {:?}",
            String::from_utf8_lossy(&answer)
        );
    }
    // A body announced: refused before it is sent.
    for header in ["Content-Length: 10000000", "Transfer-Encoding: chunked"] {
        let mut s = connect(&exporter);
        s.write_all(format!("POST /metrics HTTP/1.1\r\nHost: x\r\n{header}\r\n\r\n").as_bytes())
            .expect("send");
        let mut buf = [0u8; 4096];
        let n = s.read(&mut buf).expect("answer");
        assert_eq!(status(&buf[..n]), Some(413), "{header}");
    }
    // And the server still serves.
    let (head, _) = common::http_get(exporter.addr, "/metrics", &[]).expect("scrape");
    assert!(
        head.starts_with("HTTP/1.1 200") || head.starts_with("HTTP/1.0 200"),
        "{head}"
    );
}

#[test]
fn a_client_that_does_not_read_loses_the_connection() {
    // Enough listeners for a response larger than the kernel buffers
    // between server and client can hold (the server's send buffer grows to
    // tcp_wmem's 4 MB at most; the client's window stays small).
    // (Four holders: one's list of 6,000 would pass the argv size limit.)
    let sockets: Vec<_> = (0..1500)
        .map(|_| json!({"proto": "tcp", "addr": "127.0.0.1"}))
        .collect();
    let holders: Vec<Holder> = (0..4)
        .map(|_| Holder::start(&json!({ "sockets": sockets })))
        .collect();
    let exporter = Exporter::start(&[("PORTWARDEN_WEB_REQUEST_TIMEOUT", "2s")]);
    let last = holders[3].port(1499);
    exporter.wait_for(30, "the listeners", |t| {
        common::series_value(t, "node_tcp_port_alive", last).is_some()
    });
    let full = exporter.scrape().len();
    assert!(full > 7_000_000, "exposition only {full} bytes");

    // A small receive buffer, set before connecting so the window stays small.
    use rustix::net::{AddressFamily, SocketType, sockopt};
    let fd = rustix::net::socket(AddressFamily::INET, SocketType::STREAM, None).expect("socket");
    sockopt::set_socket_recv_buffer_size(&fd, 4096).expect("SO_RCVBUF");
    rustix::net::connect(&fd, &exporter.addr).expect("connect");
    let mut s = TcpStream::from(fd);
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .expect("send");
    std::thread::sleep(Duration::from_secs(6));
    s.set_read_timeout(Some(Duration::from_secs(15)))
        .expect("timeout");
    let got = read_all(&mut s);
    assert_eq!(status(&got), Some(200));
    // What the kernel had buffered arrives; the rest was never written.
    assert!(
        got.len() < full - 2_000_000,
        "the server kept writing to a client that did not read: {} of {full} bytes",
        got.len()
    );
    // Others are served meanwhile and after.
    assert!(exporter.scrape().len() > 7_000_000);
    holders.into_iter().for_each(Holder::stop);
}

#[test]
fn idle_connections_never_lock_a_scrape_out() {
    let exporter = Exporter::start(&[("PORTWARDEN_WEB_REQUEST_TIMEOUT", "30s")]);
    // 600 connections that never say a word: past the cap of 512.
    let mut idle: Vec<TcpStream> = (0..600).map(|_| connect(&exporter)).collect();
    std::thread::sleep(Duration::from_millis(500));
    let started = Instant::now();
    let (head, body) = common::http_get(exporter.addr, "/metrics", &[]).expect("scrape");
    let took = started.elapsed();
    assert!(
        head.starts_with("HTTP/1.0 200") || head.starts_with("HTTP/1.1 200"),
        "{head}"
    );
    assert!(!body.is_empty());
    assert!(took < Duration::from_secs(1), "scrape took {took:?}");
    // The oldest of them made room: closed without a word.
    let first = &mut idle[0];
    first
        .set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    assert!(read_all(first).is_empty());
}

#[test]
fn connections_past_the_cap_are_closed_at_once() {
    let exporter = Exporter::start(&[("PORTWARDEN_WEB_REQUEST_TIMEOUT", "30s")]);
    // 512 connections in use: each asked once and is kept alive.
    let held: Vec<TcpStream> = (0..512)
        .map(|_| {
            let mut s = connect(&exporter);
            s.write_all(b"GET /-/healthy HTTP/1.1\r\nHost: x\r\n\r\n")
                .expect("send");
            let mut buf = [0u8; 1024];
            let n = s.read(&mut buf).expect("answer");
            assert_eq!(status(&buf[..n]), Some(200));
            s
        })
        .collect();
    // One more is not served: none of those is idle to make room.
    let mut extra = connect(&exporter);
    extra
        .set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    let _ = extra.write_all(b"GET /-/healthy HTTP/1.1\r\nHost: x\r\n\r\n");
    let answer = read_all(&mut extra);
    assert!(answer.is_empty(), "served past the cap: {answer:?}");
    drop(held);
    let deadline = Instant::now() + Duration::from_secs(10);
    while common::http_get(exporter.addr, "/-/healthy", &[]).is_err() {
        assert!(
            Instant::now() < deadline,
            "not serving after the crowd left"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}
