//! The walk on facts made by hand: the branches the integration tests
//! (tests/why.rs) cannot make on this machine, and the "not checked" rule.

use super::*;
use crate::exposure::RuleRef;

fn owner(pid: u32, state: RunState) -> OwnerFacts {
    OwnerFacts {
        pid,
        process_name: "srv".into(),
        exe_path: "/usr/bin/srv".into(),
        unit: Some("srv.service".into()),
        state: Some(state),
        frozen: Some(None),
    }
}

fn listener(address: &str, owners: Vec<OwnerFacts>) -> Listener {
    let address: IpAddr = address.parse().expect("ip");
    Listener {
        address,
        family: if address.is_ipv4() {
            Family::Ipv4
        } else {
            Family::Ipv6
        },
        v6only: address.is_ipv6().then_some(false),
        device: None,
        netns: "host".into(),
        host: true,
        owners,
        owner_unknown: None,
        queue: None,
        queue_again: None,
        connect: Some(Connect {
            target: std::net::SocketAddr::new(address, 80),
            alive: true,
            seconds: 0.0001,
            error: None,
        }),
        exposure: Some(Exposure::Open { forwarded: None }),
    }
}

fn facts(asked: &str, listeners: Vec<Listener>) -> Facts {
    Facts {
        question: Question::parse(asked).expect("question"),
        listeners,
        other_proto: vec![],
        expected: vec![],
        events: vec![],
        unit: None,
        conflicts: vec![],
    }
}

fn statuses(a: &Answer) -> Vec<Status> {
    a.steps.iter().map(|s| s.status).collect()
}

#[test]
fn an_ipv6_only_wildcard_refuses_ipv4_clients_but_takes_ipv6_ones() {
    let mut l = listener("::", vec![owner(7, RunState::Running)]);
    l.v6only = Some(true);
    let a = walk(&facts("127.0.0.1:80", vec![l.clone()]));
    assert_eq!(a.stopped_at, Some(Step::Address));
    assert_eq!(
        a.verdict,
        "80/tcp: listening on [::] (IPv6 only) only — IPv4 clients (127.0.0.1) cannot connect"
    );
    assert!(walk(&facts("[::1]:80", vec![l.clone()])).healthy);
    let remote = walk(&facts("80", vec![l]));
    assert_eq!(remote.stopped_at, Some(Step::Address));
    // Dual-stack [::] takes IPv4 clients.
    let dual = listener("::", vec![owner(7, RunState::Running)]);
    assert!(walk(&facts("127.0.0.1:80", vec![dual])).healthy);
}

#[test]
fn after_a_broken_step_every_later_one_is_not_checked() {
    let a = walk(&facts("80", vec![]));
    assert_eq!(a.stopped_at, Some(Step::Listening));
    assert_eq!(
        statuses(&a),
        [
            Status::Problem,
            Status::NotChecked,
            Status::NotChecked,
            Status::NotChecked,
            Status::NotChecked,
            Status::NotChecked
        ]
    );
    assert!(!a.healthy);
}

#[test]
fn one_stopped_member_of_a_reuseport_group_hangs_a_share() {
    let l1 = listener("0.0.0.0", vec![owner(10, RunState::Running)]);
    let l2 = listener("0.0.0.0", vec![owner(11, RunState::Stopped)]);
    let a = walk(&facts("80", vec![l1, l2]));
    assert_eq!(a.stopped_at, Some(Step::Owner));
    assert!(
        a.verdict
            .contains("srv (pid 11, srv.service) of the 2 processes sharing it is stopped"),
        "{}",
        a.verdict
    );
    assert!(a.verdict.contains("about 1 of 2 connections hang"));
    assert_eq!(a.hint.as_deref(), Some("resume it: kill -CONT 11"));
}

#[test]
fn blocked_names_the_rule_and_a_local_client_skips_the_firewall() {
    let mut l = listener("0.0.0.0", vec![owner(10, RunState::Running)]);
    l.exposure = Some(Exposure::Blocked {
        by: RuleRef {
            family: crate::exposure::ruleset::TableFamily::Inet,
            table: "filter".into(),
            chain: "input".into(),
            handle: Some(7),
        },
        forwarded: None,
    });
    let a = walk(&facts("80", vec![l.clone()]));
    assert_eq!(a.stopped_at, Some(Step::Exposure));
    assert_eq!(
        a.verdict,
        "80/tcp: blocked by the firewall: inet filter input handle 7 drops new connections from other hosts"
    );
    assert!(
        a.hint
            .expect("hint")
            .contains("nft insert rule inet filter input tcp dport 80 accept")
    );
    assert!(walk(&facts("127.0.0.1:80", vec![l])).healthy);
}

#[test]
fn an_unknown_step_does_not_stop_the_walk_nor_make_it_unhealthy() {
    let mut l = listener("0.0.0.0", vec![owner(10, RunState::Running)]);
    l.exposure = Some(Exposure::Unknown {
        reason: "no permission".into(),
    });
    let a = walk(&facts("80", vec![l]));
    assert!(a.healthy);
    assert_eq!(a.steps[4].status, Status::Unknown);
    assert!(
        a.steps[4].summary.contains("needs CAP_NET_ADMIN"),
        "{}",
        a.steps[4].summary
    );
    assert!(a.verdict.ends_with("(exposure unknown)"), "{}", a.verdict);
}

#[test]
fn a_device_bound_socket_and_a_container_only_port() {
    let mut l = listener("0.0.0.0", vec![owner(10, RunState::Running)]);
    l.device = Some("eth0".into());
    let a = walk(&facts("127.0.0.1:80", vec![l]));
    assert_eq!(a.stopped_at, Some(Step::Address));
    let mut c = listener("0.0.0.0", vec![owner(10, RunState::Running)]);
    c.host = false;
    c.netns = "0123456789ab".into();
    let a = walk(&facts("80", vec![c]));
    assert_eq!(a.stopped_at, Some(Step::Address));
    assert!(
        a.verdict.contains("listening only inside 0123456789ab"),
        "{}",
        a.verdict
    );
}

#[test]
fn nothing_listening_tells_the_baseline_the_last_close_and_the_unit() {
    let mut f = facts("8080", vec![]);
    f.expected.push(ExpectedFact {
        netns: "host".into(),
        process_name: "nginx".into(),
        exe_path: "/usr/sbin/nginx".into(),
        since: 1_764_720_000,
    });
    f.events.push(PastEvent {
        at: "2026-12-03T03:12:40Z".into(),
        action: "port_closed".into(),
        address: "0.0.0.0:8080".into(),
        netns: "host".into(),
        pid: Some(4711),
        process_name: Some("nginx".into()),
        unit: Some("nginx.service".into()),
    });
    f.unit = Some(UnitFacts {
        name: "nginx.service".into(),
        state: Ok(UnitState::parse(
            "ActiveState=failed\nSubState=failed\nResult=exit-code\nExecMainCode=1\nExecMainStatus=1\n",
        )),
        journal: Err("systemd does not run this host".into()),
    });
    let a = walk(&f);
    assert_eq!(
        a.verdict,
        "8080/tcp: nothing listens, though it is expected (nginx since 2025-12-03) — closed at 2026-12-03T03:12:40Z by nginx (pid 4711)"
    );
    let ev = &a.steps[0].evidence;
    assert!(
        ev.iter()
            .any(|e| e
                == "unit nginx.service: failed (failed), result exit-code, exited with status 1"),
        "{ev:?}"
    );
    assert!(
        ev.iter()
            .any(|e| e.starts_with("journal of nginx.service: unavailable"))
    );
    assert!(
        a.hint
            .expect("hint")
            .contains("systemctl start nginx.service")
    );
}

#[test]
fn a_connect_that_fails_stops_at_accepting_and_udp_has_nothing_to_connect() {
    let mut l = listener("0.0.0.0", vec![owner(10, RunState::Running)]);
    l.connect = Some(Connect {
        target: "127.0.0.1:80".parse().expect("addr"),
        alive: false,
        seconds: 0.0,
        error: Some("timed out after 2s (no answer)".into()),
    });
    let a = walk(&facts("80", vec![l]));
    assert_eq!(a.stopped_at, Some(Step::Accepting));
    assert_eq!(
        a.verdict,
        "80/tcp: a connection to 127.0.0.1:80 timed out after 2s (no answer)"
    );
    let mut u = listener("0.0.0.0", vec![owner(10, RunState::Running)]);
    u.connect = None;
    let a = walk(&facts("53/udp", vec![u]));
    assert!(a.healthy, "{}", a.verdict);
    assert!(a.steps[3].summary.starts_with("UDP: bound"));
}
