//! The baseline's store: the file (its format, atomic writes, the lock,
//! unreadable files kept aside) and the state directory it lives in.

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use serde::{Deserialize, Serialize};

use super::Expected;

/// The file name of the baseline in the state directory.
pub const FILE: &str = "baseline.json";
const LOCK: &str = "baseline.lock";
/// How long `portwarden baseline` waits for another process's lock.
pub const LOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(10);
const VERSION: u32 = 1;
/// Unreadable files kept aside, at most.
pub const KEEP_BAD: usize = 3;

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

/// A newer version's file, read as far as this version understands it.
#[derive(Debug, Deserialize)]
struct Newer {
    version: u32,
    #[serde(default)]
    ports: Vec<NewerEntry>,
}

#[derive(Debug, Deserialize)]
struct NewerEntry {
    #[serde(flatten)]
    port: Option<Expected>,
    #[serde(default)]
    since: u64,
}

/// Why a baseline file was refused.
#[derive(Debug, thiserror::Error)]
pub enum ParseError {
    #[error("{0}")]
    Invalid(String),
    /// Written by a newer portwarden: not ours to replace. What could be
    /// read of it comes along.
    #[error("version {version} (this portwarden reads version {VERSION} and older)")]
    Newer {
        version: u32,
        readable: BTreeMap<Expected, u64>,
    },
}

/// Parses a baseline file's text: expected ports and since when. Pure.
pub fn parse(text: &[u8]) -> Result<BTreeMap<Expected, u64>, ParseError> {
    if let Ok(newer) = serde_json::from_slice::<Newer>(text)
        && newer.version > VERSION
    {
        return Err(ParseError::Newer {
            version: newer.version,
            readable: newer
                .ports
                .into_iter()
                .filter_map(|e| Some((e.port?, e.since)))
                .collect(),
        });
    }
    let contents: Contents =
        serde_json::from_slice(text).map_err(|e| ParseError::Invalid(e.to_string()))?;
    if contents.version != VERSION {
        return Err(ParseError::Invalid(format!(
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

/// The state directory: the one asked for, else the system's
/// (`/var/lib/portwarden`; `%ProgramData%\portwarden` on Windows) when it
/// can be created and written, else the user's (`$XDG_STATE_HOME/portwarden`
/// or `~/.local/state/portwarden`; `%LOCALAPPDATA%\portwarden`).
pub fn state_dir(asked: Option<&Path>) -> io::Result<PathBuf> {
    if let Some(dir) = asked {
        fs::create_dir_all(dir)?;
        return Ok(dir.to_path_buf());
    }
    let system = crate::discover::os::system_state_dir();
    if writable(&system) {
        return Ok(system);
    }
    let user = crate::discover::os::user_state_dir()
        .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "no home for a state directory"))?;
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
    /// Why it cannot be written (a read-only directory, a newer version's
    /// file): it is still read, and learning stays in memory.
    read_only: Option<String>,
}

/// Why the exporter's update did not reach the file.
#[derive(Debug, thiserror::Error)]
pub enum UpdateError {
    /// Another process holds the lock: tried again at the next pass.
    #[error("another process holds {LOCK}")]
    Busy,
    /// The change is kept in memory only.
    #[error("read-only: {0}")]
    ReadOnly(String),
    #[error(transparent)]
    Io(#[from] io::Error),
}

impl Baseline {
    /// Opens the baseline in `dir` (none yet: empty), without waiting for
    /// the lock. An unreadable file is moved aside and reported (when the
    /// lock is free and the directory writable).
    pub fn open(dir: &Path) -> io::Result<(Baseline, Option<Recovered>)> {
        if !dir.is_dir() {
            return Err(io::Error::new(
                io::ErrorKind::NotADirectory,
                format!("{} is not a directory", dir.display()),
            ));
        }
        let mut b = Baseline {
            dir: dir.to_path_buf(),
            entries: BTreeMap::new(),
            seen: None,
            read_only: None,
        };
        let lock = match b.lock() {
            Ok(lock) => lock,
            Err(e) => {
                b.read_only = Some(e.to_string());
                None
            }
        };
        let recovered = b.read(lock.is_some())?;
        Ok((b, recovered))
    }

    /// Why the file cannot be written, if it cannot.
    pub fn read_only(&self) -> Option<&str> {
        self.read_only.as_deref()
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
    /// (one `stat`). Returns whether it did. Takes no lock.
    pub fn reload_if_changed(&mut self) -> io::Result<(bool, Option<Recovered>)> {
        if self.stamp() == self.seen {
            return Ok((false, None));
        }
        let lock = self.lock().ok().flatten();
        let recovered = self.read(lock.is_some())?;
        Ok((true, recovered))
    }

    /// Adds or removes entries under the lock, on top of the file as it is
    /// now, and writes the result atomically (what `portwarden baseline`
    /// does). `edit` returns whether it changed anything. When another
    /// process holds the lock, `waiting` is called once and the lock is
    /// waited for up to [`LOCK_WAIT`]; then it gives up (`TimedOut`).
    pub fn update(
        &mut self,
        waiting: impl FnOnce(),
        edit: impl FnOnce(&mut BTreeMap<Expected, u64>) -> bool,
    ) -> io::Result<Option<Recovered>> {
        let held = match self.read_only {
            Some(_) => None,
            None => Some(self.lock_waiting(waiting)?),
        };
        self.change(held, edit).map_err(|e| match e {
            UpdateError::Io(e) => e,
            e => io::Error::other(e.to_string()),
        })
    }

    /// The lock, polled for up to [`LOCK_WAIT`] (`waiting` called once if
    /// it is not free at once).
    fn lock_waiting(&self, waiting: impl FnOnce()) -> io::Result<File> {
        let until = std::time::Instant::now() + LOCK_WAIT;
        let mut waiting = Some(waiting);
        loop {
            if let Some(lock) = self.lock()? {
                return Ok(lock);
            }
            if std::time::Instant::now() >= until {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!(
                        "another process has held {} for {} s: gave up (an exporter stuck writing it, or another `portwarden baseline`)",
                        self.dir.join(LOCK).display(),
                        LOCK_WAIT.as_secs()
                    ),
                ));
            }
            if let Some(w) = waiting.take() {
                w();
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    }

    /// As [`Baseline::update`], but never waits for the lock (the
    /// exporter's discovery thread); read-only, the edit is kept in memory.
    pub fn try_update(
        &mut self,
        edit: impl FnOnce(&mut BTreeMap<Expected, u64>) -> bool,
    ) -> Result<Option<Recovered>, UpdateError> {
        let held = match self.read_only {
            Some(_) => None,
            None => Some(self.lock()?.ok_or(UpdateError::Busy)?),
        };
        self.change(held, edit)
    }

    /// `edit` under `held`, the lock (`None`: read-only).
    fn change(
        &mut self,
        held: Option<File>,
        edit: impl FnOnce(&mut BTreeMap<Expected, u64>) -> bool,
    ) -> Result<Option<Recovered>, UpdateError> {
        // Read-only (from the start, or since a newer version's file
        // appeared under the lock): the edit lives in memory only.
        // The lock, held to the end of the write.
        let _held = held;
        let mut recovered = None;
        if _held.is_some() {
            recovered = self.read(true)?;
        }
        if let Some(why) = &self.read_only {
            edit(&mut self.entries);
            return Err(UpdateError::ReadOnly(why.clone()));
        }
        if edit(&mut self.entries) || recovered.is_some() {
            self.write()?;
        }
        Ok(recovered)
    }

    /// The lock, without waiting; `None`: another process holds it.
    fn lock(&self) -> io::Result<Option<File>> {
        let f = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(self.dir.join(LOCK))?;
        match crate::discover::os::try_lock_exclusive(&f)? {
            true => Ok(Some(f)),
            false => Ok(None),
        }
    }

    fn stamp(&self) -> Option<(SystemTime, u64)> {
        let meta = fs::metadata(self.path()).ok()?;
        Some((meta.modified().ok()?, meta.len()))
    }

    /// Reads the file; an unreadable one is moved aside only by a holder of
    /// the lock (`locked`).
    fn read(&mut self, locked: bool) -> io::Result<Option<Recovered>> {
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
            Err(ParseError::Newer { version, readable }) => {
                self.entries = readable;
                self.seen = self.stamp();
                self.read_only = Some(format!(
                    "{} is version {version}, written by a newer portwarden (this one writes version {VERSION}); left as it is",
                    path.display()
                ));
                Ok(None)
            }
            Err(e @ ParseError::Invalid(_)) if !locked => {
                // Not ours to move now: looked at again when it changes.
                self.entries.clear();
                self.seen = self.stamp();
                Ok(Some(Recovered {
                    kept_as: path,
                    reason: format!(
                        "{e}; left in place (the lock is held elsewhere, or the directory is read-only)"
                    ),
                }))
            }
            Err(e) => {
                let kept_as = self.bad_name();
                fs::rename(&path, &kept_as)?;
                self.prune_bad();
                self.entries.clear();
                self.seen = None;
                Ok(Some(Recovered {
                    kept_as,
                    reason: e.to_string(),
                }))
            }
        }
    }

    /// A new name for an unreadable file: `baseline.json.bad.<seconds>.<ns>`
    /// (names sort by time; a name freed by pruning is never reused).
    fn bad_name(&self) -> PathBuf {
        let at = crate::value::time::since_epoch(SystemTime::now());
        let mut ns = at.subsec_nanos();
        loop {
            let name = self
                .dir
                .join(format!("{FILE}.bad.{}.{ns:09}", at.as_secs()));
            if !name.exists() {
                return name;
            }
            ns = ns.saturating_add(1);
        }
    }

    /// Removes all but the newest [`KEEP_BAD`] unreadable files kept aside.
    fn prune_bad(&self) {
        let Ok(dir) = fs::read_dir(&self.dir) else {
            return;
        };
        // Named by the time they were kept aside: in name order, oldest first.
        let mut bad: Vec<PathBuf> = dir
            .flatten()
            .filter(|e| {
                e.file_name()
                    .to_string_lossy()
                    .starts_with(&format!("{FILE}.bad"))
            })
            .map(|e| e.path())
            .collect();
        bad.sort();
        let excess = bad.len().saturating_sub(KEEP_BAD);
        for path in bad.into_iter().take(excess) {
            let _ = fs::remove_file(path);
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Proto;

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
        let name = recovered
            .kept_as
            .file_name()
            .expect("name")
            .to_string_lossy();
        assert!(name.starts_with("baseline.json.bad."), "{name}");
        assert_eq!(
            fs::read(&recovered.kept_as).expect("kept"),
            b"\x00\x01 not json"
        );
        assert!(b.entries().is_empty());
        b.update(|| {}, |e| e.insert(expected(22), 1).is_none())
            .expect("writes");
        let (again, none) = Baseline::open(&dir).expect("reopens");
        assert!(none.is_none());
        assert!(again.contains(&expected(22)));
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn unreadable_files_kept_aside_are_not_overwritten_and_only_the_newest_kept() {
        let dir = tempdir("bad-files");
        let mut kept = Vec::new();
        for i in 0..5u8 {
            fs::write(dir.join(FILE), [b'x', i]).expect("write");
            let (_, recovered) = Baseline::open(&dir).expect("opens");
            kept.push(recovered.expect("reported").kept_as);
        }
        let left: Vec<_> = kept.iter().filter(|p| p.exists()).collect();
        assert_eq!(left.len(), KEEP_BAD, "{kept:?}");
        // The newest three, each with its own content.
        for (i, path) in kept.iter().enumerate().skip(2) {
            assert_eq!(fs::read(path).expect("kept"), [b'x', i as u8]);
        }
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_newer_versions_file_is_read_as_far_as_it_can_be_and_left_alone() {
        let dir = tempdir("newer");
        let text = br#"{"version": 9, "ports": [{"proto": "tcp", "port": 22, "netns": "host", "process_name": "sshd", "exe_path": "/usr/sbin/sshd", "since": 5, "checksum": "x"}], "signed": true}"#;
        fs::write(dir.join(FILE), text).expect("write");
        let (mut b, recovered) = Baseline::open(&dir).expect("opens");
        assert!(recovered.is_none());
        assert!(b.read_only().is_some_and(|w| w.contains("version 9")));
        assert_eq!(b.entries().len(), 1);
        let err = b.try_update(|e| e.insert(expected(80), 1).is_none());
        assert!(matches!(err, Err(UpdateError::ReadOnly(_))), "{err:?}");
        // Learnt in memory, the file untouched.
        assert!(b.contains(&expected(80)));
        assert_eq!(fs::read(dir.join(FILE)).expect("file"), text);
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn the_exporter_never_waits_for_the_lock() {
        let dir = tempdir("lock");
        let (mut b, _) = Baseline::open(&dir).expect("opens");
        let held = b.lock().expect("lock").expect("free");
        let started = std::time::Instant::now();
        let err = b.try_update(|e| e.insert(expected(1), 0).is_none());
        assert!(matches!(err, Err(UpdateError::Busy)), "{err:?}");
        assert!(started.elapsed() < std::time::Duration::from_secs(1));
        drop(held);
        b.try_update(|e| e.insert(expected(1), 0).is_none())
            .expect("written once the lock is free");
        assert!(b.contains(&expected(1)));
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_state_dir_that_is_a_file_is_refused() {
        let dir = tempdir("notdir");
        let file = dir.join("plain");
        fs::write(&file, b"").expect("write");
        let err = Baseline::open(&file).expect_err("a file");
        assert_eq!(err.kind(), io::ErrorKind::NotADirectory);
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn readers_never_see_a_torn_file_while_it_is_rewritten() {
        let dir = tempdir("atomic");
        let (mut b, _) = Baseline::open(&dir).expect("opens");
        b.update(|| {}, |e| e.insert(expected(1), 0).is_none())
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
                b.update(
                    || {},
                    |e| e.insert(expected(1000 + i), u64::from(i)).is_none(),
                )
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
            .update(|| {}, |e| e.insert(expected(80), 0).is_none())
            .expect("write");
        let (mut cli, _) = Baseline::open(&dir).expect("opens");
        cli.update(|| {}, |e| e.remove(&expected(80)).is_some())
            .expect("forget");
        let (changed, _) = exporter.reload_if_changed().expect("reload");
        assert!(changed);
        assert!(!exporter.contains(&expected(80)));
        let (changed, _) = exporter.reload_if_changed().expect("reload");
        assert!(!changed);
        let _ = fs::remove_dir_all(&dir);
    }
}
