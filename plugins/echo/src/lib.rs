//! `echo`: the smallest adapter, and a generic "JSON vendor" for tests and simple integrations.
//!
//! **on-incoming**: when config `url` is set, POSTs the Incoming event as 3Dolphins JSON
//! (camelCase field names) plus `deliveryId`, `attempt`, `tenant` and, when config `tag` is set,
//! `tag`, through the host. The vendor's status maps as usual: 2xx delivered; 408, 429, 5xx,
//! timeouts and connection failures retry later; other statuses are permanent. A 408, 429 or 5xx
//! answer with a `Retry-After` header (delay-seconds, e.g. `Retry-After: 3`, or an HTTP date)
//! retries later with `after-ms` set to that wait (`3000`); without one, with an
//! `X-RateLimit-Reset` Unix timestamp (seconds or milliseconds), `after-ms` is the time until
//! it (0 when past); with neither, `after-ms` is none (the SDK's `http::retry_after_ms`).
//! Transport failures and other errors have no `after-ms`. Without `url` it
//! only logs the event. Either way it remembers the ticket's channel in KV (`channel:{ticket}`).
//! An echo built with `DOLPHIN_ADAPTER_BUILD` set in the environment (a build tag, e.g. `v2`) also
//! adds `build` with that value; a normal build adds nothing (the test-only `echo-v1` and
//! `echo-v2` are this adapter built with the tags `v1` and `v2`).
//!
//! **on-vendor-webhook** (any path, body JSON):
//! - when config `signing_secret` is set, the webhook must carry the header
//!   `x-echo-signature: sha256={hex}`, `{hex}` being the hex HMAC-SHA256 of the raw body under
//!   `signing_secret` (computed and compared in constant time by the host's `crypto`; the
//!   `sha256=` prefix is required, the hex may be in either case). A missing or wrong signature
//!   is answered 401 `{"error":"bad signature"}` with no events, before the body is read.
//!   Without `signing_secret` the header is not looked at;
//! - `{"ticketNumber": "...", "message": "...", "messageType": "text"?, "mediaLink": "..."?}`
//!   gives one Outgoing event (`messageType` defaults to `text`, case-insensitive);
//! - `{"ticketNumber": "...", "event": "Close"}` gives a Close command;
//! - either may carry `"id": "..."`, the vendor's id of it: a non-empty string becomes the
//!   event's dedupe key as it is (the host forwards the event once per key); without `id`, or
//!   with `null` or `""`, the event has no dedupe key;
//! - anything else (not JSON, no `ticketNumber`, an unknown `event` or `messageType`, a
//!   non-string `id`, ...) is answered 400 `{"error": "..."}` with no events.
//!
//! Success is answered 200 `{"status":"ok"}` (also when the host drops the event as a duplicate).
//! The event's `channel` is the one remembered for its ticket (none when the ticket is unknown).
//!
//! Config keys: `url` (optional, the vendor endpoint), `tag` (optional, copied into every
//! delivered event as `tag`), `token` (optional, a secret: sent as `authorization: Bearer ...`;
//! never logged), `signing_secret` (optional, a secret: the webhook signing key above; never
//! logged), `with_contact` and `with_history` (optional, `true`: look the event's contact and the
//! ticket's history up in 3Dolphins through the host and deliver them as `contact` and
//! `history`, `null` when 3Dolphins has none; a failed look-up is retried later). Secrets go in
//! the tenant's `[tenants.secrets]`, the rest in `[tenants.config]`.

use dolphin_bridge_sdk::{
    Adapter, AdapterError, BridgeEvent, CallContext, IncomingEvent, MessageType, Value, WebhookEvent, WebhookOutcome,
    WebhookRequest, config, crypto, events, export_adapter, header, http, incoming_json, kv, log, message_type_name,
    parse_message_type, serde_json, three_dolphins, webhook,
};

struct Echo;

export_adapter!(Echo);

/// The build tag baked in at build time (`DOLPHIN_ADAPTER_BUILD=v2 cargo xtask build-plugins`),
/// copied into every delivered event as `build`; unset in a normal build, which adds nothing.
const BUILD: Option<&str> = option_env!("DOLPHIN_ADAPTER_BUILD");

impl Adapter for Echo {
    fn on_incoming(ctx: &CallContext, event: IncomingEvent) -> Result<(), AdapterError> {
        kv::set_string(&channel_key(&event.ticket_number), &event.channel)?;
        let Some(url) = config::get("url") else {
            log::log(
                log::Level::Info,
                "echo: incoming event",
                &[
                    ("ticket", &event.ticket_number),
                    ("channel", &event.channel),
                    ("messageType", message_type_name(event.message_type)),
                ],
            );
            return Ok(());
        };
        let mut body = delivery_json(ctx, &event, config::get("tag").as_deref());
        if let Value::Object(map) = &mut body {
            if enabled("with_contact") {
                let contact = three_dolphins::contact(&event.contact_id)?;
                map.insert("contact".into(), contact.unwrap_or(Value::Null));
            }
            if enabled("with_history") {
                let history = three_dolphins::history(&event.ticket_number)?;
                map.insert("history".into(), history.unwrap_or(Value::Null));
            }
        }
        let auth = config::get("token").map(|t| format!("Bearer {t}"));
        let headers: Vec<(&str, &str)> = auth.iter().map(|a| ("authorization", a.as_str())).collect();
        http::post_json(&url, &headers, &body)?;
        Ok(())
    }

    fn on_vendor_webhook(_ctx: &CallContext, request: WebhookRequest) -> Result<WebhookOutcome, AdapterError> {
        if let Some(secret) = config::get("signing_secret") {
            let given = header(&request.headers, SIGNATURE_HEADER);
            if !signature_matches(secret.as_bytes(), &request.body, given) {
                let reason = if given.is_some() { "wrong" } else { "missing" };
                log::log(
                    log::Level::Warn,
                    "echo: webhook refused: bad signature",
                    &[("signature", reason)],
                );
                return Ok(webhook::error(401, "bad signature"));
            }
        }
        match parse_webhook(&request.body) {
            Ok(mut webhook_event) => {
                let channel = kv::get_string(&channel_key(webhook_event.event.ticket_number()))?;
                match &mut webhook_event.event {
                    BridgeEvent::Outgoing(o) => o.channel = channel,
                    BridgeEvent::Command(c) => c.channel = channel,
                }
                Ok(webhook::ok(vec![webhook_event]))
            }
            Err(message) => Ok(webhook::error(400, &message)),
        }
    }
}

/// The header a signed webhook carries: `sha256={hex HMAC-SHA256(signing_secret, raw body)}`.
const SIGNATURE_HEADER: &str = "x-echo-signature";

/// Whether `given` (the signature header's value, if any) is `sha256=` and the hex HMAC-SHA256
/// of `body` under `secret`; the host computes the MAC and compares it in constant time.
fn signature_matches(secret: &[u8], body: &[u8], given: Option<&str>) -> bool {
    let Some(hex) = given.and_then(signed_hex) else {
        return false;
    };
    crypto::verify_hmac_sha256_hex(secret, body, hex)
}

/// The hex part of a signature header value: after a required `sha256=` (spaces around the
/// value ignored); `None` without the prefix.
fn signed_hex(value: &str) -> Option<&str> {
    value.trim().strip_prefix("sha256=")
}

/// Whether config `key` is `true`.
fn enabled(key: &str) -> bool {
    config::get(key).is_some_and(|v| v.eq_ignore_ascii_case("true"))
}

fn channel_key(ticket: &str) -> String {
    format!("channel:{ticket}")
}

/// The JSON posted to the vendor: the event plus delivery metadata.
fn delivery_json(ctx: &CallContext, event: &IncomingEvent, tag: Option<&str>) -> Value {
    let mut body = incoming_json(event);
    if let Value::Object(map) = &mut body {
        map.insert("deliveryId".into(), ctx.delivery_id.clone().into());
        map.insert("attempt".into(), ctx.attempt.into());
        map.insert("tenant".into(), ctx.tenant.clone().into());
        if let Some(tag) = tag {
            map.insert("tag".into(), tag.into());
        }
        if let Some(build) = BUILD {
            map.insert("build".into(), build.into());
        }
    }
    body
}

/// Maps a webhook body to one event (with the body's `id` as its dedupe key), or the error
/// message for a 400.
fn parse_webhook(body: &[u8]) -> Result<WebhookEvent, String> {
    let value: Value = serde_json::from_slice(body).map_err(|e| format!("body is not valid JSON: {e}"))?;
    let Value::Object(map) = value else {
        return Err("body must be a JSON object".into());
    };
    let text = |name: &str| -> Result<Option<&str>, String> {
        match map.get(name) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.as_str())),
            Some(_) => Err(format!("`{name}` must be a string")),
        }
    };
    let ticket = text("ticketNumber")?
        .filter(|t| !t.trim().is_empty())
        .ok_or("`ticketNumber` is required")?;
    let dedupe_key = text("id")?.filter(|id| !id.is_empty());
    let keyed = |event: BridgeEvent| WebhookEvent {
        event,
        dedupe_key: dedupe_key.map(str::to_owned),
    };
    if let Some(event) = text("event")? {
        return if event.eq_ignore_ascii_case("close") {
            Ok(keyed(events::close(ticket, None)))
        } else {
            Err(format!("unknown event `{event}` (only `Close` is supported)"))
        };
    }
    let message = text("message")?.ok_or("`message` or `event` is required")?;
    let message_type = match text("messageType")? {
        None => MessageType::Text,
        Some(name) => parse_message_type(name)
            .ok_or_else(|| format!("unknown messageType `{name}` (text, image, video, audio, file, location)"))?,
    };
    let media_link = text("mediaLink")?.unwrap_or("");
    let needs_media = !matches!(message_type, MessageType::Text | MessageType::Location);
    if needs_media && !(media_link.starts_with("http://") || media_link.starts_with("https://")) {
        return Err(format!(
            "`mediaLink` must be an http(s) URL for messageType `{}`",
            message_type_name(message_type)
        ));
    }
    if !needs_media && message.trim().is_empty() {
        return Err("`message` must not be empty".into());
    }
    Ok(keyed(BridgeEvent::Outgoing(events::outgoing(
        ticket,
        message_type,
        message,
        if needs_media { media_link } else { "" },
    ))))
}

#[cfg(test)]
mod tests {
    use super::*;
    use dolphin_bridge_sdk::{TicketCommand, json};

    fn parse(v: Value) -> Result<BridgeEvent, String> {
        parse_webhook(v.to_string().as_bytes()).map(|e| e.event)
    }

    fn key_of(v: Value) -> Option<String> {
        parse_webhook(v.to_string().as_bytes()).unwrap().dedupe_key
    }

    #[test]
    fn text_reply() {
        let Ok(BridgeEvent::Outgoing(o)) = parse(json!({"ticketNumber": "t1", "message": "hi"})) else {
            panic!()
        };
        assert_eq!((o.ticket_number.as_str(), o.message.as_str()), ("t1", "hi"));
        assert!(matches!(o.message_type, MessageType::Text));
    }

    #[test]
    fn media_reply() {
        let v = json!({"ticketNumber": "t1", "message": "cap", "messageType": "Image",
            "mediaLink": "https://x/y.png"});
        let Ok(BridgeEvent::Outgoing(o)) = parse(v) else {
            panic!()
        };
        assert!(matches!(o.message_type, MessageType::Image));
        assert_eq!(o.media_link, "https://x/y.png");
        assert!(parse(json!({"ticketNumber": "t", "message": "", "messageType": "file"})).is_err());
    }

    #[test]
    fn close() {
        let Ok(BridgeEvent::Command(c)) = parse(json!({"ticketNumber": "t1", "event": "Close"})) else {
            panic!()
        };
        assert!(matches!(c.command, TicketCommand::Close));
    }

    #[test]
    fn id_is_the_dedupe_key() {
        assert_eq!(
            key_of(json!({"ticketNumber": "t1", "message": "hi", "id": "msg-1"})).as_deref(),
            Some("msg-1")
        );
        assert_eq!(
            key_of(json!({"ticketNumber": "t1", "event": "Close", "id": "close-1"})).as_deref(),
            Some("close-1")
        );
        assert_eq!(key_of(json!({"ticketNumber": "t1", "message": "hi"})), None);
        assert_eq!(key_of(json!({"ticketNumber": "t1", "message": "hi", "id": null})), None);
        assert_eq!(key_of(json!({"ticketNumber": "t1", "message": "hi", "id": ""})), None);
        assert!(parse(json!({"ticketNumber": "t1", "message": "hi", "id": 7})).is_err());
    }

    #[test]
    fn signature_header_needs_the_prefix() {
        assert_eq!(signed_hex("sha256=0aff"), Some("0aff"));
        assert_eq!(signed_hex(" sha256=0aff "), Some("0aff"));
        assert_eq!(signed_hex("0aff"), None);
        assert_eq!(signed_hex("sha1=0aff"), None);
        // No header is refused before the host is asked.
        assert!(!signature_matches(b"s", b"{}", None));
        assert!(!signature_matches(b"s", b"{}", Some("0aff")));
    }

    #[test]
    fn rejects_the_rest() {
        assert!(parse_webhook(b"not json").is_err());
        assert!(parse(json!([1])).is_err());
        assert!(parse(json!({"message": "x"})).is_err());
        assert!(parse(json!({"ticketNumber": "t"})).is_err());
        assert!(parse(json!({"ticketNumber": "t", "event": "Open"})).is_err());
        assert!(parse(json!({"ticketNumber": "t", "message": "x", "messageType": "gif"})).is_err());
        assert!(parse(json!({"ticketNumber": 5, "message": "x"})).is_err());
    }
}
