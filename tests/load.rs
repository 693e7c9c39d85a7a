//! Load per port, end to end: accept queues and drops of a listener that
//! never accepts, connections counted per listening port with their peers,
//! and health (`ok`, `slow`, `hung`, `down`) as the exporter reports it.

mod common;

use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::*;
use serde_json::json;

/// The value of the series of `family` whose labels include every one of
/// `labels` (name, value).
fn value(text: &str, family: &str, labels: &[(&str, &str)]) -> Option<f64> {
    text.lines()
        .filter(|l| l.starts_with(&format!("{family}{{")))
        .find(|l| {
            labels
                .iter()
                .all(|(k, v)| l.contains(&format!("{k}=\"{v}\"")))
        })
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
}

/// The health word that is 1 for a port.
fn health(text: &str, port: u16, netns: &str) -> Option<String> {
    let port = port.to_string();
    ["ok", "slow", "hung", "down", "unknown"]
        .into_iter()
        .find(|h| {
            value(
                text,
                "portwarden_port_health",
                &[
                    ("proto", "tcp"),
                    ("port", &port),
                    ("netns", netns),
                    ("health", h),
                ],
            ) == Some(1.0)
        })
        .map(str::to_string)
}

#[test]
fn a_listener_that_never_accepts_fills_its_queue_drops_and_is_hung_while_its_neighbour_is_ok() {
    // Backlog 1, never accepts: two handshakes fill the queue; the kernel
    // drops every SYN after that.
    let stuck =
        Holder::start(&json!({"sockets": [{"proto": "tcp", "addr": "127.0.0.1", "backlog": 1}]}));
    let port = stuck.port(0);
    let neighbour = Server::start("http");
    let clients: Vec<_> = (0..6).map(|_| connect_from("127.0.0.1", port)).collect();
    let exporter = Exporter::start(&[("ENABLE_HTTP_DETECTION", "false")]);
    let p = port.to_string();
    let labels = [("port", p.as_str()), ("netns", "host")];
    let text = exporter.wait_for(20, "the stuck port hung", |t| {
        health(t, port, "host").as_deref() == Some("hung")
    });
    let length = value(&text, "portwarden_tcp_listen_queue_length", &labels).expect("length");
    let max = value(&text, "portwarden_tcp_listen_queue_max", &labels).expect("max");
    assert_eq!(max, 1.0, "{text}");
    assert!(length >= max, "queue {length}/{max}");
    let drops = value(&text, "portwarden_tcp_listen_drops_total", &labels).expect("drops");
    assert!(drops > 0.0, "{text}");
    assert_eq!(health(&text, neighbour.port, "host").as_deref(), Some("ok"));
    assert!(
        value(
            &text,
            "portwarden_netns_listen_overflows_total",
            &[("netns", "host")]
        )
        .is_some_and(|v| v > 0.0),
        "{text}"
    );
    // Clients keep retrying their SYNs, and checks keep knocking: the
    // counter keeps rising.
    let later = exporter.wait_for(20, "drops rising", |t| {
        value(t, "portwarden_tcp_listen_drops_total", &labels).is_some_and(|d| d > drops)
    });
    assert_eq!(health(&later, port, "host").as_deref(), Some("hung"));
    drop(clients);
}

#[test]
fn connections_are_counted_per_listening_port_with_their_peers() {
    // Never accepts, so every handshake stays established in the queue.
    let listener =
        Holder::start(&json!({"sockets": [{"proto": "tcp", "addr": "0.0.0.0", "backlog": 128}]}));
    let port = listener.port(0);
    let mut clients = Vec::new();
    for source in [
        "127.0.0.1",
        "127.0.0.1",
        "127.0.0.1",
        "127.0.0.2",
        "127.0.0.3",
    ] {
        clients.push(connect_from(source, port));
    }
    // A connection elsewhere is not counted here.
    let other = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let _elsewhere = TcpStream::connect(other.local_addr().expect("addr")).expect("connect");

    let exporter = Exporter::start(&[("ENABLE_HTTP_DETECTION", "false")]);
    let p = port.to_string();
    let established = [
        ("port", p.as_str()),
        ("netns", "host"),
        ("state", "established"),
    ];
    let text = exporter.wait_for(15, "5 established connections", |t| {
        value(t, "portwarden_tcp_port_connections", &established) == Some(5.0)
    });
    let labels = [("port", p.as_str()), ("netns", "host")];
    assert_eq!(
        value(&text, "portwarden_tcp_port_peers", &labels),
        Some(3.0),
        "{text}"
    );
    // Two more from a fourth address.
    clients.push(connect_from("127.0.0.4", port));
    clients.push(connect_from("127.0.0.4", port));
    exporter.wait_for(15, "7 established from 4 peers", |t| {
        value(t, "portwarden_tcp_port_connections", &established) == Some(7.0)
            && value(t, "portwarden_tcp_port_peers", &labels) == Some(4.0)
    });
    // The exporter's own checks close at once: the listener's end of those
    // waits in close_wait (it never accepts), never in established.
    drop(clients);
    exporter.wait_for(15, "none established once the clients close", |t| {
        value(t, "portwarden_tcp_port_connections", &established) == Some(0.0)
    });
}

#[test]
fn a_port_whose_connect_time_jumps_turns_slow() {
    if !is_root() {
        cannot_run("needs root for a network namespace and nft");
        return;
    }
    let nft = ["/usr/sbin/nft", "/sbin/nft"]
        .into_iter()
        .find(|p| std::path::Path::new(p).exists());
    let Some(nft) = nft else {
        cannot_run("nft not installed (Debian: apt-get install -y nftables)");
        return;
    };
    // The kernel here has no netem; loss does the same honestly: with every
    // other SYN to the port dropped in the namespace, each connect waits
    // for the kernel's SYN retransmission, ~1 s instead of ~50 µs.
    let ns = TestNetns::new("slow");
    let inside = Holder::start_in(
        &ns.0,
        &json!({"sockets": [{"proto": "tcp", "addr": "127.0.0.1", "backlog": 512}]}),
    );
    let port = inside.port(0);
    let exporter = Exporter::start(&[
        ("ENABLE_HTTP_DETECTION", "false"),
        ("PORT_CHECK_TIMEOUT", "3s"),
    ]);
    let label = ns.label();
    exporter.wait_for(15, "ok first", |t| {
        health(t, port, &label).as_deref() == Some("ok")
    });
    // A few more checks for its own baseline.
    let started = Instant::now();
    let p = port.to_string();
    let alive = [("port", p.as_str()), ("netns", label.as_str())];
    while started.elapsed() < Duration::from_secs(4) {
        std::thread::sleep(Duration::from_millis(200));
    }
    let text = exporter.scrape();
    assert_eq!(health(&text, port, &label).as_deref(), Some("ok"), "{text}");
    let fast = value(&text, "node_tcp_port_response_seconds", &alive).expect("connect time");
    assert!(fast < 0.05, "{fast}");

    let rule = format!(
        "add table inet pwtest; add chain inet pwtest in {{ type filter hook input priority 0; }}; add rule inet pwtest in tcp dport {port} tcp flags & (syn|ack) == syn numgen inc mod 2 == 0 drop"
    );
    let status = std::process::Command::new("ip")
        .args(["netns", "exec", &ns.0, nft, &rule])
        .status()
        .expect("nft");
    assert!(status.success(), "nft rule");
    let text = exporter.wait_for(30, "slow", |t| {
        health(t, port, &label).as_deref() == Some("slow")
    });
    let slow = value(&text, "node_tcp_port_response_seconds", &alive).expect("connect time");
    assert!(slow > 0.5, "{slow}");
    // Still alive: slow is not down.
    assert_eq!(value(&text, "node_tcp_port_alive", &alive), Some(1.0));
}
