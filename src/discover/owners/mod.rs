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
use crate::model::{Activation, Owner, Owners, ScanStats};

mod scan;
mod verify;

pub use scan::Scan;
use scan::*;
use verify::*;
pub use verify::{Verification, VerifyOutcome};

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
    /// Most sockets have one or two holders: kept inline, no allocation
    /// each (11,000 of them on a busy host).
    holders: IdMap<u64, smallvec::SmallVec<[Holder; 2]>>,
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

    /// How a service manager made `inode`, when one did: passed to a
    /// holder on an fd its `LISTEN_FDS` covers, or held by managers alone.
    pub fn activation(&self, inode: u64) -> Option<Activation> {
        let holders = self.holders.get(&inode)?;
        let owner = |h: &Holder| self.procs.get(&h.pid).map(|p| &p.owner);
        let passed = holders.iter().find_map(|h| {
            let fds = owner(h)?.listen_fds.as_ref()?;
            fds.name_of(h.fd).map(|name| name.map(str::to_string))
        });
        if let Some(name) = passed {
            return Some(Activation::Passed(name));
        }
        let managers_only = !holders.is_empty()
            && holders
                .iter()
                .all(|h| owner(h).is_some_and(|o| o.unit.as_ref().is_some_and(|u| u.is_manager())));
        managers_only.then_some(Activation::Unresolved)
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
                Details::Read(owner) => Arc::from(owner),
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
