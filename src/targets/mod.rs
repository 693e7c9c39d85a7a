//! Checking by list: the targets file (`--targets.file`, `check -f`) and the
//! one syntax of a target, `host:port` or a URL. Pure parsing and
//! validation; a bad file or target is an error naming the file, the line
//! where the parser stopped or the entry, and the field.

use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

use serde::Deserialize;

pub mod files;

/// Where a target is, and how it is reached.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    /// `host:port` or `tcp://host:port`: a TCP connect.
    Tcp { host: String, port: u16 },
    /// `udp://host:port`: a datagram, and what comes back.
    Udp { host: String, port: u16 },
    /// `tls://host:port`: a TLS handshake (certificate dates read).
    Tls { host: String, port: u16 },
    /// `http://…` or `https://…`: a request for `path`.
    Http {
        tls: bool,
        host: String,
        port: u16,
        /// Path and query, at least `/`.
        path: String,
    },
}

impl Endpoint {
    /// The built-in module a target of this kind uses when it names none.
    pub fn default_module(&self) -> &'static str {
        match self {
            Endpoint::Tcp { .. } => "tcp_connect",
            Endpoint::Udp { .. } => "udp",
            Endpoint::Tls { .. } => "tls_connect",
            Endpoint::Http { .. } => "http_2xx",
        }
    }

    /// The host name or address (brackets off an IPv6 literal): resolved at
    /// every check, as DNS changes.
    pub fn host(&self) -> &str {
        match self {
            Endpoint::Tcp { host, .. }
            | Endpoint::Udp { host, .. }
            | Endpoint::Tls { host, .. }
            | Endpoint::Http { host, .. } => host,
        }
    }

    pub fn port(&self) -> u16 {
        match self {
            Endpoint::Tcp { port, .. }
            | Endpoint::Udp { port, .. }
            | Endpoint::Tls { port, .. }
            | Endpoint::Http { port, .. } => *port,
        }
    }
}

const EXPECTED: &str =
    "expected host:port, tcp://host:port, udp://host:port, tls://host:port or an http(s):// URL";

/// Parses one target.
pub fn parse_endpoint(s: &str) -> Result<Endpoint, String> {
    let bad = |why: &str| format!("invalid target '{s}': {why} ({EXPECTED})");
    if s.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(bad("spaces or control characters"));
    }
    let (scheme, rest) = match s.split_once("://") {
        Some((scheme, rest)) => (Some(scheme.to_ascii_lowercase()), rest),
        None => (None, s),
    };
    match scheme.as_deref() {
        None | Some("tcp") | Some("udp") | Some("tls") => {
            if rest.contains(['/', '?', '#', '@']) {
                return Err(bad("a path, query or user belongs to http(s) URLs only"));
            }
            let (host, port) = host_port(rest, None).map_err(|why| bad(&why))?;
            Ok(match scheme.as_deref() {
                Some("udp") => Endpoint::Udp { host, port },
                Some("tls") => Endpoint::Tls { host, port },
                _ => Endpoint::Tcp { host, port },
            })
        }
        Some(web @ ("http" | "https")) => {
            let tls = web == "https";
            let cut = rest.find(['/', '?', '#']).unwrap_or(rest.len());
            let (authority, tail) = rest.split_at(cut);
            if authority.contains('@') {
                return Err(bad("user information in a URL is not sent"));
            }
            let (host, port) =
                host_port(authority, Some(if tls { 443 } else { 80 })).map_err(|why| bad(&why))?;
            // The fragment is the client's, never sent.
            let tail = tail.split('#').next().unwrap_or("");
            let path = match tail {
                "" => "/".to_string(),
                t if t.starts_with('?') => format!("/{t}"),
                t => t.to_string(),
            };
            Ok(Endpoint::Http {
                tls,
                host,
                port,
                path,
            })
        }
        Some(other) => Err(bad(&format!("unknown scheme '{other}'"))),
    }
}

/// `host:port`, `[v6]:port`, or with `default` a bare host.
fn host_port(s: &str, default: Option<u16>) -> Result<(String, u16), String> {
    let (host, port) = if let Some(rest) = s.strip_prefix('[') {
        let (v6, after) = rest
            .split_once(']')
            .ok_or("an IPv6 address must be closed with ']'")?;
        if v6.parse::<std::net::Ipv6Addr>().is_err() {
            return Err(format!("'{v6}' is no IPv6 address"));
        }
        match after.strip_prefix(':') {
            Some(port) => (v6, Some(port)),
            None if after.is_empty() => (v6, None),
            None => return Err("junk after the IPv6 address".into()),
        }
    } else {
        match s.rsplit_once(':') {
            Some((host, _)) if host.contains(':') => {
                return Err("an IPv6 address goes in brackets: [::1]:53".into());
            }
            Some((host, port)) => (host, Some(port)),
            None => (s, None),
        }
    };
    let port = match (port, default) {
        (Some(p), _) => crate::value::parse_port(p)?,
        (None, Some(d)) => d,
        (None, None) => return Err("no port".into()),
    };
    if !(crate::value::is_host_name(host) || host.parse::<std::net::IpAddr>().is_ok()) {
        return Err(format!("'{host}' is no host name or address"));
    }
    Ok((host.to_ascii_lowercase(), port))
}

pub use crate::value::MIN_TARGET_INTERVAL as MIN_INTERVAL;

/// One entry of a targets file, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub name: String,
    pub endpoint: Endpoint,
    /// As written (`target:`), for the `target` label.
    pub target: String,
    pub module: String,
    /// Its own interval, when it has one.
    pub interval: Option<Duration>,
    pub labels: BTreeMap<String, String>,
    /// Where its entry starts in the file (0: not from a file).
    pub line: u64,
}

impl Target {
    /// Whether `other` is checked the same way: everything but where it
    /// is written.
    pub fn same_check(&self, other: &Target) -> bool {
        (
            &self.name,
            &self.endpoint,
            &self.target,
            &self.module,
            self.interval,
            &self.labels,
        ) == (
            &other.name,
            &other.endpoint,
            &other.target,
            &other.module,
            other.interval,
            &other.labels,
        )
    }

    /// Where it is written, for messages: `file:line: targets[i]`.
    fn place(&self, file: &str, i: usize) -> String {
        if self.line > 0 {
            format!("{file}:{}: targets[{i}]", self.line)
        } else {
            format!("{file}: targets[{i}]")
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileDoc {
    targets: Vec<serde_saphyr::Spanned<Entry>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Entry {
    name: Option<String>,
    target: String,
    module: Option<String>,
    interval: Option<String>,
    #[serde(default)]
    labels: BTreeMap<String, String>,
}

/// Labels every target series has: an entry's own may not take them.
const RESERVED: [&str; 5] = ["name", "target", "module", "reason", "class"];

/// Parses a targets file's text (YAML: `targets: [{name, target, module,
/// interval, labels}]`); `file` names it in errors. A missing `name` is
/// the target itself. Modules are checked by the caller, who knows them.
pub fn parse_file(text: &str, file: &str) -> Result<Vec<Target>, String> {
    let doc: FileDoc = crate::error::parse_yaml(text, file)?;
    let mut names = HashSet::new();
    let mut out = Vec::with_capacity(doc.targets.len());
    for (i, spanned) in doc.targets.into_iter().enumerate() {
        let line = spanned.referenced.line();
        let e = spanned.value;
        let at = |field: &str, why: String| format!("{file}:{line}: targets[{i}].{field}: {why}");
        let endpoint = parse_endpoint(&e.target).map_err(|why| at("target", why))?;
        let name = e.name.unwrap_or_else(|| e.target.clone());
        if name.is_empty() || name.chars().any(char::is_control) {
            return Err(at("name", "must be non-empty text".into()));
        }
        if !names.insert(name.clone()) {
            return Err(at(
                "name",
                format!("'{name}' is the name of an earlier target"),
            ));
        }
        let interval = match &e.interval {
            None => None,
            Some(v) => {
                Some(crate::value::parse_target_interval(v).map_err(|why| at("interval", why))?)
            }
        };
        for key in e.labels.keys() {
            let valid = key
                .chars()
                .next()
                .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
                && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
                && !key.starts_with("__");
            if !valid {
                return Err(at(
                    "labels",
                    format!(
                        "'{key}' is no label name ([a-zA-Z_][a-zA-Z0-9_]*, not starting with __)"
                    ),
                ));
            }
            if RESERVED.contains(&key.as_str()) {
                return Err(at("labels", format!("'{key}' is set by portwarden itself")));
            }
        }
        out.push(Target {
            line,
            module: e
                .module
                .unwrap_or_else(|| endpoint.default_module().to_string()),
            name,
            target: e.target,
            endpoint,
            interval,
            labels: e.labels,
        });
    }
    Ok(out)
}

/// A target with its module found and its endpoint read as that module's
/// prober takes it: ready to check.
#[derive(Debug, Clone)]
pub struct Job {
    pub target: Target,
    pub module: std::sync::Arc<crate::modules::Module>,
    pub endpoint: Endpoint,
}

/// Targets given on a command line: each its own name, its module by
/// scheme.
pub fn from_args(args: &[String]) -> Result<Vec<Target>, String> {
    let mut names = HashSet::new();
    let mut out = Vec::with_capacity(args.len());
    for arg in args {
        let endpoint = parse_endpoint(arg)?;
        if !names.insert(arg.clone()) {
            return Err(format!("target '{arg}' is given twice"));
        }
        out.push(Target {
            name: arg.clone(),
            target: arg.clone(),
            module: endpoint.default_module().to_string(),
            endpoint,
            interval: None,
            labels: BTreeMap::new(),
            line: 0,
        });
    }
    Ok(out)
}

/// Finds each target's module and reads its target as the module's prober
/// takes it; `file` names where the targets came from in errors.
pub fn bind(
    targets: Vec<Target>,
    modules: &crate::modules::Modules,
    file: &str,
) -> Result<Vec<Job>, String> {
    targets
        .into_iter()
        .enumerate()
        .map(|(i, target)| {
            let place = target.place(file, i);
            let at = |why: String| format!("{place}.module: {why}");
            let module = modules.get(&target.module).ok_or_else(|| {
                at(format!(
                    "unknown module '{}' (known: {})",
                    target.module,
                    modules.names().collect::<Vec<_>>().join(", ")
                ))
            })?;
            let endpoint = crate::probe::check::plan(module, &target.target).map_err(at)?;
            Ok(Job {
                module: module.clone(),
                endpoint,
                target,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The YAML budget is one a big targets file meets: 100,000 entries
    /// (the parser's default stopped at ~35,000).
    #[test]
    fn a_targets_file_of_100000_entries_is_read() {
        let mut text = String::from("targets:\n");
        for i in 0..100_000u32 {
            text.push_str(&format!(
                "  - {{name: t{i}, target: '10.{}.{}.{}:80'}}\n",
                i >> 16,
                (i >> 8) & 255,
                i & 255
            ));
        }
        let targets = parse_file(&text, "big.yml").expect("read");
        assert_eq!(targets.len(), 100_000);
        assert_eq!(targets[99_999].name, "t99999");
    }

    fn tcp(host: &str, port: u16) -> Endpoint {
        Endpoint::Tcp {
            host: host.into(),
            port,
        }
    }

    #[test]
    fn every_form_of_a_target() {
        assert_eq!(parse_endpoint("127.0.0.1:5432"), Ok(tcp("127.0.0.1", 5432)));
        assert_eq!(
            parse_endpoint("tcp://DB.internal:6379"),
            Ok(tcp("db.internal", 6379))
        );
        assert_eq!(
            parse_endpoint("udp://10.0.0.5:53"),
            Ok(Endpoint::Udp {
                host: "10.0.0.5".into(),
                port: 53
            })
        );
        assert_eq!(
            parse_endpoint("tls://[::1]:465"),
            Ok(Endpoint::Tls {
                host: "::1".into(),
                port: 465
            })
        );
        assert_eq!(
            parse_endpoint("https://api.internal/health?full=1#top"),
            Ok(Endpoint::Http {
                tls: true,
                host: "api.internal".into(),
                port: 443,
                path: "/health?full=1".into()
            })
        );
        assert_eq!(
            parse_endpoint("http://[::1]:8080"),
            Ok(Endpoint::Http {
                tls: false,
                host: "::1".into(),
                port: 8080,
                path: "/".into()
            })
        );
        assert_eq!(parse_endpoint("http://x?q").map(|e| e.port()), Ok(80));
    }

    #[test]
    fn bad_targets_say_why() {
        for (bad, why) in [
            ("db", "no port"),
            ("db:0", "port '0'"),
            ("db:70000", "port '70000'"),
            ("::1:53", "brackets"),
            ("[::1:53", "closed with ']'"),
            ("[nope]:53", "no IPv6 address"),
            ("ftp://x:21", "unknown scheme 'ftp'"),
            ("tcp://x:1/path", "http(s) URLs only"),
            ("http://user@x/", "user information"),
            ("a b:1", "spaces"),
            ("bad_host!:1", "no host name"),
        ] {
            let err = parse_endpoint(bad).expect_err(bad);
            assert!(err.contains(why), "{bad}: {err}");
            assert!(err.starts_with(&format!("invalid target '{bad}'")), "{err}");
        }
    }

    #[test]
    fn a_file_of_targets() {
        let text = "targets:\n  - name: db\n    target: db.internal:5432\n    interval: 30s\n    labels: {team: data}\n  - target: https://api.internal/health\n  - target: udp://127.0.0.1:53\n    module: dns_udp\n";
        let t = parse_file(text, "t.yml").expect("valid");
        assert_eq!(t.len(), 3);
        assert_eq!(
            (t[0].name.as_str(), t[0].module.as_str()),
            ("db", "tcp_connect")
        );
        assert_eq!(t[0].interval, Some(Duration::from_secs(30)));
        assert_eq!(t[0].labels["team"], "data");
        assert_eq!(t[1].name, "https://api.internal/health");
        assert_eq!(t[1].module, "http_2xx");
        assert_eq!(t[2].module, "dns_udp");
    }

    #[test]
    fn a_bad_file_names_file_entry_and_field() {
        for (text, want) in [
            (
                "targets:\n  - target: db:1\n  - target: nope\n",
                "t.yml:3: targets[1].target: invalid target 'nope'",
            ),
            (
                "targets:\n  - {name: a, target: 'x:1'}\n  - {name: a, target: 'y:1'}\n",
                "t.yml:3: targets[1].name: 'a' is the name of an earlier target",
            ),
            (
                "targets:\n  - {target: 'x:1', interval: soon}\n",
                "t.yml:2: targets[0].interval: invalid duration 'soon'",
            ),
            (
                "targets:\n  - {target: 'x:1', interval: 100ms}\n",
                "t.yml:2: targets[0].interval: '100ms' is too often",
            ),
            (
                "targets:\n  - {target: 'x:1', labels: {target: x}}\n",
                "t.yml:2: targets[0].labels: 'target' is set by portwarden itself",
            ),
            (
                "targets:\n  - {target: 'x:1', labels: {'a-b': x}}\n",
                "t.yml:2: targets[0].labels: 'a-b' is no label name",
            ),
        ] {
            let err = parse_file(text, "t.yml").expect_err(text);
            assert!(err.starts_with(want), "{err}");
        }
        // Unknown keys and broken YAML: the parser's words, with the file.
        let err = parse_file("targets:\n  - target: 'x:1'\n    timeout: 1s\n", "t.yml")
            .expect_err("unknown key");
        assert!(
            err.starts_with("t.yml: ") && err.contains("timeout"),
            "{err}"
        );
        let err = parse_file("targets: [", "t.yml").expect_err("broken");
        assert!(err.starts_with("t.yml: "), "{err}");
    }
}
