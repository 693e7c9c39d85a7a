//! Socket inode → every process holding it.
//!
//! The kernel offers no reverse index: the only way to learn who holds a
//! socket is to read every process's fd table (`/proc/<pid>/fd/*` links),
//! which is what `ss -p` pays on every run (~2 µs of kernel time per fd). So:
//!
//! - A **full scan** reads every fd table, spread over all cores, with no
//!   allocation per fd: `readlinkat` on an open directory fd into a stack
//!   buffer: about 2 µs of kernel time per fd, `bench/discovery.sh`'s
//!   `readlink_floor`, is the floor this is held to.
//! - A **refresh** keeps what the last scan found, as (pid, fd) pairs plus an
//!   open `/proc/<pid>/fd` directory per owner. It verifies each known pair
//!   with one `readlinkat` and reads fd tables only for inodes it has never
//!   seen, newest pids first, stopping once all are found. Because the kept
//!   directory fd names one process, not a pid number, an exited owner fails
//!   verification even when its pid has been reused.

use super::ids::{IdMap, IdSet};
use std::io::{self, Write as _};
use std::mem::MaybeUninit;
use std::os::fd::OwnedFd;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use rustix::fs::RawDir;
use rustix::io::Errno;

use super::procfs::{self, PidDir, ProcRoot};
use super::users::Users;
use crate::model::{Owner, Owners, ScanStats};

/// Room for an fd link target: socket links are ~20 bytes; longer targets
/// (file paths) are cut, which is harmless since we only match sockets.
const LINK_BUF: usize = 64;
/// getdents buffer per scanning thread.
const DIR_BUF: usize = 32 * 1024;

/// One fd that holds a socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Holder {
    pid: u32,
    fd: u32,
}

/// A process known to hold at least one wanted socket.
#[derive(Debug)]
struct Proc {
    owner: Arc<Owner>,
    /// `/proc/<pid>/fd`, kept open to verify holders and to notice the
    /// process's exit; `None` past the open-file budget.
    fd_dir: Option<OwnedFd>,
}

/// The inode → owners map, kept between passes.
#[derive(Debug)]
pub struct OwnerIndex {
    holders: IdMap<u64, Vec<Holder>>,
    procs: IdMap<u32, Proc>,
    /// Inodes no visible process held at the last scan that covered every
    /// process (kernel sockets, hidden owners): not searched for again until
    /// the next full scan.
    ownerless: IdSet<u64>,
    threads: usize,
    /// How many fd directories we may keep open.
    dir_budget: usize,
    /// Every (inode, holder) pair, by pid then fd: what a refresh verifies.
    /// Rebuilt only when the holders change, which a quiet host rarely does.
    checks: Vec<(u64, Holder)>,
    checks_stale: bool,
}

impl OwnerIndex {
    /// `threads`: how many threads a scan may use (the host's cores).
    pub fn new(threads: usize) -> Self {
        OwnerIndex {
            holders: IdMap::default(),
            procs: IdMap::default(),
            ownerless: IdSet::default(),
            threads: threads.max(1),
            dir_budget: dir_budget(),
            checks: Vec::new(),
            checks_stale: false,
        }
    }

    /// Every process holding `inode`, each once, by pid.
    pub fn owners(&self, inode: u64) -> Owners {
        let Some(holders) = self.holders.get(&inode) else {
            return Owners::new();
        };
        let mut owners: Owners = holders
            .iter()
            .filter_map(|h| self.procs.get(&h.pid).map(|p| Arc::clone(&p.owner)))
            .collect();
        if owners.len() > 1 {
            // A process holding one socket on two fds is one owner.
            owners.sort_by_key(|o| o.pid);
            owners.dedup_by_key(|o| o.pid);
        }
        owners
    }

    /// Starts a scan of every process's fd table. The socket list may still
    /// be on its way: `wanted` is read once it is set, and processes read
    /// before that are settled in [`OwnerIndex::finish_full_scan`]. Every
    /// thread that calls [`Scan::work`] takes a share.
    pub fn begin_full_scan<'a>(
        &self,
        proc: &'a ProcRoot,
        wanted: &'a OnceLock<IdSet<u64>>,
        users: &'a Users,
    ) -> Scan<'a> {
        // An unreadable proc root lists no process: every socket is then
        // reported without owner, with the reason.
        let pids = proc.pids().unwrap_or_default();
        Scan::new(
            ScanCtx {
                proc,
                wanted: Wanted::Later(wanted),
                known: self.known_start_times(),
                users,
                held: AtomicUsize::new(0),
                budget: self.dir_budget,
            },
            pids,
            None,
        )
    }

    /// Replaces the index with what a full scan found.
    pub fn finish_full_scan(&mut self, scan: Scan<'_>, wanted: &IdSet<u64>) -> ScanStats {
        let out = scan.finish(wanted);
        let old_procs = std::mem::take(&mut self.procs);
        self.holders.clear();
        self.checks_stale = true;
        let mut stats = out.stats;
        stats.full_scan = true;
        self.absorb(out.hits, out.found, Some(old_procs));
        self.ownerless = wanted
            .iter()
            .copied()
            .filter(|ino| !self.holders.contains_key(ino))
            .collect();
        self.rebuild_checks();
        stats
    }

    /// Brings the index up to date with `wanted` (the inodes listed now)
    /// after [`OwnerIndex::verify`], reading fd tables only for sockets never
    /// seen before.
    pub fn resolve_new(
        &mut self,
        proc: &ProcRoot,
        wanted: &IdSet<u64>,
        users: &Users,
    ) -> ScanStats {
        let mut stats = ScanStats::default();
        let before = self.holders.len();
        self.holders.retain(|ino, _| wanted.contains(ino));
        self.ownerless.retain(|ino| wanted.contains(ino));
        if self.holders.len() < before {
            self.checks_stale = true;
            self.drop_unreferenced();
        }

        let unknown: IdSet<u64> = wanted
            .iter()
            .copied()
            .filter(|ino| !self.holders.contains_key(ino) && !self.ownerless.contains(ino))
            .collect();
        if unknown.is_empty() {
            self.rebuild_checks();
            return stats;
        }
        let Ok(mut pids) = proc.pids() else {
            self.rebuild_checks();
            return stats;
        };
        // New sockets mostly belong to new processes: look there first.
        pids.sort_unstable_by(|a, b| b.cmp(a));

        let budget = self.dir_budget;
        let ctx = |known| ScanCtx {
            proc,
            wanted: Wanted::Now(wanted),
            known,
            users,
            held: AtomicUsize::new(0),
            budget,
        };
        // Stage 1: newest first until every unknown inode has a holder.
        let first = run_scan(
            ctx(self.known_start_times()),
            pids.clone(),
            Some(&unknown),
            self.threads,
            wanted,
        );
        stats.add(&first.stats);
        let mut scanned_until = first.scanned;
        let found: IdSet<u64> = first.hits.iter().map(|h| h.0).collect();
        let first_holders: Vec<(u64, u32)> = first
            .hits
            .iter()
            .filter(|h| unknown.contains(&h.0))
            .map(|h| (h.0, h.1))
            .collect();
        self.absorb(first.hits, first.found, None);

        // Stage 2: a socket shared across fork() is also held by the parent
        // and by siblings; siblings are younger than the topmost holder, so
        // scanning down to its pid finds them all (short of pid wrap-around,
        // which the next full scan repairs).
        let mut floor = u32::MAX;
        let scanned: IdSet<u32> = pids[..scanned_until].iter().copied().collect();
        for (inode, pid) in first_holders {
            let root = self.topmost_holder(
                &ctx(self.known_start_times()),
                inode,
                pid,
                &scanned,
                &mut stats,
            );
            floor = floor.min(root);
        }
        let rest_end = pids[scanned_until..]
            .iter()
            .position(|&p| p < floor)
            .map_or(pids.len(), |i| scanned_until + i);
        if rest_end > scanned_until {
            let rest = run_scan(
                ctx(self.known_start_times()),
                pids[scanned_until..rest_end].to_vec(),
                None,
                self.threads,
                wanted,
            );
            stats.add(&rest.stats);
            scanned_until = rest_end;
            self.absorb(rest.hits, rest.found, None);
        }

        self.rebuild_checks();
        if scanned_until == pids.len() && stats.fd_exhausted == 0 {
            // Every process was read: what is still unfound has no visible
            // owner. (Not so when we ran out of descriptors: those tables
            // are read again at the next pass.)
            self.ownerless.extend(
                unknown
                    .iter()
                    .filter(|ino| !found.contains(ino) && !self.holders.contains_key(ino)),
            );
        }
        stats
    }

    /// Starts checking every known holder with one `readlinkat`. The checks
    /// need no socket list, so they can run while the list is fetched: every
    /// thread that calls [`Verification::work`] takes a share, and
    /// [`OwnerIndex::finish_verify`] applies the verdicts.
    pub fn begin_verify<'a>(&'a self, proc: &'a ProcRoot) -> Verification<'a> {
        // Processes without a kept fd dir are checked by start time first.
        let mut dead: IdSet<u32> = IdSet::default();
        let mut buf = Vec::with_capacity(512);
        for (&pid, p) in &self.procs {
            if p.fd_dir.is_none() {
                let alive = proc.read(pid, "stat", &mut buf).is_ok()
                    && procfs::parse_stat(&buf).is_some_and(|s| s.start_time == p.owner.start_time);
                if !alive {
                    dead.insert(pid);
                }
            }
        }
        let verdicts = self
            .checks
            .iter()
            .map(|_| AtomicU8::new(Verdict::Unchecked as u8))
            .collect();
        Verification {
            index: self,
            proc,
            verdicts,
            next: AtomicUsize::new(0),
            dead,
        }
    }

    /// Applies what a [`Verification`] found: drops holders whose fd now
    /// names something else, and processes that exited.
    pub fn finish_verify(&mut self, done: VerifyOutcome) -> ScanStats {
        let VerifyOutcome { verdicts, mut dead } = done;
        let mut stats = ScanStats {
            fds_read: verdicts.len() as u64,
            ..ScanStats::default()
        };
        let mut changed = !dead.is_empty();
        for (&(ino, h), verdict) in self.checks.iter().zip(verdicts) {
            if verdict == Verdict::Holds as u8 {
                continue;
            }
            changed = true;
            if verdict == Verdict::Gone as u8 {
                dead.insert(h.pid);
            }
            if let Some(hs) = self.holders.get_mut(&ino) {
                hs.retain(|x| *x != h);
            }
        }
        if !dead.is_empty() {
            for hs in self.holders.values_mut() {
                hs.retain(|h| !dead.contains(&h.pid));
            }
            stats.vanished += dead.len() as u64;
        }
        if changed {
            self.holders.retain(|_, hs| !hs.is_empty());
            self.drop_unreferenced();
            self.checks_stale = true;
        }
        self.rebuild_checks();
        stats
    }

    /// Lays out the check list again after the holders changed: by pid, so
    /// that threads taking consecutive chunks work on different processes
    /// (two threads in one process's fd table contend on its locks).
    fn rebuild_checks(&mut self) {
        if !self.checks_stale {
            return;
        }
        self.checks.clear();
        self.checks.extend(
            self.holders
                .iter()
                .flat_map(|(&ino, hs)| hs.iter().map(move |&h| (ino, h))),
        );
        self.checks.sort_unstable_by_key(|(_, h)| (h.pid, h.fd));
        self.checks_stale = false;
    }

    /// Walks up from `pid` through parents that hold `inode` too; returns the
    /// topmost holder's pid.
    fn topmost_holder(
        &mut self,
        ctx: &ScanCtx<'_>,
        inode: u64,
        mut pid: u32,
        scanned: &IdSet<u32>,
        stats: &mut ScanStats,
    ) -> u32 {
        let mut dir_buf = vec![MaybeUninit::<u8>::uninit(); DIR_BUF];
        for _ in 0..64 {
            let Some(ppid) = self.procs.get(&pid).map(|p| p.owner.ppid) else {
                break;
            };
            if ppid == 0 || scanned.contains(&ppid) {
                break;
            }
            let mut out = ScanOut::default();
            scan_one(ctx, ppid, &mut dir_buf, &mut out);
            stats.add(&out.stats);
            let holds = out.hits.iter().any(|h| h.0 == inode);
            self.absorb(out.hits, out.found, None);
            if !holds {
                break;
            }
            pid = ppid;
        }
        pid
    }

    /// pid → start time of every process whose details we hold, so a scan
    /// does not read them again.
    fn known_start_times(&self) -> IdMap<u32, u64> {
        self.procs
            .iter()
            .map(|(&pid, p)| (pid, p.owner.start_time))
            .collect()
    }

    /// Merges scan results into the index. `previous`: the process table
    /// before a full scan, whose details are reused for unchanged processes.
    fn absorb(
        &mut self,
        hits: Vec<(u64, u32, u32)>,
        found: Vec<Found>,
        mut previous: Option<IdMap<u32, Proc>>,
    ) {
        let mut gone: IdSet<u32> = IdSet::default();
        for f in found {
            let owner = match f.details {
                Details::Read(owner) => Arc::new(owner),
                // Deferred entries are settled by `Scan::finish`.
                Details::Known | Details::Deferred(_) => {
                    let cached = self
                        .procs
                        .remove(&f.pid)
                        .or_else(|| previous.as_mut().and_then(|p| p.remove(&f.pid)));
                    match cached {
                        Some(p) if p.owner.start_time == f.start_time => p.owner,
                        _ => {
                            gone.insert(f.pid);
                            continue;
                        }
                    }
                }
            };
            let fd_dir = f.fd_dir.filter(|_| self.procs.len() < self.dir_budget);
            self.procs.insert(f.pid, Proc { owner, fd_dir });
        }
        for (inode, pid, fd) in hits {
            if gone.contains(&pid) || !self.procs.contains_key(&pid) {
                continue;
            }
            let holder = Holder { pid, fd };
            let hs = self.holders.entry(inode).or_default();
            if !hs.contains(&holder) {
                hs.push(holder);
                self.checks_stale = true;
            }
            self.ownerless.remove(&inode);
        }
    }

    fn drop_unreferenced(&mut self) {
        let live: IdSet<u32> = self.holders.values().flatten().map(|h| h.pid).collect();
        self.procs.retain(|pid, _| live.contains(pid));
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
enum Verdict {
    Unchecked,
    Holds,
    Released,
    Gone,
}

/// Checks of known holders under way, shared by the threads that help.
pub struct Verification<'a> {
    index: &'a OwnerIndex,
    proc: &'a ProcRoot,
    /// One per entry of the index's check list.
    verdicts: Vec<AtomicU8>,
    next: AtomicUsize,
    dead: IdSet<u32>,
}

/// The verdicts of a finished [`Verification`].
pub struct VerifyOutcome {
    verdicts: Vec<u8>,
    dead: IdSet<u32>,
}

impl Verification<'_> {
    /// Takes chunks of checks until none is left. Call from any number of
    /// threads.
    pub fn work(&self) {
        // Big enough to keep a thread within one process for a while,
        // small enough to balance.
        const CHUNK: usize = 128;
        loop {
            let checks = &self.index.checks;
            let start = self.next.fetch_add(CHUNK, Ordering::Relaxed);
            if start >= checks.len() {
                return;
            }
            let end = (start + CHUNK).min(checks.len());
            for (i, &(ino, h)) in checks.iter().enumerate().take(end).skip(start) {
                self.verdicts[i].store(self.check(ino, h) as u8, Ordering::Relaxed);
            }
        }
    }

    fn check(&self, ino: u64, h: Holder) -> Verdict {
        let Some(p) = self.index.procs.get(&h.pid) else {
            return Verdict::Gone;
        };
        if self.dead.contains(&h.pid) {
            return Verdict::Gone;
        }
        let mut link = [0u8; LINK_BUF];
        let mut name = [0u8; 12];
        let name = fd_name(h.fd, &mut name);
        let res = match &p.fd_dir {
            Some(dir) => rustix::fs::readlinkat_raw(dir, name, &mut link[..]),
            None => {
                let mut path = [0u8; 40];
                let mut cursor = io::Cursor::new(&mut path[..]);
                let _ = write!(cursor, "{}/fd/", h.pid);
                let _ = cursor.write_all(name);
                let len = cursor.position() as usize;
                rustix::fs::readlinkat_raw(self.proc.dir(), &path[..len], &mut link[..])
            }
        };
        match res {
            Ok(n) if procfs::socket_inode(&link[..n]) == Some(ino) => Verdict::Holds,
            // The fd table of an exited process answers ESRCH on some
            // kernels (ENOENT on others, the same as a closed fd).
            Err(Errno::SRCH) => Verdict::Gone,
            Ok(_) | Err(_) => Verdict::Released,
        }
    }

    /// Ends the verification; every check must have been worked.
    pub fn finish(self) -> VerifyOutcome {
        // Anything no thread reached (none should be) is checked here.
        self.work();
        VerifyOutcome {
            verdicts: self
                .verdicts
                .into_iter()
                .map(AtomicU8::into_inner)
                .collect(),
            dead: self.dead,
        }
    }
}

/// The inodes a scan looks for: known now, or set by another thread later.
#[derive(Clone, Copy)]
enum Wanted<'a> {
    Now(&'a IdSet<u64>),
    Later(&'a OnceLock<IdSet<u64>>),
}

impl Wanted<'_> {
    fn get(&self) -> Option<&IdSet<u64>> {
        match self {
            Wanted::Now(set) => Some(set),
            Wanted::Later(cell) => cell.get(),
        }
    }
}

/// What a scan needs to read fd tables and owners' details.
struct ScanCtx<'a> {
    proc: &'a ProcRoot,
    wanted: Wanted<'a>,
    /// Processes whose details are already known (pid → start time).
    known: IdMap<u32, u64>,
    users: &'a Users,
    /// Fd directories this scan holds open for the index, and how many it
    /// may: past that they are closed at once (the process is then checked
    /// by start time), so a host of many owners cannot exhaust our
    /// descriptors mid-scan.
    held: AtomicUsize,
    budget: usize,
}

/// What we know of a process found holding a socket.
#[derive(Debug)]
enum Details {
    /// `ScanCtx::known` had them: the cached ones are reused.
    Known,
    Read(Owner),
    /// Read before the socket list arrived: settled once it has.
    Deferred(PidDir),
}

/// A process found holding at least one wanted socket.
#[derive(Debug)]
struct Found {
    pid: u32,
    start_time: u64,
    fd_dir: Option<OwnedFd>,
    details: Details,
}

/// The result of reading some fd tables.
#[derive(Debug, Default)]
struct ScanOut {
    /// (inode, pid, fd) of every wanted socket found (every socket, for
    /// processes read before the list arrived).
    hits: Vec<(u64, u32, u32)>,
    found: Vec<Found>,
    stats: ScanStats,
    /// How many leading entries of the pid list were read.
    scanned: usize,
}

/// A scan of fd tables under way, shared by the threads that help. Pids are
/// taken in list order; with `until`, the scan stops as soon as every inode
/// in it has been found, so what was read is a prefix of the list.
pub struct Scan<'a> {
    ctx: ScanCtx<'a>,
    pids: Vec<u32>,
    next: AtomicUsize,
    stop: AtomicBool,
    remaining: Option<Mutex<IdSet<u64>>>,
    outs: Mutex<Vec<ScanOut>>,
}

impl<'a> Scan<'a> {
    fn new(ctx: ScanCtx<'a>, pids: Vec<u32>, until: Option<&IdSet<u64>>) -> Self {
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
    fn finish(self, wanted: &IdSet<u64>) -> ScanOut {
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
fn run_scan(
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
        for _ in 1..threads {
            s.spawn(move || scan.work());
        }
        scan.work();
    });
    scan.finish(wanted)
}

/// Reads a process's start time and, unless already known, its details.
fn settle(
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
    Some((start_time, Details::Read(owner)))
}

/// Reads one process's fd table, recording wanted sockets, and the
/// process's details when it holds one.
fn scan_one(ctx: &ScanCtx<'_>, pid: u32, dir_buf: &mut [MaybeUninit<u8>], out: &mut ScanOut) {
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

fn count_error(e: &io::Error, stats: &mut ScanStats) {
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
fn read_owner(
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
    let cmdline = match pid_dir.read("cmdline", buf) {
        Ok(()) => procfs::cmdline_string(buf),
        Err(_) => String::new(),
    };
    let (container, cgroup_unrecognized) = match pid_dir.read("cgroup", buf) {
        Ok(()) => match super::cgroup::parse(&String::from_utf8_lossy(buf)) {
            Ok(c) => (c, false),
            Err(_) => (None, true),
        },
        Err(_) => (None, false),
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
    })
}

/// The decimal name of an fd, on the stack.
fn fd_name(mut fd: u32, buf: &mut [u8; 12]) -> &[u8] {
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
fn dir_budget() -> usize {
    let limit = rustix::process::getrlimit(rustix::process::Resource::Nofile);
    let soft = limit.current.unwrap_or(1024);
    usize::try_from(soft / 4).unwrap_or(usize::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fd_names() {
        let mut buf = [0u8; 12];
        assert_eq!(fd_name(0, &mut buf), b"0");
        assert_eq!(fd_name(u32::MAX, &mut buf), b"4294967295");
    }
}
