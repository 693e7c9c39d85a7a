//! Socket inode → every process holding it.
//!
//! The kernel offers no reverse index: the only way to learn who holds a
//! socket is to read every process's fd table (`/proc/<pid>/fd/*` links),
//! which is what `ss -p` pays on every run (~2 µs of kernel time per fd). So:
//!
//! - A **full scan** reads every fd table, spread over all cores, with no
//!   allocation per fd: `readlinkat` on an open directory fd into a stack
//!   buffer (see `../shared/PERF.md` for the floor this is held to).
//! - A **refresh** keeps what the last scan found, as (pid, fd) pairs plus an
//!   open `/proc/<pid>/fd` directory per owner. It verifies each known pair
//!   with one `readlinkat` and reads fd tables only for inodes it has never
//!   seen, newest pids first, stopping once all are found. Because the kept
//!   directory fd names one process, not a pid number, an exited owner fails
//!   verification even when its pid has been reused.

use std::collections::{HashMap, HashSet};
use std::io::{self, Write as _};
use std::mem::MaybeUninit;
use std::os::fd::OwnedFd;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use rustix::fs::RawDir;
use rustix::io::Errno;

use super::procfs::{self, ProcRoot};
use super::users::Users;
use crate::model::{Owner, ScanStats};

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
    owner: Owner,
    /// `/proc/<pid>/fd`, kept open to verify holders and to notice the
    /// process's exit; `None` past the open-file budget.
    fd_dir: Option<OwnedFd>,
}

/// The inode → owners map, kept between passes.
#[derive(Debug)]
pub struct OwnerIndex {
    holders: HashMap<u64, Vec<Holder>>,
    procs: HashMap<u32, Proc>,
    /// Inodes no visible process held at the last scan that covered every
    /// process (kernel sockets, hidden owners): not searched for again until
    /// the next full scan.
    ownerless: HashSet<u64>,
    threads: usize,
    /// How many fd directories we may keep open.
    dir_budget: usize,
}

impl OwnerIndex {
    /// `threads`: how many threads a scan may use (the host's cores).
    pub fn new(threads: usize) -> Self {
        OwnerIndex {
            holders: HashMap::new(),
            procs: HashMap::new(),
            ownerless: HashSet::new(),
            threads: threads.max(1),
            dir_budget: dir_budget(),
        }
    }

    /// Every process holding `inode`, in no particular order.
    pub fn owners(&self, inode: u64) -> impl Iterator<Item = &Owner> {
        self.holders
            .get(&inode)
            .into_iter()
            .flatten()
            .filter_map(|h| self.procs.get(&h.pid).map(|p| &p.owner))
            .scan(Vec::<u32>::new(), |seen, owner| {
                // A process holding one socket on two fds is one owner.
                if seen.contains(&owner.pid) {
                    Some(None)
                } else {
                    seen.push(owner.pid);
                    Some(Some(owner))
                }
            })
            .flatten()
    }

    /// Forgets everything and reads every process's fd table.
    pub fn full_scan(
        &mut self,
        proc: &ProcRoot,
        wanted: &HashSet<u64>,
        users: &Users,
    ) -> ScanStats {
        let pids = match proc.pids() {
            Ok(pids) => pids,
            Err(_) => {
                return ScanStats {
                    full_scan: true,
                    ..ScanStats::default()
                };
            }
        };
        let out = scan(proc, &pids, wanted, None, self.threads);
        let old_procs = std::mem::take(&mut self.procs);
        self.holders.clear();
        let mut stats = out.stats;
        stats.full_scan = true;
        self.absorb(proc, out.hits, out.dirs, users, Some(old_procs), &mut stats);
        self.ownerless = wanted
            .iter()
            .copied()
            .filter(|ino| !self.holders.contains_key(ino))
            .collect();
        stats
    }

    /// Brings the index up to date with `wanted` (the inodes listed now)
    /// without reading every fd table when nothing new appeared.
    pub fn refresh(&mut self, proc: &ProcRoot, wanted: &HashSet<u64>, users: &Users) -> ScanStats {
        let mut stats = ScanStats::default();
        self.holders.retain(|ino, _| wanted.contains(ino));
        self.ownerless.retain(|ino| wanted.contains(ino));
        self.verify(proc, &mut stats);

        let unknown: HashSet<u64> = wanted
            .iter()
            .copied()
            .filter(|ino| !self.holders.contains_key(ino) && !self.ownerless.contains(ino))
            .collect();
        if unknown.is_empty() {
            return stats;
        }
        let Ok(mut pids) = proc.pids() else {
            return stats;
        };
        // New sockets mostly belong to new processes: look there first.
        pids.sort_unstable_by(|a, b| b.cmp(a));

        // Stage 1: newest first until every unknown inode has a holder.
        let first = scan(proc, &pids, wanted, Some(&unknown), self.threads);
        stats.add(&first.stats);
        let mut scanned_until = first.scanned;
        let found: HashSet<u64> = first.hits.iter().map(|h| h.0).collect();
        let first_holders: Vec<(u64, u32)> = first
            .hits
            .iter()
            .filter(|h| unknown.contains(&h.0))
            .map(|h| (h.0, h.1))
            .collect();
        self.absorb(proc, first.hits, first.dirs, users, None, &mut stats);

        // Stage 2: a socket shared across fork() is also held by the parent
        // and by siblings; siblings are younger than the topmost holder, so
        // scanning down to its pid finds them all (short of pid wrap-around,
        // which the next full scan repairs).
        let mut floor = u32::MAX;
        let scanned: HashSet<u32> = pids[..scanned_until].iter().copied().collect();
        for (inode, pid) in first_holders {
            let root = self.topmost_holder(proc, inode, pid, &scanned, wanted, users, &mut stats);
            floor = floor.min(root);
        }
        let rest_end = pids[scanned_until..]
            .iter()
            .position(|&p| p < floor)
            .map_or(pids.len(), |i| scanned_until + i);
        if rest_end > scanned_until {
            let rest = scan(
                proc,
                &pids[scanned_until..rest_end],
                wanted,
                None,
                self.threads,
            );
            stats.add(&rest.stats);
            scanned_until = rest_end;
            self.absorb(proc, rest.hits, rest.dirs, users, None, &mut stats);
        }

        if scanned_until == pids.len() {
            // Every process was read: what is still unfound has no visible owner.
            self.ownerless.extend(
                unknown
                    .iter()
                    .filter(|ino| !found.contains(ino) && !self.holders.contains_key(ino)),
            );
        }
        stats
    }

    /// Checks every known holder with one `readlinkat`; drops holders whose
    /// fd now names something else and processes that exited.
    fn verify(&mut self, proc: &ProcRoot, stats: &mut ScanStats) {
        // Processes without a kept fd dir are checked by start time first.
        let mut dead: HashSet<u32> = HashSet::new();
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

        let checks: Vec<(u64, Holder)> = self
            .holders
            .iter()
            .flat_map(|(&ino, hs)| hs.iter().map(move |&h| (ino, h)))
            .filter(|(_, h)| !dead.contains(&h.pid))
            .collect();
        let verdicts: Vec<Verdict> = parallel_map(&checks, self.threads, |&(ino, h)| {
            let Some(p) = self.procs.get(&h.pid) else {
                return Verdict::Gone;
            };
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
                    rustix::fs::readlinkat_raw(proc.dir(), &path[..len], &mut link[..])
                }
            };
            match res {
                Ok(n) if procfs::socket_inode(&link[..n]) == Some(ino) => Verdict::Holds,
                Ok(_) | Err(Errno::NOENT) | Err(Errno::BADF) => Verdict::Released,
                // The directory of an exited process answers ENOENT on
                // lookup and ESRCH on some kernels; both mean gone.
                Err(Errno::SRCH) => Verdict::Gone,
                Err(_) => Verdict::Released,
            }
        });
        stats.fds_read += checks.len() as u64;

        for ((ino, h), verdict) in checks.iter().zip(verdicts) {
            if verdict == Verdict::Holds {
                continue;
            }
            if verdict == Verdict::Gone {
                dead.insert(h.pid);
            }
            if let Some(hs) = self.holders.get_mut(ino) {
                hs.retain(|x| x != h);
            }
        }
        if !dead.is_empty() {
            for hs in self.holders.values_mut() {
                hs.retain(|h| !dead.contains(&h.pid));
            }
            stats.vanished += dead.len() as u64;
        }
        self.holders.retain(|_, hs| !hs.is_empty());
        self.drop_unreferenced();
    }

    /// Walks up from `pid` through parents that hold `inode` too; returns the
    /// topmost holder's pid.
    #[allow(clippy::too_many_arguments)]
    fn topmost_holder(
        &mut self,
        proc: &ProcRoot,
        inode: u64,
        mut pid: u32,
        scanned: &HashSet<u32>,
        wanted: &HashSet<u64>,
        users: &Users,
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
            scan_one(proc, ppid, wanted, &mut dir_buf, &mut out);
            stats.add(&out.stats);
            let holds = out.hits.iter().any(|h| h.0 == inode);
            self.absorb(proc, out.hits, out.dirs, users, None, stats);
            if !holds {
                break;
            }
            pid = ppid;
        }
        pid
    }

    /// Merges scan hits into the index, reading each new process's details.
    /// `previous`: the process table before a full scan, to reuse details of
    /// processes that are still the same (same pid and start time).
    fn absorb(
        &mut self,
        proc: &ProcRoot,
        hits: Vec<(u64, u32, u32)>,
        dirs: Vec<(u32, OwnedFd)>,
        users: &Users,
        mut previous: Option<HashMap<u32, Proc>>,
        stats: &mut ScanStats,
    ) {
        let mut buf = Vec::with_capacity(1024);
        let mut gone: HashSet<u32> = HashSet::new();
        for (pid, dir) in dirs {
            let Some(stat) = read_stat(proc, pid, &mut buf) else {
                gone.insert(pid);
                continue;
            };
            let known = self
                .procs
                .remove(&pid)
                .or_else(|| previous.as_mut().and_then(|p| p.remove(&pid)))
                .filter(|p| p.owner.start_time == stat.start_time);
            let owner = match known {
                Some(p) => p.owner,
                None => match read_owner(proc, pid, stat, users, &mut buf) {
                    Some(owner) => owner,
                    None => {
                        gone.insert(pid);
                        continue;
                    }
                },
            };
            let fd_dir = (self.procs.len() < self.dir_budget).then_some(dir);
            self.procs.insert(pid, Proc { owner, fd_dir });
        }
        stats.vanished += gone.len() as u64;
        for (inode, pid, fd) in hits {
            if gone.contains(&pid) {
                continue;
            }
            let holder = Holder { pid, fd };
            let hs = self.holders.entry(inode).or_default();
            if !hs.contains(&holder) {
                hs.push(holder);
            }
            self.ownerless.remove(&inode);
        }
    }

    fn drop_unreferenced(&mut self) {
        let live: HashSet<u32> = self.holders.values().flatten().map(|h| h.pid).collect();
        self.procs.retain(|pid, _| live.contains(pid));
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verdict {
    Holds,
    Released,
    Gone,
}

/// The result of reading some fd tables.
#[derive(Debug, Default)]
struct ScanOut {
    /// (inode, pid, fd) of every wanted socket found.
    hits: Vec<(u64, u32, u32)>,
    /// The fd directory of each process with at least one hit.
    dirs: Vec<(u32, OwnedFd)>,
    stats: ScanStats,
    /// How many leading entries of the pid list were read.
    scanned: usize,
}

/// Reads the fd tables of `pids` on up to `threads` threads. With `until`,
/// stops as soon as every inode in it has been found (pids are taken in list
/// order, so `scanned` is a prefix of the list).
fn scan(
    proc: &ProcRoot,
    pids: &[u32],
    wanted: &HashSet<u64>,
    until: Option<&HashSet<u64>>,
    threads: usize,
) -> ScanOut {
    let next = AtomicUsize::new(0);
    let stop = AtomicBool::new(false);
    let remaining = until.map(|u| Mutex::new(u.clone()));
    let threads = threads.min(pids.len()).max(1);
    let work = || {
        let mut out = ScanOut::default();
        let mut dir_buf = vec![MaybeUninit::<u8>::uninit(); DIR_BUF];
        while !stop.load(Ordering::Relaxed) {
            let i = next.fetch_add(1, Ordering::Relaxed);
            let Some(&pid) = pids.get(i) else { break };
            let before = out.hits.len();
            scan_one(proc, pid, wanted, &mut dir_buf, &mut out);
            if let Some(remaining) = &remaining
                && out.hits.len() > before
            {
                let mut left = remaining.lock().unwrap_or_else(|e| e.into_inner());
                for hit in &out.hits[before..] {
                    left.remove(&hit.0);
                }
                if left.is_empty() {
                    stop.store(true, Ordering::Relaxed);
                }
            }
        }
        out
    };
    let mut total = std::thread::scope(|s| {
        let handles: Vec<_> = (1..threads).map(|_| s.spawn(work)).collect();
        let mut total = work();
        for h in handles {
            // A scanning thread does not panic; if it did, its share is lost,
            // not the whole pass.
            if let Ok(out) = h.join() {
                total.hits.extend(out.hits);
                total.dirs.extend(out.dirs);
                total.stats.add(&out.stats);
            }
        }
        total
    });
    total.scanned = next.load(Ordering::Relaxed).min(pids.len());
    total
}

/// Reads one process's fd table, recording wanted sockets.
fn scan_one(
    proc: &ProcRoot,
    pid: u32,
    wanted: &HashSet<u64>,
    dir_buf: &mut [MaybeUninit<u8>],
    out: &mut ScanOut,
) {
    let dir = match proc.open_dir(pid, "fd") {
        Ok(dir) => dir,
        Err(e) => {
            count_error(&e, &mut out.stats);
            return;
        }
    };
    out.stats.processes_scanned += 1;
    let before = out.hits.len();
    let mut entries = RawDir::new(&dir, dir_buf);
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
        let Ok(n) = rustix::fs::readlinkat_raw(&dir, entry.file_name(), &mut link[..]) else {
            continue;
        };
        if let Some(inode) = procfs::socket_inode(&link[..n])
            && wanted.contains(&inode)
        {
            out.hits.push((inode, pid, fd));
        }
    }
    if out.hits.len() > before {
        out.dirs.push((pid, dir));
    }
}

fn count_error(e: &io::Error, stats: &mut ScanStats) {
    match e.raw_os_error() {
        Some(libc_eacces) if libc_eacces == Errno::ACCESS.raw_os_error() => stats.fd_denied += 1,
        Some(code) if code == Errno::PERM.raw_os_error() => stats.fd_denied += 1,
        _ => stats.vanished += 1,
    }
}

fn read_stat(proc: &ProcRoot, pid: u32, buf: &mut Vec<u8>) -> Option<procfs::Stat> {
    proc.read(pid, "stat", buf).ok()?;
    procfs::parse_stat(buf)
}

/// Reads a process's details. `None` when it exited meanwhile.
fn read_owner(
    proc: &ProcRoot,
    pid: u32,
    stat: procfs::Stat,
    users: &Users,
    buf: &mut Vec<u8>,
) -> Option<Owner> {
    let (process_name, exe_path) = match proc.readlink(pid, "exe") {
        Ok(target) => procfs::exe_name_and_path(&target),
        // Kernel threads have no exe; another user's process hides it from
        // us without CAP_SYS_PTRACE. Fall back to the kernel's name.
        Err(_) => (stat.comm.clone(), String::new()),
    };
    let cmdline = match proc.read(pid, "cmdline", buf) {
        Ok(()) => procfs::cmdline_string(buf),
        Err(_) => String::new(),
    };
    proc.read(pid, "status", buf).ok()?;
    let uid = procfs::parse_status_euid(buf)?;
    // Re-check identity: the pid may have been reused while we read.
    let again = read_stat(proc, pid, buf)?;
    if again.start_time != stat.start_time {
        return None;
    }
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
    })
}

/// The decimal name of an fd, on the stack.
fn fd_name(fd: u32, buf: &mut [u8; 12]) -> &[u8] {
    let mut cursor = io::Cursor::new(&mut buf[..]);
    let _ = write!(cursor, "{fd}");
    let len = cursor.position() as usize;
    &buf[..len]
}

/// Maps `items` with `f` on up to `threads` threads, keeping order.
fn parallel_map<T: Sync, R: Send>(
    items: &[T],
    threads: usize,
    f: impl Fn(&T) -> R + Sync,
) -> Vec<R> {
    // Below this, a thread costs more than it saves.
    const MIN_PER_THREAD: usize = 512;
    let threads = threads.min(items.len() / MIN_PER_THREAD).max(1);
    if threads == 1 {
        return items.iter().map(&f).collect();
    }
    let chunk = items.len().div_ceil(threads);
    std::thread::scope(|s| {
        let f = &f;
        let handles: Vec<_> = items
            .chunks(chunk)
            .skip(1)
            .map(|part| s.spawn(move || part.iter().map(f).collect::<Vec<R>>()))
            .collect();
        let mut out: Vec<R> = items
            .chunks(chunk)
            .next()
            .unwrap_or(&[])
            .iter()
            .map(f)
            .collect();
        for h in handles {
            match h.join() {
                Ok(part) => out.extend(part),
                Err(panic) => std::panic::resume_unwind(panic),
            }
        }
        out
    })
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

    #[test]
    fn parallel_map_keeps_order() {
        let items: Vec<u32> = (0..5000).collect();
        let out = parallel_map(&items, 4, |x| x * 2);
        assert_eq!(out, items.iter().map(|x| x * 2).collect::<Vec<_>>());
        assert!(parallel_map(&[] as &[u32], 4, |x| *x).is_empty());
    }
}
