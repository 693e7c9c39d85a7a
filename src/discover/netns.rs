//! Network namespaces. Sockets belong to one namespace each, so the host's
//! ports and every container's are listed namespace by namespace.
//!
//! The host's namespace is PID 1's in the proc root, never `/proc/self`'s:
//! in a container, our own namespace is the container's (SPEC defect 1).
//! Namespaces are found through the processes inside them (one pid per
//! distinct `/proc/<pid>/ns/net`) and through bind mounts under `/run/netns`
//! and `/var/run/docker/netns`, which can hold sockets with no process
//! inside. With a proc root other than `/proc` (the host's /proc mounted
//! into a container), those directories are also read on the host's side,
//! through `<proc root>/1/root`.

use std::collections::BTreeMap;
use std::os::fd::OwnedFd;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustix::fs::{Mode, OFlags};

use super::procfs::{self, ProcRoot};

/// Where bind-mounted namespaces live (`ip netns`, Docker).
pub const BIND_DIRS: &[&str] = &["/run/netns", "/var/run/docker/netns"];

/// How to reach a namespace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Handle {
    /// The namespace this process runs in: no need to enter it.
    Own,
    /// Through a process inside it: `<proc root>/<pid>/ns/net`, and its
    /// `net/*` files for the fallback.
    Process(u32),
    /// A bind mount such as `/run/netns/NAME`.
    Path(PathBuf),
}

/// A network namespace to list sockets in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Netns {
    /// Inode of the namespace, when readable.
    pub inode: Option<u64>,
    /// `host`, or `netns:<inode>` for any other namespace.
    pub label: Arc<str>,
    pub handle: Handle,
}

impl Netns {
    /// The entry of the proc root whose `net/` files show this namespace.
    pub fn proc_entry(&self) -> Option<String> {
        match &self.handle {
            Handle::Own => Some("thread-self".into()),
            Handle::Process(pid) => Some(pid.to_string()),
            Handle::Path(_) => None,
        }
    }

    /// The file to open to enter it, or `None` for our own.
    pub fn entry_path(&self, proc_root: &Path) -> Option<PathBuf> {
        match &self.handle {
            Handle::Own => None,
            Handle::Process(pid) => Some(proc_root.join(pid.to_string()).join("ns/net")),
            Handle::Path(path) => Some(path.clone()),
        }
    }

    /// Opens the namespace file, to enter it with `setns`.
    pub fn open(&self, proc: &ProcRoot) -> std::io::Result<OwnedFd> {
        match &self.handle {
            Handle::Own => Ok(rustix::fs::open(
                "/proc/thread-self/ns/net",
                OFlags::RDONLY | OFlags::CLOEXEC,
                Mode::empty(),
            )?),
            Handle::Process(pid) => proc.open_pid(*pid)?.open_file("ns/net"),
            Handle::Path(path) => Ok(rustix::fs::open(
                path,
                OFlags::RDONLY | OFlags::CLOEXEC,
                Mode::empty(),
            )?),
        }
    }
}

/// What enumerating namespaces had to skip.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Skipped {
    /// Processes whose namespace link we may not read.
    pub denied: u64,
}

/// Every network namespace visible through the proc root and the bind-mount
/// directories, the host's first. When PID 1's namespace cannot be read (an
/// unprivileged run, or a PID 1 guarded by the sandbox it runs in), our own
/// namespace is taken for the host's.
pub fn enumerate(proc: &ProcRoot, bind_dirs: &[&str]) -> (Vec<Netns>, Skipped) {
    let mut skipped = Skipped::default();
    let own = own_inode();
    let pid1 = proc
        .readlink(1, "ns/net")
        .ok()
        .and_then(|t| procfs::ns_inode(&t));
    let Some(host) = pid1.or(own) else {
        // Not even our own is readable: one namespace, ours.
        return (
            vec![Netns {
                inode: None,
                label: "host".into(),
                handle: Handle::Own,
            }],
            skipped,
        );
    };
    // inode → handle; the lowest pid inside speaks for a namespace.
    let mut found: BTreeMap<u64, Handle> = BTreeMap::new();
    let mut pids = proc.pids().unwrap_or_default();
    pids.sort_unstable();
    for pid in pids {
        match proc.readlink(pid, "ns/net") {
            Ok(target) => {
                if let Some(inode) = procfs::ns_inode(&target) {
                    found.entry(inode).or_insert(Handle::Process(pid));
                }
            }
            // Kernel threads share the host's; a vanished pid has none.
            Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => skipped.denied += 1,
            Err(_) => {}
        }
    }
    for dir in bind_dirs_seen_from(proc, bind_dirs) {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if let Some(inode) = bind_inode(&path) {
                found.entry(inode).or_insert(Handle::Path(path));
            }
        }
    }
    found.entry(host).or_insert(if pid1.is_some() {
        Handle::Process(1)
    } else {
        Handle::Own
    });
    let mut out: Vec<Netns> = found
        .into_iter()
        .map(|(inode, handle)| Netns {
            inode: Some(inode),
            label: if inode == host {
                "host".into()
            } else {
                format!("netns:{inode}").into()
            },
            handle: if Some(inode) == own {
                Handle::Own
            } else {
                handle
            },
        })
        .collect();
    out.sort_by_key(|n| (&*n.label != "host", n.inode));
    (out, skipped)
}

/// The bind-mount directories to read: ours, and under a foreign proc root
/// the host's, through PID 1's root (the host's own first).
fn bind_dirs_seen_from(proc: &ProcRoot, bind_dirs: &[&str]) -> Vec<PathBuf> {
    let ours = bind_dirs.iter().map(PathBuf::from);
    if proc.path() == Path::new("/proc") {
        return ours.collect();
    }
    let root = proc.path().join("1/root");
    bind_dirs
        .iter()
        .map(|d| root.join(d.trim_start_matches('/')))
        .chain(ours)
        .collect()
}

/// Our own namespace's inode, from our own /proc (not the proc root's).
fn own_inode() -> Option<u64> {
    std::fs::read_link("/proc/thread-self/ns/net")
        .ok()
        .and_then(|t| procfs::ns_inode(t.as_os_str().as_encoded_bytes()))
}

/// The namespace inode of a bind-mounted namespace file (an nsfs inode; a
/// plain file that is not mounted over is not a namespace).
fn bind_inode(path: &Path) -> Option<u64> {
    let meta = std::fs::metadata(path).ok()?;
    // An unmounted placeholder is an empty regular file on the parent fs;
    // a mounted namespace reports the nsfs device's inode.
    let parent = std::fs::metadata(path.parent()?).ok()?;
    (meta.dev() != parent.dev()).then_some(meta.ino())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn our_own_namespace_is_found() {
        let proc = ProcRoot::open("/proc").expect("/proc");
        let (all, _) = enumerate(&proc, &[]);
        assert!(!all.is_empty());
        assert_eq!(&*all[0].label, "host");
        assert!(all.iter().any(|n| n.handle == Handle::Own));
    }
}
