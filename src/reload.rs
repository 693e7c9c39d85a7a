//! Files reloaded when they change or on SIGHUP (the web config, the
//! targets and modules files): what tells a file changed — replaced
//! (inode), rewritten (mtime, size) or given another owner or mode (which
//! decide whether the actions file may be used) — and when to look.

use std::path::PathBuf;

pub use crate::discover::os::Stamp;

/// Each file's stamp now; `None` for one that cannot be read.
pub fn stamps(paths: &[PathBuf]) -> Vec<Option<Stamp>> {
    paths
        .iter()
        .map(|p| {
            std::fs::metadata(p)
                .ok()
                .map(|m| crate::discover::os::stamp(&m))
        })
        .collect()
}

/// When a watcher looks at its files again: every second, and at once on
/// SIGHUP.
pub struct Triggers {
    hangups: crate::discover::os::Hangups,
    tick: tokio::time::Interval,
}

impl Triggers {
    /// Listens for SIGHUP from now on (each watcher hears every one).
    pub fn start() -> Triggers {
        let mut tick = tokio::time::interval(std::time::Duration::from_secs(1));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        Triggers {
            hangups: crate::discover::os::Hangups::listen(),
            tick,
        }
    }

    /// Waits for the next look: true when SIGHUP asked for it.
    pub async fn next(&mut self) -> bool {
        tokio::select! {
            _ = self.tick.tick() => false,
            () = self.hangups.recv() => true,
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
