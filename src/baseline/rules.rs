//! The baseline's rules: what identifies an expected port, the ports of a
//! discovery as the baseline names them, and the allow-list of ports that
//! are never unexpected (one `proto/port [process]` per line).

use std::path::Path;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::exclude::NamePattern;
use crate::model::Proto;

/// What identifies an expected port.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Expected {
    pub proto: Proto,
    pub port: u16,
    pub netns: Arc<str>,
    pub process_name: Arc<str>,
    pub exe_path: Arc<str>,
}

/// The ports of a discovery as the exporter's series name them
/// ([`crate::model::series`]), in order.
pub fn from_ports(ports: &[crate::model::Port]) -> Vec<Expected> {
    let mut out: Vec<Expected> = crate::model::series(ports)
        .into_iter()
        .map(|(key, series)| Expected {
            proto: key.proto,
            port: key.port,
            netns: key.netns,
            process_name: series
                .owner
                .map_or_else(|| "".into(), |o| o.process_name.as_str().into()),
            exe_path: series
                .owner
                .map_or_else(|| "".into(), |o| o.exe_path.as_str().into()),
        })
        .collect();
    out.sort_by(|a, b| (a.proto, a.port, &a.netns).cmp(&(b.proto, b.port, &b.netns)));
    out
}

/// Ports that are never unexpected.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Allowlist {
    rules: Vec<(Proto, u16, Option<NamePattern>)>,
}

impl Allowlist {
    /// Reads an allowlist file; a bad line is an error naming it.
    pub fn load(path: &Path) -> Result<Allowlist, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        Allowlist::parse(&text).map_err(|e| format!("{}: {e}", path.display()))
    }

    /// Parses an allowlist's text. Pure.
    pub fn parse(text: &str) -> Result<Allowlist, String> {
        let mut rules = Vec::new();
        for (i, raw) in text.lines().enumerate() {
            let line = raw.split('#').next().unwrap_or("").trim();
            if line.is_empty() {
                continue;
            }
            let bad = || {
                format!(
                    "line {}: '{}' (expected proto/port [process], e.g. tcp/22 or tcp/8080 java*)",
                    i + 1,
                    raw.trim()
                )
            };
            let mut words = line.split_whitespace();
            let (proto, port) = words
                .next()
                .and_then(|w| w.split_once('/'))
                .ok_or_else(bad)?;
            let proto = Proto::parse(proto).map_err(|_| bad())?;
            let port = crate::value::parse_port(port).map_err(|_| bad())?;
            let name = words.next().map(NamePattern::new);
            if words.next().is_some() {
                return Err(bad());
            }
            rules.push((proto, port, name));
        }
        Ok(Allowlist { rules })
    }

    pub fn allows(&self, proto: Proto, port: u16, process_name: &str) -> bool {
        self.rules.iter().any(|(p, n, name)| {
            *p == proto && *n == port && name.as_ref().is_none_or(|m| m.matches(process_name))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allowlist_lines() {
        let list = Allowlist::parse("# ssh\ntcp/22\nudp/53   # dns\ntcp/8080 java*\n").expect("ok");
        assert!(list.allows(Proto::Tcp, 22, "anything"));
        assert!(list.allows(Proto::Udp, 53, "dnsmasq"));
        assert!(!list.allows(Proto::Tcp, 53, "dnsmasq"));
        assert!(list.allows(Proto::Tcp, 8080, "java17"));
        assert!(!list.allows(Proto::Tcp, 8080, "python3"));
        for bad in ["tcp:22", "sctp/1", "tcp/70000", "tcp/22 a b"] {
            let err = Allowlist::parse(bad).expect_err(bad);
            assert!(err.starts_with("line 1:"), "{err}");
        }
    }
}
