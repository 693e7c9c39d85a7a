//! Files reloaded when they change or on SIGHUP (the web config, the
//! targets and modules files): what tells a file changed — replaced
//! (inode) or rewritten (mtime, size) — and when to look.

use std::path::PathBuf;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stamp {
    dev: u64,
    ino: u64,
    mtime_ns: i128,
    len: u64,
}

/// Each file's stamp now; `None` for one that cannot be read.
pub fn stamps(paths: &[PathBuf]) -> Vec<Option<Stamp>> {
    use std::os::unix::fs::MetadataExt;
    paths
        .iter()
        .map(|p| {
            std::fs::metadata(p).ok().map(|m| Stamp {
                dev: m.dev(),
                ino: m.ino(),
                mtime_ns: i128::from(m.mtime()) * 1_000_000_000 + i128::from(m.mtime_nsec()),
                len: m.len(),
            })
        })
        .collect()
}

/// When a watcher looks at its files again: every second, and at once on
/// SIGHUP.
pub struct Triggers {
    hangup: Option<tokio::signal::unix::Signal>,
    tick: tokio::time::Interval,
}

impl Triggers {
    /// Listens for SIGHUP from now on (each watcher hears every one).
    pub fn start() -> Triggers {
        use tokio::signal::unix::{SignalKind, signal};
        let mut tick = tokio::time::interval(std::time::Duration::from_secs(1));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        Triggers {
            hangup: signal(SignalKind::hangup()).ok(),
            tick,
        }
    }

    /// Waits for the next look: true when SIGHUP asked for it.
    pub async fn next(&mut self) -> bool {
        let hangup = async {
            match self.hangup.as_mut() {
                Some(h) => h.recv().await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = self.tick.tick() => false,
            Some(()) = hangup => true,
        }
    }
}
