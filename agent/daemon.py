"""The long-running daemon: LiveKit worker and shipper side by side, stopped by signals.

First SIGTERM/SIGINT: stop taking sessions, let running ones end, flush to the Manager
within the drain timeout, exit 0; whatever was not delivered stays in the spool for the
next start. A second signal ends the wait at once (still exit 0, still nothing lost).
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import Awaitable, Callable
from typing import Any

import structlog

from agent.capture_setup import open_spool
from services.backup import BackupWriter
from services.config import Settings
from services.manager_api import ManagerApiClient
from services.metrics import Metrics
from services.ownership import ShipperLock
from services.shipper import Shipper, ShipSummary

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


def build_shipper(settings: Settings, *, metrics: Metrics | None = None,
                  max_attempts: int | None = None) -> tuple[Shipper, Callable[[], Awaitable[None]]]:
    """A shipper over the host spool, and the coroutine function that releases its resources."""
    spool = open_spool(settings)
    lock = ShipperLock(spool.path)
    lock.acquire()
    client = ManagerApiClient(settings.manager_api)
    history = settings.chat_history
    shipper = Shipper(spool, client, settings, metrics=metrics, max_attempts=max_attempts,
                      backups=BackupWriter(history.backup_dir, fsync=history.durability == "power"))

    async def release() -> None:
        await client.aclose()
        spool.close()
        lock.release()

    return shipper, release


async def run_shipper(settings: Settings, signals: StopSignals | None = None) -> ShipSummary:
    """Run the shipper alone until a stop signal, then drain."""
    signals = signals or StopSignals()
    signals.install()
    shipper, release = build_shipper(settings)
    try:
        task = asyncio.create_task(shipper.run(signals.stop))
        await _until_done_or_hurried(task, signals)
        return shipper.summary
    finally:
        await release()


async def ship_once(settings: Settings, max_attempts: int) -> ShipSummary:
    """Deliver everything deliverable now, with a bounded retry budget per turn."""
    shipper, release = build_shipper(settings, max_attempts=max_attempts)
    try:
        return await shipper.run_once()
    finally:
        await release()


async def run_daemon(settings: Settings, server: Any) -> int:
    """Run the LiveKit worker and the shipper until signalled; drain both; return 0."""
    signals = StopSignals()
    signals.install()
    shipper, release = build_shipper(settings)
    worker = asyncio.create_task(server.run(), name="voicelog-livekit-worker")
    shipping = asyncio.create_task(shipper.run(signals.stop), name="voicelog-shipper")
    try:
        stop_wait = asyncio.ensure_future(signals.stop.wait())
        await asyncio.wait({worker, stop_wait}, return_when=asyncio.FIRST_COMPLETED)
        if worker.done() and not signals.stop.is_set():
            log.error("livekit_worker_exited", error=repr(worker.exception()))
            signals.stop.set()
            return 1
        with contextlib.suppress(TimeoutError):
            await _race(server.drain(settings.shipper.drain_timeout or None), signals.hurry)
        await server.aclose()
        await _until_done_or_hurried(shipping, signals)
        return 0
    finally:
        signals.stop.set()
        await release()


async def _race(work: Awaitable[Any], hurry: asyncio.Event) -> None:
    task = asyncio.ensure_future(work)
    hurried = asyncio.ensure_future(hurry.wait())
    await asyncio.wait({task, hurried}, return_when=asyncio.FIRST_COMPLETED)
    hurried.cancel()
    if not task.done():
        task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


async def _until_done_or_hurried(task: asyncio.Task[Any], signals: StopSignals) -> None:
    await _race(task, signals.hurry)
