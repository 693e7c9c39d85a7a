//! `health`: each port's one word.

use super::or_slash;
use crate::encoder::{Encoder, Kind};
use crate::engine::Snapshot;

pub(super) fn write(s: &Snapshot, enc: &mut Encoder) {
    let mut f = enc.family(
        "portwarden_port_health",
        "The port's health now, in the health label (one series per port, always 1): ok, slow (connect time far above its own recent median), hung (accept queue full at two passes in a row, or a once-HTTP port no longer answering HTTP), down (gone or refusing), unknown (not checked yet, or its namespace cannot be entered).",
        Kind::Gauge,
    );
    for p in &s.ports {
        let port = p.key.port.to_string();
        let labels = [
            ("process_name", or_slash(&p.process_name)),
            ("exe_path", or_slash(&p.exe_path)),
            ("proto", p.key.proto.as_str()),
            ("port", port.as_str()),
            ("netns", &*p.key.netns),
            ("health", p.health.as_str()),
        ];
        f.sample(&labels, 1.0);
    }
}
