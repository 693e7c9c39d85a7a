//! `portwarden ls --watch [INTERVAL]`: `ls` again and again until Ctrl-C.
//!
//! On a terminal (and without `--json`) the table is redrawn in place on
//! the terminal's alternate screen, each row that appeared since the last
//! draw marked `+`, one whose owner changed `~`, and the rows that went
//! shown once more, marked `-`. Ctrl-C (or SIGTERM) ends it between two
//! draws and leaves the terminal as it was: the alternate screen left, the
//! cursor shown again.
//!
//! Elsewhere (a pipe, a file, or `--json`) each change is printed as one
//! JSON line — the events of `--events.output`, the ports listening at the
//! start first.

use std::collections::HashMap;
use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant, SystemTime};

use super::ls::{COLUMNS, proto_label, rows, select};
use crate::config::LsArgs;
use crate::discover::Discoverer;
use crate::error::Error;
use crate::events::{Action, Event, Key, Tracker};
use crate::model::Port;

/// Takes SIGINT and SIGTERM: noted, acted on between draws, so the
/// terminal is always restored.
fn take_stops() {
    crate::discover::os::note_stops();
}

/// Waits `every`, or less if asked to stop; true if asked.
fn wait(every: Duration) -> bool {
    let until = Instant::now() + every;
    while Instant::now() < until {
        if crate::discover::os::stop_asked() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50).min(until - Instant::now()));
    }
    crate::discover::os::stop_asked()
}

/// The alternate screen, and the cursor hidden.
const ENTER: &str = "\x1b[?1049h\x1b[?25l";
/// The cursor shown, the alternate screen left: the terminal as it was.
const LEAVE: &str = "\x1b[?25h\x1b[?1049l";
/// Home, and the screen cleared.
const CLEAR: &str = "\x1b[H\x1b[2J";

/// Runs until SIGINT or SIGTERM; writes to `out`.
pub fn run(
    discoverer: &mut Discoverer,
    args: &LsArgs,
    every: Duration,
    out: &mut dyn Write,
) -> Result<(), Error> {
    take_stops();
    let host = crate::discover::own::host_name();
    let terminal = !args.json && std::io::stdout().is_terminal();
    let mut tracker = Tracker::new();
    if terminal {
        out.write_all(ENTER.as_bytes())?;
    }
    let drawn = draw_until_stopped(discoverer, args, every, out, &mut tracker, terminal, &host);
    if terminal {
        out.write_all(LEAVE.as_bytes())?;
        out.flush()?;
    }
    drawn
}

fn draw_until_stopped(
    discoverer: &mut Discoverer,
    args: &LsArgs,
    every: Duration,
    out: &mut dyn Write,
    tracker: &mut Tracker,
    terminal: bool,
    host: &str,
) -> Result<(), Error> {
    let mut first = true;
    loop {
        let mut discovery = if first {
            discoverer.discover_full()?
        } else {
            discoverer.refresh()?
        };
        first = false;
        crate::discover::sort_ports(&mut discovery.ports);
        let ports = select(&discovery, args);
        let events = tracker.observe_ports(ports.iter().copied(), SystemTime::now(), |_| true);
        if terminal {
            let table = rows(discoverer, &discovery, &ports)?;
            draw(out, host, every, &ports, table, &events)?;
        } else {
            for e in &events {
                serde_json::to_writer(&mut *out, &e.to_json(host)).map_err(std::io::Error::from)?;
                out.write_all(b"\n")?;
            }
        }
        out.flush()?;
        if wait(every) {
            return Ok(());
        }
    }
}

/// One screen: a title line, then the table with its marks.
fn draw(
    out: &mut dyn Write,
    host: &str,
    every: Duration,
    ports: &[&Port],
    table_rows: Vec<(u64, [String; 11])>,
    events: &[Event],
) -> Result<(), Error> {
    let marks: HashMap<&Key, &'static str> = events
        .iter()
        .filter_map(|e| match e.action {
            Action::Opened => Some((&e.key, "+")),
            Action::OwnerChanged => Some((&e.key, "~")),
            _ => None,
        })
        .collect();
    let mut header = vec![""];
    header.extend(COLUMNS);
    let mut table = super::table(&header);
    for (p, (_, row)) in ports.iter().zip(table_rows) {
        let mark = marks.get(&Key::of(p)).copied().unwrap_or("");
        let mut cells = vec![mark.to_string()];
        cells.extend(row);
        table.add_row(cells);
    }
    for e in events.iter().filter(|e| e.action == Action::Closed) {
        table.add_row(gone_row(e));
    }
    let now = crate::value::time::utc(crate::value::time::unix_secs(SystemTime::now()));
    write!(
        out,
        "{CLEAR}Every {every:?}: portwarden ls · {} · {now} · +{} -{} ~{} · Ctrl-C to end\r\n\r\n",
        super::printable(host),
        marks.values().filter(|m| **m == "+").count(),
        events.iter().filter(|e| e.action == Action::Closed).count(),
        marks.values().filter(|m| **m == "~").count(),
    )?;
    let text = super::one_line_rows(&mut table).to_string();
    // On the alternate screen a bare newline may not return the carriage.
    out.write_all(text.replace('\n', "\r\n").as_bytes())?;
    out.write_all(b"\r\n")?;
    Ok(())
}

/// A row that went, from its last event: marked `-`, health `gone`.
fn gone_row(e: &Event) -> Vec<String> {
    let printable = |s: &str| super::printable(s).into_owned();
    let (pid, name, user, unit, exe) = match e.owner.as_deref() {
        Some(o) => (
            o.pid.to_string(),
            printable(&o.process_name),
            printable(&o.user),
            o.unit
                .as_ref()
                .map_or_else(|| "-".to_string(), |u| printable(&u.display())),
            printable(&o.exe_path),
        ),
        None => ("-".into(), "?".into(), "-".into(), "-".into(), "-".into()),
    };
    vec![
        "-".into(),
        proto_label(e.key.proto, e.family),
        e.key.address.to_string(),
        e.key.port.to_string(),
        pid,
        name,
        user,
        unit,
        "-".into(),
        "gone".into(),
        exe,
    ]
}
