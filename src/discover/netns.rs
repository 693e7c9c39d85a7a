//! Network namespaces. Sockets belong to one namespace each, so every
//! listing takes the namespace it lists as a parameter.
//!
//! The host's namespace is PID 1's in the proc root, never `/proc/self`'s:
//! in a container, our own namespace is the container's (SPEC defect 1).

use std::sync::Arc;

use super::procfs::{self, ProcRoot};

/// A network namespace to list sockets in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Netns {
    /// Inode of the namespace (`/proc/<pid>/ns/net`), when readable.
    pub inode: Option<u64>,
    /// `host`, or `netns:<inode>` for any other namespace.
    pub label: Arc<str>,
    /// The entry of the proc root whose `net/` files show this namespace
    /// (for the /proc/net fallback).
    pub proc_entry: String,
}

impl Netns {
    /// The namespace this process runs in. Labelled `host` when it is PID 1's,
    /// or when PID 1's cannot be read (an unprivileged run on a host).
    pub fn current(proc: &ProcRoot) -> Netns {
        let own = std::fs::read_link("/proc/thread-self/ns/net")
            .ok()
            .and_then(|t| procfs::ns_inode(t.as_os_str().as_encoded_bytes()));
        let host = proc
            .readlink(1, "ns/net")
            .ok()
            .and_then(|t| procfs::ns_inode(&t));
        let label = match (own, host) {
            (Some(own), Some(host)) if own != host => format!("netns:{own}").into(),
            _ => "host".into(),
        };
        Netns {
            inode: own,
            label,
            proc_entry: "thread-self".to_string(),
        }
    }
}
