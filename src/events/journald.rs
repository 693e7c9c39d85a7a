//! Events in journald's native protocol: one datagram per event to the
//! journal's socket (`/run/systemd/journal/socket`), each field
//! `NAME=value\n`, or — when the value holds a newline (a process can name
//! itself anything) — `NAME\n`, the value's length as 64-bit little
//! endian, the value, `\n`.
//!
//! Fields: `MESSAGE`, a stable `MESSAGE_ID` per action, `PRIORITY`,
//! `SYSLOG_IDENTIFIER=portwarden`, `PORTWARDEN_*` (the event's own), and
//! `OBJECT_PID`: run as root, journald adds the owner's `OBJECT_*` fields
//! (its unit among them), so `journalctl -u nginx.service` shows the
//! events of nginx's ports.

use super::{Action, Event};

/// Appends one field.
fn field(out: &mut Vec<u8>, name: &str, value: &[u8]) {
    out.extend_from_slice(name.as_bytes());
    if value.contains(&b'\n') {
        out.push(b'\n');
        out.extend_from_slice(&(value.len() as u64).to_le_bytes());
    } else {
        out.push(b'=');
    }
    out.extend_from_slice(value);
    out.push(b'\n');
}

/// The datagram of one event.
pub fn datagram(e: &Event, host: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(512);
    let mut f = |name: &str, value: &str| field(&mut out, name, value.as_bytes());
    f("MESSAGE", &e.message());
    f("MESSAGE_ID", e.action.message_id());
    // notice for a port that closed, info for the rest.
    f(
        "PRIORITY",
        if e.action == Action::Closed { "5" } else { "6" },
    );
    f("SYSLOG_IDENTIFIER", "portwarden");
    f("PORTWARDEN_ACTION", e.action.as_str());
    f("PORTWARDEN_SEQUENCE", &e.sequence.to_string());
    f("PORTWARDEN_HOST", host);
    f("PORTWARDEN_PROTO", e.key.proto.as_str());
    f("PORTWARDEN_ADDRESS", &e.key.address.to_string());
    f("PORTWARDEN_PORT", &e.key.port.to_string());
    f("PORTWARDEN_NETNS", &e.netns);
    if let Some(a) = &e.activation {
        f("PORTWARDEN_SOCKET_UNIT", a.socket_label());
    }
    for (prefix, owner) in [
        ("PORTWARDEN_", &e.owner),
        ("PORTWARDEN_PREVIOUS_", &e.previous),
    ] {
        let Some(o) = owner else { continue };
        f(&format!("{prefix}PID"), &o.pid.to_string());
        f(&format!("{prefix}PROCESS"), &o.process_name);
        f(&format!("{prefix}EXE"), &o.exe_path);
        f(&format!("{prefix}UID"), &o.uid.to_string());
        if let Some(u) = &o.unit {
            f(&format!("{prefix}UNIT"), u.name());
        }
        if let Some(c) = &o.container {
            f(&format!("{prefix}CONTAINER_ID"), &c.id);
        }
    }
    if let Some(o) = &e.owner {
        f("OBJECT_PID", &o.pid.to_string());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::Tracker;
    use crate::model::{Proto, fixtures};
    use std::sync::Arc;

    /// Reads a datagram back into its fields, in order.
    fn parse(mut data: &[u8]) -> Result<Vec<(String, Vec<u8>)>, String> {
        let mut fields = Vec::new();
        while !data.is_empty() {
            let end = data
                .iter()
                .position(|&b| b == b'\n' || b == b'=')
                .ok_or("a field without '=' or a newline")?;
            let name = String::from_utf8(data[..end].to_vec()).map_err(|_| "a name not UTF-8")?;
            let valid = !name.is_empty()
                && !name.starts_with('_')
                && name
                    .bytes()
                    .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_');
            if !valid {
                return Err(format!("field name {name:?} journald refuses"));
            }
            if data[end] == b'=' {
                let rest = &data[end + 1..];
                let stop = rest
                    .iter()
                    .position(|&b| b == b'\n')
                    .ok_or("a value without its newline")?;
                fields.push((name, rest[..stop].to_vec()));
                data = &rest[stop + 1..];
            } else {
                let rest = &data[end + 1..];
                let len: [u8; 8] = rest
                    .get(..8)
                    .and_then(|l| l.try_into().ok())
                    .ok_or("a binary value without its length")?;
                let len =
                    usize::try_from(u64::from_le_bytes(len)).map_err(|_| "a length too big")?;
                let value = rest.get(8..8 + len).ok_or("a binary value cut short")?;
                if rest.get(8 + len) != Some(&b'\n') {
                    return Err("a binary value without its newline".into());
                }
                fields.push((name, value.to_vec()));
                data = &rest[9 + len..];
            }
        }
        Ok(fields)
    }

    #[test]
    fn a_name_with_a_newline_is_sent_as_a_binary_field() {
        let mut owner = fixtures::owner(42, "/tmp/evil\nPRIORITY=0", 1000);
        Arc::make_mut(&mut owner).process_name = "evil\nPRIORITY=0".into();
        let port = fixtures::port(Proto::Udp, "::1", 53, 1, Some(owner));
        let e = Tracker::new().observe_ports(&[port], std::time::SystemTime::now(), |_| true);
        let fields = parse(&datagram(&e[0], "box")).expect("parses");
        let get = |n: &str| {
            fields
                .iter()
                .filter(|(name, _)| name == n)
                .map(|(_, v)| String::from_utf8_lossy(v).into_owned())
                .collect::<Vec<_>>()
        };
        assert_eq!(get("PRIORITY"), ["6"], "no field injected");
        assert_eq!(get("PORTWARDEN_PROCESS"), ["evil\nPRIORITY=0"]);
        assert_eq!(get("MESSAGE_ID"), [Action::Listening.message_id()]);
        assert_eq!(get("PORTWARDEN_ADDRESS"), ["::1"]);
        assert_eq!(get("OBJECT_PID"), ["42"]);
    }

    #[test]
    fn message_ids_are_distinct_128_bit_ids() {
        let ids: std::collections::HashSet<&str> =
            Action::ALL.iter().map(|a| a.message_id()).collect();
        assert_eq!(ids.len(), Action::ALL.len());
        for id in ids {
            assert!(
                id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit()),
                "{id}"
            );
        }
    }
}
