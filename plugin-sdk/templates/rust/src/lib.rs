//! A dolphin-bridge adapter (started from `dolphin-bridge plugin new --lang rust`).
//!
//! **on-incoming**: POSTs the customer's message as JSON to config `url`, with secret `token` as
//! `authorization: Bearer ...` and the delivery id as `idempotency-key` (the same on every
//! retry, so the vendor can drop a repeat). 2xx is delivered; 408, 429, 5xx, timeouts and
//! connection failures are retried later (after the vendor's `Retry-After`, when it sends one);
//! other answers are permanent (dead letter).
//!
//! **on-vendor-webhook** (body JSON):
//! - `{"ticketNumber": "...", "text": "..."}`: the agent's reply, one Outgoing text event;
//! - `{"ticketNumber": "...", "closed": true}`: a Close command;
//! - either may carry the vendor's id of it, `"id": "..."`: the event's dedupe key, so that the
//!   bridge forwards it once however often the vendor sends it;
//! - anything else is answered 400 `{"error": "..."}` with no events.

use dolphin_bridge_sdk::{
    Adapter, AdapterError, BridgeEvent, CallContext, IncomingEvent, Value, WebhookEvent, WebhookOutcome,
    WebhookRequest, config, events, export_adapter, http, json, message_type_name, serde_json, webhook,
};

struct Template;

export_adapter!(Template);

impl Adapter for Template {
    fn on_incoming(ctx: &CallContext, event: IncomingEvent) -> Result<(), AdapterError> {
        let url = config::require("url")?;
        let auth = format!("Bearer {}", config::require("token")?);
        let body = json!({
            "ticketNumber": event.ticket_number,
            "channel": event.channel,
            "contactId": event.contact_id,
            "customerName": event.customer_name,
            "messageType": message_type_name(event.message_type),
            "message": event.message,
            "mediaLink": event.media_link,
        });
        let headers = [
            ("authorization", auth.as_str()),
            ("idempotency-key", ctx.delivery_id.as_str()),
        ];
        // A 408, 429 or 5xx answer is `AdapterError::RetryLater`, with the vendor's `Retry-After`
        // (or `X-RateLimit-Reset`) as the wait; to ask for a wait yourself, return
        // `Err(AdapterError::retry_after("vendor busy", std::time::Duration::from_secs(30)))`.
        http::post_json(&url, &headers, &body)?;
        Ok(())
    }

    fn on_vendor_webhook(_ctx: &CallContext, request: WebhookRequest) -> Result<WebhookOutcome, AdapterError> {
        Ok(match parse_webhook(&request.body) {
            Ok(event) => webhook::ok(vec![event]),
            Err(message) => webhook::error(400, &message),
        })
    }
}

/// Maps a webhook body to one event, or the message of a 400 answer.
fn parse_webhook(body: &[u8]) -> Result<WebhookEvent, String> {
    let value: Value = serde_json::from_slice(body).map_err(|e| format!("body is not JSON: {e}"))?;
    let ticket = value["ticketNumber"]
        .as_str()
        .filter(|t| !t.is_empty())
        .ok_or("`ticketNumber` is required")?;
    let event: BridgeEvent = if value["closed"] == Value::Bool(true) {
        events::close(ticket, None)
    } else {
        match value["text"].as_str() {
            Some(text) => events::text(ticket, text),
            None => return Err("expected `text` or `closed: true`".into()),
        }
    };
    // The vendor's id of the message, when it sends one: the bridge drops a later event with
    // the same key (a webhook the vendor sends twice). Without one, `event.into()`.
    Ok(match value["id"].as_str().filter(|id| !id.is_empty()) {
        Some(id) => event.with_dedupe_key(id),
        None => event.into(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reply_becomes_an_outgoing_text() {
        let event = parse_webhook(br#"{"ticketNumber": "t-1", "text": "hi"}"#).unwrap();
        assert!(matches!(event.event, BridgeEvent::Outgoing(o) if o.ticket_number == "t-1" && o.message == "hi"));
        assert_eq!(event.dedupe_key, None);
    }

    #[test]
    fn the_vendor_id_is_the_dedupe_key() {
        let event = parse_webhook(br#"{"ticketNumber": "t-1", "text": "hi", "id": "m-7"}"#).unwrap();
        assert_eq!(event.dedupe_key.as_deref(), Some("m-7"));
    }

    #[test]
    fn an_unknown_body_is_refused() {
        assert!(parse_webhook(br#"{"ticketNumber": "t-1"}"#).is_err());
    }
}
