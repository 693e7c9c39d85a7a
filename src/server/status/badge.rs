//! `/badge/<proto>/<port>.svg` and `/badge/target/<name>.svg`: a small SVG
//! with a port's (or a target's) health word and its uptime over the last
//! day, for wikis and runbooks.

use super::page::esc;
use super::view;
use crate::engine::Snapshot;
use crate::engine::history::{Day, MINUTES};
use crate::health::Health;
use crate::model::{PortKey, Proto};

/// The badge `/badge/<kind>/<file>` asks for: whether it names a port or
/// target watched now, and its SVG (a grey one saying why, when not).
/// `netns`: the port's namespace label.
pub fn answer(snapshot: &Snapshot, kind: &str, file: &str, netns: &str) -> (bool, String) {
    let Some(name) = file.strip_suffix(".svg") else {
        return (false, render("badge", "ends in .svg", None));
    };
    let now = view::now_minute();
    let word = |h: Health, day: &Day| format!("{h} · {}", view::percent(day.uptime(now, MINUTES)));
    let proto = match kind {
        "target" => {
            return match snapshot.targets.iter().find(|t| t.job.target.name == name) {
                Some(t) => {
                    let h = view::target_health(t);
                    (true, render(name, &word(h, &t.history.day()), Some(h)))
                }
                None => (false, render(name, "no such target", None)),
            };
        }
        kind => match Proto::parse(kind) {
            Ok(proto) => proto,
            Err(_) => return (false, render(kind, "expected tcp, udp or target", None)),
        },
    };
    let label = format!("{proto}/{name}");
    let Ok(port) = crate::value::parse_port(name) else {
        return (false, render(&label, "not a port number", None));
    };
    let key = PortKey {
        proto,
        port,
        netns: netns.into(),
    };
    match snapshot.port(&key) {
        Some(p) => (
            true,
            render(&label, &word(p.health, &p.day), Some(p.health)),
        ),
        None => (false, render(&label, "not watched", None)),
    }
}

/// Rough width of `text` in Verdana 11 px (the badges' font), in pixels.
fn width(text: &str) -> u32 {
    text.chars()
        .map(|c| match c {
            'i' | 'l' | 'j' | '.' | ',' | ':' | '\'' | '|' | '!' | ' ' => 4,
            'm' | 'w' | 'M' | 'W' | '%' => 10,
            c if c.is_ascii_uppercase() => 8,
            _ => 7,
        })
        .sum::<u32>()
        + 10
}

/// The colour of a health word.
fn colour(h: Option<Health>) -> &'static str {
    match h {
        Some(Health::Ok) => "#2e8540",
        Some(Health::Slow) => "#b07d00",
        Some(Health::Hung) => "#8a3ffc",
        Some(Health::Down) => "#c62828",
        Some(Health::Unknown) | None => "#6b6b6b",
    }
}

/// A badge: `label` on grey, `message` on the health's colour.
fn render(label: &str, message: &str, health: Option<Health>) -> String {
    // Long names are cut: a badge stays small.
    let label: String = label.chars().take(40).collect();
    let (lw, mw) = (width(&label), width(message));
    let total = lw + mw;
    let (label, message) = (esc(&label), esc(message));
    format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{total}\" height=\"20\" role=\"img\" aria-label=\"{label}: {message}\">\
<title>{label}: {message}</title>\
<rect width=\"{lw}\" height=\"20\" fill=\"#555\"/>\
<rect x=\"{lw}\" width=\"{mw}\" height=\"20\" fill=\"{colour}\"/>\
<g fill=\"#fff\" text-anchor=\"middle\" font-family=\"Verdana,DejaVu Sans,sans-serif\" font-size=\"11\">\
<text x=\"{lx}\" y=\"14\">{label}</text><text x=\"{mx}\" y=\"14\">{message}</text></g></svg>\n",
        colour = colour(health),
        lx = lw / 2,
        mx = lw + mw / 2,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_badge_escapes_what_it_shows_and_colours_the_word() {
        let svg = render("tcp/22 <x>&\"", "down · 99.9%", Some(Health::Down));
        assert!(svg.starts_with("<svg xmlns=\"http://www.w3.org/2000/svg\""));
        assert!(svg.contains("tcp/22 &lt;x&gt;&amp;&quot;"));
        assert!(svg.contains("#c62828"));
        assert!(!svg.contains("<x>"));
    }
}
