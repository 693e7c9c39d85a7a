//! Exposure, checked against what really happens: real nftables rulesets
//! loaded in a network namespace of the test's own ("inside"), a second
//! namespace joined to it by a veth pair as "outside", listeners inside,
//! and for every ruleset and listener a real TCP SYN and UDP datagram
//! sent from two outside addresses. For each socket the case says the
//! verdict it must get and which of the two sources the firewall admits;
//! the test asserts both that `portwarden ls --json` gives that verdict
//! and that the packets did exactly that — so the verdict agrees with
//! what happened, case by case. `unknown` is expected only where the
//! ruleset has a rule the evaluator cannot decide (a rate limit).

mod common;

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::os::fd::{AsFd, OwnedFd};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use rustix::net::{AddressFamily, SocketFlags, SocketType};
use serde_json::{Value, json};

/// The two outside sources: the firewall may admit one and not the other.
const A4: &str = "10.77.0.2";
const B4: &str = "10.77.0.3";
const A6: &str = "fd77::2";
const B6: &str = "fd77::3";
const INSIDE4: &str = "10.77.0.1";
const INSIDE6: &str = "fd77::1";

/// Runs `ip` with `args`; it must succeed.
fn ip(args: &[&str]) {
    let ok = Command::new("ip")
        .args(args)
        .status()
        .is_ok_and(|s| s.success());
    assert!(ok, "ip {}", args.join(" "));
}

/// A veth pair, one end (`a`) moved into namespace `ns_a`, the other (`b`)
/// into `ns_b`.
fn veth(a: &str, ns_a: &str, b: &str, ns_b: &str) {
    ip(&["link", "add", a, "type", "veth", "peer", "name", b]);
    ip(&["link", "set", a, "netns", ns_a]);
    ip(&["link", "set", b, "netns", ns_b]);
}

struct Lab {
    inside: TestNetns,
    outside: TestNetns,
}

impl Lab {
    fn new() -> Lab {
        let inside = TestNetns::new("xin");
        let outside = TestNetns::new("xout");
        let tag = std::process::id() % 100_000;
        let (a, b) = (format!("pwx{tag}a"), format!("pwx{tag}b"));
        veth(&a, &inside.0, &b, &outside.0);
        for (ns, dev, addrs) in [
            (
                &inside.0,
                &a,
                vec![format!("{INSIDE4}/24"), format!("{INSIDE6}/64")],
            ),
            (
                &outside.0,
                &b,
                vec![
                    format!("{A4}/24"),
                    format!("{B4}/24"),
                    format!("{A6}/64"),
                    format!("{B6}/64"),
                ],
            ),
        ] {
            for addr in addrs {
                let mut args = vec!["-n", ns, "addr", "add", &addr, "dev", dev];
                if addr.contains(':') {
                    args.push("nodad");
                }
                ip(&args);
            }
            ip(&["-n", ns, "link", "set", dev, "up"]);
        }
        // Neighbours written down: a ruleset that drops ICMPv6 (as some
        // cases do) would drop neighbour discovery, and with it every IPv6
        // packet after the cache expires — a fault of the ruleset, not of
        // the port's exposure.
        let mac = |ns: &str, dev: &str| -> String {
            let out = Command::new("ip")
                .args(["-n", ns, "-o", "link", "show", dev])
                .output()
                .expect("ip link");
            let text = String::from_utf8_lossy(&out.stdout).to_string();
            let at = text.find("link/ether ").expect("a MAC address") + 11;
            text[at..at + 17].to_string()
        };
        let (mac_a, mac_b) = (mac(&inside.0, &a), mac(&outside.0, &b));
        for (ns, dev, addr, lladdr) in [
            (&outside.0, &b, INSIDE6, &mac_a),
            (&outside.0, &b, INSIDE4, &mac_a),
            (&inside.0, &a, A6, &mac_b),
            (&inside.0, &a, B6, &mac_b),
            (&inside.0, &a, A4, &mac_b),
            (&inside.0, &a, B4, &mac_b),
        ] {
            ip(&[
                "-n",
                ns,
                "neigh",
                "replace",
                addr,
                "lladdr",
                lladdr,
                "dev",
                dev,
                "nud",
                "permanent",
            ]);
        }
        Lab { inside, outside }
    }

    /// Loads a ruleset: nft's language, or iptables-restore's when it
    /// starts with a table (`*filter`, `*nat`: IPv4 rules, then `---` and
    /// IPv6 ones), written through iptables-nft as ufw and Docker write
    /// their rules.
    fn load(&self, ruleset: &str) {
        if ruleset.starts_with('*') {
            self.load_nft("");
            let (v4, v6) = ruleset.split_once("---\n").unwrap_or((ruleset, ""));
            for (tool, rules) in [("iptables-nft-restore", v4), ("ip6tables-nft-restore", v6)] {
                if rules.trim().is_empty() {
                    continue;
                }
                self.pipe(&[tool], rules);
            }
            return;
        }
        self.load_nft(ruleset);
    }

    fn pipe(&self, cmd: &[&str], input: &str) {
        let mut child = Command::new("ip")
            .args(["netns", "exec", &self.inside.0])
            .args(cmd)
            .stdin(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
        use std::io::Write;
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(input.as_bytes())
            .expect("write rules");
        assert!(child.wait().expect("wait").success(), "{cmd:?}:\n{input}");
    }

    fn load_nft(&self, ruleset: &str) {
        let mut nft = Command::new("ip")
            .args(["netns", "exec", &self.inside.0, "nft", "-f", "-"])
            .stdin(Stdio::piped())
            .spawn()
            .expect("nft");
        use std::io::Write;
        let script = format!("flush ruleset\n{ruleset}\n");
        nft.stdin
            .take()
            .expect("stdin")
            .write_all(script.as_bytes())
            .expect("write ruleset");
        assert!(nft.wait().expect("nft").success(), "nft -f:\n{ruleset}");
    }
}

/// What the outside saw of one socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Seen {
    Reached,
    Refused,
    Silent,
}

/// Sends a SYN from each (source, destination) at once, from inside the
/// namespace `from`, and waits up to 1.5 s for the answers.
fn syn_from(from: &str, tries: &[(IpAddr, SocketAddr)]) -> Vec<Seen> {
    in_netns(from, || {
        let fds: Vec<OwnedFd> = tries
            .iter()
            .map(|(src, dst)| {
                let af = if dst.is_ipv4() {
                    AddressFamily::INET
                } else {
                    AddressFamily::INET6
                };
                let fd = rustix::net::socket_with(
                    af,
                    SocketType::STREAM,
                    SocketFlags::NONBLOCK | SocketFlags::CLOEXEC,
                    None,
                )
                .expect("socket");
                rustix::net::bind(&fd, &SocketAddr::new(*src, 0)).expect("bind source");
                match rustix::net::connect(&fd, dst) {
                    Ok(()) | Err(rustix::io::Errno::INPROGRESS) => {}
                    Err(e) => panic!("connect {dst}: {e}"),
                }
                fd
            })
            .collect();
        // Connected once it has a peer; refused once the error says so.
        let deadline = Instant::now() + Duration::from_millis(1500);
        let mut seen: Vec<Option<Seen>> = vec![None; fds.len()];
        while seen.iter().any(Option::is_none) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
            for (i, fd) in fds.iter().enumerate() {
                if seen[i].is_some() {
                    continue;
                }
                match rustix::net::sockopt::socket_error(fd.as_fd()) {
                    Ok(Err(rustix::io::Errno::CONNREFUSED)) => seen[i] = Some(Seen::Refused),
                    Ok(Err(e)) => panic!("connect: {e}"),
                    _ => {}
                }
                if seen[i].is_none() && rustix::net::getpeername(fd).is_ok() {
                    seen[i] = Some(Seen::Reached);
                }
            }
        }
        seen.into_iter()
            .map(|s| s.unwrap_or(Seen::Silent))
            .collect()
    })
}

/// Bytes waiting in each bound UDP socket of namespace `ns`, by port.
fn udp_queues(ns: &str) -> BTreeMap<u16, u64> {
    queues(
        ns,
        &["/proc/thread-self/net/udp", "/proc/thread-self/net/udp6"],
    )
}

/// Connections waiting in each TCP listener's accept queue in namespace
/// `ns`, by port (for a listener the table's receive queue is that).
fn accept_queues(ns: &str) -> BTreeMap<u16, u64> {
    queues(
        ns,
        &["/proc/thread-self/net/tcp", "/proc/thread-self/net/tcp6"],
    )
}

fn queues(ns: &str, files: &[&str]) -> BTreeMap<u16, u64> {
    in_netns(ns, || {
        let mut out = BTreeMap::new();
        for file in files {
            let text = std::fs::read_to_string(file).expect("socket table");
            for line in text.lines().skip(1) {
                let f: Vec<&str> = line.split_whitespace().collect();
                // TCP: listeners only (0A), not the connections queued.
                if file.contains("tcp") && f[3] != "0A" {
                    continue;
                }
                let port = u16::from_str_radix(f[1].rsplit(':').next().expect("port"), 16)
                    .expect("hex port");
                let rx = u64::from_str_radix(f[4].split(':').nth(1).expect("rx"), 16)
                    .expect("hex queue");
                *out.entry(port).or_insert(0) += rx;
            }
        }
        out
    })
}

/// Sends one datagram from `src` to each destination, from namespace `from`.
fn datagrams_from(from: &str, src: IpAddr, dsts: &[SocketAddr]) {
    in_netns(from, || {
        for dst in dsts {
            let af = if dst.is_ipv4() {
                AddressFamily::INET
            } else {
                AddressFamily::INET6
            };
            let fd = rustix::net::socket_with(af, SocketType::DGRAM, SocketFlags::CLOEXEC, None)
                .expect("socket");
            rustix::net::bind(&fd, &SocketAddr::new(src, 0)).expect("bind source");
            rustix::net::sendto(&fd, b"portwarden", rustix::net::SendFlags::empty(), dst)
                .expect("sendto");
        }
    });
    std::thread::sleep(Duration::from_millis(200));
}

/// A listener of the lab: (proto, address it binds, port).
type Listener = (&'static str, &'static str, u16);

const LISTENERS: [Listener; 9] = [
    ("tcp", "0.0.0.0", 22),
    ("tcp", "0.0.0.0", 80),
    ("tcp", "0.0.0.0", 443),
    ("tcp", INSIDE4, 8080),
    ("tcp", "::", 2222),
    ("tcp", "127.0.0.1", 9000),
    ("udp", "0.0.0.0", 53),
    ("udp", "0.0.0.0", 5353),
    ("udp", "::", 5354),
];

/// What a case expects of one listener: its verdict, a part of the
/// verdict's detail, and which outside sources get in (`a`, `b`).
struct Expect {
    verdict: &'static str,
    detail: &'static str,
    a: bool,
    b: bool,
}

const fn open() -> Expect {
    Expect {
        verdict: "open",
        detail: "",
        a: true,
        b: true,
    }
}

const fn blocked(detail: &'static str) -> Expect {
    Expect {
        verdict: "blocked",
        detail,
        a: false,
        b: false,
    }
}

const fn restricted(detail: &'static str, a: bool, b: bool) -> Expect {
    Expect {
        verdict: "restricted",
        detail,
        a,
        b,
    }
}

const fn local() -> Expect {
    Expect {
        verdict: "local",
        detail: "",
        a: false,
        b: false,
    }
}

struct Case {
    name: &'static str,
    ruleset: &'static str,
    /// In the order of [`LISTENERS`].
    expect: [Expect; 9],
}

fn cases() -> Vec<Case> {
    vec![
        Case {
            name: "no rules",
            ruleset: "",
            expect: [open(), open(), open(), open(), open(), local(), open(), open(), open()],
        },
        Case {
            name: "input policy drop, one port of each protocol allowed",
            ruleset: "table inet f { chain input { type filter hook input priority 0; policy drop;
                tcp dport 22 accept
                udp dport 53 accept
}
}",
            expect: [
                open(),
                blocked("inet f input policy drop"),
                blocked("inet f input policy drop"),
                blocked("inet f input policy drop"),
                blocked("inet f input policy drop"),
                local(),
                open(),
                blocked("inet f input policy drop"),
                blocked("inet f input policy drop"),
            ],
        },
        Case {
            name: "named and anonymous sets, verdict maps",
            ruleset: "table inet f {
                set web { type inet_service; elements = { 80, 443 }
}
                map udp_ports { type inet_service : verdict; elements = { 53 : accept, 5353 : drop
}
}
                chain input { type filter hook input priority 0; policy drop;
                    tcp dport @web accept
                    tcp dport vmap { 22 : accept, 8080 : drop, 2222 : accept
}
                    udp dport vmap @udp_ports
                    meta l4proto udp udp dport { 5354 } accept
}
}",
            expect: [
                open(),
                open(),
                open(),
                blocked("inet f input handle"),
                open(),
                local(),
                open(),
                blocked("inet f input handle"),
                open(),
            ],
        },
        Case {
            name: "jump, goto and return across chains and tables",
            ruleset: "table ip f {
                chain input { type filter hook input priority 0; policy drop;
                    jump services
                    tcp dport 80 goto web
                    udp dport 53 accept
}
                chain services { tcp dport 22 accept
                    tcp dport 443 return
                    tcp dport 8080 accept
}
                chain web { ip saddr 10.77.0.3 return
                    accept
}
}
            table ip6 f6 { chain input { type filter hook input priority 0; policy drop; udp dport 5354 accept
}
}",
            expect: [
                open(),
                restricted("from any but 10.77.0.3", true, false),
                blocked("ip f input policy drop"),
                open(),
                blocked("ip6 f6 input policy drop"),
                local(),
                open(),
                blocked("ip f input policy drop"),
                open(),
            ],
        },
        Case {
            name: "source-restricted: an address, prefixes, a negation, an interval set",
            ruleset: "table inet f {
                set admins { type ipv4_addr; flags interval; elements = { 10.77.0.2, 192.168.0.0/16 }
}
                chain input { type filter hook input priority 0; policy drop;
                    ip saddr @admins tcp dport 22 accept
                    ip saddr 10.77.0.2/31 tcp dport 80 accept
                    ip saddr != 10.77.0.3 tcp dport 443 accept
                    ip saddr 10.77.0.0/16 tcp dport 8080 accept
                    ip6 saddr fd77::2 tcp dport 2222 accept
                    ip saddr 10.77.0.2 udp dport 53 accept
                    ip6 saddr fd77::3 udp dport 5354 accept
}
}",
            expect: [
                restricted("from 10.77.0.2, 192.168.0.0/16", true, false),
                restricted("from 10.77.0.2/31", true, true),
                restricted("from any but 10.77.0.3", true, false),
                restricted("from 10.77.0.0/16", true, true),
                restricted("from fd77::2", true, false),
                local(),
                restricted("from 10.77.0.2", true, false),
                blocked("inet f input policy drop"),
                restricted("from fd77::3", false, true),
            ],
        },
        Case {
            name: "conntrack first, as ufw and most guides open a ruleset",
            ruleset: "table inet f { chain input { type filter hook input priority 0; policy drop;
                ct state established,related accept
                ct state invalid drop
                iif lo accept
                meta l4proto { icmp, ipv6-icmp } accept
                tcp dport 22 ct state new accept
                tcp dport { 80, 443 } accept
                udp dport 53 accept
}
}",
            expect: [
                open(),
                open(),
                open(),
                blocked("inet f input policy drop"),
                blocked("inet f input policy drop"),
                local(),
                open(),
                blocked("inet f input policy drop"),
                blocked("inet f input policy drop"),
            ],
        },
        Case {
            name: "accept ends only its base chain; prerouting first; reject",
            ruleset: "table inet a { chain input { type filter hook input priority 0; policy accept;
                    tcp dport { 80, 443 } accept
}
}
                table inet b { chain input { type filter hook input priority 10; policy accept;
                    tcp dport 80 drop
                    tcp dport 8080 reject with tcp reset
                    ip6 nexthdr udp udp dport 5354 drop
}
}
                table ip raw { chain pre { type filter hook prerouting priority -300; policy accept;
                    ip saddr 10.77.0.3 tcp dport 22 drop
}
}",
            expect: [
                restricted("from any but 10.77.0.3", true, false),
                blocked("inet b input handle"),
                open(),
                blocked("inet b input handle"),
                open(),
                local(),
                open(),
                open(),
                blocked("inet b input handle"),
            ],
        },
        Case {
            name: "ufw's chain layout, written through iptables-nft (xt matches)",
            ruleset: UFW,
            expect: [
                open(),
                open(),
                open(),
                restricted("from 10.77.0.2", true, false),
                open(),
                local(),
                open(),
                // mDNS to its multicast group is let in; to us, not.
                restricted("to 224.0.0.251", false, false),
                blocked("ip6 filter INPUT policy drop"),
            ],
        },
        Case {
            name: "a rule the evaluator cannot decide (a rate limit)",
            ruleset: "table inet f { chain input { type filter hook input priority 0; policy accept;
                tcp dport 80 limit rate over 10/second drop
                udp dport 53 limit rate 5/second accept
                udp dport 53 drop
}
}",
            expect: [
                open(),
                Expect {
                    verdict: "unknown",
                    detail: "inet f input handle 2: limit",
                    a: true,
                    b: true,
                },
                open(),
                open(),
                open(),
                local(),
                Expect {
                    verdict: "unknown",
                    detail: "inet f input handle 3: limit",
                    a: true,
                    b: true,
                },
                open(),
                open(),
            ],
        },
    ]
}

/// ufw's layout (its chain names and the rules of its before/after files,
/// as `iptables-save` shows them) with four user rules, and its IPv6 side
/// reduced to what decides our sockets.
const UFW: &str = r#"*filter
:INPUT DROP [0:0]
:FORWARD DROP [0:0]
:OUTPUT ACCEPT [0:0]
:ufw-before-logging-input - [0:0]
:ufw-before-input - [0:0]
:ufw-after-input - [0:0]
:ufw-after-logging-input - [0:0]
:ufw-reject-input - [0:0]
:ufw-track-input - [0:0]
:ufw-user-input - [0:0]
:ufw-not-local - [0:0]
:ufw-skip-to-policy-input - [0:0]
:ufw-logging-deny - [0:0]
-A INPUT -j ufw-before-logging-input
-A INPUT -j ufw-before-input
-A INPUT -j ufw-after-input
-A INPUT -j ufw-after-logging-input
-A INPUT -j ufw-reject-input
-A INPUT -j ufw-track-input
-A ufw-before-input -i lo -j ACCEPT
-A ufw-before-input -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT
-A ufw-before-input -m conntrack --ctstate INVALID -j ufw-logging-deny
-A ufw-before-input -m conntrack --ctstate INVALID -j DROP
-A ufw-before-input -p icmp -m icmp --icmp-type 8 -j ACCEPT
-A ufw-before-input -p udp -m udp --sport 67 --dport 68 -j ACCEPT
-A ufw-before-input -j ufw-not-local
-A ufw-before-input -d 224.0.0.251/32 -p udp -m udp --dport 5353 -j ACCEPT
-A ufw-before-input -j ufw-user-input
-A ufw-after-input -p udp -m udp --dport 137 -j ufw-skip-to-policy-input
-A ufw-after-input -m addrtype --dst-type BROADCAST -j ufw-skip-to-policy-input
-A ufw-after-logging-input -m limit --limit 3/min --limit-burst 10 -j LOG --log-prefix "[UFW BLOCK] "
-A ufw-logging-deny -m conntrack --ctstate INVALID -m limit --limit 3/min --limit-burst 10 -j RETURN
-A ufw-logging-deny -m limit --limit 3/min --limit-burst 10 -j LOG --log-prefix "[UFW BLOCK] "
-A ufw-not-local -m addrtype --dst-type LOCAL -j RETURN
-A ufw-not-local -m addrtype --dst-type MULTICAST -j RETURN
-A ufw-not-local -m addrtype --dst-type BROADCAST -j RETURN
-A ufw-not-local -m limit --limit 3/min --limit-burst 10 -j ufw-logging-deny
-A ufw-not-local -j DROP
-A ufw-skip-to-policy-input -j DROP
-A ufw-user-input -p tcp -m tcp --dport 22 -m comment --comment "'dapp_OpenSSH'" -j ACCEPT
-A ufw-user-input -p tcp -m multiport --dports 80,443 -j ACCEPT
-A ufw-user-input -s 10.77.0.2/32 -p tcp -m tcp --dport 8080 -j ACCEPT
-A ufw-user-input -p udp -m udp --dport 53 -j ACCEPT
COMMIT
---
*filter
:INPUT DROP [0:0]
:FORWARD DROP [0:0]
:OUTPUT ACCEPT [0:0]
:ufw6-before-input - [0:0]
:ufw6-user-input - [0:0]
-A INPUT -j ufw6-before-input
-A ufw6-before-input -i lo -j ACCEPT
-A ufw6-before-input -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT
-A ufw6-before-input -m conntrack --ctstate INVALID -j DROP
-A ufw6-before-input -p ipv6-icmp -j ACCEPT
-A ufw6-before-input -j ufw6-user-input
-A ufw6-user-input -p tcp -m tcp --dport 2222 -j ACCEPT
COMMIT
"#;

/// The lab, when this machine can make one (root, `nft`, and
/// `iptables-nft-restore` for ufw's rules); `None` once it said why not
/// (a failure under CI).
fn lab() -> Option<Lab> {
    if !is_root() {
        cannot_run("needs root for network namespaces and nftables");
        return None;
    }
    for (tool, package) in [
        ("/usr/sbin/nft", "nftables"),
        ("/usr/sbin/iptables-nft-restore", "iptables"),
    ] {
        if !std::path::Path::new(tool).exists() {
            cannot_run(&format!("needs {tool} (Debian package {package})"));
            return None;
        }
    }
    Some(Lab::new())
}

/// A holder of every lab listener, inside; a backlog room for every SYN
/// of every case (it never accepts).
fn hold_listeners(lab: &Lab) -> Holder {
    let sockets: Vec<Value> = LISTENERS
        .iter()
        .map(|(proto, addr, port)| {
            json!({"proto": proto, "addr": addr, "port": port, "backlog": 1024})
        })
        .collect();
    Holder::start_in(&lab.inside.0, &json!({ "sockets": sockets }))
}

/// `ls --json`'s exposure of each lab listener, by (proto, address, port).
fn verdicts(holder: &Holder) -> BTreeMap<(String, String, u16), Value> {
    ls_json(&[])
        .into_iter()
        .filter(|e| owner_pids(e).contains(&holder.pid))
        .map(|e| {
            let key = (
                e["proto"].as_str().expect("proto").to_string(),
                e["address"].as_str().expect("address").to_string(),
                e["port"].as_u64().expect("port") as u16,
            );
            (key, e["exposure"].clone())
        })
        .collect()
}

#[test]
fn each_verdict_agrees_with_a_real_syn_and_datagram_from_outside() {
    let _serial = serial();
    let Some(lab) = lab() else { return };
    let holder = hold_listeners(&lab);
    // A row per ruleset, a column per socket: the verdict, then which
    // outside sources got in (A, B, both, or none: ·).
    let mut table = String::from("| ruleset |");
    for (proto, addr, port) in LISTENERS {
        let addr = if addr.contains(':') {
            format!("[{addr}]")
        } else {
            addr.to_string()
        };
        table.push_str(&format!(" {proto} {addr}:{port} |"));
    }
    table.push_str(&format!("\n|---|{}\n", "---|".repeat(LISTENERS.len())));
    let mut wrong = Vec::new();
    for case in cases() {
        lab.load(case.ruleset);
        let got = verdicts(&holder);
        // The outside's packets: a SYN to each TCP listener from each
        // source; a datagram to each UDP one from A, then from B.
        let mut tries = Vec::new();
        for (proto, addr, port) in LISTENERS {
            if proto != "tcp" || addr.starts_with("127.") {
                continue;
            }
            let v6 = addr.contains(':');
            let dst: IpAddr = if v6 {
                INSIDE6
            } else if addr == "0.0.0.0" {
                INSIDE4
            } else {
                addr
            }
            .parse()
            .expect("address");
            for src in if v6 { [A6, B6] } else { [A4, B4] } {
                tries.push((src.parse().expect("source"), SocketAddr::new(dst, port)));
            }
        }
        let syn = syn_from(&lab.outside.0, &tries);
        let mut udp = BTreeMap::new();
        for (round, srcs) in [[A4, A6], [B4, B6]].into_iter().enumerate() {
            let before = udp_queues(&lab.inside.0);
            for src in srcs {
                let v6 = src.contains(':');
                let dsts: Vec<SocketAddr> = LISTENERS
                    .iter()
                    .filter(|(p, a, _)| *p == "udp" && a.contains(':') == v6)
                    .map(|(_, _, port)| {
                        SocketAddr::new(
                            if v6 { INSIDE6 } else { INSIDE4 }.parse().expect("ip"),
                            *port,
                        )
                    })
                    .collect();
                datagrams_from(&lab.outside.0, src.parse().expect("source"), &dsts);
            }
            let after = udp_queues(&lab.inside.0);
            for (port, bytes) in after {
                let arrived = bytes > before.get(&port).copied().unwrap_or(0);
                udp.insert((round, port), arrived);
            }
        }

        for (i, ((proto, addr, port), want)) in LISTENERS.iter().zip(&case.expect).enumerate() {
            let exposure = got
                .get(&(proto.to_string(), addr.to_string(), *port))
                .unwrap_or_else(|| panic!("{}: {proto} {addr}:{port} not listed", case.name));
            let verdict = exposure["verdict"].as_str().unwrap_or("(none)");
            let detail = exposure["detail"].as_str().unwrap_or("");
            let (a, b) = if addr.starts_with("127.") {
                (false, false)
            } else if *proto == "tcp" {
                let at = tries
                    .iter()
                    .position(|(_, d)| d.port() == *port)
                    .expect("tried");
                (syn[at] == Seen::Reached, syn[at + 1] == Seen::Reached)
            } else {
                (udp[&(0, *port)], udp[&(1, *port)])
            };
            let yes = |r: bool| if r { "reached" } else { "—" };
            if i == 0 {
                table.push_str(&format!("| {} |", case.name));
            }
            let reached = match (a, b) {
                (true, true) => "A B",
                (true, false) => "A",
                (false, true) => "B",
                (false, false) => "·",
            };
            table.push_str(&format!(" {verdict} {reached} |"));
            if i + 1 == LISTENERS.len() {
                table.push('\n');
            }
            let mut problems = Vec::new();
            if verdict != want.verdict || !detail.contains(want.detail) {
                problems.push(format!(
                    "verdict {verdict} ({detail}), expected {} ({})",
                    want.verdict, want.detail
                ));
            }
            if (a, b) != (want.a, want.b) {
                problems.push(format!(
                    "from outside: A {}, B {}; expected A {}, B {}",
                    yes(a),
                    yes(b),
                    yes(want.a),
                    yes(want.b)
                ));
            }
            if !problems.is_empty() {
                wrong.push(format!(
                    "{} / {proto} {addr}:{port} (#{i}): {}",
                    case.name,
                    problems.join("; ")
                ));
            }
        }
    }
    println!("{table}");
    assert!(wrong.is_empty(), "{}\n\n{table}", wrong.join("\n"));
}

#[test]
fn without_cap_net_admin_every_exposure_is_unknown_with_one_warning_and_nothing_else_changes() {
    let _serial = serial();
    let Some(lab) = lab() else { return };
    lab.load(cases()[1].ruleset);
    let holder = hold_listeners(&lab);
    let ours = |list: Vec<Value>| -> Vec<Value> {
        let mut l: Vec<Value> = list
            .into_iter()
            .filter(|e| owner_pids(e).contains(&holder.pid))
            .collect();
        l.sort_by_key(|e| e["inode"].as_u64());
        l
    };
    let full = ours(ls_json(&[]));
    assert_eq!(full.len(), LISTENERS.len());
    assert!(
        full.iter().any(|e| e["exposure"]["verdict"] == "blocked"),
        "with the capability, the ruleset is read: {full:?}"
    );

    // Everything the deploy files grant but CAP_NET_ADMIN.
    let out = as_nobody_with(&["sys_ptrace", "dac_read_search", "sys_admin"])
        .args(["ls", "--json"])
        .env_remove("PROC_PREFIX")
        .output()
        .expect("setpriv");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let warnings: Vec<&str> = stderr.lines().filter(|l| l.contains("warning")).collect();
    assert_eq!(warnings.len(), 1, "{stderr}");
    assert!(warnings[0].contains("CAP_NET_ADMIN"), "{stderr}");
    let without: Vec<Value> = ours(serde_json::from_slice(&out.stdout).expect("JSON"));
    assert_eq!(without.len(), full.len(), "the same sockets");
    for (mut a, mut b) in full.into_iter().zip(without) {
        let e = b["exposure"].take();
        let expected = if a["address"] == "127.0.0.1" {
            // Loopback needs no ruleset to say.
            json!({"verdict": "local", "detail": null, "rule": null})
        } else {
            json!({"verdict": "unknown", "detail": "no permission (needs CAP_NET_ADMIN)", "rule": null})
        };
        a["exposure"].take();
        assert_eq!(e, expected, "{a}");
        assert_eq!(a, b, "nothing but the exposure changes");
    }
}

#[test]
fn the_exporter_exports_one_verdict_per_port() {
    let _serial = serial();
    let Some(lab) = lab() else { return };
    lab.load(cases()[1].ruleset);
    let _holder = hold_listeners(&lab);
    let netns = lab.inside.label();
    let exporter = Exporter::start(&[
        ("PORT_STATUS_INTERVAL", "1s"),
        ("ENABLE_HTTP_DETECTION", "false"),
    ]);
    let series = |proto: &str, port: u16, exposure: &str| {
        format!(
            "portwarden_port_exposure{{proto=\"{proto}\",port=\"{port}\",netns=\"{netns}\",exposure=\"{exposure}\"}} 1"
        )
    };
    let want = [
        series("tcp", 22, "open"),
        series("tcp", 80, "blocked"),
        series("tcp", 9000, "local"),
        series("udp", 53, "open"),
        series("udp", 5353, "blocked"),
    ];
    let text = exporter.wait_for(30, "the lab's verdicts", |t| {
        want.iter().all(|w| t.contains(w.as_str()))
    });
    // One series per port: port 80 has no other verdict.
    let of_80 = text
        .lines()
        .filter(|l| {
            l.starts_with("portwarden_port_exposure{")
                && l.contains(&format!("netns=\"{netns}\""))
                && l.contains("port=\"80\"")
        })
        .count();
    assert_eq!(of_80, 1, "{text}");
}

/// A GET from inside the namespace `ns`.
fn get_in(ns: &str, addr: std::net::SocketAddr, path: &str) -> Option<Value> {
    in_netns(ns, || http_get(addr, path, &[]))
        .ok()
        .and_then(|(_, body)| serde_json::from_slice(&body).ok())
}

#[test]
fn prometheus_discovers_the_ports_and_probes_them_from_outside() {
    let _serial = serial();
    if Command::new("prometheus")
        .arg("--version")
        .output()
        .is_err()
    {
        return cannot_run("needs prometheus (Debian package prometheus)");
    }
    let Some(lab) = lab() else { return };
    lab.load(cases()[1].ruleset);
    let _holder = Holder::start_in(
        &lab.inside.0,
        &json!({"sockets": [
            {"proto": "tcp", "addr": INSIDE4, "port": 22, "backlog": 1024},
            {"proto": "tcp", "addr": INSIDE4, "port": 80, "backlog": 1024},
            {"proto": "tcp", "addr": "127.0.0.1", "port": 9000},
        ]}),
    );
    // Both exporters in the outside namespace: one discovers (it sees every
    // namespace of the machine), one probes from there.
    let fast = [
        ("PORT_STATUS_INTERVAL", "1s"),
        ("ENABLE_HTTP_DETECTION", "false"),
    ];
    let discovering = Exporter::start_in(&lab.outside.0, &fast);
    let probing = Exporter::start_in(
        &lab.outside.0,
        &[
            ("PORTWARDEN_WEB_PROBE", "true"),
            ("ENABLE_HTTP_DETECTION", "false"),
        ],
    );

    // The discovery document itself.
    let target = |port: u16| format!("{INSIDE4}:{port}");
    let deadline = Instant::now() + Duration::from_secs(20);
    let groups = loop {
        let groups = get_in(&lab.outside.0, discovering.addr, "/api/v1/sd")
            .and_then(|v| v.as_array().cloned())
            .unwrap_or_default();
        let ours: Vec<Value> = groups
            .into_iter()
            .filter(|g| g["labels"]["__meta_portwarden_address"] == INSIDE4)
            .collect();
        if ours.len() == 2
            && ours
                .iter()
                .all(|g| g["labels"]["__meta_portwarden_exposure"].is_string())
        {
            break ours;
        }
        assert!(
            Instant::now() < deadline,
            "the lab's ports in /api/v1/sd: {ours:?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    for (port, exposure) in [(22, "open"), (80, "blocked")] {
        let g = groups
            .iter()
            .find(|g| g["targets"][0] == target(port))
            .unwrap_or_else(|| panic!("{port} in {groups:?}"));
        let l = &g["labels"];
        assert_eq!(l["__meta_portwarden_exposure"], exposure, "{g}");
        assert_eq!(l["__meta_portwarden_proto"], "tcp", "{g}");
        assert_eq!(l["__meta_portwarden_port"], port.to_string(), "{g}");
        assert_eq!(l["__meta_portwarden_netns"], lab.inside.label(), "{g}");
        assert!(l["__meta_portwarden_process"].is_string(), "{g}");
    }
    let all = get_in(&lab.outside.0, discovering.addr, "/api/v1/sd").expect("sd");
    assert!(
        !all.to_string().contains("127.0.0.1:9000"),
        "loopback is not a target: {all}"
    );

    // A real Prometheus in the outside namespace, with the relabelling of
    // docs/exposure.md: only the lab's address is ever probed.
    let config = format!(
        r#"global:
  scrape_interval: 1s
  scrape_timeout: 1s
scrape_configs:
  - job_name: ports-from-outside
    metrics_path: /probe
    params:
      module: [tcp_connect]
    http_sd_configs:
      - url: http://{sd}/api/v1/sd
        refresh_interval: 1s
    relabel_configs:
      - source_labels: [__meta_portwarden_address]
        regex: '10\.77\.0\.1'
        action: keep
      - source_labels: [__meta_portwarden_proto]
        regex: tcp
        action: keep
      - source_labels: [__address__]
        target_label: __param_target
      - source_labels: [__param_target]
        target_label: instance
      - source_labels: [__meta_portwarden_exposure]
        target_label: exposure
      - source_labels: [__meta_portwarden_process]
        target_label: process
      - target_label: __address__
        replacement: {probe}
"#,
        sd = discovering.addr,
        probe = probing.addr
    );
    let prometheus = Prometheus::start(&config, Some(&lab.outside.0));
    let prom_addr = prometheus.addr;
    let value = |port: u16, exposure: &str| -> Option<String> {
        let q = format!(
            "probe_success{{instance=\"{}\",exposure=\"{exposure}\"}}",
            target(port)
        );
        let v = get_in(
            &lab.outside.0,
            prom_addr,
            &format!("/api/v1/query?query={}", percent_encode(&q)),
        )?;
        v["data"]["result"][0]["value"][1]
            .as_str()
            .map(str::to_string)
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (open, blocked) = (value(22, "open"), value(80, "blocked"));
        if open.is_some() && blocked.is_some() {
            // The outside answer agrees with the inside verdict.
            assert_eq!(
                open.as_deref(),
                Some("1"),
                "the open port answers from outside"
            );
            assert_eq!(blocked.as_deref(), Some("0"), "the blocked port does not");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "prometheus never probed both: open {open:?}, blocked {blocked:?}"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// Docker's layout of published ports as dockerd writes it through
/// iptables-nft: the nat table's DOCKER chain rewrites a port to the
/// container, the filter table's FORWARD runs DOCKER-USER (the user's
/// rules) then DOCKER (the published ports), and INPUT drops the rest.
/// Here 8080 → :80 is published; 8081 → :81 too, but DOCKER-USER drops
/// it; 8082 → :82 DOCKER-USER admits only from A; udp 5300 → :53.
const DOCKER: &str = r#"*nat
:PREROUTING ACCEPT [0:0]
:INPUT ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:POSTROUTING ACCEPT [0:0]
:DOCKER - [0:0]
-A PREROUTING -m addrtype --dst-type LOCAL -j DOCKER
-A OUTPUT ! -d 127.0.0.0/8 -m addrtype --dst-type LOCAL -j DOCKER
-A POSTROUTING -s 172.30.0.0/24 ! -o docker0 -j MASQUERADE
-A DOCKER -i docker0 -j RETURN
-A DOCKER ! -i docker0 -p tcp -m tcp --dport 8080 -j DNAT --to-destination 172.30.0.2:80
-A DOCKER ! -i docker0 -p tcp -m tcp --dport 8081 -j DNAT --to-destination 172.30.0.2:81
-A DOCKER ! -i docker0 -p tcp -m tcp --dport 8082 -j DNAT --to-destination 172.30.0.2:82
-A DOCKER ! -i docker0 -p udp -m udp --dport 5300 -j DNAT --to-destination 172.30.0.2:53
COMMIT
*filter
:INPUT DROP [0:0]
:FORWARD DROP [0:0]
:OUTPUT ACCEPT [0:0]
:DOCKER - [0:0]
:DOCKER-USER - [0:0]
-A INPUT -i lo -j ACCEPT
-A INPUT -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT
-A FORWARD -j DOCKER-USER
-A FORWARD -o docker0 -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT
-A FORWARD -o docker0 -j DOCKER
-A FORWARD -i docker0 ! -o docker0 -j ACCEPT
-A FORWARD -i docker0 -o docker0 -j ACCEPT
-A DOCKER -d 172.30.0.2/32 ! -i docker0 -o docker0 -p tcp -m tcp --dport 80 -j ACCEPT
-A DOCKER -d 172.30.0.2/32 ! -i docker0 -o docker0 -p tcp -m tcp --dport 81 -j ACCEPT
-A DOCKER -d 172.30.0.2/32 ! -i docker0 -o docker0 -p tcp -m tcp --dport 82 -j ACCEPT
-A DOCKER -d 172.30.0.2/32 ! -i docker0 -o docker0 -p udp -m udp --dport 53 -j ACCEPT
-A DOCKER-USER -p tcp -m tcp --dport 81 -j DROP
-A DOCKER-USER ! -s 10.77.0.2/32 -p tcp -m tcp --dport 82 -j DROP
-A DOCKER-USER -j RETURN
COMMIT
"#;

/// The same published ports written in nftables' own language, the
/// rewrite through a verdict-free map of address . port.
const DOCKER_NFT: &str = r#"
table ip nat {
    chain prerouting {
        type nat hook prerouting priority dstnat; policy accept;
        iifname != "docker0" dnat to tcp dport map { 8080 : 172.30.0.2 . 80, 8081 : 172.30.0.2 . 81, 8082 : 172.30.0.2 . 82 }
        iifname != "docker0" udp dport 5300 dnat to 172.30.0.2:53
    }
}
table ip filter {
    chain input {
        type filter hook input priority filter; policy drop;
        iif lo accept
        ct state established,related accept
    }
    chain forward {
        type filter hook forward priority filter; policy drop;
        ct state established,related accept
        iifname "docker0" oifname != "docker0" accept
        tcp dport 81 drop
        oifname "docker0" ip daddr 172.30.0.2 tcp dport { 80, 81 } accept
        oifname "docker0" ip saddr 10.77.0.2 ip daddr 172.30.0.2 tcp dport 82 accept
        oifname "docker0" ip daddr 172.30.0.2 udp dport 53 accept
    }
}
"#;

/// A "container" behind the lab's inside: a third namespace joined by a
/// veth pair whose inside end is named `docker0` (172.30.0.1/24; the
/// container is 172.30.0.2 and routes back through it), with forwarding
/// on inside, as dockerd sets a bridge network up.
fn container(lab: &Lab) -> TestNetns {
    let ns = TestNetns::new("xct");
    let tag = std::process::id() % 100_000;
    let (a, b) = (format!("pwx{tag}c"), format!("pwx{tag}d"));
    veth(&a, &lab.inside.0, &b, &ns.0);
    ip(&["-n", &lab.inside.0, "link", "set", &a, "name", "docker0"]);
    ip(&[
        "-n",
        &lab.inside.0,
        "addr",
        "add",
        "172.30.0.1/24",
        "dev",
        "docker0",
    ]);
    ip(&["-n", &lab.inside.0, "link", "set", "docker0", "up"]);
    ip(&["-n", &ns.0, "addr", "add", "172.30.0.2/24", "dev", &b]);
    ip(&["-n", &ns.0, "link", "set", &b, "up"]);
    ip(&["-n", &ns.0, "route", "add", "default", "via", "172.30.0.1"]);
    let on = Command::new("ip")
        .args(["netns", "exec", &lab.inside.0])
        .args(["sysctl", "-qw", "net.ipv4.ip_forward=1"])
        .status()
        .is_ok_and(|s| s.success());
    assert!(on, "could not turn forwarding on inside");
    ns
}

#[test]
fn a_port_published_to_a_container_is_judged_on_the_forward_path_it_really_takes() {
    let _serial = serial();
    let Some(lab) = lab() else { return };
    let ct = container(&lab);
    let tcp = |port: u16| json!({"proto": "tcp", "addr": "0.0.0.0", "port": port, "backlog": 1024});
    let udp = |port: u16| json!({"proto": "udp", "addr": "0.0.0.0", "port": port});
    // Inside: what docker-proxy holds (the published ports) and sshd.
    let holder = Holder::start_in(
        &lab.inside.0,
        &json!({"sockets": [tcp(8080), tcp(8081), tcp(8082), tcp(22), udp(5300)]}),
    );
    let _app = Holder::start_in(
        &ct.0,
        &json!({"sockets": [tcp(80), tcp(81), tcp(82), udp(53)]}),
    );
    // Inside port, where the container gets it, and what must be said.
    let published: [(&str, u16, u16, Expect); 5] = [
        // (`…` separates parts the detail must hold in that order.)
        (
            "tcp",
            8080,
            80,
            restricted(
                "not via docker0, forwarded to 172.30.0.2:80 by ip nat",
                true,
                true,
            ),
        ),
        (
            "tcp",
            8081,
            81,
            blocked("ip filter …(forwarded to 172.30.0.2:81 by ip nat"),
        ),
        (
            "tcp",
            8082,
            82,
            restricted(
                "from 10.77.0.2 not via docker0, forwarded to 172.30.0.2:82",
                true,
                false,
            ),
        ),
        ("tcp", 22, 22, blocked("ip filter …policy drop")),
        (
            "udp",
            5300,
            53,
            restricted(
                "not via docker0, forwarded to 172.30.0.2:53 by ip nat",
                true,
                true,
            ),
        ),
    ];
    let mut wrong = Vec::new();
    for (name, ruleset) in [
        ("docker (iptables-nft)", DOCKER),
        ("docker (nft)", DOCKER_NFT),
    ] {
        lab.load(ruleset);
        let got = verdicts(&holder);
        let inside_before = accept_queues(&lab.inside.0);
        let ct_before = accept_queues(&ct.0);
        let mut tries = Vec::new();
        for (proto, port, _, _) in &published {
            if *proto == "tcp" {
                for src in [A4, B4] {
                    let dst = SocketAddr::new(INSIDE4.parse().expect("ip"), *port);
                    tries.push((src.parse().expect("source"), dst));
                }
            }
        }
        let syn = syn_from(&lab.outside.0, &tries);
        let mut udp_got = Vec::new();
        for src in [A4, B4] {
            let before = udp_queues(&ct.0);
            let dst = SocketAddr::new(INSIDE4.parse().expect("ip"), 5300);
            datagrams_from(&lab.outside.0, src.parse().expect("source"), &[dst]);
            udp_got.push(udp_queues(&ct.0)[&53] > before[&53]);
        }
        let (inside_after, ct_after) = (accept_queues(&lab.inside.0), accept_queues(&ct.0));
        for (proto, port, to, want) in &published {
            let exposure = got
                .get(&(proto.to_string(), "0.0.0.0".to_string(), *port))
                .unwrap_or_else(|| panic!("{name}: {proto} {port} not listed"));
            let verdict = exposure["verdict"].as_str().unwrap_or("(none)");
            let detail = exposure["detail"].as_str().unwrap_or("");
            println!("{name} / {proto} {port}: {verdict} ({detail})");
            let in_order = want
                .detail
                .split('…')
                .try_fold(detail, |rest, part| {
                    rest.find(part).map(|at| &rest[at + part.len()..])
                })
                .is_some();
            let (a, b) = if *proto == "udp" {
                (udp_got[0], udp_got[1])
            } else {
                let at = tries
                    .iter()
                    .position(|(_, d)| d.port() == *port)
                    .expect("tried");
                (syn[at] == Seen::Reached, syn[at + 1] == Seen::Reached)
            };
            if verdict != want.verdict || !in_order {
                wrong.push(format!(
                    "{name} / {proto} {port}: verdict {verdict} ({detail}), expected {} ({})",
                    want.verdict, want.detail
                ));
            }
            if (a, b) != (want.a, want.b) {
                wrong.push(format!(
                    "{name} / {proto} {port}: from outside A {a}, B {b}; expected A {}, B {}",
                    want.a, want.b
                ));
            }
            // What got in went where the verdict says: to the container
            // when published, never to the inside listener.
            if *proto == "tcp" && port != to {
                let grew = |after: &BTreeMap<u16, u64>, before: &BTreeMap<u16, u64>, p: u16| {
                    after.get(&p).copied().unwrap_or(0) - before.get(&p).copied().unwrap_or(0)
                };
                let reached = u64::from(a) + u64::from(b);
                if grew(&ct_after, &ct_before, *to) != reached
                    || grew(&inside_after, &inside_before, *port) != 0
                {
                    wrong.push(format!(
                        "{name} / {proto} {port}: {reached} reached, but the container's :{to} \
                         queued {} and the inside's :{port} {}",
                        grew(&ct_after, &ct_before, *to),
                        grew(&inside_after, &inside_before, *port)
                    ));
                }
            }
        }
    }
    // Forwarding off: the rewritten connection goes nowhere the rules
    // decide, so the verdict says it does not know, and why.
    let off = Command::new("ip")
        .args(["netns", "exec", &lab.inside.0])
        .args(["sysctl", "-qw", "net.ipv4.ip_forward=0"])
        .status()
        .is_ok_and(|s| s.success());
    assert!(off, "could not turn forwarding off inside");
    lab.load(DOCKER);
    let got = verdicts(&holder);
    let exposure = &got[&("tcp".to_string(), "0.0.0.0".to_string(), 8080)];
    assert_eq!(exposure["verdict"], "unknown", "{exposure}");
    let detail = exposure["detail"].as_str().unwrap_or("");
    assert!(
        detail.contains("172.30.0.2") && detail.contains("net.ipv4.ip_forward is 0"),
        "{detail}"
    );
    let dst = SocketAddr::new(INSIDE4.parse().expect("ip"), 8080);
    let syn = syn_from(&lab.outside.0, &[(A4.parse().expect("source"), dst)]);
    assert_ne!(syn[0], Seen::Reached, "forwarded with forwarding off");
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}
