//! `portwarden service`: the exporter as a Windows service. What is
//! decided here is pure — which arguments the service control manager
//! starts the exporter with, checked at install as the exporter would
//! check them — and tested on every OS; the SCM's calls are behind the
//! platform seam (`discover::os::service`).

use std::ffi::OsString;

use clap::Parser;

use crate::config::{Cli, Command};
use crate::error::Error;

/// The setting named when the kept arguments are wrong.
const SETTING: &str = "the service's arguments (after --)";

/// The exporter's command line from the arguments kept for the service:
/// the flags of `portwarden serve` (global ones included, `serve` itself
/// optional). Anything else — another command, an unknown flag, a bad
/// value — is refused with clap's reason.
pub fn serve_cli(args: &[OsString]) -> Result<Cli, Error> {
    let argv = std::iter::once(OsString::from("portwarden")).chain(args.iter().cloned());
    let cli = Cli::try_parse_from(argv).map_err(|e| Error::Config {
        setting: SETTING.into(),
        message: first_line(&e.to_string()),
    })?;
    match cli.command {
        None | Some(Command::Serve(_)) => Ok(cli),
        Some(_) => Err(Error::Config {
            setting: SETTING.into(),
            message:
                "expected the exporter's flags (those of `portwarden serve`), not another command"
                    .into(),
        }),
    }
}

/// What the SCM starts the executable with: `service run --name NAME`
/// and the kept arguments, once they pass [`serve_cli`].
pub fn launch_arguments(name: &str, args: &[OsString]) -> Result<Vec<OsString>, Error> {
    serve_cli(args)?;
    let mut out: Vec<OsString> = ["service", "run", "--name", name]
        .into_iter()
        .map(OsString::from)
        .collect();
    out.extend(args.iter().cloned());
    Ok(out)
}

fn first_line(text: &str) -> String {
    let line = text.lines().next().unwrap_or(text);
    line.trim_start_matches("error: ").to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ServiceCommand;

    fn os(args: &[&str]) -> Vec<OsString> {
        args.iter().map(OsString::from).collect()
    }

    fn command(argv: &[&str]) -> ServiceCommand {
        match Cli::try_parse_from(argv).expect("parses").command {
            Some(Command::Service(c)) => c,
            other => panic!("not a service command: {other:?}"),
        }
    }

    #[test]
    fn install_keeps_the_arguments_after_the_separator_as_given() {
        let ServiceCommand::Install { name, args, .. } = command(&[
            "portwarden",
            "service",
            "install",
            "--",
            "--web.listen-address",
            "127.0.0.1:9765",
            "--state.dir",
            r"C:\ProgramData\port warden",
            "--log.level=debug",
        ]) else {
            panic!("install")
        };
        assert_eq!(name, "portwarden");
        let launch = launch_arguments(&name, &args).expect("valid");
        assert_eq!(
            launch,
            os(&[
                "service",
                "run",
                "--name",
                "portwarden",
                "--web.listen-address",
                "127.0.0.1:9765",
                "--state.dir",
                r"C:\ProgramData\port warden",
                "--log.level=debug",
            ])
        );
        // What the SCM starts is what `service run` parses back: the same
        // exporter settings.
        let ServiceCommand::Run { name, args } = command(
            &std::iter::once("portwarden")
                .chain(launch.iter().map(|a| a.to_str().expect("utf-8")))
                .collect::<Vec<_>>(),
        ) else {
            panic!("run")
        };
        assert_eq!(name, "portwarden");
        let cli = serve_cli(&args).expect("the exporter's");
        assert_eq!(cli.serve.listen_address.to_string(), "127.0.0.1:9765");
        assert_eq!(
            cli.global.state_dir.as_deref(),
            Some(std::path::Path::new(r"C:\ProgramData\port warden"))
        );
        assert_eq!(cli.serve.log_level, "debug");
    }

    #[test]
    fn a_name_and_serve_itself_are_accepted() {
        let ServiceCommand::Install { name, args, start } = command(&[
            "portwarden",
            "service",
            "install",
            "--start",
            "manual",
            "--name",
            "portwarden-dev",
            "--",
            "serve",
            "--collector.load",
        ]) else {
            panic!("install")
        };
        assert_eq!(
            (name.as_str(), start.as_str()),
            ("portwarden-dev", "manual")
        );
        assert!(launch_arguments(&name, &args).is_ok());
        // Automatic unless asked, and only the two.
        let ServiceCommand::Install { start, .. } = command(&["portwarden", "service", "install"])
        else {
            panic!("install")
        };
        assert_eq!(start, "automatic");
        assert!(
            Cli::try_parse_from(["portwarden", "service", "install", "--start", "sometimes"])
                .is_err()
        );
        // No arguments: the exporter's defaults.
        assert_eq!(
            launch_arguments("portwarden", &[]).expect("defaults"),
            os(&["service", "run", "--name", "portwarden"])
        );
    }

    #[test]
    fn wrong_arguments_are_refused_at_install_naming_why() {
        for bad in [
            &["ls"][..],
            &["--no-such-flag"],
            &["--web.listen-address", "not an address"],
            &["service", "uninstall"],
        ] {
            let err = launch_arguments("portwarden", &os(bad)).expect_err("refused");
            assert!(err.is_usage(), "{bad:?}: {err}");
            assert!(err.to_string().starts_with(SETTING), "{bad:?}: {err}");
        }
        let msg = launch_arguments("portwarden", &os(&["ls"]))
            .expect_err("refused")
            .to_string();
        assert!(msg.contains("not another command"), "{msg}");
    }

    #[test]
    fn service_names_follow_the_scm() {
        for bad in ["", "a/b", r"a\b", "tab\there"] {
            assert!(
                Cli::try_parse_from(["portwarden", "service", "uninstall", "--name", bad]).is_err(),
                "{bad:?}"
            );
        }
        let long = "x".repeat(257);
        assert!(
            Cli::try_parse_from(["portwarden", "service", "uninstall", "--name", &long]).is_err()
        );
        let ServiceCommand::Uninstall { name } = command(&[
            "portwarden",
            "service",
            "uninstall",
            "--name",
            "port warden",
        ]) else {
            panic!("uninstall")
        };
        assert_eq!(name, "port warden");
    }
}
