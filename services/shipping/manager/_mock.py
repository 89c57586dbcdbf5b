"""A Transport that needs no network: queued answers out, every request kept, for tests and trials."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field

from voicelog.services.shipping.manager._transport import RawResponse


def envelope(code: int = 0, msg: str = "success", data: object = True, status: int = 200) -> RawResponse:
    """An HTTP answer carrying the Manager's ``{"code", "msg", "data"}`` envelope."""
    body = json.dumps({"code": code, "msg": msg, "data": data}, ensure_ascii=False).encode()
    return RawResponse(status, {"Content-Type": "application/json"}, body)


@dataclass(frozen=True)
class SentRequest:
    """One request a MockTransport was asked to send."""

    method: str
    url: str
    headers: dict[str, str]
    json_body: object


@dataclass
class MockTransport:
    """Answers from a queue (the last answer repeats; an exception is raised), recording requests."""

    answers: list[RawResponse | BaseException] = field(default_factory=lambda: [envelope()])
    sent: list[SentRequest] = field(default_factory=list)
    closed: bool = False

    async def request(self, method: str, url: str, *, headers: Mapping[str, str],
                      json_body: object | None) -> RawResponse:
        """Record the request and give the next answer."""
        self.sent.append(SentRequest(method, url, dict(headers), json_body))
        reply = self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]
        if isinstance(reply, BaseException):
            raise reply
        return reply

    async def aclose(self) -> None:
        """Remember that the client closed it."""
        self.closed = True
