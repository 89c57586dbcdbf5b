"""Pause all delivery while the Manager cannot take any turn, and probe until it can.

Two answers say nothing about the turn sent and everything about the box's setup: the secret is
refused (a 401), or the endpoint is not the Manager's (a redirect to a login page, 404/405 from a
wrong context path or a redeploy, a proxy refusing). Retrying each session on its own would
hammer a Manager that cannot answer and fill the log; instead one gate closes, one clear line
names the URL and what was answered, every session waits in order, and a probe (a blank report
the Manager cannot store) reopens the gate once the Manager answers as itself again.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable

import structlog

from voicelog.services.shipping.manager import DeliveryResult, Outcome

log = structlog.get_logger("voicelog.shipper")
# What each kind of closing means for the operator, and the log event that says it.
_CLOSED = {
    Outcome.UNAUTHORIZED: ("manager_rejected_secret_delivery_paused",
                           "check manager_api.secret / MANAGER_API_SECRET; nothing is dropped"),
    Outcome.MISCONFIGURED: ("manager_endpoint_not_answering_delivery_paused",
                            "check manager_api.url (context path) or wait out a Manager redeploy; "
                            "nothing is dropped, turns keep their order"),
}

_RESUMED = {Outcome.UNAUTHORIZED: "manager_accepts_secret_delivery_resumed",
            Outcome.MISCONFIGURED: "manager_endpoint_answers_delivery_resumed"}


class DeliveryGate:
    """Open while the Manager takes reports; closed (and probing) after a secret or endpoint failure."""

    def __init__(self, probe: Callable[[], Awaitable[DeliveryResult]], interval: float, *,
                 url: str = "") -> None:
        self._probe = probe
        self._interval = interval
        self._url = url
        self._open = asyncio.Event()
        self._open.set()
        self._prober: asyncio.Task[None] | None = None
        self.last_reason: str | None = None
        self.closed_by: Outcome | None = None  # UNAUTHORIZED or MISCONFIGURED while closed
        # Set while closed for that cause: bounded runs (ship --once, a drain) stop on them.
        self.refused = asyncio.Event()  # the secret is refused
        self.misdirected = asyncio.Event()  # the endpoint does not answer as the Manager

    @property
    def is_open(self) -> bool:
        """True while delivery may proceed."""
        return self._open.is_set()

    def describe(self) -> str:
        """Why delivery is paused, in words for people (empty while open)."""
        if self.is_open:
            return ""
        if self.closed_by is Outcome.UNAUTHORIZED:
            return f"the Manager refused the secret ({self.last_reason})"
        return f"the Manager endpoint {self._url} does not answer as the Manager ({self.last_reason})"

    def close(self, reason: str, outcome: Outcome = Outcome.UNAUTHORIZED) -> None:
        """Stop all delivery: the answer was a 401 (UNAUTHORIZED) or not the Manager's (MISCONFIGURED)."""
        self.last_reason = reason
        was_open, self.closed_by = self._open.is_set(), outcome
        self._mark(outcome)
        if not was_open:
            return
        self._open.clear()
        event, hint = _CLOSED[outcome]
        log.error(event, url=self._url, reason=reason, hint=hint)
        self._prober = asyncio.create_task(self._probe_until_accepted(), name="voicelog-gate-probe")

    async def wait_open(self) -> None:
        """Return once delivery may proceed."""
        await self._open.wait()

    async def _probe_until_accepted(self) -> None:
        while True:
            await asyncio.sleep(self._interval)
            result = await self._probe()
            if result.outcome is Outcome.DELIVERED:
                log.warning(_RESUMED[self.closed_by or Outcome.UNAUTHORIZED], url=self._url)
                self.last_reason, self.closed_by = None, None
                self._mark(None)
                self._open.set()
                return
            if result.outcome in _CLOSED:
                self.last_reason, self.closed_by = result.reason, result.outcome
                self._mark(result.outcome)

    def _mark(self, outcome: Outcome | None) -> None:
        for event, cause in ((self.refused, Outcome.UNAUTHORIZED), (self.misdirected, Outcome.MISCONFIGURED)):
            if outcome is cause:
                event.set()
            else:
                event.clear()

    async def aclose(self) -> None:
        """Stop probing."""
        if self._prober is not None:
            self._prober.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._prober
