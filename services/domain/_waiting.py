"""Wait for whichever of several things happens first: the one helper for it."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import Any


async def first_of(*waits: Awaitable[Any] | asyncio.Event, timeout: float | None = None) -> bool:
    """Wait until the first of ``waits`` is done (or ``timeout`` passes); True if one was.

    An Event is waited on for being set. Waiters made here (for events and coroutines) are
    cancelled and reaped before returning, so none is left pending; tasks and futures passed
    in belong to the caller and keep running.
    """
    ours: list[asyncio.Future[Any]] = []
    watched: list[asyncio.Future[Any]] = []
    for wait in waits:
        if isinstance(wait, asyncio.Event):
            future: asyncio.Future[Any] = asyncio.ensure_future(wait.wait())
            ours.append(future)
        elif isinstance(wait, asyncio.Future):
            future = wait
        else:
            future = asyncio.ensure_future(wait)
            ours.append(future)
        watched.append(future)
    try:
        done, _ = await asyncio.wait(watched, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for future in ours:
            future.cancel()
        if ours:
            await asyncio.wait(ours)  # reaped: never "Task was destroyed but it is pending"
        for future in ours:
            if not future.cancelled():
                future.exception()  # retrieved, so a waiter that failed is not reported twice
    return bool(done)
