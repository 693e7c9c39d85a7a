//! The web config in force, reloaded when its files change or on SIGHUP
//! (taken from the first instruction on, so a reload never kills us).

use super::*;
use crate::reload::Triggers;

/// The web config in force, and where it comes from. Connections read the
/// current one; [`watch`] replaces it when its files change or on SIGHUP.
pub struct Web {
    path: Option<PathBuf>,
    current: RwLock<Arc<WebConfig>>,
}

impl Web {
    /// Loads the file at `path` (`None`: plain HTTP, nothing to reload). A
    /// file that does not load is a setting's error (exit status 2).
    pub fn new(path: Option<PathBuf>) -> Result<Web, crate::Error> {
        let config = match &path {
            Some(p) => WebConfig::load(p).map_err(|e| crate::Error::Config {
                setting: format!(
                    "{} {}",
                    crate::config::setting("web_config_file"),
                    p.display()
                ),
                message: e.to_string(),
            })?,
            None => WebConfig::default(),
        };
        Ok(Web {
            path,
            current: RwLock::new(Arc::new(config)),
        })
    }

    pub fn current(&self) -> Arc<WebConfig> {
        Arc::clone(&self.current.read().unwrap_or_else(|p| p.into_inner()))
    }

    /// Reads the file again; a broken file leaves the config in force as it
    /// is. Blocking (reads files), so run off the async threads.
    pub fn reload(&self) -> Result<(), WebConfigError> {
        let Some(path) = &self.path else {
            return Ok(());
        };
        let config = WebConfig::load(path)?;
        *self.current.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(config);
        Ok(())
    }
}

/// Takes SIGHUP from the first thing `main` does: its default action ends
/// the process, and `systemctl reload` may send it right after start. Until
/// [`watch`] listens it is only noted; `watch` then reloads once.
pub fn hold_hangups() {
    crate::discover::os::hold_hangups();
}

/// Gives SIGHUP its default action back, for the one-shot commands (a
/// hung-up terminal ends `ls` as it ends any command).
pub fn release_hangups() {
    crate::discover::os::release_hangups();
}

/// Reloads the web config when its files change (checked every second) or
/// on SIGHUP, for as long as the server runs. Without a file, SIGHUP is
/// still taken (and only logged) so that it does not end the process.
pub async fn watch(web: Arc<Web>) {
    // One that came before we listened (see `hold_hangups`) is acted on now.
    let early = crate::discover::os::early_hangup();
    if web.path.is_none() {
        let mut triggers = Triggers::start();
        loop {
            if triggers.next().await {
                tracing::info!(
                    "SIGHUP: no {} to reload",
                    crate::config::flag("web_config_file")
                );
            }
        }
    }
    let sources = {
        let web = Arc::clone(&web);
        move || web.current().sources.clone()
    };
    let load = {
        let web = Arc::clone(&web);
        move || web.reload().map_err(|e| e.to_string())
    };
    let apply = move |loaded: Result<(), String>| {
        if loaded.is_ok() {
            tracing::info!(tls = web.current().tls.is_some(), "web config in force");
        }
    };
    crate::reload::watch("web config", sources, early, load, apply).await;
}
