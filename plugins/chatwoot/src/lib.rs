//! `chatwoot`: a dolphin-bridge adapter for [Chatwoot](https://www.chatwoot.com)'s Application API
//! with an **API channel** inbox.
//!
//! # Config keys (`[tenants.config]`)
//! | key | | meaning |
//! | --- | --- | --- |
//! | `base_url` | required | Chatwoot's URL, e.g. `http://127.0.0.1:3000` (a path prefix is kept) |
//! | `account_id` | required | the numeric Chatwoot account id |
//! | `inbox_id` | required | the numeric id of the API channel inbox customers' messages go to |
//! | `api_access_token` | required, secret | a user's access token (an administrator's, or an agent's who is a member of the inbox), sent as header `api_access_token`; an Agent Bot token cannot call the contacts endpoints |
//! | `tag` | optional | a marker naming this adapter build/config: stored in every message it posts as `content_attributes.bridge_tag`, and answered in webhook responses as `"tag"` |
//! | `webhook_secret` | optional, secret | when set, webhooks must carry Chatwoot's signature (`X-Chatwoot-Signature: sha256=HMAC-SHA256(secret, "{X-Chatwoot-Timestamp}.{body}")`, timestamp within 5 minutes) or are answered 401 |
//!
//! # 3Dolphins -> Chatwoot (on-incoming)
//! 1. **Contact** (KV `contact:{contactId}` -> `{id, source_id}`): otherwise searched with
//!    `GET /contacts/search?q={contactId}` for an exact `identifier` match, otherwise created with
//!    `POST /contacts` (`inbox_id`, `name` = customerName or accountId, `identifier` = contactId,
//!    `phone_number` = `+{digits}` when accountId looks like a phone number on a phone channel,
//!    `additional_attributes`). The API-inbox `source_id` comes from the contact's
//!    `contact_inboxes`, or `POST /contacts/{id}/contact_inboxes`. A create answered 422 (e.g. the
//!    identifier exists after a lost response) searches again, and drops the phone number if it
//!    is the phone that collides.
//! 2. **Conversation** per ticket (KV `ticket:{ticketNumber}` -> `{conversation_id, contact_id,
//!    channel, last_delivery}`): otherwise an existing conversation of the contact in the inbox
//!    whose `custom_attributes.ticket_number` is the ticket (`GET /contacts/{id}/conversations`,
//!    so a lost response never makes a second one), otherwise `POST /conversations` with
//!    `source_id`, `inbox_id`, `contact_id`, `status: open` and `custom_attributes` /
//!    `additional_attributes` `{ticket_number, channel}`. The reverse mapping
//!    `conversation:{id}` -> `{ticket_number, channel}` serves webhooks.
//! 3. **Message**: `POST /conversations/{id}/messages` with `message_type: incoming`,
//!    `private: false`, `source_id` and `echo_id` = the delivery id (the idempotency key), and
//!    `content_attributes.bridge_tag` when `tag` is set. Text (a sticker arrives as the text
//!    `Stiker`) is the content; image/video/audio/file are the caption and the media link as
//!    text (Chatwoot's attachments need a multipart upload of the file itself, which would mean
//!    downloading the media through the host; a link is what agents get instead); a location is
//!    `Location: https://maps.google.com/?q=lat,lng`. A retried delivery (`attempt > 1`) first
//!    looks for a message with its `source_id` in the conversation and does not post it twice.
//!
//! Vendor 408/429/5xx, timeouts and connection failures are retry-later; other statuses are
//! permanent, with a message naming the call. A conversation or contact deleted in Chatwoot is
//! noticed (404) and recreated once.
//!
//! # Chatwoot -> 3Dolphins (on-vendor-webhook)
//! Point the API inbox's webhook URL (or an account webhook with `message_created` and
//! `conversation_status_changed`) at `/vendors/{tenant}/...` (any path).
//! - `message_created`, `message_type` `outgoing`, not `private`, in a conversation this adapter
//!   made: an Outgoing event for its ticket. Each attachment becomes one Outgoing event with the
//!   matching messageType (`image`, `audio`, `video`, `file`; `location` as `lat,lng`; other
//!   kinds as `file`) and mediaLink = the attachment's `data_url`; the message text becomes the
//!   caption of the first media attachment, or its own `text` event when there is none.
//! - `conversation_status_changed` (or `conversation_resolved`) with `status: resolved`: a Close
//!   command for the ticket.
//! - Anything else (incoming messages, i.e. our own echo, private notes, other events, unknown
//!   conversations or accounts): 200 and no events. A body that is not a JSON object: 400.
//!
//! Answers: 200 `{"status":"ok","events":N}` (plus `"tag"` when configured), 200
//! `{"status":"ignored","reason":"..."}`, 400 / 401 `{"error":"..."}`.

mod chatwoot;
mod mapping;
mod signature;

use chatwoot::{Api, Settings};
use dolphin_bridge_sdk::{
    Adapter, AdapterError, CallContext, IncomingEvent, Value, WebhookOutcome, WebhookRequest, config, export_adapter,
    header, json, kv, log, serde_json, webhook,
};
use mapping::{ConversationLink, Ignored};

struct Chatwoot;

export_adapter!(Chatwoot);

impl Adapter for Chatwoot {
    fn on_incoming(ctx: &CallContext, event: IncomingEvent) -> Result<(), AdapterError> {
        let api = Api::new(Settings::load()?);
        chatwoot::deliver(&api, ctx, &event)
    }

    fn on_vendor_webhook(_ctx: &CallContext, request: WebhookRequest) -> Result<WebhookOutcome, AdapterError> {
        if let Some(secret) = config::get("webhook_secret") {
            let verdict = signature::verify(
                secret.as_bytes(),
                header(&request.headers, "x-chatwoot-timestamp"),
                header(&request.headers, "x-chatwoot-signature"),
                &request.body,
                signature::now(),
            );
            if let Err(reason) = verdict {
                log::warn(&format!("chatwoot webhook refused: {reason}"));
                return Ok(webhook::error(401, "invalid or missing webhook signature"));
            }
        }
        let payload: Value = match serde_json::from_slice(&request.body) {
            Ok(value @ Value::Object(_)) => value,
            Ok(_) => return Ok(webhook::error(400, "body must be a JSON object")),
            Err(e) => return Ok(webhook::error(400, &format!("body is not valid JSON: {e}"))),
        };
        let account_id = config::get("account_id");
        let tag = config::get("tag");
        let lookup =
            |conversation_id: &str| -> Result<Option<ConversationLink>, AdapterError> {
                Ok(kv::get_json(&mapping::conversation_key(conversation_id))?
                    .and_then(|v| ConversationLink::from_json(&v)))
            };
        match mapping::webhook_events(&payload, account_id.as_deref(), lookup)? {
            Ok(events) => {
                let mut response = json!({ "status": "ok", "events": events.len() });
                if let Some(tag) = tag {
                    response["tag"] = tag.into();
                }
                Ok(webhook::outcome(events, webhook::json_response(200, &response)))
            }
            Err(Ignored(reason)) => {
                log::debug(&format!("chatwoot webhook ignored: {reason}"));
                let response = json!({ "status": "ignored", "reason": reason });
                Ok(webhook::outcome(Vec::new(), webhook::json_response(200, &response)))
            }
        }
    }
}
