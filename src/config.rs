//! Every flag, the environment variable it reads (the names of the plugin we
//! replace, see `SPEC.md`), its default and its validation. A bad value is a
//! usage error: exit status 2 with a message naming the setting and the
//! accepted form.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{ArgAction, Args, Parser, Subcommand};

use crate::value;
use crate::value::cidr;
use crate::value::{
    Proto, parse_count, parse_go_bool, parse_interval, parse_listen_address, parse_port,
};

/// Command line of the `portwarden` binary.
#[derive(Debug, Parser)]
#[command(
    name = "portwarden",
    version,
    about = "Watches every listening TCP and UDP port of a Linux host and the process behind it.\n\
             With no command, serves Prometheus metrics (as `portwarden serve`).",
    max_term_width = 100,
    args_conflicts_with_subcommands = true
)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,
    /// The exporter's settings, for `portwarden` with no command.
    #[command(flatten)]
    pub serve: ServeArgs,
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// Settings every command shares.
#[derive(Debug, Clone, Args)]
pub struct GlobalArgs {
    /// Where the host's /proc is mounted (in a container, e.g. /host/proc)
    /// [default: /proc]. Empty means /proc.
    #[arg(
        long = "path.procfs",
        env = "PROC_PREFIX",
        value_name = "DIR",
        default_value = "",
        hide_default_value = true,
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

    /// Where the baseline of expected ports is kept [default:
    /// /var/lib/portwarden, or the user's state directory when that is not
    /// writable].
    #[arg(
        long = "state.dir",
        env = "PORTWARDEN_STATE_DIR",
        value_name = "DIR",
        value_parser = parse_state_dir,
        global = true
    )]
    pub state_dir: Option<PathBuf>,
}

fn parse_state_dir(s: &str) -> Result<PathBuf, String> {
    if s.is_empty() || s.contains('\0') {
        return Err("expected a directory path such as /var/lib/portwarden".into());
    }
    Ok(PathBuf::from(s))
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve Prometheus metrics about every port (the default).
    Serve(Box<ServeArgs>),
    /// List listening ports and their owners (like `ss -ltnup`, but better).
    Ls(LsArgs),
    /// Show or edit the baseline of expected ports.
    #[command(subcommand)]
    Baseline(BaselineCommand),
    /// Check targets once, concurrently, and say which answer: `portwarden
    /// check 127.0.0.1:5432 https://api.internal/health` or `-f targets.yml`.
    /// Exit status 0 when every check passes, 1 when one fails, 2 on bad
    /// input.
    Check(CheckArgs),
    /// Say why a port cannot be reached: walks the fault tree (something
    /// listens? the right address and stack? the owner running? taking
    /// connections? let in by the firewall? a conflict?) and stops at the
    /// first broken step, with the evidence and a fix. `portwarden why
    /// 8080`, `why 127.0.0.1:8080`, `why http://localhost:3000/`. Exit
    /// status 0 when the port is healthy and reachable, 1 when a problem is
    /// found, 2 on bad input.
    Why(WhyArgs),
    /// Run the exporter as a Windows service: `portwarden service install
    /// -- --web.listen-address :9765` registers it with the service control
    /// manager (started at boot, the arguments after `--` kept), `portwarden
    /// service uninstall` stops and removes it. Windows only: on Linux, the
    /// systemd unit does this (deploy/systemd).
    #[command(subcommand)]
    Service(ServiceCommand),
    /// Print a shell completion script (e.g. `portwarden completions bash >
    /// /etc/bash_completion.d/portwarden`).
    Completions {
        /// bash, zsh, fish, elvish or powershell.
        shell: clap_complete::Shell,
    },
    /// Print a manual page (roff; `portwarden man | man -l -`): portwarden(1),
    /// or with a command's name that command's page, e.g. portwarden-ls(1).
    Man {
        /// serve, ls, baseline, check or why.
        #[arg(value_parser = ["serve", "ls", "baseline", "check", "why"])]
        command: Option<String>,
    },
}

/// `portwarden service …`.
#[derive(Debug, Subcommand)]
pub enum ServiceCommand {
    /// Register with the service control manager: start type automatic,
    /// run as LocalSystem, `portwarden serve` with the arguments after `--`.
    Install {
        /// The service's name.
        #[arg(long, default_value = "portwarden", value_parser = parse_service_name)]
        name: String,
        /// Started at boot (automatic), or only when asked (manual).
        #[arg(long, default_value = "automatic", value_parser = ["automatic", "manual"])]
        start: String,
        /// The exporter's arguments (global ones included), after `--`.
        #[arg(last = true, value_name = "SERVE-ARGS")]
        args: Vec<std::ffi::OsString>,
    },
    /// Stop the service (within its wait hint) and remove it.
    Uninstall {
        /// The service's name.
        #[arg(long, default_value = "portwarden", value_parser = parse_service_name)]
        name: String,
    },
    /// The service control manager's entry point: serves until the SCM
    /// asks it to stop. Not for people.
    #[command(hide = true)]
    Run {
        /// The service's name.
        #[arg(long, default_value = "portwarden", value_parser = parse_service_name)]
        name: String,
        /// The exporter's arguments, as installed.
        #[arg(
            trailing_var_arg = true,
            allow_hyphen_values = true,
            value_name = "SERVE-ARGS"
        )]
        args: Vec<std::ffi::OsString>,
    },
}

/// A service name: 1–256 characters, none of them `/` or `\\` (the SCM's
/// rule), nor a control character.
fn parse_service_name(s: &str) -> Result<String, String> {
    let ok = !s.is_empty()
        && s.chars().count() <= 256
        && !s.chars().any(|c| c == '/' || c == '\\' || c.is_control());
    match ok {
        true => Ok(s.to_string()),
        false => Err("expected a service name of 1 to 256 characters, without '/' or '\\'".into()),
    }
}

/// `portwarden baseline …`.
#[derive(Debug, Subcommand)]
pub enum BaselineCommand {
    /// List the expected ports.
    Show {
        /// Print a JSON array instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Expect every port listening now (as the exporter names it), at once.
    Accept(BaselineFilter),
    /// Stop expecting ports: those matching every filter given, or --all.
    Forget {
        #[command(flatten)]
        filter: BaselineFilter,
        /// Forget every expected port.
        #[arg(long, conflicts_with_all = ["ports", "proto", "netns", "process"])]
        all: bool,
    },
}

/// Which ports a baseline command acts on.
#[derive(Debug, Clone, Args)]
pub struct BaselineFilter {
    /// Only this port (repeatable).
    #[arg(long = "port", value_name = "N", value_parser = parse_port)]
    pub ports: Vec<u16>,
    /// Only this protocol: tcp or udp.
    #[arg(long, value_name = "PROTO", value_parser = Proto::parse)]
    pub proto: Option<Proto>,
    /// Only this network namespace label (host, a container id, netns:<inode>).
    #[arg(long, value_name = "NETNS")]
    pub netns: Option<String>,
    /// Only ports of this process name ('*' and '?' allowed).
    #[arg(long, value_name = "NAME")]
    pub process: Option<String>,
}

impl BaselineFilter {
    pub fn is_empty(&self) -> bool {
        self.ports.is_empty()
            && self.proto.is_none()
            && self.netns.is_none()
            && self.process.is_none()
    }
}

/// Flags of the exporter, each with its type and parser: a bad value is
/// refused by clap, and [`explain`] names the flag or environment variable
/// it came from.
#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    /// Address to serve metrics on: [host]:port (":9765" = every address).
    #[arg(
        long = "web.listen-address",
        env = "PORTWARDEN_LISTEN_ADDRESS",
        value_name = "ADDR",
        default_value = ":9765",
        value_parser = parse_listen_address
    )]
    pub listen_address: SocketAddr,

    /// Path under which metrics are served.
    #[arg(
        long = "web.telemetry-path",
        value_name = "PATH",
        default_value = "/metrics",
        value_parser = parse_url_path
    )]
    pub telemetry_path: String,

    /// How often ports are rediscovered and TCP alive + connect time checked.
    #[arg(
        long = "port.status-interval",
        env = "PORT_STATUS_INTERVAL",
        value_name = "DURATION",
        default_value = "1m",
        value_parser = parse_interval
    )]
    pub status_interval: Duration,

    /// How often HTTP liveness is checked [default: the status interval].
    #[arg(
        long = "port.http-status-interval",
        env = "PORT_HTTP_STATUS_INTERVAL",
        value_name = "DURATION",
        value_parser = parse_interval
    )]
    pub http_status_interval: Option<Duration>,

    /// How often UDP presence is checked [default: the status interval].
    #[arg(
        long = "port.udp-status-interval",
        env = "PORT_UDP_STATUS_INTERVAL",
        value_name = "DURATION",
        value_parser = parse_interval
    )]
    pub udp_status_interval: Option<Duration>,

    /// How often owner processes are checked for liveness.
    #[arg(
        long = "process.alive-status-interval",
        env = "PROCESS_ALIVE_STATUS_INTERVAL",
        value_name = "DURATION",
        default_value = "1m",
        value_parser = parse_interval
    )]
    pub process_interval: Duration,

    /// Longest time between two full owner rescans (reading every process's
    /// fd table); refreshes in between are cheap.
    #[arg(
        long = "port.label-interval",
        env = "PORT_LABEL_INTERVAL",
        value_name = "DURATION",
        default_value = "1h",
        value_parser = parse_interval
    )]
    pub label_interval: Duration,

    /// Timeout of one TCP or HTTP check.
    #[arg(
        long = "probe.timeout",
        env = "PORT_CHECK_TIMEOUT",
        value_name = "DURATION",
        default_value = "1s",
        value_parser = parse_interval
    )]
    pub check_timeout: Duration,

    /// Addresses of one port tried at once.
    #[arg(
        long = "probe.max-parallel-ip-checks",
        env = "MAX_PARALLEL_IP_CHECKS",
        value_name = "N",
        default_value = "8",
        value_parser = parse_count::<1>
    )]
    pub max_parallel_ip_checks: usize,

    /// HTTP checks in flight at once.
    #[arg(
        long = "probe.http-concurrency",
        env = "HTTP_DETECTION_CONCURRENCY",
        value_name = "N",
        default_value = "10",
        value_parser = parse_count::<1>
    )]
    pub http_concurrency: usize,

    /// Whether to detect and check HTTP on TCP ports.
    #[arg(
        long = "probe.http",
        env = "ENABLE_HTTP_DETECTION",
        value_name = "BOOL",
        default_value = "true",
        action = ArgAction::Set,
        value_parser = parse_go_bool
    )]
    pub http_detection: bool,

    /// Checks of any kind in flight at once.
    #[arg(
        long = "probe.concurrency",
        env = "PORTWARDEN_PROBE_CONCURRENCY",
        value_name = "N",
        default_value = "64",
        value_parser = parse_count::<1>
    )]
    pub probe_concurrency: usize,

    /// Spread the checks of a round over half its interval (true), or start
    /// them as fast as --probe.concurrency allows (false).
    #[arg(
        long = "probe.spread",
        env = "PORTWARDEN_PROBE_SPREAD",
        value_name = "BOOL",
        default_value = "true",
        action = ArgAction::Set,
        value_parser = parse_go_bool
    )]
    pub spread: bool,

    /// Targets checked by list (YAML: `targets: [{name, target, module,
    /// interval, labels}]`), besides the host's own ports; reloaded when it
    /// changes and on SIGHUP.
    #[arg(
        long = "targets.file",
        env = "PORTWARDEN_TARGETS_FILE",
        value_name = "FILE"
    )]
    pub targets_file: Option<PathBuf>,

    /// Modules for the targets file and `/probe`, in blackbox_exporter's
    /// format (a blackbox.yml works as it is); besides the built-in
    /// tcp_connect, tls_connect, http_2xx and udp.
    #[arg(
        long = "modules.file",
        env = "PORTWARDEN_MODULES_FILE",
        value_name = "FILE"
    )]
    pub modules_file: Option<PathBuf>,

    /// How often a target without an interval of its own is checked.
    #[arg(
        long = "targets.interval",
        env = "PORTWARDEN_TARGETS_INTERVAL",
        value_name = "DURATION",
        default_value = "15s",
        value_parser = value::parse_target_interval
    )]
    pub targets_interval: Duration,

    /// The most a target's check may take (a module's own timeout is kept
    /// when shorter, and no check outlasts its target's interval).
    #[arg(
        long = "targets.timeout",
        env = "PORTWARDEN_TARGETS_TIMEOUT",
        value_name = "DURATION",
        default_value = "5s",
        value_parser = parse_interval
    )]
    pub targets_timeout: Duration,

    /// Recovery actions (YAML: which ports, in which health, for how many
    /// checks, run which command; where to escalate). None: no action ever
    /// runs. Reloaded when it changes and on SIGHUP.
    #[arg(
        long = "actions.file",
        env = "PORTWARDEN_ACTIONS_FILE",
        value_name = "FILE"
    )]
    pub actions_file: Option<PathBuf>,

    /// Log what the recovery actions would run, and run nothing.
    #[arg(
        long = "actions.dry-run",
        env = "PORTWARDEN_ACTIONS_DRY_RUN",
        value_name = "BOOL",
        default_value = "false",
        num_args = 0..=1,
        default_missing_value = "true",
        action = ArgAction::Set,
        value_parser = parse_go_bool
    )]
    pub actions_dry_run: bool,

    /// How long a port that disappeared keeps its series (at 0).
    #[arg(
        long = "port.retention",
        env = "PORTWARDEN_PORT_RETENTION",
        value_name = "DURATION",
        default_value = "15m",
        value_parser = parse_interval
    )]
    pub retention: Duration,

    /// How long a port must listen without a break to become expected.
    #[arg(
        long = "baseline.learn",
        env = "PORTWARDEN_BASELINE_LEARN",
        value_name = "DURATION",
        default_value = "1h",
        value_parser = parse_interval
    )]
    pub baseline_learn: Duration,

    /// A file of ports that are never unexpected: `proto/port [process]`
    /// per line, e.g. `tcp/22` or `tcp/8080 java*`.
    #[arg(
        long = "baseline.allowlist",
        env = "PORTWARDEN_BASELINE_ALLOWLIST",
        value_name = "FILE",
        value_parser = parse_file
    )]
    pub baseline_allowlist: Option<PathBuf>,

    /// The most port series exported; past it, new ports are left out,
    /// counted in portwarden_ports_over_limit and logged.
    #[arg(
        long = "discovery.max-ports",
        env = "PORTWARDEN_DISCOVERY_MAX_PORTS",
        value_name = "N",
        default_value = "20000",
        value_parser = parse_count::<1>
    )]
    pub max_ports: usize,

    /// The most /metrics requests served at once (more get 503); 0: no limit.
    #[arg(
        long = "web.max-requests",
        env = "PORTWARDEN_WEB_MAX_REQUESTS",
        value_name = "N",
        default_value = "40",
        value_parser = parse_count::<0>
    )]
    pub max_requests: usize,

    /// TLS, client certificates, basic auth and headers, in the format of
    /// Prometheus's exporter-toolkit (as node_exporter's flag of this name).
    /// Reloaded when it changes and on SIGHUP.
    #[arg(
        long = "web.config.file",
        env = "PORTWARDEN_WEB_CONFIG_FILE",
        value_name = "FILE"
    )]
    pub web_config_file: Option<PathBuf>,

    /// Serve `/probe` (blackbox_exporter's multi-target endpoint). Off
    /// unless asked for: anyone who may request it can make this host
    /// connect where it can, so keep it behind --web.config.file's auth and
    /// narrow it with --web.probe-allow.
    #[arg(
        long = "web.probe",
        env = "PORTWARDEN_WEB_PROBE",
        value_name = "BOOL",
        default_value = "false",
        num_args = 0..=1,
        default_missing_value = "true",
        action = ArgAction::Set,
        value_parser = parse_go_bool
    )]
    pub web_probe: bool,

    /// `/probe` checks in flight at once, a budget of their own (the
    /// host's checks never wait for them); one more is answered 503 at once.
    #[arg(
        long = "web.probe-concurrency",
        env = "PORTWARDEN_WEB_PROBE_CONCURRENCY",
        value_name = "N",
        default_value = "16",
        value_parser = parse_count::<1>
    )]
    pub web_probe_concurrency: usize,

    /// The longest a `/probe` check may take, whatever the scrape's timeout
    /// header asks (a module's own timeout is kept when shorter).
    #[arg(
        long = "web.probe-max-timeout",
        env = "PORTWARDEN_WEB_PROBE_MAX_TIMEOUT",
        value_name = "DURATION",
        default_value = "30s",
        value_parser = parse_interval
    )]
    pub web_probe_max_timeout: Duration,

    /// Where `/probe` may connect: host names (as written in targets) and
    /// CIDRs, comma-separated, checked at every hop. Empty: anywhere not
    /// denied by --probe.deny.
    #[arg(
        long = "web.probe-allow",
        env = "PORTWARDEN_WEB_PROBE_ALLOW",
        value_name = "HOSTS,CIDRS",
        default_value = "",
        hide_default_value = true,
        value_parser = cidr::Allow::parse
    )]
    pub web_probe_allow: cidr::Allow,

    /// Networks never connected to by `/probe`, nor by any check after a
    /// redirect (CIDRs, comma-separated; empty: none). Every address a name
    /// resolves to is checked.
    #[arg(
        long = "probe.deny",
        env = "PORTWARDEN_PROBE_DENY",
        value_name = "CIDRS",
        default_value = cidr::LINK_LOCAL,
        value_parser = cidr::parse_list
    )]
    pub probe_deny: cidr::Networks,

    /// Serve the status page (`/`), its API (`/api/v1/…`) and badges
    /// (`/badge/…`): every port, its owner and its last day, to whoever may
    /// read `/metrics`.
    #[arg(
        long = "web.status-page",
        env = "PORTWARDEN_WEB_STATUS_PAGE",
        value_name = "BOOL",
        default_value = "true",
        action = ArgAction::Set,
        value_parser = parse_go_bool
    )]
    pub web_status_page: bool,

    /// Time a client has to send a request's headers, and to read the
    /// whole response; idle kept-alive connections close after it.
    #[arg(
        long = "web.request-timeout",
        env = "PORTWARDEN_WEB_REQUEST_TIMEOUT",
        value_name = "DURATION",
        default_value = "30s",
        value_parser = parse_interval
    )]
    pub request_timeout: Duration,

    /// Log level: error, warn, info, debug or trace.
    #[arg(
        long = "log.level",
        env = "PORTWARDEN_LOG_LEVEL",
        value_name = "LEVEL",
        default_value = "info",
        value_parser = parse_log_level
    )]
    pub log_level: String,

    /// Where port events go (opened, closed, a new owner; the state at the
    /// start): none, stdout or a file (JSON lines, ECS field names; a file
    /// is appended to and opened again on SIGHUP), or journald (its native
    /// protocol). The recent ones are at /api/v1/events either way.
    #[arg(
        long = "events.output",
        env = "PORTWARDEN_EVENTS_OUTPUT",
        value_name = "none|stdout|journald|FILE",
        default_value = "none",
        value_parser = value::Sink::parse
    )]
    pub events_output: value::Sink,

    /// journald's socket, for --events.output=journald.
    #[arg(
        long = "events.journal-socket",
        env = "PORTWARDEN_EVENTS_JOURNAL_SOCKET",
        value_name = "PATH",
        default_value = "/run/systemd/journal/socket"
    )]
    pub events_journal_socket: PathBuf,

    /// Recent events kept for /api/v1/events and the status page.
    #[arg(
        long = "events.recent",
        env = "PORTWARDEN_EVENTS_RECENT",
        value_name = "N",
        default_value = "1000",
        value_parser = parse_count::<1>
    )]
    pub events_recent: usize,

    #[command(flatten)]
    pub collector_flags: CollectorArgs,
}

/// `--collector.<name>` / `--no-collector.<name>`, as node_exporter: every
/// collector is on unless switched off; the last flag given wins.
#[derive(Debug, Clone, Default, Args)]
pub struct CollectorArgs {
    /// Leave out accept queues, drops, connections and peers (and count no
    /// connections).
    #[arg(long = "no-collector.load", overrides_with = "load")]
    no_load: bool,
    /// Export accept queues, drops, connections and peers (the default).
    #[arg(long = "collector.load", overrides_with = "no_load")]
    load: bool,
    /// Leave out portwarden_port_health (and the connect-time history behind it).
    #[arg(long = "no-collector.health", overrides_with = "health")]
    no_health: bool,
    /// Export portwarden_port_health (the default).
    #[arg(long = "collector.health", overrides_with = "no_health")]
    health: bool,
    /// Leave out portwarden_port_info.
    #[arg(long = "no-collector.info", overrides_with = "info")]
    no_info: bool,
    /// Export portwarden_port_info, one series per socket (the default).
    #[arg(long = "collector.info", overrides_with = "no_info")]
    info: bool,
    /// Leave out expected and unexpected ports (and keep no baseline file).
    #[arg(long = "no-collector.baseline", overrides_with = "baseline")]
    no_baseline: bool,
    /// Export expected and unexpected ports (the default).
    #[arg(long = "collector.baseline", overrides_with = "no_baseline")]
    baseline: bool,
    /// Leave out each port's exposure (and read no firewall ruleset).
    #[arg(long = "no-collector.exposure", overrides_with = "exposure")]
    no_exposure: bool,
    /// Export each port's exposure by the firewall ruleset (the default).
    #[arg(long = "collector.exposure", overrides_with = "no_exposure")]
    exposure: bool,
}

impl CollectorArgs {
    pub fn collectors(&self) -> Collectors {
        Collectors {
            load: !self.no_load,
            health: !self.no_health,
            info: !self.no_info,
            baseline: !self.no_baseline,
            exposure: !self.no_exposure,
        }
    }
}

/// Which optional collectors are on (all by default).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Collectors {
    /// Accept queues, drops, connections by state, peers.
    pub load: bool,
    /// `portwarden_port_health`, and the connect-time history behind `slow`.
    pub health: bool,
    /// `portwarden_port_info`: one series per listening socket.
    pub info: bool,
    /// Expected and unexpected ports (and the baseline file kept for them).
    pub baseline: bool,
    /// `portwarden_port_exposure`, and the firewall rulesets read for it.
    pub exposure: bool,
}

impl Default for Collectors {
    fn default() -> Self {
        Collectors {
            load: true,
            health: true,
            info: true,
            baseline: true,
            exposure: true,
        }
    }
}

/// The exporter's settings as the engine and server take them: the flags
/// themselves (no copy), with the defaults that depend on other settings
/// derived by the methods below.
pub type Settings = ServeArgs;

impl ServeArgs {
    /// How often HTTP liveness is checked (`--port.http-status-interval`,
    /// else the TCP interval).
    pub fn http_interval(&self) -> Duration {
        self.http_status_interval.unwrap_or(self.status_interval)
    }

    /// How often UDP presence is checked (`--port.udp-status-interval`,
    /// else the TCP interval).
    pub fn udp_interval(&self) -> Duration {
        self.udp_status_interval.unwrap_or(self.status_interval)
    }

    /// How often ports are rediscovered: as often as the TCP or the UDP
    /// round needs them.
    pub fn discovery_interval(&self) -> Duration {
        self.status_interval.min(self.udp_interval())
    }

    /// The optional collectors switched on.
    pub fn collectors(&self) -> Collectors {
        self.collector_flags.collectors()
    }

    /// `/probe` slots held when it is on (none when off).
    pub fn probe_slots(&self) -> usize {
        if self.web_probe {
            self.web_probe_concurrency
        } else {
            0
        }
    }
}

/// A setting's flag, `--name`, read from its definition (`id`: the
/// field's name); an unknown id as written.
pub fn flag(id: &str) -> String {
    let command = <Cli as clap::CommandFactory>::command();
    std::iter::once(&command)
        .chain(command.get_subcommands())
        .flat_map(|c| c.get_arguments())
        .find(|a| a.get_id() == id)
        .and_then(|a| a.get_long())
        .map_or_else(|| id.to_string(), |l| format!("--{l}"))
}

/// How portwarden names a setting in an error: `--flag / ENV_VAR` (or the
/// flag alone), read from its definition. `id` is the field's name, e.g.
/// `targets_file`; an unknown id is named as written.
pub fn setting(id: &str) -> String {
    let command = <Cli as clap::CommandFactory>::command();
    let found = std::iter::once(&command)
        .chain(command.get_subcommands())
        .flat_map(|c| c.get_arguments())
        .find(|a| a.get_id() == id);
    let Some(arg) = found else {
        return id.to_string();
    };
    let flag = arg.get_long().map(|l| format!("--{l}"));
    let env = arg.get_env().map(|e| e.to_string_lossy().into_owned());
    match (flag, env) {
        (Some(flag), Some(env)) => format!("{flag} / {env}"),
        (Some(flag), None) => flag,
        (None, Some(env)) => env,
        (None, None) => id.to_string(),
    }
}

/// A clap error as portwarden reports a bad value: `NAME: message`, where
/// NAME is the environment variable when the value came from there (the
/// plugin's users set those), else the flag. `None` for other errors
/// (unknown flags, help), which clap words well itself.
pub fn explain(e: &clap::Error, argv: &[std::ffi::OsString]) -> Option<String> {
    use clap::error::{ContextKind, ContextValue, ErrorKind};
    if e.kind() != ErrorKind::ValueValidation {
        return None;
    }
    let Some(ContextValue::String(arg)) = e.get(ContextKind::InvalidArg) else {
        return None;
    };
    let flag = arg.split([' ', '=']).next()?;
    let long = flag.strip_prefix("--")?;
    let command = <Cli as clap::CommandFactory>::command();
    let env = std::iter::once(&command)
        .chain(command.get_subcommands())
        .flat_map(|c| c.get_arguments())
        .find(|a| a.get_long() == Some(long))
        .and_then(|a| a.get_env().map(|e| e.to_os_string()));
    let on_line = argv.iter().any(|a| {
        let a = a.to_string_lossy();
        a == flag || a.starts_with(&format!("{flag}="))
    });
    let name = match env {
        Some(env) if !on_line && std::env::var_os(&env).is_some() => {
            env.to_string_lossy().into_owned()
        }
        _ => flag.to_string(),
    };
    let message = std::error::Error::source(e)?.to_string();
    Some(format!("{name}: {message}"))
}

fn parse_url_path(s: &str) -> Result<String, String> {
    if !s.starts_with('/') || s.contains(char::is_whitespace) {
        return Err(format!(
            "invalid path '{s}' (expected an absolute URL path such as /metrics)"
        ));
    }
    Ok(s.to_string())
}

fn parse_log_level(s: &str) -> Result<String, String> {
    let level = s.to_ascii_lowercase();
    if ["error", "warn", "info", "debug", "trace"].contains(&level.as_str()) {
        Ok(level)
    } else {
        Err(format!(
            "invalid level '{s}' (expected error, warn, info, debug or trace)"
        ))
    }
}

/// Flags of `portwarden check`.
#[derive(Debug, Clone, Args)]
pub struct CheckArgs {
    /// Targets: host:port or tcp://host:port (TCP connect), tls://host:port
    /// (TLS handshake), udp://host:port (a datagram, and what comes back),
    /// http:// or https:// URLs (a request, 2xx expected).
    #[arg(value_name = "TARGET")]
    pub targets: Vec<String>,
    /// A targets file (the one --targets.file takes) whose targets are
    /// checked too.
    #[arg(short = 'f', long = "file", value_name = "FILE")]
    pub file: Option<PathBuf>,
    /// Modules in blackbox_exporter's format; without it the built-in
    /// tcp_connect, tls_connect, http_2xx and udp.
    #[arg(
        long = "modules.file",
        env = "PORTWARDEN_MODULES_FILE",
        value_name = "FILE"
    )]
    pub modules_file: Option<PathBuf>,
    /// The most any check may take (a module's own timeout is kept when
    /// shorter).
    #[arg(long, value_name = "DURATION", default_value = "5s", value_parser = parse_interval)]
    pub timeout: Duration,
    /// Checks at once, at most.
    #[arg(long, value_name = "N", default_value = "64", value_parser = parse_count::<1>)]
    pub concurrency: usize,
    /// Networks no check connects to after a redirect (CIDRs,
    /// comma-separated; empty: none).
    #[arg(
        long = "probe.deny",
        env = "PORTWARDEN_PROBE_DENY",
        value_name = "CIDRS",
        default_value = cidr::LINK_LOCAL,
        value_parser = cidr::parse_list
    )]
    pub probe_deny: cidr::Networks,
    /// Print a JSON array instead of lines.
    #[arg(long)]
    pub json: bool,
}

/// Flags of `portwarden why`.
#[derive(Debug, Clone, Args)]
pub struct WhyArgs {
    /// The port: PORT (TCP, a client on another host), PORT/udp,
    /// HOST:PORT (a client using that address of this host; [::1]:PORT
    /// for IPv6, localhost) or an http(s) URL.
    #[arg(value_name = "PORT|HOST:PORT|URL")]
    pub target: String,
    /// How long the connect to the port may take.
    #[arg(long, value_name = "DURATION", default_value = "2s", value_parser = parse_interval)]
    pub timeout: Duration,
    /// Print the answer as JSON (the verdict, each step with its status and
    /// evidence, the fix).
    #[arg(long)]
    pub json: bool,
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
    /// Watch: list again every INTERVAL (default 2s) until Ctrl-C. On a
    /// terminal the table is redrawn in place, rows that appeared (+),
    /// changed owner (~) or went (-) since the last draw marked; otherwise
    /// (or with --json) each change is printed as a JSON line (the events
    /// of --events.output), the ports listening at the start first.
    #[arg(
        long,
        value_name = "INTERVAL",
        num_args = 0..=1,
        default_missing_value = "2s",
        require_equals = false,
        value_parser = parse_interval
    )]
    pub watch: Option<Duration>,
    /// Print a JSON array instead of a table (schema in docs/commands.md).
    #[arg(long)]
    pub json: bool,
    /// Include sockets whose owners are all excluded.
    #[arg(long)]
    pub all: bool,
    /// Connect to every TCP listener once (HEALTH from the connect too, and
    /// connect_seconds in JSON). Without it no connection is made.
    #[arg(long, conflicts_with = "no_check")]
    pub check: bool,
    /// Make no connection (the default; kept for scripts).
    #[arg(long = "no-check")]
    pub no_check: bool,
    /// Timeout of each TCP check with --check (a hung port costs at most this).
    #[arg(
        long = "timeout",
        value_name = "DURATION",
        default_value = "1s",
        value_parser = parse_interval
    )]
    pub timeout: Duration,
}

/// A file's path (its contents are read where the setting is used, and an
/// error there names the setting with [`setting`]).
fn parse_file(s: &str) -> Result<PathBuf, String> {
    if s.is_empty() || s.contains('\0') {
        return Err("expected a file path".into());
    }
    Ok(PathBuf::from(s))
}

/// A proc root; empty is the default, which discovery knows.
fn parse_proc_root(s: &str) -> Result<PathBuf, String> {
    if s.contains('\0') {
        return Err("expected a directory path such as /proc or /host/proc".into());
    }
    Ok(PathBuf::from(s))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(args: &[&str]) -> Result<Settings, String> {
        let mut all = vec!["portwarden", "serve"];
        all.extend_from_slice(args);
        let argv: Vec<std::ffi::OsString> = all.iter().map(Into::into).collect();
        let cli = Cli::try_parse_from(&argv).map_err(|e| explain(&e, &argv).expect("explained"))?;
        let Some(Command::Serve(serve)) = cli.command else {
            panic!("serve")
        };
        Ok(*serve)
    }

    #[test]
    fn defaults_follow_the_spec() {
        let s = settings(&[]).expect("defaults are valid");
        assert_eq!(s.status_interval, Duration::from_secs(60));
        assert_eq!(s.http_interval(), s.status_interval);
        assert_eq!(s.udp_interval(), s.status_interval);
        assert_eq!(s.discovery_interval(), s.status_interval);
        assert_eq!(s.process_interval, Duration::from_secs(60));
        assert_eq!(s.check_timeout, Duration::from_secs(1));
        assert_eq!(s.max_parallel_ip_checks, 8);
        assert_eq!(s.http_concurrency, 10);
        assert!(s.http_detection);
        assert_eq!(s.probe_concurrency, 64);
        assert!(s.spread);
        assert_eq!(s.retention, Duration::from_secs(900));
        assert_eq!(s.listen_address, "[::]:9765".parse().expect("addr"));
        assert_eq!(s.telemetry_path, "/metrics");
    }

    #[test]
    fn bad_flag_values_name_the_flag() {
        let err = settings(&["--port.status-interval", "banana"]).expect_err("refused");
        assert_eq!(
            err.to_string(),
            "--port.status-interval: invalid duration 'banana' (expected e.g. 30s, 1m, 8h)"
        );
        let err = settings(&["--probe.timeout", "0s"]).expect_err("refused");
        assert!(
            err.to_string()
                .starts_with("--probe.timeout: must be more than zero"),
            "{err}"
        );
        let err = settings(&["--probe.http", "maybe"]).expect_err("refused");
        assert!(
            err.to_string()
                .starts_with("--probe.http: invalid boolean 'maybe'"),
            "{err}"
        );
        let err = settings(&["--web.telemetry-path", "metrics"]).expect_err("refused");
        assert!(
            err.to_string().starts_with("--web.telemetry-path:"),
            "{err}"
        );
        let err = settings(&["--probe.concurrency", "0"]).expect_err("refused");
        assert!(
            err.to_string()
                .starts_with("--probe.concurrency: invalid number '0'"),
            "{err}"
        );
    }

    #[test]
    fn collectors_are_on_unless_switched_off_and_the_last_flag_wins() {
        let on = |args: &[&str]| settings(args).expect("valid").collectors();
        assert_eq!(on(&[]), Collectors::default());
        let off = on(&["--no-collector.load", "--no-collector.info"]);
        assert!(!off.load && !off.info && off.health && off.baseline);
        assert!(on(&["--no-collector.load", "--collector.load"]).load);
        assert!(!on(&["--collector.baseline", "--no-collector.baseline"]).baseline);
        assert!(!on(&["--no-collector.health"]).health);
    }

    #[test]
    fn empty_proc_prefix_means_proc() {
        assert_eq!(parse_proc_root(""), Ok(PathBuf::new()));
        assert_eq!(
            parse_proc_root("/host/proc"),
            Ok(PathBuf::from("/host/proc"))
        );
    }

    #[test]
    fn settings_are_named_from_their_definition() {
        assert_eq!(
            setting("targets_file"),
            "--targets.file / PORTWARDEN_TARGETS_FILE"
        );
        assert_eq!(
            setting("status_interval"),
            "--port.status-interval / PORT_STATUS_INTERVAL"
        );
        assert_eq!(setting("file"), "--file");
        assert_eq!(flag("max_requests"), "--web.max-requests");
        assert_eq!(flag("no_such_setting"), "no_such_setting");
    }

    #[test]
    fn cli_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}
