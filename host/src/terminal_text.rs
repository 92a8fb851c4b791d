//! Text from adapters, partners, vendors or a bridge's answers made safe to print on a terminal:
//! control characters (C0, DEL and C1: `\x1b` starting an escape sequence, `\r` overwriting a
//! line, `\u{9b}` a CSI of its own) are written as visible escapes (`\u{1b}`, `\r`), so such text
//! can neither drive the terminal nor forge a line of the output around it.

use std::borrow::Cow;
use std::fmt::Write;

/// `text` with every control character escaped, newlines included: for a value printed on one
/// line.
pub fn escape(text: &str) -> Cow<'_, str> {
    escape_unless(text, |_| false)
}

/// `text` with every control character but `\n` escaped: for multi-line text the bridge itself
/// formats (each line of it prefixed, indented or checked by the bridge).
pub fn escape_keeping_lines(text: &str) -> Cow<'_, str> {
    escape_unless(text, |c| c == '\n')
}

/// `text` with each control character for which `keep` is false escaped.
fn escape_unless(text: &str, keep: impl Fn(char) -> bool) -> Cow<'_, str> {
    let unsafe_char = |c: char| c.is_control() && !keep(c);
    if !text.chars().any(unsafe_char) {
        return Cow::Borrowed(text);
    }
    let mut escaped = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        match c {
            c if !unsafe_char(c) => escaped.push(c),
            '\n' => escaped.push_str("\\n"),
            '\r' => escaped.push_str("\\r"),
            '\t' => escaped.push_str("\\t"),
            c => {
                let _ = write!(escaped, "\\u{{{:x}}}", u32::from(c));
            }
        }
    }
    Cow::Owned(escaped)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_are_escaped_and_the_rest_kept() {
        assert!(matches!(escape("plain text, ünïcode ✓"), Cow::Borrowed(_)));
        assert_eq!(
            escape("a\x1b[2J\x1b]0;title\x07b\r\nc\td\u{7f}\u{9b}31m\0"),
            r"a\u{1b}[2J\u{1b}]0;title\u{7}b\r\nc\td\u{7f}\u{9b}31m\u{0}"
        );
    }

    #[test]
    fn multi_line_text_keeps_its_newlines_only() {
        assert!(matches!(escape_keeping_lines("one\ntwo\n"), Cow::Borrowed(_)));
        assert_eq!(escape_keeping_lines("one\r\ntwo\x1b[1A\n"), "one\\r\ntwo\\u{1b}[1A\n");
    }
}
