//! Verification of known holders: one `readlinkat` per (pid, fd) pair the
//! last scan found, shared by every thread that helps.

use super::*;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub(super) enum Verdict {
    Unchecked,
    Holds,
    Released,
    Gone,
}

/// Checks of known holders under way, shared by the threads that help.
pub struct Verification<'a> {
    pub(super) index: &'a OwnerIndex,
    pub(super) proc: &'a ProcRoot,
    /// One per entry of the index's check list.
    pub(super) verdicts: Vec<AtomicU8>,
    pub(super) next: AtomicUsize,
    pub(super) dead: IdSet<u32>,
}

/// The verdicts of a finished [`Verification`].
pub struct VerifyOutcome {
    pub(super) verdicts: Vec<u8>,
    pub(super) dead: IdSet<u32>,
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

    pub(super) fn check(&self, ino: u64, h: Holder) -> Verdict {
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
