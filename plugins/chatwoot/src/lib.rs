//! `chatwoot`: a dolphin-bridge adapter for [Chatwoot](https://www.chatwoot.com)'s Application API
//! with an **API channel** inbox.
//!
//! Setting Chatwoot up for it (inbox, webhook, secrets, versions) is in the README beside this
//! crate.
//!
//! # Config keys (`[tenants.config]`)
//! | key | | meaning |
//! | --- | --- | --- |
//! | `base_url` | required | Chatwoot's URL, e.g. `http://127.0.0.1:3000` (a path prefix is kept) |
//! | `account_id` | required | the numeric Chatwoot account id |
//! | `inbox_id` | required | the numeric id of the API channel inbox customers' messages go to; webhooks of other inboxes are ignored |
//! | `api_access_token` | required, secret | a user's access token (an administrator's, or an agent's who is a member of the inbox), sent as header `api-access-token` (Rack reads it as `api_access_token`; the hyphen survives nginx's default `underscores_in_headers off`); an Agent Bot token cannot call the contacts endpoints |
//! | `tag` | optional | a marker naming this adapter build/config: stored in every message it posts as `content_attributes.bridge_tag`, and answered in webhook responses as `"tag"` |
//! | `webhook_secret` | optional, secret | when set, webhooks must carry Chatwoot's signature (`X-Chatwoot-Signature: sha256=HMAC-SHA256(secret, "{X-Chatwoot-Timestamp}.{body}")`, timestamp within 5 minutes) or are answered 401 |
//! | `forward_template_messages` | optional, default `true` | `false`: Chatwoot's own template messages (greeting, out-of-office, CSAT) are not sent to the customer |
//!
//! # 3Dolphins -> Chatwoot (on-incoming)
//! 1. **Contact** (KV `contact:{contactId}` -> `{id, source_id}`): otherwise found with
//!    `POST /contacts/filter` on `identifier equal_to` (pages read until the exact, case-sensitive
//!    match), otherwise created with `POST /contacts` (`inbox_id`, `name` = customerName or
//!    accountId, `identifier` = contactId, `phone_number` = `+{digits}` when accountId looks like
//!    a phone number on a phone channel, `additional_attributes`). The API-inbox `source_id` comes
//!    from the contact's `contact_inboxes`, or `POST /contacts/{id}/contact_inboxes`. A create
//!    answered 422 (e.g. the identifier exists after a lost response) looks again, and drops the
//!    phone number if it is the phone that collides.
//! 2. **Conversation** per ticket (KV `ticket:{ticketNumber}` -> `{conversation_id, contact_id,
//!    channel, last_delivery, last_message_id}`): otherwise an existing conversation of the
//!    contact in the inbox whose `custom_attributes.ticket_number` is the ticket (`GET
//!    /contacts/{id}/conversations`, the contact's newest 20; when those are 20, `POST
//!    /conversations/filter` on the conversation attribute `ticket_number`, which the account must
//!    define), so a lost response never makes a second one; otherwise `POST /conversations` with
//!    `source_id`, `inbox_id`, `contact_id`, `status: open` and `custom_attributes` /
//!    `additional_attributes` `{ticket_number, channel}`. An answer that is another ticket's
//!    conversation (the inbox's `lock_to_single_conversation`) is a permanent error naming the
//!    setting: tickets are never merged. The reverse mapping `conversation:{id}` ->
//!    `{ticket_number, channel}` serves webhooks.
//! 3. **Message**: `POST /conversations/{id}/messages` with `message_type: incoming`,
//!    `private: false`, `source_id` = the delivery id (the idempotency key; Chatwoot stores it),
//!    `echo_id` (not stored by Chatwoot), and `content_attributes.bridge_tag` when `tag` is set.
//!    Text (a sticker arrives as the text `Stiker`) is the content; a location is
//!    `Location: https://maps.google.com/?q=lat,lng`. A retried delivery (`attempt > 1`) first
//!    looks for a message with its `source_id` among the messages after the last one it posted
//!    (`?after=`, 100 a page) and does not post it twice; only then is media downloaded.
//! 4. **Media** (image/video/audio/file): Chatwoot attaches only uploaded files, never a URL. The
//!    adapter downloads the `mediaLink` with `http.send` (no Chatwoot token; up to 3 redirects,
//!    each hop checked) and posts the message as `multipart/form-data`: the fields above as form
//!    fields (`content` = the caption, none when empty; `content_attributes[bridge_tag]`) and the
//!    file as `attachments[]`, named after the link's last path segment (else `image.jpg`,
//!    `file.pdf`, ... by type) with the download's bare `Content-Type` (Chatwoot's
//!    `FileTypeHelper` compares it exactly: `image/png` makes an `image` attachment,
//!    `image/png; x=y` a `file`; a missing or `application/octet-stream` type is taken from the
//!    name's extension). The caption and the link go as text instead, with the reason logged
//!    (the link without query or user info), when
//!    - the host denies the link (its origin is not in the tenant's allowed hosts, or a private
//!      address the tenant may not call),
//!    - the media host answers a 4xx (or another status that is not 2xx, 3xx, 408, 429 or 5xx),
//!      or an empty file,
//!    - the file is over `limits.http_response_bytes` (default 16 MiB), or the upload would pass
//!      the host more than the 4 MiB one host call may (so files of about 4 MiB and more),
//!    - Chatwoot refuses the upload with 413 (a proxy's body size limit) or 422,
//!    - a 408/429/5xx, timeout or connection failure of the media host happens on attempt 3 or
//!      later: on attempts 1 and 2 it is retry-later, so a passing failure still gets the file
//!      attached while a media host that stays down delays the message by two retry waits only.
//!
//! Vendor 408/429/5xx, timeouts and connection failures are retry-later; other statuses are
//! permanent, with a message naming the call. A Chatwoot 408/429/5xx with `Retry-After`
//! (Rack::Attack's throttling answers 429 with it) retries no sooner than that: the wait goes
//! to the host as the retry's `after-ms` (else an `X-RateLimit-Reset` timestamp's, else none).
//! A media host's `Retry-After` is not passed on: a media host that fails is given two retries
//! of the host's own schedule at most (see 4. above). A conversation or contact deleted in
//! Chatwoot is noticed (404) and recreated once; a 404 because the inbox itself is missing (`GET
//! /inboxes/{id}` is 404 too) is permanent, naming `inbox_id`.
//!
//! # Chatwoot -> 3Dolphins (on-vendor-webhook)
//! Point the API inbox's webhook URL (or an account webhook with `message_created` and
//! `conversation_status_changed`) at `/vendors/{tenant}/...` (any path). Every event must name
//! the configured inbox (`inbox.id`, `inbox_id` or `conversation.inbox_id`) and, when it names
//! one, the configured account; others are ignored.
//! - `message_created`, `message_type` `outgoing` (or `template`, unless
//!   `forward_template_messages = false`), not `private`, in a conversation this adapter made: an
//!   Outgoing event for its ticket. Each attachment becomes one Outgoing event with the matching
//!   messageType (`image`, `audio`, `video`, `file`; `location` as `lat,lng`; other kinds as
//!   `file`) and mediaLink = the attachment's `data_url`; the message text becomes the caption
//!   of the first media attachment, or its own `text` event when there is none. Each event
//!   carries a dedupe key made of the Chatwoot message id: `message:{id}` for the first,
//!   `message:{id}:2`, `message:{id}:3`, ... for a message's further events. The host stores the
//!   key with the event and drops a later event with a key it has (within
//!   `delivery.webhook_dedupe_window_ms`), so a message that an account webhook and the inbox
//!   webhook both send, or that Chatwoot sends again, reaches 3Dolphins once (the duplicate
//!   webhook is still answered 200). The adapter keeps no record of forwarded messages itself.
//! - `conversation_status_changed` (or `conversation_resolved`) with `status: resolved`: a Close
//!   command for the ticket (with no dedupe key: a conversation may be resolved, reopened and
//!   resolved again).
//! - Anything else (incoming messages, i.e. our own echo, private notes, other events, unknown
//!   conversations, accounts or inboxes): 200 and no events. A body that is not a JSON object: 400.
//!
//! Answers: 200 `{"status":"ok","events":N}` (plus `"tag"` when configured), 200
//! `{"status":"ignored","reason":"..."}`, 400 / 401 `{"error":"..."}`.

mod chatwoot;
mod mapping;
mod media;
mod signature;

use chatwoot::{Api, Settings};
use dolphin_bridge_sdk::{
    Adapter, AdapterError, CallContext, IncomingEvent, Value, WebhookOutcome, WebhookRequest, config, export_adapter,
    header, json, kv, log, serde_json, webhook,
};
use mapping::{ConversationLink, Ignored, Scope};

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
        let inbox_id = config::get("inbox_id");
        let tag = config::get("tag");
        let scope = Scope {
            account_id: account_id.as_deref(),
            inbox_id: inbox_id.as_deref(),
            forward_templates: config::get("forward_template_messages").is_none_or(|v| v.trim() != "false"),
        };
        let lookup =
            |conversation_id: &str| -> Result<Option<ConversationLink>, AdapterError> {
                Ok(kv::get_json(&mapping::conversation_key(conversation_id))?
                    .and_then(|v| ConversationLink::from_json(&v)))
            };
        match mapping::webhook_events(&payload, scope, lookup)? {
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
