"""rocketchat: 3Dolphins tickets as Rocket.Chat Omnichannel (Livechat) conversations.

Customer side (on-incoming), with Rocket.Chat's Livechat REST API
(apps/meteor/app/livechat/server/api/v1/{visitor,room,message}.ts):
- one Livechat visitor per 3Dolphins contact, its token a hash of owner and contact id
  (`POST /api/v1/livechat/visitor`, registered once and remembered in KV);
- one room per ticket (`GET /api/v1/livechat/room?token=..`; KV maps ticket -> rid and back);
  Rocket.Chat keeps one open room per visitor, so a new ticket of a contact whose previous
  ticket's room is still open closes that room first (`POST /api/v1/livechat/room.close`);
- one message per delivery (`POST /api/v1/livechat/message`) with `_id` derived from the
  delivery id. Rocket.Chat stores a given `_id` once: `sendMessage` returns early when it exists
  (apps/meteor/app/lib/server/functions/sendMessage.ts) and the route then answers 400. So a
  retry (attempt > 1), and a 400 Rocket.Chat gives no known reason for, first ask
  `GET /api/v1/livechat/message/<_id>?token=..&rid=..` whether the message is there: if it is,
  the delivery is done;
- no agent online (400 `no-agent-online` when a room is opened: QueueManager.requestRoom with
  `Livechat_accept_chats_with_no_agents` at its default, false) is retried later, after
  `no_agent_retry_ms` (config, default 60000), until an agent is online;
- a 429 (Rocket.Chat's API rate limiter, on by default: 10 calls per route and IP a minute) is
  retried after the limit resets: the SDK passes its `X-RateLimit-Reset` (epoch milliseconds)
  minus the current time to the host as `after-ms` (a `Retry-After`, when sent, wins). Rocket.Chat
  sends `X-RateLimit-Reset` on every answer of a limited route, so on other transient statuses
  the hint is dropped unless a `Retry-After` came with it.

Agent side (on-vendor-webhook), the Omnichannel webhook
(apps/meteor/app/livechat/server/hooks/sendToCRM.ts); the host has checked the
`X-RocketChat-Livechat-Token` header already:
- `type: "Message"`: agents' messages (those with `agentId`) become Outgoing events, files and
  images with their link; the visitor's own messages and system messages are ignored, and so
  are edits (the message again, same `_id`, with `editedAt`: updateMessage.ts runs the same
  webhook): the customer already has the message;
- `type: "LivechatSession"` (sent when a room is closed) becomes a Close command when an agent
  (or a bot) closed it; `closer: "visitor"` is the bridge itself, which closes a contact's
  previous room when the contact's next ticket starts (closeRoom.ts records the closer), and is
  not a Close of the previous ticket;
- other types (session start, taken, queued, ...) and rooms the bridge did not open are
  acknowledged and ignored.
Each event is keyed by Rocket.Chat's own id, so that a webhook Rocket.Chat sends again (it
retries failed requests) reaches 3Dolphins once: a message's Outgoing event by
`message:<message _id>`, a close by `close:<room _id>` (a room is closed once).
"""

import hashlib
import json

import wit_world
from wit_world.imports import types

from dolphin_bridge_sdk import Permanent, RetryLater, config, events, guard, http, json_response, kv, log, outcome

API = "/api/v1/livechat"
# How long to wait before trying again while no agent is online (config `no_agent_retry_ms`).
NO_AGENT_RETRY_MS = 60_000
# Rocket.Chat's errors that say why it refused a message; any other 400 of the message route may
# be its answer to an `_id` it already has.
KNOWN_MESSAGE_ERRORS = ("invalid-token", "invalid-room", "room-closed", "message-length-exceeds-character-limit")


def _visitor_token(owner, contact_id):
    """A stable Livechat visitor token for a 3Dolphins contact, not revealing its ids."""
    return "3d-" + hashlib.sha256(f"{owner}:{contact_id}".encode()).hexdigest()[:40]


def _message_id(delivery_id):
    """A Rocket.Chat message `_id` that is the same on every retry of one delivery."""
    return "3d" + hashlib.sha256(delivery_id.encode()).hexdigest()[:22]


def _message_text(event):
    """The text Rocket.Chat shows for an Incoming event (the Livechat API takes text only)."""
    kind = event.message_type
    if kind == types.MessageType.LOCATION:
        lat, lng = (part.strip() for part in event.message.split(",", 1))
        return f"Location: https://maps.google.com/?q={lat},{lng}"
    if kind == types.MessageType.TEXT:
        return event.message
    return f"{event.message}\n{event.media_link}" if event.message else event.media_link


def _failure(response):
    """Rocket.Chat's `error` of a failed call (`{"success": false, "error": "..."}`)."""
    try:
        return str(response.json().get("error", ""))
    except ValueError:
        return response.text()[:200]


def _error_type(response):
    """Rocket.Chat's `errorType` of a failed call (a Meteor.Error's `error`), or ""."""
    try:
        return str(response.json().get("errorType", ""))
    except (ValueError, AttributeError):
        return ""


def _no_agent_retry_ms():
    try:
        return max(0, int(config.get("no_agent_retry_ms", NO_AGENT_RETRY_MS)))
    except (TypeError, ValueError):
        raise Permanent("config `no_agent_retry_ms` must be a number of milliseconds") from None


def _send(call, *args, **kwargs):
    """An SDK call; a transient failure other than 429 does not wait for `X-RateLimit-Reset`.

    Rocket.Chat's limiter sets `X-RateLimit-Reset` (the end of the window) on every answer of a
    limited route (apps/meteor/app/api/server/api.ts, `enforceRateLimit`), so any answer may
    carry it; only a 429 means "not before then". A `Retry-After` is kept.
    """
    try:
        return call(*args, **kwargs)
    except RetryLater as e:
        response = e.response
        if response is not None and response.status != 429 and response.header("retry-after") is None:
            raise RetryLater(str(e), after_ms=None, response=response) from None
        raise


class _Livechat:
    """The Livechat REST API of one Rocket.Chat server."""

    def __init__(self):
        self.base = config.require("base_url").rstrip("/")
        self.department = config.get("department")

    def ensure_visitor(self, token, event):
        """Registers the visitor once per token (the route is rate-limited to 5 a minute)."""
        if kv.get_json(f"visitor:{token}") is not None:
            return
        visitor = {"token": token, "name": event.customer_name or event.account_id}
        if self.department:
            visitor["department"] = self.department
        _send(http.post_json, f"{self.base}{API}/visitor", {"visitor": visitor})
        kv.set_json(f"visitor:{token}", True)

    def room_of(self, ticket, token):
        """The open room of `ticket`, opened (and remembered both ways) on its first message."""
        known = kv.get_json(f"ticket:{ticket}")
        if known is not None:
            return known["rid"]
        room = self._open_room(token)
        owner = kv.get_json(f"room:{room}")
        if owner is not None and owner["ticket"] != ticket:
            # The contact's previous ticket still holds the visitor's one open room.
            self._post(f"{API}/room.close", {"rid": room, "token": token})
            room = self._open_room(token)
        kv.set_json(f"ticket:{ticket}", {"rid": room})
        kv.set_json(f"room:{room}", {"ticket": ticket})
        return room

    def _open_room(self, token):
        response = _send(http.get_json, f"{self.base}{API}/room?token={token}", accept=(400,))
        if response.status == 200:
            return response.json()["room"]["_id"]
        error = _failure(response)
        if _error_type(response) == "no-agent-online" or "no-agent-online" in error:
            # Livechat_accept_chats_with_no_agents is off (its default): Rocket.Chat opens no room
            # while no agent is online. Not the message's fault: try again later.
            raise RetryLater(f"Rocket.Chat has no agent online: {error}", after_ms=_no_agent_retry_ms())
        if error == "invalid-token":
            kv.delete(f"visitor:{token}")
            raise RetryLater("Rocket.Chat does not know the visitor (invalid-token)")
        raise Permanent(f"Rocket.Chat refused a room: {error}")

    def _post(self, path, body):
        return _send(http.post_json, f"{self.base}{path}", body, accept=(400,))

    def has_message(self, token, room, message_id):
        """Whether Rocket.Chat has message `message_id` in `room`
        (`GET /api/v1/livechat/message/:_id`, apps/meteor/app/livechat/server/api/v1/message.ts:
        400 `invalid-message` when it has not)."""
        url = f"{self.base}{API}/message/{message_id}?token={token}&rid={room}"
        response = _send(http.get_json, url, accept=(400,))
        if response.status == 200:
            return True
        error = _failure(response)
        if error in ("invalid-message", "invalid-room"):
            # No such message, or no such room of this visitor (then no message in it either).
            return False
        if error == "invalid-token":
            kv.delete(f"visitor:{token}")
            raise RetryLater("Rocket.Chat does not know the visitor (invalid-token)")
        raise RetryLater(f"Rocket.Chat could not say whether the message arrived: {error}")

    def send_message(self, ctx, token, room, text):
        """Posts the message; returns Rocket.Chat's `error` when it answered 400, else None."""
        body = {"token": token, "rid": room, "msg": text, "_id": _message_id(ctx.delivery_id)}
        response = self._post(f"{API}/message", body)
        if response.status == 200:
            return None
        return _failure(response)


def _forget_room(ticket, room):
    kv.delete(f"ticket:{ticket}")
    kv.delete(f"room:{room}")


def _media_of(message, base):
    """(message type, link, caption) of a file message of the webhook, or None for text."""
    upload = message.get("fileUpload") or {}
    attachments = message.get("attachments") or [{}]
    link = upload.get("publicFilePath") or attachments[0].get("title_link") or ""
    if not message.get("file") and not link:
        return None
    if link.startswith("/"):
        link = base + link
    mime = upload.get("type") or message.get("file", {}).get("type") or ""
    kind = {
        "image": types.MessageType.IMAGE,
        "video": types.MessageType.VIDEO,
        "audio": types.MessageType.AUDIO,
    }.get(mime.split("/", 1)[0], types.MessageType.FILE)
    return kind, link, attachments[0].get("description") or ""


def _outgoing(ticket, message, base):
    media = _media_of(message, base)
    if media is None:
        kind, link, text = types.MessageType.TEXT, "", message.get("msg") or ""
    else:
        kind, link, text = media
    message_id = message.get("_id")
    dedupe_key = f"message:{message_id}" if isinstance(message_id, str) and message_id else None
    extra = {"rocketchatMessageId": message_id}
    return events.outgoing(ticket, kind, text, link, extra, dedupe_key=dedupe_key)


def _ticket_of(room):
    known = kv.get_json(f"room:{room}") if room else None
    return None if known is None else known["ticket"]


def _deliver(ctx, event):
    """Delivers one Incoming event: visitor, room, message."""
    livechat = _Livechat()
    token = _visitor_token(event.owner, event.contact_id)
    message_id = _message_id(ctx.delivery_id)
    if ctx.attempt > 1:
        # An earlier attempt may have reached Rocket.Chat with its answer lost: the message is
        # then in the ticket's room (open or since closed) and must not be sent again.
        known = kv.get_json(f"ticket:{event.ticket_number}")
        if known is not None and kv.get_json(f"visitor:{token}") is not None:
            if livechat.has_message(token, known["rid"], message_id):
                log.info("rocketchat: message already delivered", rid=known["rid"])
                return
    livechat.ensure_visitor(token, event)
    text = _message_text(event)
    room = livechat.room_of(event.ticket_number, token)
    error = livechat.send_message(ctx, token, room, text)
    if error == "room-closed":
        # An agent closed the room while the ticket goes on: continue in a new room.
        _forget_room(event.ticket_number, room)
        room = livechat.room_of(event.ticket_number, token)
        error = livechat.send_message(ctx, token, room, text)
    if error is None:
        return
    if error not in KNOWN_MESSAGE_ERRORS and livechat.has_message(token, room, message_id):
        # Rocket.Chat answers 400 to an `_id` it already has (sendMessage returns early).
        log.info("rocketchat: message already delivered", rid=room)
        return
    if error == "invalid-token":
        # The visitor was removed in Rocket.Chat: register it again on the next attempt.
        kv.delete(f"visitor:{token}")
        raise RetryLater("Rocket.Chat does not know the visitor (invalid-token)")
    raise Permanent(f"Rocket.Chat refused the message: {error}")


class WitWorld(wit_world.WitWorld):
    @guard
    def on_incoming(self, ctx, event):
        _deliver(ctx, event)

    @guard
    def on_vendor_webhook(self, ctx, request):
        try:
            payload = json.loads(bytes(request.body))
            kind = payload["type"]
        except (ValueError, KeyError, TypeError):
            return outcome([], json_response(400, {"error": "expected an Omnichannel webhook"}))
        found = []
        if kind == "Message":
            base = config.require("base_url").rstrip("/")
            for message in payload.get("messages") or []:
                # Visitors' messages carry no agentId; typed ones are system messages.
                if not message.get("agentId") or message.get("t") or message.get("closingMessage"):
                    continue
                if message.get("editedAt"):
                    # An edit repeats the message (same _id) with `editedAt`; the customer has it.
                    continue
                ticket = _ticket_of(message.get("rid") or payload.get("_id"))
                if ticket is not None:
                    found.append(_outgoing(ticket, message, base))
        elif kind == "LivechatSession" and payload.get("closedAt") and payload.get("closer") != "visitor":
            # closer "visitor": the bridge closed the room (a contact's next ticket), not an agent.
            room = payload.get("_id")
            ticket = _ticket_of(room)
            if ticket is not None:
                found.append(events.close(ticket, dedupe_key=f"close:{room}"))
        return outcome(found, json_response(200, {"status": "ok", "events": len(found)}))
