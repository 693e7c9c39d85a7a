//! Recovery actions (`--actions.file`): which ports, in which health, for
//! how many checks, make which command run — an argv, never a shell, and
//! nothing of a label or a process name ever in it — and where to escalate
//! when attempts run out. Parsing and validation only; the engine runs them.

use std::collections::HashSet;
use std::path::Path;
use std::time::Duration;

use serde::Deserialize;

use crate::exclude::NamePattern;
use crate::health::Health;
use crate::model::Proto;
use crate::targets::Endpoint;

/// The actions file, loaded.
#[derive(Debug, Clone, Default)]
pub struct Actions {
    pub actions: Vec<Action>,
    /// Where exhausted attempts are reported: an http(s) URL.
    pub webhook: Option<Webhook>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Webhook {
    pub url: String,
    pub endpoint: Endpoint,
}

/// One action.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Action {
    pub name: String,
    pub matcher: Matcher,
    /// Health words that count (an expected port that is gone counts as
    /// `down`).
    pub when: Vec<Health>,
    /// Consecutive checks in one of those states before an attempt.
    pub after: u32,
    /// The command: a program and its arguments, as written.
    pub run: Vec<String>,
    pub timeout: Duration,
    pub max_attempts: u32,
    pub window: Duration,
    /// Between attempts; also how long an attempt waits for the port to be
    /// healthy again.
    pub cooldown: Duration,
}

/// Which ports an action is for: every given field must match.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Matcher {
    pub proto: Option<Proto>,
    pub port: Option<u16>,
    pub process: Option<NamePattern>,
    pub netns: Option<String>,
}

impl Matcher {
    pub fn matches(&self, proto: Proto, port: u16, process_name: &str, netns: &str) -> bool {
        self.proto.is_none_or(|p| p == proto)
            && self.port.is_none_or(|p| p == port)
            && self
                .process
                .as_ref()
                .is_none_or(|p| p.matches(process_name))
            && self.netns.as_deref().is_none_or(|n| n == netns)
    }
}

/// The only environment a command runs with: a fixed `PATH`.
pub const COMMAND_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// `path` and its directory are owned by root or by us and writable by no
/// one else; else why not, naming the file.
fn private(path: &Path) -> Result<(), String> {
    let me = crate::discover::os::effective_uid();
    let check = |what: &Path, kind: &str| -> Result<(), String> {
        let meta = std::fs::metadata(what).map_err(|e| format!("{}: {e}", what.display()))?;
        let Some((uid, mode)) = crate::discover::os::owner_and_mode(&meta) else {
            return Err(format!(
                "{} ({kind}): who may write it cannot be checked on this OS (its ACL), and it makes this host run commands: recovery actions are not available here",
                what.display()
            ));
        };
        if uid != 0 && uid != me {
            return Err(format!(
                "{} ({kind}) is owned by uid {uid}: it must be owned by root or by the exporter's user (uid {me}), as it makes this host run commands",
                what.display()
            ));
        }
        if mode & 0o022 != 0 {
            return Err(format!(
                "{} ({kind}) is writable by {} (mode {:o}): it must be writable by its owner alone, as it makes this host run commands (chmod go-w)",
                what.display(),
                if mode & 0o002 != 0 {
                    "anyone"
                } else {
                    "its group"
                },
                mode & 0o7777
            ));
        }
        Ok(())
    };
    check(path, "the file")?;
    let full = std::fs::canonicalize(path).map_err(|e| format!("{}: {e}", path.display()))?;
    match full.parent() {
        Some(dir) => check(dir, "its directory"),
        None => Ok(()),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileDoc {
    #[serde(default)]
    actions: Vec<serde_saphyr::Spanned<RawAction>>,
    escalate: Option<RawEscalate>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAction {
    name: String,
    #[serde(rename = "match")]
    matcher: RawMatch,
    when: Vec<String>,
    #[serde(default = "default_after")]
    after: u32,
    run: Vec<String>,
    timeout: Option<String>,
    #[serde(default = "default_max_attempts")]
    max_attempts: u32,
    window: Option<String>,
    cooldown: Option<String>,
}

fn default_after() -> u32 {
    3
}

fn default_max_attempts() -> u32 {
    3
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawMatch {
    proto: Option<String>,
    port: Option<u16>,
    process: Option<String>,
    netns: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEscalate {
    webhook: String,
}

impl Actions {
    /// Reads and checks the file; errors name the file, the line and the
    /// key.
    /// A file that makes this host run commands must be private: it, the
    /// programs it names and their directories owned by root or by us, and
    /// writable by no one else (sshd's StrictModes) — else anyone who can
    /// write one of them runs commands as this exporter (root, often).
    pub fn load(path: &Path) -> Result<Actions, String> {
        let file = path.display().to_string();
        private(path)?;
        let text = std::fs::read_to_string(path).map_err(|e| format!("{file}: {e}"))?;
        let actions = Actions::parse(&text, &file)?;
        for action in &actions.actions {
            // An absolute path (checked by `parse`); one that does not exist
            // fails at its run, and is counted there.
            let program = Path::new(&action.run[0]);
            if program.exists() {
                private(program)
                    .map_err(|e| format!("{file}: action '{}' runs {e}", action.name))?;
            }
        }
        Ok(actions)
    }

    pub fn parse(text: &str, file: &str) -> Result<Actions, String> {
        let doc: FileDoc = crate::error::parse_yaml(text, file)?;
        let mut names = HashSet::new();
        let mut actions = Vec::with_capacity(doc.actions.len());
        for (i, spanned) in doc.actions.into_iter().enumerate() {
            let line = spanned.referenced.line();
            let raw = spanned.value;
            let at = |key: &str, why: String| format!("{file}:{line}: actions[{i}].{key}: {why}");
            if raw.name.is_empty()
                || !raw
                    .name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
            {
                return Err(at(
                    "name",
                    format!("'{}' (expected letters, digits, '-', '_', '.')", raw.name),
                ));
            }
            if !names.insert(raw.name.clone()) {
                return Err(at(
                    "name",
                    format!("'{}' is the name of an earlier action", raw.name),
                ));
            }
            let m = raw.matcher;
            let proto = match m.proto.as_deref() {
                None => None,
                Some("tcp") => Some(Proto::Tcp),
                Some("udp") => Some(Proto::Udp),
                Some(other) => {
                    return Err(at(
                        "match.proto",
                        format!("'{other}' (expected tcp or udp)"),
                    ));
                }
            };
            if m.port == Some(0) {
                return Err(at("match.port", "0 (expected 1 to 65535)".into()));
            }
            let matcher = Matcher {
                proto,
                port: m.port,
                process: m.process.as_deref().map(NamePattern::new),
                netns: m.netns,
            };
            if matcher == Matcher::default() {
                return Err(at(
                    "match",
                    "empty: name at least one of proto, port, process, netns (an action for every port is refused)".into(),
                ));
            }
            if raw.when.is_empty() {
                return Err(at(
                    "when",
                    "empty (expected some of down, hung, slow, unknown)".into(),
                ));
            }
            let mut when = Vec::new();
            for w in &raw.when {
                when.push(match w.as_str() {
                    "down" => Health::Down,
                    "hung" => Health::Hung,
                    "slow" => Health::Slow,
                    "unknown" => Health::Unknown,
                    other => {
                        return Err(at(
                            "when",
                            format!("'{other}' (expected down, hung, slow or unknown)"),
                        ));
                    }
                });
            }
            if raw.after == 0 {
                return Err(at("after", "0 (expected 1 or more checks)".into()));
            }
            if raw.max_attempts == 0 {
                return Err(at("max_attempts", "0 (expected 1 or more)".into()));
            }
            match raw.run.first() {
                None => return Err(at("run", "empty (expected [program, arguments…])".into())),
                Some(program) if !program.starts_with('/') => {
                    return Err(at(
                        "run",
                        format!("'{program}' is not an absolute path (no PATH lookup, no shell)"),
                    ));
                }
                Some(_) => {}
            }
            if raw.run.iter().any(|a| a.contains('\0')) {
                return Err(at("run", "an argument holds a NUL byte".into()));
            }
            let duration =
                |key: &str, v: Option<String>, default: Duration| -> Result<Duration, String> {
                    match v {
                        None => Ok(default),
                        Some(v) => crate::value::parse_interval(&v).map_err(|why| at(key, why)),
                    }
                };
            actions.push(Action {
                name: raw.name,
                matcher,
                when,
                after: raw.after,
                run: raw.run,
                timeout: duration("timeout", raw.timeout, Duration::from_secs(30))?,
                max_attempts: raw.max_attempts,
                window: duration("window", raw.window, Duration::from_secs(3600))?,
                cooldown: duration("cooldown", raw.cooldown, Duration::from_secs(120))?,
            });
        }
        let webhook = match doc.escalate {
            None => None,
            Some(e) => match crate::targets::parse_endpoint(&e.webhook) {
                Ok(endpoint @ Endpoint::Http { .. }) => Some(Webhook {
                    url: e.webhook,
                    endpoint,
                }),
                Ok(_) => {
                    return Err(format!(
                        "{file}: escalate.webhook: '{}' is no http(s) URL",
                        e.webhook
                    ));
                }
                Err(why) => return Err(format!("{file}: escalate.webhook: {why}")),
            },
        };
        Ok(Actions { actions, webhook })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_issues_example_loads() {
        let text = r#"actions:
  - name: restart-web
    match: {proto: tcp, port: 8080}
    when: [down, hung]
    after: 3
    run: ["/usr/bin/systemctl", "restart", "web.service"]
    timeout: 30s
    max_attempts: 3
    window: 1h
    cooldown: 2m
escalate:
  webhook: http://alert-relay.internal/portwarden
"#;
        let a = Actions::parse(text, "a.yml").expect("loads");
        let action = &a.actions[0];
        assert_eq!(action.when, [Health::Down, Health::Hung]);
        assert_eq!(action.cooldown, Duration::from_secs(120));
        assert!(action.matcher.matches(Proto::Tcp, 8080, "anything", "host"));
        assert!(!action.matcher.matches(Proto::Tcp, 8081, "anything", "host"));
        assert!(!action.matcher.matches(Proto::Udp, 8080, "anything", "host"));
        assert_eq!(
            a.webhook.expect("webhook").url,
            "http://alert-relay.internal/portwarden"
        );
    }

    #[test]
    fn a_bad_file_names_file_line_and_key() {
        let base = "actions:\n  - name: a\n    match: {port: 80}\n    when: [down]\n    run: [/bin/true]\n";
        for (text, want) in [
            (
                base.replace("when: [down]", "when: [dead]"),
                "a.yml:2: actions[0].when: 'dead'",
            ),
            (
                base.replace("[/bin/true]", "[systemctl, restart]"),
                "actions[0].run: 'systemctl' is not an absolute path",
            ),
            (base.replace("{port: 80}", "{}"), "actions[0].match: empty"),
            (
                base.replace("{port: 80}", "{proto: sctp}"),
                "actions[0].match.proto: 'sctp'",
            ),
            (base.replace("run:", "command:"), "unknown field `command`"),
            (
                format!("{base}    cooldown: soon\n"),
                "actions[0].cooldown: invalid duration 'soon'",
            ),
            (
                format!("{base}escalate: {{webhook: 'tcp://x:1'}}\n"),
                "escalate.webhook: 'tcp://x:1' is no http(s) URL",
            ),
            (
                format!(
                    "{base}  - name: a\n    match: {{port: 81}}\n    when: [down]\n    run: [/bin/true]\n"
                ),
                "actions[1].name: 'a' is the name of an earlier action",
            ),
        ] {
            let err = Actions::parse(&text, "a.yml").expect_err(&text);
            assert!(err.contains(want), "{text}\n→ {err}");
            assert!(err.starts_with("a.yml"), "{err}");
        }
    }
}
