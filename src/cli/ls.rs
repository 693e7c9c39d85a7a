//! `portwarden ls`: every listening port with its owner, as a table that fits
//! the terminal or as JSON (schema in the README).

use std::io::Write;
use std::sync::Arc;

use comfy_table::{ContentArrangement, Table, presets};
use serde::Serialize;

use super::printable;
use crate::config::{GlobalArgs, LsArgs};
use crate::discover::{Discoverer, Options};
use crate::error::Error;
use crate::exclude::{Exclusions, NamePattern};
use crate::model::{AcceptQueue, Family, Owner, Port, Proto};

/// Runs `ls`: one full discovery pass, filtered and printed to `out`;
/// warnings go to `warn`.
pub fn run(
    global: &GlobalArgs,
    args: &LsArgs,
    out: &mut dyn Write,
    warn: &mut dyn Write,
) -> Result<(), Error> {
    let process_filter = args.process.as_deref().map(NamePattern::new);
    let mut discoverer = Discoverer::new(Options {
        proc_root: global.proc_root.clone(),
        exclusions: Exclusions::new(&global.excluded_process_names)?,
        threads: 0,
        connections: false,
    })?;
    let mut discovery = discoverer.discover_full()?;
    crate::discover::sort_ports(&mut discovery.ports);
    let ports: Vec<&Port> = discovery
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
        .collect();

    if discovery.stats.fd_denied > 0 {
        writeln!(
            warn,
            "portwarden: warning: the fd tables of {} processes could not be read (run as root, or grant CAP_SYS_PTRACE and CAP_DAC_READ_SEARCH); their sockets are listed without owners",
            discovery.stats.fd_denied
        )?;
    }
    if args.json {
        write_json(&ports, out)
    } else {
        write_table(&ports, out)
    }
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
    accept_queue: Option<AcceptQueue>,
    owners: &'a [Arc<Owner>],
    owner_unknown_reason: Option<&'a str>,
    excluded: bool,
}

fn write_json(ports: &[&Port], out: &mut dyn Write) -> Result<(), Error> {
    let items: Vec<JsonPort<'_>> = ports
        .iter()
        .map(|p| JsonPort {
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
            accept_queue: p.socket.accept_queue,
            owners: &p.owners,
            owner_unknown_reason: p.owner_unknown_reason.as_deref(),
            excluded: p.excluded,
        })
        .collect();
    let mut out = std::io::BufWriter::with_capacity(64 * 1024, out);
    serde_json::to_writer(&mut out, &items).map_err(std::io::Error::from)?;
    out.write_all(b"\n")?;
    out.flush()?;
    Ok(())
}

fn write_table(ports: &[&Port], out: &mut dyn Write) -> Result<(), Error> {
    let mut table = Table::new();
    table
        .load_style(presets::NOTHING)
        .set_content_arrangement(ContentArrangement::Dynamic)
        .set_header([
            "PROTO", "ADDRESS", "PORT", "PID", "PROCESS", "USER", "QUEUE", "EXE",
        ]);
    for p in ports {
        let s = &p.socket;
        let proto = match s.family {
            Family::Ipv4 => s.proto.as_str().to_string(),
            Family::Ipv6 => format!("{}6", s.proto),
        };
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
        table.add_row([
            proto,
            s.address.to_string(),
            s.port.to_string(),
            pid,
            name,
            user,
            queue,
            exe,
        ]);
    }
    let mut out = std::io::BufWriter::with_capacity(64 * 1024, out);
    writeln!(out, "{table}")?;
    out.flush()?;
    Ok(())
}
