"""rocketchat: 3Dolphins tickets as Rocket.Chat Omnichannel (Livechat) conversations.

Customer side (on-incoming), with Rocket.Chat's Livechat REST API
(apps/meteor/app/livechat/server/api/v1/{visitor,room,message}.ts):
- one Livechat visitor per 3Dolphins contact (`POST /api/v1/livechat/visitor`, registered once
  and remembered in KV). Its token is the only credential of the public Livechat API, so it is
  an HMAC-SHA256 of owner and contact id under the tenant's `visitor_token_secret`, remembered
  per contact (`contact:{contactId}`); a contact registered before with the legacy token (a plain
  hash: its `visitor:` key is in KV) keeps it. A visitor Rocket.Chat no longer knows
  (`invalid-token`: removed with its rooms) is registered again at once and the call repeated;
- one room per ticket (`GET /api/v1/livechat/room?token=..`; KV maps ticket -> rid and back);
  Rocket.Chat keeps one open room per visitor, so a new ticket of a contact whose previous
  ticket's room is still open closes that room first (`POST /api/v1/livechat/room.close`); when
  Rocket.Chat refuses that close (e.g. `Omnichannel_allow_visitors_to_close_conversation` off)
  the new ticket waits (retried) rather than writing into the previous ticket's room;
- one message per delivery (`POST /api/v1/livechat/message`) with `_id` derived from the
  delivery id. Rocket.Chat stores a given `_id` once: `sendMessage` returns early when it exists
  (apps/meteor/app/lib/server/functions/sendMessage.ts) and the route then answers 400. So a
  retry (attempt > 1), and a 400 Rocket.Chat gives no known reason for, first ask
  `GET /api/v1/livechat/message/<_id>?token=..&rid=..` whether the message is there: if it is,
  the delivery is done. A text over the Livechat character limit
  (`message-length-exceeds-character-limit`, `Livechat_enable_message_character_limit` on) is
  sent in parts within the limit Rocket.Chat states (`GET /api/v1/livechat/config`);
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
- `type: "Message"`: agents' messages (those with `agentId`) become Outgoing events: a text, or
  one event per attached file (each with its type and link; the text typed with the files is
  the first file's caption, an upload description its own file's); the visitor's own messages and system messages are ignored, and so
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
import math

import wit_world
from wit_world.imports import types

from dolphin_bridge_sdk import Permanent, RetryLater, config, crypto, events, guard, http, json_response, kv, log, outcome

API = "/api/v1/livechat"
# How long to wait before trying again while no agent is online (config `no_agent_retry_ms`).
NO_AGENT_RETRY_MS = 60_000
# Rocket.Chat's errors that say why it refused a message; any other 400 of the message route may
# be its answer to an `_id` it already has.
KNOWN_MESSAGE_ERRORS = ("invalid-token", "invalid-room", "room-closed", "message-length-exceeds-character-limit")
# The shortest `visitor_token_secret` accepted (HMAC keys shorter than this are guessable).
MIN_VISITOR_TOKEN_SECRET_BYTES = 16


class VisitorUnknown(Exception):
    """Rocket.Chat answered `invalid-token`: it does not know (any more) the visitor of the token."""


def _legacy_visitor_token(owner, contact_id):
    """The token earlier versions gave a contact: a plain hash of owner and contact id."""
    return "3d-" + hashlib.sha256(f"{owner}:{contact_id}".encode()).hexdigest()[:40]


def _hmac_visitor_token(owner, contact_id):
    """`3dh-` and the hex HMAC-SHA256 of `owner NUL contactId` under `visitor_token_secret`
    (NUL never occurs in 3Dolphins ids, so the pair is unambiguous)."""
    secret = config.get("visitor_token_secret") or ""
    if secret == "":
        raise Permanent(
            "config `visitor_token_secret` is not set: new contacts' Livechat visitor tokens are derived "
            "from it (see the adapter README); set it and replay this delivery"
        )
    if len(secret.encode()) < MIN_VISITOR_TOKEN_SECRET_BYTES:
        raise Permanent(f"config `visitor_token_secret` is shorter than {MIN_VISITOR_TOKEN_SECRET_BYTES} bytes")
    return "3dh-" + crypto.hmac_sha256(secret.encode(), f"{owner}\0{contact_id}".encode()).hex()


def _visitor_token(owner, contact_id):
    """The contact's Livechat visitor token: the one remembered for it; else the legacy token when
    an earlier version registered the contact with it; else the HMAC token (then remembered, so a
    later change of the secret leaves existing contacts' visitors as they are)."""
    key = f"contact:{contact_id}"
    known = kv.get_json(key)
    if known is not None:
        return known["token"]
    legacy = _legacy_visitor_token(owner, contact_id)
    token = legacy if kv.get_json(f"visitor:{legacy}") is not None else _hmac_visitor_token(owner, contact_id)
    kv.set_json(key, {"token": token})
    return token


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


def _utf16_length(text):
    """`text.length` as Rocket.Chat's JavaScript counts it (UTF-16 code units)."""
    return sum(2 if ord(char) > 0xFFFF else 1 for char in text)


def _split_text(text, limit):
    """`text` in consecutive parts of at most `limit` UTF-16 units whose concatenation is `text`,
    each cut after the last whitespace of its second half when there is one."""
    parts = []
    while _utf16_length(text) > limit:
        end, units = 0, 0
        while end < len(text) and units + _utf16_length(text[end]) <= limit:
            units += _utf16_length(text[end])
            end += 1
        end = max(end, 1)
        space = max(text.rfind(" ", 0, end), text.rfind("\n", 0, end))
        if space >= end // 2:
            end = space + 1
        parts.append(text[:end])
        text = text[end:]
    return parts + ([text] if text else [])


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
            previous = room
            self._close_previous_room(previous, token)
            room = self._open_room(token)
            if room == previous:
                raise RetryLater("Rocket.Chat still has the contact's previous room open; the new ticket waits")
        kv.set_json(f"ticket:{ticket}", {"rid": room})
        kv.set_json(f"room:{room}", {"ticket": ticket})
        return room

    def _close_previous_room(self, room, token):
        """Closes the contact's previous ticket's room for its new ticket (`POST livechat/room.close`,
        apps/meteor/app/livechat/server/api/v1/room.ts). Refused, the new ticket must not go into
        that room: it waits (retried) until the room is closed, by an agent or once allowed."""
        response = self._post(f"{API}/room.close", {"rid": room, "token": token})
        error = "" if response.status == 200 else _failure(response)
        if error in ("", "room-closed"):
            return
        if error == "invalid-token":
            raise VisitorUnknown()
        hint = ""
        if error == "error-not-allowed-to-close-conversation":
            hint = " (Omnichannel_allow_visitors_to_close_conversation is off)"
        raise RetryLater(
            f"Rocket.Chat refused to close the contact's previous room{hint}: {error}; the new ticket waits "
            "until that room is closed"
        )

    def text_limit(self):
        """The Livechat character limit Rocket.Chat states (`GET livechat/config`:
        `config.settings.limitTextLength`, apps/meteor/app/livechat/server/api/v1/config.ts), or None."""
        response = _send(http.get_json, f"{self.base}{API}/config")
        limit = (((response.json() or {}).get("config") or {}).get("settings") or {}).get("limitTextLength")
        if isinstance(limit, bool) or not isinstance(limit, (int, float)) or limit < 1:
            return None
        return math.floor(limit)

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
            raise VisitorUnknown()
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
            raise VisitorUnknown()
        raise RetryLater(f"Rocket.Chat could not say whether the message arrived: {error}")

    def send_message(self, token, room, text, message_id):
        """Posts the message; returns Rocket.Chat's `error` when it answered 400, else None."""
        body = {"token": token, "rid": room, "msg": text, "_id": message_id}
        response = self._post(f"{API}/message", body)
        if response.status == 200:
            return None
        return _failure(response)


def _forget_room(ticket, room):
    kv.delete(f"ticket:{ticket}")
    kv.delete(f"room:{room}")


_KIND_OF_MEDIA = {
    "image": types.MessageType.IMAGE,
    "video": types.MessageType.VIDEO,
    "audio": types.MessageType.AUDIO,
}


def _kind_of(mime):
    """The 3Dolphins message type of a file of MIME type `mime`."""
    return _KIND_OF_MEDIA.get((mime or "").split("/", 1)[0], types.MessageType.FILE)


def _absolute(link, base):
    return base + link if link.startswith("/") else link


def _files_of(message, base):
    """`(message type, link, description)` of every file of an agent's message, in order: one
    attachment per file (`parseFileIntoMessageAttachments`,
    apps/meteor/app/file-upload/server/methods/sendFileMessage.ts), the first also in `file` and,
    with a public link, in `fileUpload` (`normalizeMessageFileUpload`)."""
    upload = message.get("fileUpload") or {}
    attachments = [a for a in message.get("attachments") or [] if isinstance(a, dict) and a.get("title_link")]
    if not attachments and not upload.get("publicFilePath"):
        return []
    if not attachments:
        attachments = [{}]
    found = []
    for index, attachment in enumerate(attachments):
        mime = next((attachment.get(f"{kind}_type") for kind in _KIND_OF_MEDIA if attachment.get(f"{kind}_type")), "")
        link = attachment.get("title_link") or ""
        if index == 0:
            mime = upload.get("type") or (message.get("file") or {}).get("type") or mime
            link = upload.get("publicFilePath") or link
        found.append((_kind_of(mime), _absolute(link, base), attachment.get("description") or ""))
    return found


def _outgoing(ticket, message, base):
    """The Outgoing events of an agent's message: its text, or each of its files (the text typed
    with the files is the caption of the first one without a description of its own, else sent
    first as a text). Keys: `message:<_id>` for the first event, `message:<_id>:<n>` after it."""
    message_id = message.get("_id")
    text = message.get("msg") or ""
    files = _files_of(message, base)
    if not files:
        parts = [(types.MessageType.TEXT, "", text)]
    elif text and not files[0][2]:
        parts = [(files[0][0], files[0][1], text)] + files[1:]
    elif text:
        parts = [(types.MessageType.TEXT, "", text)] + files
    else:
        parts = files
    extra = {"rocketchatMessageId": message_id}
    found = []
    for index, (kind, link, caption) in enumerate(parts):
        dedupe_key = None
        if isinstance(message_id, str) and message_id:
            dedupe_key = f"message:{message_id}" if index == 0 else f"message:{message_id}:{index}"
        found.append(events.outgoing(ticket, kind, caption, link, extra, dedupe_key=dedupe_key))
    return found


def _ticket_of(room):
    known = kv.get_json(f"room:{room}") if room else None
    return None if known is None else known["ticket"]


def _already_there(livechat, token, room, message_id, error):
    """Whether a 400 without a known reason answered a message Rocket.Chat already has (it
    answers 400 to an `_id` it has: sendMessage returns early)."""
    return error not in KNOWN_MESSAGE_ERRORS and livechat.has_message(token, room, message_id)


def _post_in_parts(livechat, token, room, text, message_id):
    """Sends `text` in parts within Rocket.Chat's Livechat character limit, each `_id` derived
    from `message_id` (the same on every retry; a part already there is not sent again)."""
    limit = livechat.text_limit()
    if limit is None:
        raise Permanent(
            "Rocket.Chat refused the message as longer than its Livechat character limit "
            "(message-length-exceeds-character-limit) and states no limit to split it by"
        )
    for index, part in enumerate(_split_text(text, limit)):
        part_id = f"{message_id}p{index}"
        error = livechat.send_message(token, room, part, part_id)
        if error is not None and not _already_there(livechat, token, room, part_id, error):
            raise Permanent(f"Rocket.Chat refused part {index + 1} of a message split to its limit of {limit}: {error}")


def _deliver_as_visitor(ctx, event, livechat, token):
    """Delivers one Incoming event as the visitor of `token`: visitor, room, message."""
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
    error = livechat.send_message(token, room, text, message_id)
    if error in ("room-closed", "invalid-room"):
        # An agent closed the room while the ticket goes on, or Rocket.Chat removed it with its
        # visitor: continue in a new room.
        _forget_room(event.ticket_number, room)
        room = livechat.room_of(event.ticket_number, token)
        error = livechat.send_message(token, room, text, message_id)
    if error is None:
        return
    if _already_there(livechat, token, room, message_id, error):
        log.info("rocketchat: message already delivered", rid=room)
        return
    if error == "invalid-token":
        raise VisitorUnknown()
    if error == "message-length-exceeds-character-limit":
        _post_in_parts(livechat, token, room, text, message_id)
        return
    raise Permanent(f"Rocket.Chat refused the message: {error}")


def _deliver(ctx, event):
    """Delivers one Incoming event; a visitor Rocket.Chat no longer knows (removed, with its
    rooms: `cleanGuestHistory`, apps/meteor/app/livechat/server/lib/guests.ts) is registered again
    at once and the delivery repeated, once."""
    livechat = _Livechat()
    token = _visitor_token(event.owner, event.contact_id)
    try:
        _deliver_as_visitor(ctx, event, livechat, token)
    except VisitorUnknown:
        log.info("rocketchat: Rocket.Chat does not know the visitor (invalid-token); registering it again")
        kv.delete(f"visitor:{token}")
        try:
            _deliver_as_visitor(ctx, event, livechat, token)
        except VisitorUnknown:
            raise RetryLater("Rocket.Chat does not know the visitor (invalid-token) just after registering it") from None


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
                    found.extend(_outgoing(ticket, message, base))
        elif kind == "LivechatSession" and payload.get("closedAt") and payload.get("closer") != "visitor":
            # closer "visitor": the bridge closed the room (a contact's next ticket), not an agent.
            room = payload.get("_id")
            ticket = _ticket_of(room)
            if ticket is not None:
                found.append(events.close(ticket, dedupe_key=f"close:{room}"))
        return outcome(found, json_response(200, {"status": "ok", "events": len(found)}))
