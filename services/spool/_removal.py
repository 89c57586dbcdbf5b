"""Taking sessions out of the spool for good: erasure on request, and retention's expired sessions.

Every deletion of a session goes through ``delete_session``, so its turns, its row and its memory
preload record always leave together, and the memory writer's floor is lowered with them.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable
from dataclasses import dataclass

from voicelog.services.domain import DONE, SessionRecord
from voicelog.services.spool import _queries as q
from voicelog.services.spool._connection import SpoolConnection
from voicelog.services.spool._schema import erased_digest, session_record
from voicelog.services.spool._values import json_list


@dataclass(frozen=True)
class Erasure:
    """How thoroughly an erasure could scrub the spool file right now."""

    rewritten: bool  # the whole file was rebuilt (no fragment of the erased rows anywhere in it)
    wal_truncated: bool  # no old page image left in the WAL (a reader elsewhere can delay this)


@dataclass(frozen=True)
class EndedSession:
    """An ended session with its turn count and how many turns are not yet done."""

    session: SessionRecord
    turns: int
    undone: int


def erase_sessions(connection: SpoolConnection, session_ids: Iterable[str], now_ms: int) -> Erasure:
    """Delete sessions for good, leave their tombstones, and scrub the file (see ``Spool.erase_sessions``)."""

    with connection.write() as db:
        for session_id in session_ids:
            delete_session(db, session_id)
            db.execute(q.LOSSES_FORGET_SESSION, (session_id,))
            db.execute(q.ERASED_INSERT, (erased_digest(session_id), now_ms))
        db.execute(q.MEMORY_FLOOR_LOWER)
    rewritten = connection.rewrite_file()
    if not rewritten:
        with connection.write() as db:
            # Index interior pages keep copies of keys (the erased ids) as dividers.
            db.execute(q.REINDEX_TURNS)
            db.execute(q.REINDEX_SESSIONS)
    return Erasure(rewritten, connection.truncate_wal())


def ended_before(db: sqlite3.Connection, cutoff_ms: int) -> list[EndedSession]:
    """Sessions that ended before ``cutoff_ms``, oldest end first, with their counts."""
    rows = db.execute(q.SESSIONS_ENDED_BEFORE, (cutoff_ms, json_list(DONE))).fetchall()
    return [EndedSession(session_record(row[:-2]), row[-2], row[-1]) for row in rows]


def delete_expired(connection: SpoolConnection, candidates: Iterable[tuple[str, int, bool]]) -> list[str]:
    """Delete each candidate still ended before its cutoff, in one short transaction; what went."""
    removed = []
    with connection.write() as db:
        for session_id, cutoff, undone_ok in candidates:
            if db.execute(q.SESSION_STILL_EXPIRED,
                          (session_id, cutoff, int(undone_ok), json_list(DONE))).fetchone():
                delete_session(db, session_id)
                removed.append(session_id)
        db.execute(q.MEMORY_FLOOR_LOWER)
    return removed


def delete_session(db: sqlite3.Connection, session_id: str) -> None:
    """A session's turns, its row and its memory preload record, inside the caller's transaction."""
    db.execute(q.TURNS_DELETE_OF_SESSION, (session_id,))
    db.execute(q.SESSION_DELETE, (session_id,))
    db.execute(q.MEMORY_PRELOADS_DELETE_OF_SESSION, (session_id,))
