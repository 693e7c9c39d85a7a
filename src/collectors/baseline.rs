//! `baseline`: expected ports, up or not, and unexpected ones.

use super::or_slash;
use crate::baseline::Expected;
use crate::encoder::{Encoder, Kind};
use crate::engine::BaselineView;

pub(super) fn write(b: &BaselineView, enc: &mut Encoder) {
    let sample = |f: &mut crate::encoder::Family<'_>, p: &Expected, value: bool| {
        let port = p.port.to_string();
        let labels = [
            ("process_name", or_slash(&p.process_name)),
            ("exe_path", or_slash(&p.exe_path)),
            ("proto", p.proto.as_str()),
            ("port", port.as_str()),
            ("netns", &*p.netns),
        ];
        f.sample(&labels, f64::from(u8::from(value)));
    };
    {
        let mut f = enc.family(
            "portwarden_expected_port_up",
            "1 if an expected port (in the baseline) listens now, 0 if not: after a restart or reboot, a service that did not come back.",
            Kind::Gauge,
        );
        for (p, up) in &b.expected {
            sample(&mut f, p, *up);
        }
    }
    {
        let mut f = enc.family(
            "portwarden_port_unexpected",
            "1 for a listening port that is neither in the baseline nor in the allowlist; 0 for one that is.",
            Kind::Gauge,
        );
        let mut present: Vec<&(Expected, bool)> = b.present.iter().collect();
        present.sort();
        for (p, unexpected) in present {
            sample(&mut f, p, *unexpected);
        }
    }
    enc.family(
        "portwarden_baseline_ports",
        "Ports in the baseline of expected ports.",
        Kind::Gauge,
    )
    .sample(&[], b.expected.len() as f64);
    enc.by_label(
        "portwarden_baseline_errors",
        // writer_stalled: discovery passes that found the file's writer
        // stuck (a slow or hung disk; nothing else waits for it). The help
        // is kept word for word (a series' help changes for no one).
        "Baseline files found unreadable (kept aside as .bad.<time>, a fresh one started), failed writes (learning goes on in memory), and writes put off because another process held the lock.",
        Kind::Counter,
        "reason",
        [
            ("unreadable", b.recovered as f64),
            ("write_failed", b.write_errors as f64),
            ("lock_busy", b.lock_busy as f64),
            ("writer_stalled", b.writer_stalled as f64),
        ],
    );
}
