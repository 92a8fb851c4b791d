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
    /// An HMAC signature as the vendor makes it, described by `[tenants.webhook.hmac]`.
    Hmac,
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
    /// `auth = "hmac"`: where the signature is, how it is encoded and what it signs.
    pub hmac: Option<HmacScheme>,
    /// JSON pointers into a webhook's JSON body where the vendor echoes the 3Dolphins ticket
    /// number (`/conversation/custom_attributes/ticket_number` for Chatwoot), tried in order:
    /// while a canary runs, a webhook whose ticket is found runs on that ticket's version; one
    /// whose ticket is not found runs on the current version.
    #[serde(default)]
    pub ticket_pointers: Vec<String>,
}

/// `[tenants.webhook.hmac]`: a vendor's own HMAC signature scheme (Zendesk, Intercom, Slack,
/// Crisp and others each sign a little differently).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HmacScheme {
    /// The request header carrying the signature.
    pub header: String,
    /// Text before the signature in the header (`sha256=`, `v0=`), taken off before decoding.
    #[serde(default)]
    pub prefix: String,
    /// How the signature's bytes are written: `hex` (either letter case) or `base64`.
    #[serde(default)]
    pub encoding: SignatureEncoding,
    #[serde(default)]
    pub algorithm: HmacAlgorithm,
    /// What is signed: `{body}` (the raw body), `{timestamp}` (the timestamp header's value as
    /// sent), `{header:NAME}` (another header's value) and text between them; `{{` and `}}` for
    /// braces. `{body}` by default.
    #[serde(default = "SignedTemplate::body_only")]
    pub signed: SignedTemplate,
    /// The header carrying the time of signing (Unix seconds, milliseconds, or RFC 3339): when
    /// set, a request further than `tolerance_s` from now is refused as stale.
    pub timestamp_header: Option<String>,
}

/// How a signature's bytes are written in its header.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SignatureEncoding {
    #[default]
    Hex,
    Base64,
}

/// The hash of the HMAC.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum HmacAlgorithm {
    Sha1,
    #[default]
    Sha256,
    Sha512,
}

/// One piece of what a vendor signs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SignedPart {
    Text(String),
    Body,
    Timestamp,
    Header(String),
}

/// What a vendor signs, parsed once from `signed` (see [`HmacScheme::signed`]).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub struct SignedTemplate(pub Vec<SignedPart>);

impl SignedTemplate {
    fn body_only() -> SignedTemplate {
        SignedTemplate(vec![SignedPart::Body])
    }
}

impl TryFrom<String> for SignedTemplate {
    type Error = String;

    fn try_from(text: String) -> Result<SignedTemplate, String> {
        let mut parts = Vec::new();
        let mut literal = String::new();
        let mut rest = text.as_str();
        while let Some(at) = rest.find(['{', '}']) {
            literal.push_str(&rest[..at]);
            let tail = &rest[at..];
            if let Some(after) = tail.strip_prefix("{{").or_else(|| tail.strip_prefix("}}")) {
                literal.push_str(&tail[..1]);
                rest = after;
                continue;
            }
            let Some(end) = tail.strip_prefix('{').and_then(|t| t.find('}')) else {
                return Err(format!(
                    "`{}` at byte {at} of `{text}` starts no placeholder (write `{{{{` or `}}}}` for a brace)",
                    &tail[..1]
                ));
            };
            let name = &tail[1..=end];
            let part = match name {
                "body" => SignedPart::Body,
                "timestamp" => SignedPart::Timestamp,
                _ => match name.strip_prefix("header:") {
                    Some(header) if http::HeaderName::from_bytes(header.as_bytes()).is_ok() => {
                        SignedPart::Header(header.to_string())
                    }
                    _ => {
                        return Err(format!(
                            "`{{{name}}}` in `{text}` is not {{body}}, {{timestamp}} or {{header:NAME}}"
                        ));
                    }
                },
            };
            if !literal.is_empty() {
                parts.push(SignedPart::Text(std::mem::take(&mut literal)));
            }
            parts.push(part);
            rest = &tail[end + 2..];
        }
        literal.push_str(rest);
        if !literal.is_empty() {
            parts.push(SignedPart::Text(literal));
        }
        if !parts.contains(&SignedPart::Body) {
            return Err(format!("`{text}` does not sign {{body}}: the body would go unchecked"));
        }
        Ok(SignedTemplate(parts))
    }
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
            "is required: set auth to standard-webhooks, chatwoot, hmac, token, or none",
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
    if webhook.ticket_pointers.iter().any(|p| !p.starts_with('/')) {
        return Err(invalid(
            field("webhook.ticket_pointers"),
            "each must be a JSON pointer starting with `/` (`/conversation/custom_attributes/ticket_number`)",
        ));
    }
    check_hmac_scheme(webhook, field)?;
    let timestamped = match webhook.auth {
        WebhookAuth::StandardWebhooks | WebhookAuth::Chatwoot => true,
        WebhookAuth::Hmac => webhook.hmac.as_ref().is_some_and(|h| h.timestamp_header.is_some()),
        WebhookAuth::Token | WebhookAuth::None => false,
    };
    if timestamped && webhook.tolerance_s.saturating_mul(1_000) > dedupe_window_ms {
        return Err(invalid(
            field("webhook.tolerance_s"),
            "is longer than delivery.webhook_dedupe_window_ms: a webhook replayed after its id is forgotten would be processed again",
        ));
    }
    Ok(())
}

/// `[tenants.webhook.hmac]`: present exactly when `auth = "hmac"`, its headers header names,
/// and a timestamp header wherever `{timestamp}` is signed.
fn check_hmac_scheme(webhook: &WebhookConfig, field: &dyn Fn(&str) -> String) -> Result<(), FieldError> {
    let scheme = match (&webhook.hmac, webhook.auth) {
        (None, WebhookAuth::Hmac) => {
            return Err(invalid(
                field("webhook.hmac"),
                "is required for auth = \"hmac\": name at least the signature's header",
            ));
        }
        (Some(_), auth) if auth != WebhookAuth::Hmac => {
            return Err(invalid(field("webhook.hmac"), "applies only to auth = \"hmac\""));
        }
        (None, _) => return Ok(()),
        (Some(scheme), _) => scheme,
    };
    for (name, header) in [
        ("header", Some(&scheme.header)),
        ("timestamp_header", scheme.timestamp_header.as_ref()),
    ] {
        if let Some(header) = header
            && http::HeaderName::from_bytes(header.as_bytes()).is_err()
        {
            return Err(invalid(
                field(&format!("webhook.hmac.{name}")),
                "is not an HTTP header name",
            ));
        }
    }
    if scheme.signed.0.contains(&SignedPart::Timestamp) && scheme.timestamp_header.is_none() {
        return Err(invalid(
            field("webhook.hmac.signed"),
            "signs {timestamp}: set timestamp_header to the header carrying it",
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
