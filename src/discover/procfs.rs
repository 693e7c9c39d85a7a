//! The proc root (`--path.procfs`, `PROC_PREFIX`) and the few files we read
//! from it. Every /proc access of the program goes through [`ProcRoot`], so a
//! container can point it at the host's /proc and tests at a fixture tree.
//!
//! Reads are relative to one open directory fd (`openat`/`readlinkat`), with
//! paths built on the stack: the owner scan does this ~100,000 times a pass.

use std::ffi::OsStr;
use std::io::{self, Write as _};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use rustix::fs::{Mode, OFlags, RawDir};

use crate::error::Error;

/// Largest relative path we build (`<pid>/<name>`); longer names are refused.
const PATH_MAX_LOCAL: usize = 96;

/// An open proc root.
#[derive(Debug)]
pub struct ProcRoot {
    path: PathBuf,
    dir: OwnedFd,
}

impl ProcRoot {
    /// Opens the proc root; a missing or unreadable one is a usage error.
    /// Opens the proc root at `path`; empty: `/proc`.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, Error> {
        let path = match path.as_ref() {
            p if p.as_os_str().is_empty() => PathBuf::from("/proc"),
            p => p.to_path_buf(),
        };
        let dir = open_dir_at(rustix::fs::CWD, &path).map_err(|e| Error::ProcRoot {
            path: path.clone(),
            source: e,
        })?;
        Ok(ProcRoot { path, dir })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Every numeric entry of the root: the thread-group ids of all processes.
    pub fn pids(&self) -> io::Result<Vec<u32>> {
        let fd = open_dir_at(&self.dir, ".")?;
        let mut buf = vec![std::mem::MaybeUninit::<u8>::uninit(); 32 * 1024];
        let mut dir = RawDir::new(fd, &mut buf);
        let mut pids = Vec::with_capacity(1024);
        while let Some(entry) = dir.next() {
            if let Some(pid) = parse_u32(entry?.file_name().to_bytes()) {
                pids.push(pid);
            }
        }
        Ok(pids)
    }

    /// Opens `<pid>` itself. Reads through a [`PidDir`] reach that very
    /// process or fail: a reused pid never answers for the old process.
    pub fn open_pid(&self, pid: u32) -> io::Result<PidDir> {
        let path = PidPath::new(pid, b"")?;
        let name = path
            .as_bytes()
            .strip_suffix(b"/")
            .unwrap_or(path.as_bytes());
        Ok(PidDir {
            dir: open_dir_at(&self.dir, name)?,
        })
    }

    /// Reads `<pid>/<name>` whole into `buf` (cleared first).
    pub fn read(&self, pid: u32, name: &str, buf: &mut Vec<u8>) -> io::Result<()> {
        let path = PidPath::new(pid, name.as_bytes())?;
        self.read_rel(path.as_bytes(), buf)
    }

    /// (device, inode) of a file relative to the root, links followed
    /// (e.g. `812/root/usr/sbin/nginx`).
    pub fn stat_rel(&self, rel: impl rustix::path::Arg) -> io::Result<(u64, u64)> {
        let st = rustix::fs::statat(&self.dir, rel, rustix::fs::AtFlags::empty())?;
        Ok((st.st_dev, st.st_ino))
    }

    /// Reads a file relative to the root (e.g. `1/root/etc/passwd`).
    pub fn read_rel(&self, rel: impl rustix::path::Arg, buf: &mut Vec<u8>) -> io::Result<()> {
        read_at(&self.dir, rel, buf)
    }

    /// Reads the link `<pid>/<name>` (e.g. `exe`, `ns/net`).
    pub fn readlink(&self, pid: u32, name: &str) -> io::Result<Vec<u8>> {
        let path = PidPath::new(pid, name.as_bytes())?;
        self.readlink_rel(path.as_bytes())
    }

    /// Reads a link relative to the root (e.g. `self/ns/net`).
    pub fn readlink_rel(&self, rel: &[u8]) -> io::Result<Vec<u8>> {
        readlink_at(&self.dir, rel)
    }

    /// The root's directory fd, for callers that walk it themselves.
    pub fn dir(&self) -> impl AsFd + '_ {
        &self.dir
    }
}

/// An open `/proc/<pid>` directory.
#[derive(Debug)]
pub struct PidDir {
    dir: OwnedFd,
}

impl PidDir {
    /// Opens a subdirectory such as `fd`.
    pub fn open_dir(&self, name: &str) -> io::Result<OwnedFd> {
        open_dir_at(&self.dir, name)
    }

    /// Reads a file such as `stat` whole into `buf` (cleared first).
    pub fn read(&self, name: &str, buf: &mut Vec<u8>) -> io::Result<()> {
        read_at(&self.dir, name, buf)
    }

    /// Opens a file such as `ns/net` for reading.
    pub fn open_file(&self, name: &str) -> io::Result<OwnedFd> {
        Ok(rustix::fs::openat(
            &self.dir,
            name,
            OFlags::RDONLY | OFlags::CLOEXEC,
            Mode::empty(),
        )?)
    }

    /// (device, inode) of what a link such as `exe` leads to, followed
    /// (a deleted file's too).
    pub fn stat_target(&self, name: &str) -> io::Result<(u64, u64)> {
        let st = rustix::fs::statat(&self.dir, name, rustix::fs::AtFlags::empty())?;
        Ok((st.st_dev, st.st_ino))
    }

    /// Reads a link such as `exe`.
    pub fn readlink(&self, name: &str) -> io::Result<Vec<u8>> {
        readlink_at(&self.dir, name)
    }
}

fn open_dir_at(dir: impl AsFd, rel: impl rustix::path::Arg) -> io::Result<OwnedFd> {
    Ok(rustix::fs::openat(
        dir,
        rel,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )?)
}

fn read_at(dir: impl AsFd, rel: impl rustix::path::Arg, buf: &mut Vec<u8>) -> io::Result<()> {
    buf.clear();
    let fd = rustix::fs::openat(dir, rel, OFlags::RDONLY | OFlags::CLOEXEC, Mode::empty())?;
    io::Read::read_to_end(&mut std::fs::File::from(fd), buf)?;
    Ok(())
}

fn readlink_at(dir: impl AsFd, rel: impl rustix::path::Arg) -> io::Result<Vec<u8>> {
    Ok(rustix::fs::readlinkat(dir, rel, Vec::new())?.into_bytes())
}

/// `<pid>/<name>` formatted on the stack.
struct PidPath {
    buf: [u8; PATH_MAX_LOCAL],
    len: usize,
}

impl PidPath {
    fn new(pid: u32, name: &[u8]) -> io::Result<Self> {
        let mut buf = [0u8; PATH_MAX_LOCAL];
        let mut cursor = io::Cursor::new(&mut buf[..]);
        write!(cursor, "{pid}/")?;
        cursor.write_all(name)?;
        let len = cursor.position() as usize;
        Ok(PidPath { buf, len })
    }

    fn as_bytes(&self) -> &[u8] {
        &self.buf[..self.len]
    }
}

/// Parses a decimal u32 made of ASCII digits only.
pub fn parse_u32(s: &[u8]) -> Option<u32> {
    if s.is_empty() || s.len() > 10 {
        return None;
    }
    let mut n: u64 = 0;
    for &b in s {
        if !b.is_ascii_digit() {
            return None;
        }
        n = n * 10 + u64::from(b - b'0');
    }
    u32::try_from(n).ok()
}

/// Parses the inode out of an fd link target `socket:[12345]`.
pub fn socket_inode(link: &[u8]) -> Option<u64> {
    bracketed_number(link, b"socket:")
}

/// The number in `<prefix>[<digits>]`, the form of `/proc` links to
/// sockets and namespaces.
fn bracketed_number(link: &[u8], prefix: &[u8]) -> Option<u64> {
    let digits = link
        .strip_prefix(prefix)?
        .strip_prefix(b"[")?
        .strip_suffix(b"]")?;
    if digits.is_empty() || digits.len() > 20 {
        return None;
    }
    digits.iter().try_fold(0u64, |n, &b| {
        b.is_ascii_digit()
            .then(|| n.checked_mul(10)?.checked_add(u64::from(b - b'0')))?
    })
}

/// The fields of `/proc/<pid>/stat` we use: an owner's parent and start
/// time, and our own CPU and memory for the `process_*` metrics.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stat {
    /// The kernel's 15-byte `comm` (may contain spaces and parentheses).
    pub comm: String,
    /// Field 3: the scheduler state's letter (`R`, `S`, `T`, `Z`, …).
    pub state: u8,
    pub ppid: u32,
    /// Fields 14 and 15: CPU time in user and kernel mode, in clock ticks.
    pub utime: u64,
    pub stime: u64,
    /// Field 22: start time in clock ticks since boot.
    pub start_time: u64,
    /// Field 23: virtual memory size in bytes.
    pub vsize: u64,
    /// Field 24: resident set size in pages.
    pub rss_pages: u64,
}

/// Parses `/proc/<pid>/stat` (the one reader of it: owners and our own
/// figures). `comm` is enclosed in parentheses and may hold any byte, `)`
/// included, so the fields start after the *last* `)`.
pub fn parse_stat(text: &[u8]) -> Option<Stat> {
    let open = text.iter().position(|&b| b == b'(')?;
    let close = text.iter().rposition(|&b| b == b')')?;
    if close < open {
        return None;
    }
    let comm = String::from_utf8_lossy(&text[open + 1..close]).into_owned();
    let rest = std::str::from_utf8(text.get(close + 1..)?).ok()?;
    // After comm, index 0 is field 3 (state): ppid is index 1, utime 11,
    // stime 12, starttime 19, vsize 20, rss 21.
    let mut fields = rest.split_ascii_whitespace();
    let state = *fields.next()?.as_bytes().first()?;
    let mut next = |skip: usize| fields.nth(skip)?.parse::<u64>().ok();
    let ppid = u32::try_from(next(0)?).ok()?;
    let utime = next(9)?;
    let stime = next(0)?;
    let start_time = next(6)?;
    let vsize = next(0).unwrap_or(0);
    let rss_pages = next(0).unwrap_or(0);
    Some(Stat {
        comm,
        state,
        ppid,
        utime,
        stime,
        start_time,
        vsize,
        rss_pages,
    })
}

/// Effective uid from `/proc/<pid>/status` (`Uid: real effective saved fs`).
/// Read as bytes: the `Name:` line holds whatever the process named itself
/// (`prctl(PR_SET_NAME)` takes any bytes), which must not hide its uid.
pub fn parse_status_euid(text: &[u8]) -> Option<u32> {
    let line = text
        .split(|&b| b == b'\n')
        .find_map(|l| l.strip_prefix(b"Uid:"))?;
    std::str::from_utf8(line)
        .ok()?
        .split_ascii_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// `/proc/<pid>/cmdline` (NUL-separated arguments) as one space-separated line.
pub fn cmdline_string(raw: &[u8]) -> String {
    let trimmed = raw.strip_suffix(b"\0").unwrap_or(raw);
    let joined: Vec<u8> = trimmed
        .iter()
        .map(|&b| if b == 0 { b' ' } else { b })
        .collect();
    String::from_utf8_lossy(&joined).into_owned()
}

/// An `exe` link target as (process name, path): the suffix " (deleted)" that
/// the kernel appends after an upgrade replaced the binary is stripped, so
/// series do not churn (SPEC defect 8).
pub fn exe_name_and_path(target: &[u8]) -> (String, String) {
    let path = target.strip_suffix(b" (deleted)").unwrap_or(target);
    let name = Path::new(OsStr::from_bytes(path))
        .file_name()
        .map(|n| n.as_bytes())
        .unwrap_or(b"");
    (
        String::from_utf8_lossy(name).into_owned(),
        String::from_utf8_lossy(path).into_owned(),
    )
}

/// The sockets a service manager passed to `pid` (`sd_listen_fds(3)`), from
/// its `environ`: `LISTEN_FDS` of them from fd 3 on, named by
/// `LISTEN_FDNAMES` (`:`-separated; systemd names each after its `.socket`
/// unit unless `FileDescriptorName=` says otherwise). `None` unless
/// `LISTEN_PID` is `pid` itself: the variables were meant for another
/// process (a child inherits them).
pub fn listen_fds(environ: &[u8], pid: u32) -> Option<crate::model::ListenFds> {
    let (mut listen_pid, mut count, mut names) = (None, None, None);
    for var in environ.split(|&b| b == 0) {
        if let Some(v) = var.strip_prefix(b"LISTEN_PID=") {
            listen_pid = parse_u32(v);
        } else if let Some(v) = var.strip_prefix(b"LISTEN_FDS=") {
            count = parse_u32(v);
        } else if let Some(v) = var.strip_prefix(b"LISTEN_FDNAMES=") {
            names = Some(v);
        }
    }
    if listen_pid != Some(pid) {
        return None;
    }
    let count = count.filter(|&n| n > 0)?;
    let names = names
        .map(|v| {
            v.split(|&b| b == b':')
                .map(|n| String::from_utf8_lossy(n).into_owned())
                .collect()
        })
        .unwrap_or_default();
    Some(crate::model::ListenFds { count, names })
}

/// Inode number from a network namespace link target `net:[4026531840]`.
pub fn ns_inode(target: &[u8]) -> Option<u64> {
    bracketed_number(target, b"net:")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_with_hostile_comm() {
        let text =
            b"4242 (a) b (c)) S 17 4242 4242 0 -1 4194560 1 0 0 0 5 7 0 0 20 0 1 0 987654 1 2 3\n";
        let stat = parse_stat(text).expect("parses");
        assert_eq!(stat.comm, "a) b (c)");
        assert_eq!(stat.ppid, 17);
        assert_eq!((stat.utime, stat.stime), (5, 7));
        assert_eq!(stat.start_time, 987654);
        assert_eq!((stat.vsize, stat.rss_pages), (1, 2));
    }

    #[test]
    fn stat_truncated_is_none() {
        assert_eq!(parse_stat(b"1 (init) S 0 1"), None);
        assert_eq!(parse_stat(b""), None);
    }

    #[test]
    fn socket_links() {
        assert_eq!(socket_inode(b"socket:[123]"), Some(123));
        assert_eq!(socket_inode(b"socket:[]"), None);
        assert_eq!(socket_inode(b"socket:[12a]"), None);
        assert_eq!(socket_inode(b"pipe:[123]"), None);
        assert_eq!(socket_inode(b"/dev/null"), None);
        assert_eq!(socket_inode(b"socket:[99999999999999999999]"), None);
    }

    #[test]
    fn exe_deleted_suffix_is_stripped() {
        let (name, path) = exe_name_and_path(b"/usr/sbin/nginx (deleted)");
        assert_eq!(name, "nginx");
        assert_eq!(path, "/usr/sbin/nginx");
        let (name, path) = exe_name_and_path(b"/opt/my app/\"q\" \\ \xc3\xbc");
        assert_eq!(name, "\"q\" \\ \u{fc}");
        assert_eq!(path, "/opt/my app/\"q\" \\ \u{fc}");
    }

    #[test]
    fn listen_fds_only_for_the_process_they_name() {
        let env = b"PATH=/bin\0LISTEN_PID=42\0LISTEN_FDS=2\0LISTEN_FDNAMES=web.socket:admin\0";
        let fds = listen_fds(env, 42).expect("passed sockets");
        assert_eq!(fds.count, 2);
        assert_eq!(fds.names, ["web.socket", "admin"]);
        assert_eq!(fds.name_of(3), Some(Some("web.socket")));
        assert_eq!(fds.name_of(4), Some(Some("admin")));
        assert_eq!(fds.name_of(5), None);
        assert_eq!(fds.name_of(2), None);
        // Inherited by a child: not its sockets.
        assert_eq!(listen_fds(env, 43), None);
        let unnamed = listen_fds(b"LISTEN_PID=7\0LISTEN_FDS=1", 7).expect("passed fds");
        assert_eq!(unnamed.name_of(3), Some(None));
        assert_eq!(listen_fds(b"LISTEN_PID=7\0LISTEN_FDS=0", 7), None);
        assert_eq!(listen_fds(b"", 7), None);
    }

    #[test]
    fn status_euid() {
        let text = b"Name:\tx\nUid:\t1000\t1001\t1000\t1000\nGid:\t0\t0\t0\t0\n";
        assert_eq!(parse_status_euid(text), Some(1001));
        assert_eq!(parse_status_euid(b"Name:\tx\n"), None);
        // A name that is not UTF-8 hides nothing.
        let text = b"Name:\tbad\xff\xfe\nUmask:\t0022\nUid:\t0\t7\t0\t0\n";
        assert_eq!(parse_status_euid(text), Some(7));
    }

    #[test]
    fn cmdline() {
        assert_eq!(
            cmdline_string(b"nginx: master\0-g\0daemon off;\0"),
            "nginx: master -g daemon off;"
        );
        assert_eq!(cmdline_string(b""), "");
    }

    #[test]
    fn numbers() {
        assert_eq!(parse_u32(b"4294967295"), Some(u32::MAX));
        assert_eq!(parse_u32(b"4294967296"), None);
        assert_eq!(parse_u32(b"self"), None);
        assert_eq!(ns_inode(b"net:[4026531840]"), Some(4026531840));
    }
}
