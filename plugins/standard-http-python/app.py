"""standard-http-python: an adapter that reaches its vendor with `urllib.request`, the standard
library's HTTP client, instead of the SDK's `http` helpers. Importing the SDK makes `urlopen`
send through the host's `http` import (see `dolphin_bridge_urllib`), with the same policy as
every other request: the tenant's allowed hosts and address ranges, the call's request budget,
the timeout and the response size.

on-incoming: POSTs `{"ticketNumber", "message", "deliveryId"}` as JSON to config `url`, with
secret `token` as `authorization: Bearer ...`. 2xx is delivered; 408, 429 and 5xx are retried
later; other statuses are permanent. A request the bridge refuses is permanent, naming the
policy's reason; a connection failure or a timeout is retried later.

on-vendor-webhook: `{"ticketNumber", "text"}` becomes one text Outgoing event, answered 200
`{"status":"ok"}`; anything else is answered 400 `{"error": "..."}` with no events.
"""

import json
import urllib.error
import urllib.request

import wit_world

from dolphin_bridge_sdk import Permanent, RetryLater, config, events, guard, json_response, outcome


class WitWorld(wit_world.WitWorld):
    @guard
    def on_incoming(self, ctx, event):
        body = {"ticketNumber": event.ticket_number, "message": event.message, "deliveryId": ctx.delivery_id}
        request = urllib.request.Request(
            config.require("url"),
            data=json.dumps(body).encode(),
            headers={"content-type": "application/json", "authorization": f"Bearer {config.require('token')}"},
            method="POST",
        )
        try:
            with urllib.request.urlopen(request):
                pass
        except urllib.error.HTTPError as e:
            if e.code in (408, 429) or e.code >= 500:
                raise RetryLater(f"post message: vendor answered {e.code}") from None
            raise Permanent(f"post message: vendor answered {e.code}") from None
        except urllib.error.URLError as e:
            if str(e.reason).startswith("denied by the bridge"):
                raise Permanent(f"post message: {e.reason}") from None
            raise RetryLater(f"post message: {e.reason}") from None

    @guard
    def on_vendor_webhook(self, ctx, request):
        try:
            body = json.loads(bytes(request.body))
        except ValueError:
            return outcome([], json_response(400, {"error": "the body is not JSON"}))
        ticket = body.get("ticketNumber") if isinstance(body, dict) else None
        if not isinstance(ticket, str) or not ticket or not isinstance(body.get("text"), str):
            return outcome([], json_response(400, {"error": "expected `ticketNumber` and `text`"}))
        return outcome([events.text(ticket, body["text"])], json_response(200, {"status": "ok"}))
