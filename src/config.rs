//! Every flag, the environment variable it reads (the names of the plugin we
//! replace, see `SPEC.md`), its default and its validation. A bad value is a
//! usage error: exit status 2 with a message naming the setting and the
//! accepted form.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// Command line of the `portwarden` binary.
#[derive(Debug, Parser)]
#[command(
    name = "portwarden",
    version,
    about = "Watches every listening TCP and UDP port of a Linux host and the process behind it.",
    max_term_width = 100
)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// Settings every command shares.
#[derive(Debug, Clone, Args)]
pub struct GlobalArgs {
    /// Where the host's /proc is mounted (in a container, e.g. /host/proc).
    /// Empty means /proc.
    #[arg(
        long = "path.procfs",
        env = "PROC_PREFIX",
        value_name = "DIR",
        default_value = "/proc",
        value_parser = parse_proc_root,
        global = true
    )]
    pub proc_root: PathBuf,

    /// Process names to exclude, comma-separated, on top of the built-in
    /// list; whole names, or globs with '*' and '?'.
    #[arg(
        long = "exclude.process-names",
        env = "EXCLUDED_PROCESS_NAMES",
        value_name = "NAMES",
        default_value = "",
        hide_default_value = true,
        global = true
    )]
    pub excluded_process_names: String,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// List listening ports and their owners (like `ss -ltnup`, but better).
    Ls(LsArgs),
}

/// Flags of `portwarden ls`.
#[derive(Debug, Clone, Default, Args)]
pub struct LsArgs {
    /// Only TCP listeners.
    #[arg(long)]
    pub tcp: bool,
    /// Only bound UDP sockets.
    #[arg(long)]
    pub udp: bool,
    /// Only this port (repeatable).
    #[arg(long = "port", value_name = "N", value_parser = parse_port)]
    pub ports: Vec<u16>,
    /// Only sockets held by a process of this name ('*' and '?' allowed).
    #[arg(long, value_name = "NAME")]
    pub process: Option<String>,
    /// Print a JSON array instead of a table (schema in the README).
    #[arg(long)]
    pub json: bool,
    /// Include sockets whose owners are all excluded.
    #[arg(long)]
    pub all: bool,
}

fn parse_proc_root(s: &str) -> Result<PathBuf, String> {
    if s.is_empty() {
        return Ok(PathBuf::from("/proc"));
    }
    if s.contains('\0') {
        return Err("expected a directory path such as /proc or /host/proc".into());
    }
    Ok(PathBuf::from(s))
}

fn parse_port(s: &str) -> Result<u16, String> {
    match s.parse::<u16>() {
        Ok(p) if p > 0 => Ok(p),
        _ => Err(format!("expected a port number from 1 to 65535, got '{s}'")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_proc_prefix_means_proc() {
        assert_eq!(parse_proc_root(""), Ok(PathBuf::from("/proc")));
        assert_eq!(
            parse_proc_root("/host/proc"),
            Ok(PathBuf::from("/host/proc"))
        );
    }

    #[test]
    fn ports() {
        assert_eq!(parse_port("80"), Ok(80));
        assert!(parse_port("0").is_err());
        assert!(parse_port("65536").is_err());
        assert!(parse_port("http").is_err());
    }

    #[test]
    fn cli_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}
