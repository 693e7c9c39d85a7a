//! `portwarden baseline show|accept|forget`: the baseline of expected ports,
//! edited under the same lock the exporter takes, so a running exporter
//! picks the change up at its next pass.

use std::io::Write;

use serde::Serialize;

use super::printable;
use crate::baseline::{self, Baseline, Expected};
use crate::config::{BaselineCommand, BaselineFilter, GlobalArgs};
use crate::error::Error;

/// Runs a baseline command, printing to `out`, notes to `note`.
pub fn run(
    global: &GlobalArgs,
    command: &BaselineCommand,
    out: &mut dyn Write,
    note: &mut dyn Write,
) -> Result<(), Error> {
    let dir = baseline::state_dir(global.state_dir.as_deref()).map_err(|e| Error::Config {
        setting: crate::config::setting("state_dir"),
        message: format!("no usable state directory: {e}"),
    })?;
    let state = |source| Error::State {
        dir: dir.clone(),
        source,
    };
    let (mut file, recovered) = Baseline::open(&dir).map_err(state)?;
    if let Some(r) = recovered {
        writeln!(
            note,
            "portwarden: the baseline was unreadable ({}); kept as {}, starting a fresh one",
            r.reason,
            r.kept_as.display()
        )?;
    }
    match command {
        BaselineCommand::Show { json } => show(&file, *json, out),
        BaselineCommand::Accept(filter) => {
            let mut discoverer = super::discoverer(global, false, false)?;
            let now: Vec<Expected> = baseline::from_ports(&discoverer.discover_full()?.ports)
                .into_iter()
                .filter(|p| matches(filter, p))
                .collect();
            let at = crate::value::time::now();
            let mut added = 0;
            file.update(waiting(&file, note), |entries| {
                for p in &now {
                    if entries.insert(p.clone(), at).is_none() {
                        added += 1;
                    }
                }
                added > 0
            })
            .map_err(state)?;
            writeln!(
                note,
                "portwarden: {added} ports added, {} expected in {}",
                file.entries().len(),
                file.path().display()
            )?;
            Ok(())
        }
        BaselineCommand::Forget { filter, all } => {
            forget(&mut file, filter, *all, note).map_err(|e| match e {
                Error::Output(source) => state(source),
                e => e,
            })
        }
    }
}

/// Says, once, that another process holds the baseline's lock.
fn waiting<'a>(file: &Baseline, note: &'a mut dyn Write) -> impl FnOnce() + 'a {
    let dir = file
        .path()
        .parent()
        .map(|d| d.display().to_string())
        .unwrap_or_default();
    move || {
        let _ = writeln!(
            note,
            "portwarden: waiting for the baseline's lock in {dir}, held by another process (up to {} s)",
            baseline::LOCK_WAIT.as_secs()
        );
    }
}

fn forget(
    file: &mut Baseline,
    filter: &BaselineFilter,
    all: bool,
    note: &mut dyn Write,
) -> Result<(), Error> {
    if !all && filter.is_empty() {
        return Err(Error::Config {
            setting: "baseline forget".into(),
            message: "say which ports (--port, --proto, --netns, --process) or --all".into(),
        });
    }
    let mut removed = 0;
    file.update(waiting(file, note), |entries| {
        let before = entries.len();
        entries.retain(|p, _| !(all || matches(filter, p)));
        removed = before - entries.len();
        removed > 0
    })
    .map_err(Error::Output)?;
    if removed == 0 {
        return Err(Error::NothingMatched(
            "no expected port matches; see `portwarden baseline show`".into(),
        ));
    }
    writeln!(
        note,
        "portwarden: {removed} ports forgotten, {} expected",
        file.entries().len()
    )?;
    Ok(())
}

#[derive(Serialize)]
struct JsonEntry<'a> {
    #[serde(flatten)]
    port: &'a Expected,
    /// Expected since, in seconds since the epoch.
    since: u64,
}

fn show(file: &Baseline, json: bool, out: &mut dyn Write) -> Result<(), Error> {
    let mut out = std::io::BufWriter::new(out);
    if json {
        let items: Vec<JsonEntry<'_>> = file
            .entries()
            .iter()
            .map(|(port, since)| JsonEntry {
                port,
                since: *since,
            })
            .collect();
        serde_json::to_writer(&mut out, &items).map_err(std::io::Error::from)?;
        writeln!(out)?;
    } else {
        let mut table = super::table(&["PROTO", "PORT", "NETNS", "PROCESS", "EXE", "SINCE"]);
        for (p, since) in file.entries() {
            table.add_row([
                p.proto.as_str().to_string(),
                p.port.to_string(),
                printable(&p.netns).into_owned(),
                printable(&p.process_name).into_owned(),
                printable(&p.exe_path).into_owned(),
                crate::value::time::utc(*since),
            ]);
        }
        writeln!(out, "{}", super::one_line_rows(&mut table))?;
    }
    out.flush()?;
    Ok(())
}
/// Whether `p` is one of the ports `filter` names.
fn matches(filter: &BaselineFilter, p: &Expected) -> bool {
    (filter.ports.is_empty() || filter.ports.contains(&p.port))
        && filter.proto.is_none_or(|proto| proto == p.proto)
        && filter.netns.as_ref().is_none_or(|n| **n == *p.netns)
        && filter
            .process
            .as_deref()
            .is_none_or(|name| crate::exclude::NamePattern::new(name).matches(&p.process_name))
}
