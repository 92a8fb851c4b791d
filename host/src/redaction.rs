//! Keeping secrets out of text the bridge logs or returns: every occurrence of a secret is
//! replaced by [`REDACTED`], also when the text carries it encoded.
//!
//! A secret is found in the text as it is and in three decoded views of it: percent-decoded
//! (`%22`, `+` for a space), with backslash escapes undone (JSON `\"` and `\u0022`, Rust `{:?}`
//! output such as `\u{1b}`), and base64-decoded (standard and URL-safe, padded or not). What a
//! view finds is replaced in the original text: the encoded characters that decode to the secret,
//! and for base64 the whole run of base64 characters, so an HTTP Basic credential
//! (`Basic base64(user:secret)`) is replaced whole. Overlapping finds are merged, so a secret
//! that contains another is replaced whole too.

use std::ops::Range;

/// What a secret is replaced with.
pub const REDACTED: &str = "[redacted]";

/// Shorter secrets are not searched for: they would redact ordinary words. The configuration
/// refuses secrets this short where it can.
pub const MIN_REDACTED_BYTES: usize = 4;

/// The secrets of one tenant (or of the whole configuration), ready to be searched for.
#[derive(Debug, Clone, Default)]
pub struct SecretSet {
    /// Distinct secrets of at least [`MIN_REDACTED_BYTES`], longest first.
    secrets: Vec<Vec<u8>>,
}

impl SecretSet {
    /// The set of `secrets`; empty and too short ones are left out.
    pub fn new<S: AsRef<str>>(secrets: impl IntoIterator<Item = S>) -> SecretSet {
        let mut secrets: Vec<Vec<u8>> = secrets
            .into_iter()
            .map(|s| s.as_ref().as_bytes().to_vec())
            .filter(|s| s.len() >= MIN_REDACTED_BYTES)
            .collect();
        secrets.sort_by(|a, b| b.len().cmp(&a.len()).then_with(|| a.cmp(b)));
        secrets.dedup();
        SecretSet { secrets }
    }

    /// Whether there is nothing to redact.
    pub fn is_empty(&self) -> bool {
        self.secrets.is_empty()
    }

    /// `text` with every occurrence of a secret, plain or encoded, replaced by [`REDACTED`].
    pub fn redact(&self, text: &str) -> String {
        if self.is_empty() {
            return text.to_string();
        }
        let mut found = Vec::new();
        for secret in &self.secrets {
            found.extend(occurrences(text.as_bytes(), secret).map(|at| at..at + secret.len()));
        }
        if text.contains('%') {
            self.find_in(&DecodedView::percent_decoded(text, false), &mut found);
            if text.contains('+') {
                self.find_in(&DecodedView::percent_decoded(text, true), &mut found);
            }
        }
        if text.contains('\\') {
            self.find_in(&DecodedView::unescaped(text), &mut found);
        }
        self.find_in_base64(text, &mut found);
        replace_ranges(text, found)
    }

    /// Adds the original-text range of every secret found in `view`.
    fn find_in(&self, view: &DecodedView, found: &mut Vec<Range<usize>>) {
        for secret in &self.secrets {
            for at in occurrences(&view.bytes, secret) {
                found.push(view.spans[at].start..view.spans[at + secret.len() - 1].end);
            }
        }
    }

    /// Adds every run of base64 characters that decodes (at any alignment) to a text holding a
    /// secret.
    fn find_in_base64(&self, text: &str, found: &mut Vec<Range<usize>>) {
        let shortest = self.secrets.last().map_or(0, Vec::len);
        // The fewest base64 characters that can hold the shortest secret.
        let min_run = (shortest * 4).div_ceil(3);
        for run in base64_runs(text) {
            let digits = text[run.clone()].trim_end_matches('=');
            if digits.len() < min_run {
                continue;
            }
            let holds_secret = (0..4.min(digits.len())).any(|skip| {
                let decoded = decode_base64_lenient(&digits[skip..]);
                self.secrets.iter().any(|s| occurrences(&decoded, s).next().is_some())
            });
            if holds_secret {
                found.push(run);
            }
        }
    }
}

/// Text decoded one way, each decoded byte knowing the range of the original it came from.
struct DecodedView {
    bytes: Vec<u8>,
    spans: Vec<Range<usize>>,
}

impl DecodedView {
    /// `%XX` decoded (either case of hex); with `plus_is_space`, `+` too (form encoding).
    fn percent_decoded(text: &str, plus_is_space: bool) -> DecodedView {
        let raw = text.as_bytes();
        let mut view = DecodedView::with_capacity(raw.len());
        let mut i = 0;
        while i < raw.len() {
            let escaped = (raw[i] == b'%')
                .then(|| Some(hex_value(*raw.get(i + 1)?)? << 4 | hex_value(*raw.get(i + 2)?)?))
                .flatten();
            match escaped {
                Some(byte) => {
                    view.push(byte, i..i + 3);
                    i += 3;
                }
                None => {
                    let byte = if plus_is_space && raw[i] == b'+' { b' ' } else { raw[i] };
                    view.push(byte, i..i + 1);
                    i += 1;
                }
            }
        }
        view
    }

    /// Backslash escapes undone: `\"`, `\\`, `\/`, `\'`, `\n`, `\r`, `\t`, `\0`, `\b`, `\f`,
    /// `\xHH`, JSON's `\uXXXX` (with surrogate pairs) and Rust's `\u{X...}`.
    fn unescaped(text: &str) -> DecodedView {
        let raw = text.as_bytes();
        let mut view = DecodedView::with_capacity(raw.len());
        let mut i = 0;
        while i < raw.len() {
            if raw[i] == b'\\'
                && let Some((decoded, used)) = unescape_at(&text[i..])
            {
                let mut utf8 = [0u8; 4];
                let bytes: &[u8] = match decoded {
                    Unescaped::Char(c) => c.encode_utf8(&mut utf8).as_bytes(),
                    Unescaped::Byte(b) => {
                        utf8[0] = b;
                        &utf8[..1]
                    }
                };
                for &byte in bytes {
                    view.push(byte, i..i + used);
                }
                i += used;
            } else {
                view.push(raw[i], i..i + 1);
                i += 1;
            }
        }
        view
    }

    fn with_capacity(capacity: usize) -> DecodedView {
        DecodedView {
            bytes: Vec::with_capacity(capacity),
            spans: Vec::with_capacity(capacity),
        }
    }

    fn push(&mut self, byte: u8, span: Range<usize>) {
        self.bytes.push(byte);
        self.spans.push(span);
    }
}

enum Unescaped {
    Char(char),
    Byte(u8),
}

/// The escape at the start of `text` (which starts with `\`) and how many bytes it takes.
fn unescape_at(text: &str) -> Option<(Unescaped, usize)> {
    let raw = text.as_bytes();
    let simple = match *raw.get(1)? {
        b'"' => '"',
        b'\\' => '\\',
        b'/' => '/',
        b'\'' => '\'',
        b'n' => '\n',
        b'r' => '\r',
        b't' => '\t',
        b'0' => '\0',
        b'b' => '\u{8}',
        b'f' => '\u{c}',
        b'x' => {
            let byte = hex_value(*raw.get(2)?)? << 4 | hex_value(*raw.get(3)?)?;
            return Some((Unescaped::Byte(byte), 4));
        }
        b'u' if raw.get(2) == Some(&b'{') => {
            let end = text[3..].find('}')? + 3;
            let code = u32::from_str_radix(&text[3..end], 16).ok()?;
            return Some((Unescaped::Char(char::from_u32(code)?), end + 1));
        }
        b'u' => {
            let unit = |at: usize| u16::from_str_radix(text.get(at..at + 4)?, 16).ok();
            let first = unit(2)?;
            if let Some(c) = char::from_u32(first as u32) {
                return Some((Unescaped::Char(c), 6));
            }
            // A high surrogate: the low one follows as `\uXXXX`.
            if text.get(6..8) != Some("\\u") {
                return None;
            }
            let c = char::decode_utf16([first, unit(8)?]).next()?.ok()?;
            return Some((Unescaped::Char(c), 12));
        }
        _ => return None,
    };
    Some((Unescaped::Char(simple), 2))
}

fn hex_value(digit: u8) -> Option<u8> {
    (digit as char).to_digit(16).map(|d| d as u8)
}

/// Runs of base64 characters (both alphabets), each with the `=` padding that ends it.
fn base64_runs(text: &str) -> Vec<Range<usize>> {
    let raw = text.as_bytes();
    let mut runs = Vec::new();
    let mut i = 0;
    while i < raw.len() {
        if base64_value(raw[i]).is_none() {
            i += 1;
            continue;
        }
        let start = i;
        while i < raw.len() && base64_value(raw[i]).is_some() {
            i += 1;
        }
        while i < raw.len() && raw[i] == b'=' {
            i += 1;
        }
        runs.push(start..i);
    }
    runs
}

fn base64_value(c: u8) -> Option<u8> {
    match c {
        b'A'..=b'Z' => Some(c - b'A'),
        b'a'..=b'z' => Some(c - b'a' + 26),
        b'0'..=b'9' => Some(c - b'0' + 52),
        b'+' | b'-' => Some(62),
        b'/' | b'_' => Some(63),
        _ => None,
    }
}

/// Base64 digits (either alphabet, no padding) decoded; trailing bits that make no whole byte
/// are dropped.
fn decode_base64_lenient(digits: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(digits.len() * 3 / 4);
    let (mut bits, mut count) = (0u32, 0u32);
    for value in digits.bytes().filter_map(base64_value) {
        bits = bits << 6 | value as u32;
        count += 6;
        if count >= 8 {
            count -= 8;
            out.push((bits >> count) as u8);
            bits &= (1 << count) - 1;
        }
    }
    out
}

/// Where `needle` (not empty) starts in `haystack`.
fn occurrences<'a>(haystack: &'a [u8], needle: &'a [u8]) -> impl Iterator<Item = usize> + 'a {
    let last = haystack.len().saturating_sub(needle.len() - 1);
    (0..last).filter(move |&at| haystack[at] == needle[0] && haystack[at..].starts_with(needle))
}

/// `text` with each of `ranges` (merged where they overlap, widened to character boundaries)
/// replaced by [`REDACTED`].
fn replace_ranges(text: &str, mut ranges: Vec<Range<usize>>) -> String {
    if ranges.is_empty() {
        return text.to_string();
    }
    ranges.sort_by_key(|r| r.start);
    let mut out = String::with_capacity(text.len());
    let mut copied = 0;
    let mut ranges = ranges.into_iter().peekable();
    while let Some(range) = ranges.next() {
        let mut end = range.end;
        while let Some(next) = ranges.next_if(|next| next.start < end) {
            end = end.max(next.end);
        }
        let mut start = range.start.max(copied);
        while !text.is_char_boundary(start) {
            start -= 1;
        }
        while !text.is_char_boundary(end) {
            end += 1;
        }
        out.push_str(&text[copied..start]);
        out.push_str(REDACTED);
        copied = end;
    }
    out.push_str(&text[copied..]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn redact(text: &str, secrets: &[&str]) -> String {
        SecretSet::new(secrets).redact(text)
    }

    #[test]
    fn nothing_to_redact_leaves_the_text_alone() {
        assert_eq!(redact("a %41 \\u0041 QUFBQQ==", &[]), "a %41 \\u0041 QUFBQQ==");
        assert_eq!(
            redact("a %41 \\u0041 QUFBQQ==", &["elsewhere"]),
            "a %41 \\u0041 QUFBQQ=="
        );
        assert_eq!(redact("abc", &["abc"]), "abc", "shorter than MIN_REDACTED_BYTES");
    }

    #[test]
    fn a_secret_containing_another_is_replaced_whole() {
        assert_eq!(
            redact("k=abcd1234-suffix; j=abcd1234", &["abcd1234", "abcd1234-suffix"]),
            "k=[redacted]; j=[redacted]"
        );
        // Overlapping occurrences of different secrets become one replacement.
        assert_eq!(redact("xx1234567yy", &["1234", "4567"]), "xx[redacted]yy");
    }

    #[test]
    fn quotes_and_backslashes_in_a_secret_are_found_plain_and_escaped() {
        let secret = "a\"b\\c-0123";
        assert_eq!(redact(&format!("<{secret}>"), &[secret]), "<[redacted]>");
        assert_eq!(redact(&format!("<{secret:?}>"), &[secret]), "<\"[redacted]\">");
        let json = serde_json::to_string(&serde_json::json!({ "k": secret })).unwrap();
        assert_eq!(redact(&json, &[secret]), "{\"k\":\"[redacted]\"}");
    }

    #[test]
    fn json_unicode_escapes_and_rust_braced_escapes_are_decoded() {
        let secret = "tök\u{1F600}n-01";
        let json = "\"t\\u00f6k\\ud83d\\ude00n-01\"";
        assert_eq!(redact(json, &[secret]), "\"[redacted]\"");
        let debug = format!("{:?}", "line\u{1b}secret");
        assert_eq!(redact(&debug, &["line\u{1b}secret"]), "\"[redacted]\"");
    }

    #[test]
    fn percent_encoding_of_any_mix_and_case_is_decoded() {
        let secret = "p@ss w/rd";
        for encoded in ["p%40ss%20w%2Frd", "p%40ss+w%2frd", "%70%40%73%73%20%77%2f%72%64"] {
            assert_eq!(
                redact(&format!("?key={encoded}&x=1"), &[secret]),
                "?key=[redacted]&x=1",
                "{encoded}"
            );
        }
    }

    #[test]
    fn base64_at_any_alignment_replaces_the_whole_run() {
        use base64::Engine as _;
        let engine = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        for prefix in ["", "a", "ab", "abc"] {
            let encoded = engine.encode(format!("{prefix}the-secret-0123{prefix}"));
            assert_eq!(
                redact(&format!("x {encoded} y"), &["the-secret-0123"]),
                "x [redacted] y",
                "{prefix:?}"
            );
        }
        // A base64 run that decodes to something else stays.
        let other = engine.encode("nothing to see here");
        assert_eq!(
            redact(&format!("x {other} y"), &["the-secret-0123"]),
            format!("x {other} y")
        );
    }

    #[test]
    fn replacements_keep_multibyte_characters_whole() {
        assert_eq!(redact("é%41%42%43%44é", &["ABCD"]), "é[redacted]é");
        assert_eq!(redact("ééABCDéé", &["ABCD"]), "éé[redacted]éé");
    }
}
