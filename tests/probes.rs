//! The probers against hostile peers on loopback: each check ends by its
//! deadline whatever the other side does, and reads no more than it should.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use portwarden::probe::http::{self, HttpOutcome, Verdict};
use portwarden::probe::{Via, tcp};

/// Serves each connection with `behave` on a thread of its own.
fn server(behave: impl Fn(TcpStream) + Send + Sync + 'static) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    let behave = Arc::new(behave);
    std::thread::spawn(move || {
        for conn in listener.incoming().flatten() {
            let behave = Arc::clone(&behave);
            std::thread::spawn(move || behave(conn));
        }
    });
    addr
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

const TIMEOUT: Duration = Duration::from_millis(800);
const BANNER_WAIT: Duration = Duration::from_millis(100);
/// Scheduling slack on a loaded CI machine; the point is "not much past".
const SLACK: Duration = Duration::from_millis(700);

fn check(addr: SocketAddr) -> (HttpOutcome, Duration) {
    let t = Instant::now();
    let outcome = rt().block_on(http::probe(addr, &Via::Here, TIMEOUT, BANNER_WAIT, None));
    (outcome, t.elapsed())
}

#[test]
fn a_server_that_never_answers_is_a_timeout_by_the_deadline() {
    let addr = server(|mut c| {
        let mut buf = [0u8; 256];
        let _ = c.read(&mut buf);
        std::thread::sleep(Duration::from_secs(10));
    });
    let (outcome, took) = check(addr);
    assert_eq!(outcome, HttpOutcome::Timeout);
    assert_eq!(outcome.verdict(), Verdict::Inconclusive);
    assert!(took >= TIMEOUT && took < TIMEOUT + SLACK, "{took:?}");
}

#[test]
fn endless_bytes_are_read_no_further_than_4_kib() {
    let sent = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&sent);
    let addr = server(move |mut c| {
        let mut buf = [0u8; 256];
        let _ = c.read(&mut buf);
        let _ = c.write_all(b"HTTP/1.1 200 OK\r\n");
        let chunk = [b'x'; 1024];
        // Headers that never end.
        while c
            .write_all(b"X-Endless: ")
            .and_then(|()| c.write_all(&chunk))
            .is_ok()
        {
            counter.fetch_add(chunk.len(), Ordering::Relaxed);
            if counter.load(Ordering::Relaxed) > 64 << 20 {
                break;
            }
        }
    });
    let (outcome, took) = check(addr);
    assert_eq!(outcome, HttpOutcome::NotHttp);
    assert!(took < TIMEOUT + SLACK, "{took:?}");
}

#[test]
fn a_reset_is_closed_at_once() {
    let addr = server(|c| {
        // SO_LINGER 0: close sends a RST.
        let sock = socket2_linger_zero(c);
        drop(sock);
    });
    let (outcome, took) = check(addr);
    // The RST may land before the connect's result is read: then the
    // connect itself fails. Either way: not HTTP, and over at once.
    assert!(
        matches!(outcome, HttpOutcome::Closed | HttpOutcome::Unreachable),
        "{outcome:?}"
    );
    assert!(took < TIMEOUT, "{took:?}");
}

/// Sets SO_LINGER to zero through the fd, so dropping the stream resets.
fn socket2_linger_zero(c: TcpStream) -> TcpStream {
    rustix::net::sockopt::set_socket_linger(&c, Some(Duration::ZERO)).expect("SO_LINGER");
    c
}

#[test]
fn a_trickling_server_is_cut_at_the_deadline() {
    let addr = server(|mut c| {
        let mut buf = [0u8; 256];
        let _ = c.read(&mut buf);
        for b in b"HTTP/1.1 200 OK\r\nServer: slow\r\n\r\n" {
            if c.write_all(&[*b]).is_err() {
                return;
            }
            std::thread::sleep(Duration::from_secs(1));
        }
    });
    let (outcome, took) = check(addr);
    assert_eq!(outcome, HttpOutcome::Timeout);
    assert!(took >= TIMEOUT && took < TIMEOUT + SLACK, "{took:?}");
}

#[test]
fn a_close_after_the_request_is_definitive() {
    let addr = server(|mut c| {
        let mut buf = [0u8; 256];
        let _ = c.read(&mut buf);
    });
    let (outcome, took) = check(addr);
    assert_eq!(outcome, HttpOutcome::Closed);
    assert_eq!(outcome.verdict(), Verdict::NotHttp);
    assert!(took < TIMEOUT, "{took:?}");
}

#[test]
fn bytes_that_are_not_a_status_line_are_not_http() {
    let addr = server(|mut c| {
        let mut buf = [0u8; 256];
        let _ = c.read(&mut buf);
        let _ = c.write_all(b"-ERR unknown command 'GET'\r\n");
        std::thread::sleep(Duration::from_secs(2));
    });
    let (outcome, took) = check(addr);
    assert_eq!(outcome, HttpOutcome::NotHttp);
    assert!(took < TIMEOUT, "{took:?}");
}

#[test]
fn a_banner_is_definitive_and_without_a_banner_wait_the_request_goes_at_once() {
    let addr = server(|mut c| {
        let _ = c.write_all(b"SSH-2.0-OpenSSH_9.2\r\n");
        let mut buf = [0u8; 256];
        let _ = c.read(&mut buf);
    });
    let (outcome, _) = check(addr);
    assert_eq!(outcome, HttpOutcome::Banner);
    assert_eq!(outcome.verdict(), Verdict::NotHttp);

    // A port known to wait for its client is asked at once: an answer in
    // less than the banner wait.
    let addr = server(|mut c| {
        let mut buf = [0u8; 256];
        let _ = c.read(&mut buf);
        let _ = c.write_all(b"HTTP/1.1 204 No Content\r\n\r\n");
    });
    let t = Instant::now();
    let outcome = rt().block_on(http::probe(addr, &Via::Here, TIMEOUT, Duration::ZERO, None));
    assert_eq!(outcome, HttpOutcome::Answered { status: 204 });
    assert!(t.elapsed() < BANNER_WAIT, "{:?}", t.elapsed());
}

#[test]
fn error_statuses_are_answers() {
    let addr = server(|mut c| {
        let mut buf = [0u8; 256];
        let _ = c.read(&mut buf);
        let _ = c.write_all(b"HTTP/1.1 503 Service Unavailable\r\nRetry-After: 1\r\n\r\n");
    });
    assert_eq!(check(addr).0, HttpOutcome::Answered { status: 503 });
}

#[test]
fn a_closed_port_is_unreachable_and_tcp_dead() {
    let addr = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port");
    assert_eq!(check(addr).0, HttpOutcome::Unreachable);
    let out = rt().block_on(tcp::probe(&[addr], &Via::Here, TIMEOUT, 8));
    assert!(!out.alive);
}

#[test]
fn tcp_checks_send_nothing() {
    let got = Arc::new(AtomicUsize::new(usize::MAX));
    let seen = Arc::clone(&got);
    let addr = server(move |mut c| {
        c.set_read_timeout(Some(Duration::from_secs(2)))
            .expect("timeout");
        let mut buf = [0u8; 64];
        seen.store(c.read(&mut buf).unwrap_or(0), Ordering::SeqCst);
    });
    let out = rt().block_on(tcp::probe(&[addr], &Via::Here, TIMEOUT, 8));
    assert!(out.alive);
    let deadline = Instant::now() + Duration::from_secs(3);
    while got.load(Ordering::SeqCst) == usize::MAX && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    // The server saw an orderly close with no byte before it.
    assert_eq!(got.load(Ordering::SeqCst), 0);
}
