//! Adapter-supplied text on its way into the bridge's log or errors: secrets replaced, length
//! bounded, control characters escaped. An adapter's newline could otherwise forge a log line
//! attributed to another tenant, and its ANSI escapes would reach an operator's terminal.

use crate::redaction::SecretSet;

/// The longest adapter-supplied text (a message, a field, a denied request's detail) logged.
pub const MAX_LOGGED_BYTES: usize = 1024;

/// `text` cut to at most `max` bytes (on a character boundary), saying how much was left out.
pub fn bounded(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_string();
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}... [{} more bytes]", &text[..end], text.len() - end)
}

/// Control characters (newlines, escapes, C1 codes) written as `\u{..}`; the rest unchanged.
pub fn escape_controls(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if c.is_control() {
            out.push_str(&format!("\\u{{{:x}}}", c as u32));
        } else {
            out.push(c);
        }
    }
    out
}

/// Adapter-supplied `text` as it may be logged: redacted first (so escaping cannot hide a
/// secret from redaction), then bounded and escaped.
pub fn loggable(text: &str, secrets: &SecretSet) -> String {
    escape_controls(&bounded(&secrets.redact(text), MAX_LOGGED_BYTES))
}

/// An adapter's log fields as one `key=value key=value` text, each part made [`loggable`].
pub fn loggable_fields(fields: &[(String, String)], secrets: &SecretSet) -> String {
    fields
        .iter()
        .map(|(k, v)| format!("{}={}", loggable(k, secrets), loggable(v, secrets)))
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secrets(list: &[&str]) -> SecretSet {
        SecretSet::new(list)
    }

    #[test]
    fn a_newline_or_an_escape_cannot_start_a_forged_line() {
        let forged = "ok\n2026-12-01T10:00:00Z  INFO adapter: tenant=other forged\r\x1b[2J\u{85}";
        let logged = loggable(forged, &SecretSet::default());
        assert!(!logged.chars().any(char::is_control), "{logged:?}");
        assert_eq!(
            logged,
            "ok\\u{a}2026-12-01T10:00:00Z  INFO adapter: tenant=other forged\\u{d}\\u{1b}[2J\\u{85}"
        );
    }

    #[test]
    fn secrets_with_quotes_or_backslashes_are_redacted_before_escaping() {
        let secret = secrets(&["pa\"ss\\word\n42"]);
        let fields = vec![("token".to_string(), "pa\"ss\\word\n42".to_string())];
        let logged = loggable_fields(&fields, &secret);
        assert_eq!(logged, "token=[redacted]");
    }

    #[test]
    fn the_longer_of_two_overlapping_secrets_is_replaced_whole() {
        let logged = secrets(&["abcd1234", "abcd1234-suffix"]).redact("key abcd1234-suffix");
        assert_eq!(logged, "key [redacted]");
    }

    /// Every form a secret takes on its way through HTTP, JSON and Rust formatting, encoded here
    /// independently of the redaction code.
    fn encoded_forms(secret: &str) -> Vec<(&'static str, String)> {
        use base64::Engine as _;
        use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
        let lower_percent: String = secret.bytes().map(|b| format!("%{b:02x}")).collect();
        vec![
            ("raw", secret.to_string()),
            ("debug-escaped", format!("{secret:?}")),
            ("json-escaped", serde_json::to_string(secret).unwrap()),
            (
                "form-urlencoded",
                url::form_urlencoded::byte_serialize(secret.as_bytes()).collect(),
            ),
            ("percent-encoded, lower-case hex", lower_percent),
            ("base64", STANDARD.encode(secret)),
            ("base64 without padding", STANDARD_NO_PAD.encode(secret)),
            ("url-safe base64", URL_SAFE.encode(secret)),
            ("url-safe base64 without padding", URL_SAFE_NO_PAD.encode(secret)),
            (
                "basic auth",
                format!("Basic {}", STANDARD.encode(format!("user:{secret}"))),
            ),
            (
                "basic auth, url-safe",
                format!("basic {}", URL_SAFE.encode(format!("{secret}:x"))),
            ),
        ]
    }

    #[test]
    fn every_encoded_form_of_a_secret_is_redacted() {
        // Quotes, a backslash, `/`, `+`, `:` and a space: each encoding writes them differently,
        // and its base64 form holds both `+` and `/`.
        let secret = "pa\"ss\\w/o+rd: ~?>?";
        let mut failures = Vec::new();
        for (form, encoded) in encoded_forms(secret) {
            let text = format!("vendor said: {encoded} (end)");
            let logged = secrets(&[secret]).redact(&text);
            let ok = !logged.contains(&encoded)
                && logged.contains("[redacted]")
                && logged.starts_with("vendor said: ")
                && logged.ends_with(" (end)");
            if !ok {
                failures.push(format!("{form}: {text:?} -> {logged:?}"));
            }
        }
        assert!(failures.is_empty(), "not redacted:\n{}", failures.join("\n"));
    }

    #[test]
    fn a_basic_credential_holding_a_secret_is_replaced_whole() {
        use base64::Engine as _;
        let credential = base64::engine::general_purpose::STANDARD.encode("api:vendor-key-0123");
        let text = format!("authorization: Basic {credential}, retrying");
        let logged = secrets(&["vendor-key-0123"]).redact(&text);
        assert_eq!(logged, "authorization: Basic [redacted], retrying");
    }

    #[test]
    fn long_text_is_bounded_on_a_character_boundary() {
        let text = "é".repeat(MAX_LOGGED_BYTES);
        let logged = loggable(&text, &SecretSet::default());
        assert!(logged.len() < MAX_LOGGED_BYTES + 40, "{}", logged.len());
        assert!(logged.ends_with(&format!("... [{} more bytes]", MAX_LOGGED_BYTES)));
    }
}
