"""A dolphin-bridge adapter (started from `dolphin-bridge plugin new --lang python`).

on-incoming: POSTs the customer's message as JSON to config `url`, with secret `token` as
`authorization: Bearer ...` and the delivery id as `idempotency-key` (the same on every retry,
so the vendor can drop a repeat). 2xx is delivered; 408, 429, 5xx, timeouts and connection
failures are retried later (after the vendor's `Retry-After` seconds on a 429 or 503); other
answers are permanent (dead letter).

on-vendor-webhook (body JSON):
- `{"ticketNumber": "...", "text": "..."}`: the agent's reply, one Outgoing text event;
- `{"ticketNumber": "...", "closed": true}`: a Close command;
- `"id"` (optional): the vendor's message id, the event's dedupe key (the bridge forwards a
  repeated id once, e.g. when the vendor sends a webhook again);
- anything else is answered 400 `{"error": "..."}` with no events.
"""

import json

import wit_world
from wit_world.imports import types

from dolphin_bridge_sdk import config, events, guard, http, json_response, outcome


class WitWorld(wit_world.WitWorld):
    @guard
    def on_incoming(self, ctx: types.CallContext, event: types.IncomingEvent) -> None:
        url = config.require("url")
        token = config.require("token")
        body = {
            "ticketNumber": event.ticket_number,
            "channel": event.channel,
            "contactId": event.contact_id,
            "customerName": event.customer_name,
            "messageType": event.message_type.name.lower(),
            "message": event.message,
            "mediaLink": event.media_link,
        }
        headers = [("authorization", f"Bearer {token}"), ("idempotency-key", ctx.delivery_id)]
        # A 429 or 503 raises RetryLater with `after_ms` from the vendor's `Retry-After` (seconds),
        # so the bridge waits at least that long before retrying. For another hint (e.g. a rate
        # limit's reset time), pass `accept=(429,)` and `raise RetryLater("why", after_ms=...)`.
        http.post_json(url, body, headers)

    @guard
    def on_vendor_webhook(self, ctx: types.CallContext, request: types.WebhookRequest) -> types.WebhookOutcome:
        try:
            body = json.loads(bytes(request.body))
        except ValueError:
            return _refuse("body is not JSON")
        ticket = body.get("ticketNumber") if isinstance(body, dict) else None
        if not isinstance(ticket, str) or not ticket:
            return _refuse("`ticketNumber` is required")
        # The vendor's own id of the message: the bridge drops a repeat of it.
        message_id = body.get("id") if isinstance(body.get("id"), str) else None
        if body.get("closed") is True:
            event = events.close(ticket, dedupe_key=message_id)
        elif isinstance(body.get("text"), str):
            event = events.text(ticket, body["text"], dedupe_key=message_id)
        else:
            return _refuse("expected `text` or `closed: true`")
        return outcome([event], json_response(200, {"status": "ok"}))


def _refuse(message):
    return outcome([], json_response(400, {"error": message}))
