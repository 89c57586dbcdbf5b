"""The per-session face of the spool: turns go in, durable before return, never the network.

Delivery belongs to the host's single shipper; this service only persists, so an agent's
event loop never waits on the Manager. When the disk refuses a write (full, spool cap,
locked, damaged) the write is held in a bounded in-memory backlog, in order, and retried on
the next write and by a timer; the voice session keeps going. What the backlog cannot hold is
counted as lost, logged, and recorded in the spool once it takes writes again.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import Callable

import structlog

from voicelog.services.backup import BackupWriter
from voicelog.services.capture._stats import CaptureStats, HeldWrite
from voicelog.services.config import ChatHistorySettings
from voicelog.services.domain import (
    ChatType,
    DeviceIdentity,
    ReportClock,
    Turn,
    TurnMeta,
    TurnStatus,
    clean_transcript,
    debug_enabled,
    is_cut,
    process_owner,
    wall_ms,
)
from voicelog.services.spool import (
    PERMANENT_ERRORS,
    STORAGE_ERRORS,
    TRANSIENT_ERRORS,
    SessionErased,
    Spool,
    is_disk_full,
    may_be_replaced,
)

LOGGER = "voicelog.capture"
log = structlog.get_logger(LOGGER)
MAX_BACKLOG = 10_000
RETRY_INTERVAL = 1.0  # seconds between retries of held writes while the disk refuses them
UNSTORED_GRACE = 5.0  # seconds a session end waits for held writes before counting them lost
_TRANSIENT, _PERMANENT = TRANSIENT_ERRORS, PERMANENT_ERRORS  # hold and retry / drop


class ChatHistoryService:
    """Capture one device session's turns into the spool and its JSON backup."""

    def __init__(self, spool: Spool, identity: DeviceIdentity, settings: ChatHistorySettings, *,
                 backups: BackupWriter | None = None, now: Callable[[], int] = wall_ms,
                 on_flush: Callable[[str], None] | None = None, max_backlog: int = MAX_BACKLOG,
                 retry_interval: float = RETRY_INTERVAL, unstored_grace: float = UNSTORED_GRACE) -> None:
        self.spool = spool
        self.identity = identity
        self.settings = settings
        self.backups = backups
        self.stats = CaptureStats()
        self._now = now
        self._on_flush = on_flush
        self._max_backlog, self._retry_interval = max_backlog, retry_interval
        self._unstored_grace = unstored_grace
        self._backlog: deque[HeldWrite] = deque()
        self._retry: asyncio.TimerHandle | None = None
        self._unrecorded_losses = 0
        self._cut_seqs: set[int] = set()
        self._disk_full = False
        self._erased = False  # erased on request: every later write is refused and counted
        self._register: Callable[[], object] = lambda: None
        self._periodic: asyncio.Task[None] | None = None
        self._dirty = False
        self._ended = False
        self._log = log.bind(session_id=identity.session_id)
        self._started_ms = now()
        last_seq, last_report = self._open_session()
        self._next_seq = last_seq + 1
        self._clock = ReportClock(last_report, now)

    def _open_session(self) -> tuple[int, int]:
        # A full disk must not stop a session from starting: register it later, from memory.
        owner = process_owner()
        if self.identity.renamed:
            self._log.warning("room_name_rewritten_for_session_id", why=self.identity.renamed)

        def register() -> tuple[int, int]:  # replayed as a held write if the disk refuses it
            return self.spool.open_session(
                self.session_id, mac=self.identity.mac, mac_valid=self.identity.mac_valid,
                mac_source=self.identity.mac_source, started_ms=self._started_ms, owner=owner,
                renamed=self.identity.renamed)

        self._register = register
        try:
            return register()
        except SessionErased:
            self._stop_erased([])
            return 0, 0
        except _TRANSIENT as exc:
            self._persist(register, error=exc)
        try:
            return self.spool.session_position(self.session_id)
        except _TRANSIENT:
            return 0, 0  # unreadable too: a room name is unique, so this is a new session

    @property
    def session_id(self) -> str:
        """The session's id (the LiveKit room name)."""
        return self.identity.session_id

    def add_message(self, chat_type: ChatType | int, content: object, timestamp: float | None = None,
                    *, interrupted: bool = False, meta: TurnMeta | None = None) -> Turn | None:
        """Store a finished turn durably; None when it was empty (counted, not stored)."""
        return self._new_turn(chat_type, content, timestamp, interrupted, TurnStatus.PENDING, meta=meta)

    def open_turn(self, chat_type: ChatType | int, content: object = "",
                  timestamp: float | None = None) -> Turn:
        """Store a turn still being captured; its place in the conversation is fixed now."""
        turn = self._new_turn(chat_type, content, timestamp, False, TurnStatus.OPEN, allow_empty=True)
        assert turn is not None
        return turn

    def update_turn(self, turn: Turn, content: object, *, interrupted: bool = False,
                    seal: bool = False, meta: TurnMeta | None = None) -> None:
        """Replace an open turn's text as more arrives; ``seal`` hands it to delivery.

        ``meta`` (LiveKit's measurements, the STT language) is kept with the turn when given.
        """
        text = clean_transcript(content)
        if seal and not text:
            self._persist(lambda: self.spool.skip_open_turn(turn.session_id, turn.seq,
                                                            now_ms=self._now()))
            self.stats.skipped_empty += 1
            return
        self._note_cut(turn.seq, text)
        self._persist(lambda: self._update(turn, text, interrupted, seal, meta))

    def _note_cut(self, seq: int, text: str) -> None:
        # Counted once per turn, however often its growing text is cut.
        if is_cut(text) and seq not in self._cut_seqs:
            self._cut_seqs.add(seq)
            self.stats.cut_turns += 1
            self._log.warning("turn_cut_at_cap", seq=seq, chars=len(text))

    def _update(self, turn: Turn, text: str, interrupted: bool, seal: bool, meta: TurnMeta | None) -> None:
        if not self.spool.update_open_turn(turn.session_id, turn.seq, content=text, interrupted=interrupted,
                                           seal=seal, now_ms=self._now(), meta=meta):
            self._log.warning("turn_not_open", seq=turn.seq)

    def _new_turn(self, chat_type: ChatType | int, content: object, timestamp: float | None,
                  interrupted: bool, status: TurnStatus, allow_empty: bool = False,
                  meta: TurnMeta | None = None) -> Turn | None:
        text = clean_transcript(content)
        if not text and not allow_empty:
            self.stats.skipped_empty += 1
            self._persist(lambda: self.spool.count_skipped(self.session_id))
            self._log.debug("empty_turn_skipped", chat_type=int(chat_type))
            return None
        self._note_cut(self._next_seq, text)
        captured_ms = self._now() if timestamp is None else int(timestamp * 1000)
        turn = Turn(self.session_id, self._next_seq, ChatType(chat_type), text,
                    self._clock.next(captured_ms), captured_ms, interrupted, status, meta=meta or None)
        self._next_seq += 1
        self._persist(lambda: self.spool.insert_turn(turn), new_turn=True)
        if debug_enabled(LOGGER):  # on every captured turn: skip building a line nobody keeps
            self._log.debug("turn_captured", seq=turn.seq, chat_type=int(turn.chat_type),
                            chars=len(text), status=status.value)
        return turn

    # --- writing, holding, retrying ---------------------------------------------------------

    def _persist(self, write: Callable[[], object], new_turn: bool = False,
                 error: BaseException | None = None) -> None:
        # Writes run strictly in order: a held-back write blocks later ones until it lands.
        if self._erased:
            self._count_erased(int(new_turn))
            return
        if len(self._backlog) >= self._max_backlog:
            self._drop(HeldWrite(write, new_turn), "backlog_full")
            return
        self._backlog.append(HeldWrite(write, new_turn))
        if error is not None:
            self._held(error)
            return
        self._drain_backlog()

    def _drain_backlog(self) -> None:
        was_held, written = self.stats.storage_error is not None, 0
        while self._backlog:
            if self._disk_full and written % 32 == 0:
                # Checkpoint while freed space is still free, and every few writes: the WAL then
                # restarts from its beginning instead of growing into that space again.
                self.spool.checkpoint()
            written += 1
            write = self._backlog[0]
            try:
                write.apply()
            except SessionErased:
                if self._session_gone_not_erased(write):
                    continue  # re-registered in front of it: try it again
                self._stop_erased(list(self._backlog))
                self._backlog.clear()
                break
            except _PERMANENT as exc:
                self._backlog.popleft()
                self._drop(write, "refused_for_good", exc)
                continue
            except _TRANSIENT as exc:
                self._held(exc)
                return
            except Exception as exc:  # noqa: BLE001 - a write that can never succeed must not block the rest
                self._backlog.popleft()
                self._drop(write, "write_failed", exc)
                continue
            self._backlog.popleft()
            self.stats.stored += write.new_turn
            self._dirty = True
        self.stats.held_in_memory = 0
        if was_held:
            self._recovered()

    def _session_gone_not_erased(self, write: HeldWrite) -> bool:
        """The session row vanished without an erasure (a repair moved the spool aside): register again."""
        try:
            if write.reregistered or self.spool.is_erased(self.session_id):
                return False
        except _TRANSIENT:
            return False
        write.reregistered = True
        self._backlog.appendleft(HeldWrite(self._register))
        return True

    def _stop_erased(self, dropped: list[HeldWrite]) -> None:
        """The session was erased on request: stop writing quietly, count the turns refused."""
        if not self._erased:
            self._erased = True
            self._log.warning("session_erased_capture_stopped",
                              hint="a purge erased this session; its later turns are refused and counted")
        self.stats.held_in_memory = 0
        self._count_erased(sum(w.new_turn for w in dropped))

    def _count_erased(self, turns: int) -> None:
        if not turns:
            return
        self.stats.erased_refused += turns
        with contextlib.suppress(*_TRANSIENT):
            # No session id: the erased session must not be named anywhere again.
            self.spool.record_loss(None, "erased_session_turn", turns, "turns refused after the session was erased")

    def _held(self, exc: BaseException) -> None:
        self.stats.write_failures += 1
        self.stats.held_in_memory = len(self._backlog)
        if self.stats.storage_error is None:
            self._log.error("spool_write_failed_holding_in_memory", error=str(exc)[:300])
        self.stats.storage_error = f"{type(exc).__name__}: {exc}"[:300]
        self._disk_full = is_disk_full(exc)
        if self._disk_full:
            self.spool.checkpoint()  # the WAL may hold the space the next write needs
        elif may_be_replaced(exc):
            with contextlib.suppress(*_TRANSIENT):
                self.spool.reopen_if_replaced()  # another process may have rebuilt a damaged file
        self._schedule_retry()

    def _drop(self, write: HeldWrite, why: str, exc: BaseException | None = None) -> None:
        if write.new_turn:
            self.stats.lost += 1
            self._unrecorded_losses += 1
        else:
            self.stats.dropped_writes += 1
        dropped = self.stats.lost + self.stats.dropped_writes
        if dropped == 1 or dropped % 100 == 0:  # a long outage must not flood the log
            self._log.error("capture_write_dropped", reason=why, error=str(exc)[:300] if exc else None,
                            lost=self.stats.lost, dropped_writes=self.stats.dropped_writes)

    def _recovered(self) -> None:
        self._log.warning("spool_writes_recovered", failures=self.stats.write_failures,
                          lost=self.stats.lost)
        self.stats.storage_error, self._disk_full = None, False
        if self._unrecorded_losses:
            with contextlib.suppress(*_TRANSIENT):
                self.spool.record_loss(self.session_id, "capture_dropped", self._unrecorded_losses,
                                       "writes dropped while the spool refused them")
                self._unrecorded_losses = 0

    def _schedule_retry(self) -> None:
        if self._retry is not None or self._ended and not self._backlog:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return  # no loop (scripts, tests): the next write retries
        self._retry = loop.call_later(self._retry_interval, self._retry_now)

    def _retry_now(self) -> None:
        self._retry = None
        self._drain_backlog()
        if self._dirty and self.stats.storage_error is None:
            self.write_backup()

    def retry_held_writes(self) -> int:
        """Try the held writes again now; returns how many are still waiting."""
        self._drain_backlog()
        return len(self._backlog)

    @property
    def unstored(self) -> int:
        """Writes captured but not yet durable (disk full or locked)."""
        return len(self._backlog)

    # --- the plan's API -------------------------------------------------------------------------

    async def flush_messages(self) -> int:
        """Ask the shipper to deliver this session's pending turns now; returns how many."""
        self._drain_backlog()
        try:
            self.spool.request_flush(self.session_id)
            pending = self.spool.status_counts(self.session_id).get(TurnStatus.PENDING.value, 0)
        except _TRANSIENT as exc:
            self._log.error("flush_request_failed", error=str(exc)[:300])
            pending = 0
        if self._on_flush is not None:
            self._on_flush(self.session_id)
        return pending

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
        except STORAGE_ERRORS as exc:
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
        await self._wait_for_held_writes()
        self._dirty = True
        self.write_backup()
        if self._on_flush is not None:
            self._on_flush(self.session_id)
        self._log.info("session_captured", stored=self.stats.stored,
                       skipped_empty=self.stats.skipped_empty, lost=self.stats.lost)

    async def _wait_for_held_writes(self) -> None:
        # The job process may exit after this: give the disk a short grace, then count the rest.
        deadline = time.monotonic() + self._unstored_grace
        while self._backlog and time.monotonic() < deadline:
            await asyncio.sleep(min(0.1, self._retry_interval))
            self._drain_backlog()
        if self._retry is not None:
            self._retry.cancel()
            self._retry = None
        if self._backlog:
            lost = sum(w.new_turn for w in self._backlog)
            self.stats.lost += lost
            self.stats.dropped_writes += len(self._backlog) - lost
            self._backlog.clear()
            self.stats.held_in_memory = 0
            self._log.error("session_ended_with_unstored_turns", lost=lost, error=self.stats.storage_error)
