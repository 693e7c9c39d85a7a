//! One-shot commands that print to a terminal or a pipe.

pub mod baseline;
pub mod ls;

/// Makes a value from a hostile source (a process name, a path, a command
/// line) safe to print on a terminal: control characters become escapes, so
/// a process cannot move the cursor or rewrite the screen of whoever runs
/// `portwarden ls`.
pub fn printable(s: &str) -> std::borrow::Cow<'_, str> {
    if !s.chars().any(char::is_control) {
        return std::borrow::Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    std::borrow::Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_are_escaped() {
        assert_eq!(printable("nginx"), "nginx");
        assert_eq!(printable("a\u{1b}[2Jb\n"), "a\\u{1b}[2Jb\\n");
        assert_eq!(printable("ü \"q\" \\"), "ü \"q\" \\");
    }
}
