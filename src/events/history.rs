//! The exporter's own record of port changes, in its state directory, so
//! that `portwarden why` can say when a port closed and who held it — after
//! the exporter or the host restarted, with no output configured.
//!
//! `events.jsonl`: the changes (`port_opened`, `port_closed`,
//! `owner_changed`; not the start's `port_listening` records), one JSON
//! object a line, as `--events.output` writes them. Appended only when
//! something changed: a steady host writes nothing. Bounded: past
//! [`MAX_BYTES`] the file becomes `events.jsonl.1` (the one before it
//! dropped), so the two hold the last ~2,000–4,000 changes.

use std::path::Path;

use serde_json::Value;

use crate::bounded::Bounded;

/// The file's name in the state directory.
pub const FILE: &str = "events.jsonl";
/// The size past which the file is set aside.
pub const MAX_BYTES: u64 = 1 << 20;

/// The open record.
#[derive(Debug)]
pub struct History(Bounded);

impl History {
    /// Opens (or makes) the record in `dir`.
    pub fn open(dir: &Path) -> std::io::Result<History> {
        Bounded::open(&dir.join(FILE), MAX_BYTES).map(History)
    }

    /// Appends whole lines; first sets the file aside when they would take
    /// it past [`MAX_BYTES`].
    pub fn append(&mut self, lines: &[u8]) -> std::io::Result<()> {
        self.0.append(lines)
    }
}

/// A recorded change, read back from its JSON line (the fields
/// [`super::Event::to_json`] writes that say what happened and to whom).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    /// `@timestamp`, as written.
    pub at: String,
    /// `event.action`.
    pub action: String,
    /// `network.transport`: `tcp` or `udp`.
    pub proto: String,
    pub port: u16,
    /// `127.0.0.1:80`, `[::1]:80`.
    pub address: String,
    pub netns: String,
    pub pid: Option<u32>,
    pub process_name: Option<String>,
    pub unit: Option<crate::discover::cgroup::Unit>,
}

impl Change {
    /// One line's change; `None` for a line that names no port.
    pub fn from_json(v: &Value) -> Option<Change> {
        let text = |x: &Value| x.as_str().map(str::to_string);
        let port = u16::try_from(v["server"]["port"].as_u64()?).ok()?;
        let ip = v["server"]["ip"].as_str().unwrap_or_default();
        let address = match ip.parse::<std::net::IpAddr>() {
            Ok(ip) => std::net::SocketAddr::new(ip, port).to_string(),
            Err(_) => format!("{ip}:{port}"),
        };
        let systemd = &v["systemd"];
        Some(Change {
            at: text(&v["@timestamp"]).unwrap_or_default(),
            action: text(&v["event"]["action"]).unwrap_or_default(),
            proto: text(&v["network"]["transport"]).unwrap_or_default(),
            port,
            address,
            netns: text(&v["netns"]).unwrap_or_default(),
            pid: v["process"]["pid"]
                .as_u64()
                .and_then(|p| u32::try_from(p).ok()),
            process_name: text(&v["process"]["name"]),
            unit: text(&systemd["system_unit"]).map(|system| crate::discover::cgroup::Unit {
                system,
                user: text(&systemd["user_unit"]),
            }),
        })
    }
}

/// The recorded changes in `dir`, oldest first. Empty when there is no
/// record.
pub fn changes(dir: &Path) -> Vec<Change> {
    read(dir).iter().filter_map(Change::from_json).collect()
}

/// The recorded lines in `dir`, oldest first; lines that are not JSON
/// objects (a line cut by a crash) are skipped.
fn read(dir: &Path) -> Vec<Value> {
    let path = dir.join(FILE);
    let mut out = Vec::new();
    for p in [Bounded::set_aside(&path), path] {
        let Ok(text) = std::fs::read_to_string(&p) else {
            continue;
        };
        out.extend(
            text.lines()
                .filter_map(|l| serde_json::from_str::<Value>(l).ok())
                .filter(Value::is_object),
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn appended_then_set_aside_past_the_bound_and_read_back_in_order() {
        let dir = std::env::temp_dir().join(format!("pw-history-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("dir");
        let mut h = History::open(&dir).expect("open");
        let line = |i: usize| format!("{{\"n\":{i},\"pad\":\"{}\"}}\n", "x".repeat(1000));
        let per = line(0).len() as u64;
        let n = (MAX_BYTES / per) as usize + 10;
        for i in 0..n {
            h.append(line(i).as_bytes()).expect("append");
        }
        std::fs::OpenOptions::new()
            .append(true)
            .open(dir.join(FILE))
            .and_then(|mut f| f.write_all(b"{\"cut"))
            .expect("cut line");
        let all = read(&dir);
        assert_eq!(all.len(), n, "every line once, the cut one skipped");
        let numbers: Vec<u64> = all.iter().map(|v| v["n"].as_u64().expect("n")).collect();
        assert!(numbers.windows(2).all(|w| w[1] == w[0] + 1), "in order");
        assert!(std::fs::metadata(dir.join(FILE)).expect("file").len() < MAX_BYTES);
        std::fs::remove_dir_all(&dir).expect("clean");
    }
}
