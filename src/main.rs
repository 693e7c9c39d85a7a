//! The `portwarden` binary: parse the command line, run, map the outcome to
//! an exit status (0 ok, 1 failure, 2 usage or configuration error).

use std::io::{self, Write};
use std::process::ExitCode;

use clap::{CommandFactory, Parser};
use portwarden::config::{Cli, Command, GlobalArgs, ServeArgs, ServiceCommand, setting};

/// SIGHUP is taken before `main`, before even the Rust runtime starts: a
/// constructor the C library runs right after loading. Its default action
/// ends the process, and `systemctl reload` may send it at any moment.
#[used]
#[unsafe(link_section = ".init_array")]
static HOLD_HANGUPS: extern "C" fn() = {
    extern "C" fn hold() {
        portwarden::server::web_config::hold_hangups();
    }
    hold
};

fn main() -> ExitCode {
    portwarden::discover::alloc::tune();
    // Every command reads many fd tables: as Go's runtime does, the soft
    // open-file limit goes up to the hard one.
    portwarden::discover::fds::raise_limit();
    let argv: Vec<std::ffi::OsString> = std::env::args_os().collect();
    let cli = match Cli::try_parse_from(&argv) {
        Ok(cli) => cli,
        // A bad value names the flag or environment variable it came from;
        // clap prints --help/--version to stdout (exit 0) and other usage
        // errors to stderr (exit 2).
        Err(e) => {
            if let Some(message) = portwarden::config::explain(&e, &argv) {
                eprintln!("portwarden: {message}");
                return ExitCode::from(2);
            }
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() { 2 } else { 0 });
        }
    };
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            if let Some(err) = e.downcast_ref::<portwarden::Error>() {
                if matches!(err, portwarden::Error::Failed) {
                    // Said already, a line per check.
                    return ExitCode::from(1);
                }
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
    if !matches!(cli.command, None | Some(Command::Serve(_))) {
        portwarden::server::web_config::release_hangups();
    }
    match cli.command {
        Some(Command::Ls(args)) => {
            // stderr unlocked: a worker thread that logs must not wait on us.
            portwarden::cli::ls::run(
                &cli.global,
                &args,
                &mut io::stdout().lock(),
                &mut io::stderr(),
            )?;
            io::stdout().flush().ok();
            Ok(())
        }
        Some(Command::Baseline(command)) => {
            portwarden::cli::baseline::run(
                &cli.global,
                &command,
                &mut io::stdout().lock(),
                &mut io::stderr(),
            )?;
            Ok(())
        }
        Some(Command::Check(args)) => {
            let passed = portwarden::cli::check::run(&args, &mut io::stdout().lock())?;
            io::stdout().flush().ok();
            if passed {
                Ok(())
            } else {
                Err(portwarden::Error::Failed.into())
            }
        }
        Some(Command::Why(args)) => {
            let healthy = portwarden::cli::why::run(&cli.global, &args, &mut io::stdout().lock())?;
            io::stdout().flush().ok();
            match healthy {
                true => Ok(()),
                false => Err(portwarden::Error::Failed.into()),
            }
        }
        Some(Command::Completions { shell }) => {
            let mut cmd = Cli::command();
            clap_complete::generate(shell, &mut cmd, "portwarden", &mut io::stdout().lock());
            Ok(())
        }
        Some(Command::Man { command }) => {
            let top = Cli::command();
            let page = match command.as_deref() {
                Some(name @ ("serve" | "ls" | "baseline" | "check" | "why")) => {
                    let (page, usage) = match name {
                        "serve" => ("portwarden-serve", "portwarden serve"),
                        "ls" => ("portwarden-ls", "portwarden ls"),
                        "check" => ("portwarden-check", "portwarden check"),
                        "why" => ("portwarden-why", "portwarden why"),
                        _ => ("portwarden-baseline", "portwarden baseline"),
                    };
                    let sub = top.find_subcommand(name).cloned().unwrap_or_default();
                    sub.name(page).bin_name(usage)
                }
                _ => top,
            };
            clap_mangen::Man::new(page).render(&mut io::stdout().lock())?;
            Ok(())
        }
        Some(Command::Service(command)) => service(command),
        Some(Command::Serve(args)) => serve(&cli.global, &args),
        None => serve(&cli.global, &cli.serve),
    }
}

/// Where the exporter's log goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Log {
    /// Standard error (the journal, a container's log, the terminal).
    Stderr,
    /// `portwarden.log` in the state directory: a Windows service has no
    /// standard error worth the name (the SCM gives it none, and one it
    /// inherited may be a pipe whose reader is gone).
    StateFile,
}

/// `portwarden service install|uninstall|run`: the SCM's calls are behind
/// the platform seam; an OS without them says so (exit status 2).
fn service(command: ServiceCommand) -> anyhow::Result<()> {
    use portwarden::discover::os::service as scm;
    let unsupported = |e: io::Error| -> anyhow::Error {
        match e.kind() {
            io::ErrorKind::Unsupported => portwarden::Error::Config {
                setting: "portwarden service".into(),
                message: e.to_string(),
            }
            .into(),
            _ => e.into(),
        }
    };
    match command {
        ServiceCommand::Install { name, start, args } => {
            let automatic = start == "automatic";
            let launch = portwarden::cli::service::launch_arguments(&name, &args)?;
            let exe = std::env::current_exe()?;
            scm::install(&name, &exe, &launch, automatic).map_err(unsupported)?;
            println!(
                "installed service {name}: {} {}, {}; start it now with `sc start {name}`",
                exe.display(),
                launch
                    .iter()
                    .map(|a| a.to_string_lossy())
                    .collect::<Vec<_>>()
                    .join(" "),
                match automatic {
                    true => "started at boot",
                    false => "started when asked",
                }
            );
            Ok(())
        }
        ServiceCommand::Uninstall { name } => {
            scm::uninstall(&name).map_err(unsupported)?;
            println!("removed service {name}");
            Ok(())
        }
        ServiceCommand::Run { name, args } => {
            let cli = portwarden::cli::service::serve_cli(&args)?;
            let serve_args = match &cli.command {
                Some(Command::Serve(args)) => (**args).clone(),
                _ => cli.serve.clone(),
            };
            let global = cli.global.clone();
            let run = Box::new(move || {
                serve_to(&global, &serve_args, Log::StateFile).map_err(|e| format!("{e:#}"))
            });
            scm::run(&name, run).map_err(unsupported)
        }
    }
}

/// `portwarden serve`: validate everything first, then run until SIGTERM.
fn serve(global: &GlobalArgs, args: &ServeArgs) -> anyhow::Result<()> {
    serve_to(global, args, Log::Stderr)
}

/// The exporter, its log written to `log`.
fn serve_to(global: &GlobalArgs, args: &ServeArgs, log: Log) -> anyhow::Result<()> {
    let mut settings = args.clone();
    let config = |id: &str, message: String| portwarden::Error::Config {
        setting: setting(id),
        message,
    };
    if let Some(dir) = &global.state_dir
        && dir.exists()
        && !dir.is_dir()
    {
        return Err(config("state_dir", format!("{} is not a directory", dir.display())).into());
    }
    let allowlist = match &settings.baseline_allowlist {
        Some(path) => portwarden::baseline::Allowlist::load(path)
            .map_err(|message| config("baseline_allowlist", message))?,
        None => Default::default(),
    };
    let fd_limit = portwarden::discover::fds::raise_limit();
    let discoverer = portwarden::cli::discoverer(
        global,
        settings.collectors().load,
        settings.collectors().exposure,
    )?;
    // The state directory, found once: the record of changes and the
    // baseline both live there (found, the baseline only makes sure of it;
    // not found, the baseline looks again and says why), and a service's log.
    let state_dir = portwarden::baseline::state_dir(global.state_dir.as_deref()).ok();
    init_logging(&settings.log_level, log, state_dir.as_deref())?;
    let budget = portwarden::discover::fds::check_budget(
        fd_limit,
        portwarden::discover::fds::open_now() + settings.probe_slots(),
        settings.max_parallel_ip_checks,
    );
    if budget < settings.probe_concurrency {
        tracing::warn!(
            fd_limit,
            "only {budget} checks at once fit in the open-file limit ({} is {}); raise LimitNOFILE / ulimit -n",
            setting("probe_concurrency"),
            settings.probe_concurrency
        );
        settings.probe_concurrency = budget;
    }
    let (by_list, warnings) = portwarden::targets::files::Files::of(&settings)
        .load()
        .map_err(|(id, message)| config(id, message))?;
    let actions = match &settings.actions_file {
        Some(path) => Some(
            portwarden::actions::Actions::load(path)
                .map_err(|message| config("actions_file", message))?,
        ),
        None => None,
    };
    let events = portwarden::events::output::open(
        &settings.events_output,
        &settings.events_journal_socket,
        portwarden::discover::own::host_name(),
        state_dir.as_deref(),
    )
    .map_err(|message| config("events_output", message))?;
    let web = std::sync::Arc::new(portwarden::server::web_config::Web::new(
        settings.web_config_file.clone(),
    )?);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        // Encoding, renders and name lookups; the unit's TasksMax counts
        // on it. Idle threads are kept, not ended after 10 s: a pool that
        // has a thread never needs the OS for one again (tokio panics when
        // it has none and the OS refuses one; with one, work waits for it).
        .max_blocking_threads(16)
        .thread_keep_alive(std::time::Duration::from_secs(24 * 3600))
        .thread_name("portwarden")
        .enable_all()
        .build()?;
    runtime.block_on(async {
        // The blocking pool's first thread, now: refused, the start fails
        // with the reason rather than a task later.
        let first =
            std::panic::catch_unwind(|| tokio::task::spawn_blocking(|| ())).map_err(|_| {
                anyhow::anyhow!(
                    "the OS refused a thread at the start (RLIMIT_NPROC, TasksMax or a pids limit)"
                )
            })?;
        first.await?;
        let listener = portwarden::server::bind(settings.listen_address).await?;
        let path = settings.telemetry_path.clone();
        let max_requests = settings.max_requests;
        let probe_limits = settings.web_probe.then(|| portwarden::server::ProbeLimits {
            concurrency: settings.web_probe_concurrency,
            max_timeout: settings.web_probe_max_timeout,
            destinations: portwarden::probe::check::Destinations {
                deny: settings.probe_deny.0.clone(),
                deny_first: true,
                allow: settings.web_probe_allow.clone(),
            },
        });
        let status_page = settings.web_status_page;
        let request_timeout = settings.request_timeout;
        tracing::info!(
            address = %settings.listen_address,
            path = %path,
            tls = web.current().tls.is_some(),
            basic_auth = web.current().users.is_some(),
            version = env!("CARGO_PKG_VERSION"),
            "serving metrics"
        );
        for w in warnings {
            tracing::warn!("{w}");
        }
        if settings.targets_file.is_some() {
            tracing::info!(targets = by_list.jobs.len(), "checking targets by list");
        }
        if let Some(a) = &actions {
            tracing::info!(
                actions = a.actions.len(),
                dry_run = settings.actions_dry_run,
                "recovery actions in force"
            );
        }
        let loaded = portwarden::engine::Loaded {
            by_list,
            actions,
            baseline: portwarden::engine::BaselinePlace {
                state_dir: state_dir.or_else(|| global.state_dir.clone()),
                allowlist,
            },
            events,
        };
        let mut engine = portwarden::engine::Engine::start(settings, discoverer, loaded)?;
        engine.supervise(
            "web config watcher",
            portwarden::server::web_config::watch(web.clone()),
        );
        let serving = portwarden::server::listen::Serving {
            router: portwarden::server::app(
                engine.shared.clone(),
                probe_limits,
                &path,
                max_requests,
                status_page,
            ),
            web,
            request_timeout,
        };
        // Until SIGTERM, or until a thread or task of ours ends: then
        // `/-/healthy` says which for a moment, and the process exits 1.
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let mut server = tokio::spawn(portwarden::server::listen::serve(
            listener,
            serving,
            async move {
                let _ = stopped.await;
            },
        ));
        let failed = tokio::select! {
            () = portwarden::server::shutdown_signal() => None,
            ended = engine.failed() => {
                tokio::time::sleep(FAILED_GRACE).await;
                Some(ended.to_string())
            }
            served = &mut server => Some(match served {
                Ok(Ok(())) => "the server ended".to_string(),
                Ok(Err(e)) => return Err(e.into()),
                Err(e) => format!("the server {}", if e.is_panic() { "panicked" } else { "ended" }),
            }),
        };
        tracing::info!("shutting down");
        let _ = stop.send(());
        if !server.is_finished() {
            server.await??;
        }
        engine.stop();
        match failed {
            Some(why) => Err(anyhow::anyhow!("{why}")),
            None => Ok(()),
        }
    })
}

/// How long `/-/healthy` answers 503 after a thread or task of the engine
/// ended, before the process exits.
const FAILED_GRACE: std::time::Duration = std::time::Duration::from_secs(2);

/// A service's log is set aside as `portwarden.log.1` past this size.
const SERVICE_LOG_BYTES: u64 = 10 << 20;

fn init_logging(level: &str, log: Log, state_dir: Option<&std::path::Path>) -> anyhow::Result<()> {
    let filter = tracing_subscriber::EnvFilter::try_new(format!("portwarden={level},warn"))
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let fmt = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false);
    match log {
        Log::Stderr => fmt
            .with_writer(io::stderr)
            .with_ansi(io::IsTerminal::is_terminal(&io::stderr()))
            .init(),
        Log::StateFile => {
            let dir = state_dir.ok_or_else(|| {
                anyhow::anyhow!("no state directory for the service's log (--state.dir)")
            })?;
            let path = dir.join("portwarden.log");
            // A panic's message too: standard error follows the file.
            let log = portwarden::bounded::Bounded::open(&path, SERVICE_LOG_BYTES)
                .and_then(|log| {
                    portwarden::discover::os::stderr_to(log.file())?;
                    Ok(log.on_reopen(portwarden::discover::os::stderr_to))
                })
                .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
            fmt.with_writer(std::sync::Mutex::new(log))
                .with_ansi(false)
                .init()
        }
    }
    Ok(())
}
