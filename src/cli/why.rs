//! `portwarden why`: gathers what [`crate::why::walk`] looks at — one
//! discovery pass with the firewall read (what `ls` reads, once), the
//! accept queues a second time, a connect to each listener of the port,
//! its owners' run state, the baseline and the exporter's record of
//! changes in the state directory, and, when nothing listens, what
//! systemd says of the unit that held it — then prints the answer.

use std::io::Write;
use std::net::SocketAddr;
use std::path::Path;

use crate::config::{GlobalArgs, WhyArgs};
use crate::discover::cgroup::Unit;
use crate::discover::{Discoverer, Discovery, systemd};
use crate::error::Error;
use crate::model::{Port, Proto};
use crate::probe;
use crate::why::{
    self, ConflictFact, Connect, ExpectedFact, Facts, Listener, OwnerFacts, PastEvent, Question,
    UnitFacts,
};

/// Journal lines shown for the unit that should hold the port.
const JOURNAL_LINES: usize = 5;

/// Runs `why`; whether the port is healthy and reachable.
pub fn run(global: &GlobalArgs, args: &WhyArgs, out: &mut dyn Write) -> Result<bool, Error> {
    let question = Question::parse(&args.target).map_err(|message| Error::Config {
        setting: "the port asked (PORT|HOST:PORT|URL)".into(),
        message,
    })?;
    let mut discoverer = super::discoverer(global, false, true)?;
    let discovery = discoverer.discover_full()?;
    let state_dir = crate::baseline::state_dir(global.state_dir.as_deref()).ok();
    let facts = gather(
        &discoverer,
        &discovery,
        question,
        state_dir.as_deref(),
        args.timeout,
    )?;
    let answer = why::walk(&facts);
    if args.json {
        serde_json::to_writer(&mut *out, &answer).map_err(std::io::Error::from)?;
        out.write_all(b"\n")?;
    } else {
        out.write_all(why::render(&answer).as_bytes())?;
    }
    out.flush()?;
    Ok(answer.healthy)
}

/// Everything the walk needs, read once.
pub fn gather(
    discoverer: &Discoverer,
    discovery: &Discovery,
    question: Question,
    state_dir: Option<&Path>,
    timeout: std::time::Duration,
) -> Result<Facts, Error> {
    let on_port = |p: &&Port| p.socket.port == question.port;
    let ports: Vec<&Port> = discovery
        .ports
        .iter()
        .filter(on_port)
        .filter(|p| p.socket.proto == question.proto)
        .collect();
    let other_proto = discovery
        .ports
        .iter()
        .filter(on_port)
        .filter(|p| p.socket.proto != question.proto)
        .map(|p| {
            format!(
                "{} {}",
                p.socket.proto,
                SocketAddr::new(p.socket.address, p.socket.port)
            )
        })
        .collect();
    let again = match question.proto {
        Proto::Tcp if !ports.is_empty() => discoverer.listeners_again()?,
        _ => Default::default(),
    };
    let connects = connect_all(discovery, &ports, timeout)?;
    let listeners = ports
        .iter()
        .zip(connects)
        .map(|(p, connect)| {
            let s = &p.socket;
            let owners = p
                .owners
                .iter()
                .map(|o| {
                    let (state, frozen) = discoverer.run_state(o.pid);
                    OwnerFacts {
                        pid: o.pid,
                        process_name: o.process_name.clone(),
                        exe_path: o.exe_path.clone(),
                        unit: crate::model::unit_display(Some(o), p.activation.as_deref()),
                        state,
                        frozen,
                    }
                })
                .collect();
            let host = &*p.namespace == "host";
            Listener {
                address: s.address,
                family: s.family,
                v6only: s.v6only,
                device: (s.bound_if != 0).then(|| match host {
                    true => crate::discover::interface_name(s.bound_if).to_string(),
                    false => format!("if{}", s.bound_if),
                }),
                netns: p.netns.to_string(),
                host,
                owners,
                owner_unknown: p.owner_unknown_reason.as_deref().map(str::to_string),
                queue: s.accept_queue,
                queue_again: again.get(&s.inode).copied().flatten(),
                connect,
                exposure: p.exposure.as_deref().cloned(),
            }
        })
        .collect::<Vec<_>>();
    let expected = match state_dir {
        Some(dir) => expected(dir, &question),
        None => vec![],
    };
    let events = match state_dir {
        Some(dir) => past_events(dir, &question),
        None => vec![],
    };
    // systemd is asked only when nothing listens: the unit that last held it.
    let unit = match listeners.is_empty() {
        true => events
            .iter()
            .rev()
            .find_map(|(_, unit)| unit.clone())
            .map(|unit| UnitFacts {
                name: unit.name().to_string(),
                state: systemd::unit_state(&unit),
                journal: systemd::journal(&unit, JOURNAL_LINES),
            }),
        false => None,
    };
    let conflicts = crate::conflicts::find(&discovery.ports, &discovery.replaced)
        .into_iter()
        .filter(|c| c.proto == question.proto && c.port == question.port)
        .map(|c| ConflictFact {
            kind: c.kind.as_str(),
            netns: c.netns.to_string(),
            detail: c.detail,
        })
        .collect();
    Ok(Facts {
        question,
        listeners,
        other_proto,
        expected,
        events: events.into_iter().map(|(e, _)| e).collect(),
        unit,
        conflicts,
    })
}

/// Connects to each TCP listener once, from inside its namespace, all at
/// once; `None` for UDP or a namespace we may not enter.
fn connect_all(
    discovery: &Discovery,
    ports: &[&Port],
    timeout: std::time::Duration,
) -> Result<Vec<Option<Connect>>, Error> {
    let vias = probe::vias(discovery);
    let jobs: Vec<Option<(SocketAddr, probe::Via)>> = ports
        .iter()
        .map(|p| {
            let via = vias.get(&*p.namespace)?.clone();
            (p.socket.proto == Proto::Tcp).then(|| (probe::target(&p.socket), via))
        })
        .collect();
    if jobs.iter().all(Option::is_none) {
        return Ok(jobs.iter().map(|_| None).collect());
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    Ok(runtime.block_on(async {
        let mut set = tokio::task::JoinSet::new();
        for (i, job) in jobs.iter().enumerate() {
            if let Some((target, via)) = job.clone() {
                set.spawn(async move {
                    let done = probe::tcp::connect_once(target, &via, timeout).await;
                    (i, target, done)
                });
            }
        }
        let mut out: Vec<Option<Connect>> = jobs.iter().map(|_| None).collect();
        while let Some(done) = set.join_next().await {
            if let Ok((i, target, done)) = done {
                out[i] = Some(match done {
                    Ok(seconds) => Connect {
                        target,
                        alive: true,
                        seconds,
                        error: None,
                    },
                    Err(e) => Connect {
                        target,
                        alive: false,
                        seconds: 0.0,
                        error: Some(e),
                    },
                });
            }
        }
        out
    }))
}

/// The baseline's entries for the asked port (read only, no lock: writes
/// are atomic renames).
fn expected(dir: &Path, q: &Question) -> Vec<ExpectedFact> {
    let Ok(text) = std::fs::read(dir.join(crate::baseline::FILE)) else {
        return vec![];
    };
    let entries = match crate::baseline::parse(&text) {
        Ok(e) => e,
        Err(crate::baseline::ParseError::Newer { readable, .. }) => readable,
        Err(_) => return vec![],
    };
    entries
        .into_iter()
        .filter(|(e, _)| e.proto == q.proto && e.port == q.port)
        .map(|(e, since)| ExpectedFact {
            netns: e.netns.to_string(),
            process_name: e.process_name.to_string(),
            exe_path: e.exe_path.to_string(),
            since,
        })
        .collect()
}

/// The recorded changes of the asked port, oldest first, each with its
/// unit as systemd names it.
fn past_events(dir: &Path, q: &Question) -> Vec<(PastEvent, Option<Unit>)> {
    crate::events::history::changes(dir)
        .into_iter()
        .filter(|c| c.proto == q.proto.as_str() && c.port == q.port)
        .map(|c| {
            let event = PastEvent {
                at: c.at,
                action: c.action,
                address: c.address,
                netns: c.netns,
                pid: c.pid,
                process_name: c.process_name,
                unit: c.unit.as_ref().map(Unit::display),
            };
            (event, c.unit)
        })
        .collect()
}
