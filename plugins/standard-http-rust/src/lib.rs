//! `standard-http-rust`: an adapter that reaches its vendor with a standard wasi:http client
//! (`wstd::http::Client`) instead of the SDK's `http` helpers. The bridge serves
//! `wasi:http/outgoing-handler` with the same policy as `http.send`: the tenant's allowed hosts
//! and address ranges, the call's request budget, the timeout and the response size.
//!
//! **on-incoming**: POSTs `{"ticketNumber", "message", "deliveryId"}` as JSON
//! to config `url`, with secret `token` as `authorization: Bearer ...`. 2xx is delivered; 408,
//! 429 and 5xx are retried later; other statuses are permanent. A request that fails before an
//! answer (refused by the bridge's policy, a connection failure, a timeout) is retried later
//! with the client's error: wasi:http's error codes do not tell a refusal from an outage (the
//! bridge logs a refusal's reason).
//!
//! **on-vendor-webhook**: `{"ticketNumber", "text"}` becomes one text Outgoing event, answered
//! 200 `{"status":"ok"}`; anything else is answered 400 `{"error": "..."}` with no events.

use dolphin_bridge_sdk::{
    Adapter, AdapterError, CallContext, IncomingEvent, Value, WebhookOutcome, WebhookRequest, config, events,
    export_adapter, json, serde_json, webhook,
};
use wstd::http::{Client, Request};

struct StandardHttp;

export_adapter!(StandardHttp);

impl Adapter for StandardHttp {
    fn on_incoming(ctx: &CallContext, event: IncomingEvent) -> Result<(), AdapterError> {
        let url = config::require("url")?;
        let token = config::require("token")?;
        let body = json!({
            "ticketNumber": event.ticket_number,
            "message": event.message,
            "deliveryId": ctx.delivery_id,
        })
        .to_string();
        let request = Request::post(url)
            .header("content-type", "application/json")
            .header("authorization", format!("Bearer {token}"))
            .body(body)
            .map_err(|e| AdapterError::permanent(format!("building the request: {e}")))?;
        // The adapter's exports are synchronous: the request runs to its answer here.
        let status = wstd::runtime::block_on(async move {
            let response = Client::new().send(request).await?;
            Ok::<_, wstd::http::Error>(response.status().as_u16())
        })
        .map_err(|e| AdapterError::retry_later(format!("post message: {e}")))?;
        match status {
            200..=299 => Ok(()),
            408 | 429 | 500..=599 => Err(AdapterError::retry_later(format!(
                "post message: vendor answered {status}"
            ))),
            _ => Err(AdapterError::permanent(format!(
                "post message: vendor answered {status}"
            ))),
        }
    }

    fn on_vendor_webhook(_: &CallContext, request: WebhookRequest) -> Result<WebhookOutcome, AdapterError> {
        let Ok(body) = serde_json::from_slice::<Value>(&request.body) else {
            return Ok(webhook::error(400, "the body is not JSON"));
        };
        match (body["ticketNumber"].as_str(), body["text"].as_str()) {
            (Some(ticket), Some(text)) if !ticket.is_empty() => {
                Ok(webhook::ok(vec![events::text(ticket, text).into()]))
            }
            _ => Ok(webhook::error(400, "expected `ticketNumber` and `text`")),
        }
    }
}
