"""Helpers for delivery tests: capture numbered turns, run a shipper, wait for a condition."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from voicelog.agent.wiring import host_spool
from voicelog.services.backup import BackupWriter
from voicelog.services.capture import ChatHistoryService
from voicelog.services.config import Settings
from voicelog.services.domain import ChatType, resolve_identity
from voicelog.services.shipping import Shipper
from voicelog.services.shipping.manager import ManagerApiClient
from voicelog.services.spool import DeliveryState, Spool


def room_for(mac: str, n: int = 0) -> str:
    return f"00000000-0000-4000-8000-{n:012d}_{mac.replace(':', '')}"


def capture_numbered(settings: Settings, spool: Spool, mac: str, count: int, *, n: int = 0,
                     end: bool = True, content: Callable[[int], str] | None = None) -> str:
    """Capture ``count`` alternating user/agent turns "turn i" into a session; return its id."""
    identity = resolve_identity(room_for(mac, n), {"device_mac": mac}, mac)
    service = ChatHistoryService(spool, identity, settings.chat_history,
                                 backups=BackupWriter(settings.chat_history.backup_dir))
    for i in range(1, count + 1):
        kind = ChatType.USER if i % 2 else ChatType.AGENT
        service.add_message(kind, content(i) if content else f"turn {i}")
    if end:
        spool.end_session(identity.session_id, ended_ms=int(time.time() * 1000), reason="test_end")
    return identity.session_id


@contextlib.asynccontextmanager
async def running_shipper(settings: Settings, spool: Spool | None = None, *,
                          delivery: DeliveryState | None = None, **kwargs: Any) -> AsyncIterator[Shipper]:
    """A shipper running in the background over the settings' spool, stopped and drained after."""
    spool = spool or host_spool(settings)
    client = ManagerApiClient(settings.manager_api)
    if delivery is None:
        delivery = DeliveryState(spool, now=kwargs["now"]) if "now" in kwargs else DeliveryState(spool)
    shipper = Shipper(delivery, client, settings, backups=BackupWriter(settings.chat_history.backup_dir),
                      **kwargs)
    stop = asyncio.Event()
    task = asyncio.create_task(shipper.run(stop))
    try:
        yield shipper
    finally:
        stop.set()
        await task
        await client.aclose()


async def eventually(check: Callable[[], Awaitable[bool] | bool], timeout: float = 20.0,
                     what: str = "condition") -> None:
    """Wait until ``check`` holds, polling; fail with ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(0.05)


def contents(rows: list[dict]) -> list[str]:
    return [row["content"] for row in rows]
