"""The alternatives voicelog is measured against: the keep-alive ceiling and the naive sender.

Both keep each session's rows in order and read the envelope (code 0, data true), so the
only difference from voicelog is what voicelog adds: the spool bookkeeping, retries, logs.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from typing import Any

import aiohttp

from bench.common import SECRET
from voicelog.services.shipping.manager import REPORT_PATH, SESSION_PATH

HEADERS = {"Authorization": f"Bearer {SECRET}", "Content-Type": "application/json"}
NAIVE_BATCH = 5


class RejectedBySender(RuntimeError):
    """The Manager did not store a row a baseline sent; its numbers would be meaningless."""


def _encoded(body: dict[str, Any]) -> bytes:
    return json.dumps(body, ensure_ascii=False).encode()


async def _post(http: aiohttp.ClientSession, url: str, body: bytes) -> None:
    async with http.post(url, data=body, headers=HEADERS) as response:
        envelope = json.loads(await response.read())
    if response.status != 200 or envelope.get("code") != 0 or envelope.get("data") is not True:
        raise RejectedBySender(f"HTTP {response.status}: {envelope}")


async def _per_session(work: Sequence[Any], concurrency: int, send_one: Any) -> None:
    """Run ``send_one(item)`` for every session's work with at most ``concurrency`` at once."""
    queue: asyncio.Queue[Any] = asyncio.Queue()
    for item in work:
        queue.put_nowait(item)

    async def worker() -> None:
        while not queue.empty():
            await send_one(queue.get_nowait())

    await asyncio.gather(*(worker() for _ in range(concurrency)))


async def ceiling_reports(base_url: str, sessions: Sequence[Sequence[dict[str, Any]]],
                          concurrency: int) -> None:
    """POST pre-built reports over one keep-alive pool, ``concurrency`` sessions at a time, in order."""
    url = base_url + REPORT_PATH
    encoded = [[_encoded(body) for body in bodies] for bodies in sessions]
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as http:
        async def one_session(bodies: list[bytes]) -> None:
            for body in bodies:
                await _post(http, url, body)

        await _per_session(encoded, concurrency, one_session)


async def ceiling_sessions(base_url: str, uploads: Sequence[dict[str, Any]], concurrency: int) -> None:
    """POST pre-built whole-session uploads over one keep-alive pool, ``concurrency`` at a time."""
    url = base_url + SESSION_PATH
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as http:
        async def one_upload(body: bytes) -> None:
            await _post(http, url, body)

        await _per_session([_encoded(u) for u in uploads], concurrency, one_upload)


async def naive_reports(base_url: str, sessions: Sequence[Sequence[dict[str, Any]]],
                        concurrency: int) -> None:
    """The earlier toy's way: batches of 5 per session, a new HTTP session for every message."""
    url = base_url + REPORT_PATH

    async def one_session(bodies: Sequence[dict[str, Any]]) -> None:
        for start in range(0, len(bodies), NAIVE_BATCH):
            for body in bodies[start:start + NAIVE_BATCH]:
                async with aiohttp.ClientSession() as http:  # what the toy did per message
                    await _post(http, url, _encoded(body))

    await _per_session(sessions, concurrency, one_session)
