"""The host's single shipper: decide which sessions are due and run their delivery rounds.

Job processes only capture; this loop reads the spool, so delivery survives any job dying.
It wakes on ``wake()`` (same process) or every ``poll_interval`` (other processes' turns).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

import structlog

from voicelog.services.backup import BackupWriter
from voicelog.services.config import ApiMode, Settings
from voicelog.services.domain import TurnStatus, first_of, owner_alive, wall_ms
from voicelog.services.shipping._gate import DeliveryGate
from voicelog.services.shipping._observer import DeliveryObserver, SilentObserver
from voicelog.services.shipping._session_sender import RoundResult, SessionSender
from voicelog.services.shipping.manager import ManagerApiClient
from voicelog.services.spool import Backlog, DeliveryState, pending_repairs

log = structlog.get_logger("voicelog.shipper")
# A session's backup is rewritten at most this often while its turns keep flowing; it is always
# rewritten once the session has nothing left to send, and at shutdown, so it ends complete.
BACKUP_EVERY_MS = 5000


def is_due(backlog: Backlog, now_ms: int, *, batch_size: int, send_interval_ms: int,
           session_mode: bool, flush_all: bool = False) -> bool:
    """Whether a session's waiting turns should be sent now (the batch rules of the plan)."""
    if flush_all:
        return True
    if backlog.next_attempt_ms > now_ms:
        return False  # backing off, or parked
    if backlog.ended or backlog.flush_requested:
        return True
    if session_mode:
        return False  # the session endpoint takes a whole session, once
    return backlog.waiting >= batch_size or now_ms - backlog.oldest_captured_ms >= send_interval_ms


class StopReason(StrEnum):
    """Why a bounded run (``ship --once``, a drain) stopped before everything was tried."""

    SECRET_REFUSED = "secret_refused"  # the Manager answered 401: nothing can be delivered
    MISDIRECTED = "misdirected"  # the endpoint does not answer as the Manager (a 3xx, a 404/405)
    UNREACHABLE = "unreachable"  # a session spent its attempts without any answer from the Manager
    DEADLINE = "deadline"  # the time given ran out


@dataclass
class ShipSummary:
    """Totals of a shipping run, for ``ship --once``, ``simulate`` and logs.

    ``delivered`` counts turns and ``rows`` the rows the Manager stored for them: a turn longer
    than ``max_content_chars`` arrives as several rows.
    """

    delivered: int = 0
    rows: int = 0
    parked: int = 0
    dead_lettered: int = 0
    held: int = 0
    remaining: dict[str, int] = field(default_factory=dict)
    memory_flushed: bool | None = None  # ship --once: every sealed turn reached Redis (None: no Redis)
    repaired: dict[str, int] = field(default_factory=dict)  # orphan turns given a session row, by session
    repairs_waiting: int = 0  # damaged spools set aside until the disk has room to merge them back
    stopped: StopReason | None = None
    stopped_because: str = ""  # the Manager's answer (or silence) behind ``stopped``
    by_session: dict[str, tuple[int, int]] = field(default_factory=dict)  # turns, rows delivered

    def add(self, session_id: str, result: RoundResult) -> None:
        self.delivered += result.delivered
        self.rows += result.rows
        self.parked += result.parked
        self.dead_lettered += result.dead_lettered
        self.held += result.held
        if result.delivered or result.rows:
            turns, rows = self.by_session.get(session_id, (0, 0))
            self.by_session[session_id] = (turns + result.delivered, rows + result.rows)

    def stop(self, reason: StopReason, because: str) -> None:
        """Record the first reason the run stopped early (later ones follow from it)."""
        if self.stopped is None:
            self.stopped, self.stopped_because = reason, because


class Shipper:
    """Own delivery for one spool: schedule due sessions, bounded concurrency, clean drain."""

    def __init__(self, delivery: DeliveryState, client: ManagerApiClient, settings: Settings, *,
                 backups: BackupWriter | None = None, observer: DeliveryObserver | None = None,
                 max_attempts: int | None = None, now: Callable[[], int] = wall_ms) -> None:
        self.delivery, self.client, self.settings = delivery, client, settings
        self.spool = delivery.spool  # sessions to seal, counts, and backups read from here
        self.backups = backups
        self.observer = observer or SilentObserver()
        self.stopping = asyncio.Event()
        self.gate = DeliveryGate(client.check_secret, settings.shipper.auth_retry_interval,
                                 url=settings.manager_api.url)
        self.sender = SessionSender(delivery, client, settings.manager_api, settings.shipper, self.gate,
                                    self.observer, self.stopping, max_attempts=max_attempts, now=now,
                                    audio=settings.audio)
        self.summary = ShipSummary()
        self._now = now
        self._wakeup = asyncio.Event()
        self._active: dict[str, asyncio.Task[RoundResult]] = {}
        self._last_reap_ms = 0
        self._failed_rounds: dict[str, tuple[int, int]] = {}  # session -> (failures, retry at ms)
        self._gave_up = asyncio.Event()  # a bounded round found the Manager silent: stop the run
        self._silence = ""
        self.max_attempts = max_attempts
        self.last_delivery_ms: int | None = None
        self._backup_written: dict[str, int] = {}  # session -> when its backup was last rewritten (ms)
        self._backup_due: set[str] = set()  # sessions whose backup lags their delivery state

    def wake(self, session_id: str | None = None) -> None:
        """Look at the spool now instead of at the next poll (same-process capture calls this)."""
        self._wakeup.set()

    async def run(self, stop: asyncio.Event) -> ShipSummary:
        """Deliver until ``stop`` is set, then drain within the configured timeout."""
        log.info("shipper_started", api_mode=self.settings.manager_api.api_mode)
        while not stop.is_set():
            self._schedule(flush_all=False)
            self._write_due_backups()
            await self._idle(stop)
        await self.drain(self.settings.shipper.drain_timeout)
        return self.summary

    async def drain(self, timeout: float) -> None:
        """Try to deliver everything waiting within ``timeout``; the rest stays in the spool.

        A refused secret ends the drain at once: nothing can be delivered until it is fixed.
        """
        await self._bounded(self._deliver_everything(), timeout)
        if self.summary.stopped is StopReason.DEADLINE:
            log.warning("drain_timeout_rest_stays_spooled", timeout=timeout)
        elif self.summary.stopped is StopReason.SECRET_REFUSED:
            log.warning("drain_ended_secret_refused_rest_stays_spooled", reason=self.summary.stopped_because)
        await self.aclose()

    async def run_once(self, deadline: float | None = None) -> ShipSummary:
        """One pass over everything deliverable now (``ship --once``), then report what is left.

        Turns an older voicelog left without a session row are given one first, so they go too.
        It ends early, leaving the rest pending, when the Manager refuses our secret or its
        endpoint does not answer as the Manager, when a session spent its attempts without any
        answer (the Manager is down or too slow), or at ``deadline`` seconds; requests in flight
        then get at most their own timeout.
        """
        self.summary.repaired = {**self.spool.adopted, **self.spool.adopt_orphans(self._now())}
        await self._bounded(self._deliver_everything(), deadline, stop_when_silent=True)
        await self.aclose()
        self.summary.remaining = {k: v for k, v in self.spool.status_counts().items()
                                  if k in (TurnStatus.PENDING, TurnStatus.PARKED,
                                           TurnStatus.DEAD_LETTER, TurnStatus.OPEN)}
        self.summary.repairs_waiting = len(pending_repairs(self.spool.backup_dir))
        return self.summary

    async def _bounded(self, work: Coroutine[Any, Any, None], seconds: float | None, *,
                       stop_when_silent: bool = False) -> None:
        """Run ``work`` until done, the secret is refused, the Manager is silent (optional), or time is up."""
        task = asyncio.ensure_future(work)
        stops = [self.gate.refused, self.gate.misdirected] + ([self._gave_up] if stop_when_silent else [])
        try:
            finished = await first_of(task, *stops, timeout=seconds)
            if self.gate.refused.is_set():
                self.summary.stop(StopReason.SECRET_REFUSED, self.gate.last_reason or "secret refused")
            elif self.gate.misdirected.is_set():
                # The stop sentence names the endpoint's fault; the reason adds the URL and the answer.
                self.summary.stop(StopReason.MISDIRECTED,
                                  f"{self.settings.manager_api.url}: {self.gate.last_reason or 'no Manager answer'}")
            elif self._gave_up.is_set() and stop_when_silent:
                self.summary.stop(StopReason.UNREACHABLE, self._silence)
            elif not finished:
                self.summary.stop(StopReason.DEADLINE, f"{seconds:g} s passed")
        finally:
            if not task.done():
                self.stopping.set()  # senders stop retrying; rounds in flight end by themselves
                task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _deliver_everything(self) -> None:
        tried: set[str] = set()
        waiting: list[Backlog] = []
        while True:
            waiting = [b for b in waiting if b.session_id not in tried]
            if not waiting:
                # Re-read the backlog only when this pass's list is used up: the query scans
                # every waiting turn, so running it per finished round dominated big drains.
                self._reap_abandoned(force=True)
                waiting = [b for b in self.delivery.backlog() if b.session_id not in tried]
                if not waiting and not self._active:
                    return
            self._schedule(flush_all=True, only=waiting, tried=tried)
            if not self._active:
                tried.update(b.session_id for b in waiting)  # none could start now: not this run
                continue
            await asyncio.wait(list(self._active.values()), return_when=asyncio.FIRST_COMPLETED)

    def _schedule(self, *, flush_all: bool, only: list[Backlog] | None = None,
                  tried: set[str] | None = None) -> None:
        now = self._now()
        self._reap_abandoned()
        limit = self.settings.shipper.max_concurrent_sessions
        if len(self._active) >= limit:
            return  # no free slot: skip the backlog query, which scans every waiting turn
        history = self.settings.chat_history
        for backlog in self.delivery.backlog() if only is None else only:
            if len(self._active) >= limit:
                return
            if backlog.session_id in self._active or self._cooling_down(backlog.session_id, now):
                continue
            if not is_due(backlog, now, batch_size=history.batch_size,
                          send_interval_ms=int(history.send_interval * 1000),
                          session_mode=self.settings.manager_api.api_mode == ApiMode.SESSION,
                          flush_all=flush_all):
                continue
            if tried is not None:
                tried.add(backlog.session_id)
            self._active[backlog.session_id] = asyncio.create_task(
                self._round(backlog.session_id), name=f"voicelog-ship-{backlog.session_id}")

    async def _round(self, session_id: str) -> RoundResult:
        result = RoundResult()
        # Every log line of this round (sender, client) carries the session id.
        structlog.contextvars.bind_contextvars(session_id=session_id)
        try:
            session = self.spool.session(session_id)
            if session is not None:
                result = await self.sender.deliver(session)
                self._after_round(session_id, result)
            self._failed_rounds.pop(session_id, None)
        except Exception:  # noqa: BLE001 - one session's bug must not stop delivery for all
            delay = self._back_off_round(session_id)
            log.exception("delivery_round_failed", session_id=session_id, retry_in=delay)
        finally:
            self._active.pop(session_id, None)
            self._wakeup.set()
        return result

    def _after_round(self, session_id: str, result: RoundResult) -> None:
        self.summary.add(session_id, result)
        if result.no_answer and self.max_attempts is not None and not self.stopping.is_set():
            # Attempts spent with no answer at all: every other session would fare the same.
            self._silence = result.no_answer
            self._gave_up.set()
        if result.delivered:
            self.last_delivery_ms = self._now()
        finished = not self.delivery.has_deliverable(session_id)
        if finished:
            self.delivery.clear_flush_request(session_id)
        self._backup(session_id, force=finished)

    def _backup(self, session_id: str, *, force: bool) -> None:
        """Rewrite a session's backup, at most every BACKUP_EVERY_MS unless ``force``.

        The rewrite is O(turns of the session), so a long session delivered a few turns per
        round would otherwise be rewritten whole every round.
        """
        if self.backups is None:
            return
        now = self._now()
        if not force and now - self._backup_written.get(session_id, 0) < BACKUP_EVERY_MS:
            self._backup_due.add(session_id)
            return
        self._backup_due.discard(session_id)
        self._backup_written[session_id] = now
        self.backups.write(self.spool, session_id, now)

    def _write_due_backups(self, *, everything: bool = False) -> None:
        """Rewrite the backups that lag behind, once their interval has passed (all of them: ``everything``)."""
        for session_id in list(self._backup_due):
            if session_id not in self._active:
                self._backup(session_id, force=everything)
        if everything:
            self._backup_written.clear()
        elif len(self._backup_written) > 1000:  # a long-running daemon forgets finished sessions
            cutoff = self._now() - BACKUP_EVERY_MS
            self._backup_written = {k: v for k, v in self._backup_written.items() if v >= cutoff}

    def _back_off_round(self, session_id: str) -> float:
        # A round that raised (e.g. disk full while writing status) waits before it runs again,
        # doubling like delivery retries, instead of spinning.
        failures = self._failed_rounds.get(session_id, (0, 0))[0] + 1
        shipping = self.settings.shipper
        delay = min(shipping.retry_max, shipping.retry_initial * 2 ** (failures - 1))
        self._failed_rounds[session_id] = (failures, self._now() + int(delay * 1000))
        return delay

    def _cooling_down(self, session_id: str, now_ms: int) -> bool:
        failed = self._failed_rounds.get(session_id)
        return failed is not None and failed[1] > now_ms

    async def _idle(self, stop: asyncio.Event) -> None:
        await first_of(self._wakeup, stop, timeout=self.settings.shipper.poll_interval)
        self._wakeup.clear()

    def _reap_abandoned(self, force: bool = False) -> None:
        """Seal sessions whose capturing process died, so their turns become deliverable."""
        now = self._now()
        if not force and now - self._last_reap_ms < self.settings.shipper.reap_interval * 1000:
            return
        self._last_reap_ms = now
        for session in self.spool.sessions(live=True):
            if owner_alive(session.owner):
                continue
            sealed = self.spool.end_session(session.session_id, ended_ms=now, reason="abandoned")
            log.warning("abandoned_session_sealed", session_id=session.session_id, sealed=sealed)
            if self.backups is not None:
                self.backups.write(self.spool, session.session_id, now)

    async def aclose(self) -> None:
        """Stop retries and cancel rounds still running; their turns stay pending in the spool."""
        self.stopping.set()
        if self._active:
            await asyncio.wait(list(self._active.values()), timeout=5)
        for task in list(self._active.values()):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self.sender.flush_delivered()  # rounds flush their own; this covers one that could not
        self._write_due_backups(everything=True)
        await self.gate.aclose()
