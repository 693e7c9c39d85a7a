//! Which owners are not worth watching: a built-in list of exact process
//! names plus the user's `EXCLUDED_PROCESS_NAMES`.
//!
//! The plugin we replace matched substrings, so "ssh" hid every *ssh*, "init"
//! hid "initdb" and "systemd" hid every socket-activated service (SPEC defect
//! 7). Here an entry matches a whole process name; an entry containing `*`
//! (any run of characters) or `?` (one character) is a glob over the whole
//! name. The decision is per owner: a socket is hidden only when every
//! process holding it is excluded.

use crate::error::Error;

/// The built-in list: system daemons, kernel threads and the monitoring
/// agents that sit beside us. Exact names; kernel threads carry a `/<cpu>`
/// suffix, hence the globs. Documented in docs/settings.md.
pub const BUILTIN: &[&str] = &[
    // init and kernel threads
    "systemd",
    "init",
    "kthreadd",
    "ksoftirqd/*",
    "rcu_sched",
    "rcu_bh",
    "migration/*",
    "watchdog/*",
    "cpuhp/*",
    "netns",
    "khungtaskd",
    "oom_reaper",
    "kswapd*",
    "kauditd",
    "khubd",
    // system daemons
    "chronyd",
    "sshd",
    "snmpd",
    "rpcbind",
    "cupsd",
    "dhclient",
    "dnsmasq",
    // monitoring agents
    "zabbix_agentd",
    "zabbix_agent2",
    "prometheus",
    "node_exporter",
    "portwarden",
];

/// One entry: a whole process name, or a glob when it holds `*` or `?`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NamePattern {
    Exact(String),
    Glob(Vec<char>),
}

impl NamePattern {
    pub fn new(entry: &str) -> Self {
        if entry.contains(['*', '?']) {
            NamePattern::Glob(entry.chars().collect())
        } else {
            NamePattern::Exact(entry.to_string())
        }
    }

    pub fn matches(&self, name: &str) -> bool {
        match self {
            NamePattern::Exact(exact) => exact == name,
            NamePattern::Glob(glob) => glob_match(glob, name),
        }
    }
}

/// A compiled exclusion list.
#[derive(Debug, Clone, Default)]
pub struct Exclusions {
    patterns: Vec<NamePattern>,
}

impl Exclusions {
    /// The built-in list plus `extra`, comma-separated as in
    /// `EXCLUDED_PROCESS_NAMES` (blanks around entries and empty entries are
    /// ignored).
    pub fn new(extra: &str) -> Result<Self, Error> {
        let mut patterns: Vec<NamePattern> = BUILTIN.iter().map(|e| NamePattern::new(e)).collect();
        for entry in extra.split(',').map(str::trim).filter(|e| !e.is_empty()) {
            if entry.chars().any(char::is_control) {
                return Err(Error::Config {
                    setting: "EXCLUDED_PROCESS_NAMES".into(),
                    message: format!(
                        "entry {entry:?} contains a control character (expected comma-separated process names, '*' and '?' as wildcards)"
                    ),
                });
            }
            patterns.push(NamePattern::new(entry));
        }
        Ok(Exclusions { patterns })
    }

    /// No exclusions at all.
    pub fn none() -> Self {
        Exclusions::default()
    }

    /// Whether a process of this name is excluded.
    pub fn is_excluded(&self, process_name: &str) -> bool {
        self.patterns.iter().any(|p| p.matches(process_name))
    }
}

/// Whole-string glob match with `*` and `?` (one character), iterative with
/// one backtrack point: linear in practice, no recursion for a hostile name
/// to exhaust, and no allocation per name.
fn glob_match(pattern: &[char], name: &str) -> bool {
    let char_at = |i: usize| name[i..].chars().next().unwrap_or('\0');
    let (mut p, mut n) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while n < name.len() {
        let c = char_at(n);
        match pattern.get(p) {
            Some('*') => {
                star = Some((p, n));
                p += 1;
            }
            Some(&pc) if pc == '?' || pc == c => {
                p += 1;
                n += c.len_utf8();
            }
            _ => match star {
                Some((sp, sn)) => {
                    let retry = sn + char_at(sn).len_utf8();
                    p = sp + 1;
                    n = retry;
                    star = Some((sp, retry));
                }
                None => return false,
            },
        }
    }
    pattern[p..].iter().all(|&c| c == '*')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ex(extra: &str) -> Exclusions {
        Exclusions::new(extra).expect("valid")
    }

    #[test]
    fn whole_names_only() {
        let e = ex("");
        assert!(e.is_excluded("sshd"));
        assert!(e.is_excluded("systemd"));
        assert!(!e.is_excluded("ssh-agent"));
        assert!(!e.is_excluded("initdb"));
        assert!(!e.is_excluded("systemd-resolved"));
        assert!(!e.is_excluded("nginx"));
        assert!(e.is_excluded("ksoftirqd/3"));
        assert!(e.is_excluded("kswapd0"));
    }

    #[test]
    fn user_entries_and_globs() {
        let e = ex(" nginx, ,redis-*,,a?c ");
        assert!(e.is_excluded("nginx"));
        assert!(!e.is_excluded("nginx2"));
        assert!(e.is_excluded("redis-server"));
        assert!(!e.is_excluded("redis"));
        assert!(e.is_excluded("abc"));
        assert!(!e.is_excluded("abbc"));
    }

    #[test]
    fn glob_edge_cases() {
        let m = |p: &str, n: &str| glob_match(&p.chars().collect::<Vec<_>>(), n);
        assert!(m("*", ""));
        assert!(m("a*b*c", "axxbyyc"));
        assert!(!m("a*b*c", "axxbyy"));
        assert!(m("*ü*", "grüß"));
        assert!(!m("", "a"));
        assert!(m("**a", "a"));
        assert!(m("?ü?", "aüb"));
        assert!(!m("?", "üü"));
    }

    #[test]
    fn control_characters_are_refused() {
        let err = Exclusions::new("ok,bad\u{7}").expect_err("refused");
        assert!(
            err.to_string().starts_with("EXCLUDED_PROCESS_NAMES:"),
            "{err}"
        );
    }

    #[test]
    fn none_excludes_nothing() {
        assert!(!Exclusions::none().is_excluded("systemd"));
    }
}
