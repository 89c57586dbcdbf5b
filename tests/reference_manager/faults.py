"""Fault injection for the reference Manager: armed counts and the broken answers they produce."""

import functools
import json
import math
import socket
import struct

from aiohttp import web

GARBAGE_KINDS = ("non_json", "huge_json", "wrong_envelope")
HUGE_JSON_BYTES = 16 * 1024 * 1024
_HTTP_REASONS = {502: "Bad Gateway", 503: "Service Unavailable", 504: "Gateway Time-out"}


class FaultPlan:
    """Counts of faults still to inject, each with the parameters of its answer.

    Faults fire in a fixed order (http, verdict, rate_limit, code500, garbage before the handler;
    reset_after_commit after it), each on the next `count` device-server requests.
    """

    def __init__(self) -> None:
        self._armed: dict[str, tuple[int, dict]] = {}
        self._spared: dict[str, int] = {}

    def arm(self, name: str, count: int, *, after: int = 0, **params) -> None:
        """Make fault `name` fire on `count` requests once `after` more have passed (0 disarms it)."""
        if count < 0 or after < 0:
            raise ValueError("count and after must be >= 0")
        self._armed[name] = (count, params)
        self._spared[name] = after

    def clear(self) -> None:
        """Disarm every fault."""
        self._armed.clear()
        self._spared.clear()

    def take(self, name: str) -> dict | None:
        """Use one shot of fault `name`: its parameters, or None when it is not armed (or spares this one)."""
        remaining, params = self._armed.get(name, (0, {}))
        if remaining <= 0:
            return None
        if self._spared.get(name, 0) > 0:
            self._spared[name] -= 1
            return None
        self._armed[name] = (remaining - 1, params)
        return params

    def remaining(self, name: str) -> int:
        """How many more requests fault `name` will hit."""
        return self._armed.get(name, (0, {}))[0]

    def answer_before_handler(self) -> tuple[str, web.Response] | None:
        """Return (outcome name, broken answer) if a pre-handler fault fires, else None."""
        if (params := self.take("http")) is not None:
            return "fault_http", http_error(params["status"], params.get("location"))
        if (params := self.take("verdict")) is not None:
            return "fault_verdict", verdict_envelope(params["code"])
        if (params := self.take("rate_limit")) is not None:
            return "rate_limited", too_many_requests(params["retry_after_seconds"])
        if self.take("code500") is not None:
            return "fault_code500", code500_envelope()
        if (params := self.take("garbage")) is not None:
            return "garbage", garbage(params["kind"])
        return None


def http_error(status: int, location: str | None = None) -> web.Response:
    """A proxy-style HTML error page with a real HTTP error status (a redirect names where to)."""
    reason = _HTTP_REASONS.get(status, "Error")
    if location is not None:
        body = f"<html><body>Redirecting to <a href='{location}'>the login page</a></body></html>"
        return web.Response(status=status, text=body, content_type="text/html", headers={"Location": location})
    body = f"<html><head><title>{status} {reason}</title></head><body><h1>{status} {reason}</h1></body></html>"
    return web.Response(status=status, text=body, content_type="text/html")


def too_many_requests(retry_after_seconds: float) -> web.Response:
    """HTTP 429 with a Retry-After header in whole seconds (rounded up, as HTTP requires)."""
    return web.Response(
        status=429, text="Too Many Requests", content_type="text/plain",
        headers={"Retry-After": str(math.ceil(retry_after_seconds))},
    )


def verdict_envelope(code: int) -> web.Response:
    """HTTP 200 with a validation refusal of this request's content (as for a blank field)."""
    return _json({"code": code, "msg": "content不能为空 (injected verdict)", "data": None})


def code500_envelope() -> web.Response:
    """HTTP 200 carrying the Manager's unhandled-exception envelope."""
    return _json({"code": 500, "msg": "服务器内部异常 (injected fault)", "data": None})


def garbage(kind: str) -> web.Response:
    """HTTP 200 whose body is not a usable Manager envelope."""
    if kind == "non_json":
        return web.Response(text="<html><body>OK</body></html>", content_type="text/html")
    if kind == "huge_json":
        return web.Response(body=_huge_json(), content_type="application/json")
    if kind == "wrong_envelope":
        return _json({"status": "ok", "result": True})
    raise ValueError(f"garbage kind must be one of {GARBAGE_KINDS}, not {kind!r}")


@functools.cache
def _huge_json() -> bytes:
    """Valid JSON, no envelope, far larger than any real answer: a client must cap what it reads."""
    item = "x" * 30
    return json.dumps([item] * (HUGE_JSON_BYTES // (len(item) + 4) + 1)).encode()


def reset_connection(request: web.Request) -> None:
    """Abort the request's TCP connection with an RST, so the client gets no answer at all."""
    transport = request.transport
    if transport is None:
        return
    sock = transport.get_extra_info("socket")
    if sock is not None:
        # Linger 0 makes close() send RST instead of FIN: a hard reset, not a clean end.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    transport.abort()


def _json(payload: dict) -> web.Response:
    return web.json_response(payload, dumps=lambda value: json.dumps(value, ensure_ascii=False))
