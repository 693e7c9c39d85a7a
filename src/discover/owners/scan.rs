//! Scans of fd tables: every process's, or the newest first until every
//! wanted inode is found; spread over threads, no allocation per fd.

use super::*;

/// The inodes a scan looks for: known now, or set by another thread later.
#[derive(Clone, Copy)]
pub(super) enum Wanted<'a> {
    Now(&'a IdSet<u64>),
    Later(&'a OnceLock<IdSet<u64>>),
}

impl Wanted<'_> {
    pub(super) fn get(&self) -> Option<&IdSet<u64>> {
        match self {
            Wanted::Now(set) => Some(set),
            Wanted::Later(cell) => cell.get(),
        }
    }
}

/// What a scan needs to read fd tables and owners' details.
pub(super) struct ScanCtx<'a> {
    pub(super) proc: &'a ProcRoot,
    pub(super) wanted: Wanted<'a>,
    /// Processes whose details are already known (pid → start time).
    pub(super) known: IdMap<u32, u64>,
    pub(super) users: &'a Users,
    /// Fd directories this scan holds open for the index, and how many it
    /// may: past that they are closed at once (the process is then checked
    /// by start time), so a host of many owners cannot exhaust our
    /// descriptors mid-scan.
    pub(super) held: AtomicUsize,
    pub(super) budget: usize,
}

/// What we know of a process found holding a socket.
#[derive(Debug)]
pub(super) enum Details {
    /// `ScanCtx::known` had them: the cached ones are reused.
    Known,
    Read(Box<Owner>),
    /// Read before the socket list arrived: settled once it has.
    Deferred(PidDir),
}

/// A process found holding at least one wanted socket.
#[derive(Debug)]
pub(super) struct Found {
    pub(super) pid: u32,
    pub(super) start_time: u64,
    pub(super) fd_dir: Option<OwnedFd>,
    pub(super) details: Details,
}

/// The result of reading some fd tables.
#[derive(Debug, Default)]
pub(super) struct ScanOut {
    /// (inode, pid, fd) of every wanted socket found (every socket, for
    /// processes read before the list arrived).
    pub(super) hits: Vec<(u64, u32, u32)>,
    pub(super) found: Vec<Found>,
    pub(super) stats: ScanStats,
    /// How many leading entries of the pid list were read.
    pub(super) scanned: usize,
}

/// A scan of fd tables under way, shared by the threads that help. Pids are
/// taken in list order; with `until`, the scan stops as soon as every inode
/// in it has been found, so what was read is a prefix of the list.
pub struct Scan<'a> {
    pub(super) ctx: ScanCtx<'a>,
    pub(super) pids: Vec<u32>,
    pub(super) next: AtomicUsize,
    pub(super) stop: AtomicBool,
    pub(super) remaining: Option<Mutex<IdSet<u64>>>,
    pub(super) outs: Mutex<Vec<ScanOut>>,
}

impl<'a> Scan<'a> {
    pub(super) fn new(ctx: ScanCtx<'a>, pids: Vec<u32>, until: Option<&IdSet<u64>>) -> Self {
        Scan {
            ctx,
            pids,
            next: AtomicUsize::new(0),
            stop: AtomicBool::new(false),
            remaining: until.map(|u| Mutex::new(u.clone())),
            outs: Mutex::new(Vec::new()),
        }
    }

    /// Reads fd tables until none is left (or the scan may stop). Call from
    /// any number of threads.
    pub fn work(&self) {
        let mut out = ScanOut::default();
        let mut dir_buf = vec![MaybeUninit::<u8>::uninit(); DIR_BUF];
        while !self.stop.load(Ordering::Relaxed) {
            let i = self.next.fetch_add(1, Ordering::Relaxed);
            let Some(&pid) = self.pids.get(i) else { break };
            let before = out.hits.len();
            scan_one(&self.ctx, pid, &mut dir_buf, &mut out);
            if let Some(remaining) = &self.remaining
                && out.hits.len() > before
            {
                let mut left = remaining.lock().unwrap_or_else(|e| e.into_inner());
                for hit in &out.hits[before..] {
                    left.remove(&hit.0);
                }
                if left.is_empty() {
                    self.stop.store(true, Ordering::Relaxed);
                }
            }
        }
        self.outs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(out);
    }

    /// Merges the threads' results and settles deferred processes against
    /// `wanted`.
    pub(super) fn finish(self, wanted: &IdSet<u64>) -> ScanOut {
        if self.remaining.is_none() {
            // A full scan reads every table, whoever helped.
            self.work();
        }
        let scanned = self.next.load(Ordering::Relaxed).min(self.pids.len());
        let mut total = ScanOut {
            scanned,
            ..ScanOut::default()
        };
        for out in self.outs.into_inner().unwrap_or_else(|e| e.into_inner()) {
            total.hits.extend(out.hits);
            total.found.extend(out.found);
            total.stats.add(&out.stats);
        }
        if total
            .found
            .iter()
            .any(|f| matches!(f.details, Details::Deferred(_)))
        {
            total.hits.retain(|h| wanted.contains(&h.0));
            let holding: IdSet<u32> = total.hits.iter().map(|h| h.1).collect();
            let mut buf = Vec::with_capacity(1024);
            let ctx = &self.ctx;
            let mut vanished = 0;
            total.found.retain_mut(|f| {
                let Details::Deferred(pid_dir) = &f.details else {
                    return true;
                };
                if !holding.contains(&f.pid) {
                    return false;
                }
                match settle(ctx, pid_dir, f.pid, &mut buf) {
                    Some((start_time, details)) => {
                        f.start_time = start_time;
                        f.details = details;
                        true
                    }
                    None => {
                        vanished += 1;
                        false
                    }
                }
            });
            total.stats.vanished += vanished;
        }
        total
    }
}

/// Runs a scan on up to `threads` threads (this one included).
pub(super) fn run_scan(
    ctx: ScanCtx<'_>,
    pids: Vec<u32>,
    until: Option<&IdSet<u64>>,
    threads: usize,
    wanted: &IdSet<u64>,
) -> ScanOut {
    let threads = threads.min(pids.len()).max(1);
    let scan = Scan::new(ctx, pids, until);
    std::thread::scope(|s| {
        let scan = &scan;
        // The workers share one queue: a thread refused is one fewer.
        for _ in 1..threads {
            if crate::discover::threads::spawn(s, move || scan.work()).is_none() {
                break;
            }
        }
        scan.work();
    });
    scan.finish(wanted)
}

/// Reads a process's start time and, unless already known, its details.
pub(super) fn settle(
    ctx: &ScanCtx<'_>,
    pid_dir: &PidDir,
    pid: u32,
    buf: &mut Vec<u8>,
) -> Option<(u64, Details)> {
    pid_dir.read("stat", buf).ok()?;
    let stat = procfs::parse_stat(buf)?;
    let start_time = stat.start_time;
    if ctx.known.get(&pid) == Some(&start_time) {
        return Some((start_time, Details::Known));
    }
    let owner = read_owner(pid_dir, pid, stat, ctx.users, buf)?;
    Some((start_time, Details::Read(Box::new(owner))))
}

/// Reads one process's fd table, recording wanted sockets, and the
/// process's details when it holds one.
pub(super) fn scan_one(
    ctx: &ScanCtx<'_>,
    pid: u32,
    dir_buf: &mut [MaybeUninit<u8>],
    out: &mut ScanOut,
) {
    let opened = ctx
        .proc
        .open_pid(pid)
        .and_then(|p| p.open_dir("fd").map(|fd| (p, fd)));
    let (pid_dir, fd_dir) = match opened {
        Ok(dirs) => dirs,
        Err(e) => {
            count_error(&e, &mut out.stats);
            return;
        }
    };
    out.stats.processes_scanned += 1;
    let before = out.hits.len();
    // Before the socket list arrives, every socket is kept and sorted out later.
    let wanted = ctx.wanted.get();
    let mut entries = RawDir::new(&fd_dir, dir_buf);
    let mut link = [0u8; LINK_BUF];
    while let Some(entry) = entries.next() {
        let Ok(entry) = entry else {
            // The process exited while we read its table.
            out.stats.vanished += 1;
            break;
        };
        let Some(fd) = procfs::parse_u32(entry.file_name().to_bytes()) else {
            continue;
        };
        out.stats.fds_read += 1;
        // An fd closed since getdents: ENOENT, skip it.
        let Ok(n) = rustix::fs::readlinkat_raw(&fd_dir, entry.file_name(), &mut link[..]) else {
            continue;
        };
        if let Some(inode) = procfs::socket_inode(&link[..n])
            && wanted.is_none_or(|w| w.contains(&inode))
        {
            out.hits.push((inode, pid, fd));
        }
    }
    if out.hits.len() == before {
        return;
    }
    let fd_dir = (ctx.held.fetch_add(1, Ordering::Relaxed) < ctx.budget).then_some(fd_dir);
    if wanted.is_none() {
        out.found.push(Found {
            pid,
            start_time: 0,
            fd_dir,
            details: Details::Deferred(pid_dir),
        });
        return;
    }
    let mut buf = Vec::with_capacity(1024);
    let Some((start_time, details)) = settle(ctx, &pid_dir, pid, &mut buf) else {
        out.stats.vanished += 1;
        out.hits.truncate(before);
        return;
    };
    out.found.push(Found {
        pid,
        start_time,
        fd_dir,
        details,
    });
}

pub(super) fn count_error(e: &io::Error, stats: &mut ScanStats) {
    match Errno::from_io_error(e) {
        Some(Errno::ACCESS) | Some(Errno::PERM) => stats.fd_denied += 1,
        // Ours, not the process's: read again at the next pass.
        Some(Errno::MFILE) | Some(Errno::NFILE) | Some(Errno::NOMEM) => stats.fd_exhausted += 1,
        _ => stats.vanished += 1,
    }
}

/// Reads a process's details through its open `/proc/<pid>` directory, so
/// they are that process's even if it exits meanwhile and the pid is reused.
/// `None` when it exited.
pub(super) fn read_owner(
    pid_dir: &PidDir,
    pid: u32,
    stat: procfs::Stat,
    users: &Users,
    buf: &mut Vec<u8>,
) -> Option<Owner> {
    let (process_name, exe_path) = match pid_dir.readlink("exe") {
        Ok(target) => procfs::exe_name_and_path(&target),
        // Kernel threads have no exe; another user's process hides it from
        // us without CAP_SYS_PTRACE. Fall back to the kernel's name.
        Err(_) => (stat.comm.clone(), String::new()),
    };
    // The file it runs, as mapped (found even once deleted): what
    // [`crate::discover::Discoverer`] compares its path's file with.
    let exe_id = pid_dir.stat_target("exe").ok();
    let cmdline = match pid_dir.read("cmdline", buf) {
        Ok(()) => procfs::cmdline_string(buf),
        Err(_) => String::new(),
    };
    let (container, cgroup_unrecognized, unit) = match pid_dir.read("cgroup", buf) {
        Ok(()) => {
            let text = String::from_utf8_lossy(buf);
            let unit = crate::discover::cgroup::unit(&text);
            match crate::discover::cgroup::parse(&text) {
                Ok(c) => (c, false, unit),
                Err(_) => (None, true, unit),
            }
        }
        Err(_) => (None, false, None),
    };
    // Another user's environment is hidden from us without privilege:
    // then its passed sockets are not known.
    let listen_fds = match pid_dir.read("environ", buf) {
        Ok(()) => procfs::listen_fds(buf, pid),
        Err(_) => None,
    };
    pid_dir.read("status", buf).ok()?;
    let uid = procfs::parse_status_euid(buf)?;
    Some(Owner {
        pid,
        start_time: stat.start_time,
        process_name: if process_name.is_empty() {
            stat.comm
        } else {
            process_name
        },
        exe_path,
        cmdline,
        uid,
        user: users.name(uid),
        ppid: stat.ppid,
        container,
        cgroup_unrecognized,
        unit,
        listen_fds,
        exe_id,
    })
}

/// The decimal name of an fd, on the stack.
pub(super) fn fd_name(mut fd: u32, buf: &mut [u8; 12]) -> &[u8] {
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (fd % 10) as u8;
        fd /= 10;
        if fd == 0 {
            return &buf[i..];
        }
    }
}

/// How many fd directories we keep open: a quarter of the open-file limit,
/// so the rest of the program always has room.
pub(super) fn dir_budget() -> usize {
    let limit = rustix::process::getrlimit(rustix::process::Resource::Nofile);
    let soft = limit.current.unwrap_or(1024);
    usize::try_from(soft / 4).unwrap_or(usize::MAX)
}
