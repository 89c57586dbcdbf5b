"""How the daemon lives: signals become events, the shipper's heartbeat, and waits a second signal cuts short."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time
from collections.abc import Awaitable, Callable
from typing import Any

import structlog

from voicelog.services.domain import first_of, wall_ms

log = structlog.get_logger("voicelog.daemon")


class StopSignals:
    """Turn SIGTERM/SIGINT into events the loops react to: first asks to stop, second hurries."""

    def __init__(self) -> None:
        self.stop = asyncio.Event()
        self.hurry = asyncio.Event()

    def install(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self._received, sig)

    def _received(self, sig: signal.Signals) -> None:
        if self.stop.is_set():
            log.warning("second_signal_hurrying_shutdown", signal=sig.name)
            self.hurry.set()
        else:
            log.info("signal_received_draining", signal=sig.name)
            self.stop.set()


class Heartbeat:
    """The shipper's clock, which also remembers when the shipper last looked at it.

    The shipper reads its clock on every pass of its loop, so a stale heartbeat means the
    loop is stuck: that is what /healthz and the systemd watchdog report.
    """

    def __init__(self, clock: Callable[[], int] = wall_ms) -> None:
        self._clock = clock
        self.last = time.monotonic()

    def __call__(self) -> int:
        self.last = time.monotonic()
        return self._clock()

    def age(self) -> float:
        """Seconds since the shipper last ran."""
        return time.monotonic() - self.last


async def stopped_within(stop: asyncio.Event, seconds: float) -> bool:
    """Wait up to ``seconds``; True if ``stop`` was set meanwhile."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)
    return stop.is_set()


async def race(work: Awaitable[Any], hurry: asyncio.Event) -> None:
    task = asyncio.ensure_future(work)
    await first_of(task, hurry)
    if not task.done():
        task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


async def until_done_or_hurried(task: asyncio.Task[Any], signals: StopSignals) -> None:
    await race(task, signals.hurry)
