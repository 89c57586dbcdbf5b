"""The per-session face of the spool: turns go in, durable before return, never the network.

Delivery belongs to the host's single shipper; this service only persists, so an agent's
event loop never waits on the Manager. When the disk refuses a write the turn is held in a
bounded in-memory backlog and retried, so the voice session keeps going.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

import structlog

from services.backup import BackupWriter
from services.clock import ReportClock, wall_ms
from services.config import ChatHistorySettings
from services.identity import DeviceIdentity
from services.models import ChatType, Turn, TurnStatus
from services.ownership import process_owner
from services.spool import Spool, SpoolError
from services.text import clean_transcript

log = structlog.get_logger("voicelog.capture")
MAX_BACKLOG = 10_000


@dataclass
class CaptureStats:
    """What one session's capture did; counters for metrics and the simulate summary."""

    stored: int = 0
    skipped_empty: int = 0
    held_in_memory: int = 0
    lost: int = 0


class ChatHistoryService:
    """Capture one device session's turns into the spool and its JSON backup."""

    def __init__(self, spool: Spool, identity: DeviceIdentity, settings: ChatHistorySettings, *,
                 backups: BackupWriter | None = None, now: Callable[[], int] = wall_ms,
                 on_flush: Callable[[str], None] | None = None) -> None:
        self.spool = spool
        self.identity = identity
        self.settings = settings
        self.backups = backups
        self.stats = CaptureStats()
        self._now = now
        self._on_flush = on_flush
        self._backlog: deque[tuple[Callable[[], None], bool]] = deque()
        self._periodic: asyncio.Task[None] | None = None
        self._dirty = False
        self._ended = False
        self._log = log.bind(session_id=identity.session_id)
        self._started_ms = now()
        last_seq, last_report = spool.open_session(
            identity.session_id, mac=identity.mac, mac_valid=identity.mac_valid,
            mac_source=identity.mac_source, started_ms=self._started_ms, owner=process_owner())
        self._next_seq = last_seq + 1
        self._clock = ReportClock(last_report, now)

    @property
    def session_id(self) -> str:
        """The session's id (the LiveKit room name)."""
        return self.identity.session_id

    def add_message(self, chat_type: ChatType | int, content: object, timestamp: float | None = None,
                    *, interrupted: bool = False) -> Turn | None:
        """Store a finished turn durably; None when it was empty (counted, not stored)."""
        return self._new_turn(chat_type, content, timestamp, interrupted, TurnStatus.PENDING)

    def open_turn(self, chat_type: ChatType | int, content: object = "",
                  timestamp: float | None = None) -> Turn:
        """Store a turn still being captured; its place in the conversation is fixed now."""
        turn = self._new_turn(chat_type, content, timestamp, False, TurnStatus.OPEN, allow_empty=True)
        assert turn is not None
        return turn

    def update_turn(self, turn: Turn, content: object, *, interrupted: bool = False,
                    seal: bool = False) -> None:
        """Replace an open turn's text as more arrives; ``seal`` hands it to delivery."""
        text = clean_transcript(content)
        if seal and not text:
            self._persist(lambda: self.spool.skip_open_turn(turn.session_id, turn.seq,
                                                            now_ms=self._now()))
            self.stats.skipped_empty += 1
            return
        self._persist(lambda: self._update(turn, text, interrupted, seal))

    def _update(self, turn: Turn, text: str, interrupted: bool, seal: bool) -> None:
        if not self.spool.update_open_turn(turn.session_id, turn.seq, content=text,
                                           interrupted=interrupted, seal=seal, now_ms=self._now()):
            self._log.warning("turn_not_open", seq=turn.seq)

    def _new_turn(self, chat_type: ChatType | int, content: object, timestamp: float | None,
                  interrupted: bool, status: TurnStatus, allow_empty: bool = False) -> Turn | None:
        text = clean_transcript(content)
        if not text and not allow_empty:
            self.stats.skipped_empty += 1
            self._persist(lambda: self.spool.count_skipped(self.session_id))
            self._log.debug("empty_turn_skipped", chat_type=int(chat_type))
            return None
        captured_ms = self._now() if timestamp is None else int(timestamp * 1000)
        turn = Turn(self.session_id, self._next_seq, ChatType(chat_type), text,
                    self._clock.next(captured_ms), captured_ms, interrupted, status)
        self._next_seq += 1
        self._persist(lambda: self.spool.insert_turn(turn), new_turn=True)
        self._log.debug("turn_captured", seq=turn.seq, chat_type=int(turn.chat_type),
                        chars=len(text), status=status.value)
        return turn

    def _persist(self, write: Callable[[], None], new_turn: bool = False) -> None:
        # Writes run strictly in order: a held-back write blocks later ones until it lands.
        self._backlog.append((write, new_turn))
        self._drain_backlog()

    def _drain_backlog(self) -> None:
        while self._backlog:
            try:
                self._backlog[0][0]()
            except (SpoolError, sqlite3.OperationalError, OSError) as exc:
                self._hold(exc)
                return
            _, new_turn = self._backlog.popleft()
            self.stats.stored += new_turn
            self._dirty = True

    def _hold(self, exc: Exception) -> None:
        self.stats.held_in_memory = len(self._backlog)
        if len(self._backlog) > MAX_BACKLOG:
            self._backlog.pop()
            self.stats.lost += 1
            self._log.error("turn_lost_spool_unavailable", error=str(exc), lost=self.stats.lost)
        elif len(self._backlog) == 1:
            self._log.error("spool_write_failed_holding_in_memory", error=str(exc))

    @property
    def unstored(self) -> int:
        """Writes captured but not yet durable (disk full or locked)."""
        return len(self._backlog)

    async def flush_messages(self) -> int:
        """Ask the shipper to deliver this session's pending turns now; returns how many."""
        self._drain_backlog()
        self.spool.request_flush(self.session_id)
        if self._on_flush is not None:
            self._on_flush(self.session_id)
        return self.spool.status_counts(self.session_id).get(TurnStatus.PENDING.value, 0)

    async def start_periodic_sending(self) -> None:
        """Start the background upkeep: retry held writes and refresh the backup file."""
        if self._periodic is None:
            self._periodic = asyncio.create_task(self._upkeep(), name=f"voicelog-upkeep-{self.session_id}")

    async def _upkeep(self) -> None:
        interval = min(self.settings.send_interval, 5.0)
        while True:
            await asyncio.sleep(interval)
            self._drain_backlog()
            self.write_backup()

    def write_backup(self) -> None:
        """Rewrite the JSON backup if anything changed since the last write."""
        if self.backups is None or not self._dirty:
            return
        try:
            self.backups.write(self.spool, self.session_id, self._now())
            self._dirty = False
        except (OSError, sqlite3.Error) as exc:
            self._log.error("backup_write_failed", error=str(exc))

    async def cleanup(self, reason: str = "session_end") -> None:
        """End the session: seal open turns, stop upkeep, write the final backup (idempotent)."""
        if self._ended:
            return
        self._ended = True
        if self._periodic is not None:
            self._periodic.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._periodic
            self._periodic = None
        self._persist(lambda: self.spool.end_session(self.session_id, ended_ms=self._now(), reason=reason))
        if self._backlog:
            self._log.error("session_ended_with_unstored_turns", unstored=len(self._backlog))
        self._dirty = True
        self.write_backup()
        if self._on_flush is not None:
            self._on_flush(self.session_id)
        self._log.info("session_captured", stored=self.stats.stored,
                       skipped_empty=self.stats.skipped_empty, lost=self.stats.lost)
