"""Turns whose session row is gone: find them, show them, and give them a session row again.

An older voicelog's purge erased a live session's row while its capture went on writing turns,
which then no command and no shipper could see. Since schema 2 a trigger refuses such turns;
this repairs what an older version left: each group of orphan turns gets the session row
recovery would give it (``orphan_session_row``: ended, MAC from the room name when it has one).
"""

from __future__ import annotations

import sqlite3

import structlog

from voicelog.services.domain import SessionRecord
from voicelog.services.spool import _queries as q
from voicelog.services.spool._connection import SpoolConnection
from voicelog.services.spool._schema import SESSION_FIELDS, orphan_session_row, session_record

log = structlog.get_logger("voicelog.spool")
_SESSION_FIELD_COUNT = len(SESSION_FIELDS.split(","))


def orphan_counts(db: sqlite3.Connection, now_ms: int) -> list[tuple[SessionRecord, dict[str, int]]]:
    """Each orphan group as the session it will become, with its turns per status."""
    groups: dict[str, tuple[int, dict[str, int]]] = {}
    for session_id, first_ms, status, count in db.execute(q.ORPHAN_COUNTS):
        started, counts = groups.get(session_id, (first_ms, {}))
        counts[status] = count
        groups[session_id] = (min(started, first_ms), counts)
    return [(_record(orphan_session_row(session_id, started, now_ms)), counts)
            for session_id, (started, counts) in groups.items()]


def orphan_ids_of(db: sqlite3.Connection, *, mac: str | None, session_id: str | None) -> set[str]:
    """Ids of orphan groups of a device (by the MAC in the room name) or of one session id."""
    hex_mac = (mac or "").replace(":", "").lower() if mac and mac != "unknown" else ""
    return {row[0] for row in db.execute(q.ORPHAN_IDS_OF_DEVICE, (hex_mac, session_id or ""))}


def adopt_orphans(connection: SpoolConnection, now_ms: int) -> dict[str, int]:
    """Insert a session row for every orphan group, in one transaction; {session id: turns}."""
    with connection.write() as db:
        groups = orphan_counts(db, now_ms)
        for session, _ in groups:
            db.execute(q.SESSION_INSERT_ROW, orphan_session_row(session.session_id, session.started_ms, now_ms))
    adopted = {session.session_id: sum(counts.values()) for session, counts in groups}
    if adopted:
        log.warning("orphan_turns_given_a_session", sessions=len(adopted), turns=sum(adopted.values()),
                    hint="turns an older voicelog left without a session row; they are delivered now")
    return adopted


def _record(row: tuple) -> SessionRecord:
    return session_record(row[:_SESSION_FIELD_COUNT])
