//! Expected ports: the baseline of what should listen on this host.
//!
//! A port seen continuously for `--baseline.learn` becomes expected. The
//! baseline is a JSON file in the state directory, written atomically (a
//! temporary file, fsync, rename, fsync of the directory), so a crash
//! mid-write leaves the old file or the new one, never a torn one; every
//! read-modify-write holds an exclusive lock on a lock file beside it, so
//! the exporter and `portwarden baseline …` never lose each other's edits.
//! A file that does not parse is kept aside as `baseline.json.bad` and a
//! fresh baseline started.
//!
//! An optional allowlist file names ports that are never *unexpected*:
//! one `proto/port` per line (`tcp/22`, `udp/53`), optionally followed by a
//! process name or glob (`tcp/8080 java*`); `#` starts a comment.

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::exclude::NamePattern;
use crate::model::Proto;

/// The file name of the baseline in the state directory.
pub const FILE: &str = "baseline.json";
const LOCK: &str = "baseline.lock";
const VERSION: u32 = 1;

/// What identifies an expected port.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Expected {
    pub proto: Proto,
    pub port: u16,
    pub netns: String,
    pub process_name: String,
    pub exe_path: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Entry {
    #[serde(flatten)]
    port: Expected,
    /// When it became expected, in seconds since the epoch.
    since: u64,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Contents {
    version: u32,
    ports: Vec<Entry>,
}

/// Why a baseline file was refused.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ParseError(String);

/// Parses a baseline file's text: expected ports and since when. Pure.
pub fn parse(text: &[u8]) -> Result<BTreeMap<Expected, u64>, ParseError> {
    let contents: Contents = serde_json::from_slice(text).map_err(|e| ParseError(e.to_string()))?;
    if contents.version != VERSION {
        return Err(ParseError(format!(
            "version {} (this portwarden reads version {VERSION})",
            contents.version
        )));
    }
    Ok(contents
        .ports
        .into_iter()
        .map(|e| (e.port, e.since))
        .collect())
}

fn render(entries: &BTreeMap<Expected, u64>) -> Vec<u8> {
    let contents = Contents {
        version: VERSION,
        ports: entries
            .iter()
            .map(|(port, since)| Entry {
                port: port.clone(),
                since: *since,
            })
            .collect(),
    };
    let mut text = serde_json::to_vec_pretty(&contents).unwrap_or_default();
    text.push(b'\n');
    text
}

/// The ports of a discovery as the exporter's series name them: one per
/// protocol, port and namespace, named by the first owned socket's primary
/// owner (the exporter's rule); excluded ports left out.
pub fn from_ports(ports: &[crate::model::Port]) -> Vec<Expected> {
    let mut named: BTreeMap<(Proto, u16, &str), Option<&crate::model::Owner>> = BTreeMap::new();
    for p in ports.iter().filter(|p| !p.excluded) {
        let slot = named
            .entry((p.socket.proto, p.socket.port, &*p.netns))
            .or_default();
        if slot.is_none() {
            *slot = p.primary_owner();
        }
    }
    named
        .into_iter()
        .map(|((proto, port, netns), owner)| Expected {
            proto,
            port,
            netns: netns.to_string(),
            process_name: owner.map_or_else(String::new, |o| o.process_name.clone()),
            exe_path: owner.map_or_else(String::new, |o| o.exe_path.clone()),
        })
        .collect()
}

/// `YYYY-MM-DD HH:MM:SS UTC` for seconds since the epoch.
pub fn utc(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Days to civil date (proleptic Gregorian), after H. Hinnant.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02} UTC",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Seconds since the epoch, now.
pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// The state directory: the one asked for, else `/var/lib/portwarden`
/// when it can be created and written, else the user's state directory
/// (`$XDG_STATE_HOME/portwarden` or `~/.local/state/portwarden`).
pub fn state_dir(asked: Option<&Path>) -> io::Result<PathBuf> {
    if let Some(dir) = asked {
        fs::create_dir_all(dir)?;
        return Ok(dir.to_path_buf());
    }
    let system = PathBuf::from("/var/lib/portwarden");
    if writable(&system) {
        return Ok(system);
    }
    let user = std::env::var_os("XDG_STATE_HOME")
        .map(PathBuf::from)
        .filter(|p| p.is_absolute())
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/state")))
        .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "no HOME for a state directory"))?
        .join("portwarden");
    fs::create_dir_all(&user)?;
    Ok(user)
}

fn writable(dir: &Path) -> bool {
    if fs::create_dir_all(dir).is_err() {
        return false;
    }
    let probe = dir.join(format!(".portwarden-{}", std::process::id()));
    let ok = File::create(&probe).is_ok();
    let _ = fs::remove_file(&probe);
    ok
}

/// What opening a baseline found wrong, for the caller to log and count.
#[derive(Debug)]
pub struct Recovered {
    /// Where the unreadable file was moved.
    pub kept_as: PathBuf,
    pub reason: String,
}

/// The baseline file of a state directory.
#[derive(Debug)]
pub struct Baseline {
    dir: PathBuf,
    entries: BTreeMap<Expected, u64>,
    /// Modification time and length of the file as last read or written.
    seen: Option<(SystemTime, u64)>,
}

impl Baseline {
    /// Opens the baseline in `dir` (none yet: empty). An unreadable file is
    /// moved aside to `baseline.json.bad` and reported.
    pub fn open(dir: &Path) -> io::Result<(Baseline, Option<Recovered>)> {
        let mut b = Baseline {
            dir: dir.to_path_buf(),
            entries: BTreeMap::new(),
            seen: None,
        };
        let _lock = b.lock()?;
        let recovered = b.read()?;
        Ok((b, recovered))
    }

    pub fn path(&self) -> PathBuf {
        self.dir.join(FILE)
    }

    pub fn entries(&self) -> &BTreeMap<Expected, u64> {
        &self.entries
    }

    pub fn contains(&self, port: &Expected) -> bool {
        self.entries.contains_key(port)
    }

    /// Re-reads the file if someone else changed it since we last looked
    /// (one `stat`). Returns whether it did.
    pub fn reload_if_changed(&mut self) -> io::Result<(bool, Option<Recovered>)> {
        if self.stamp() == self.seen {
            return Ok((false, None));
        }
        let _lock = self.lock()?;
        let recovered = self.read()?;
        Ok((true, recovered))
    }

    /// Adds or removes entries under the lock, on top of the file as it is
    /// now, and writes the result atomically. `edit` returns whether it
    /// changed anything.
    pub fn update(
        &mut self,
        edit: impl FnOnce(&mut BTreeMap<Expected, u64>) -> bool,
    ) -> io::Result<Option<Recovered>> {
        let _lock = self.lock()?;
        let recovered = self.read()?;
        if edit(&mut self.entries) || recovered.is_some() {
            self.write()?;
        }
        Ok(recovered)
    }

    fn lock(&self) -> io::Result<File> {
        let f = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(self.dir.join(LOCK))?;
        rustix::fs::flock(f.as_fd(), rustix::fs::FlockOperation::LockExclusive)?;
        Ok(f)
    }

    fn stamp(&self) -> Option<(SystemTime, u64)> {
        let meta = fs::metadata(self.path()).ok()?;
        Some((meta.modified().ok()?, meta.len()))
    }

    /// Reads the file (under the lock).
    fn read(&mut self) -> io::Result<Option<Recovered>> {
        let path = self.path();
        let text = match fs::read(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                self.entries.clear();
                self.seen = None;
                return Ok(None);
            }
            Err(e) => return Err(e),
        };
        match parse(&text) {
            Ok(entries) => {
                self.entries = entries;
                self.seen = self.stamp();
                Ok(None)
            }
            Err(e) => {
                let kept_as = self.dir.join(format!("{FILE}.bad"));
                fs::rename(&path, &kept_as)?;
                self.entries.clear();
                self.seen = None;
                Ok(Some(Recovered {
                    kept_as,
                    reason: e.to_string(),
                }))
            }
        }
    }

    /// Writes the entries atomically (under the lock).
    fn write(&mut self) -> io::Result<()> {
        let tmp = self.dir.join(format!(".{FILE}.{}.tmp", std::process::id()));
        let result = (|| {
            let mut f = File::create(&tmp)?;
            f.write_all(&render(&self.entries))?;
            f.sync_all()?;
            fs::rename(&tmp, self.path())?;
            File::open(&self.dir)?.sync_all()
        })();
        if result.is_err() {
            let _ = fs::remove_file(&tmp);
        }
        result?;
        self.seen = self.stamp();
        Ok(())
    }
}

/// Ports that are never unexpected.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Allowlist {
    rules: Vec<(Proto, u16, Option<NamePattern>)>,
}

impl Allowlist {
    /// Reads an allowlist file; a bad line is an error naming it.
    pub fn load(path: &Path) -> Result<Allowlist, String> {
        let text = fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
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
            let proto = match proto {
                "tcp" => Proto::Tcp,
                "udp" => Proto::Udp,
                _ => return Err(bad()),
            };
            let port: u16 = port.parse().map_err(|_| bad())?;
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

    fn expected(port: u16) -> Expected {
        Expected {
            proto: Proto::Tcp,
            port,
            netns: "host".into(),
            process_name: "nginx".into(),
            exe_path: "/usr/sbin/nginx".into(),
        }
    }

    fn tempdir(tag: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "portwarden-baseline-{tag}-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).expect("mkdir");
        dir
    }

    #[test]
    fn round_trip_and_refusals() {
        let mut entries = BTreeMap::new();
        entries.insert(expected(80), 1_700_000_000);
        entries.insert(expected(443), 1_700_000_001);
        assert_eq!(parse(&render(&entries)).expect("parses"), entries);
        for bad in [
            &b""[..],
            b"{",
            b"garbage",
            br#"{"version":2,"ports":[]}"#,
            br#"{"version":1,"ports":[{"proto":"sctp","port":1,"netns":"host","process_name":"","exe_path":"","since":0}]}"#,
            br#"{"version":1,"ports":[{"proto":"tcp","port":70000,"netns":"host","process_name":"","exe_path":"","since":0}]}"#,
        ] {
            assert!(parse(bad).is_err(), "{}", String::from_utf8_lossy(bad));
        }
        // A file cut anywhere is refused, never half-read.
        let text = render(&entries);
        for cut in 1..text.len() - 2 {
            assert!(parse(&text[..cut]).is_err(), "cut at {cut}");
        }
    }

    #[test]
    fn a_garbage_file_is_kept_aside_and_a_fresh_baseline_started() {
        let dir = tempdir("garbage");
        fs::write(dir.join(FILE), b"\x00\x01 not json").expect("write");
        let (mut b, recovered) = Baseline::open(&dir).expect("opens");
        let recovered = recovered.expect("reported");
        assert_eq!(recovered.kept_as, dir.join("baseline.json.bad"));
        assert_eq!(
            fs::read(&recovered.kept_as).expect("kept"),
            b"\x00\x01 not json"
        );
        assert!(b.entries().is_empty());
        b.update(|e| e.insert(expected(22), 1).is_none())
            .expect("writes");
        let (again, none) = Baseline::open(&dir).expect("reopens");
        assert!(none.is_none());
        assert!(again.contains(&expected(22)));
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn readers_never_see_a_torn_file_while_it_is_rewritten() {
        let dir = tempdir("atomic");
        let (mut b, _) = Baseline::open(&dir).expect("opens");
        b.update(|e| e.insert(expected(1), 0).is_none())
            .expect("first write");
        let stop = std::sync::atomic::AtomicBool::new(false);
        std::thread::scope(|s| {
            let reader = s.spawn(|| {
                let mut reads = 0;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    // No lock: a plain reader sees the old file or the new.
                    let text = fs::read(dir.join(FILE)).expect("always there");
                    parse(&text).expect("never torn");
                    reads += 1;
                }
                reads
            });
            for i in 0..300u16 {
                b.update(|e| e.insert(expected(1000 + i), u64::from(i)).is_none())
                    .expect("write");
            }
            stop.store(true, std::sync::atomic::Ordering::Relaxed);
            assert!(reader.join().expect("reader") > 0);
        });
        assert_eq!(b.entries().len(), 301);
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn someone_elses_edit_is_picked_up() {
        let dir = tempdir("reload");
        let (mut exporter, _) = Baseline::open(&dir).expect("opens");
        exporter
            .update(|e| e.insert(expected(80), 0).is_none())
            .expect("write");
        let (mut cli, _) = Baseline::open(&dir).expect("opens");
        cli.update(|e| e.remove(&expected(80)).is_some())
            .expect("forget");
        let (changed, _) = exporter.reload_if_changed().expect("reload");
        assert!(changed);
        assert!(!exporter.contains(&expected(80)));
        let (changed, _) = exporter.reload_if_changed().expect("reload");
        assert!(!changed);
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn utc_dates() {
        assert_eq!(utc(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(utc(951_782_400), "2000-02-29 00:00:00 UTC");
        assert_eq!(utc(1_795_392_000 + 3661), "2026-11-23 01:01:01 UTC");
    }

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
