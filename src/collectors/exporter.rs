//! The "self" group: portwarden's own health — version, ports found and
//! left out, discovery passes and errors, checks and rounds, and the
//! standard `process_*` figures. Always on.

use crate::encoder::{Encoder, Kind};
use crate::engine::{DURATION_BUCKETS, Snapshot};
use crate::model::Proto;
use crate::value::time::unix_seconds;

pub(super) fn write(s: &Snapshot, enc: &mut Encoder) {
    let t = &s.telemetry;
    enc.family(
        "portwarden_build_info",
        "Version of portwarden; always 1.",
        Kind::Gauge,
    )
    .sample(&[("version", env!("CARGO_PKG_VERSION"))], 1.0);
    let present = |proto: Proto| {
        s.ports
            .iter()
            .filter(|p| p.key.proto == proto && p.present)
            .count() as f64
    };
    enc.by_label(
        "portwarden_ports",
        "Listening ports discovered and exported, by protocol.",
        Kind::Gauge,
        "proto",
        [Proto::Tcp, Proto::Udp].map(|p| (p.as_str(), present(p))),
    );
    enc.family(
        "portwarden_ports_over_limit",
        "Ports found at the last discovery pass and not exported: more than --discovery.max-ports.",
        Kind::Gauge,
    )
    .sample(&[], t.over_limit as f64);
    enc.family(
        "portwarden_history_bytes",
        "Bytes the status page's last day of every port and target holds (a minute a bucket, run-length encoded).",
        Kind::Gauge,
    )
    .sample(&[], t.history_bytes as f64);
    enc.family(
        "portwarden_engine_queue_full",
        "Messages (check results, discovery passes) that found the state owner's queue full and waited for room: the owner is behind.",
        Kind::Counter,
    )
    .sample(&[], t.queue_full as f64);
    let events = &s.events;
    enc.by_label(
        "portwarden_port_events",
        "Port events made since the start, by action: port_listening (the state at the start), port_opened, port_closed, owner_changed.",
        Kind::Counter,
        "action",
        crate::events::Action::ALL.map(|a| (a.as_str(), events.counts.of(a) as f64)),
    );
    if let Some((written, dropped, failed)) = events.output {
        enc.by_label(
            "portwarden_events_output",
            "Port events by what became of them at --events.output: written, dropped (the writer was behind), failed (a write failed).",
            Kind::Counter,
            "result",
            [
                ("written", written as f64),
                ("dropped", dropped as f64),
                ("failed", failed as f64),
            ],
        );
    }
    enc.family(
        "portwarden_ports_limit",
        "--discovery.max-ports: the most port series exported.",
        Kind::Gauge,
    )
    .sample(&[], t.max_ports as f64);
    if let Some((at, seconds)) = t.last_discovery {
        enc.family(
            "portwarden_discovery_duration_seconds",
            "Duration of the last discovery pass.",
            Kind::Gauge,
        )
        .sample(&[], seconds);
        enc.family(
            "portwarden_last_discovery_timestamp_seconds",
            "When the last discovery pass completed, in seconds since the epoch.",
            Kind::Gauge,
        )
        .sample(&[], unix_seconds(at));
    }
    enc.by_label(
        "portwarden_discovery_runs",
        "Discovery passes, by kind (full: every fd table read).",
        Kind::Counter,
        "kind",
        t.discovery_runs.iter().map(|(k, n)| (*k, *n as f64)),
    );
    enc.by_label(
        "portwarden_discovery_errors",
        "Things discovery had to skip or work around, by reason; none fails a pass but `failed`.",
        Kind::Counter,
        "reason",
        t.discovery_errors.iter().map(|(k, n)| (*k, *n as f64)),
    );
    probes(s, enc);
    process(s, enc);
}

/// Checks by kind and result, their durations, and the last round of each.
fn probes(s: &Snapshot, enc: &mut Encoder) {
    let t = &s.telemetry;
    {
        let mut f = enc.family(
            "portwarden_probes",
            "Checks run, by kind and result.",
            Kind::Counter,
        );
        for (kind, stats) in &t.probes {
            let mut results: Vec<_> = stats.results.iter().collect();
            results.sort();
            for (result, n) in results {
                f.sample(&[("kind", kind), ("result", result)], *n as f64);
            }
        }
    }
    {
        let mut f = enc.family(
            "portwarden_probe_duration_seconds",
            "Duration of checks, by kind.",
            Kind::Histogram,
        );
        for (kind, stats) in &t.probes {
            let buckets: Vec<(f64, u64)> = DURATION_BUCKETS
                .iter()
                .copied()
                .zip(stats.buckets)
                .collect();
            f.histogram(&[("kind", kind)], &buckets, stats.sum, stats.count);
        }
    }
    let rounds = || {
        t.probes
            .iter()
            .filter_map(|(k, s)| s.last_round.map(|at| (*k, s, at)))
    };
    enc.by_label(
        "portwarden_probe_round_duration_seconds",
        "How long the last round of checks of each kind took, from first start to last result.",
        Kind::Gauge,
        "kind",
        rounds().map(|(k, s, _)| (k, s.last_round_seconds)),
    );
    enc.by_label(
        "portwarden_last_probe_round_timestamp_seconds",
        "When the last round of checks of each kind completed, in seconds since the epoch.",
        Kind::Gauge,
        "kind",
        rounds().map(|(k, _, at)| (k, unix_seconds(at))),
    );
    enc.by_label(
        "portwarden_probe_round_interval_seconds",
        "How often a round of checks of each kind is due (3 of them missed: /-/healthy fails).",
        Kind::Gauge,
        "kind",
        rounds().map(|(k, s, _)| (k, s.interval.as_secs_f64())),
    );
}

/// The standard `process_*` families, as every Prometheus client writes them.
fn process(s: &Snapshot, enc: &mut Encoder) {
    let Some(p) = s.telemetry.process else {
        return;
    };
    enc.family(
        "process_cpu_seconds",
        "Total user and system CPU time spent in seconds.",
        Kind::Counter,
    )
    .sample(&[], p.figures.cpu_seconds);
    for (name, help, v) in [
        (
            "process_resident_memory_bytes",
            "Resident memory size in bytes.",
            p.figures.resident_bytes,
        ),
        (
            "process_virtual_memory_bytes",
            "Virtual memory size in bytes.",
            p.figures.virtual_bytes,
        ),
        (
            "process_open_fds",
            "Number of open file descriptors.",
            p.figures.open_fds,
        ),
        (
            "process_max_fds",
            "Maximum number of open file descriptors.",
            p.figures.max_fds,
        ),
        (
            "process_start_time_seconds",
            "Start time of the process since unix epoch in seconds.",
            p.figures.start_time_seconds,
        ),
    ] {
        enc.family(name, help, Kind::Gauge).sample(&[], v);
    }
    enc.family(
        "portwarden_http_handler_panics",
        "Requests whose handler panicked (a bug of ours), answered 500.",
        Kind::Counter,
    )
    .sample(&[], p.server.handler_panics as f64);
    enc.by_label(
        "portwarden_http_requests_refused",
        "Requests answered 503 at once because their budget was spent: scrapes (--web.max-requests), probes (--web.probe-concurrency), renders (the status page, API and badges).",
        Kind::Counter,
        "budget",
        crate::counters::Refused::ALL
            .iter()
            .zip(p.server.refused)
            .map(|(r, n)| (r.as_str(), n as f64)),
    );
}
