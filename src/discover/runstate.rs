//! Whether a process can run: its scheduler state (`/proc/<pid>/stat`'s
//! third field) and whether its cgroup is frozen (cgroup v2's
//! `cgroup.events`, or v1's `freezer.state`). A frozen task shows as
//! sleeping, so the state alone does not tell. Read once per question
//! (`portwarden why`), never in a pass.

use std::path::{Path, PathBuf};

use serde::Serialize;

#[cfg(target_os = "linux")]
use super::procfs::ProcRoot;

/// What the kernel says of a process.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RunState {
    /// Running, or sleeping as a server does between requests.
    Running,
    /// In uninterruptible sleep (`D`): waiting on the disk or the kernel.
    DiskSleep,
    /// Stopped by a signal (`T`: SIGSTOP, SIGTSTP, Ctrl-Z).
    Stopped,
    /// Stopped by a debugger (`t`).
    Traced,
    /// Exited, not yet reaped by its parent (`Z`).
    Zombie,
    /// Exiting (`X`, or a state we do not know).
    Dead,
}

impl RunState {
    /// From the state letter of `/proc/<pid>/stat`. Pure.
    pub fn from_letter(letter: u8) -> RunState {
        match letter {
            b'R' | b'S' | b'I' | b'W' | b'P' | b'K' => RunState::Running,
            b'D' => RunState::DiskSleep,
            b'T' => RunState::Stopped,
            b't' => RunState::Traced,
            b'Z' => RunState::Zombie,
            _ => RunState::Dead,
        }
    }

    /// Whether it cannot take work at all.
    pub fn is_halted(self) -> bool {
        matches!(
            self,
            RunState::Stopped | RunState::Traced | RunState::Zombie | RunState::Dead
        )
    }

    pub fn words(self) -> &'static str {
        match self {
            RunState::Running => "running",
            RunState::DiskSleep => "waiting on the disk (uninterruptible sleep)",
            RunState::Stopped => "stopped by a signal (SIGSTOP or Ctrl-Z)",
            RunState::Traced => "stopped by a debugger (traced)",
            RunState::Zombie => "a zombie (exited, not reaped by its parent)",
            RunState::Dead => "exiting",
        }
    }
}

/// A process's state; `None` when it is gone or unreadable.
#[cfg(target_os = "linux")]
pub fn state(proc_root: &ProcRoot, pid: u32) -> Option<RunState> {
    let mut buf = Vec::new();
    proc_root.read(pid, "stat", &mut buf).ok()?;
    super::procfs::parse_stat(&buf).map(|s| RunState::from_letter(s.state))
}

/// Where the cgroup hierarchies are mounted (ours: the ones we can read).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CgroupMounts {
    /// cgroup v2 (`/sys/fs/cgroup`, or `/sys/fs/cgroup/unified` on a hybrid host).
    pub unified: Option<PathBuf>,
    /// cgroup v1's freezer hierarchy.
    pub freezer: Option<PathBuf>,
}

impl CgroupMounts {
    /// From a `mountinfo` text. Pure.
    pub fn parse(mountinfo: &str) -> CgroupMounts {
        let mut out = CgroupMounts::default();
        for line in mountinfo.lines() {
            let Some((left, right)) = line.split_once(" - ") else {
                continue;
            };
            let Some(point) = left.split(' ').nth(4) else {
                continue;
            };
            let mut right = right.split(' ');
            let (fstype, options) = (right.next(), right.nth(1).unwrap_or(""));
            match fstype {
                Some("cgroup2") if out.unified.is_none() => out.unified = Some(point.into()),
                Some("cgroup") if options.split(',').any(|o| o == "freezer") => {
                    out.freezer = Some(point.into())
                }
                _ => {}
            }
        }
        out
    }

    /// Ours, from `/proc/self/mountinfo`.
    pub fn read() -> CgroupMounts {
        std::fs::read_to_string("/proc/self/mountinfo")
            .map(|t| CgroupMounts::parse(&t))
            .unwrap_or_default()
    }

    /// Whether the cgroup a `/proc/<pid>/cgroup` text names is frozen:
    /// the frozen cgroup's path when it is, `Some(None)` when it is not,
    /// `None` when neither hierarchy can tell.
    pub fn frozen(&self, cgroup: &str) -> Option<Option<String>> {
        let mut known = false;
        for line in cgroup.lines() {
            let mut parts = line.splitn(3, ':');
            let (_, controllers, path) = (parts.next(), parts.next(), parts.next());
            let (Some(controllers), Some(path)) = (controllers, path) else {
                continue;
            };
            let (base, file) = match controllers {
                "" => (self.unified.as_deref(), "cgroup.events"),
                c if c.split(',').any(|c| c == "freezer") => {
                    (self.freezer.as_deref(), "freezer.state")
                }
                _ => continue,
            };
            let Some(base) = base else { continue };
            let Ok(text) = std::fs::read_to_string(join(base, path).join(file)) else {
                continue;
            };
            known = true;
            let frozen = match file {
                "cgroup.events" => text.lines().any(|l| l.trim() == "frozen 1"),
                _ => matches!(text.trim(), "FROZEN" | "FREEZING"),
            };
            if frozen {
                return Some(Some(path.to_string()));
            }
        }
        known.then_some(None)
    }
}

fn join(base: &Path, path: &str) -> PathBuf {
    base.join(path.trim_start_matches('/'))
}

/// Whether `pid`'s cgroup is frozen (see [`CgroupMounts::frozen`]).
#[cfg(target_os = "linux")]
pub fn frozen(proc_root: &ProcRoot, mounts: &CgroupMounts, pid: u32) -> Option<Option<String>> {
    let mut buf = Vec::new();
    proc_root.read(pid, "cgroup", &mut buf).ok()?;
    mounts.frozen(&String::from_utf8_lossy(&buf))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_state_letters() {
        assert_eq!(RunState::from_letter(b'T'), RunState::Stopped);
        assert_eq!(RunState::from_letter(b't'), RunState::Traced);
        assert_eq!(RunState::from_letter(b'Z'), RunState::Zombie);
        assert_eq!(RunState::from_letter(b'S'), RunState::Running);
        assert!(RunState::Stopped.is_halted() && !RunState::DiskSleep.is_halted());
    }

    #[test]
    fn mounts_of_a_hybrid_host() {
        let info = "\
25 30 0:22 / /sys/fs/cgroup ro,nosuid - tmpfs tmpfs ro,mode=755
26 25 0:23 / /sys/fs/cgroup/unified rw,nosuid shared:5 - cgroup2 cgroup2 rw,nsdelegate
27 25 0:24 / /sys/fs/cgroup/systemd rw - cgroup cgroup rw,xattr,name=systemd
31 25 0:28 / /sys/fs/cgroup/freezer rw shared:12 - cgroup cgroup rw,freezer
";
        let m = CgroupMounts::parse(info);
        assert_eq!(
            m.unified.as_deref(),
            Some(Path::new("/sys/fs/cgroup/unified"))
        );
        assert_eq!(
            m.freezer.as_deref(),
            Some(Path::new("/sys/fs/cgroup/freezer"))
        );
        assert_eq!(CgroupMounts::parse("").frozen("0::/x"), None);
    }
}
