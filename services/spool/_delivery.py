"""The shipper's side of the spool: which turns wait for delivery, and what each attempt did.

``Spool`` inherits these methods; they use its connection, write transaction and clock. The
capture side never calls them, and nothing here knows about HTTP.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass

from voicelog.services.domain._models import Turn, TurnStatus
from voicelog.services.spool._schema import TURN_FIELDS, turn_record

_CLOCK_SLACK_MS = 1000  # how far "in the future" a time may be before it means a clock jump


@dataclass(frozen=True)
class Backlog:
    """A session with turns waiting for delivery, as the shipper sees it."""

    session_id: str
    mac: str
    mac_valid: bool
    ended: bool
    flush_requested: bool
    waiting: int
    oldest_captured_ms: int
    next_attempt_ms: int
    parked: int


class SpoolDelivery:
    """Delivery-state queries and updates for the shipper, mixed into ``Spool``."""

    # Provided by Spool.
    _conn: sqlite3.Connection
    _now: Callable[[], int]
    _write: Callable[[], AbstractContextManager[sqlite3.Connection]]

    def backlog(self) -> list[Backlog]:
        """One summary per session that has turns waiting for delivery.

        A time recorded in the future means the wall clock jumped back since; how long ago it
        really was is unknown, so such a retry time or capture time counts as already passed:
        one early retry instead of waiting out the jump.
        """
        rows = self._conn.execute(
            "SELECT t.session_id, s.mac, s.mac_valid, s.ended_ms IS NOT NULL, s.flush_requested,"
            " COUNT(*), MIN(CASE WHEN t.captured_ms > :future THEN 0 ELSE t.captured_ms END),"
            " MIN(CASE WHEN t.updated_ms > :future THEN 0 ELSE t.next_attempt_ms END),"
            " SUM(t.status='parked') FROM turns t JOIN sessions s ON s.session_id=t.session_id"
            " WHERE t.status IN ('pending','parked') GROUP BY t.session_id",
            {"future": self._now() + _CLOCK_SLACK_MS}).fetchall()
        return [Backlog(r[0], r[1], bool(r[2]), bool(r[3]), bool(r[4]), r[5], r[6], r[7], r[8])
                for r in rows]

    def deliverable(self, session_id: str) -> list[Turn]:
        """Waiting turns in order, up to (not past) the first turn still being captured."""
        rows = self._conn.execute(
            f"SELECT {TURN_FIELDS} FROM turns WHERE session_id=? AND status IN ('pending','parked')"
            " AND seq < COALESCE((SELECT MIN(seq) FROM turns WHERE session_id=? AND status='open'),"
            " 9223372036854775807) ORDER BY seq", (session_id, session_id)).fetchall()
        return [turn_record(row) for row in rows]

    def parts_sent(self, session_id: str, seq: int) -> int:
        """How many parts of a split turn the Manager already accepted."""
        row = self._conn.execute("SELECT parts_sent FROM turns WHERE session_id=? AND seq=?",
                                 (session_id, seq)).fetchone()
        return int(row[0]) if row else 0

    def fix_wire_time(self, session_id: str, seq: int, wire_time: int, last_wire_time: int) -> None:
        """Pin the report time a turn is sent with, so every retry sends the identical record."""
        with self._write() as conn:
            conn.execute("UPDATE turns SET wire_time=? WHERE session_id=? AND seq=?",
                         (wire_time, session_id, seq))
            conn.execute("UPDATE sessions SET last_wire_time=? WHERE session_id=?",
                         (last_wire_time, session_id))

    def record_parts_sent(self, session_id: str, seq: int, parts_sent: int) -> None:
        """Remember progress through a split turn."""
        self._conn.execute("UPDATE turns SET parts_sent=? WHERE session_id=? AND seq=?",
                           (parts_sent, session_id, seq))

    def mark_delivered(self, session_id: str, seqs: Iterable[int], now_ms: int) -> None:
        """Record that the Manager accepted these turns."""
        with self._write() as conn:
            conn.executemany(
                "UPDATE turns SET status='delivered', delivered_ms=?, attempts=attempts+1,"
                " last_error=NULL, updated_ms=? WHERE session_id=? AND seq=?",
                [(now_ms, now_ms, session_id, seq) for seq in seqs])

    def mark_attempt_failed(self, session_id: str, seqs: Iterable[int], *, status: TurnStatus,
                            error: str, next_attempt_ms: int, now_ms: int) -> None:
        """Record a failed attempt: still pending (retry), parked or dead-lettered, with why."""
        with self._write() as conn:
            conn.executemany(
                "UPDATE turns SET status=?, attempts=attempts+1, last_error=?, next_attempt_ms=?,"
                " updated_ms=? WHERE session_id=? AND seq=?",
                [(status.value, error[:1000], next_attempt_ms, now_ms, session_id, seq) for seq in seqs])

    def clear_flush_request(self, session_id: str) -> None:
        """The requested flush has been served."""
        self._conn.execute("UPDATE sessions SET flush_requested=0 WHERE session_id=?", (session_id,))

    def set_agent_id(self, session_id: str, agent_id: str) -> None:
        """Remember which Manager agent the device is bound to."""
        self._conn.execute("UPDATE sessions SET agent_id=? WHERE session_id=?", (agent_id, session_id))

    def requeue(self, session_id: str, seqs: Iterable[int], now_ms: int) -> int:
        """Make parked or dead-lettered turns pending again (replay); returns how many."""
        with self._write() as conn:
            return sum(conn.execute(
                "UPDATE turns SET status='pending', next_attempt_ms=0, updated_ms=? WHERE"
                " session_id=? AND seq=? AND status IN ('parked','dead_letter')",
                (now_ms, session_id, seq)).rowcount for seq in seqs)

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """A write transaction for the shipper's multi-row state changes."""
        with self._write() as conn:
            yield conn
