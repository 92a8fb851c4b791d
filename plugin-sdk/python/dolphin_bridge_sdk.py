"""Helpers for dolphin-bridge adapters written in Python (componentize-py), WIT `dolphin:bridge@0.2.0`.

The generated bindings (`wit_world`) are the contract; this module only makes the common parts
short and uniform, so an adapter file can stay about its vendor:

- `config.require(key)` / `config.get(key, default)`: the tenant's configuration.
- `http.post_json(url, body)` / `http.get_json(url)`: outbound HTTP through the host, with
  failures classified the same way in every adapter: timeouts, connection failures, 408, 429
  and 5xx raise `RetryLater` (with the wait the vendor's headers ask for as `after_ms`, see
  `retry_after_ms`); a denied URL, an exceeded limit and other 4xx raise `Permanent`.
- `kv.get_json(key)` / `kv.set_json(key, value)` / `kv.delete(key)`: JSON values in the
  tenant's key-value store; a store failure raises `RetryLater`.
- `log.info(message, **fields)` and friends: the host's log (it adds tenant and delivery id).
- `crypto.hmac_sha256(key, message)`, `crypto.verify_hmac_sha256_hex(secret, message, hex)`,
  `crypto.sha256(data)`, `crypto.constant_time_equal(a, b)`, `crypto.random_bytes(n)`: the host's
  crypto interface (checking a vendor's webhook signature, signing a request, making an id).
- `events.outgoing(...)` / `events.text(...)` / `events.close(...)` with `dedupe_key=`, and
  `outcome(events, response)`: what `on_vendor_webhook` returns.
- `urllib.request.urlopen(...)`: the standard library's client sends through the host too, with
  the same policy (`dolphin_bridge_urllib`, installed when this module is imported).
- `@guard`: wraps an export so that `RetryLater`/`Permanent` become the WIT `adapter-error`, and
  any other uncaught exception is logged with its traceback and becomes `permanent`.
"""

import calendar
import functools
import json
import re
import time
import traceback

import dolphin_bridge_urllib
from componentize_py_types import Err
from wit_world.imports import config as _config
from wit_world.imports import crypto as _crypto
from wit_world.imports import http as _http
from wit_world.imports import kv as _kv
from wit_world.imports import log as _log
from wit_world.imports import types

__all__ = [
    "RetryLater",
    "Permanent",
    "Response",
    "config",
    "crypto",
    "events",
    "guard",
    "header",
    "http",
    "json_response",
    "kv",
    "log",
    "outcome",
    "retry_after_ms",
]

_U64_MAX = (1 << 64) - 1

dolphin_bridge_urllib.install()


class RetryLater(Exception):
    """A transient failure: the host retries the delivery later.

    `after_ms` (optional, milliseconds from now) is the vendor's own hint of when to come back
    (`Retry-After`, a rate limit's reset time): the host waits at least that long before the next
    attempt (at most one hour, and never less than its own retry schedule). `None` leaves the
    wait to the host's schedule. `response` is the vendor's `Response` when the failure is an
    HTTP answer (`http` sets it), else `None`.
    """

    def __init__(self, reason, after_ms=None, response=None):
        super().__init__(reason)
        self.reason = str(reason)
        self.after_ms = _clamp_ms(after_ms)
        self.response = response


class Permanent(Exception):
    """A failure that will not go away by retrying: the delivery is dead-lettered."""


def _clamp_ms(value):
    """`value` as a whole number of milliseconds in 0..=u64::MAX (rounded up), or `None`."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"after_ms must be a number of milliseconds or None, not {type(value).__name__}")
    if value != value:  # NaN
        return None
    if value <= 0:
        return 0
    if value == float("inf"):
        return _U64_MAX
    whole = int(value)
    if whole < value:
        whole += 1
    return min(whole, _U64_MAX)


class _Config:
    """The tenant's `[tenants.config]` and `[tenants.secrets]` values."""

    def get(self, key, default=None):
        """The value of `key`, or `default` when the tenant does not set it."""
        value = _config.get(key)
        return default if value is None else value

    def require(self, key):
        """The value of `key`; `Permanent` naming the key when it is missing or empty."""
        value = _config.get(key)
        if value is None or value == "":
            raise Permanent(f"config `{key}` is not set")
        return value


def header(headers, name):
    """The value of the first header `name` (case-insensitive) in a list of pairs, or `None`."""
    wanted = name.lower()
    for key, value in headers:
        if key.lower() == wanted:
            return value
    return None


# What Rust's `str::trim` removes (Unicode White_Space), and an IMF-fixdate
# (`Sun, 06 Nov 1994 08:49:37 GMT`) with its parts separated by ASCII whitespace, as the Rust SDK
# reads them.
_TRIMMED = (
    "\t\n\x0b\x0c\r \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009\u200a"
    "\u2028\u2029\u202f\u205f\u3000"
)
_IMF_FIXDATE = re.compile(
    r"(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun),[ \t\n\f\r]+([0-9]{2})[ \t\n\f\r]+"
    r"(Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec)[ \t\n\f\r]+([0-9]{4})[ \t\n\f\r]+"
    r"([0-9]{2}):([0-9]{2}):([0-9]{2})[ \t\n\f\r]+GMT"
)
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
# 2001-09-09 in Unix seconds, and in milliseconds: smaller numbers are no timestamps of these years.
_EPOCH_SECONDS_FROM = 1_000_000_000
_EPOCH_MILLIS_FROM = _EPOCH_SECONDS_FROM * 1000


def retry_after_ms(headers, now=None):
    """How long a vendor's answer asks the caller to wait, in milliseconds from now, or `None`.

    Read from its headers (names compared case-insensitively, the first of each used), as the
    Rust SDK's `http::retry_after_ms` does:

    1. `Retry-After` (RFC 9110): delay-seconds (`120`), or an IMF-fixdate (`Wed, 21 Oct 2015
       07:28:00 GMT`) measured from the wall clock; a date in the past is `0`. The obsolete
       RFC 850 and asctime date formats, negative or fractional numbers and anything else are
       ignored.
    2. Otherwise (no `Retry-After`, or one it cannot read) `X-RateLimit-Reset` when it is a Unix
       timestamp: in seconds (from 1 000 000 000, `1700000000`) or milliseconds (from
       1 000 000 000 000, `1700000000000`), measured from the wall clock; a reset in the past is
       `0`. A smaller number is ignored (some vendors send the seconds until the reset there,
       which cannot be told from a timestamp reliably), as is anything else.

    `None` when neither gives a wait. A wait beyond a `u64` is `u64::MAX`; the host caps it at
    one hour and never retries sooner than its own schedule says. `now` is the wall clock's time
    in Unix seconds (`time.time()` when `None`).
    """
    if now is None:
        now = time.time()
    now_ms = int(now * 1000) if now >= 0 else None
    value = header(headers, "retry-after")
    if value is not None:
        wait = _parse_retry_after(value, now_ms)
        if wait is not None:
            return wait
    value = header(headers, "x-ratelimit-reset")
    reset = None if value is None else _parse_rate_limit_reset(value)
    if reset is None or now_ms is None:
        return None
    return max(0, reset - now_ms)


def _parse_retry_after(value, now_ms):
    """A `Retry-After` value in milliseconds from `now_ms` (Unix milliseconds; `None` when the
    clock is unknown, then only delay-seconds are read)."""
    value = value.strip(_TRIMMED)
    seconds = _parse_digits(value)
    if seconds is not None:
        return min(seconds * 1000, _U64_MAX)
    at_seconds = _parse_imf_fixdate(value)
    if at_seconds is None or now_ms is None:
        return None
    return max(0, at_seconds * 1000 - now_ms)


def _parse_rate_limit_reset(value):
    """An `X-RateLimit-Reset` that is a Unix timestamp, in Unix milliseconds, or `None`."""
    number = _parse_digits(value.strip(_TRIMMED))
    if number is None or number < _EPOCH_SECONDS_FROM:
        return None
    return number if number >= _EPOCH_MILLIS_FROM else number * 1000


def _parse_digits(text):
    """A non-empty run of ASCII digits as a number (`u64::MAX` when larger), or `None`."""
    if not text or not text.isascii() or not text.isdigit():
        return None
    significant = text.lstrip("0")
    if len(significant) > 20:  # more digits than u64::MAX has (and than `int()` may take)
        return _U64_MAX
    return min(int(significant or "0"), _U64_MAX)


def _parse_imf_fixdate(text):
    """An IMF-fixdate in Unix seconds, or `None`. Day and time are range-checked as the Rust SDK
    does (day 1..=31 in any month, second up to 60), an out-of-month day rolling over."""
    match = _IMF_FIXDATE.fullmatch(text)
    if match is None:
        return None
    day, month, year, hour, minute, second = match.groups()
    day, year, hour, minute, second = int(day), int(year), int(hour), int(minute), int(second)
    if year < 1970 or not 1 <= day <= 31 or hour > 23 or minute > 59 or second > 60:
        return None
    return calendar.timegm((year, _MONTHS.index(month) + 1, day, hour, minute, second))


class Response:
    """A vendor's answer: `status`, `headers` (list of pairs) and raw `body` bytes."""

    def __init__(self, status, headers, body):
        self.status = status
        self.headers = headers
        self.body = bytes(body)

    def header(self, name):
        """The first header `name` (case-insensitive), or `None`."""
        return header(self.headers, name)

    def json(self):
        """The body parsed as JSON; a malformed body raises `ValueError` (a bug to look at)."""
        return json.loads(self.body)

    def text(self):
        """The body as text (invalid UTF-8 replaced)."""
        return self.body.decode("utf-8", "replace")


def _is_transient_status(status):
    return status in (408, 429) or status >= 500


class _Http:
    """Outbound HTTP through the host, with the failures classified."""

    def send(self, method, url, headers=(), body=b"", accept=()):
        """Sends a request; returns a `Response` for 2xx answers and for statuses in `accept`.

        Raises `RetryLater` for timeouts, connection failures, 408, 429 and 5xx (for a status,
        with the wait its headers ask for as `after_ms`, see `retry_after_ms`, and with the
        answer as `response`), and `Permanent` for a denied URL, an exceeded host limit and any
        other status.
        """
        request = types.HttpRequest(method, url, list(headers), bytes(body))
        what = f"{method} {_path_of(url)}"
        try:
            answer = _http.send(request)
        except Err as e:
            error = e.value
            if isinstance(error, _http.HttpError_Timeout):
                raise RetryLater(f"{what}: timed out") from None
            if isinstance(error, _http.HttpError_Connection):
                raise RetryLater(f"{what}: connection failed: {error.value}") from None
            if isinstance(error, _http.HttpError_Denied):
                raise Permanent(f"{what}: denied by the bridge: {error.value}") from None
            raise Permanent(f"{what}: host limit exceeded: {error.value}") from None
        response = Response(answer.status, answer.headers, answer.body)
        if 200 <= response.status < 300 or response.status in accept:
            return response
        if _is_transient_status(response.status):
            after_ms = retry_after_ms(response.headers)
            raise RetryLater(f"{what} answered {response.status}", after_ms=after_ms, response=response)
        raise Permanent(f"{what} answered {response.status}")

    def post_json(self, url, body, headers=(), accept=()):
        """POSTs `body` as JSON; see `send`."""
        all_headers = [("content-type", "application/json"), ("accept", "application/json")] + list(headers)
        return self.send("POST", url, all_headers, json.dumps(body).encode(), accept)

    def get_json(self, url, headers=(), accept=()):
        """GETs `url` asking for JSON; see `send`."""
        return self.send("GET", url, [("accept", "application/json")] + list(headers), b"", accept)


def _path_of(url):
    """The URL without its query, so that tokens in query strings stay out of error messages."""
    return url.split("?", 1)[0]


class _Kv:
    """JSON values in the tenant's key-value store."""

    def get_json(self, key):
        """The value stored under `key`, or `None`."""
        try:
            raw = _kv.get(key)
        except Err as e:
            raise RetryLater(f"kv get: {e.value}") from None
        return None if raw is None else json.loads(bytes(raw))

    def set_json(self, key, value):
        """Stores `value` (JSON-encoded) under `key`."""
        try:
            _kv.set(key, json.dumps(value).encode())
        except Err as e:
            raise RetryLater(f"kv set: {e.value}") from None

    def delete(self, key):
        """Removes `key` (nothing happens when it is absent)."""
        try:
            _kv.delete(key)
        except Err as e:
            raise RetryLater(f"kv delete: {e.value}") from None


class _Log:
    """The host's log; each record is tagged with tenant and delivery id by the host."""

    def _write(self, level, message, fields):
        _log.log(level, message, [(name, str(value)) for name, value in fields.items()])

    def debug(self, message, **fields):
        self._write(_log.Level.DEBUG, message, fields)

    def info(self, message, **fields):
        self._write(_log.Level.INFO, message, fields)

    def warn(self, message, **fields):
        self._write(_log.Level.WARN, message, fields)

    def error(self, message, **fields):
        self._write(_log.Level.ERROR, message, fields)


def _bytes_of(value, what):
    """`value` as bytes: `bytes`-like as is, `str` as UTF-8."""
    if isinstance(value, str):
        return value.encode("utf-8")
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value)
    raise TypeError(f"{what} must be str or bytes, not {type(value).__name__}")


_HASHES = {
    "sha1": _crypto.Hash.SHA1,
    "sha256": _crypto.Hash.SHA256,
    "sha512": _crypto.Hash.SHA512,
}


class _Crypto:
    """Hashes, HMAC, comparison and randomness computed by the host (the WIT `crypto` interface).

    Keys, messages and data may be `str` (taken as UTF-8) or bytes; results are bytes
    (`.hex()` gives lowercase hex).
    """

    Hash = _crypto.Hash

    def hmac(self, hash, key, message):
        """HMAC of `message` with `key`; `hash` is `"sha1"`, `"sha256"`, `"sha512"` or a `crypto.Hash`."""
        if isinstance(hash, str):
            try:
                hash = _HASHES[hash.lower().replace("-", "")]
            except KeyError:
                raise ValueError(f"unknown HMAC hash {hash!r}: use sha1, sha256 or sha512") from None
        return bytes(_crypto.hmac(hash, _bytes_of(key, "key"), _bytes_of(message, "message")))

    def hmac_sha256(self, key, message):
        """HMAC-SHA256 of `message` with `key` (32 bytes)."""
        return self.hmac(_crypto.Hash.SHA256, key, message)

    def sha256(self, data):
        """The SHA-256 digest of `data` (32 bytes)."""
        return bytes(_crypto.sha256(_bytes_of(data, "data")))

    def constant_time_equal(self, a, b):
        """Whether `a` and `b` are equal, compared in a time that depends only on their lengths."""
        return bool(_crypto.constant_time_equal(_bytes_of(a, "a"), _bytes_of(b, "b")))

    def random_bytes(self, n):
        """`n` bytes from the host's cryptographically secure generator (any `n`, fetched in
        calls of at most 1024)."""
        if n < 0:
            raise ValueError("random_bytes: n must not be negative")
        out = bytearray()
        while len(out) < n:
            out += bytes(_crypto.random_bytes(min(1024, n - len(out))))
        return bytes(out)

    def verify_hmac_sha256_hex(self, secret, message, given_hex):
        """Whether `given_hex` is the hex HMAC-SHA256 of `message` with `secret`.

        `given_hex` is what the request carries (without any `sha256=` prefix); upper- and
        lowercase digits are accepted. `None`, a non-hex value or one of the wrong length is
        `False`. The digests are compared with the host's `constant-time-equal`, never `==`.
        """
        if not isinstance(given_hex, str) or len(given_hex) != 64 or not given_hex.isascii():
            return False
        try:
            given = bytes.fromhex(given_hex)
        except ValueError:
            return False
        if len(given) != 32:
            return False
        return self.constant_time_equal(self.hmac_sha256(secret, message), given)


def _message_type(value):
    """A `types.MessageType` from itself or its name (`"text"`, `"IMAGE"`)."""
    if isinstance(value, types.MessageType):
        return value
    try:
        return types.MessageType[str(value).upper()]
    except KeyError:
        raise ValueError(f"unknown message type {value!r}") from None


def _is_bridge_event(value):
    return isinstance(value, (types.BridgeEvent_Outgoing, types.BridgeEvent_Command))


class _Events:
    """Builders for the events a webhook yields (`types.WebhookEvent`).

    `dedupe_key` is the vendor's own id for the event (a message id, an event id), or `None`:
    the host drops a later event of the tenant with a key it stored within its dedupe window,
    so a vendor's retry of a webhook reaches 3Dolphins once. Prefix it with what it names
    (`"message:" + id`) when one vendor's ids of different things could collide.
    """

    def keyed(self, event, dedupe_key=None):
        """A `types.BridgeEvent_*` as a `types.WebhookEvent` with `dedupe_key`."""
        if isinstance(event, types.WebhookEvent):
            return types.WebhookEvent(event.event, event.dedupe_key if dedupe_key is None else dedupe_key)
        if not _is_bridge_event(event):
            raise TypeError(f"expected a bridge event, not {type(event).__name__}")
        if dedupe_key is not None and not isinstance(dedupe_key, str):
            raise TypeError("dedupe_key must be a str or None")
        return types.WebhookEvent(event, dedupe_key)

    def outgoing(self, ticket_number, message_type, message, media_link="", extra=None, dedupe_key=None):
        """An Outgoing event (the agent wrote). `message_type` is a `types.MessageType` or its
        name (`"text"`, `"image"`, ...); `extra` maps field names to values that are JSON-encoded
        into the JSON sent to 3Dolphins."""
        fields = [(name, json.dumps(value)) for name, value in (extra or {}).items()]
        event = types.OutgoingEvent(
            ticket_number, _message_type(message_type), message, media_link, None, None, fields
        )
        return self.keyed(types.BridgeEvent_Outgoing(event), dedupe_key)

    def text(self, ticket_number, message, dedupe_key=None):
        """An Outgoing text event."""
        return self.outgoing(ticket_number, types.MessageType.TEXT, message, dedupe_key=dedupe_key)

    def close(self, ticket_number, channel=None, dedupe_key=None):
        """A Close command for the ticket."""
        event = types.CommandEvent(ticket_number, types.TicketCommand.CLOSE, channel)
        return self.keyed(types.BridgeEvent_Command(event), dedupe_key)


config = _Config()
crypto = _Crypto()
events = _Events()
http = _Http()
kv = _Kv()
log = _Log()


def guard(export):
    """Wraps an export method: SDK errors become the WIT `adapter-error` (`RetryLater` becomes
    `retry-later(retry{reason, after-ms})`); any other uncaught exception is logged with its
    traceback and becomes `permanent` (retrying a bug does not help).
    """

    @functools.wraps(export)
    def guarded(*args, **kwargs):
        try:
            return export(*args, **kwargs)
        except Err:
            raise
        except RetryLater as e:
            raise Err(types.AdapterError_RetryLater(types.Retry(str(e), e.after_ms))) from None
        except Permanent as e:
            raise Err(types.AdapterError_Permanent(str(e))) from None
        except Exception as e:
            summary = f"uncaught {type(e).__name__} in {export.__name__}: {e}"
            log.error(summary, traceback=traceback.format_exc())
            raise Err(types.AdapterError_Permanent(summary)) from None

    return guarded


def json_response(status, value):
    """An HTTP response with a JSON body, for answering a vendor's webhook."""
    return types.HttpResponse(status, [("content-type", "application/json")], json.dumps(value).encode())


def outcome(webhook_events, response):
    """A `types.WebhookOutcome`: `webhook_events` (built with `events`, or bare
    `types.BridgeEvent_*`, which get no dedupe key) and the vendor's `response`."""
    return types.WebhookOutcome([events.keyed(event) for event in webhook_events], response)
