"""The durable spool: one SQLite file per host holding every captured turn until delivered.

Every job process and the shipper open their own connection; SQLite's WAL locking makes that
safe across processes. A turn is durable when its INSERT has committed. Open it with
``open_spool`` (``_open``), which checks and, if need be, recovers the file first; ``Spool``
itself only stores and reads. The shipper's verbs live in ``DeliveryState`` (``_delivery``).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from voicelog.services.domain import (
    SessionRecord,
    Turn,
    TurnMeta,
    TurnStatus,
    turn_meta_from_json,
    wall_ms,
)
from voicelog.services.sealing import ContentCipher, is_sealed
from voicelog.services.spool import _queries as q
from voicelog.services.spool._bulk import import_session, merge_rows, turn_values
from voicelog.services.spool._checkpoint import Checkpointer
from voicelog.services.spool._connection import SpoolConnection
from voicelog.services.spool._errors import DuplicateTurn, SessionErased, SpoolFull
from voicelog.services.spool._orphans import adopt_orphans, orphan_counts, orphan_ids_of
from voicelog.services.spool._removal import (
    EndedSession,
    Erasure,
    delete_expired,
    ended_before,
    erase_sessions,
)
from voicelog.services.spool._schema import NO_SESSION_MESSAGE, erased_digest, session_record, turn_record
from voicelog.services.spool._values import json_list
from voicelog.services.spool.recovery import RecoveryReport


@dataclass(frozen=True)
class SessionCounts:
    """A session with how many of its turns are in each status (only statuses that occur)."""

    session: SessionRecord
    counts: dict[str, int]
    orphan: bool = False  # turns without a session row; the record is what the repair will store


class Spool:
    """Persist sessions and turns, and answer questions about them; knows no HTTP or LiveKit."""

    def __init__(self, connection: SpoolConnection, *, backup_dir: Path, max_bytes: int | None = None,
                 cipher: ContentCipher | None = None, now: Callable[[], int] = wall_ms,
                 on_close: Callable[[], None] | None = None) -> None:
        self.connection = connection
        self.path, self.backup_dir, self.max_bytes = connection.path, backup_dir, max_bytes
        # With a cipher, content is sealed on the way in and stays sealed in every copy made
        # from the spool (backups, quarantine); only delivery and display open it.
        self.cipher = cipher
        self.recovery: RecoveryReport | None = None  # set by open_spool when it repaired something
        self.adopted: dict[str, int] = {}  # turns found without a session row at open, given one
        self.checkpointer: Checkpointer | None = None  # set by open_spool(checkpoint=True)
        self._now = now
        self._on_close = on_close

    @property
    def _db(self) -> sqlite3.Connection:
        return self.connection.db

    def close(self) -> None:
        """Close this process's connection."""
        self.connection.close()
        if self._on_close is not None:
            self._on_close()

    def reopen_if_replaced(self) -> bool:
        """Reconnect when another process quarantined and rebuilt the file; True if it did."""
        return self.connection.reopen_if_replaced()

    def twin(self, *, busy_timeout_ms: int) -> Spool:
        """Another connection to the same file, for work that must not share this one's thread."""
        return Spool(self.connection.sibling(busy_timeout_ms=busy_timeout_ms), backup_dir=self.backup_dir,
                     max_bytes=self.max_bytes, cipher=self.cipher, now=self._now)

    def size_bytes(self) -> int:
        """Bytes the spool occupies on disk, including its write-ahead log."""
        return self.connection.size_bytes()

    def used_bytes(self) -> int:
        """Bytes holding data (reusable free pages not counted)."""
        return self.connection.used_bytes()

    def checkpoint(self) -> bool:
        """Copy the WAL into the main file without waiting; True when all of it was copied."""
        return self.connection.checkpoint()

    def is_full(self) -> bool:
        """At the cap on disk with no reusable free pages: new turns would be refused."""
        # The file never shrinks, so at the cap look at what is in use: pruned space is reusable.
        if self.max_bytes is None or self.size_bytes() < self.max_bytes:
            return False
        return self.used_bytes() >= self.max_bytes

    # --- capture side -------------------------------------------------------------------------

    def open_session(self, session_id: str, *, mac: str, mac_valid: bool, mac_source: str,
                     started_ms: int, owner: str, renamed: str | None = None) -> tuple[int, int]:
        """Register (or re-own) a session; return its last sequence number and report time.

        Turns a previous owner left open (its process died mid-turn) are sealed: nobody will
        finish them, and an open turn would hold back delivery of everything after it. A session
        erased on request is refused (SessionErased). ``renamed`` says why the session id is not
        the room name as given; a new session records it in ``losses`` (no room name kept).
        """
        with self.connection.write() as db:
            if db.execute(q.ERASED_GET, (erased_digest(session_id),)).fetchone():
                raise SessionErased(f"session {session_id} was erased on request; its capture is refused")
            before = db.execute(q.SESSION_OWNER, (session_id,)).fetchone()
            db.execute(q.SESSION_OPEN, (session_id, mac, int(mac_valid), mac_source, started_ms,
                                        owner, started_ms))
            if before is not None and before[0] != owner:
                self._seal_open(db, session_id, started_ms)
            if before is None and renamed:
                db.execute(q.LOSS_INSERT, (self._now(), session_id, "room_name_rewritten", 1, renamed))
        return self.session_position(session_id)

    def session_position(self, session_id: str) -> tuple[int, int]:
        """A session's last sequence number and report time, read only (works on a full disk)."""
        last_seq, last_report = self._db.execute(q.SESSION_POSITION, (session_id,)).fetchone()
        return int(last_seq), int(last_report)

    def record_loss(self, session_id: str | None, kind: str, count: int, detail: str = "") -> None:
        """Count what could not be kept, where support staff will see it."""
        self._db.execute(q.LOSS_INSERT, (self._now(), session_id, kind, count, detail[:1000]))

    def losses(self, session_id: str | None = None) -> dict[str, int]:
        """Counted losses by kind, for one session or the whole spool."""
        rows = (self._db.execute(q.LOSSES) if session_id is None
                else self._db.execute(q.LOSSES_OF_SESSION, (session_id,)))
        return {kind: int(total) for kind, total in rows}

    def insert_turn(self, turn: Turn) -> None:
        """Store a new turn; returns only once it has committed."""
        if self.is_full():
            raise SpoolFull(f"spool {self.path} reached its cap of {self.max_bytes} bytes")
        try:
            self._db.execute(q.TURN_INSERT, turn_values(turn, self._seal(turn.content)))
        except sqlite3.IntegrityError as exc:
            if NO_SESSION_MESSAGE in str(exc):
                raise SessionErased(f"turn {turn.turn_id} refused: its session was erased or is gone") from exc
            raise DuplicateTurn(f"turn {turn.turn_id} is already stored") from exc

    def update_open_turn(self, session_id: str, seq: int, *, content: str,
                         interrupted: bool = False, seal: bool = False, now_ms: int,
                         meta: TurnMeta | None = None) -> bool:
        """Replace an open turn's text (and measurements, if given), optionally sealing it; False if not open."""
        status = TurnStatus.PENDING if seal else TurnStatus.OPEN
        cursor = self._db.execute(q.TURN_UPDATE_OPEN, (
            self._seal(content), int(interrupted), status.value, meta.to_json() if meta else None,
            now_ms, session_id, seq))
        if cursor.rowcount == 0 and self.session(session_id) is None:
            raise SessionErased(f"turn {session_id}#{seq} refused: its session was erased or is gone")
        return cursor.rowcount == 1

    def _seal(self, content: str) -> str:
        # Empty stays empty ("nothing said" must remain visible to the SQL that skips it);
        # content imported already sealed (from another box's backup) is kept as it is.
        if self.cipher is None or not content or is_sealed(content):
            return content
        return self.cipher.seal(content)

    def skip_open_turn(self, session_id: str, seq: int, *, now_ms: int) -> None:
        """Mark a reserved turn that never got any words as skipped."""
        with self.connection.write() as db:
            if db.execute(q.TURN_SKIP_OPEN, (now_ms, session_id, seq)).rowcount:
                db.execute(q.SESSION_ADD_SKIPPED, (1, session_id))

    def count_skipped(self, session_id: str, count: int = 1) -> None:
        """Count turns that were empty and so never stored."""
        self._db.execute(q.SESSION_ADD_SKIPPED, (count, session_id))

    def request_flush(self, session_id: str) -> None:
        """Make a session's pending turns due now, whatever the batch rules say."""
        self._db.execute(q.SESSION_REQUEST_FLUSH, (session_id,))

    def end_session(self, session_id: str, *, ended_ms: int, reason: str) -> int:
        """Seal what is still open and mark the session ended; return turns sealed."""
        with self.connection.write() as db:
            sealed = self._seal_open(db, session_id, ended_ms)
            db.execute(q.SESSION_END, (ended_ms, reason, ended_ms, session_id))
        return sealed

    @staticmethod
    def _seal_open(db: sqlite3.Connection, session_id: str, now_ms: int) -> int:
        """Open turns with words become pending, empty ones skipped (counted); returns sealed."""
        sealed = db.execute(q.TURNS_SEAL_OPEN, (now_ms, session_id)).rowcount
        empty = db.execute(q.TURNS_SKIP_EMPTY_OPEN, (now_ms, session_id)).rowcount
        db.execute(q.SESSION_ADD_SKIPPED, (empty, session_id))
        return sealed

    # --- reading ------------------------------------------------------------------------------

    def session(self, session_id: str) -> SessionRecord | None:
        """One session's record, or None."""
        row = self._db.execute(q.SESSION_GET, (session_id,)).fetchone()
        return session_record(row) if row else None

    def sessions(self, *, live: bool | None = None) -> list[SessionRecord]:
        """All sessions, oldest first; ``live`` filters on whether they have ended."""
        query = q.SESSIONS_ALL if live is None else (q.SESSIONS_LIVE if live else q.SESSIONS_ENDED)
        return [session_record(row) for row in self._db.execute(query).fetchall()]

    def session_ids(self) -> set[str]:
        """Ids of every session in the spool."""
        return {row[0] for row in self._db.execute(q.SESSION_IDS)}

    def session_ids_with_prefix(self, prefix: str, limit: int = 6) -> list[str]:
        """Session ids starting with ``prefix``, sorted, at most ``limit``."""
        return [row[0] for row in self._db.execute(q.SESSION_IDS_WITH_PREFIX, (prefix, limit))]

    def turns(self, session_id: str, statuses: Iterable[TurnStatus] | None = None) -> list[Turn]:
        """A session's turns in conversation order, optionally only those in ``statuses``."""
        if statuses is None:
            rows = self._db.execute(q.TURNS_OF_SESSION, (session_id,)).fetchall()
        else:
            wanted = json_list(TurnStatus(s) for s in statuses)
            rows = self._db.execute(q.TURNS_OF_SESSION_IN, (session_id, wanted)).fetchall()
        return [turn_record(row) for row in rows]

    def status_counts(self, session_id: str | None = None) -> dict[str, int]:
        """How many turns are in each status, for one session or the whole spool."""
        rows = (self._db.execute(q.STATUS_COUNTS) if session_id is None
                else self._db.execute(q.STATUS_COUNTS_OF_SESSION, (session_id,)))
        return dict(rows.fetchall())

    def session_counts(self, *, session_ids: Iterable[str] | None = None,
                       macs: Iterable[str] | None = None, since_ms: int | None = None,
                       until_ms: int | None = None) -> list[SessionCounts]:
        """Sessions (filtered; None does not filter) with their turn counts, oldest first."""
        params = (None if session_ids is None else json_list(session_ids),
                  None if macs is None else json_list(macs), since_ms, until_ms)
        found: dict[str, SessionCounts] = {}
        for row in self._db.execute(q.SESSION_STATUS_COUNTS, params):
            session_id = row[0]
            if session_id not in found:
                found[session_id] = SessionCounts(session_record(row[:-2]), {})
            if row[-2] is not None:
                found[session_id].counts[row[-2]] = row[-1]
        # Turns an older voicelog left without a session row are shown too, never hidden.
        ids, mac_set = (None if session_ids is None else set(session_ids)), (None if macs is None else set(macs))
        found.update((o.session.session_id, o) for o in self.orphans()
                     if (ids is None or o.session.session_id in ids) and (mac_set is None or o.session.mac in mac_set)
                     and (since_ms is None or o.session.started_ms >= since_ms)
                     and (until_ms is None or o.session.started_ms < until_ms))
        return list(found.values())

    def turn_update_times(self, session_id: str) -> dict[int, int]:
        """When each turn of a session last changed (seq -> ms)."""
        return dict(self._db.execute(q.TURN_UPDATE_TIMES, (session_id,)).fetchall())

    def turn_states(self, session_ids: Iterable[str]) -> list[tuple[str, int, TurnStatus, int, str | None]]:
        """(session, seq, status, attempts, last error) of every turn of these sessions."""
        rows = self._db.execute(q.TURN_STATES, (json_list(session_ids),)).fetchall()
        return [(sid, seq, TurnStatus(status), attempts, error) for sid, seq, status, attempts, error in rows]

    def turns_in_status(self, statuses: Iterable[TurnStatus], *, session_id: str | None = None,
                        mac: str | None = None) -> list[tuple[str, int]]:
        """(session, seq) of the turns in ``statuses``, optionally of one session or device."""
        rows = self._db.execute(q.TURNS_IN_STATUS, (json_list(statuses), session_id, mac))
        return [(sid, seq) for sid, seq in rows]

    def totals(self, waiting: Iterable[TurnStatus]) -> tuple[int, int, int | None]:
        """Live sessions, turns skipped in all, and the capture time of the oldest ``waiting`` turn."""
        active, skipped = self._db.execute(q.SESSION_TOTALS).fetchone()
        oldest = self._db.execute(q.OLDEST_CAPTURED_IN, (json_list(waiting),)).fetchone()[0]
        return int(active), int(skipped), oldest

    def last_turn_position(self) -> int:
        """Where the newest stored turn sits in insertion order (0: none); see ``measured_turns``."""
        return int(self._db.execute(q.TURN_LAST_ROWID).fetchone()[0])

    def measured_turns(self, after: int) -> tuple[list[tuple[int, TurnMeta]], int | None]:
        """Sealed turns with measurements stored after position ``after``, and the lowest open one.

        Returns ((position, meta), ...) in insertion order and the position of the oldest turn
        still open (None: none is), before which a reader has seen everything for good.
        """
        rows = self._db.execute(q.TURNS_MEASURED_AFTER, (after,)).fetchall()
        lowest_open = self._db.execute(q.TURN_LOWEST_OPEN).fetchone()[0]
        measured = [(rowid, meta) for rowid, meta in ((r, turn_meta_from_json(m)) for r, m in rows) if meta]
        return measured, lowest_open

    def devices_with(self, statuses: Iterable[TurnStatus]) -> int:
        """How many devices (MACs) have turns in ``statuses``, e.g. parked devices."""
        return int(self._db.execute(q.DEVICES_WITH_TURNS_IN, (json_list(statuses),)).fetchone()[0])

    def set_meta(self, key: str, value: str) -> None:
        """Store one key/value in the spool's meta table (in its own write transaction)."""
        with self.connection.write() as db:
            db.execute(q.META_SET, (key, value))

    # --- support and privacy ------------------------------------------------------------------

    def assign_mac(self, session_id: str, mac: str, now_ms: int) -> None:
        """Give a session captured without a valid MAC the device MAC support staff found."""
        with self.connection.write() as db:
            db.execute(q.SESSION_ASSIGN_MAC, (mac, now_ms, session_id))

    def resend(self, session_id: str, *, delivered: Iterable[int], pending: Iterable[int],
               now_ms: int) -> None:
        """Make delivered turns pending again (sent whole, same wire time) and pending ones due now."""
        with self.connection.write() as db:
            db.executemany(q.TURN_REQUEUE_DELIVERED, [(now_ms, session_id, seq) for seq in delivered])
            db.executemany(q.TURN_DUE_NOW, [(session_id, seq) for seq in pending])

    def sessions_of(self, *, mac: str | None = None, session_id: str | None = None) -> set[str]:
        """Ids of a device's sessions, or of the one session named (turns without a session row too)."""
        found = {row[0] for row in self._db.execute(q.SESSION_IDS_OF_DEVICE, (mac or "", session_id or ""))}
        return found | orphan_ids_of(self._db, mac=mac, session_id=session_id)

    def turn_count(self, session_id: str) -> int:
        """How many turns a session has stored."""
        return int(self._db.execute(q.TURN_COUNT_OF_SESSION, (session_id,)).fetchone()[0])

    def erase_sessions(self, session_ids: Iterable[str], now_ms: int) -> Erasure:
        """Delete sessions and their turns for good, leaving a tombstone (a digest of each id).

        A capture still running for such a session is then refused (SessionErased) instead of
        writing turns no session row would ever lead to. Losses keep their counts but no longer
        name the session. Freed bytes are zeroed (every connection runs with secure_delete), then
        the file is rewritten whole (VACUUM: fragments inside pages go too; without the room for
        it, the indexes are rebuilt instead) and the WAL truncated. The Erasure says what was done.
        """
        return erase_sessions(self.connection, session_ids, now_ms)

    def is_erased(self, session_id: str) -> bool:
        """Whether the session was erased on request (and its tombstone not yet expired)."""
        return self._db.execute(q.ERASED_GET, (erased_digest(session_id),)).fetchone() is not None

    def forget_erased_before(self, cutoff_ms: int) -> int:
        """Drop tombstones older than ``cutoff_ms`` (retention); returns how many."""
        with self.connection.write() as db:
            return db.execute(q.ERASED_FORGET_BEFORE, (cutoff_ms,)).rowcount

    def orphans(self) -> list[SessionCounts]:
        """Turns without a session row (an older voicelog's purge), as sessions derived from them."""
        return [SessionCounts(session, counts, True) for session, counts in orphan_counts(self._db, self._now())]

    def merge_recovered(self, sessions: Iterable[tuple], turns: Iterable[tuple], losses: Iterable[tuple],
                        erased: Iterable[tuple]) -> tuple[int, int]:
        """Add rows a deferred repair salvaged, keeping whatever this spool has; (sessions, turns) added.

        Short transactions (500 turns each), so capture is never held up for long.
        """
        return merge_rows(self.connection, sessions, turns, losses, erased)

    def import_session(self, session: SessionRecord, turns: Iterable[Turn], *, owner: str,
                       ended_ms: int) -> int:
        """Add a session (from a backup) and the turns the spool lacks, all or nothing; turns added."""
        if self.is_full():
            raise SpoolFull(f"spool {self.path} reached its cap of {self.max_bytes} bytes")
        return import_session(self.connection, self._seal, session, turns, owner=owner, ended_ms=ended_ms)

    def adopt_orphans(self, now_ms: int) -> dict[str, int]:
        """Give turns without a session row one (MAC from the room name); {session id: turns}."""
        return adopt_orphans(self.connection, now_ms)

    def ended_before(self, cutoff_ms: int) -> list[EndedSession]:
        """Sessions that ended before ``cutoff_ms``, oldest end first, with their counts."""
        return ended_before(self._db, cutoff_ms)

    def delete_expired(self, candidates: Iterable[tuple[str, int, bool]]) -> list[str]:
        """Delete sessions still ended before their cutoff (and done, unless allowed not to be).

        ``candidates`` are (session id, cutoff ms, may have undone turns); each is checked again
        inside one short write transaction, so a session that moved on meanwhile stays.
        """
        return delete_expired(self.connection, candidates)
