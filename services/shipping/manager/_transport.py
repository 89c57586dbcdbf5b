"""How a request reaches the Manager: the one-method ``Transport`` seam and its aiohttp implementation.

aiohttp and asyncio exceptions are translated into ``TransportError`` here and go no further.
A fake for tests and trials lives beside it (``_mock.MockTransport``), as httpx does.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

import aiohttp

from voicelog.services.shipping.manager._outcome import BODY_LIMIT

DEFAULT_MAX_CONNECTIONS = 32


class TransportError(Exception):
    """The request got no HTTP answer: refused, reset, timed out, DNS failure, bad URL."""


@dataclass(frozen=True)
class RawResponse:
    """An HTTP answer as the transport read it; ``body`` is capped, never the whole of a huge one."""

    status: int
    headers: Mapping[str, str]
    body: bytes


class Transport(Protocol):
    """Sends one HTTP request; the only thing a test needs to fake."""

    async def request(self, method: str, url: str, *, headers: Mapping[str, str],
                      json_body: object | None) -> RawResponse: ...

    async def aclose(self) -> None: ...


_ENCODER = json.JSONEncoder(ensure_ascii=False)  # json.dumps(ensure_ascii=False) builds one per call


class AiohttpTransport:
    """A long-lived keep-alive aiohttp session that speaks ``Transport``."""

    def __init__(self, timeout: float, *, max_connections: int = DEFAULT_MAX_CONNECTIONS,
                 body_limit: int = BODY_LIMIT) -> None:
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._max_connections = max_connections
        # One byte over the limit is enough to tell "at the limit" from "too big".
        self._read_limit = body_limit + 1
        self._session: aiohttp.ClientSession | None = None
        self._closed = False

    async def request(self, method: str, url: str, *, headers: Mapping[str, str],
                      json_body: object | None) -> RawResponse:
        """Send one request and read at most the body limit of its answer."""
        session = self._open_session()
        data = None if json_body is None else _ENCODER.encode(json_body).encode()
        try:
            async with session.request(method, url, headers=headers, data=data,
                                       allow_redirects=False) as response:
                body = await _read_capped(response, self._read_limit)
                # The response's own read-only header view (a Mapping): no copy per request.
                return RawResponse(response.status, response.headers, body)
        except asyncio.TimeoutError as error:
            raise TransportError(f"{describe_error(error)}: no answer within {self._timeout.total}s") from error
        except (aiohttp.ClientError, OSError, ValueError) as error:
            raise TransportError(describe_error(error)) from error

    async def aclose(self) -> None:
        """Close the session and its pooled connections."""
        self._closed = True
        if self._session is not None:
            await self._session.close()
            self._session = None

    def _open_session(self) -> aiohttp.ClientSession:
        """The shared session, created on first use inside the running loop."""
        if self._closed:
            raise TransportError("transport is closed")
        if self._session is None:
            connector = aiohttp.TCPConnector(limit=self._max_connections)
            self._session = aiohttp.ClientSession(connector=connector, timeout=self._timeout)
        return self._session


async def _read_capped(response: aiohttp.ClientResponse, limit: int) -> bytes:
    """Read the body up to ``limit`` bytes; a longer answer is cut off and its connection dropped."""
    chunks, size = [], 0
    while size < limit:
        chunk = await response.content.read(limit - size)
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
        if response.content.at_eof():  # the usual short envelope came whole: no second read
            break
    if size >= limit:
        response.close()  # the rest is never read, so this connection cannot be reused
    return b"".join(chunks)


def describe_error(error: BaseException) -> str:
    """The exception's class name and text; timeouts often have no text at all."""
    text = str(error)
    return f"{type(error).__name__}: {text}" if text else type(error).__name__
