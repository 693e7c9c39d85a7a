//! `exposure`: `portwarden_port_exposure`, one series per port (value 1)
//! saying whether outside hosts may reach it by its namespace's firewall:
//! `open`, `restricted`, `blocked`, `local` or `unknown`. A port on several
//! addresses is as exposed as its most exposed socket.

use crate::encoder::{Encoder, Kind};
use crate::engine::Snapshot;
use crate::exposure::Exposure;

/// Most exposed first.
fn rank(e: &Exposure) -> u8 {
    match e {
        Exposure::Open { .. } => 0,
        Exposure::Restricted { .. } => 1,
        Exposure::Unknown { .. } => 2,
        Exposure::Blocked { .. } => 3,
        Exposure::Local => 4,
    }
}

pub(super) fn write(s: &Snapshot, enc: &mut Encoder) {
    let mut f = enc.family(
        "portwarden_port_exposure",
        "Whether outside hosts may open a connection to the port, by its namespace's firewall ruleset (exposure: open, restricted, blocked, local or unknown), as its most exposed socket; 1 for the port's one verdict.",
        Kind::Gauge,
    );
    for p in s.ports.iter().filter(|p| p.present) {
        let Some(e) = p
            .sockets
            .iter()
            .filter_map(|s| s.exposure.as_deref())
            .min_by_key(|e| rank(e))
        else {
            continue;
        };
        let port = p.key.port.to_string();
        f.sample(
            &[
                ("proto", p.key.proto.as_str()),
                ("port", port.as_str()),
                ("netns", &*p.key.netns),
                ("exposure", e.word()),
            ],
            1.0,
        );
    }
}
