//! Verification of vendor webhook requests before any adapter sees them: Standard Webhooks
//! signatures, Chatwoot signatures, a vendor's own HMAC scheme (`hmac`), or a shared token, with
//! timestamp tolerance for signed messages; and the request's dedupe key, the vendor's id of the webhook (the server answers a
//! key it has seen as the first request was answered, so retries and replays store nothing new).

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use thiserror::Error;

use crate::config::{WebhookAuth, WebhookConfig};

mod hmac_scheme;

/// Why a webhook request was refused; `code()` is the JSON error code.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum WebhookAuthError {
    #[error("missing header `{0}`")]
    Missing(String),
    #[error("header `{0}` is malformed")]
    Malformed(String),
    #[error("the signature does not match")]
    BadSignature,
    #[error("the token does not match")]
    BadToken,
    #[error("the timestamp is more than {0} s away from now")]
    Stale(u64),
}

impl WebhookAuthError {
    /// The error code clients see.
    pub fn code(&self) -> &'static str {
        match self {
            WebhookAuthError::Missing(_) => "missing_signature",
            WebhookAuthError::Malformed(_) => "malformed_signature",
            WebhookAuthError::BadSignature => "invalid_signature",
            WebhookAuthError::BadToken => "invalid_token",
            WebhookAuthError::Stale(_) => "stale_timestamp",
        }
    }

    /// Whether the request's token or signature was compared with the secret and did not match:
    /// what a guess of the secret looks like, and what the failure limit counts. A missing or
    /// malformed header and a stale timestamp test nothing (vendors send unsigned pings, and
    /// retries of old deliveries) and do not count.
    pub fn is_wrong_secret(&self) -> bool {
        matches!(self, WebhookAuthError::BadToken | WebhookAuthError::BadSignature)
    }
}

/// The header of `auth = "token"` unless the tenant names another.
pub const DEFAULT_TOKEN_HEADER: &str = "x-webhook-token";

/// Dedupe keys longer than this are replaced by `sha256:` and the hex of their SHA-256.
pub const MAX_DEDUPE_KEY_BYTES: usize = 200;

/// A request as far as verification needs it.
pub struct SignedRequest<'a> {
    pub headers: &'a [(String, String)],
    pub query: &'a str,
    pub body: &'a [u8],
}

impl SignedRequest<'_> {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Header `name`, which the scheme requires.
    fn required(&self, name: &'static str) -> Result<&str, WebhookAuthError> {
        self.header(name)
            .ok_or_else(|| WebhookAuthError::Missing(name.to_string()))
    }
}

/// Verifies `request` as `config` says, at `now` (Unix seconds). Returns the request's dedupe
/// keys, any of which seen before makes it a repeat: the value of the tenant's
/// [`dedupe_header`], and what the signature covers that identifies the webhook (the Standard
/// Webhooks id; the Chatwoot signature, since Chatwoot's delivery id is not signed); none for
/// token and unverified webhooks without the header. Keys are at most [`MAX_DEDUPE_KEY_BYTES`]
/// long.
pub fn verify(config: &WebhookConfig, request: &SignedRequest<'_>, now: i64) -> Result<Vec<String>, WebhookAuthError> {
    let secret = config.secret.as_deref().unwrap_or("");
    let tolerance = config.tolerance_s as i64;
    // What the signature covers that identifies the webhook: its id, or the signature itself.
    let fallback = match config.auth {
        WebhookAuth::None => None,
        WebhookAuth::Token => {
            let header = config.header.as_deref().unwrap_or(DEFAULT_TOKEN_HEADER);
            let given = request
                .header(header)
                .map(str::to_string)
                .or_else(|| {
                    let param = config.query.as_deref()?;
                    url::form_urlencoded::parse(request.query.as_bytes())
                        .find(|(k, _)| k == param)
                        .map(|(_, v)| v.into_owned())
                })
                .ok_or_else(|| WebhookAuthError::Missing(header.to_ascii_lowercase()))?;
            if !bool::from(given.as_bytes().ct_eq(secret.as_bytes())) {
                return Err(WebhookAuthError::BadToken);
            }
            None
        }
        WebhookAuth::StandardWebhooks => {
            let id = request.required("webhook-id")?;
            let timestamp = request.required("webhook-timestamp")?;
            let signatures = request.required("webhook-signature")?;
            check_timestamp(timestamp, "webhook-timestamp", now, tolerance)?;
            let key = match secret.strip_prefix("whsec_") {
                Some(encoded) => BASE64.decode(encoded).map_err(|_| WebhookAuthError::BadSignature)?,
                None => secret.as_bytes().to_vec(),
            };
            let mut mac = Hmac::<Sha256>::new_from_slice(&key).expect("HMAC takes any key length");
            mac.update(id.as_bytes());
            mac.update(b".");
            mac.update(timestamp.as_bytes());
            mac.update(b".");
            mac.update(request.body);
            let expected = mac.finalize().into_bytes();
            let matches = signatures.split(' ').filter_map(|s| s.strip_prefix("v1,")).any(|sig| {
                BASE64
                    .decode(sig)
                    .is_ok_and(|sig| bool::from(sig.as_slice().ct_eq(expected.as_slice())))
            });
            if !matches {
                return Err(WebhookAuthError::BadSignature);
            }
            Some(id.to_string())
        }
        WebhookAuth::Chatwoot => {
            let signature = request.required("x-chatwoot-signature")?;
            let timestamp = request.required("x-chatwoot-timestamp")?;
            check_timestamp(timestamp, "x-chatwoot-timestamp", now, tolerance)?;
            let given = signature
                .strip_prefix("sha256=")
                .and_then(|h| hex::decode(h).ok())
                .ok_or_else(|| WebhookAuthError::Malformed("x-chatwoot-signature".into()))?;
            let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes any key length");
            mac.update(timestamp.as_bytes());
            mac.update(b".");
            mac.update(request.body);
            if mac.verify_slice(&given).is_err() {
                return Err(WebhookAuthError::BadSignature);
            }
            // Older Chatwoot sends no delivery id: the signature is unique to the webhook
            // (timestamp and body), and decoded, since its hex is accepted in any letter case.
            Some(hex::encode(&given))
        }
        WebhookAuth::Hmac => {
            let scheme = config.hmac.as_ref().ok_or(WebhookAuthError::BadSignature)?;
            Some(hmac_scheme::verify(scheme, secret, request, now, tolerance)?)
        }
    };
    // The vendor's id (which a retry keeps) and, where the id is not signed, the signed part too
    // (which a replay keeps even when the unsigned header is changed).
    let mut keys: Vec<String> = dedupe_header(config)
        .and_then(|name| request.header(name))
        .map(str::trim)
        .filter(|value| !value.is_empty())
        .map(str::to_string)
        .into_iter()
        .collect();
    if let Some(signed) = fallback
        && !keys.contains(&signed)
    {
        keys.push(signed);
    }
    Ok(keys.into_iter().map(bounded).collect())
}

/// The request as the adapter sees it: without the bridge's own webhook token. For `auth =
/// "token"` the token's header (`header`, else [`DEFAULT_TOKEN_HEADER`]) and its query parameter
/// (`query`, when set) are removed, and every other header and parameter is kept as sent (the
/// query's other parameters keep their encoding); for other schemes nothing changes, since
/// vendor signatures are the adapter's to check again if it wants. The token authenticates the
/// vendor to the bridge; no adapter needs it.
pub fn without_token(
    config: &WebhookConfig,
    headers: Vec<(String, String)>,
    query: String,
) -> (Vec<(String, String)>, String) {
    if config.auth != WebhookAuth::Token {
        return (headers, query);
    }
    let header = config.header.as_deref().unwrap_or(DEFAULT_TOKEN_HEADER);
    let headers = headers
        .into_iter()
        .filter(|(k, _)| !k.eq_ignore_ascii_case(header))
        .collect();
    let Some(param) = config.query.as_deref() else {
        return (headers, query);
    };
    let query = query
        .split('&')
        .filter(|pair| {
            let name = url::form_urlencoded::parse(pair.as_bytes()).next().map(|(k, _)| k);
            name.as_deref() != Some(param)
        })
        .collect::<Vec<_>>()
        .join("&");
    (headers, query)
}

/// The header naming a tenant's webhooks for deduplication: `dedupe_header`, else
/// `x-chatwoot-delivery` (Chatwoot) or `webhook-id` (Standard Webhooks).
pub fn dedupe_header(config: &WebhookConfig) -> Option<&str> {
    config.dedupe_header.as_deref().or(match config.auth {
        WebhookAuth::Chatwoot => Some("x-chatwoot-delivery"),
        WebhookAuth::StandardWebhooks => Some("webhook-id"),
        WebhookAuth::Hmac | WebhookAuth::Token | WebhookAuth::None => None,
    })
}

/// `key` as the store keeps it: itself, or its hash when it is longer than
/// [`MAX_DEDUPE_KEY_BYTES`] or holds a control character (PostgreSQL's text holds no NUL). Also
/// used for the keys adapters give their webhook events.
pub fn bounded(key: String) -> String {
    if key.len() > MAX_DEDUPE_KEY_BYTES || key.chars().any(char::is_control) {
        format!("sha256:{}", hex::encode(Sha256::digest(key.as_bytes())))
    } else {
        key
    }
}

fn check_timestamp(text: &str, header: &str, now: i64, tolerance: i64) -> Result<(), WebhookAuthError> {
    let ts: i64 = text
        .trim()
        .parse()
        .map_err(|_| WebhookAuthError::Malformed(header.to_string()))?;
    if now.abs_diff(ts) > tolerance as u64 {
        return Err(WebhookAuthError::Stale(tolerance as u64));
    }
    Ok(())
}

/// Signs like a Standard Webhooks sender (for tests and tools).
pub fn standard_webhooks_signature(secret: &str, id: &str, timestamp: i64, body: &[u8]) -> String {
    let key = match secret.strip_prefix("whsec_") {
        Some(encoded) => BASE64.decode(encoded).unwrap_or_default(),
        None => secret.as_bytes().to_vec(),
    };
    let mut mac = Hmac::<Sha256>::new_from_slice(&key).expect("HMAC takes any key length");
    mac.update(format!("{id}.{timestamp}.").as_bytes());
    mac.update(body);
    format!("v1,{}", BASE64.encode(mac.finalize().into_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

    fn config(auth: WebhookAuth, secret: &str) -> WebhookConfig {
        WebhookConfig {
            auth,
            secret: Some(secret.into()),
            tolerance_s: 300,
            dedupe_header: None,
            header: None,
            query: None,
            hmac: None,
            ticket_pointers: Vec::new(),
        }
    }

    #[test]
    fn only_a_compared_secret_counts_as_a_wrong_one() {
        assert!(WebhookAuthError::BadToken.is_wrong_secret());
        assert!(WebhookAuthError::BadSignature.is_wrong_secret());
        for untested in [
            WebhookAuthError::Missing("x-webhook-token".into()),
            WebhookAuthError::Malformed("x-chatwoot-signature".into()),
            WebhookAuthError::Stale(300),
        ] {
            assert!(!untested.is_wrong_secret(), "{untested:?}");
        }
    }

    fn headers(id: &str, ts: i64, sig: &str) -> Vec<(String, String)> {
        vec![
            ("webhook-id".into(), id.into()),
            ("webhook-timestamp".into(), ts.to_string()),
            ("webhook-signature".into(), sig.into()),
        ]
    }

    #[test]
    fn the_adapter_gets_no_webhook_token() {
        let mut cfg = config(WebhookAuth::Token, "s3cret-token");
        cfg.header = Some("X-RocketChat-Livechat-Token".into());
        cfg.query = Some("token".into());
        let headers = vec![
            ("x-rocketchat-livechat-token".to_string(), "s3cret-token".to_string()),
            ("content-type".to_string(), "application/json".to_string()),
        ];
        let query = "a=1&token=s3cret-token&b=x%20y&to%6Ben=again&tokens=kept".to_string();
        let (headers, query) = without_token(&cfg, headers, query);
        assert_eq!(
            headers,
            vec![("content-type".to_string(), "application/json".to_string())]
        );
        assert_eq!(query, "a=1&b=x%20y&tokens=kept");
    }

    #[test]
    fn signatures_and_other_schemes_reach_the_adapter_unchanged() {
        let headers = vec![
            ("x-webhook-token".to_string(), "t".to_string()),
            ("webhook-signature".to_string(), "v1,x".to_string()),
        ];
        for auth in [WebhookAuth::None, WebhookAuth::StandardWebhooks, WebhookAuth::Chatwoot] {
            let cfg = config(auth, SECRET);
            let got = without_token(&cfg, headers.clone(), "token=t".into());
            assert_eq!(got, (headers.clone(), "token=t".to_string()));
        }
        // Token auth without a query parameter keeps the query whole.
        let cfg = config(WebhookAuth::Token, "s3cret-token");
        let (kept, query) = without_token(&cfg, headers.clone(), "token=t".into());
        assert_eq!(kept, vec![headers[1].clone()]);
        assert_eq!(query, "token=t");
    }

    /// The example from the Standard Webhooks specification.
    #[test]
    fn standard_webhooks_reference_vector() {
        let body = br#"{"test": 2432232314}"#;
        let sig = standard_webhooks_signature(SECRET, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body);
        assert_eq!(sig, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
    }

    #[test]
    fn standard_webhooks_checks() {
        let cfg = config(WebhookAuth::StandardWebhooks, SECRET);
        let body = b"{}";
        let now = 1_700_000_000;
        let sig = standard_webhooks_signature(SECRET, "m1", now, body);
        let ok = headers("m1", now, &format!("v1,bogus {sig}"));
        let request = SignedRequest {
            headers: &ok,
            query: "",
            body,
        };
        // The key is the webhook id: the same again (a replay) or re-signed (a retry).
        assert_eq!(verify(&cfg, &request, now), Ok(vec!["m1".to_string()]));
        assert_eq!(verify(&cfg, &request, now), Ok(vec!["m1".to_string()]));
        let retry = headers(
            "m1",
            now + 60,
            &standard_webhooks_signature(SECRET, "m1", now + 60, body),
        );
        let request = SignedRequest {
            headers: &retry,
            query: "",
            body,
        };
        assert_eq!(verify(&cfg, &request, now), Ok(vec!["m1".to_string()]));
        let tampered = SignedRequest {
            headers: &ok,
            query: "",
            body: b"{ }",
        };
        assert_eq!(verify(&cfg, &tampered, now), Err(WebhookAuthError::BadSignature));
        let old = standard_webhooks_signature(SECRET, "m2", now - 301, body);
        let stale = headers("m2", now - 301, &old);
        let request = SignedRequest {
            headers: &stale,
            query: "",
            body,
        };
        assert_eq!(verify(&cfg, &request, now), Err(WebhookAuthError::Stale(300)));
        let request = SignedRequest {
            headers: &[],
            query: "",
            body,
        };
        assert_eq!(
            verify(&cfg, &request, now),
            Err(WebhookAuthError::Missing("webhook-id".into()))
        );
    }

    #[test]
    fn chatwoot_and_token() {
        let now = 1_700_000_000;
        let body = b"{\"event\":\"message_created\"}";
        let mut mac = Hmac::<Sha256>::new_from_slice(b"cw-secret").unwrap();
        mac.update(format!("{now}.").as_bytes());
        mac.update(body);
        let sig = format!("sha256={}", hex::encode(mac.finalize().into_bytes()));
        let h = vec![
            ("X-Chatwoot-Signature".to_string(), sig.clone()),
            ("X-Chatwoot-Timestamp".to_string(), now.to_string()),
        ];
        let check = |cfg: &WebhookConfig, headers: &[(String, String)], query: &str| {
            verify(cfg, &SignedRequest { headers, query, body }, now)
        };
        // Without X-Chatwoot-Delivery (older Chatwoot) the key is the signature, in lower case
        // however its hex was written.
        let cfg = config(WebhookAuth::Chatwoot, "cw-secret");
        let mac_key = sig.trim_start_matches("sha256=").to_string();
        assert_eq!(check(&cfg, &h, ""), Ok(vec![mac_key.clone()]));
        let upper = vec![
            (
                "X-Chatwoot-Signature".to_string(),
                format!("sha256={}", mac_key.to_uppercase()),
            ),
            ("X-Chatwoot-Timestamp".to_string(), now.to_string()),
        ];
        assert_eq!(check(&cfg, &upper, ""), Ok(vec![mac_key]));
        let wrong = config(WebhookAuth::Chatwoot, "other");
        assert_eq!(check(&wrong, &h, ""), Err(WebhookAuthError::BadSignature));
        let cfg = config(WebhookAuth::Token, "tok");
        let token_header = [("X-Webhook-Token".to_string(), "tok".to_string())];
        assert_eq!(check(&cfg, &token_header, ""), Ok(vec![]));
        assert_eq!(
            check(&cfg, &[], "token=tok"),
            Err(WebhookAuthError::Missing("x-webhook-token".into())),
            "the query form only where configured"
        );
        let cfg = WebhookConfig {
            query: Some("token".into()),
            ..cfg
        };
        assert_eq!(check(&cfg, &[], "token=tok"), Ok(vec![]));
        assert_eq!(check(&cfg, &[], "token=nope"), Err(WebhookAuthError::BadToken));
    }

    /// Vendors name their token header themselves (Rocket.Chat: `X-RocketChat-Livechat-Token`).
    #[test]
    fn a_token_is_read_from_the_header_the_tenant_names() {
        let cfg = WebhookConfig {
            header: Some("X-RocketChat-Livechat-Token".into()),
            ..config(WebhookAuth::Token, "tok")
        };
        let check = |headers: &[(String, String)]| {
            verify(
                &cfg,
                &SignedRequest {
                    headers,
                    query: "",
                    body: b"{}",
                },
                0,
            )
        };
        assert_eq!(
            check(&[("x-rocketchat-livechat-token".into(), "tok".into())]),
            Ok(vec![])
        );
        assert_eq!(
            check(&[("x-rocketchat-livechat-token".into(), "nope".into())]),
            Err(WebhookAuthError::BadToken)
        );
        assert_eq!(
            check(&[("x-webhook-token".into(), "tok".into())]),
            Err(WebhookAuthError::Missing("x-rocketchat-livechat-token".into())),
            "the default header no longer counts"
        );
    }

    /// Chatwoot signs `{timestamp}.{body}` with `secret`.
    fn chatwoot_headers(secret: &str, timestamp: i64, body: &[u8], delivery: Option<&str>) -> Vec<(String, String)> {
        let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
        mac.update(format!("{timestamp}.").as_bytes());
        mac.update(body);
        let mut headers = vec![
            (
                "X-Chatwoot-Signature".to_string(),
                format!("sha256={}", hex::encode(mac.finalize().into_bytes())),
            ),
            ("X-Chatwoot-Timestamp".to_string(), timestamp.to_string()),
        ];
        headers.extend(delivery.map(|d| ("X-Chatwoot-Delivery".to_string(), d.to_string())));
        headers
    }

    #[test]
    fn a_chatwoot_retry_has_the_key_of_its_first_delivery() {
        let cfg = config(WebhookAuth::Chatwoot, "cw-secret");
        let now = 1_700_000_000;
        let body = b"{}";
        let key = |headers: &[(String, String)]| {
            verify(
                &cfg,
                &SignedRequest {
                    headers,
                    query: "",
                    body,
                },
                now,
            )
            .unwrap()
        };
        // A retry is signed again with a new timestamp; its delivery id stays.
        let first = chatwoot_headers("cw-secret", now - 10, body, Some("d-42"));
        let retry = chatwoot_headers("cw-secret", now, body, Some(" d-42 "));
        assert_eq!(key(&first)[0], "d-42");
        assert_eq!(key(&retry)[0], "d-42");
        // The delivery id is not signed: the signature is a key too, so a replay of a captured
        // request with the header changed is still recognised.
        let replay = chatwoot_headers("cw-secret", now - 10, body, Some("d-forged"));
        assert_eq!(key(&first).len(), 2);
        assert_eq!(key(&first)[1], key(&replay)[1]);
        // An empty delivery header counts as absent.
        let empty = chatwoot_headers("cw-secret", now, body, Some(""));
        assert_eq!(key(&empty), key(&chatwoot_headers("cw-secret", now, body, None)));
        // A configured header replaces X-Chatwoot-Delivery; the signature stays the fallback.
        let custom = WebhookConfig {
            dedupe_header: Some("X-Request-Id".into()),
            ..cfg.clone()
        };
        let mut with_custom = first.clone();
        with_custom.push(("x-request-id".into(), "r-7".into()));
        let verified = |headers: &[(String, String)]| {
            verify(
                &custom,
                &SignedRequest {
                    headers,
                    query: "",
                    body,
                },
                now,
            )
            .unwrap()
        };
        assert_eq!(verified(&with_custom)[0], "r-7");
        let signature_key = key(&chatwoot_headers("cw-secret", now - 10, body, None));
        assert_eq!(verified(&first), signature_key);
    }

    #[test]
    fn token_and_unverified_webhooks_have_a_key_only_with_a_configured_header() {
        let body = b"{}";
        let now = 1_700_000_000;
        let with_id = vec![
            ("x-webhook-token".to_string(), "tok".to_string()),
            ("X-Delivery-Id".to_string(), "abc".to_string()),
        ];
        let request = SignedRequest {
            headers: &with_id,
            query: "",
            body,
        };
        let token = config(WebhookAuth::Token, "tok");
        assert_eq!(verify(&token, &request, now), Ok(vec![]));
        let token = WebhookConfig {
            dedupe_header: Some("x-delivery-id".into()),
            ..token
        };
        assert_eq!(verify(&token, &request, now), Ok(vec!["abc".to_string()]));
        let none = WebhookConfig {
            auth: WebhookAuth::None,
            secret: None,
            ..config(WebhookAuth::None, "")
        };
        assert_eq!(verify(&none, &request, now), Ok(vec![]));
        let none = WebhookConfig {
            dedupe_header: Some("x-delivery-id".into()),
            ..none
        };
        assert_eq!(verify(&none, &request, now), Ok(vec!["abc".to_string()]));
        // The header must be there: nothing else identifies such a webhook.
        let request = SignedRequest {
            headers: &with_id[..1],
            query: "",
            body,
        };
        assert_eq!(verify(&token, &request, now), Ok(vec![]));
    }

    #[test]
    fn long_keys_are_hashed() {
        let cfg = config(WebhookAuth::StandardWebhooks, SECRET);
        let now = 1_700_000_000;
        let body = b"{}";
        let key = |id: &str| {
            let headers = headers(id, now, &standard_webhooks_signature(SECRET, id, now, body));
            verify(
                &cfg,
                &SignedRequest {
                    headers: &headers,
                    query: "",
                    body,
                },
                now,
            )
            .unwrap()
            .remove(0)
        };
        let longest = "a".repeat(MAX_DEDUPE_KEY_BYTES);
        assert_eq!(key(&longest), longest);
        let long = "a".repeat(MAX_DEDUPE_KEY_BYTES + 1);
        let hashed = key(&long);
        assert_eq!(
            hashed,
            format!("sha256:{}", hex::encode(Sha256::digest(long.as_bytes())))
        );
        assert!(hashed.len() <= MAX_DEDUPE_KEY_BYTES);
        assert_ne!(hashed, key(&"b".repeat(MAX_DEDUPE_KEY_BYTES + 1)));
    }
}
