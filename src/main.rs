//! The `portwarden` binary: parse the command line, run, map the outcome to
//! an exit status (0 ok, 1 failure, 2 usage or configuration error).

use std::io::{self, Write};
use std::process::ExitCode;

use clap::Parser;
use portwarden::config::{Cli, Command};

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        // clap prints --help/--version to stdout (exit 0) and usage errors,
        // which name the flag and the accepted values, to stderr (exit 2).
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() { 2 } else { 0 });
        }
    };
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            if let Some(err) = e.downcast_ref::<portwarden::Error>() {
                if err.is_broken_pipe() {
                    return ExitCode::SUCCESS;
                }
                eprintln!("portwarden: {err}");
                return ExitCode::from(if err.is_usage() { 2 } else { 1 });
            }
            eprintln!("portwarden: {e:#}");
            ExitCode::from(1)
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    let stdout = io::stdout();
    let stderr = io::stderr();
    match cli.command {
        Some(Command::Ls(args)) => {
            portwarden::cli::ls::run(&cli.global, &args, &mut stdout.lock(), &mut stderr.lock())?;
        }
        None => {
            // Until the exporter lands, the main job is the listing.
            portwarden::cli::ls::run(
                &cli.global,
                &Default::default(),
                &mut stdout.lock(),
                &mut stderr.lock(),
            )?;
        }
    }
    io::stdout().flush().ok();
    Ok(())
}
