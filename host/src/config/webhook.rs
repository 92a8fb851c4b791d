//! `[tenants.webhook]`: how a tenant's webhook requests are verified (auth, secret, timestamp
//! tolerance, deduplication header).

use serde::Deserialize;

use super::secrets::check_secret;
use super::{FieldError, invalid};

/// The shortest webhook secret accepted, in bytes (of the decoded key for a `whsec_` secret).
/// Vendors issue these (Chatwoot's are 24 characters, Standard Webhooks keys 24 to 64 bytes), so
/// the floor only catches placeholders and typos.
pub const MIN_WEBHOOK_SECRET_BYTES: usize = 8;

/// The largest `tenants[].webhook.tolerance_s`: one day.
pub const MAX_WEBHOOK_TOLERANCE_S: u64 = 86_400;

/// How a tenant's webhook requests are authenticated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum WebhookAuth {
    /// Standard Webhooks: `webhook-id`, `webhook-timestamp`, `webhook-signature` (HMAC-SHA256).
    StandardWebhooks,
    /// Chatwoot: `X-Chatwoot-Signature: sha256=HMAC(secret, "{timestamp}.{body}")` and
    /// `X-Chatwoot-Timestamp`.
    Chatwoot,
    /// A shared secret in a header (`X-Webhook-Token` unless `header` names another), or in a
    /// query parameter when `query` names one.
    Token,
    /// No verification (development only; must be chosen explicitly).
    None,
}

/// `[tenants.webhook]`: verification of the vendor's webhook requests.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookConfig {
    pub auth: WebhookAuth,
    /// The signing secret or token (a secret). Standard Webhooks secrets may carry `whsec_`.
    pub secret: Option<String>,
    /// How far a signed timestamp may be from now, seconds.
    #[serde(default = "defaults::webhook_tolerance_s")]
    pub tolerance_s: u64,
    /// The request header carrying the vendor's id of a webhook, the same on each of its
    /// retries: a webhook whose id was seen within `delivery.webhook_dedupe_window_ms` is answered
    /// as the first was and stores nothing. Unset: `x-chatwoot-delivery` for Chatwoot (the
    /// signature when the header is absent), `webhook-id` for Standard Webhooks, none otherwise.
    pub dedupe_header: Option<String>,
    /// `auth = "token"`: the request header carrying the token; `X-Webhook-Token` when unset.
    pub header: Option<String>,
    /// `auth = "token"`: a query parameter that may carry the token instead of the header, for
    /// vendors that can only be given a URL; unset, the header only (a token in a URL ends up
    /// in access logs).
    pub query: Option<String>,
}

/// A tenant's `webhook` table: present, with a sound secret unless `auth = "none"`, and a
/// tolerance within bounds. `field` names a field of the tenant (`tenants[i].…`);
/// `dedupe_window_ms` is `delivery.webhook_dedupe_window_ms`.
pub(super) fn check_webhook(
    webhook: Option<&WebhookConfig>,
    dedupe_window_ms: u64,
    field: &dyn Fn(&str) -> String,
) -> Result<(), FieldError> {
    match webhook {
        None => Err(invalid(
            field("webhook"),
            "is required: set auth to standard-webhooks, chatwoot, token, or none",
        )),
        Some(webhook) if webhook.auth != WebhookAuth::None && webhook.secret.as_deref().is_none_or(str::is_empty) => {
            Err(invalid(field("webhook.secret"), "is required for this auth"))
        }
        Some(webhook) => {
            if webhook.auth != WebhookAuth::None
                && let Some(secret) = &webhook.secret
            {
                check_webhook_secret(webhook.auth, secret).map_err(|m| invalid(field("webhook.secret"), m))?;
            }
            if webhook.tolerance_s > MAX_WEBHOOK_TOLERANCE_S {
                return Err(invalid(
                    field("webhook.tolerance_s"),
                    format!("must be at most {MAX_WEBHOOK_TOLERANCE_S} seconds (one day)"),
                ));
            }
            check_webhook_options(webhook, dedupe_window_ms, field)
        }
    }
}

/// A tenant's webhook deduplication: a header name, and ids kept at least as long as a
/// signed request may be replayed.
fn check_webhook_options(
    webhook: &WebhookConfig,
    dedupe_window_ms: u64,
    field: &dyn Fn(&str) -> String,
) -> Result<(), FieldError> {
    for (name, header) in [("dedupe_header", &webhook.dedupe_header), ("header", &webhook.header)] {
        if let Some(header) = header
            && http::HeaderName::from_bytes(header.as_bytes()).is_err()
        {
            return Err(invalid(field(&format!("webhook.{name}")), "is not an HTTP header name"));
        }
    }
    for (name, set) in [("header", webhook.header.is_some()), ("query", webhook.query.is_some())] {
        if set && webhook.auth != WebhookAuth::Token {
            return Err(invalid(
                field(&format!("webhook.{name}")),
                "applies only to auth = \"token\"",
            ));
        }
    }
    if webhook.query.as_deref().is_some_and(str::is_empty) {
        return Err(invalid(field("webhook.query"), "must name a query parameter"));
    }
    if matches!(webhook.auth, WebhookAuth::StandardWebhooks | WebhookAuth::Chatwoot)
        && webhook.tolerance_s.saturating_mul(1_000) > dedupe_window_ms
    {
        return Err(invalid(
            field("webhook.tolerance_s"),
            "is longer than delivery.webhook_dedupe_window_ms: a webhook replayed after its id is forgotten would be processed again",
        ));
    }
    Ok(())
}

/// A webhook secret of `auth`: at least [`MIN_WEBHOOK_SECRET_BYTES`]; a Standard Webhooks secret
/// with the `whsec_` prefix must carry a base64 key of that size. The message never contains
/// the secret.
fn check_webhook_secret(auth: WebhookAuth, secret: &str) -> Result<(), String> {
    use base64::Engine as _;
    if auth == WebhookAuth::StandardWebhooks
        && let Some(encoded) = secret.strip_prefix("whsec_")
    {
        // Decoded as the signature check decodes it.
        let key = base64::engine::general_purpose::STANDARD
            .decode(encoded)
            .map_err(|_| "is not valid base64 after its prefix".to_string())?;
        if key.is_empty() {
            return Err("has an empty key after its prefix".into());
        }
        if key.len() < MIN_WEBHOOK_SECRET_BYTES {
            return Err(format!(
                "has a key of {} bytes, at least {MIN_WEBHOOK_SECRET_BYTES} are required",
                key.len()
            ));
        }
        return Ok(());
    }
    check_secret(secret, MIN_WEBHOOK_SECRET_BYTES)
}

mod defaults {
    pub fn webhook_tolerance_s() -> u64 {
        300
    }
}
