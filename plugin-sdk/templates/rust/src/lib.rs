//! A dolphin-bridge adapter (started from `dolphin-bridge plugin new --lang rust`).
//!
//! **on-incoming**: POSTs the customer's message as JSON to config `url`, with secret `token` as
//! `authorization: Bearer ...` and the delivery id as `idempotency-key` (the same on every
//! retry, so the vendor can drop a repeat). 2xx is delivered; 408, 429, 5xx, timeouts and
//! connection failures are retried later; other answers are permanent (dead letter).
//!
//! **on-vendor-webhook** (body JSON):
//! - `{"ticketNumber": "...", "text": "..."}`: the agent's reply, one Outgoing text event;
//! - `{"ticketNumber": "...", "closed": true}`: a Close command;
//! - anything else is answered 400 `{"error": "..."}` with no events.

use dolphin_bridge_sdk::{
    Adapter, AdapterError, BridgeEvent, CallContext, IncomingEvent, Value, WebhookOutcome, WebhookRequest, config,
    events, export_adapter, http, json, message_type_name, serde_json, webhook,
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
fn parse_webhook(body: &[u8]) -> Result<BridgeEvent, String> {
    let value: Value = serde_json::from_slice(body).map_err(|e| format!("body is not JSON: {e}"))?;
    let ticket = value["ticketNumber"]
        .as_str()
        .filter(|t| !t.is_empty())
        .ok_or("`ticketNumber` is required")?;
    if value["closed"] == Value::Bool(true) {
        return Ok(events::close(ticket, None));
    }
    match value["text"].as_str() {
        Some(text) => Ok(events::text(ticket, text)),
        None => Err("expected `text` or `closed: true`".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reply_becomes_an_outgoing_text() {
        let event = parse_webhook(br#"{"ticketNumber": "t-1", "text": "hi"}"#).unwrap();
        assert!(matches!(event, BridgeEvent::Outgoing(o) if o.ticket_number == "t-1" && o.message == "hi"));
    }

    #[test]
    fn an_unknown_body_is_refused() {
        assert!(parse_webhook(br#"{"ticketNumber": "t-1"}"#).is_err());
    }
}
