//! The runbooks, served: `/runbooks` lists them, `/runbooks/<Alert>` is
//! one, rendered from `docs/runbooks.md` (built in) — what an alert's
//! `runbook_url` opens, through the portwarden that raised it. Plain HTML
//! with no script, readable on a phone.

use axum::extract::Path;
use axum::http::StatusCode;
use axum::response::Response;

/// The runbooks as written: one `## <Alert>` section each.
pub const TEXT: &str = include_str!("../../docs/runbooks.md");

/// No script, no style from anywhere, no framing.
const CSP: &str = "default-src 'none'; frame-ancestors 'none'; base-uri 'none'";

/// Each section: the alert's name and its text (Markdown).
pub fn sections() -> Vec<(&'static str, &'static str)> {
    let mut out = Vec::new();
    let mut rest = TEXT;
    while let Some(at) = rest.find("\n## ") {
        let after = &rest[at + 4..];
        let (name, body) = after.split_once('\n').unwrap_or((after, ""));
        let end = body.find("\n## ").unwrap_or(body.len());
        out.push((name.trim(), body[..end].trim()));
        rest = &body[end..];
    }
    out
}

/// `/runbooks`: every alert, linked.
pub async fn index() -> Response {
    let mut body = String::from("<ul>\n");
    for (name, _) in sections() {
        let name = escape(name);
        body.push_str(&format!(
            "<li><a href=\"runbooks/{name}\">{name}</a></li>\n"
        ));
    }
    body.push_str("</ul>\n");
    page(StatusCode::OK, "portwarden runbooks", &body)
}

/// `/runbooks/<Alert>`: its section, or 404 naming the alerts there are.
pub async fn one(Path(alert): Path<String>) -> Response {
    match sections().into_iter().find(|(name, _)| *name == alert) {
        Some((name, text)) => page(
            StatusCode::OK,
            name,
            &format!(
                "{}<p><a href=\"../runbooks\">Every runbook</a></p>\n",
                render(text)
            ),
        ),
        None => page(
            StatusCode::NOT_FOUND,
            "No such runbook",
            &format!(
                "<p>No runbook is named {}. <a href=\"../runbooks\">Every runbook</a></p>\n",
                escape(&alert)
            ),
        ),
    }
}

fn page(status: StatusCode, title: &str, body: &str) -> Response {
    let title = escape(title);
    let html = format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"><title>{title}</title></head>\n<body>\n<h1>{title}</h1>\n{body}</body></html>\n"
    );
    super::response::page(status, "text/html; charset=utf-8", CSP, html)
}

/// The Markdown the runbooks use, as HTML: paragraphs, `- ` lists, `code`
/// and links (to the web; a link between documents is its text).
pub fn render(markdown: &str) -> String {
    let mut out = String::new();
    for block in markdown
        .split("\n\n")
        .map(str::trim)
        .filter(|b| !b.is_empty())
    {
        if block
            .lines()
            .all(|l| l.starts_with("- ") || l.starts_with("  "))
        {
            out.push_str("<ul>\n");
            let mut item = String::new();
            for line in block.lines() {
                if let Some(start) = line.strip_prefix("- ") {
                    if !item.is_empty() {
                        out.push_str(&format!("<li>{}</li>\n", inline(&item)));
                    }
                    item = start.to_string();
                } else {
                    item.push(' ');
                    item.push_str(line.trim());
                }
            }
            out.push_str(&format!("<li>{}</li>\n</ul>\n", inline(&item)));
        } else {
            let text: Vec<&str> = block.lines().map(str::trim).collect();
            out.push_str(&format!("<p>{}</p>\n", inline(&text.join(" "))));
        }
    }
    out
}

/// `code` and [links](https://…) in escaped text.
fn inline(text: &str) -> String {
    let mut out = String::new();
    let mut rest = text;
    while !rest.is_empty() {
        if let Some(after) = rest.strip_prefix('`')
            && let Some(end) = after.find('`')
        {
            out.push_str(&format!("<code>{}</code>", escape(&after[..end])));
            rest = &after[end + 1..];
        } else if let Some(after) = rest.strip_prefix('[')
            && let Some((label, tail)) = after.split_once("](")
            && let Some((url, tail)) = tail.split_once(')')
        {
            if url.starts_with("https://") || url.starts_with("http://") {
                out.push_str(&format!(
                    "<a href=\"{}\">{}</a>",
                    escape(url),
                    escape(label)
                ));
            } else {
                out.push_str(&escape(label));
            }
            rest = tail;
        } else {
            let next = rest[1..].find(['`', '[']).map_or(rest.len(), |i| i + 1);
            out.push_str(&escape(&rest[..next]));
            rest = &rest[next..];
        }
    }
    out
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_section_is_found() {
        let names: Vec<&str> = sections().into_iter().map(|(n, _)| n).collect();
        assert!(names.contains(&"PortwardenPortDown"), "{names:?}");
        assert!(names.contains(&"PortwardenChecksStale"), "{names:?}");
        assert!(sections().iter().all(|(_, text)| !text.is_empty()));
    }

    #[test]
    fn markdown_is_escaped_and_rendered() {
        assert_eq!(
            render("Run `ls <x>` & see [docs](https://example.com/a?b=1&c=2).\n\n- one\n- two `x`"),
            "<p>Run <code>ls &lt;x&gt;</code> &amp; see <a href=\"https://example.com/a?b=1&amp;c=2\">docs</a>.</p>\n<ul>\n<li>one</li>\n<li>two <code>x</code></li>\n</ul>\n"
        );
        assert_eq!(render("[other](alerts.md#x) [a"), "<p>other [a</p>\n");
    }
}
