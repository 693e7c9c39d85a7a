//! `info`: `portwarden_port_info`, one series per listening socket.

use crate::encoder::{Encoder, Kind};
use crate::engine::Snapshot;

pub(super) fn write(s: &Snapshot, enc: &mut Encoder) {
    let mut f = enc.family(
        "portwarden_port_info",
        "One series per listening socket (while it listens): its address, namespace, primary owner's pid, user, container and systemd unit (unit: the system unit, user@UID.service for a user's; user_unit: the user's unit; socket_unit: the socket unit that passed it, or (unresolved)); always 1.",
        Kind::Gauge,
    );
    for p in s.ports.iter().filter(|p| p.present) {
        let port = p.key.port.to_string();
        for socket in p.sockets.iter() {
            let address = socket.address.to_string();
            let owner = socket.owner().map(|o| &**o);
            let pid = owner.map(|o| o.pid.to_string()).unwrap_or_default();
            let container = owner.and_then(|o| o.container.as_ref());
            let unit = owner.and_then(|o| o.unit.as_ref());
            let labels = [
                ("proto", p.key.proto.as_str()),
                ("family", socket.family.as_str()),
                ("address", address.as_str()),
                ("port", port.as_str()),
                ("netns", &*p.key.netns),
                ("pid", pid.as_str()),
                ("user", owner.map_or("", |o| o.user.as_str())),
                ("container", container.map_or("", |c| c.id.as_str())),
                (
                    "pod_uid",
                    container.and_then(|c| c.pod_uid.as_deref()).unwrap_or(""),
                ),
                ("unit", unit.map_or("", |u| u.system.as_str())),
                (
                    "user_unit",
                    unit.and_then(|u| u.user.as_deref()).unwrap_or(""),
                ),
                (
                    "socket_unit",
                    socket.activation.as_ref().map_or("", |a| a.socket_label()),
                ),
            ];
            f.sample(&labels, 1.0);
        }
    }
}
