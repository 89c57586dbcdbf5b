"""The spool's tables, how an older file is brought up to date, and how rows become records.

Bump SCHEMA_VERSION when an older voicelog must no longer write the file. Version 2 added
``turns.wire_limit`` (the split of a long turn is pinned with its wire time), the
``erased_sessions`` tombstones and the trigger that refuses a turn without its session (an
older voicelog would resume split turns wrongly and could write turns for an erased session,
so it is refused, ``SpoolError`` "upgrade voicelog"), and ``turns.meta`` (what LiveKit measured
about the turn, and its language, as JSON). An added table is not such a change (older code
ignores it): ``losses`` and the memory tables kept the version. ``MIGRATIONS`` brings a
version-1 file up to date inside the same transaction that stamps the new version.
"""

from __future__ import annotations

import hashlib

from voicelog.services.domain import (
    ChatType,
    SessionRecord,
    Turn,
    TurnStatus,
    mac_from_room_name,
    turn_meta_from_json,
)

SCHEMA_VERSION = 2

SCHEMA = (
    "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
    """CREATE TABLE IF NOT EXISTS sessions (
        session_id TEXT PRIMARY KEY,
        mac TEXT NOT NULL,
        mac_valid INTEGER NOT NULL,
        mac_source TEXT NOT NULL,
        started_ms INTEGER NOT NULL,
        ended_ms INTEGER,
        end_reason TEXT,
        owner TEXT,
        agent_id TEXT,
        skipped INTEGER NOT NULL DEFAULT 0,
        last_wire_time INTEGER NOT NULL DEFAULT 0,
        flush_requested INTEGER NOT NULL DEFAULT 0,
        updated_ms INTEGER NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS turns (
        session_id TEXT NOT NULL,
        seq INTEGER NOT NULL,
        chat_type INTEGER NOT NULL,
        content TEXT NOT NULL,
        report_ms INTEGER NOT NULL,
        captured_ms INTEGER NOT NULL,
        interrupted INTEGER NOT NULL DEFAULT 0,
        status TEXT NOT NULL,
        attempts INTEGER NOT NULL DEFAULT 0,
        last_error TEXT,
        next_attempt_ms INTEGER NOT NULL DEFAULT 0,
        wire_time INTEGER,
        parts_sent INTEGER NOT NULL DEFAULT 0,
        delivered_ms INTEGER,
        updated_ms INTEGER NOT NULL,
        meta TEXT,
        wire_limit INTEGER,
        UNIQUE (session_id, seq))""",
    "CREATE INDEX IF NOT EXISTS turns_by_status ON turns (status, session_id, seq)",
    # What could not be kept, counted where support staff and the shipper can see it:
    # capture writes dropped while the disk was full, turns lost to a damaged spool file.
    """CREATE TABLE IF NOT EXISTS losses (
        at_ms INTEGER NOT NULL,
        session_id TEXT,
        kind TEXT NOT NULL,
        count INTEGER NOT NULL,
        detail TEXT)""",
    # Conversation memory reads a device's recent sessions by MAC at every session start.
    "CREATE INDEX IF NOT EXISTS sessions_by_mac ON sessions (mac, started_ms)",
    # A device's forget cut-off: turns captured at or before it are never preloaded again (they
    # stay for delivery). ``synced``: the same cut-off is applied in Redis too.
    """CREATE TABLE IF NOT EXISTS memory_forget (
        mac TEXT PRIMARY KEY,
        cutoff_ms INTEGER NOT NULL,
        synced INTEGER NOT NULL DEFAULT 0)""",
    # What each session's memory read at start gave (job processes write it; /metrics counts it).
    """CREATE TABLE IF NOT EXISTS memory_preloads (
        session_id TEXT PRIMARY KEY,
        at_ms INTEGER NOT NULL,
        outcome TEXT NOT NULL,
        store TEXT NOT NULL,
        fell_back INTEGER NOT NULL,
        turns INTEGER NOT NULL)""",
    # Sessions erased on request, by a digest of their id (the id itself names the device):
    # a capture still running for one is refused instead of bringing it back.
    """CREATE TABLE IF NOT EXISTS erased_sessions (
        digest TEXT PRIMARY KEY,
        erased_ms INTEGER NOT NULL)""",
    # A user turn's audio (audio.enabled): an Ogg/Opus clip, sealed like the text when encryption
    # is on. ``data`` is NULL while the clip is being encoded (the row reserves its place, so
    # delivery can wait a moment for it); ``digest`` is the SHA-256 of ``data`` as stored, so
    # ``backups verify`` can tell a damaged clip. Added without a version bump: the trigger
    # below lives in the file, so even an older voicelog that deletes turns deletes their clips.
    """CREATE TABLE IF NOT EXISTS clips (
        session_id TEXT NOT NULL,
        seq INTEGER NOT NULL,
        created_ms INTEGER NOT NULL,
        seconds REAL NOT NULL DEFAULT 0,
        bytes INTEGER NOT NULL DEFAULT 0,
        digest TEXT,
        data BLOB,
        PRIMARY KEY (session_id, seq))""",
    # A clip never outlives its turn: erasure, retention, purge and repairs delete turns, and
    # the clips go with them whatever path deleted them.
    """CREATE TRIGGER IF NOT EXISTS clips_follow_their_turn AFTER DELETE ON turns
        BEGIN DELETE FROM clips WHERE session_id=OLD.session_id AND seq=OLD.seq; END""",
    # The clips' total size, kept by triggers, so the cap check at each turn's end is one row
    # read, not a scan of every clip (the meta row is created, from a scan, when missing).
    """INSERT OR IGNORE INTO meta VALUES ('clip_bytes', (SELECT COALESCE(SUM(bytes), 0) FROM clips))""",
    """CREATE TRIGGER IF NOT EXISTS clip_bytes_on_fill AFTER UPDATE OF bytes ON clips
        BEGIN UPDATE meta SET value=CAST(value AS INTEGER) + NEW.bytes - OLD.bytes WHERE key='clip_bytes'; END""",
    """CREATE TRIGGER IF NOT EXISTS clip_bytes_on_delete AFTER DELETE ON clips
        BEGIN UPDATE meta SET value=CAST(value AS INTEGER) - OLD.bytes WHERE key='clip_bytes'; END""",
    # A turn never exists without its session: every command and the shipper find a turn
    # through its session row, so a turn without one would be stranded for good.
    """CREATE TRIGGER IF NOT EXISTS turns_need_their_session BEFORE INSERT ON turns
        WHEN NOT EXISTS (SELECT 1 FROM sessions WHERE session_id=NEW.session_id)
        BEGIN SELECT RAISE(ABORT, 'voicelog: no session row for this turn'); END""",
)
NO_SESSION_MESSAGE = "voicelog: no session row for this turn"

# From version N-1 to N; each statement runs only when its column is missing (see _connection).
MIGRATIONS: dict[int, tuple[tuple[str, str, str], ...]] = {
    2: (("turns", "meta", "ALTER TABLE turns ADD COLUMN meta TEXT"),
        ("turns", "wire_limit", "ALTER TABLE turns ADD COLUMN wire_limit INTEGER")),
}

TURN_COLUMNS = ("session_id", "seq", "chat_type", "content", "report_ms", "captured_ms",
                "interrupted", "status", "attempts", "last_error", "next_attempt_ms", "wire_time",
                "parts_sent", "delivered_ms", "updated_ms", "meta", "wire_limit")
SESSION_COLUMNS = ("session_id", "mac", "mac_valid", "mac_source", "started_ms", "ended_ms",
                   "end_reason", "owner", "agent_id", "skipped", "last_wire_time",
                   "flush_requested", "updated_ms")
ERASED_COLUMNS = ("digest", "erased_ms")

# The columns read into records, in the order turn_record / session_record unpack them.
TURN_FIELDS = ("session_id, seq, chat_type, content, report_ms, captured_ms, interrupted, "
               "status, attempts, last_error, next_attempt_ms, wire_time, delivered_ms, meta, wire_limit")
SESSION_FIELDS = ("session_id, mac, mac_valid, mac_source, started_ms, ended_ms, end_reason, "
                  "owner, agent_id, skipped, last_wire_time")


def turn_record(row: tuple) -> Turn:
    """A Turn from a row of TURN_FIELDS."""
    (session_id, seq, chat_type, content, report_ms, captured_ms, interrupted, status,
     attempts, last_error, next_attempt_ms, wire_time, delivered_ms, meta, wire_limit) = row
    # Plain dict look-ups instead of Enum(value) calls (~0.5 us each, two per turn read); a value
    # not in them still goes through the Enum, which raises as before.
    return Turn(session_id, seq, _CHAT_TYPES.get(chat_type) or ChatType(chat_type), content, report_ms,
                captured_ms, bool(interrupted), _STATUSES.get(status) or TurnStatus(status), attempts,
                last_error, next_attempt_ms, wire_time, delivered_ms,
                turn_meta_from_json(meta) if meta is not None else None, wire_limit)


_CHAT_TYPES = {int(c): c for c in ChatType}
_STATUSES = {s.value: s for s in TurnStatus}


def session_record(row: tuple) -> SessionRecord:
    """A SessionRecord from a row of SESSION_FIELDS."""
    (session_id, mac, mac_valid, mac_source, started_ms, ended_ms, end_reason, owner,
     agent_id, skipped, last_wire_time) = row
    return SessionRecord(session_id, mac, bool(mac_valid), mac_source, started_ms, ended_ms,
                         end_reason, owner, agent_id, skipped, last_wire_time)


def turn_row(turn: Turn, updated_ms: int) -> tuple:
    """A row of TURN_COLUMNS from a Turn (parts_sent starts at 0)."""
    return (turn.session_id, turn.seq, int(turn.chat_type), turn.content, turn.report_ms,
            turn.captured_ms, int(turn.interrupted), turn.status.value, turn.attempts,
            turn.last_error, turn.next_attempt_ms, turn.wire_time, 0, turn.delivered_ms, updated_ms,
            turn.meta.to_json() if turn.meta else None, turn.wire_limit)


def session_row(session: SessionRecord, updated_ms: int) -> tuple:
    """A row of SESSION_COLUMNS from a SessionRecord (no flush requested)."""
    return (session.session_id, session.mac, int(session.mac_valid), session.mac_source,
            session.started_ms, session.ended_ms, session.end_reason, session.owner,
            session.agent_id, session.skipped, session.last_wire_time, 0, updated_ms)


def orphan_session_row(session_id: str, started_ms: int, now_ms: int) -> tuple:
    """A session row (SESSION_COLUMNS) for turns whose own row was lost: the room name may give the MAC.

    Shared by recovery (a damaged file lost the row) and the orphan repair (an older voicelog
    erased the row while capture went on). The session counts as ended, so it is delivered.
    """
    mac = mac_from_room_name(session_id)
    return (session_id, mac or "unknown", int(mac is not None), "room_name" if mac else "none",
            started_ms, now_ms, "recovered", None, None, 0, 0, 0, now_ms)


def erased_digest(session_id: str) -> str:
    """The key a tombstone is kept under: a digest, so the erased id (and its MAC) is not kept."""
    return hashlib.sha256(b"voicelog-erased\0" + session_id.encode("utf-8", "surrogatepass")).hexdigest()
