//! One-shot commands that print to a terminal or a pipe.

pub mod baseline;
pub mod check;
pub mod ls;

/// Makes a value from a hostile source (a process name, a path, a command
/// line) safe to print on a terminal: control characters and the Unicode
/// marks that reorder text become escapes, so a process can neither move the
/// cursor or rewrite the screen of whoever runs `portwarden ls`, nor make its
/// row read backwards.
pub fn printable(s: &str) -> std::borrow::Cow<'_, str> {
    if !s.chars().any(hidden) {
        return std::borrow::Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        if hidden(c) {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    std::borrow::Cow::Owned(out)
}

/// A table for the terminal: sized to `COLUMNS` when set, else to the
/// terminal's width; a terminal that reports 0 columns (`script`, some
/// `docker exec -t`) is one of unknown width, whose rows are not wrapped.
pub fn table(header: &[&str]) -> comfy_table::Table {
    let mut table = comfy_table::Table::new();
    table
        .load_style(comfy_table::presets::NOTHING)
        .set_header(header);
    match width(std::env::var("COLUMNS").ok().as_deref(), terminal_width()) {
        Some(w) => table
            .set_content_arrangement(comfy_table::ContentArrangement::Dynamic)
            .set_width(w),
        None => table.set_content_arrangement(comfy_table::ContentArrangement::Disabled),
    };
    table
}

/// The width to fit: `COLUMNS` if it is a positive number, else the
/// terminal's if it reports one.
fn width(columns: Option<&str>, terminal: Option<u16>) -> Option<u16> {
    columns
        .and_then(|c| c.trim().parse::<u16>().ok())
        .filter(|&c| c > 0)
        .or(terminal.filter(|&c| c > 0))
}

/// Standard output's terminal width, if it is a terminal.
fn terminal_width() -> Option<u16> {
    let mut size = libc::winsize {
        ws_row: 0,
        ws_col: 0,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCGWINSZ writes one winsize into `size`, which outlives the call.
    let ok = unsafe { libc::ioctl(libc::STDOUT_FILENO, libc::TIOCGWINSZ, &mut size) } == 0;
    ok.then_some(size.ws_col)
}

/// Characters that act on the terminal or on the order of the text around
/// them instead of showing: C0/C1 controls, and the bidirectional marks,
/// embeddings, overrides and isolates (U+200E/F, U+202A–E, U+2066–9).
fn hidden(c: char) -> bool {
    c.is_control()
        || matches!(c, '\u{200E}' | '\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_are_escaped() {
        assert_eq!(printable("nginx"), "nginx");
        assert_eq!(printable("a\u{1b}[2Jb\n"), "a\\u{1b}[2Jb\\n");
        assert_eq!(printable("ü \"q\" \\"), "ü \"q\" \\");
        assert_eq!(printable("evil\u{202E}fdp.exe"), "evil\\u{202e}fdp.exe");
        assert_eq!(printable("a\u{2066}b\u{200F}"), "a\\u{2066}b\\u{200f}");
    }

    #[test]
    fn columns_then_the_terminal_and_zero_is_unknown() {
        assert_eq!(width(Some("132"), Some(80)), Some(132));
        assert_eq!(width(Some("0"), Some(80)), Some(80));
        assert_eq!(width(Some("wide"), None), None);
        assert_eq!(width(None, Some(0)), None);
        assert_eq!(width(None, Some(100)), Some(100));
    }
}
