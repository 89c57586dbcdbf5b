"""Conversation memory's view of the spool: a device's recent turns, forget cut-offs, the writer's feed.

Built over a ``Spool`` (usually a ``twin`` connection of its own) by the memory package, as the
shipper gets its ``DeliveryState``. Content is returned as stored: sealed when encryption is on.
"""

from __future__ import annotations

from dataclasses import dataclass

from voicelog.services.domain import ChatType, TurnStatus
from voicelog.services.spool import _queries as q
from voicelog.services.spool._spool import Spool
from voicelog.services.spool._values import json_list


@dataclass(frozen=True)
class RecentTurn:
    """A sealed turn with words, as memory reads it."""

    session_id: str
    seq: int
    chat_type: ChatType
    content: str  # as stored: sealed ("enc:v1:...") when encryption is on
    interrupted: bool
    captured_ms: int
    agent_id: str | None


@dataclass(frozen=True)
class FeedRow:
    """One turn of the Redis writer's feed, with its device and that device's forget cut-off."""

    rowid: int
    turn: RecentTurn
    status: TurnStatus
    updated_ms: int  # when it was sealed, for a sealed turn that memory has not seen change since
    mac: str
    mac_valid: bool
    cutoff_ms: int  # -1: never forgotten

    @property
    def open(self) -> bool:
        """Still being captured: its words may change, so it is not remembered yet."""
        return self.status is TurnStatus.OPEN

    @property
    def rememberable(self) -> bool:
        """Sealed, with words, of a routable device, and after the device's forget cut-off."""
        return (self.status not in (TurnStatus.OPEN, TurnStatus.SKIPPED) and bool(self.turn.content)
                and self.mac_valid and self.turn.captured_ms > self.cutoff_ms)


@dataclass(frozen=True)
class PreloadCount:
    """How many session starts had one memory outcome, and the turns they were given."""

    outcome: str
    store: str
    fell_back: bool
    sessions: int
    turns: int


class SpoolMemory:
    """Memory's verbs over one spool connection."""

    def __init__(self, spool: Spool) -> None:
        self.spool = spool
        self._connection = spool.connection

    @property
    def _db(self):  # noqa: ANN202 - the sqlite3 connection of this view
        return self._connection.db

    # --- reading and forgetting ----------------------------------------------------------------

    def recent(self, mac: str, *, floor_ms: int, limit: int) -> list[RecentTurn]:
        """A device's newest remembered turns captured at or after ``floor_ms``, oldest first."""
        rows = self._db.execute(q.MEMORY_RECENT, {"mac": mac, "floor": floor_ms, "limit": limit}).fetchall()
        return [_recent(row) for row in reversed(rows)]

    def cutoff(self, mac: str) -> int | None:
        """The device's forget cut-off (ms), or None if it was never forgotten here."""
        row = self._db.execute(q.MEMORY_CUTOFF, (mac,)).fetchone()
        return int(row[0]) if row else None

    def forget(self, mac: str, cutoff_ms: int, *, synced: bool) -> None:
        """Never preload this device's turns captured at or before ``cutoff_ms`` again."""
        with self._connection.write() as db:
            db.execute(q.MEMORY_FORGET, (mac, cutoff_ms, int(synced)))

    def drop_forget(self, mac: str) -> None:
        """Remove the device's cut-off row (its sessions are erased: nothing is left to hide)."""
        with self._connection.write() as db:
            db.execute(q.MEMORY_FORGET_DELETE, (mac,))

    def unsynced_forgets(self, *, since_ms: int) -> list[tuple[str, int]]:
        """(mac, cut-off) of forgets not yet applied in Redis, newer than ``since_ms``."""
        return [(mac, int(cutoff)) for mac, cutoff in self._db.execute(q.MEMORY_FORGETS_UNSYNCED, (since_ms,))]

    def mark_forget_synced(self, mac: str, cutoff_ms: int) -> None:
        """The forget has been applied in Redis too."""
        with self._connection.write() as db:
            db.execute(q.MEMORY_FORGET_SYNCED, (mac, cutoff_ms))

    # --- what session starts got ---------------------------------------------------------------

    def record_preload(self, session_id: str, *, at_ms: int, outcome: str, store: str,
                       fell_back: bool, turns: int) -> None:
        """Note what a session's memory read gave (one row per session, replaced on a restart)."""
        self._db.execute(q.MEMORY_PRELOAD_RECORD, (session_id, at_ms, outcome, store, int(fell_back), turns))

    def preload_counts(self) -> list[PreloadCount]:
        """Session starts by outcome, store and fallback, with the turns they were given."""
        return [PreloadCount(outcome, store, bool(fell_back), int(n), int(turns))
                for outcome, store, fell_back, n, turns in self._db.execute(q.MEMORY_PRELOAD_COUNTS)]

    # --- the Redis writer's feed -----------------------------------------------------------------

    def meta(self, key: str) -> str | None:
        """One of the writer's saved values (``memory_cursor``, ``memory_epoch``), or None."""
        row = self._db.execute(q.MEMORY_META_GET, (key,)).fetchone()
        return row[0] if row else None

    def save_meta(self, key: str, value: str) -> None:
        """Save one of the writer's values."""
        self.spool.set_meta(key, value)

    def take_floor(self) -> int | None:
        """The lowest rowid left after deletions since the last call (then forgotten), or None."""
        if self._db.execute(q.MEMORY_FLOOR_GET).fetchone() is None:
            return None  # the usual case, answered without taking the write lock
        with self._connection.write() as db:
            row = db.execute(q.MEMORY_FLOOR_GET).fetchone()
            db.execute(q.MEMORY_FLOOR_TAKE)
        return int(row[0]) if row else None

    def last_rowid(self) -> int:
        """The rowid of the newest turn stored (0: none)."""
        return int(self._db.execute(q.MEMORY_LAST_ROWID).fetchone()[0])

    def replaced(self) -> bool:
        """Reconnect if the file was rebuilt by recovery (rowids then mean nothing); True if so."""
        return self.spool.reopen_if_replaced()

    def feed_after(self, rowid: int, limit: int) -> list[FeedRow]:
        """Up to ``limit`` turns stored after ``rowid``, in the order they were stored."""
        return [_feed(row) for row in self._db.execute(q.MEMORY_FEED_AFTER, (rowid, limit))]

    def feed_rows(self, rowids: list[int]) -> list[FeedRow]:
        """These turns as they are now (a turn deleted meanwhile is simply absent)."""
        return [_feed(row) for row in self._db.execute(q.MEMORY_FEED_ROWS, (json_list(rowids),))]


def _recent(row: tuple) -> RecentTurn:
    session_id, seq, chat_type, content, interrupted, captured_ms, agent_id = row
    return RecentTurn(session_id, seq, ChatType(chat_type), content, bool(interrupted), captured_ms, agent_id)


def _feed(row: tuple) -> FeedRow:
    rowid, session_id, seq, chat_type, content, interrupted, captured_ms, status, updated_ms, mac, \
        mac_valid, agent_id, cutoff = row
    turn = RecentTurn(session_id, seq, ChatType(chat_type), content, bool(interrupted), captured_ms, agent_id)
    return FeedRow(rowid, turn, TurnStatus(status), updated_ms, mac, bool(mac_valid), int(cutoff))
