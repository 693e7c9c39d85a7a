//! Text from hostile sources (process names, paths, command lines: bytes a
//! process chose) made safe to show: what a terminal, a page or a JSON
//! reader would act on instead of showing is written out as an escape.

use std::borrow::Cow;

/// Makes a value from a hostile source (a process name, a path, a command
/// line) safe to print on a terminal: control characters and the Unicode
/// marks that reorder text become escapes, so a process can neither move the
/// cursor or rewrite the screen of whoever runs `portwarden ls`, nor make its
/// row read backwards.
pub fn printable(s: &str) -> Cow<'_, str> {
    if !s.chars().any(hidden) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        if hidden(c) {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// Characters that act on the terminal or on the order of the text around
/// them instead of showing: C0/C1 controls, and the bidirectional marks,
/// embeddings, overrides and isolates (U+200E/F, U+202A–E, U+2066–9).
pub fn hidden(c: char) -> bool {
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
}
