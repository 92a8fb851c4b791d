"""echo-python: the `echo` adapter written in Python (componentize-py), showing that adapters
can be written in any language that compiles to a component. It uses the bare bindings
(`wit_world`), and the Python SDK (`plugin-sdk/python`) only for the webhook signature and the
`Retry-After` parser.

on-incoming: when config `url` is set, POSTs the Incoming event as 3Dolphins JSON plus
`deliveryId`, `attempt`, `tenant` and `language: "python"` to it through the host; 408, 429 and
5xx answers, timeouts and connection failures are retry-later (the vendor's wait, read by the
SDK's `retry_after_ms` as the Rust echo reads it, goes to the host as `after-ms`), other 4xx
permanent. Without `url` it
only logs the event.

on-vendor-webhook (any path, body JSON):
- `{"ticketNumber": "...", "message": "..."}` becomes one text Outgoing event,
  `{"ticketNumber": "...", "event": "Close"}` a Close command; anything else is answered 400
  `{"error": "..."}` with no events. Success is answered 200 `{"status": "ok"}`.
- either may carry `"id": "..."`, the vendor's id of it: a non-empty string becomes the event's
  dedupe key as it is (the host forwards the tenant's event of one key once); without `id`, or
  with `null` or `""`, the event has no dedupe key; any other `id` is answered 400.
- config `signing_secret` (optional, a secret): when set, a webhook must carry the header
  `x-echo-signature: sha256=<lowercase hex HMAC-SHA256(signing_secret, raw body)>` (the
  `sha256=` prefix is required, the hex may be in either case, spaces around the value are
  ignored), checked with the host's crypto interface (hmac and constant-time-equal, through the
  SDK's `crypto.verify_hmac_sha256_hex`) before the body is read; a missing or wrong signature is
  answered 401 `{"error": "bad signature"}` with no events (and logged at warn, without the
  secret). Without `signing_secret` the header is not looked at.
"""

import json

import wit_world
from componentize_py_types import Err
from wit_world.imports import config, http, log, types

from dolphin_bridge_sdk import crypto, retry_after_ms

SIGNATURE_HEADER = "x-echo-signature"
SIGNATURE_PREFIX = "sha256="


def _incoming_json(ctx, event):
    body = {
        "ticketNumber": event.ticket_number,
        "channel": event.channel,
        "accountId": event.account_id,
        "contactId": event.contact_id,
        "messageType": event.message_type.name.lower(),
        "message": event.message,
        "mediaLink": event.media_link,
        "customerName": event.customer_name,
        "createdDate": event.created_date,
        "owner": event.owner,
        "deliveryId": ctx.delivery_id,
        "attempt": ctx.attempt,
        "tenant": ctx.tenant,
        "language": "python",
    }
    for name, value in event.extra:
        body[name] = json.loads(value)
    return body


def _response(status, value):
    return types.HttpResponse(status, [("content-type", "application/json")], json.dumps(value).encode())


def _retry_later(reason, after_ms=None):
    return Err(types.AdapterError_RetryLater(types.Retry(reason, after_ms)))


def _signature_problem(request, secret):
    """None when the request carries `x-echo-signature: sha256=<hex HMAC-SHA256(secret, body)>`,
    else `"missing"` or `"wrong"`."""
    given = next((value for name, value in request.headers if name.lower() == SIGNATURE_HEADER), None)
    if given is None:
        return "missing"
    given = given.strip()
    if not given.startswith(SIGNATURE_PREFIX):
        return "wrong"
    if not crypto.verify_hmac_sha256_hex(secret, bytes(request.body), given[len(SIGNATURE_PREFIX) :]):
        return "wrong"
    return None


class WitWorld(wit_world.WitWorld):
    def on_incoming(self, ctx, event):
        url = config.get("url")
        if url is None:
            log.log(log.Level.INFO, "echo-python: incoming event", [("ticket", event.ticket_number)])
            return
        request = types.HttpRequest(
            "POST", url, [("content-type", "application/json")], json.dumps(_incoming_json(ctx, event)).encode()
        )
        try:
            response = http.send(request)
        except Err as e:
            error = e.value
            if isinstance(error, (http.HttpError_Timeout, http.HttpError_Connection)):
                raise _retry_later(f"POST vendor: {error}")
            raise Err(types.AdapterError_Permanent(f"POST vendor: {error}"))
        if response.status in (408, 429) or response.status >= 500:
            raise _retry_later(f"POST vendor answered {response.status}", retry_after_ms(response.headers))
        if response.status >= 300:
            raise Err(types.AdapterError_Permanent(f"POST vendor answered {response.status}"))

    def on_vendor_webhook(self, ctx, request):
        secret = config.get("signing_secret")
        problem = None if secret is None else _signature_problem(request, secret)
        if problem is not None:
            log.log(log.Level.WARN, "echo-python: webhook refused: bad signature", [("signature", problem)])
            return types.WebhookOutcome([], _response(401, {"error": "bad signature"}))
        try:
            body = json.loads(bytes(request.body))
            ticket = body["ticketNumber"]
        except (ValueError, KeyError, TypeError):
            return types.WebhookOutcome([], _response(400, {"error": "expected {ticketNumber, message | event}"}))
        if not isinstance(ticket, str) or not ticket:
            return types.WebhookOutcome([], _response(400, {"error": "`ticketNumber` must be a non-empty string"}))
        dedupe_key = body.get("id")
        if dedupe_key is not None and not isinstance(dedupe_key, str):
            return types.WebhookOutcome([], _response(400, {"error": "`id` must be a string"}))
        event: types.BridgeEvent
        if str(body.get("event", "")).lower() == "close":
            event = types.BridgeEvent_Command(types.CommandEvent(ticket, types.TicketCommand.CLOSE, None))
        elif isinstance(body.get("message"), str):
            event = types.BridgeEvent_Outgoing(
                types.OutgoingEvent(ticket, types.MessageType.TEXT, body["message"], "", None, None, [])
            )
        else:
            return types.WebhookOutcome([], _response(400, {"error": "expected message or event"}))
        return types.WebhookOutcome([types.WebhookEvent(event, dedupe_key or None)], _response(200, {"status": "ok"}))
