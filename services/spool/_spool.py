"""The durable spool: one SQLite file per host holding every captured turn until delivered.

Every job process and the shipper open their own connection; SQLite's WAL locking makes
that safe across processes. A turn is durable when its INSERT has committed:
``durability: process`` (synchronous=NORMAL) survives the death of any process,
``durability: power`` (synchronous=FULL) also survives power loss, at the cost of an fsync.
Opening checks the file first when no other process has it open, and a damaged file is
quarantined and rebuilt from what is intact (services/spool_recovery.py).
"""

from __future__ import annotations

import os
import sqlite3
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

from voicelog.services.domain._clock import wall_ms
from voicelog.services.sealing._cipher import ContentCipher, is_sealed
from voicelog.services.domain._models import SessionRecord, Turn, TurnStatus
from voicelog.services.spool._delivery import Backlog, SpoolDelivery
from voicelog.services.spool.recovery._recover import (
    RecoveryReport,
    SpoolUsers,
    is_corruption,
    prepare_file,
    rebuild_damaged_backups,
    recover_in_use,
)
from voicelog.services.spool._schema import (
    SCHEMA,
    SCHEMA_VERSION,
    SESSION_FIELDS,
    TURN_FIELDS,
    session_record,
    turn_record,
)

# Backlog is re-exported: the shipper keeps importing it from here.
__all__ = ["Backlog", "DuplicateTurn", "Spool", "SpoolError", "SpoolFull"]

_SYNCHRONOUS = {"process": "NORMAL", "power": "FULL"}
# SQLite's own default, stated: a lower one would put a checkpoint's two fsyncs on the capture
# path more often. A full disk is handled by checkpointing on SQLITE_FULL (ChatHistoryService).
_WAL_CHECKPOINT_PAGES = 1000
_WAL_SIZE_LIMIT = 4 * 1024 * 1024  # a WAL grown past this (long reader) is cut back after


class SpoolError(RuntimeError):
    """The spool could not store or read a record."""


class SpoolFull(SpoolError):
    """The spool reached its size cap; new turns are refused, stored ones are kept."""


class DuplicateTurn(SpoolError):
    """A turn with this (session, seq) is already stored; retrying cannot help."""


class Spool(SpoolDelivery):
    """Persist turns and their delivery state; knows nothing about HTTP or LiveKit.

    The shipper's queries and updates live in services/spool_delivery.py (inherited).
    """

    def __init__(self, path: str | os.PathLike[str], *, durability: str = "process",
                 max_bytes: int | None = None, busy_timeout_ms: int = 5000,
                 backup_dir: str | os.PathLike[str] | None = None,
                 now: Callable[[], int] = wall_ms, cipher: ContentCipher | None = None) -> None:
        self.path = Path(path)
        self.max_bytes = max_bytes
        # With a cipher, content is sealed on the way in and stays sealed in every copy made
        # from the spool (backups, quarantine); only delivery and display open it.
        self.cipher = cipher
        # Default layout: the spool lives in the backup folder (<backup_dir>/spool.db).
        self.backup_dir = Path(backup_dir) if backup_dir is not None else self.path.parent
        self._durability, self._busy_timeout_ms, self._now = durability, busy_timeout_ms, now
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        self._users = SpoolUsers(self.path)
        self.recovery: RecoveryReport | None = prepare_file(
            self.path, self.backup_dir, self._users, now_ms=now())
        self._open_checked()
        if self.recovery is not None:
            rebuild_damaged_backups(self, self.recovery, now())

    def _open_checked(self) -> None:
        try:
            self._connect()
            self._ensure_schema()
        except sqlite3.DatabaseError as exc:
            if not is_corruption(exc):
                raise
            # Others had the file open, so the full check was skipped; recover now, once.
            self._conn.close()
            self.recovery = recover_in_use(self.path, self.backup_dir, str(exc), self._inode,
                                           now_ms=self._now()) or self.recovery
            self._connect()
            self._ensure_schema()

    def _connect(self) -> None:
        self._conn = sqlite3.connect(self.path, isolation_level=None,
                                     timeout=self._busy_timeout_ms / 1000, check_same_thread=False)
        self._inode = os.stat(self.path).st_ino
        os.chmod(self.path, 0o600)
        self._conn.execute(f"PRAGMA busy_timeout={int(self._busy_timeout_ms)}")
        self._enter_wal_mode()
        self._conn.execute(f"PRAGMA synchronous={_SYNCHRONOUS[self._durability]}")
        self._conn.execute(f"PRAGMA wal_autocheckpoint={_WAL_CHECKPOINT_PAGES}")
        self._conn.execute(f"PRAGMA journal_size_limit={_WAL_SIZE_LIMIT}")

    def _enter_wal_mode(self) -> None:
        # Switching a brand-new file to WAL needs an exclusive lock, and SQLite answers BUSY at
        # once (no busy handler) when another process is doing the same: retry, bounded.
        deadline = time.monotonic() + self._busy_timeout_ms / 1000
        while True:
            try:
                self._conn.execute("PRAGMA journal_mode=WAL")
                return
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) or time.monotonic() > deadline:
                    raise
                time.sleep(0.005)

    def close(self) -> None:
        """Close this process's connection."""
        self._conn.close()
        self._users.release()

    def reopen_if_replaced(self) -> bool:
        """Reconnect when another process quarantined and rebuilt the file; True if it did."""
        try:
            replaced = os.stat(self.path).st_ino != self._inode
        except FileNotFoundError:
            return False  # mid-rebuild: the new file appears in a moment
        if replaced:
            self._conn.close()
            self._connect()
        return replaced

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
            self._conn.execute("COMMIT")
        except BaseException:
            # Also after a failed COMMIT (disk full): never leave the connection mid-transaction.
            if self._conn.in_transaction:
                self._conn.execute("ROLLBACK")
            raise

    def size_bytes(self) -> int:
        """Bytes the spool occupies on disk, including its write-ahead log."""
        total = 0
        for suffix in ("", "-wal"):
            try:
                total += os.path.getsize(f"{self.path}{suffix}")
            except OSError:
                pass
        return total

    def checkpoint(self) -> bool:
        """Copy the WAL into the main file without waiting; True when all of it was copied.

        On a nearly full disk this is what lets writes go on: the WAL is then reused from its
        start instead of growing (automatic checkpoints only come after ~4 MB of it).
        """
        try:
            busy, frames, copied = self._conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
        except sqlite3.DatabaseError:
            return False
        return busy == 0 and frames == copied

    def used_bytes(self) -> int:
        """Bytes holding data: the file less its free pages (reused before the file grows)."""
        pages, free, size = (self._conn.execute(f"PRAGMA {name}").fetchone()[0]
                             for name in ("page_count", "freelist_count", "page_size"))
        return (pages - free) * size

    def _check_cap(self) -> None:
        # The file never shrinks, so at the cap look at what is in use: pruned space is reusable.
        if self.max_bytes is None or self.size_bytes() < self.max_bytes:
            return
        if self.used_bytes() >= self.max_bytes:
            raise SpoolFull(f"spool {self.path} reached its cap of {self.max_bytes} bytes")

    # --- capture side -------------------------------------------------------------------

    def open_session(self, session_id: str, *, mac: str, mac_valid: bool, mac_source: str,
                     started_ms: int, owner: str) -> tuple[int, int]:
        """Register (or re-own) a session; return its last sequence number and report time.

        Turns a previous owner left open (its process died mid-turn) are sealed: nobody will
        finish them, and an open turn would hold back delivery of everything after it.
        """
        with self._write() as conn:
            before = conn.execute("SELECT owner FROM sessions WHERE session_id=?", (session_id,)).fetchone()
            conn.execute(
                "INSERT INTO sessions (session_id, mac, mac_valid, mac_source, started_ms, owner,"
                " updated_ms) VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT(session_id) DO UPDATE SET"
                " owner=excluded.owner, ended_ms=NULL, end_reason=NULL, updated_ms=excluded.updated_ms",
                (session_id, mac, int(mac_valid), mac_source, started_ms, owner, started_ms))
            if before is not None and before[0] != owner:
                self._seal_open(conn, session_id, started_ms)
        return self.session_position(session_id)

    def session_position(self, session_id: str) -> tuple[int, int]:
        """A session's last sequence number and report time, read only (works on a full disk)."""
        last_seq, last_report = self._conn.execute(
            "SELECT COALESCE(MAX(seq), 0), COALESCE(MAX(report_ms), 0) FROM turns"
            " WHERE session_id=?", (session_id,)).fetchone()
        return int(last_seq), int(last_report)

    def record_loss(self, session_id: str | None, kind: str, count: int, detail: str = "") -> None:
        """Count what could not be kept, where support staff will see it."""
        self._conn.execute("INSERT INTO losses VALUES (?, ?, ?, ?, ?)",
                           (self._now(), session_id, kind, count, detail[:1000]))

    def losses(self, session_id: str | None = None) -> dict[str, int]:
        """Counted losses by kind, for one session or the whole spool."""
        query, params = "SELECT kind, SUM(count) FROM losses", ()
        if session_id is not None:
            query, params = query + " WHERE session_id=?", (session_id,)
        return {k: int(v) for k, v in self._conn.execute(query + " GROUP BY kind", params)}

    def insert_turn(self, turn: Turn) -> None:
        """Store a new turn; returns only once it has committed."""
        self._check_cap()
        try:
            self._conn.execute(
                f"INSERT INTO turns ({TURN_FIELDS}, updated_ms) VALUES"
                " (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (turn.session_id, turn.seq, int(turn.chat_type), self._seal(turn.content), turn.report_ms,
                 turn.captured_ms, int(turn.interrupted), turn.status.value, turn.attempts,
                 turn.last_error, turn.next_attempt_ms, turn.wire_time, turn.delivered_ms,
                 turn.captured_ms))
        except sqlite3.IntegrityError as exc:
            raise DuplicateTurn(f"turn {turn.turn_id} is already stored") from exc

    def update_open_turn(self, session_id: str, seq: int, *, content: str,
                         interrupted: bool = False, seal: bool = False, now_ms: int) -> bool:
        """Replace an open turn's text, optionally sealing it for delivery; False if not open."""
        status = TurnStatus.PENDING if seal else TurnStatus.OPEN
        cursor = self._conn.execute(
            "UPDATE turns SET content=?, interrupted=?, status=?, updated_ms=?"
            " WHERE session_id=? AND seq=? AND status='open'",
            (self._seal(content), int(interrupted), status.value, now_ms, session_id, seq))
        return cursor.rowcount == 1

    def _seal(self, content: str) -> str:
        # Empty stays empty ("nothing said" must remain visible to the SQL that skips it);
        # content imported already sealed (from another box's backup) is kept as it is.
        if self.cipher is None or not content or is_sealed(content):
            return content
        return self.cipher.seal(content)

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
            sealed = self._seal_open(conn, session_id, ended_ms)
            conn.execute("UPDATE sessions SET ended_ms=?, end_reason=?, updated_ms=? WHERE session_id=?",
                         (ended_ms, reason, ended_ms, session_id))
        return sealed

    @staticmethod
    def _seal_open(conn: sqlite3.Connection, session_id: str, now_ms: int) -> int:
        """Open turns with words become pending, empty ones skipped (counted); returns sealed."""
        sealed = conn.execute("UPDATE turns SET status='pending', updated_ms=? WHERE session_id=?"
                              " AND status='open' AND content<>''", (now_ms, session_id)).rowcount
        empty = conn.execute("UPDATE turns SET status='skipped', updated_ms=? WHERE session_id=?"
                             " AND status='open'", (now_ms, session_id)).rowcount
        conn.execute("UPDATE sessions SET skipped=skipped+? WHERE session_id=?", (empty, session_id))
        return sealed

    # --- reading --------------------------------------------------------------------------

    def session(self, session_id: str) -> SessionRecord | None:
        """One session's record, or None."""
        row = self._conn.execute(f"SELECT {SESSION_FIELDS} FROM sessions WHERE session_id=?",
                                 (session_id,)).fetchone()
        return session_record(row) if row else None

    def sessions(self, *, live: bool | None = None) -> list[SessionRecord]:
        """All sessions, oldest first; ``live`` filters on whether they have ended."""
        where = "" if live is None else ("WHERE ended_ms IS NULL" if live else "WHERE ended_ms IS NOT NULL")
        rows = self._conn.execute(f"SELECT {SESSION_FIELDS} FROM sessions {where}"
                                  " ORDER BY started_ms, session_id").fetchall()
        return [session_record(row) for row in rows]

    def turns(self, session_id: str, statuses: Iterable[TurnStatus] | None = None) -> list[Turn]:
        """A session's turns in conversation order, optionally only those in ``statuses``."""
        query = f"SELECT {TURN_FIELDS} FROM turns WHERE session_id=?"
        params: list[object] = [session_id]
        if statuses is not None:
            wanted = [TurnStatus(s).value for s in statuses]
            query += f" AND status IN ({','.join('?' * len(wanted))})"
            params += wanted
        rows = self._conn.execute(query + " ORDER BY seq", params).fetchall()
        return [turn_record(row) for row in rows]

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
