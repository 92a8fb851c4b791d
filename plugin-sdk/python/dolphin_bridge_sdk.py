"""Helpers for dolphin-bridge adapters written in Python (componentize-py).

The generated bindings (`wit_world`) are the contract; this module only makes the common parts
short and uniform, so an adapter file can stay about its vendor:

- `config.require(key)` / `config.get(key, default)`: the tenant's configuration.
- `http.post_json(url, body)` / `http.get_json(url)`: outbound HTTP through the host, with
  failures classified the same way in every adapter: timeouts, connection failures, 408, 429
  and 5xx raise `RetryLater`; a denied URL, an exceeded limit and other 4xx raise `Permanent`.
- `kv.get_json(key)` / `kv.set_json(key, value)` / `kv.delete(key)`: JSON values in the
  tenant's key-value store; a store failure raises `RetryLater`.
- `log.info(message, **fields)` and friends: the host's log (it adds tenant and delivery id).
- `@guard`: wraps an export so that `RetryLater`/`Permanent` become the WIT `adapter-error`, and
  any other uncaught exception is logged with its traceback and becomes `permanent`.
"""

import functools
import json
import traceback

from componentize_py_types import Err
from wit_world.imports import config as _config
from wit_world.imports import http as _http
from wit_world.imports import kv as _kv
from wit_world.imports import log as _log
from wit_world.imports import types

__all__ = ["RetryLater", "Permanent", "Response", "config", "http", "kv", "log", "guard", "json_response"]


class RetryLater(Exception):
    """A transient failure: the host retries the delivery later."""


class Permanent(Exception):
    """A failure that will not go away by retrying: the delivery is dead-lettered."""


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


class Response:
    """A vendor's answer: `status`, `headers` (list of pairs) and raw `body` bytes."""

    def __init__(self, status, headers, body):
        self.status = status
        self.headers = headers
        self.body = bytes(body)

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

        Raises `RetryLater` for timeouts, connection failures, 408, 429 and 5xx, and `Permanent`
        for a denied URL, an exceeded host limit and any other status.
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
            raise RetryLater(f"{what} answered {response.status}")
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


config = _Config()
http = _Http()
kv = _Kv()
log = _Log()


def guard(export):
    """Wraps an export method: SDK errors become the WIT `adapter-error`; any other uncaught
    exception is logged with its traceback and becomes `permanent` (retrying a bug does not help).
    """

    @functools.wraps(export)
    def guarded(*args, **kwargs):
        try:
            return export(*args, **kwargs)
        except Err:
            raise
        except RetryLater as e:
            raise Err(types.AdapterError_RetryLater(str(e))) from None
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
