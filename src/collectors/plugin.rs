//! The five families of the node_exporter plugin we replace, with its names,
//! labels and meaning: always on (dashboards and alerts depend on them).

use super::{or_slash, port_family};
use crate::encoder::{Encoder, Kind};
use crate::engine::{PortSeries, Snapshot};
use crate::model::Proto;

pub(super) fn write(s: &Snapshot, enc: &mut Encoder) {
    let tcp = |p: &PortSeries| p.key.proto == Proto::Tcp;
    let gone_is_zero = |p: &PortSeries, up: bool| f64::from(u8::from(up && p.present));
    port_family(
        enc,
        "node_tcp_port_alive",
        "1 if a TCP connection to the port succeeded at the last check, 0 if not.",
        &s.ports,
        |p| {
            tcp(p)
                .then_some(p.tcp?)
                .map(|(alive, _)| gone_is_zero(p, alive))
        },
    );
    port_family(
        enc,
        "node_tcp_port_response_seconds",
        "TCP connect time of the last check, in seconds (0 once the port is gone).",
        &s.ports,
        |p| {
            tcp(p)
                .then_some(p.tcp?)
                .map(|(_, seconds)| if p.present { seconds } else { 0.0 })
        },
    );
    port_family(
        enc,
        "node_http_port_alive",
        "1 if the port answered an HTTP request with a status line and headers, 0 if it stopped; only ports that once answered HTTP.",
        &s.ports,
        |p| {
            tcp(p)
                .then_some(p.http_alive?)
                .map(|alive| gone_is_zero(p, alive))
        },
    );
    port_family(
        enc,
        "node_udp_port_alive",
        "1 while a UDP socket is bound (with no peer) on the port, 0 once it is gone.",
        &s.ports,
        |p| (p.key.proto == Proto::Udp).then(|| gone_is_zero(p, true)),
    );
    let mut f = enc.family(
        "node_process_alive",
        "1 if the process owning the port(s) is running (same pid and start time, or its successor), 0 if not.",
        Kind::Gauge,
    );
    for p in &s.processes {
        let labels = [
            ("process_name", or_slash(&p.process_name)),
            ("exe_path", or_slash(&p.exe_path)),
        ];
        f.sample(&labels, f64::from(u8::from(p.alive)));
    }
}
