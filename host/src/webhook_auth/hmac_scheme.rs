//! `auth = "hmac"`: a vendor's own HMAC signature, as `[tenants.webhook.hmac]` describes it:
//! the header carrying it and the text before it, hex or base64, SHA-1, SHA-256 or SHA-512, what
//! is signed (the body, the timestamp header, other headers and fixed text), and a timestamp
//! checked against the tenant's tolerance. The signature itself is the webhook's dedupe key: a
//! request sent again with the same signature is the same webhook.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use hmac::{Hmac, Mac};
use sha1::Sha1;
use sha2::{Sha256, Sha512};

use super::{SignedRequest, WebhookAuthError};
use crate::config::{HmacAlgorithm, HmacScheme, SignatureEncoding, SignedPart};

/// Verifies `request`'s signature under `secret` as `scheme` says, at `now` (Unix seconds);
/// returns its dedupe key (the signature's bytes, in hex).
pub(super) fn verify(
    scheme: &HmacScheme,
    secret: &str,
    request: &SignedRequest<'_>,
    now: i64,
    tolerance: i64,
) -> Result<String, WebhookAuthError> {
    let header = scheme.header.to_ascii_lowercase();
    let written = request
        .header(&header)
        .ok_or_else(|| WebhookAuthError::Missing(header.clone()))?
        .trim();
    let given = written
        .strip_prefix(scheme.prefix.as_str())
        .and_then(|text| decode(scheme.encoding, text))
        .ok_or_else(|| WebhookAuthError::Malformed(header.clone()))?;
    let timestamp = match &scheme.timestamp_header {
        Some(name) => {
            let name = name.to_ascii_lowercase();
            let value = request
                .header(&name)
                .ok_or_else(|| WebhookAuthError::Missing(name.clone()))?;
            let at = signing_time(value).ok_or_else(|| WebhookAuthError::Malformed(name.clone()))?;
            if now.abs_diff(at) > tolerance as u64 {
                return Err(WebhookAuthError::Stale(tolerance as u64));
            }
            Some(value)
        }
        None => None,
    };
    let mut signed = Vec::with_capacity(request.body.len() + 64);
    for part in &scheme.signed.0 {
        match part {
            SignedPart::Text(text) => signed.extend_from_slice(text.as_bytes()),
            SignedPart::Body => signed.extend_from_slice(request.body),
            // The configuration check makes a timestamp header exist wherever one is signed.
            SignedPart::Timestamp => signed.extend_from_slice(timestamp.unwrap_or_default().as_bytes()),
            SignedPart::Header(name) => {
                let value = request
                    .header(name)
                    .ok_or_else(|| WebhookAuthError::Missing(name.to_ascii_lowercase()))?;
                signed.extend_from_slice(value.as_bytes());
            }
        }
    }
    let matches = match scheme.algorithm {
        HmacAlgorithm::Sha1 => checks::<Hmac<Sha1>>(secret, &signed, &given),
        HmacAlgorithm::Sha256 => checks::<Hmac<Sha256>>(secret, &signed, &given),
        HmacAlgorithm::Sha512 => checks::<Hmac<Sha512>>(secret, &signed, &given),
    };
    if !matches {
        return Err(WebhookAuthError::BadSignature);
    }
    Ok(hex::encode(given))
}

/// Whether `given` is the HMAC of `signed` under `secret` (compared in constant time).
fn checks<M: Mac + hmac::digest::KeyInit>(secret: &str, signed: &[u8], given: &[u8]) -> bool {
    let mut mac = <M as hmac::digest::KeyInit>::new_from_slice(secret.as_bytes()).expect("HMAC takes any key length");
    mac.update(signed);
    mac.verify_slice(given).is_ok()
}

fn decode(encoding: SignatureEncoding, text: &str) -> Option<Vec<u8>> {
    match encoding {
        SignatureEncoding::Hex => hex::decode(text).ok(),
        SignatureEncoding::Base64 => BASE64.decode(text).ok(),
    }
}

/// When a request was signed, in Unix seconds: from Unix seconds, Unix milliseconds (13 digits
/// or more) or an RFC 3339 time.
fn signing_time(value: &str) -> Option<i64> {
    let value = value.trim();
    if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) {
        let number: i64 = value.parse().ok()?;
        return Some(if value.len() >= 13 { number / 1000 } else { number });
    }
    chrono::DateTime::parse_from_rfc3339(value).ok().map(|t| t.timestamp())
}

/// Each vendor's published scheme, set up as its README section says, with a request signed as
/// its documentation describes (Slack's is the worked example of its own documentation; the
/// others were signed with Python's `hmac` module by the documented formula).
#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::SignedTemplate;

    fn scheme(header: &str, prefix: &str, encoding: SignatureEncoding, algorithm: HmacAlgorithm) -> HmacScheme {
        HmacScheme {
            header: header.into(),
            prefix: prefix.into(),
            encoding,
            algorithm,
            signed: SignedTemplate::try_from("{body}".to_string()).unwrap(),
            timestamp_header: None,
        }
    }

    fn signed(scheme: HmacScheme, template: &str, timestamp_header: &str) -> HmacScheme {
        HmacScheme {
            signed: SignedTemplate::try_from(template.to_string()).unwrap(),
            timestamp_header: Some(timestamp_header.into()),
            ..scheme
        }
    }

    fn headers(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    fn check(
        scheme: &HmacScheme,
        secret: &str,
        headers: &[(String, String)],
        body: &[u8],
        now: i64,
    ) -> Result<String, WebhookAuthError> {
        let request = SignedRequest {
            headers,
            query: "",
            body,
        };
        verify(scheme, secret, &request, now, 300)
    }

    /// Slack (api.slack.com, "Verifying requests from Slack"): `X-Slack-Signature: v0=` and the
    /// hex HMAC-SHA256 of `v0:{X-Slack-Request-Timestamp}:{body}`; the documentation's own example.
    #[test]
    fn slacks_documented_example_is_accepted_and_a_changed_or_stale_one_refused() {
        let slack = signed(
            scheme(
                "X-Slack-Signature",
                "v0=",
                SignatureEncoding::Hex,
                HmacAlgorithm::Sha256,
            ),
            "v0:{timestamp}:{body}",
            "X-Slack-Request-Timestamp",
        );
        let secret = "8f742231b10e8888abcd99yyyzzz85a5";
        let body = b"token=xyzz0WbapA4vBCDEFasx0q6G&team_id=T1DC2JH3J&team_domain=testteamnow&channel_id=G8PSS9T3V&channel_name=foobar&user_id=U2CERLKJA&user_name=roadrunner&command=%2Fwebhook-collect&text=&response_url=https%3A%2F%2Fhooks.slack.com%2Fcommands%2FT1DC2JH3J%2F397700885554%2F96rGlfmibIGlgcZRskXaIFfN&trigger_id=398738663015.47445629121.803a0bc887a14d10d2c447fce8b6703c";
        let sent = headers(&[
            ("X-Slack-Request-Timestamp", "1531420618"),
            (
                "X-Slack-Signature",
                "v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503",
            ),
        ]);
        let now = 1_531_420_618;
        assert_eq!(
            check(&slack, secret, &sent, body, now).as_deref(),
            Ok("a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503")
        );
        let mut changed = body.to_vec();
        changed.push(b'x');
        assert_eq!(
            check(&slack, secret, &sent, &changed, now),
            Err(WebhookAuthError::BadSignature)
        );
        assert_eq!(
            check(&slack, "another-secret-0123", &sent, body, now),
            Err(WebhookAuthError::BadSignature)
        );
        assert_eq!(
            check(&slack, secret, &sent, body, now + 301),
            Err(WebhookAuthError::Stale(300))
        );
        let mut later = sent.clone();
        later[0].1 = "1531420700".into();
        assert_eq!(
            check(&slack, secret, &later, body, now),
            Err(WebhookAuthError::BadSignature),
            "the timestamp is signed"
        );
    }

    /// Zendesk (developer.zendesk.com, "Verifying webhook authenticity"): base64 of the
    /// HMAC-SHA256 of `{X-Zendesk-Webhook-Signature-Timestamp}{body}`, the timestamp in RFC 3339.
    #[test]
    fn a_zendesk_webhook_is_accepted_and_a_wrong_or_stale_one_refused() {
        let zendesk = signed(
            scheme(
                "X-Zendesk-Webhook-Signature",
                "",
                SignatureEncoding::Base64,
                HmacAlgorithm::Sha256,
            ),
            "{timestamp}{body}",
            "X-Zendesk-Webhook-Signature-Timestamp",
        );
        let secret = "zendesk-signing-secret-0123";
        let body = br#"{"type":"zen:event-type:ticket.comment_added","detail":{"id":"35"}}"#;
        let sent = headers(&[
            ("x-zendesk-webhook-signature-timestamp", "2026-12-07T10:00:00Z"),
            (
                "x-zendesk-webhook-signature",
                "74bpEpLXki9IR4+giDfbvJv6XzK13fqIIiMWmzodD/E=",
            ),
        ]);
        let now = chrono::DateTime::parse_from_rfc3339("2026-12-07T10:02:00Z")
            .unwrap()
            .timestamp();
        assert!(check(&zendesk, secret, &sent, body, now).is_ok());
        assert_eq!(
            check(&zendesk, "wrong-secret-0123", &sent, body, now),
            Err(WebhookAuthError::BadSignature)
        );
        assert_eq!(
            check(&zendesk, secret, &sent, body, now + 600),
            Err(WebhookAuthError::Stale(300))
        );
        let hex_instead = headers(&[
            ("x-zendesk-webhook-signature-timestamp", "2026-12-07T10:00:00Z"),
            ("x-zendesk-webhook-signature", "zz not base64"),
        ]);
        assert_eq!(
            check(&zendesk, secret, &hex_instead, body, now),
            Err(WebhookAuthError::Malformed("x-zendesk-webhook-signature".into()))
        );
    }

    /// Intercom (developers.intercom.com, webhook models, "Signed notifications"):
    /// `X-Hub-Signature: sha1=` and the hex HMAC-SHA1 of the body under the app's client secret.
    #[test]
    fn an_intercom_notification_is_accepted_and_a_wrong_one_refused() {
        let intercom = scheme("X-Hub-Signature", "sha1=", SignatureEncoding::Hex, HmacAlgorithm::Sha1);
        let secret = "intercom-client-secret-0123";
        let body = br#"{"type":"notification_event","topic":"conversation.admin.replied","data":{"item":{"id":"1"}}}"#;
        let sent = headers(&[("X-Hub-Signature", "sha1=4ae9d94a7032a7a6821dd1c7070110b8c02488c3")]);
        assert_eq!(
            check(&intercom, secret, &sent, body, 0).as_deref(),
            Ok("4ae9d94a7032a7a6821dd1c7070110b8c02488c3")
        );
        let upper = headers(&[("X-Hub-Signature", "sha1=4AE9D94A7032A7A6821DD1C7070110B8C02488C3")]);
        assert!(check(&intercom, secret, &upper, body, 0).is_ok(), "hex in either case");
        assert_eq!(
            check(&intercom, secret, &sent, b"{}", 0),
            Err(WebhookAuthError::BadSignature)
        );
        assert_eq!(
            check(&intercom, secret, &[], body, 0),
            Err(WebhookAuthError::Missing("x-hub-signature".into()))
        );
        let no_prefix = headers(&[("X-Hub-Signature", "4ae9d94a7032a7a6821dd1c7070110b8c02488c3")]);
        assert_eq!(
            check(&intercom, secret, &no_prefix, body, 0),
            Err(WebhookAuthError::Malformed("x-hub-signature".into()))
        );
    }

    /// Crisp (`node-crisp-api`, `lib/crisp.ts`, `verifyHook`): `X-Crisp-Signature`, the hex
    /// HMAC-SHA256 of `[{X-Crisp-Request-Timestamp};{body}]`.
    #[test]
    fn a_crisp_web_hook_is_accepted_and_a_wrong_or_stale_one_refused() {
        let crisp = signed(
            scheme("X-Crisp-Signature", "", SignatureEncoding::Hex, HmacAlgorithm::Sha256),
            "[{timestamp};{body}]",
            "X-Crisp-Request-Timestamp",
        );
        let secret = "crisp-plugin-secret-0123";
        let body = br#"{"website_id":"w1","event":"message:send","data":{"content":"Halo"}}"#;
        let sent = headers(&[
            ("X-Crisp-Request-Timestamp", "1765101600000"),
            (
                "X-Crisp-Signature",
                "6f51257ca44870c9e93c4349cc1ffd9c54712f5cf62918a96ab23a120d861430",
            ),
        ]);
        let now = 1_765_101_600 + 30;
        assert!(
            check(&crisp, secret, &sent, body, now).is_ok(),
            "milliseconds read as such"
        );
        assert_eq!(
            check(&crisp, "wrong-secret-0123", &sent, body, now),
            Err(WebhookAuthError::BadSignature)
        );
        assert_eq!(
            check(&crisp, secret, &sent, body, now + 3600),
            Err(WebhookAuthError::Stale(300))
        );
    }

    #[test]
    fn templates_parse_into_their_parts_and_refuse_what_they_cannot_sign() {
        let parts = SignedTemplate::try_from("v0:{timestamp}:{body}|{header:X-Id}{{}}".to_string()).unwrap();
        assert_eq!(
            parts.0,
            [
                SignedPart::Text("v0:".into()),
                SignedPart::Timestamp,
                SignedPart::Text(":".into()),
                SignedPart::Body,
                SignedPart::Text("|".into()),
                SignedPart::Header("X-Id".into()),
                SignedPart::Text("{}".into()),
            ]
        );
        for (template, says) in [
            ("{timestamp}", "does not sign {body}"),
            ("{body}{nonce}", "`{nonce}`"),
            ("{body", "starts no placeholder"),
            ("{body}}", "starts no placeholder"),
            ("{header:bad header}{body}", "`{header:bad header}`"),
        ] {
            let error = SignedTemplate::try_from(template.to_string()).unwrap_err();
            assert!(error.contains(says), "{template}: {error}");
        }
    }

    #[test]
    fn signing_times_are_read_in_seconds_milliseconds_or_rfc_3339() {
        assert_eq!(signing_time("1531420618"), Some(1_531_420_618));
        assert_eq!(signing_time("1531420618123"), Some(1_531_420_618));
        assert_eq!(signing_time("2018-07-12T18:36:58Z"), Some(1_531_420_618));
        assert_eq!(signing_time("yesterday"), None);
        assert_eq!(signing_time(""), None);
    }
}
