"""A dolphin-bridge adapter (started from `dolphin-bridge plugin new --lang python`).

on-incoming: POSTs the customer's message as JSON to config `url`, with secret `token` as
`authorization: Bearer ...` and the delivery id as `idempotency-key` (the same on every retry,
so the vendor can drop a repeat). 2xx is delivered; 408, 429, 5xx, timeouts and connection
failures are retried later; other answers are permanent (dead letter).

on-vendor-webhook (body JSON):
- `{"ticketNumber": "...", "text": "..."}`: the agent's reply, one Outgoing text event;
- `{"ticketNumber": "...", "closed": true}`: a Close command;
- anything else is answered 400 `{"error": "..."}` with no events.
"""

import json

import wit_world
from wit_world.imports import types

from dolphin_bridge_sdk import config, guard, http, json_response


class WitWorld(wit_world.WitWorld):
    @guard
    def on_incoming(self, ctx, event):
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
        http.post_json(url, body, headers)

    @guard
    def on_vendor_webhook(self, ctx, request):
        try:
            body = json.loads(bytes(request.body))
        except ValueError:
            return _refuse("body is not JSON")
        ticket = body.get("ticketNumber") if isinstance(body, dict) else None
        if not isinstance(ticket, str) or not ticket:
            return _refuse("`ticketNumber` is required")
        if body.get("closed") is True:
            event = types.BridgeEvent_Command(types.CommandEvent(ticket, types.TicketCommand.CLOSE, None))
        elif isinstance(body.get("text"), str):
            event = types.BridgeEvent_Outgoing(
                types.OutgoingEvent(ticket, types.MessageType.TEXT, body["text"], "", None, None, [])
            )
        else:
            return _refuse("expected `text` or `closed: true`")
        return types.WebhookOutcome([event], json_response(200, {"status": "ok"}))


def _refuse(message):
    return types.WebhookOutcome([], json_response(400, {"error": message}))
