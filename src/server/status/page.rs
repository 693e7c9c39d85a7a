//! `/`: the status page, rendered here from the snapshot as plain HTML — a
//! table that works without JavaScript (filter, sort and group by query,
//! refresh by reload) — and refreshed in place by `assets/status.js`, which
//! fetches this same page and swaps its live part. No inline script or
//! style: the Content-Security-Policy allows only our own assets.

use std::fmt::Write;
use std::time::SystemTime;

use crate::value::time::{unix_secs, utc};

use super::view::{self, Group, Query, Row, SortKey};
use crate::engine::Snapshot;
use crate::engine::history::{self, Day};
use crate::health::Health;

/// Text as HTML (in content and in quoted attributes).
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            // Controls and the marks that reorder text (a process may
            // name itself with them) written out as in `ls`'s table:
            // nothing can hide, break or reverse a row.
            c if crate::text::hidden(c) => out.extend(c.escape_default()),
            c => out.push(c),
        }
    }
    out
}

/// `<time>` of an instant, with how long ago it was.
fn time(t: Option<SystemTime>, now: SystemTime) -> String {
    match t {
        None => "never".to_string(),
        Some(t) => {
            let ago = now.duration_since(t).map_or(0, |d| d.as_secs());
            let utc = utc(unix_secs(t));
            format!(
                "<time datetime=\"{}\">{} ({ago} s ago)</time>",
                esc(&utc),
                esc(&utc)
            )
        }
    }
}

/// The page's query, kept in the links it writes (sort headers).
fn link(q: &Query, sort: SortKey, descending: bool) -> String {
    let mut s = format!(
        "?sort={}&amp;dir={}",
        sort.name(),
        if descending { "desc" } else { "asc" }
    );
    if q.arrange.group != Group::None {
        s.push_str("&amp;group=");
        s.push_str(q.arrange.group.name());
    }
    if let Some(unit) = &q.filter.unit {
        s.push_str("&amp;unit=");
        s.push_str(&esc(&encode(unit)));
    }
    if !q.filter.words.is_empty() {
        s.push_str("&amp;q=");
        s.push_str(&esc(&encode(&q.filter.words.join(" "))));
    }
    s
}

/// Percent-encodes a query value.
fn encode(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

/// The minimum width, in minutes, of a span on the bar (a day is 1,440: a
/// minute alone would be a fraction of a pixel), and of a bad one, which
/// must be seen.
const MIN_SPAN: u32 = 5;
const MIN_BAD: u32 = 15;

/// A day as a bar of spans: grey where there is no data; hung and down
/// spans drawn last, at least [`MIN_BAD`] minutes wide.
pub fn bar(h: &Day, now: u32) -> String {
    let first = now.saturating_sub(history::MINUTES - 1);
    let spans: Vec<history::Span> = h.spans(now).collect();
    let mut s = format!(
        "<svg class=\"bar\" viewBox=\"0 0 {} 10\" preserveAspectRatio=\"none\" role=\"img\" aria-label=\"last 24 hours\"><rect class=\"nodata\" width=\"{}\" height=\"10\"/>",
        history::MINUTES,
        history::MINUTES
    );
    let bad = |h: Health| matches!(h, Health::Down | Health::Hung);
    for pass in [false, true] {
        for sp in spans.iter().filter(|sp| bad(sp.worst) == pass) {
            let x = sp.start - first;
            let w = sp.minutes.max(if pass { MIN_BAD } else { MIN_SPAN });
            // Wider than its minutes: it grows to the left at the bar's end.
            let x = x.min(history::MINUTES.saturating_sub(w));
            let from = utc(u64::from(sp.start) * 60);
            let _ = write!(
                s,
                "<rect class=\"h-{}\" x=\"{x}\" width=\"{w}\" height=\"10\" data-start=\"{}\" data-minutes=\"{}\"><title>{} from {} for {} min{}</title></rect>",
                sp.worst,
                u64::from(sp.start) * 60,
                sp.minutes,
                sp.worst,
                esc(&from),
                sp.minutes,
                sp.connect_seconds
                    .map(|c| format!(", connect {}", view::duration(c)))
                    .unwrap_or_default()
            );
        }
    }
    s.push_str("</svg>");
    s
}

fn health_badge(h: Health) -> String {
    format!("<span class=\"health h-{h}\">{h}</span>")
}

const COLUMNS: [(SortKey, &str, &str); 13] = [
    (SortKey::Proto, "Proto", "c-proto"),
    (SortKey::Address, "Address", "c-address"),
    (SortKey::Port, "Port", "c-port"),
    (SortKey::Netns, "Netns / container", "c-netns"),
    (SortKey::Process, "Process", "c-process"),
    (SortKey::User, "User", "c-user"),
    (SortKey::Unit, "Unit", "c-unit"),
    (SortKey::Health, "Health", "c-health"),
    (SortKey::Connect, "Connect", "c-connect"),
    (SortKey::Queue, "Queue", "c-queue"),
    (SortKey::Uptime, "Last 24 h", "c-bar"),
    (SortKey::Uptime, "Uptime 1 h / 24 h", "c-uptime"),
    (SortKey::Port, "", "c-badge"),
];

/// The health badge, the socket's exposure (what decided it on hover),
/// and a mark for each conflict on the port (who is in it on hover).
fn health_cell(r: &Row<'_>) -> String {
    let mut cell = health_badge(r.health());
    if let Some(e) = r.socket.and_then(|s| s.exposure.as_deref()) {
        let _ = write!(
            cell,
            " <span class=\"exposure x-{}\" title=\"{}\">{}</span>",
            e.word(),
            esc(&e.detail().unwrap_or_default()),
            e.word()
        );
    }
    for c in r.conflicts {
        let _ = write!(
            cell,
            " <span class=\"conflict\" title=\"{}\">conflict: {}</span>",
            esc(&c.detail),
            c.kind.as_str()
        );
    }
    cell
}

fn row(out: &mut String, r: &Row<'_>, now: u32) {
    let p = r.port;
    let key = format!(
        "{}/{}/{}/{}",
        r.proto_label(),
        r.address(),
        p.key.port,
        p.key.netns
    );
    let _ = write!(
        out,
        "<tr data-key=\"{}\" data-q=\"{}\" data-health=\"{}\"{}>",
        esc(&key),
        esc(&r.text()),
        r.health(),
        if p.present { "" } else { " class=\"gone\"" }
    );
    let netns = match r.container() {
        Some(c) if c != &*p.key.netns => {
            format!("{} <small>container {}</small>", esc(&p.key.netns), esc(c))
        }
        _ => esc(&p.key.netns),
    };
    let process = match r.owner() {
        Some(o) => format!(
            "<span title=\"{}\">{}</span> <small>{}</small>",
            esc(&p.exe_path),
            esc(&p.process_name),
            o.pid
        ),
        None if p.process_name.is_empty() => "<small>unknown</small>".to_string(),
        None => esc(&p.process_name),
    };
    let connect = r.connect_seconds().map(view::duration).unwrap_or_default();
    let queue = match r.queue().map(|q| (q.current, q.max)) {
        Some((current, Some(max))) => format!(
            "<meter min=\"0\" max=\"{m}\" low=\"{low}\" high=\"{high}\" optimum=\"0\" value=\"{current}\" title=\"{current} of {max} waiting to be accepted\"></meter> {current}/{max}",
            m = max.max(1),
            low = f64::from(max.max(1)) * 0.5,
            high = f64::from(max.max(1)) * 0.9,
        ),
        Some((current, None)) => format!("{current}/?"),
        None => String::new(),
    };
    let badge = format!(
        "<a class=\"badge-link\" href=\"badge/{}/{}.svg?netns={}\" title=\"badge\">svg</a>",
        p.key.proto,
        p.key.port,
        esc(&encode(&p.key.netns))
    );
    let cells = [
        esc(&r.proto_label()),
        esc(&r.address()),
        p.key.port.to_string(),
        netns,
        process,
        esc(r.user()),
        r.unit().map(|u| esc(&u)).unwrap_or_default(),
        health_cell(r),
        connect,
        queue,
        bar(&p.day, now),
        format!(
            "{} / {}",
            view::percent(r.uptime.0),
            view::percent(r.uptime.1)
        ),
        badge,
    ];
    for ((_, _, class), cell) in COLUMNS.iter().zip(cells) {
        let _ = write!(out, "<td class=\"{class}\">{cell}</td>");
    }
    out.push_str("</tr>\n");
}

fn ports_table(out: &mut String, snapshot: &Snapshot, q: &Query, now: u32) {
    let mut rows = view::rows(snapshot, q, now);
    let matching = rows.len();
    rows.truncate(q.limit.unwrap_or(view::PAGE_ROWS));
    out.push_str("<div class=\"scroll\"><table id=\"ports\"><thead><tr>");
    for (key, title, class) in COLUMNS {
        if title.is_empty() {
            let _ = write!(out, "<th class=\"{class}\"></th>");
            continue;
        }
        let current = q.arrange.sort == key && class != "c-bar";
        let descending = current && !q.arrange.descending;
        let mark = match (current, q.arrange.descending) {
            (true, false) => " ▲",
            (true, true) => " ▼",
            _ => "",
        };
        let _ = write!(
            out,
            "<th class=\"{class}\"{}><a href=\"{}\">{title}{mark}</a></th>",
            if current {
                if q.arrange.descending {
                    " aria-sort=\"descending\""
                } else {
                    " aria-sort=\"ascending\""
                }
            } else {
                ""
            },
            link(q, key, descending)
        );
    }
    out.push_str("</tr></thead>\n");
    let mut group: Option<String> = None;
    let mut open = false;
    for r in &rows {
        let g = (q.arrange.group != Group::None).then(|| view::group_of(r, q.arrange.group));
        if !open || g != group {
            if open {
                out.push_str("</tbody>\n");
            }
            out.push_str("<tbody>");
            if let Some(name) = &g {
                let _ = writeln!(
                    out,
                    "<tr class=\"group\"><th colspan=\"{}\">{}</th></tr>",
                    COLUMNS.len(),
                    esc(name)
                );
            }
            group = g;
            open = true;
        }
        row(out, r, now);
    }
    if !open {
        let _ = write!(
            out,
            "<tbody><tr class=\"empty\"><td colspan=\"{}\">No port matches.</td></tr>",
            COLUMNS.len()
        );
    }
    out.push_str("</tbody></table></div>\n");
    let _ = writeln!(
        out,
        "<p class=\"shown\" id=\"shown\">{} rows of {} port series.</p>",
        rows.len(),
        snapshot.ports.len()
    );
    if rows.len() < matching {
        let _ = writeln!(
            out,
            "<p class=\"more\">The first {} of {matching} matching rows: narrow them with the filter, or ask for more with <code>?limit=</code>.</p>",
            rows.len()
        );
    }
}

fn targets_table(out: &mut String, snapshot: &Snapshot, q: &Query, now: u32) {
    if snapshot.targets.is_empty() {
        return;
    }
    let targets = view::targets(snapshot, &q.filter);
    out.push_str("<h2>Targets by list</h2>\n<div class=\"scroll\"><table id=\"targets\"><thead><tr><th>Name</th><th>Target</th><th>Module</th><th>Health</th><th>Took</th><th>Why</th><th class=\"c-bar\">Last 24 h</th><th>Uptime 1 h / 24 h</th><th></th></tr></thead><tbody>\n");
    for t in targets {
        let health = view::target_health(t);
        let last = t.last.as_ref();
        let day = t.history.day();
        let text = view::target_text(t);
        let _ = writeln!(
            out,
            "<tr data-key=\"target/{}\" data-q=\"{}\" data-health=\"{health}\"><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td class=\"c-bar\">{}</td><td>{} / {}</td><td><a class=\"badge-link\" href=\"badge/target/{}.svg\">svg</a></td></tr>",
            esc(&t.job.target.name),
            esc(&text),
            esc(&t.job.target.name),
            esc(&t.job.target.target),
            esc(&t.job.module.name),
            health_badge(health),
            last.map(|l| view::duration(l.seconds)).unwrap_or_default(),
            last.and_then(|l| l.reason).map_or("", |r| r.as_str()),
            bar(&day, now),
            view::percent(day.uptime(now, 60)),
            view::percent(day.uptime(now, history::MINUTES)),
            esc(&encode(&t.job.target.name)),
        );
    }
    out.push_str("</tbody></table></div>\n");
}

/// Changes shown at most.
const CHANGES: usize = 20;

/// The recent changes (not the start's records), newest first.
fn changes(out: &mut String, snapshot: &Snapshot, now: SystemTime) {
    let recent: Vec<&crate::events::Event> = snapshot
        .events
        .recent
        .events
        .iter()
        .rev()
        .filter(|e| e.action != crate::events::Action::Listening)
        .take(CHANGES)
        .collect();
    if recent.is_empty() {
        return;
    }
    out.push_str("<h2>Recent changes</h2>\n<ol id=\"changes\" class=\"changes\">\n");
    for e in recent {
        let _ = writeln!(
            out,
            "<li class=\"ev-{}\" data-sequence=\"{}\">{} {}</li>",
            e.action.as_str(),
            e.sequence,
            time(Some(e.at), now),
            esc(&e.message())
        );
    }
    let _ = writeln!(
        out,
        "</ol><p class=\"times\"><a href=\"api/v1/events\">all kept ({})</a></p>",
        snapshot.events.recent.events.len()
    );
}

/// What the page needs besides the snapshot.
pub struct Frame<'a> {
    pub host: &'a str,
    pub metrics_path: &'a str,
    /// Whether `/probe` is served.
    pub probe: bool,
}

/// The whole page.
pub fn render(snapshot: &Snapshot, frame: &Frame<'_>, q: &Query) -> String {
    let now = SystemTime::now();
    let minute = history::minute_of(now);
    let mut out = String::with_capacity(4096 + snapshot.ports.len() * 1200);
    let _ = write!(
        out,
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{host} · portwarden</title>\
         <link rel=\"icon\" href=\"assets/favicon.svg\" type=\"image/svg+xml\">\
         <link rel=\"stylesheet\" href=\"assets/status.css\">\
         <script src=\"assets/status.js\" defer></script></head>\n<body>\n",
        host = esc(frame.host)
    );
    out.push_str("<header><h1>portwarden <span class=\"host\">");
    out.push_str(&esc(frame.host));
    out.push_str("</span></h1>\n<nav>");
    let _ = write!(
        out,
        "<a href=\"{}\">/metrics</a> <a href=\"api/v1/ports\">/api/v1/ports</a> <a href=\"api/v1/events\">/api/v1/events</a>",
        esc(frame.metrics_path)
    );
    if !snapshot.targets.is_empty() {
        out.push_str(" <a href=\"api/v1/targets\">/api/v1/targets</a>");
    }
    if frame.probe {
        out.push_str(" <span class=\"probe\" title=\"blackbox_exporter's multi-target pattern\">/probe?target=…&amp;module=…</span>");
    }
    out.push_str("</nav></header>\n");
    let selected = |g: Group| {
        if q.arrange.group == g {
            " selected"
        } else {
            ""
        }
    };
    // The form stays while the live part is swapped: typing is never lost.
    let _ = writeln!(
        out,
        "<form class=\"controls\" method=\"get\"><input type=\"search\" name=\"q\" value=\"{}\" placeholder=\"Filter: port, process, address, user, netns, health…\" aria-label=\"Filter\" autocomplete=\"off\">\
         <label>Group <select name=\"group\"><option value=\"none\"{}>none</option><option value=\"netns\"{}>by namespace / container</option><option value=\"unit\"{}>by unit</option></select></label>\
         <input type=\"hidden\" name=\"sort\" value=\"{}\"><input type=\"hidden\" name=\"dir\" value=\"{}\">{}\
         <button type=\"submit\">Apply</button> <span id=\"updated\" class=\"updated\" aria-live=\"polite\"></span></form>",
        esc(&q.filter.words.join(" ")),
        selected(Group::None),
        selected(Group::Netns),
        selected(Group::Unit),
        q.arrange.sort.name(),
        if q.arrange.descending { "desc" } else { "asc" },
        q.filter
            .unit
            .as_deref()
            .map_or_else(String::new, |u| format!(
                "<input type=\"hidden\" name=\"unit\" value=\"{}\">",
                esc(u)
            )),
    );
    out.push_str("<main id=\"live\">\n<ul class=\"counts\">");
    for (h, n) in view::counts(snapshot) {
        let _ = write!(
            out,
            "<li class=\"h-{h}\" data-health=\"{h}\"><b>{n}</b> {h}</li>"
        );
    }
    out.push_str("</ul>\n");
    let last_round = snapshot
        .telemetry
        .probes
        .iter()
        .find(|(k, _)| *k == "tcp")
        .and_then(|(_, p)| p.last_round);
    let _ = writeln!(
        out,
        "<p class=\"times\">Last discovery {} · last TCP round {}</p>",
        time(snapshot.telemetry.last_discovery.map(|(t, _)| t), now),
        time(last_round, now)
    );
    ports_table(&mut out, snapshot, q, minute);
    targets_table(&mut out, snapshot, q, minute);
    changes(&mut out, snapshot, now);
    out.push_str("</main>\n");
    let _ = write!(
        out,
        "<footer>portwarden {} · bars: a minute a column, the worst health in it; grey: no data · <span class=\"legend\">{}</span></footer>\n</body></html>\n",
        env!("CARGO_PKG_VERSION"),
        Health::WORST_FIRST
            .iter()
            .map(|h| health_badge(*h))
            .collect::<Vec<_>>()
            .join(" ")
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaping_leaves_no_markup_and_no_control_character() {
        assert_eq!(
            esc("a<b>&\"'\u{1b}[2J\n"),
            "a&lt;b&gt;&amp;&quot;&#39;\\u{1b}[2J\\n"
        );
        assert_eq!(esc("evil\u{202E}fdp.exe"), "evil\\u{202e}fdp.exe");
    }

    #[test]
    fn a_minute_down_is_drawn_wide_enough_to_see_at_the_end_of_the_bar() {
        let mut h = crate::engine::history::History::default();
        let now = 29_000_000;
        for m in now - 120..now {
            h.record(m, Health::Ok, Some(0.0001));
        }
        h.record(now, Health::Down, None);
        let svg = bar(&h.day(), now);
        // The ok span, then the down minute over it, 15 minutes wide and
        // ending at the bar's end.
        assert!(
            svg.contains("<rect class=\"h-ok\" x=\"1319\" width=\"120\""),
            "{svg}"
        );
        assert!(
            svg.contains("<rect class=\"h-down\" x=\"1425\" width=\"15\""),
            "{svg}"
        );
        assert!(svg.find("h-ok").expect("ok") < svg.find("h-down").expect("down"));
        assert!(svg.starts_with("<svg class=\"bar\" viewBox=\"0 0 1440 10\""));
    }
}
