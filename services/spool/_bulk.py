"""Writes of many rows at once, each whole or not at all: a backup's import, a deferred repair's merge."""

from __future__ import annotations

from collections.abc import Callable, Iterable

from voicelog.services.domain import SessionRecord, Turn
from voicelog.services.spool import _queries as q
from voicelog.services.spool._connection import SpoolConnection
from voicelog.services.spool._errors import SessionErased
from voicelog.services.spool._schema import erased_digest

MERGE_BATCH = 500  # turns per transaction: short enough never to hold capture up for long


def turn_values(turn: Turn, content: str) -> tuple:
    """The parameters of TURN_INSERT for a turn (``content`` as it is stored, sealed or not)."""
    return (turn.session_id, turn.seq, int(turn.chat_type), content, turn.report_ms, turn.captured_ms,
            int(turn.interrupted), turn.status.value, turn.attempts, turn.last_error, turn.next_attempt_ms,
            turn.wire_time, turn.delivered_ms, turn.meta.to_json() if turn.meta else None, turn.wire_limit,
            turn.captured_ms)


def import_session(connection: SpoolConnection, seal: Callable[[str], str], session: SessionRecord,
                   turns: Iterable[Turn], *, owner: str, ended_ms: int) -> int:
    """Add a session and the turns the spool lacks in one transaction; returns how many turns.

    All or nothing: a refused value rolls the whole session back. A session erased on request
    is refused (SessionErased). A session new here is ended with the backup's end (or ``ended_ms``).
    """
    sid = session.session_id
    with connection.write() as db:
        if db.execute(q.ERASED_GET, (erased_digest(sid),)).fetchone():
            raise SessionErased(f"session {sid} was erased on request on this box; not importing it")
        created = db.execute(q.SESSION_OWNER, (sid,)).fetchone() is None
        if created:
            db.execute(q.SESSION_OPEN, (sid, session.mac, int(session.mac_valid), session.mac_source,
                                        session.started_ms, owner, session.started_ms))
        have = {row[0] for row in db.execute(q.TURN_SEQS_OF_SESSION, (sid,))}
        added = [turn for turn in turns if turn.seq not in have]
        db.executemany(q.TURN_INSERT, [turn_values(turn, seal(turn.content)) for turn in added])
        if created:
            if session.agent_id:
                db.execute(q.SESSION_SET_AGENT, (session.agent_id, sid))
            db.execute(q.SESSION_ADD_SKIPPED, (session.skipped, sid))
            end = session.ended_ms or ended_ms
            db.execute(q.SESSION_END, (end, session.end_reason or "imported", end, sid))
    return len(added)


def merge_rows(connection: SpoolConnection, sessions: Iterable[tuple], turns: Iterable[tuple],
               losses: Iterable[tuple], erased: Iterable[tuple]) -> tuple[int, int]:
    """Insert salvaged rows, keeping whatever the spool has; (sessions, turns) added."""
    with connection.write() as db:
        added_sessions = sum(db.execute(q.SESSION_INSERT_ROW, row).rowcount for row in sessions)
        db.executemany(q.LOSS_INSERT, [row for row in losses if len(row) == 5])
        db.executemany(q.ERASED_KEEP, list(erased))
    rows, added_turns = sorted(turns, key=lambda r: (r[0], r[1])), 0
    for start in range(0, len(rows), MERGE_BATCH):
        with connection.write() as db:
            added_turns += sum(db.execute(q.TURN_INSERT_ROW, row).rowcount
                               for row in rows[start:start + MERGE_BATCH])
    return added_sessions, added_turns
