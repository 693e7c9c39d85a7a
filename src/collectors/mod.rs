//! Collectors: each turns a [`Snapshot`] into metric families, one file per
//! group (node_exporter's one collector per file). The plugin's five
//! families and the exporter's own figures are always written; `load`,
//! `health`, `info` and `baseline` can be switched off, and then neither
//! their families nor their work (connection dumps for `load`) exist. The
//! targets' families exist when a targets or modules file is given, the
//! recovery actions' when an actions file is.

mod baseline;
mod conflicts;
mod exporter;
mod exposure;
mod health;
mod info;
mod load;
mod plugin;
mod recovery;
mod targets;

use crate::encoder::{Encoder, Kind};
use crate::engine::{PortSeries, Snapshot};

pub use crate::config::Collectors;

/// Writes every family of the collectors that are on.
pub fn write(snapshot: &Snapshot, enc: &mut Encoder) {
    let on = snapshot.collectors;
    plugin::write(snapshot, enc);
    if on.info {
        info::write(snapshot, enc);
    }
    if on.load {
        load::write(snapshot, enc);
    }
    if on.health {
        health::write(snapshot, enc);
    }
    if on.exposure {
        exposure::write(snapshot, enc);
    }
    if on.baseline
        && let Some(b) = &snapshot.baseline
    {
        baseline::write(b, enc);
    }
    conflicts::write(snapshot, enc);
    targets::write(snapshot, enc);
    recovery::write(snapshot, enc);
    exporter::write(snapshot, enc);
}

/// One of the port gauges: a sample for every port `value` has one for.
fn port_family(
    enc: &mut Encoder,
    name: &str,
    help: &str,
    ports: &[PortSeries],
    value: impl Fn(&PortSeries) -> Option<f64>,
) {
    port_family_with(enc, (name, Kind::Gauge), help, ports, None, |p| {
        value(p).map(|v| vec![("", v)])
    });
}

/// A port family of any kind, with an optional extra label: `values` gives
/// each port's samples as (extra label value, value).
fn port_family_with(
    enc: &mut Encoder,
    (name, kind): (&str, Kind),
    help: &str,
    ports: &[PortSeries],
    extra: Option<&str>,
    values: impl Fn(&PortSeries) -> Option<Vec<(&'static str, f64)>>,
) {
    let mut f = enc.family(name, help, kind);
    for p in ports {
        let Some(samples) = values(p) else { continue };
        let port = p.key.port.to_string();
        for (extra_value, v) in samples {
            let base = [
                ("process_name", or_slash(&p.process_name)),
                ("exe_path", or_slash(&p.exe_path)),
                ("port", port.as_str()),
                ("netns", &*p.key.netns),
            ];
            match extra {
                Some(label) => {
                    let mut labels = base.to_vec();
                    labels.push((label, extra_value));
                    f.sample(&labels, v);
                }
                None => f.sample(&base, v),
            }
        }
    }
}

/// The plugin we replace wrote an empty label value as `/`; dashboards
/// filter on it, so we keep a non-empty placeholder.
fn or_slash(v: &str) -> &str {
    if v.is_empty() { "/" } else { v }
}

/// `t` as Unix seconds, as the expositions and the status API write it.
/// A reloaded file's two families: `<prefix>_reload_failures` (a counter)
/// and `<prefix>_last_reload_successful`, with their help texts.
fn reloads(
    enc: &mut Encoder,
    prefix: &str,
    r: crate::engine::Reloads,
    failures_help: &str,
    last_help: &str,
) {
    enc.family(
        &format!("{prefix}_reload_failures"),
        failures_help,
        Kind::Counter,
    )
    .sample(&[], r.failures as f64);
    enc.family(
        &format!("{prefix}_last_reload_successful"),
        last_help,
        Kind::Gauge,
    )
    .sample(&[], f64::from(u8::from(r.last_ok)));
}

#[cfg(test)]
mod tests {
    use std::net::IpAddr;
    use std::sync::Arc;
    use std::time::{Duration, SystemTime};

    use super::*;
    use crate::baseline::Expected;
    use crate::discover::ListenCounters;
    use crate::encoder::Format;
    use crate::engine::{
        BaselineView, ConnSummary, HttpClass, PortCheck, ProbeStats, ProcessSeries, SelfProcess,
        SocketInfo,
    };
    use crate::health::Health;
    use crate::model::{Family, PortKey, Proto};

    fn at(secs: u64) -> SystemTime {
        crate::value::time::from_unix_secs(secs)
    }

    fn series(proto: Proto, port: u16, netns: &str, name: &str, exe: &str) -> PortSeries {
        PortSeries {
            key: PortKey {
                proto,
                port,
                netns: netns.into(),
            },
            process_name: name.into(),
            exe_path: exe.into(),
            present: true,
            tcp: None,
            http_alive: None,
            sockets: Arc::from([]),
            queue: None,
            connections: None,
            health: Health::Unknown,
            check: PortCheck {
                targets: Arc::from([]),
                answered: None,
                http: HttpClass::unknown(),
                queue_full_passes: 0,
            },
            last_check: None,
            day: Default::default(),
        }
    }

    fn socket(address: &str, pid: Option<u32>, user: &str, container: &str) -> SocketInfo {
        let address: IpAddr = address.parse().expect("address");
        SocketInfo {
            family: if address.is_ipv4() {
                Family::Ipv4
            } else {
                Family::Ipv6
            },
            address,
            inode: 0,
            uid: 0,
            accept_queue: None,
            owner_unknown_reason: None,
            activation: None,
            exposure: Some(Arc::new(crate::exposure::Exposure::Open {
                forwarded: None,
            })),
            owners: pid
                .into_iter()
                .map(|pid| {
                    Arc::new(crate::model::Owner {
                        pid,
                        start_time: 1,
                        process_name: String::new(),
                        exe_path: String::new(),
                        cmdline: String::new(),
                        uid: 0,
                        user: user.into(),
                        ppid: 1,
                        container: (!container.is_empty()).then(|| {
                            crate::discover::cgroup::Container {
                                id: container.into(),
                                pod_uid: None,
                            }
                        }),
                        cgroup_unrecognized: false,
                        unit: None,
                        listen_fds: None,
                        exe_id: None,
                    })
                })
                .collect(),
        }
    }

    fn expected(proto: Proto, port: u16, name: &str) -> Expected {
        Expected {
            proto,
            port,
            netns: "host".into(),
            process_name: name.into(),
            exe_path: format!("/usr/sbin/{name}").into(),
        }
    }

    /// A snapshot built by hand with every family and every kind of value:
    /// an HTTP port, a hung one, a slow one, a UDP port, a gone port, an
    /// owner-less socket, a container's port, a hostile process name.
    fn snapshot() -> Snapshot {
        let mut web = series(Proto::Tcp, 80, "host", "nginx", "/usr/sbin/nginx");
        web.tcp = Some((true, 0.00025));
        web.http_alive = Some(true);
        web.health = Health::Ok;
        web.sockets = Arc::from([
            socket("0.0.0.0", Some(101), "www-data", ""),
            socket("::", Some(101), "www-data", ""),
        ]);
        web.queue = Some(crate::model::AcceptQueue {
            current: 0,
            max: Some(511),
            drops: Some(0),
        });
        let mut by_state = [0u32; 12];
        by_state[1] = 12; // established
        by_state[3] = 2; // syn_recv
        by_state[8] = 1; // close_wait
        web.connections = Some(Arc::new(ConnSummary { by_state, peers: 5 }));

        let mut hung = series(Proto::Tcp, 8080, "host", "java", "/usr/bin/java");
        hung.tcp = Some((false, 1.0));
        hung.health = Health::Hung;
        hung.sockets = Arc::from([socket("127.0.0.1", Some(202), "app", "")]);
        hung.queue = Some(crate::model::AcceptQueue {
            current: 129,
            max: Some(128),
            drops: Some(37),
        });
        hung.connections = Some(Arc::new(ConnSummary {
            by_state: [0; 12],
            peers: 0,
        }));

        let mut hostile = series(
            Proto::Tcp,
            9000,
            "3f4e5d6c7b8a",
            "evil\"name\\\nx",
            "/tmp/a b/\u{202e}exe",
        );
        hostile.tcp = Some((true, 0.0125));
        hostile.health = Health::Slow;
        hostile.sockets = Arc::from([socket("::1", Some(303), "1001", "3f4e5d6c7b8a")]);

        let mut dns = series(Proto::Udp, 53, "host", "", "");
        dns.health = Health::Ok;
        dns.sockets = Arc::from([socket("127.0.0.53", None, "", "")]);

        let mut gone = series(Proto::Tcp, 5432, "host", "postgres", "/usr/lib/postgresql");
        gone.present = false;
        gone.tcp = Some((true, 0.0004));
        gone.health = Health::Down;

        let mut ports = vec![web, hung, hostile, dns, gone];
        ports.sort_by(|a, b| a.key.cmp(&b.key));

        let mut tcp = ProbeStats::default();
        tcp.record("alive", 0.0003);
        tcp.record("alive", 0.012);
        tcp.record("dead", 1.0);
        tcp.last_round = Some(at(1_764_460_800));
        tcp.last_round_seconds = 1.25;
        tcp.interval = Duration::from_secs(60);
        let mut http = ProbeStats::default();
        http.record("http", 0.002);
        http.last_round = Some(at(1_764_460_805));
        http.last_round_seconds = 0.5;
        http.interval = Duration::from_secs(60);

        let mut s = Snapshot::empty(Collectors::default());
        s.conflicts = Arc::from([crate::conflicts::Conflict {
            proto: Proto::Tcp,
            port: 3000,
            netns: "host".into(),
            kind: crate::conflicts::Kind::Address,
            detail: "docker-proxy (uid 0) on 0.0.0.0, node (uid 1000) on ::1".into(),
        }]);
        s.ports = ports;
        s.processes = vec![
            ProcessSeries {
                process_name: "nginx".into(),
                exe_path: "/usr/sbin/nginx".into(),
                alive: true,
                pid: 101,
                start_time: 1,
            },
            ProcessSeries {
                process_name: "postgres".into(),
                exe_path: "/usr/lib/postgresql".into(),
                alive: false,
                pid: 404,
                start_time: 2,
            },
        ];
        s.netns_listen = vec![(
            "host".into(),
            ListenCounters {
                overflows: 37,
                drops: 40,
            },
        )];
        s.baseline = Some(Arc::new(BaselineView {
            expected: vec![
                (expected(Proto::Tcp, 22, "sshd"), false),
                (expected(Proto::Tcp, 80, "nginx"), true),
            ],
            present: vec![
                (expected(Proto::Tcp, 80, "nginx"), false),
                (expected(Proto::Tcp, 8080, "java"), true),
            ],
            recovered: 1,
            write_errors: 0,
            lock_busy: 2,
            writer_stalled: 3,
        }));
        s.telemetry = crate::engine::Telemetry {
            probes: vec![("http", http), ("tcp", tcp)],
            discovery_errors: vec![("fd_denied", 3), ("vanished", 1)],
            discovery_runs: vec![("full", 2), ("refresh", 40)],
            last_discovery: Some((at(1_764_460_790), 0.0425)),
            process: Some(SelfProcess {
                figures: crate::discover::own::Figures {
                    cpu_seconds: 12.5,
                    resident_bytes: 14_680_064.0,
                    virtual_bytes: 1_234_567_168.0,
                    open_fds: 17.0,
                    max_fds: 65_536.0,
                    start_time_seconds: 1_764_450_000.0,
                },
                server: crate::counters::Counts {
                    handler_panics: 1,
                    refused: [0, 7, 2],
                },
            }),
            max_ports: 20_000,
            history_bytes: 4_096,
            queue_full: 5,
            over_limit: 0,
        };
        // Checking by list: a target that passed with TLS dates, one that
        // failed, a UDP one that answered, one not checked yet; a reload
        // that failed.
        let modules = crate::modules::Modules::builtin();
        let list = crate::targets::from_args(&[
            "https://web.test/health".to_string(),
            "127.0.0.1:5432".to_string(),
            "udp://127.0.0.1:53".to_string(),
            "127.0.0.1:6379".to_string(),
        ])
        .expect("targets");
        let jobs: Vec<Arc<crate::targets::Job>> = crate::targets::bind(list, &modules, "golden")
            .expect("bind")
            .into_iter()
            .map(Arc::new)
            .collect();
        s.by_list.from_files = true;
        let mut failures = [0u64; crate::probe::check::Reason::ALL.len()];
        failures[0] = 3;
        let last = |success, reason, http_status, tls| crate::engine::TargetLast {
            success,
            seconds: 0.031,
            reason,
            tls,
            udp_class: None,
            http_status,
        };
        s.targets = vec![
            crate::engine::TargetSeries {
                job: Arc::clone(&jobs[0]),
                last: Some(last(
                    true,
                    None,
                    Some(200),
                    Some(crate::probe::tls::CertDates {
                        not_before: 1_760_000_000,
                        not_after: 1_790_000_000,
                    }),
                )),
                failures: [0; crate::probe::check::Reason::ALL.len()],
                errors: 0,
                last_check: Some(at(1_764_460_801)),
                history: Default::default(),
            },
            crate::engine::TargetSeries {
                job: Arc::clone(&jobs[1]),
                last: Some(last(
                    false,
                    Some(crate::probe::check::Reason::Refused),
                    None,
                    None,
                )),
                failures,
                errors: 1,
                last_check: Some(at(1_764_460_802)),
                history: Default::default(),
            },
            crate::engine::TargetSeries {
                job: Arc::clone(&jobs[2]),
                last: Some(crate::engine::TargetLast {
                    udp_class: Some("open"),
                    ..last(true, None, None, None)
                }),
                failures: [0; crate::probe::check::Reason::ALL.len()],
                errors: 0,
                last_check: Some(at(1_764_460_803)),
                history: Default::default(),
            },
            crate::engine::TargetSeries {
                job: Arc::clone(&jobs[3]),
                last: None,
                failures: [0; crate::probe::check::Reason::ALL.len()],
                errors: 0,
                last_check: None,
                history: Default::default(),
            },
        ];
        s.reloads = crate::engine::Reloads {
            failures: 1,
            last_ok: true,
        };
        // Recovery: an action that has tried, one that has not.
        let mut restart = crate::engine::RecoveryStats::default();
        restart.attempts.insert("success", 2);
        restart.attempts.insert("timeout", 1);
        restart.escalations = 1;
        restart.last_attempt = Some(at(1_764_460_700));
        s.recovery = Some(
            [
                (Arc::from("restart-nginx"), restart),
                (Arc::from("restart-postgres"), Default::default()),
            ]
            .into_iter()
            .collect(),
        );
        s.actions_reloads = crate::engine::Reloads {
            failures: 2,
            last_ok: false,
        };
        s
    }

    fn encode(s: &Snapshot, format: Format) -> String {
        String::from_utf8(s.body(format, false).to_vec()).expect("UTF-8")
    }

    /// The exposition of a hand-built snapshot, compared with the files
    /// checked in under tests/golden/ (as node_exporter's e2e output): a
    /// renamed family, label or help text shows up in review.
    /// `UPDATE_GOLDEN=1 cargo test golden` writes them anew.
    #[test]
    fn golden_exposition() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden");
        let s = snapshot();
        for (format, file) in [
            (Format::Text, "exposition.prom"),
            (Format::OpenMetrics, "exposition.om.txt"),
        ] {
            let got = encode(&s, format);
            let path = dir.join(file);
            if std::env::var_os("UPDATE_GOLDEN").is_some() {
                std::fs::write(&path, &got).expect("write golden file");
            }
            let want = std::fs::read_to_string(&path).unwrap_or_default();
            assert!(
                got == want,
                "{} differs from the exposition (UPDATE_GOLDEN=1 to accept):\n{}",
                path.display(),
                first_difference(&want, &got)
            );
            // Gzipped, the same text.
            let mut text = String::new();
            std::io::Read::read_to_string(
                &mut flate2::read::GzDecoder::new(&*s.body(format, true)),
                &mut text,
            )
            .expect("gunzip");
            assert_eq!(text, got);
        }
    }

    fn first_difference(want: &str, got: &str) -> String {
        let (mut w, mut g) = (want.lines(), got.lines());
        for n in 1.. {
            match (w.next(), g.next()) {
                (None, None) => break,
                (a, b) if a == b => {}
                (a, b) => return format!("line {n}:\n  want: {a:?}\n  got:  {b:?}"),
            }
        }
        String::new()
    }

    /// Families of each optional collector, and that switching one off
    /// removes exactly them.
    #[test]
    fn a_collector_switched_off_leaves_no_family_behind() {
        let families = |c: Collectors| -> std::collections::BTreeSet<String> {
            let mut s = snapshot();
            s.collectors = c;
            encode(&s, Format::Text)
                .lines()
                .filter_map(|l| l.strip_prefix("# TYPE "))
                .filter_map(|l| l.split(' ').next())
                .map(str::to_string)
                .collect()
        };
        let all = families(Collectors::default());
        type Owned = (&'static str, fn(&mut Collectors), &'static [&'static str]);
        let owned: [Owned; 5] = [
            (
                "load",
                |c| c.load = false,
                &[
                    "portwarden_tcp_listen_queue_length",
                    "portwarden_tcp_listen_queue_max",
                    "portwarden_tcp_listen_drops_total",
                    "portwarden_netns_listen_overflows_total",
                    "portwarden_netns_listen_drops_total",
                    "portwarden_tcp_port_connections",
                    "portwarden_tcp_port_peers",
                ],
            ),
            ("health", |c| c.health = false, &["portwarden_port_health"]),
            ("info", |c| c.info = false, &["portwarden_port_info"]),
            (
                "exposure",
                |c| c.exposure = false,
                &["portwarden_port_exposure"],
            ),
            (
                "baseline",
                |c| c.baseline = false,
                &[
                    "portwarden_expected_port_up",
                    "portwarden_port_unexpected",
                    "portwarden_baseline_ports",
                    "portwarden_baseline_errors_total",
                ],
            ),
        ];
        for (name, off, theirs) in owned {
            let mut c = Collectors::default();
            off(&mut c);
            let left = families(c);
            let gone: Vec<&String> = all.difference(&left).collect();
            let mut want: Vec<&str> = theirs.to_vec();
            want.sort_unstable();
            let gone: Vec<&str> = gone.iter().map(|s| s.as_str()).collect();
            assert_eq!(gone, want, "collector {name}");
        }
    }
}
