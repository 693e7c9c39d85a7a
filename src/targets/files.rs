//! The targets and modules files in force: read at the start (a broken
//! file stops it, status 2), read again when either changes (checked every
//! second) or on SIGHUP. A file that no longer loads leaves what is in
//! force as it is; the failure is logged once per change and counted.

use std::path::PathBuf;
use std::sync::Arc;

use super::Job;
use crate::modules::Modules;

const TARGETS: &str = "targets_file";
const MODULES: &str = "modules_file";

/// Where the targets and the modules come from.
#[derive(Debug, Clone, Default)]
pub struct Files {
    pub targets: Option<PathBuf>,
    pub modules: Option<PathBuf>,
}

/// What is checked by list, as loaded.
#[derive(Debug, Clone)]
pub struct InForce {
    pub modules: Arc<Modules>,
    pub jobs: Arc<[Arc<Job>]>,
    /// Loaded from a file (else: the built-in modules, no targets).
    pub from_files: bool,
}

impl Default for InForce {
    fn default() -> Self {
        InForce {
            modules: Arc::new(Modules::builtin()),
            jobs: Arc::from([]),
            from_files: false,
        }
    }
}

impl Files {
    /// The files the settings name.
    pub fn of(settings: &crate::config::Settings) -> Files {
        Files {
            targets: settings.targets_file.clone(),
            modules: settings.modules_file.clone(),
        }
    }

    /// Reads both files. Errors name the setting of the file at fault (its
    /// id: [`crate::config::setting`] words it), and the file and what is
    /// wrong in it; warnings are the modules that load but cannot be run.
    pub fn load(&self) -> Result<(InForce, Vec<String>), (&'static str, String)> {
        let (modules, warnings) = match &self.modules {
            Some(path) => Modules::load(path).map_err(|e| (MODULES, e))?,
            None => (Modules::builtin(), Vec::new()),
        };
        let jobs = match &self.targets {
            Some(path) => {
                let file = path.display().to_string();
                let text =
                    std::fs::read_to_string(path).map_err(|e| (TARGETS, format!("{file}: {e}")))?;
                let list = super::parse_file(&text, &file).map_err(|e| (TARGETS, e))?;
                super::bind(list, &modules, &file).map_err(|e| (TARGETS, e))?
            }
            None => Vec::new(),
        };
        Ok((
            InForce {
                modules: Arc::new(modules),
                jobs: jobs.into_iter().map(Arc::new).collect(),
                from_files: self.targets.is_some() || self.modules.is_some(),
            },
            warnings,
        ))
    }

    fn paths(&self) -> Vec<PathBuf> {
        self.targets.iter().chain(&self.modules).cloned().collect()
    }
}

/// Reloads when a file changes or on SIGHUP, for as long as the exporter
/// runs, handing each outcome to `apply`.
pub async fn watch(files: Files, apply: impl Fn(Result<InForce, String>) + Send + 'static) {
    let paths = files.paths();
    let load = move || {
        let (in_force, warnings) = files.load().map_err(|(_, why)| why)?;
        for w in warnings {
            tracing::warn!("{w}");
        }
        tracing::info!(targets = in_force.jobs.len(), "targets in force");
        Ok(in_force)
    };
    crate::reload::watch(
        "targets and modules",
        move || paths.clone(),
        false,
        load,
        apply,
    )
    .await;
}
