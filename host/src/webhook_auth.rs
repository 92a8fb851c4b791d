//! Verification of vendor webhook requests before any adapter sees them: Standard Webhooks
//! signatures, Chatwoot signatures, or a shared token; with timestamp tolerance and replay
//! protection for signed messages.

use std::collections::HashMap;
use std::sync::Mutex;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;
use thiserror::Error;

use crate::config::{WebhookAuth, WebhookConfig};

/// Why a webhook request was refused; `code()` is the JSON error code.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum WebhookAuthError {
    #[error("missing header `{0}`")]
    Missing(&'static str),
    #[error("header `{0}` is malformed")]
    Malformed(&'static str),
    #[error("the signature does not match")]
    BadSignature,
    #[error("the token does not match")]
    BadToken,
    #[error("the timestamp is more than {0} s away from now")]
    Stale(u64),
    #[error("this webhook id was already received")]
    Replayed,
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
            WebhookAuthError::Replayed => "replayed_webhook",
        }
    }
}

/// Remembers signed message ids for the tolerance window, per tenant.
#[derive(Default)]
pub struct ReplayGuard {
    seen: Mutex<HashMap<(String, String), i64>>,
}

impl ReplayGuard {
    /// Records `id`; false when it was already seen and has not expired.
    fn first_time(&self, tenant: &str, id: &str, now: i64, expires: i64) -> bool {
        let mut seen = self.seen.lock().expect("replay guard lock");
        if seen.len() > 100_000 {
            seen.retain(|_, expiry| *expiry > now);
        }
        match seen.get(&(tenant.to_string(), id.to_string())) {
            Some(expiry) if *expiry > now => false,
            _ => {
                seen.insert((tenant.to_string(), id.to_string()), expires);
                true
            }
        }
    }
}

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
        self.header(name).ok_or(WebhookAuthError::Missing(name))
    }
}

/// Verifies `request` for `tenant` as `config` says, at `now` (Unix seconds).
pub fn verify(
    tenant: &str,
    config: &WebhookConfig,
    request: &SignedRequest<'_>,
    now: i64,
    replays: &ReplayGuard,
) -> Result<(), WebhookAuthError> {
    let secret = config.secret.as_deref().unwrap_or("");
    let tolerance = config.tolerance_s as i64;
    match config.auth {
        WebhookAuth::None => Ok(()),
        WebhookAuth::Token => {
            let given = request
                .header("x-webhook-token")
                .map(str::to_string)
                .or_else(|| {
                    url::form_urlencoded::parse(request.query.as_bytes())
                        .find(|(k, _)| k == "token")
                        .map(|(_, v)| v.into_owned())
                })
                .ok_or(WebhookAuthError::Missing("x-webhook-token"))?;
            if bool::from(given.as_bytes().ct_eq(secret.as_bytes())) {
                Ok(())
            } else {
                Err(WebhookAuthError::BadToken)
            }
        }
        WebhookAuth::StandardWebhooks => {
            let id = request.required("webhook-id")?;
            let timestamp = request.required("webhook-timestamp")?;
            let signatures = request.required("webhook-signature")?;
            let ts = check_timestamp(timestamp, "webhook-timestamp", now, tolerance)?;
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
            if !replays.first_time(tenant, id, now, ts.saturating_add(tolerance + 1)) {
                return Err(WebhookAuthError::Replayed);
            }
            Ok(())
        }
        WebhookAuth::Chatwoot => {
            let signature = request.required("x-chatwoot-signature")?;
            let timestamp = request.required("x-chatwoot-timestamp")?;
            let ts = check_timestamp(timestamp, "x-chatwoot-timestamp", now, tolerance)?;
            let given = signature
                .strip_prefix("sha256=")
                .and_then(|h| hex::decode(h).ok())
                .ok_or(WebhookAuthError::Malformed("x-chatwoot-signature"))?;
            let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes any key length");
            mac.update(timestamp.as_bytes());
            mac.update(b".");
            mac.update(request.body);
            if mac.verify_slice(&given).is_err() {
                return Err(WebhookAuthError::BadSignature);
            }
            // Keyed on the decoded MAC: the hex is accepted in any letter case.
            if !replays.first_time(tenant, &hex::encode(&given), now, ts.saturating_add(tolerance + 1)) {
                return Err(WebhookAuthError::Replayed);
            }
            Ok(())
        }
    }
}

fn check_timestamp(text: &str, header: &'static str, now: i64, tolerance: i64) -> Result<i64, WebhookAuthError> {
    let ts: i64 = text.trim().parse().map_err(|_| WebhookAuthError::Malformed(header))?;
    if now.abs_diff(ts) > tolerance as u64 {
        return Err(WebhookAuthError::Stale(tolerance as u64));
    }
    Ok(ts)
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
        }
    }

    fn headers(id: &str, ts: i64, sig: &str) -> Vec<(String, String)> {
        vec![
            ("webhook-id".into(), id.into()),
            ("webhook-timestamp".into(), ts.to_string()),
            ("webhook-signature".into(), sig.into()),
        ]
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
        let guard = ReplayGuard::default();
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
        assert_eq!(verify("t", &cfg, &request, now, &guard), Ok(()));
        assert_eq!(
            verify("t", &cfg, &request, now, &guard),
            Err(WebhookAuthError::Replayed)
        );
        // Another tenant keeps its own replay window.
        assert_eq!(verify("u", &cfg, &request, now, &guard), Ok(()));
        let tampered = SignedRequest {
            headers: &ok,
            query: "",
            body: b"{ }",
        };
        assert_eq!(
            verify("t", &cfg, &tampered, now, &guard),
            Err(WebhookAuthError::BadSignature)
        );
        let old = standard_webhooks_signature(SECRET, "m2", now - 301, body);
        let stale = headers("m2", now - 301, &old);
        let request = SignedRequest {
            headers: &stale,
            query: "",
            body,
        };
        assert_eq!(
            verify("t", &cfg, &request, now, &guard),
            Err(WebhookAuthError::Stale(300))
        );
        let request = SignedRequest {
            headers: &[],
            query: "",
            body,
        };
        assert_eq!(
            verify("t", &cfg, &request, now, &guard),
            Err(WebhookAuthError::Missing("webhook-id"))
        );
    }

    #[test]
    fn chatwoot_and_token() {
        let guard = ReplayGuard::default();
        let now = 1_700_000_000;
        let body = b"{\"event\":\"message_created\"}";
        let mut mac = Hmac::<Sha256>::new_from_slice(b"cw-secret").unwrap();
        mac.update(format!("{now}.").as_bytes());
        mac.update(body);
        let sig = format!("sha256={}", hex::encode(mac.finalize().into_bytes()));
        let h = vec![
            ("X-Chatwoot-Signature".to_string(), sig),
            ("X-Chatwoot-Timestamp".to_string(), now.to_string()),
        ];
        let cfg = config(WebhookAuth::Chatwoot, "cw-secret");
        assert_eq!(
            verify(
                "t",
                &cfg,
                &SignedRequest {
                    headers: &h,
                    query: "",
                    body
                },
                now,
                &guard
            ),
            Ok(())
        );
        let wrong = config(WebhookAuth::Chatwoot, "other");
        assert_eq!(
            verify(
                "t",
                &wrong,
                &SignedRequest {
                    headers: &h,
                    query: "",
                    body
                },
                now,
                &guard
            ),
            Err(WebhookAuthError::BadSignature)
        );
        let cfg = config(WebhookAuth::Token, "tok");
        assert_eq!(
            verify(
                "t",
                &cfg,
                &SignedRequest {
                    headers: &[],
                    query: "token=tok",
                    body
                },
                now,
                &guard
            ),
            Ok(())
        );
        assert_eq!(
            verify(
                "t",
                &cfg,
                &SignedRequest {
                    headers: &[],
                    query: "token=nope",
                    body
                },
                now,
                &guard
            ),
            Err(WebhookAuthError::BadToken)
        );
    }
}
