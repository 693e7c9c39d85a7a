//! The library's one error type. Per-item failures inside a scan (a pid that
//! exits, an fd table we may not read) are not errors: they are counted in
//! [`crate::model::ScanStats`] and the scan goes on.

use std::io;
use std::path::PathBuf;

/// Everything that can stop an operation of the library as a whole.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A setting has a value outside its accepted form. Exit status 2.
    #[error("{setting}: {message}")]
    Config { setting: String, message: String },

    /// The baseline file could not be read or written.
    #[error("baseline in {}: {source}", dir.display())]
    State { dir: PathBuf, source: io::Error },

    /// A command found nothing to act on. Exit status 1.
    #[error("{0}")]
    NothingMatched(String),

    /// The proc root cannot be used. Exit status 2: it is a setting.
    #[error("{}: cannot use '{}' as the proc root: {source}", crate::config::setting("proc_root"), path.display())]
    ProcRoot { path: PathBuf, source: io::Error },

    /// Neither netlink nor the /proc/net files could list sockets.
    #[error("cannot list {what} sockets: netlink: {netlink}; {fallback_path}: {fallback}", fallback_path = fallback_path.display())]
    SocketList {
        what: &'static str,
        netlink: io::Error,
        fallback_path: PathBuf,
        fallback: io::Error,
    },

    /// The OS's socket table could not be read (Windows's IP Helper).
    #[error("cannot read {what}: {source}")]
    SocketTable { what: String, source: io::Error },

    /// A check failed (`portwarden check`): exit status 1, with nothing
    /// more to print.
    #[error("a check failed")]
    Failed,

    /// The listen address cannot be bound (taken, or not ours). Exit status 1.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: std::net::SocketAddr,
        source: io::Error,
    },

    /// Writing the output failed (a closed pipe is the caller's to forgive).
    #[error("writing output: {0}")]
    Output(#[from] io::Error),
}

impl Error {
    /// Whether the error comes from the user's settings (exit status 2)
    /// rather than from the machine (exit status 1).
    pub fn is_usage(&self) -> bool {
        matches!(self, Error::Config { .. } | Error::ProcRoot { .. })
    }

    /// Whether the reader of our output went away (`portwarden ls | head`):
    /// not a failure.
    pub fn is_broken_pipe(&self) -> bool {
        matches!(self, Error::Output(e) if e.kind() == io::ErrorKind::BrokenPipe)
    }
}

/// A YAML parser's message on one line, without the source excerpt it
/// draws after ` --> ` (its line and column stay).
pub fn one_line(message: &str) -> String {
    let flat = message.split_whitespace().collect::<Vec<_>>().join(" ");
    let flat = flat.split(" --> ").next().unwrap_or(&flat);
    flat.trim_start_matches("error: ").to_string()
}

/// A YAML file's text as `T`; an error names `file` and says what is wrong
/// on one line (`targets.yml: line 3 column 5: …`).
pub fn parse_yaml<T: serde::de::DeserializeOwned>(text: &str, file: &str) -> Result<T, String> {
    read_yaml(text).map_err(|message| format!("{file}: {message}"))
}

/// [`parse_yaml`] without the file's name: the one YAML reader (its node
/// budget, its one-line messages) of every file portwarden reads.
pub fn read_yaml<T: serde::de::DeserializeOwned>(text: &str) -> Result<T, String> {
    let mut budget = serde_saphyr::Budget::default();
    budget.max_nodes = YAML_MAX_NODES;
    budget.max_events = 2 * YAML_MAX_NODES;
    let mut options = serde_saphyr::Options::default();
    options.budget = Some(budget);
    serde_saphyr::from_str_with_options(text, options).map_err(|e| {
        let message = e.to_string();
        if message.contains("budget breached") {
            format!(
                "more than {YAML_MAX_NODES} YAML values (keys, values, lists and maps): the most portwarden reads from one file, about 500,000 targets"
            )
        } else {
            one_line(&message)
        }
    })
}

/// The most nodes (scalars, lists, maps) read from one YAML file: a
/// targets file of a million short entries is refused (with that said),
/// one of 100,000 read. The parser's own default, 250,000, stopped at
/// about 35,000 targets.
pub const YAML_MAX_NODES: usize = 5_000_000;

pub type Result<T, E = Error> = std::result::Result<T, E>;
