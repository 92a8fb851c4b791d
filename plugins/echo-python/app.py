"""echo-python: the `echo` adapter written in Python (componentize-py), showing that adapters
can be written in any language that compiles to a component.

on-incoming: when config `url` is set, POSTs the Incoming event as 3Dolphins JSON plus
`deliveryId`, `attempt`, `tenant` and `language: "python"` to it through the host; 408, 429 and
5xx answers, timeouts and connection failures are retry-later, other 4xx permanent.

on-vendor-webhook: `{"ticketNumber": "...", "message": "..."}` becomes one text Outgoing event,
`{"ticketNumber": "...", "event": "Close"}` a Close command; anything else is answered 400.
"""

import json

import wit_world
from componentize_py_types import Err
from wit_world.imports import config, http, log, types


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
                raise Err(types.AdapterError_RetryLater(f"POST vendor: {error}"))
            raise Err(types.AdapterError_Permanent(f"POST vendor: {error}"))
        if response.status in (408, 429) or response.status >= 500:
            raise Err(types.AdapterError_RetryLater(f"POST vendor answered {response.status}"))
        if response.status >= 300:
            raise Err(types.AdapterError_Permanent(f"POST vendor answered {response.status}"))

    def on_vendor_webhook(self, ctx, request):
        try:
            body = json.loads(bytes(request.body))
            ticket = body["ticketNumber"]
        except (ValueError, KeyError, TypeError):
            return types.WebhookOutcome([], _response(400, {"error": "expected {ticketNumber, message | event}"}))
        if str(body.get("event", "")).lower() == "close":
            event = types.BridgeEvent_Command(types.CommandEvent(ticket, types.TicketCommand.CLOSE, None))
        elif isinstance(body.get("message"), str):
            event = types.BridgeEvent_Outgoing(
                types.OutgoingEvent(ticket, types.MessageType.TEXT, body["message"], "", None, None, [])
            )
        else:
            return types.WebhookOutcome([], _response(400, {"error": "expected message or event"}))
        return types.WebhookOutcome([event], _response(200, {"status": "ok"}))
