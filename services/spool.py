"""The durable spool: one SQLite file per host holding every captured turn until delivered.

Every job process and the shipper open their own connection; SQLite's WAL locking makes
that safe across processes. A turn is durable when its INSERT has committed:
``durability: process`` (synchronous=NORMAL) survives the death of any process,
``durability: power`` (synchronous=FULL) also survives power loss, at the cost of an fsync.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from services.models import ChatType, SessionRecord, Turn, TurnStatus
from services.spool_schema import SCHEMA, SCHEMA_VERSION

_SYNCHRONOUS = {"process": "NORMAL", "power": "FULL"}
_TURN_COLUMNS = ("session_id, seq, chat_type, content, report_ms, captured_ms, interrupted, "
                 "status, attempts, last_error, next_attempt_ms, wire_time, delivered_ms")
_SESSION_COLUMNS = ("session_id, mac, mac_valid, mac_source, started_ms, ended_ms, end_reason, "
                    "owner, agent_id, skipped, last_wire_time")


class SpoolError(RuntimeError):
    """The spool could not store or read a record."""


class SpoolFull(SpoolError):
    """The spool reached its size cap; new turns are refused, stored ones are kept."""


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


class Spool:
    """Persist turns and their delivery state; knows nothing about HTTP or LiveKit."""

    def __init__(self, path: str | os.PathLike[str], *, durability: str = "process",
                 max_bytes: int | None = None, busy_timeout_ms: int = 5000) -> None:
        self.path = Path(path)
        self.max_bytes = max_bytes
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        self._conn = sqlite3.connect(self.path, isolation_level=None, timeout=busy_timeout_ms / 1000,
                                     check_same_thread=False)
        os.chmod(self.path, 0o600)
        self._conn.execute(f"PRAGMA busy_timeout={int(busy_timeout_ms)}")
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute(f"PRAGMA synchronous={_SYNCHRONOUS[durability]}")
        self._ensure_schema()

    def close(self) -> None:
        """Close this process's connection."""
        self._conn.close()

    def _ensure_schema(self) -> None:
        with self._write():
            for statement in SCHEMA:
                self._conn.execute(statement)
            row = self._conn.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
            if row is None:
                self._conn.execute("INSERT INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))
            elif int(row[0]) > SCHEMA_VERSION:
                raise SpoolError(f"spool {self.path} has schema {row[0]}, newer than this voicelog "
                                 f"({SCHEMA_VERSION}); upgrade voicelog")

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        # BEGIN IMMEDIATE takes the write lock up front, so a transaction never fails half-way
        # with SQLITE_BUSY after it has read.
        self._conn.execute("BEGIN IMMEDIATE")
        try:
            yield self._conn
        except BaseException:
            self._conn.execute("ROLLBACK")
            raise
        self._conn.execute("COMMIT")

    def size_bytes(self) -> int:
        """Bytes the spool occupies on disk, including its write-ahead log."""
        total = 0
        for suffix in ("", "-wal"):
            try:
                total += os.path.getsize(f"{self.path}{suffix}")
            except OSError:
                pass
        return total

    def _check_cap(self) -> None:
        if self.max_bytes is not None and self.size_bytes() >= self.max_bytes:
            raise SpoolFull(f"spool {self.path} reached its cap of {self.max_bytes} bytes")

    # --- capture side -------------------------------------------------------------------

    def open_session(self, session_id: str, *, mac: str, mac_valid: bool, mac_source: str,
                     started_ms: int, owner: str) -> tuple[int, int]:
        """Register (or re-own) a session; return its last sequence number and report time."""
        with self._write() as conn:
            conn.execute(
                "INSERT INTO sessions (session_id, mac, mac_valid, mac_source, started_ms, owner,"
                " updated_ms) VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT(session_id) DO UPDATE SET"
                " owner=excluded.owner, ended_ms=NULL, end_reason=NULL, updated_ms=excluded.updated_ms",
                (session_id, mac, int(mac_valid), mac_source, started_ms, owner, started_ms))
            last_seq, last_report = conn.execute(
                "SELECT COALESCE(MAX(seq), 0), COALESCE(MAX(report_ms), 0) FROM turns"
                " WHERE session_id=?", (session_id,)).fetchone()
        return int(last_seq), int(last_report)

    def insert_turn(self, turn: Turn) -> None:
        """Store a new turn; returns only once it has committed."""
        self._check_cap()
        try:
            self._conn.execute(
                f"INSERT INTO turns ({_TURN_COLUMNS}, updated_ms) VALUES"
                " (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (turn.session_id, turn.seq, int(turn.chat_type), turn.content, turn.report_ms,
                 turn.captured_ms, int(turn.interrupted), turn.status.value, turn.attempts,
                 turn.last_error, turn.next_attempt_ms, turn.wire_time, turn.delivered_ms,
                 turn.captured_ms))
        except sqlite3.IntegrityError as exc:
            raise SpoolError(f"turn {turn.turn_id} is already stored") from exc

    def update_open_turn(self, session_id: str, seq: int, *, content: str,
                         interrupted: bool = False, seal: bool = False, now_ms: int) -> bool:
        """Replace an open turn's text, optionally sealing it for delivery; False if not open."""
        status = TurnStatus.PENDING if seal else TurnStatus.OPEN
        cursor = self._conn.execute(
            "UPDATE turns SET content=?, interrupted=?, status=?, updated_ms=?"
            " WHERE session_id=? AND seq=? AND status='open'",
            (content, int(interrupted), status.value, now_ms, session_id, seq))
        return cursor.rowcount == 1

    def skip_open_turn(self, session_id: str, seq: int, *, now_ms: int) -> None:
        """Mark a reserved turn that never got any words as skipped."""
        with self._write() as conn:
            changed = conn.execute(
                "UPDATE turns SET status='skipped', updated_ms=? WHERE session_id=? AND seq=?"
                " AND status='open'", (now_ms, session_id, seq)).rowcount
            if changed:
                conn.execute("UPDATE sessions SET skipped=skipped+1 WHERE session_id=?", (session_id,))

    def count_skipped(self, session_id: str, count: int = 1) -> None:
        """Count turns that were empty and so never stored."""
        self._conn.execute("UPDATE sessions SET skipped=skipped+? WHERE session_id=?",
                           (count, session_id))

    def request_flush(self, session_id: str) -> None:
        """Make a session's pending turns due now, whatever the batch rules say."""
        self._conn.execute("UPDATE sessions SET flush_requested=1 WHERE session_id=?", (session_id,))

    def end_session(self, session_id: str, *, ended_ms: int, reason: str) -> int:
        """Seal what is still open and mark the session ended; return turns sealed."""
        with self._write() as conn:
            sealed = conn.execute(
                "UPDATE turns SET status='pending', updated_ms=? WHERE session_id=?"
                " AND status='open' AND content<>''", (ended_ms, session_id)).rowcount
            empty = conn.execute(
                "UPDATE turns SET status='skipped', updated_ms=? WHERE session_id=?"
                " AND status='open'", (ended_ms, session_id)).rowcount
            conn.execute(
                "UPDATE sessions SET ended_ms=?, end_reason=?, skipped=skipped+?, updated_ms=?"
                " WHERE session_id=?", (ended_ms, reason, empty, ended_ms, session_id))
        return sealed

    # --- reading --------------------------------------------------------------------------

    def session(self, session_id: str) -> SessionRecord | None:
        """One session's record, or None."""
        row = self._conn.execute(f"SELECT {_SESSION_COLUMNS} FROM sessions WHERE session_id=?",
                                 (session_id,)).fetchone()
        return _session(row) if row else None

    def sessions(self, *, live: bool | None = None) -> list[SessionRecord]:
        """All sessions, oldest first; ``live`` filters on whether they have ended."""
        where = "" if live is None else ("WHERE ended_ms IS NULL" if live else "WHERE ended_ms IS NOT NULL")
        rows = self._conn.execute(f"SELECT {_SESSION_COLUMNS} FROM sessions {where}"
                                  " ORDER BY started_ms, session_id").fetchall()
        return [_session(row) for row in rows]

    def turns(self, session_id: str, statuses: Iterable[TurnStatus] | None = None) -> list[Turn]:
        """A session's turns in conversation order, optionally only those in ``statuses``."""
        query = f"SELECT {_TURN_COLUMNS} FROM turns WHERE session_id=?"
        params: list[object] = [session_id]
        if statuses is not None:
            wanted = [TurnStatus(s).value for s in statuses]
            query += f" AND status IN ({','.join('?' * len(wanted))})"
            params += wanted
        rows = self._conn.execute(query + " ORDER BY seq", params).fetchall()
        return [_turn(row) for row in rows]

    def status_counts(self, session_id: str | None = None) -> dict[str, int]:
        """How many turns are in each status, for one session or the whole spool."""
        query = "SELECT status, COUNT(*) FROM turns"
        params: tuple[object, ...] = ()
        if session_id is not None:
            query, params = query + " WHERE session_id=?", (session_id,)
        return dict(self._conn.execute(query + " GROUP BY status", params).fetchall())

    def execute_read(self, query: str, params: Iterable[object] = ()) -> list[tuple]:
        """Run a read-only query; for the shipper's and support tools' own selections."""
        return self._conn.execute(query, tuple(params)).fetchall()

    # --- shipper side ---------------------------------------------------------------------

    def backlog(self) -> list[Backlog]:
        """One summary per session that has turns waiting for delivery."""
        rows = self._conn.execute(
            "SELECT t.session_id, s.mac, s.mac_valid, s.ended_ms IS NOT NULL, s.flush_requested,"
            " COUNT(*), MIN(t.captured_ms), MIN(t.next_attempt_ms), SUM(t.status='parked')"
            " FROM turns t JOIN sessions s ON s.session_id=t.session_id"
            " WHERE t.status IN ('pending','parked') GROUP BY t.session_id").fetchall()
        return [Backlog(r[0], r[1], bool(r[2]), bool(r[3]), bool(r[4]), r[5], r[6], r[7], r[8])
                for r in rows]

    def deliverable(self, session_id: str) -> list[Turn]:
        """Waiting turns in order, up to (not past) the first turn still being captured."""
        rows = self._conn.execute(
            f"SELECT {_TURN_COLUMNS} FROM turns WHERE session_id=? AND status IN ('pending','parked')"
            " AND seq < COALESCE((SELECT MIN(seq) FROM turns WHERE session_id=? AND status='open'),"
            " 9223372036854775807) ORDER BY seq", (session_id, session_id)).fetchall()
        return [_turn(row) for row in rows]

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


def _turn(row: tuple) -> Turn:
    (session_id, seq, chat_type, content, report_ms, captured_ms, interrupted, status,
     attempts, last_error, next_attempt_ms, wire_time, delivered_ms) = row
    return Turn(session_id, seq, ChatType(chat_type), content, report_ms, captured_ms,
                bool(interrupted), TurnStatus(status), attempts, last_error, next_attempt_ms,
                wire_time, delivered_ms)


def _session(row: tuple) -> SessionRecord:
    (session_id, mac, mac_valid, mac_source, started_ms, ended_ms, end_reason, owner,
     agent_id, skipped, last_wire_time) = row
    return SessionRecord(session_id, mac, bool(mac_valid), mac_source, started_ms, ended_ms,
                         end_reason, owner, agent_id, skipped, last_wire_time)
