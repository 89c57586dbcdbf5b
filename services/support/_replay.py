"""Re-send chosen turns to the Manager: requeue, then deliver here or follow the daemon.

Exactly one shipper per host delivers. When the lock beside the spool is free, replay takes it
and delivers through the daemon's own SessionSender with a bounded attempt budget; when the
daemon holds it, replay requeues the turns, asks for a flush and follows progress in the spool.
Each turn's status is written back as it is delivered, so a re-run sends only what is left.
Choosing the turns and importing copied backups is ``services.replay_plan``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import structlog

from voicelog.services.backup import BackupWriter
from voicelog.services.config import Durability, Settings
from voicelog.services.domain import ShipperAlreadyRunning, ShipperLock, Turn, TurnStatus, first_of, wall_ms
from voicelog.services.shipping import DeliveryGate, SessionSender, SilentObserver
from voicelog.services.shipping.manager import ManagerApiClient
from voicelog.services.spool import DeliveryState, Spool
from voicelog.services.support._catalog import Catalog
from voicelog.services.support._replay_plan import (
    RESENDABLE,
    PlannedSession,
    ReplayError,
    ReplayRequest,
    import_backup,
    imported_turn,
    plan_replay,
)

# Planning names are re-exported: callers keep importing the whole replay API from here.
__all__ = ["FAILED", "POLL_SECONDS", "RESENDABLE", "PlannedSession", "ProgressTracker", "ReplayError",
           "ReplayObserver", "ReplayRequest", "ReplaySummary", "TurnResult", "assign_mac",
           "import_backup", "imported_turn", "plan_replay", "prepare", "replay", "requeue"]

log = structlog.get_logger("voicelog.replay")
FAILED = (TurnStatus.PARKED, TurnStatus.DEAD_LETTER)
POLL_SECONDS = 0.1


@dataclass(frozen=True)
class TurnResult:
    """Where a replayed turn ended up."""

    session_id: str
    seq: int
    status: TurnStatus
    last_error: str | None


@dataclass
class ReplaySummary:
    """What a replay did; ``ok`` says whether every selected turn is delivered."""

    mode: str  # "dry-run", "nothing" (nothing selected), "here" (delivered here), "daemon" (followed it)
    plans: list[PlannedSession]
    results: dict[tuple[str, int], TurnResult] = field(default_factory=dict)
    imported_turns: int = 0
    stopped: str | None = None  # why it ended before every turn was finished
    seconds: float = 0.0
    rows: int | None = None  # rows the Manager stored (a long turn is several); None: the daemon sent them

    @property
    def total(self) -> int:
        return sum(len(plan.turns) for plan in self.plans)

    def count(self, *statuses: TurnStatus) -> int:
        """Selected turns now in one of ``statuses``."""
        return sum(1 for r in self.results.values() if r.status in statuses)

    @property
    def ok(self) -> bool:
        return self.mode != "dry-run" and self.count(TurnStatus.DELIVERED) == self.total


class ReplayObserver(Protocol):
    """Receives progress: the plan, each turn as it finishes, and notes along the way."""

    def started(self, summary: ReplaySummary) -> None: ...

    def turn_finished(self, result: TurnResult) -> None: ...

    def note(self, text: str) -> None: ...


# --- changing the spool ------------------------------------------------------------------------

def prepare(spool: Spool, plans: list[PlannedSession], backups: BackupWriter, now_ms: int) -> int:
    """Import, set MACs and requeue the selected turns, each session in short transactions."""
    imported = 0
    for plan in plans:
        if plan.backup is not None:
            imported += import_backup(spool, plan.backup, now_ms)
        if plan.set_mac is not None:
            assign_mac(spool, plan.session.session_id, plan.set_mac, now_ms)
        requeue(spool, plan.session.session_id, plan.turns, now_ms)
        backups.write(spool, plan.session.session_id, now_ms)
    return imported


def assign_mac(spool: Spool, session_id: str, mac: str, now_ms: int) -> None:
    """Give a session captured without a valid MAC the device MAC support staff found."""
    spool.assign_mac(session_id, mac, now_ms)


def requeue(spool: Spool, session_id: str, turns: Iterable[Turn], now_ms: int) -> None:
    """Make the selected turns pending and due now; a forced turn keeps its pinned report time."""
    by_status: dict[TurnStatus, list[int]] = {}
    for turn in turns:
        by_status.setdefault(turn.status, []).append(turn.seq)
    DeliveryState(spool).requeue(session_id, by_status.get(TurnStatus.PARKED, []) +
                                 by_status.get(TurnStatus.DEAD_LETTER, []), now_ms)
    # A forced turn is sent whole again (parts_sent 0) with its original wire_time and key.
    spool.resend(session_id, delivered=by_status.get(TurnStatus.DELIVERED, []),
                 pending=by_status.get(TurnStatus.PENDING, []), now_ms=now_ms)


# --- following progress --------------------------------------------------------------------------

class ProgressTracker:
    """Watch the selected turns in the spool and report each one once it is finished."""

    def __init__(self, spool: Spool, plans: list[PlannedSession]) -> None:
        self.spool = spool
        self._waiting = {p.session.session_id: {t.seq for t in p.turns} for p in plans}
        # Attempts as planned, before the requeue: the daemon may try a turn before we look.
        self._baseline = {(t.session_id, t.seq): t.attempts for p in plans for t in p.turns}
        self.results: dict[tuple[str, int], TurnResult] = {}

    def _rows(self) -> dict[tuple[str, int], tuple]:
        """Current status, error and attempts of the turns still waiting (one query per 500 sessions)."""
        rows, ids = {}, list(self._waiting)
        for start in range(0, len(ids), 500):
            for session_id, seq, status, attempts, error in self.spool.turn_states(ids[start:start + 500]):
                if seq in self._waiting[session_id]:
                    rows[(session_id, seq)] = (status, error, attempts)
        return rows

    def poll(self) -> list[TurnResult]:
        """Turns that finished since the last poll: delivered, or failed after a fresh attempt."""
        finished = []
        for key, (status, error, attempts) in self._rows().items():
            if status is TurnStatus.DELIVERED or (status in FAILED and attempts > self._baseline[key]):
                finished.append(TurnResult(key[0], key[1], status, error))
                self._waiting[key[0]].discard(key[1])
        self.results.update({(r.session_id, r.seq): r for r in finished})
        self._waiting = {k: v for k, v in self._waiting.items() if v}
        return finished

    @property
    def done(self) -> bool:
        return not self._waiting

    def final(self) -> dict[tuple[str, int], TurnResult]:
        """Every selected turn's result, unfinished ones with their current status."""
        unfinished = {key: TurnResult(key[0], key[1], row[0], row[1]) for key, row in self._rows().items()}
        return {**unfinished, **self.results}


# --- running a replay -------------------------------------------------------------------------

async def replay(settings: Settings, spool: Spool | None, request: ReplayRequest,
                 observer: ReplayObserver, stop: asyncio.Event | None = None) -> ReplaySummary:
    """Plan, then (unless a dry run) prepare the spool and deliver here or follow the daemon."""
    started = time.monotonic()
    catalog = Catalog(spool, Path(settings.chat_history.backup_dir))
    summary = ReplaySummary("dry-run" if request.dry_run else "nothing", plan_replay(catalog, request))
    if request.dry_run or not summary.total:
        observer.started(summary)
        return summary
    if spool is None:
        raise ReplayError("no spool to replay into")
    lock = _try_lock(spool, request)
    summary.mode = "here" if lock else "daemon"
    history = settings.chat_history
    backups = BackupWriter(history.backup_dir, fsync=history.durability == Durability.POWER)
    stop = stop or asyncio.Event()
    try:
        summary.imported_turns = prepare(spool, summary.plans, backups, wall_ms())
        tracker = ProgressTracker(spool, summary.plans)
        observer.started(summary)
        if lock is not None:
            summary.rows = 0
            summary.stopped = await _deliver_here(settings, spool, summary, request, tracker,
                                                  observer, stop, backups)
        else:
            summary.stopped = await _follow_daemon(spool, summary.plans, request, tracker, observer, stop)
    finally:
        if lock is not None:
            lock.release()
    summary.results = tracker.final()
    summary.seconds = time.monotonic() - started
    return summary


def _try_lock(spool: Spool, request: ReplayRequest) -> ShipperLock | None:
    lock = ShipperLock(spool.path)
    try:
        lock.acquire()
    except ShipperAlreadyRunning as exc:
        if request.own_manager:
            raise ReplayError(f"{exc}. It delivers to its configured Manager only; stop it to replay "
                              "to --manager-url") from None
        return None
    return lock


async def _deliver_here(settings: Settings, spool: Spool, summary: ReplaySummary,
                        request: ReplayRequest, tracker: ProgressTracker, observer: ReplayObserver,
                        stop: asyncio.Event, backups: BackupWriter) -> str | None:
    """Deliver the selected sessions through the daemon's SessionSender, as this host's shipper."""
    client = ManagerApiClient(settings.manager_api)
    gate = DeliveryGate(client.check_secret, settings.shipper.auth_retry_interval,
                        url=settings.manager_api.url)
    sender = SessionSender(DeliveryState(spool), client, settings.manager_api, settings.shipper, gate, SilentObserver(),
                           stop, max_attempts=max(1, request.max_attempts), audio=settings.audio)
    slots = asyncio.Semaphore(settings.shipper.max_concurrent_sessions)

    async def one(plan: PlannedSession) -> None:
        async with slots:
            summary.rows = (summary.rows or 0) + await _round(sender, spool, plan.session.session_id,
                                                              backups, stop)

    work = asyncio.gather(*(one(plan) for plan in summary.plans))
    try:
        return await _watch(tracker, observer, stop, request.timeout, work, gate)
    finally:
        stop.set()
        await work
        await gate.aclose()
        await client.aclose()


async def _round(sender: SessionSender, spool: Spool, session_id: str, backups: BackupWriter,
                 stop: asyncio.Event) -> int:
    """One delivery round of a session, then what the shipper does after a round; rows stored."""
    session = spool.session(session_id)
    if session is None or stop.is_set():
        return 0
    rows = 0
    try:
        rows = (await sender.deliver(session)).rows
    except Exception:  # noqa: BLE001 - one session's bug must not stop the others
        log.exception("replay_round_failed", session_id=session_id)
    if not sender.delivery.deliverable(session_id):
        sender.delivery.clear_flush_request(session_id)
    backups.write(spool, session_id, wall_ms())
    return rows


async def _follow_daemon(spool: Spool, plans: list[PlannedSession], request: ReplayRequest,
                         tracker: ProgressTracker, observer: ReplayObserver,
                         stop: asyncio.Event) -> str | None:
    """Ask the running daemon to deliver the requeued sessions now, and watch it happen."""
    for plan in plans:
        spool.request_flush(plan.session.session_id)
    observer.note("the daemon holds the shipper lock: it delivers; following its progress")
    return await _watch(tracker, observer, stop, request.timeout)


async def _watch(tracker: ProgressTracker, observer: ReplayObserver, stop: asyncio.Event,
                 timeout: float, work: asyncio.Future | None = None,
                 gate: DeliveryGate | None = None) -> str | None:
    """Report finished turns until all are done or the work ends; say why it stopped early."""
    deadline = time.monotonic() + timeout
    reason = None
    while not tracker.done and not (work is not None and work.done()):
        for result in tracker.poll():
            observer.turn_finished(result)
        if gate is not None and not gate.is_open:
            reason = gate.describe()
        elif stop.is_set():
            reason = "interrupted"
        elif time.monotonic() > deadline:
            reason = f"timed out after {timeout:g}s"
        if reason:
            stop.set()
            break
        await first_of(stop, *([work] if work is not None else []), timeout=POLL_SECONDS)
    if work is not None:
        await asyncio.wait([work])
    for result in tracker.poll():
        observer.turn_finished(result)
    if reason is None and gate is not None and not gate.is_open:
        reason = gate.describe()  # the sender reported the pause and ended the round itself
    return reason
