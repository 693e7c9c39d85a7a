//! Files reloaded when they change or on SIGHUP (the web config, the
//! targets and modules files): what tells a file changed — replaced
//! (inode), rewritten (mtime, size) or given another owner or mode (which
//! decide whether the actions file may be used) — and when to look.

use std::path::PathBuf;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stamp {
    dev: u64,
    ino: u64,
    mtime_ns: i128,
    len: u64,
    uid: u32,
    mode: u32,
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
                uid: m.uid(),
                mode: m.mode(),
            })
        })
        .collect()
}

/// When a watcher looks at its files again: every second, and at once on
/// SIGHUP.
/// Runs `handler` on `signal` from now on (`SA_RESTART`, nothing
/// blocked). The handler must only store to atomics: it runs between any
/// two instructions of the process.
pub fn on_signal(signal: libc::c_int, handler: extern "C" fn(libc::c_int)) {
    // SAFETY: the sigaction struct is zeroed, then its handler and mask
    // set; the handler is async-signal-safe by this function's contract.
    unsafe {
        let mut action: libc::sigaction = std::mem::zeroed();
        action.sa_sigaction = handler as libc::sighandler_t;
        libc::sigemptyset(&mut action.sa_mask);
        action.sa_flags = libc::SA_RESTART;
        libc::sigaction(signal, &action, std::ptr::null_mut());
    }
}

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

/// The files a watcher reads: fixed (the targets, modules and actions
/// files), or those its last good load named (the web config and the
/// certificates it points at).
pub trait Sources: Fn() -> Vec<PathBuf> + Clone + Send + 'static {}
impl<F: Fn() -> Vec<PathBuf> + Clone + Send + 'static> Sources for F {}

/// Reads the files of `sources` again with `load` when one of them changes
/// (looked at every second) or on SIGHUP, for as long as the exporter runs,
/// and hands each outcome to `apply`; `what` names them in the log. Stamps
/// and loads run off the async threads. `early`: a SIGHUP came before the
/// watch began, acted on at once. Without files there is nothing to watch.
pub async fn watch<T: Send + 'static>(
    what: &'static str,
    sources: impl Sources,
    early: bool,
    load: impl Fn() -> Result<T, String> + Clone + Send + 'static,
    apply: impl Fn(Result<T, String>) + Send + 'static,
) {
    if sources().is_empty() {
        return std::future::pending().await;
    }
    let mut triggers = Triggers::start();
    let look = move || {
        let sources = sources.clone();
        async move {
            tokio::task::spawn_blocking(move || stamps(&sources()))
                .await
                .unwrap_or_default()
        }
    };
    let mut seen = look().await;
    let mut early = early;
    loop {
        let asked = std::mem::take(&mut early) || triggers.next().await;
        let now = look().await;
        if !asked && now == seen {
            continue;
        }
        seen = now;
        let loaded = match tokio::task::spawn_blocking(load.clone()).await {
            Ok(result) => result,
            Err(e) => Err(format!("the reload ended: {e}")),
        };
        match &loaded {
            Ok(_) => {
                tracing::info!("{what} reloaded");
                // A good load may name other files (a new certificate).
                seen = look().await;
            }
            Err(why) => {
                tracing::error!(error = %why, "{what} not reloaded: keeping those in force");
            }
        }
        apply(loaded);
    }
}
