"""Pause all delivery while the Manager refuses our secret, and probe until it accepts it."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable

import structlog

from voicelog.services.shipping.manager import DeliveryResult, Outcome

log = structlog.get_logger("voicelog.shipper")


class AuthGate:
    """Open while the secret is accepted; closed (and probing) after a 401 envelope."""

    def __init__(self, probe: Callable[[], Awaitable[DeliveryResult]], interval: float) -> None:
        self._probe = probe
        self._interval = interval
        self._open = asyncio.Event()
        self._open.set()
        self.refused = asyncio.Event()  # set while the secret is refused: bounded runs stop on it
        self._prober: asyncio.Task[None] | None = None
        self.last_reason: str | None = None

    @property
    def is_open(self) -> bool:
        """True while delivery may proceed."""
        return self._open.is_set()

    def close(self, reason: str) -> None:
        """Stop all delivery: the Manager answered 401."""
        self.last_reason = reason
        if not self._open.is_set():
            return
        self._open.clear()
        self.refused.set()
        log.error("manager_rejected_secret_delivery_paused", reason=reason,
                  hint="check manager_api.secret / MANAGER_API_SECRET; nothing is dropped")
        self._prober = asyncio.create_task(self._probe_until_accepted(), name="voicelog-auth-probe")

    async def wait_open(self) -> None:
        """Return once delivery may proceed."""
        await self._open.wait()

    async def _probe_until_accepted(self) -> None:
        while True:
            await asyncio.sleep(self._interval)
            result = await self._probe()
            if result.outcome is Outcome.DELIVERED:
                log.warning("manager_accepts_secret_delivery_resumed")
                self.last_reason = None
                self.refused.clear()
                self._open.set()
                return

    async def aclose(self) -> None:
        """Stop probing."""
        if self._prober is not None:
            self._prober.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._prober
