//! `portwarden_port_conflict`: one series per port number, namespace and
//! kind of conflict found at the last pass (see [`crate::conflicts`]).
//! Always on: a handful of series at most, and none on a tidy host.

use crate::encoder::{Encoder, Kind};
use crate::engine::Snapshot;

pub(super) fn write(s: &Snapshot, enc: &mut Encoder) {
    let mut f = enc.family(
        "portwarden_port_conflict",
        "1 for each port number held in conflict, by kind: address (different executables or users on different addresses or stacks), reuseport (a SO_REUSEPORT group of different executables or users), replaced_exe (an owner whose executable was deleted or replaced since it started).",
        Kind::Gauge,
    );
    for c in s.conflicts.iter() {
        let port = c.port.to_string();
        f.sample(
            &[
                ("proto", c.proto.as_str()),
                ("port", &port),
                ("netns", &c.netns),
                ("kind", c.kind.as_str()),
            ],
            1.0,
        );
    }
}
