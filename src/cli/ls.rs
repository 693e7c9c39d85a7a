//! `portwarden ls`: every listening port with its owner, as a table that fits
//! the terminal or as JSON (schema in docs/commands.md).

use std::io::Write;
use std::sync::Arc;

use serde::Serialize;

use super::printable;
use crate::config::{GlobalArgs, LsArgs};
use crate::discover::ids::IdMap;
use crate::discover::{Discoverer, Discovery};
use crate::error::Error;
use crate::exclude::NamePattern;
use crate::health::{self, Health};
use crate::model::{AcceptQueue, Family, Owner, Port, Proto};
use crate::probe;

/// Runs `ls`: one full discovery pass, filtered and printed to `out`;
/// warnings go to `warn`.
pub fn run(
    global: &GlobalArgs,
    args: &LsArgs,
    out: &mut dyn Write,
    warn: &mut dyn Write,
) -> Result<(), Error> {
    let mut discoverer = super::discoverer(global, false, true)?;
    if let Some(every) = args.watch {
        return super::watch::run(&mut discoverer, args, every, out);
    }
    let mut discovery = discoverer.discover_full()?;
    crate::discover::sort_ports(&mut discovery.ports);
    let ports = select(&discovery, args);

    if discovery.stats.fd_exhausted > 0 {
        writeln!(
            warn,
            "portwarden: warning: the fd tables of {} processes could not be read for want of open files (raise ulimit -n); their sockets are listed without owners",
            discovery.stats.fd_exhausted
        )?;
    }
    if discovery.stats.fd_denied > 0 {
        writeln!(
            warn,
            "portwarden: warning: the fd tables of {} processes could not be read (run as root, or grant CAP_SYS_PTRACE and CAP_DAC_READ_SEARCH); their sockets are listed without owners",
            discovery.stats.fd_denied
        )?;
    }
    let mut unreadable: Vec<&str> = discovery
        .namespaces
        .iter()
        .filter_map(|n| match &n.firewall {
            Some(crate::exposure::Firewall::Unreadable(why)) => Some(&**why),
            _ => None,
        })
        .collect();
    unreadable.dedup();
    for why in unreadable {
        writeln!(
            warn,
            "portwarden: warning: cannot read the firewall ruleset ({why}): the exposure of the ports there is unknown"
        )?;
    }
    let checks = assess(
        &discoverer,
        &discovery,
        &ports,
        args.check.then_some(args.timeout),
    )?;
    let conflicts = crate::conflicts::find(&discovery.ports, &discovery.replaced);
    let marks = Marks::of(&conflicts);
    if !args.json {
        for c in conflicts.iter().filter(|c| {
            ports
                .iter()
                .any(|p| (p.socket.proto, p.socket.port, &*p.netns) == (c.proto, c.port, &*c.netns))
        }) {
            writeln!(
                warn,
                "portwarden: conflict on {} port {} ({}): {}: {}",
                c.proto,
                c.port,
                printable(&c.netns),
                c.kind.as_str(),
                printable(&c.detail)
            )?;
        }
    }
    if args.json {
        write_json(&ports, &checks, &marks, out)
    } else {
        write_table(&ports, &checks, &marks, out)
    }
}

/// The kinds of conflict on each port number (protocol, port, namespace).
#[derive(Debug, Default)]
pub(super) struct Marks {
    by_port: std::collections::HashMap<(Proto, u16, Arc<str>), Vec<&'static str>>,
}

impl Marks {
    pub(super) fn of(conflicts: &[crate::conflicts::Conflict]) -> Marks {
        let mut marks = Marks::default();
        for c in conflicts {
            marks
                .by_port
                .entry((c.proto, c.port, Arc::clone(&c.netns)))
                .or_default()
                .push(c.kind.as_str());
        }
        marks
    }

    fn key(p: &Port) -> (Proto, u16, Arc<str>) {
        (p.socket.proto, p.socket.port, Arc::clone(&p.netns))
    }

    fn get(&self, p: &Port) -> &[&'static str] {
        self.by_port.get(&Marks::key(p)).map_or(&[], Vec::as_slice)
    }
}

/// The ports `ls`'s filters let through, in `discovery`'s order.
pub(super) fn select<'d>(discovery: &'d Discovery, args: &LsArgs) -> Vec<&'d Port> {
    let process_filter = args.process.as_deref().map(NamePattern::new);
    discovery
        .ports
        .iter()
        .filter(|p| args.all || !p.excluded)
        .filter(|p| match (args.tcp, args.udp) {
            (true, false) => p.socket.proto == Proto::Tcp,
            (false, true) => p.socket.proto == Proto::Udp,
            _ => true,
        })
        .filter(|p| args.ports.is_empty() || args.ports.contains(&p.socket.port))
        .filter(|p| match &process_filter {
            Some(f) => p.owners.iter().any(|o| f.matches(&o.process_name)),
            None => true,
        })
        .collect()
}

/// What checking a socket told.
#[derive(Debug, Clone, Copy)]
struct Checked {
    health: Health,
    /// Connect time of a successful TCP check.
    connect_seconds: Option<f64>,
}

/// Looks at the accept queues a second time: a queue full both times is a
/// hung application. With a `timeout` (`--check`), first checks every TCP
/// listener in `ports` once (a connect to its own address, from inside its
/// namespace; 256 at a time; none lasts past `timeout`). No history here,
/// so never `slow`.
fn assess(
    discoverer: &Discoverer,
    discovery: &Discovery,
    ports: &[&Port],
    timeout: Option<std::time::Duration>,
) -> Result<IdMap<u64, Checked>, Error> {
    let outcomes = match timeout {
        Some(timeout) => connect_all(discovery, ports, timeout)?,
        None => IdMap::default(),
    };
    let second = discoverer.listeners_again()?;
    Ok(ports
        .iter()
        .map(|p| {
            let s = &p.socket;
            let outcome = outcomes.get(&s.inode).filter(|o| !o.unsupported);
            let full_first = s.accept_queue.is_some_and(|q| q.is_full());
            let full_now = second
                .get(&s.inode)
                .is_some_and(|q| q.is_some_and(|q| q.is_full()));
            let signals = health::Signals {
                proto: s.proto,
                // Gone by the second look: down.
                present: s.proto == Proto::Udp || second.contains_key(&s.inode),
                tcp_alive: outcome.map(|o| o.alive),
                queue_full_passes: match (full_first, full_now) {
                    (true, true) => 2,
                    (_, true) => 1,
                    _ => 0,
                },
                http_stopped: false,
                slow: false,
            };
            let health = match timeout {
                Some(_) => health::assess(&signals),
                None => health::assess_unchecked(&signals),
            };
            let checked = Checked {
                health,
                connect_seconds: outcome.filter(|o| o.alive).map(|o| o.seconds),
            };
            (s.inode, checked)
        })
        .collect())
}

/// Connects to every TCP listener in `ports` once, 256 at a time.
fn connect_all(
    discovery: &Discovery,
    ports: &[&Port],
    timeout: std::time::Duration,
) -> Result<IdMap<u64, probe::tcp::TcpOutcome>, Error> {
    const CONCURRENCY: usize = 256;
    let vias = probe::vias(discovery);
    let jobs: Vec<(u64, std::net::SocketAddr, probe::Via)> = ports
        .iter()
        .filter(|p| p.socket.proto == Proto::Tcp)
        .filter_map(|p| {
            let via = vias.get(&*p.namespace)?.clone();
            Some((p.socket.inode, probe::target(&p.socket), via))
        })
        .collect();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let outcomes: IdMap<u64, probe::tcp::TcpOutcome> = runtime.block_on(async {
        let limit = std::sync::Arc::new(tokio::sync::Semaphore::new(CONCURRENCY));
        let mut set = tokio::task::JoinSet::new();
        for (inode, target, via) in jobs {
            let limit = std::sync::Arc::clone(&limit);
            set.spawn(async move {
                let _permit = limit.acquire_owned().await;
                (inode, probe::tcp::probe(&[target], &via, timeout, 1).await)
            });
        }
        let mut out = IdMap::default();
        while let Some(done) = set.join_next().await {
            if let Ok((inode, outcome)) = done {
                out.insert(inode, outcome);
            }
        }
        out
    });
    Ok(outcomes)
}

/// One element of the `ls --json` array.
#[derive(Serialize)]
struct JsonPort<'a> {
    proto: Proto,
    family: Family,
    address: String,
    port: u16,
    inode: u64,
    uid: u32,
    netns: &'a str,
    /// The primary owner's container (short id) and Kubernetes pod uid.
    container: Option<&'a str>,
    pod_uid: Option<&'a str>,
    /// The primary owner's systemd unit, and the row's as the table shows
    /// it (after the socket unit that passed the socket).
    unit: Option<&'a crate::discover::cgroup::Unit>,
    unit_display: Option<String>,
    socket_activation: Option<&'a crate::model::Activation>,
    accept_queue: Option<AcceptQueue>,
    /// `ok`, `hung`, `down` or `unknown` (`--check` in a namespace we may
    /// not enter).
    health: Option<&'static str>,
    /// Connect time of the check, when it succeeded.
    connect_seconds: Option<f64>,
    owners: &'a [Arc<Owner>],
    owner_unknown_reason: Option<&'a str>,
    excluded: bool,
    /// Kinds of conflict on its port number (address, reuseport, replaced_exe).
    conflicts: &'a [&'static str],
    /// Whether outside hosts may reach it, by the firewall, and the rule
    /// that decided it.
    exposure: Option<&'a crate::exposure::Exposure>,
}

fn write_json(
    ports: &[&Port],
    checks: &IdMap<u64, Checked>,
    marks: &Marks,
    out: &mut dyn Write,
) -> Result<(), Error> {
    let items: Vec<JsonPort<'_>> = ports
        .iter()
        .map(|p| JsonPort {
            health: checks.get(&p.socket.inode).map(|c| c.health.as_str()),
            connect_seconds: checks.get(&p.socket.inode).and_then(|c| c.connect_seconds),
            proto: p.socket.proto,
            family: p.socket.family,
            address: p.socket.address.to_string(),
            port: p.socket.port,
            inode: p.socket.inode,
            uid: p.socket.uid,
            netns: &p.netns,
            container: p
                .primary_owner()
                .and_then(|o| o.container.as_ref())
                .map(|c| c.id.as_str()),
            pod_uid: p
                .primary_owner()
                .and_then(|o| o.container.as_ref())
                .and_then(|c| c.pod_uid.as_deref()),
            unit: p.primary_owner().and_then(|o| o.unit.as_ref()),
            unit_display: crate::model::unit_display(p.primary_owner(), p.activation.as_deref()),
            socket_activation: p.activation.as_deref(),
            accept_queue: p.socket.accept_queue,
            owners: &p.owners,
            owner_unknown_reason: p.owner_unknown_reason.as_deref(),
            excluded: p.excluded,
            conflicts: marks.get(p),
            exposure: p.exposure.as_deref(),
        })
        .collect();
    let mut out = std::io::BufWriter::with_capacity(64 * 1024, out);
    serde_json::to_writer(&mut out, &items).map_err(std::io::Error::from)?;
    out.write_all(b"\n")?;
    out.flush()?;
    Ok(())
}

/// The table's columns.
pub(super) const COLUMNS: [&str; 11] = [
    "PROTO", "ADDRESS", "PORT", "PID", "PROCESS", "USER", "UNIT", "QUEUE", "HEALTH", "EXPOSURE",
    "EXE",
];

fn write_table(
    ports: &[&Port],
    checks: &IdMap<u64, Checked>,
    marks: &Marks,
    out: &mut dyn Write,
) -> Result<(), Error> {
    let mut table = super::table(&COLUMNS);
    for p in ports {
        table.add_row(row(p, checks, marks));
    }
    let mut out = std::io::BufWriter::with_capacity(64 * 1024, out);
    writeln!(out, "{}", super::one_line_rows(&mut table))?;
    out.flush()?;
    Ok(())
}

/// A port's row of the table, [`COLUMNS`] in order.
fn row(p: &Port, checks: &IdMap<u64, Checked>, marks: &Marks) -> [String; 11] {
    let s = &p.socket;
    let queue = match s.accept_queue {
        Some(AcceptQueue {
            current,
            max: Some(max),
            ..
        }) => format!("{current}/{max}"),
        Some(AcceptQueue {
            current, max: None, ..
        }) => format!("{current}/?"),
        None => "-".to_string(),
    };
    let (pid, name, user, exe) = match p.primary_owner() {
        Some(o) => {
            let pid = match p.owners.len() {
                1 => o.pid.to_string(),
                n => format!("{} (+{})", o.pid, n - 1),
            };
            (
                pid,
                printable(&o.process_name).into_owned(),
                printable(&o.user).into_owned(),
                printable(&o.exe_path).into_owned(),
            )
        }
        None => ("-".into(), "?".into(), "-".into(), "-".into()),
    };
    let unit = crate::model::unit_display(p.primary_owner(), p.activation.as_deref())
        .map_or_else(|| "-".to_string(), |u| printable(&u).into_owned());
    let health = checks.get(&s.inode).map_or("-", |c| c.health.as_str());
    let health = match marks.get(p) {
        [] => health.to_string(),
        kinds => format!("{health} !{}", kinds.join(",")),
    };
    [
        proto_label(s.proto, s.family),
        s.address.to_string(),
        s.port.to_string(),
        pid,
        name,
        user,
        unit,
        queue,
        health,
        p.exposure.as_deref().map_or("-", |e| e.word()).to_string(),
        exe,
    ]
}

/// The PROTO cell: `tcp`, `tcp6`, `udp`, `udp6`.
pub(super) fn proto_label(proto: Proto, family: Family) -> String {
    match family {
        Family::Ipv4 => proto.as_str().to_string(),
        Family::Ipv6 => format!("{proto}6"),
    }
}

/// The rows of `ports` as `ls` draws them, each with the inode it shows,
/// checked as `ls` without `--check` checks (the accept queue looked at
/// twice).
pub(super) fn rows(
    discoverer: &Discoverer,
    discovery: &Discovery,
    ports: &[&Port],
) -> Result<Vec<(u64, [String; 11])>, Error> {
    let checks = assess(discoverer, discovery, ports, None)?;
    let conflicts = crate::conflicts::find(&discovery.ports, &discovery.replaced);
    let marks = Marks::of(&conflicts);
    Ok(ports
        .iter()
        .map(|p| (p.socket.inode, row(p, &checks, &marks)))
        .collect())
}
