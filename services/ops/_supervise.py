"""Keep a long-running side task alive: restart it after a crash, with a growing pause."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable

import structlog

log = structlog.get_logger("voicelog.daemon")
FIRST_RESTART_DELAY = 1.0
MAX_RESTART_DELAY = 30.0


async def supervised(name: str, work: Callable[[], Awaitable[None]], stop: asyncio.Event, *,
                     on_crash: Callable[[BaseException], None] | None = None,
                     first_delay: float = FIRST_RESTART_DELAY, max_delay: float = MAX_RESTART_DELAY) -> None:
    """Run ``work()`` until ``stop``; whenever it raises, log it, tell ``on_crash`` and start it again.

    A task that ends by itself is done. The pause before a restart doubles (up to ``max_delay``),
    so a task that crashes at once every time does not spin.
    """
    delay = first_delay
    while not stop.is_set():
        try:
            await work()
            return
        except asyncio.CancelledError:
            raise
        except Exception as error:  # noqa: BLE001 - the point is to outlive any bug in the task
            log.exception("task_crashed_restarting", task=name, retry_in=delay)
            if on_crash is not None:
                on_crash(error)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), delay)
        delay = min(max_delay, delay * 2)
