"""Read every plausible row out of a damaged spool file, stepping around the damage.

Recovery (``_rebuild``) works from what this returns. The file is read from a
copy (with its WAL); a destroyed first page is replaced by a fresh spool's. Tables are read in
key order in batches, one row at a time near damage, and an unreadable region is jumped over
by searching for the next key that reads again. Rows holding impossible values are dropped.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import sqlite3
from dataclasses import dataclass, field
from pathlib import Path

import structlog

from voicelog.services.domain import TurnStatus
from voicelog.services.spool._schema import ERASED_COLUMNS, SCHEMA, SESSION_COLUMNS, TURN_COLUMNS

# Same logger as recovery: salvage failures belong with the recovery's own events.
log = structlog.get_logger("voicelog.recovery")
_STATUSES = tuple(status.value for status in TurnStatus)
# The SQL twin of _plausible_turn, for checking a file that opened fine (bind STATUSES_JSON).
COUNT_IMPLAUSIBLE_TURNS = (
    "SELECT COUNT(*) FROM turns WHERE typeof(session_id)<>'text' OR typeof(seq)<>'integer'"
    " OR seq<1 OR chat_type NOT IN (1,2) OR typeof(content)<>'text'"
    " OR typeof(report_ms)<>'integer' OR status NOT IN (SELECT value FROM json_each(?))")
STATUSES_JSON = json.dumps(_STATUSES)
_INT64_MIN, _INT64_MAX = -(2 ** 63), 2 ** 63 - 1
_DIGEST = re.compile(r"^[0-9a-f]{64}$")

Key = tuple[str, int]


@dataclass
class Salvage:
    """What could be read from a damaged spool; ``known`` also counts turns only indexes list."""

    turns: dict[Key, tuple] = field(default_factory=dict)
    sessions: dict[str, tuple] = field(default_factory=dict)
    losses: list[tuple] = field(default_factory=list)
    erased: dict[str, tuple] = field(default_factory=dict)  # tombstones by digest
    known: set[Key] = field(default_factory=set)
    unreadable_regions: int = 0  # places in the damaged file no row could be read from
    rejected_rows: int = 0  # rows read but holding impossible values


def salvage_spool(path: Path, work: Path) -> Salvage:
    """Every readable, plausible row of the damaged spool, read from a copy in ``work``.

    A failure to make the copy (no space, no permission) is raised, never taken for damage:
    finding "nothing readable" on a full disk would rebuild the spool without its turns.
    """
    found = Salvage()
    if path.exists():
        try:
            _read_damaged(path, work, found)
        except OSError:
            raise
        except sqlite3.OperationalError as exc:
            if "full" in str(exc):
                raise  # no room for the work copy: not damage
            log.exception("spool_salvage_failed", path=str(path))
            found.unreadable_regions += 1
        except Exception:
            log.exception("spool_salvage_failed", path=str(path))
            found.unreadable_regions += 1
    return found


def _read_damaged(path: Path, work: Path, found: Salvage) -> None:
    conn = _open_copy(path, work)
    if conn is None:
        found.unreadable_regions += 1
        return
    with contextlib.closing(conn):
        for row in _rows(conn, "turns", TURN_COLUMNS, found):
            if _plausible_turn(row):
                found.turns[(row[0], row[1])] = row
            else:
                found.rejected_rows += 1
        found.sessions.update((r[0], r) for r in _rows(conn, "sessions", SESSION_COLUMNS, found)
                              if _plausible_session(r))
        found.losses += _rows(conn, "losses", ("at_ms", "session_id", "kind", "count", "detail"), found)
        found.erased.update((r[0], r) for r in _rows(conn, "erased_sessions", ERASED_COLUMNS, found)
                            if isinstance(r[0], str) and _DIGEST.match(r[0]) and type(r[1]) is int)
        for session_id in {key[0] for key in found.turns} | set(found.sessions):
            found.known |= {(session_id, seq) for seq in _indexed_seqs(conn, session_id, found)}


def _open_copy(path: Path, work: Path) -> sqlite3.Connection | None:
    """A connection to a copy of the damaged file (with its WAL), header repaired if needed."""
    work.mkdir(parents=True, exist_ok=True, mode=0o700)
    copy = work / "damaged.db"
    _private_copy(path, copy)
    if Path(f"{path}-wal").exists():
        _private_copy(Path(f"{path}-wal"), Path(f"{copy}-wal"))
    for repair in (False, True):
        if repair:
            _transplant_first_page(copy, work / "template.db")
        conn = sqlite3.connect(copy)
        try:
            conn.execute("SELECT name FROM sqlite_master").fetchall()
            return conn
        except sqlite3.DatabaseError:
            conn.close()
    return None


def _private_copy(source: Path, target: Path) -> None:
    """Copy a file into one only its owner can read (the copies hold children's words)."""
    with open(source, "rb") as src, os.fdopen(os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600),
                                               "wb") as dst:
        shutil.copyfileobj(src, dst, 1024 * 1024)


def _transplant_first_page(copy: Path, template: Path) -> None:
    # Page 1 holds the header and the table directory; a fresh spool's is the same (the
    # schema is created in a fixed order), so a destroyed page 1 can be replaced by it.
    os.close(os.open(template, os.O_WRONLY | os.O_CREAT, 0o600))
    conn = sqlite3.connect(template)
    with contextlib.closing(conn):
        for statement in SCHEMA:
            conn.execute(statement)
        conn.commit()
        page_size = conn.execute("PRAGMA page_size").fetchone()[0]
    first = bytearray(template.read_bytes()[:page_size])
    first[18:20] = b"\x02\x02"  # WAL mode, so the damaged file's WAL is still read
    first[28:32] = bytes(4)  # no stored page count: SQLite then trusts the file size
    with open(copy, "r+b") as handle:
        handle.write(first)


def _rows(conn: sqlite3.Connection, table: str, columns: tuple[str, ...],
          found: Salvage) -> list[tuple]:
    """Read a table in rowid order, stepping over regions that cannot be read.

    A column an older schema did not have yet reads as NULL, so a version-1 file is salvaged too.
    """
    selected = ", ".join(c if c in _present(conn, table, columns) else f"NULL AS {c}" for c in columns)
    query = f"SELECT rowid, {selected} FROM {table} WHERE rowid > ? ORDER BY rowid LIMIT ?"
    return _scan(conn, query, (), _INT64_MIN, found)


def _present(conn: sqlite3.Connection, table: str, columns: tuple[str, ...]) -> set[str]:
    """The columns the damaged file's table has (all of them when that cannot be read)."""
    try:
        have = {row[1] for row in conn.execute(f"PRAGMA table_info({table})")}
    except sqlite3.DatabaseError:
        return set(columns)
    return have or set(columns)


def _indexed_seqs(conn: sqlite3.Connection, session_id: str, found: Salvage) -> set[int]:
    """The seqs the (session, seq) index still lists: turns that existed even if unreadable."""
    query = ("SELECT seq, seq FROM turns INDEXED BY sqlite_autoindex_turns_1"
             " WHERE session_id=? AND seq > ? ORDER BY seq LIMIT ?")
    return {row[0] for row in _scan(conn, query, (session_id,), 0, found) if type(row[0]) is int}


def _scan(conn: sqlite3.Connection, query: str, prefix: tuple, start: int,
          found: Salvage) -> list[tuple]:
    """Rows of ``query`` (params: prefix, after, limit) by its first column, around damage."""
    rows: list[tuple] = []
    after: int | None = start
    limit = 512
    while after is not None:
        try:
            batch = conn.execute(query, (*prefix, after, limit)).fetchall()
        except sqlite3.DatabaseError as exc:
            if "no such" in str(exc):
                return rows  # a table or index the damaged file never had
            batch = None
        if batch is None and limit > 1:
            limit = 1  # read the rows before the damage one at a time
            continue
        if batch is not None and not batch:
            return rows
        if batch is not None:
            rows += [row[1:] for row in batch if row[0] > after]
        if batch is None or batch[-1][0] <= after:  # unreadable, or keys out of order
            found.unreadable_regions += 1
            after, limit = _first_readable_after(conn, query, prefix, after + (batch is not None)), 512
            continue
        after = batch[-1][0]
    return rows


def _first_readable_after(conn: sqlite3.Connection, query: str, prefix: tuple,
                          after: int) -> int | None:
    """The smallest jump past ``after`` from which the query reads again, or None."""
    def readable(step: int) -> bool:
        try:
            conn.execute(query, (*prefix, min(after + step, _INT64_MAX), 1)).fetchall()
            return True
        except sqlite3.DatabaseError:
            return False

    step = 1
    while not readable(step):
        if after + step >= _INT64_MAX:
            return None
        step *= 2
    low = step // 2  # unreadable (or 0), step readable: narrow down between them
    while step - low > 1:
        middle = (low + step) // 2
        low, step = (low, middle) if readable(middle) else (middle, step)
    return min(after + step, _INT64_MAX)


def _plausible_turn(row: tuple) -> bool:
    session_id, seq, chat_type, content, report_ms, captured_ms, interrupted, status = row[:8]
    numbers = (seq, report_ms, captured_ms, row[8], row[10], row[12], row[14])
    return (isinstance(session_id, str) and bool(session_id) and all(type(n) is int for n in numbers)
            and seq >= 1 and chat_type in (1, 2) and isinstance(content, str)
            and interrupted in (0, 1) and status in _STATUSES)


def _plausible_session(row: tuple) -> bool:
    texts, numbers = (row[0], row[1], row[3]), (row[2], row[4], row[9], row[10], row[11], row[12])
    return all(isinstance(t, str) for t in texts) and all(type(n) is int for n in numbers)
