"""The standard library's `urllib.request` in adapters: `urlopen` sends through the host's `http`
import, with the tenant's egress policy (allowed hosts, address ranges, the call's request
budget, the timeout and the response size), as the SDK's `http` helpers do.

`install()` (called when `dolphin_bridge_sdk` is imported) puts a handler for `http` and `https`
URLs first in `urllib.request`'s default opener. What urllib does with the answer is its own:
2xx is returned as a response object, other statuses raise `urllib.error.HTTPError`. A request
the host does not send raises `urllib.error.URLError` whose `reason` says why: `denied by the
bridge: ...` with the policy's reason, `timed out`, `connection failed: ...` or `host limit
exceeded: ...`.
"""

import email.message
import io
import urllib.error
import urllib.request
import urllib.response

from componentize_py_types import Err
from wit_world.imports import http as _http
from wit_world.imports import types

__all__ = ["BridgeHandler", "install"]


class BridgeHandler(urllib.request.BaseHandler):
    """Opens `http` and `https` URLs with the host's `http.send`."""

    # Before urllib's own handlers (500), which would open a socket: adapters have none.
    handler_order = 100

    def http_open(self, req):
        return _send(req)

    def https_open(self, req):
        return _send(req)


def _send(req):
    headers = [(name, value) for name, value in req.header_items()]
    body = req.data if req.data is not None else b""
    if isinstance(body, str):
        body = body.encode()
    request = types.HttpRequest(req.get_method(), req.full_url, headers, bytes(body))
    try:
        answer = _http.send(request)
    except Err as e:
        raise urllib.error.URLError(_reason(e.value)) from None
    message = email.message.Message()
    for name, value in answer.headers:
        message[name] = value
    response = urllib.response.addinfourl(io.BytesIO(bytes(answer.body)), message, req.full_url, answer.status)
    response.msg = ""
    return response


def _reason(error):
    if isinstance(error, _http.HttpError_Timeout):
        return "timed out"
    if isinstance(error, _http.HttpError_Connection):
        return f"connection failed: {error.value}"
    if isinstance(error, _http.HttpError_Denied):
        return f"denied by the bridge: {error.value}"
    return f"host limit exceeded: {error.value}"


def install():
    """Makes `urllib.request.urlopen` send through the host."""
    urllib.request.install_opener(urllib.request.build_opener(BridgeHandler))
