"""The backup document: records to JSON and back (docs/backup-format.md), and file names.

``session_document`` turns records into a document; ``document_records`` is the one converter
from a checked document back to records, used by every reader (support tools, recovery, replay).
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache
from pathlib import Path
from typing import Any

from voicelog.services.domain import ChatType, SessionRecord, Turn, TurnStatus, checked_turn_meta

BACKUP_FORMAT = "voicelog.session-backup"
BACKUP_VERSION = 2  # 2 added each turn's optional "language" and "metrics"
READABLE_VERSIONS = (1, 2)  # every version this voicelog lists, shows, verifies and replays
_SAFE_NAME = re.compile(r"[^A-Za-z0-9._-]")
# Safe in a file name as it is: never a leading dot (hidden, and the writers' temporary files).
_SAFE_FILE_ID = re.compile(r"^[A-Za-z0-9_~-][A-Za-z0-9._~-]{0,79}$")


@dataclass(frozen=True)
class Backup:
    """One backup file read into records."""

    path: Path
    session: SessionRecord
    turns: tuple[Turn, ...]
    written_ms: int


def iso_ms(ms: int | None) -> str | None:
    """An epoch-millisecond time as ISO 8601 UTC with milliseconds (``2026-11-28T14:21:24.123+00:00``)."""
    if ms is None:
        return None
    if type(ms) is not int:  # (a float or an int subclass from some caller: the plain way)
        return datetime.fromtimestamp(ms / 1000, tz=UTC).isoformat(timespec="milliseconds")
    # Every backup write formats two times per turn, and a session's times share a few seconds:
    # the date and time up to the second come from a small cache, the milliseconds are appended.
    # Floor division keeps times before 1970 right (-500 ms is 23:59:59.500 of the day before).
    return f"{_iso_second(ms // 1000)}.{ms % 1000:03d}+00:00"


@lru_cache(maxsize=4096)
def _iso_second(second: int) -> str:
    return datetime.fromtimestamp(second, tz=UTC).isoformat(timespec="seconds")[:-6]  # without +00:00


def iso_to_ms(text: str | None) -> int | None:
    """Epoch ms of an ISO 8601 time (UTC when it names no zone); ValueError if it is not one."""
    if text is None:
        return None
    when = datetime.fromisoformat(text)
    return int((when if when.tzinfo else when.replace(tzinfo=UTC)).timestamp() * 1000)


def day_folder(started_ms: int) -> str:
    """The day folder (UTC date of the session's start) a backup lives in."""
    return datetime.fromtimestamp(started_ms / 1000, tz=UTC).strftime("%Y-%m-%d")


def backup_file_name(session_id: str) -> str:
    """A file name that is safe on any filesystem and unique per session id (injective).

    An id of safe characters (every id voicelog makes: a room name, or one rewritten with ``~``)
    is the name itself. Any other id (an older voicelog's, or a hand-made backup's) is cleaned
    and marked with ``=`` and a digest of the exact id: ``=`` is never in a safe id, so such a
    name can equal no other session's.
    """
    if _SAFE_FILE_ID.match(session_id):
        return f"{session_id}.json"
    digest = hashlib.sha256(session_id.encode("utf-8", "surrogatepass")).hexdigest()[:16]
    return f"{_SAFE_NAME.sub('_', session_id).lstrip('.')[:64]}={digest}.json"


def session_document(session: SessionRecord, turns: list[Turn], written_ms: int) -> dict[str, Any]:
    """The backup document for a session (see docs/backup-format.md)."""
    return {
        "format": BACKUP_FORMAT,
        "version": BACKUP_VERSION,
        "session_id": session.session_id,
        "mac": session.mac,
        "mac_valid": session.mac_valid,
        "mac_source": session.mac_source,
        "agent_id": session.agent_id,
        "started_at": iso_ms(session.started_ms),
        "started_ms": session.started_ms,
        "ended_at": iso_ms(session.ended_ms),
        "ended_ms": session.ended_ms,
        "end_reason": session.end_reason,
        "skipped_empty_turns": session.skipped,
        "written_at": iso_ms(written_ms),
        "turns": [_turn_entry(turn) for turn in turns],
    }


def _turn_entry(turn: Turn) -> dict[str, Any]:
    return {
        "id": turn.turn_id,
        "seq": turn.seq,
        "chat_type": int(turn.chat_type),
        "role": "user" if turn.chat_type == ChatType.USER else "agent",
        "content": turn.content,
        "report_time_ms": turn.report_ms,
        "captured_at": iso_ms(turn.captured_ms),
        "interrupted": turn.interrupted,
        "status": turn.status.value,
        "attempts": turn.attempts,
        "last_error": turn.last_error,
        "delivered_at": iso_ms(turn.delivered_ms),
        **_meta_fields(turn),
    }


def _meta_fields(turn: Turn) -> dict[str, Any]:
    # Only what was measured: a turn without measurements looks as it did in version 1.
    fields: dict[str, Any] = {}
    if turn.meta is not None and turn.meta.language is not None:
        fields["language"] = turn.meta.language
    if turn.meta is not None and turn.meta.metrics:
        fields["metrics"] = dict(turn.meta.metrics)
    return fields


def document_records(path: Path, document: dict[str, Any]) -> Backup:
    """Records from a checked backup document; what backups do not keep starts afresh.

    (The owner, wire time, retry time and split progress are this box's delivery state.)
    """
    session_id = document["session_id"]
    session = SessionRecord(session_id, document["mac"], document["mac_valid"],
                            document["mac_source"], document["started_ms"], document["ended_ms"],
                            document["end_reason"], None, document["agent_id"],
                            document["skipped_empty_turns"], 0)
    turns = tuple(
        Turn(session_id, t["seq"], ChatType(t["chat_type"]), t["content"], t["report_time_ms"],
             iso_to_ms(t["captured_at"]) or 0, t["interrupted"], TurnStatus(t["status"]),
             t["attempts"], t["last_error"], 0, None, iso_to_ms(t["delivered_at"]),
             checked_turn_meta(t.get("metrics") or {}, t.get("language")) or None)
        for t in document["turns"])
    return Backup(path, session, turns, iso_to_ms(document["written_at"]) or 0)


_ENCODER = json.JSONEncoder(ensure_ascii=False)


def render(document: dict[str, Any]) -> str:
    """JSON with one turn per line: readable with less, and fast (indent= uses the slow encoder)."""
    encode = _ENCODER.encode  # one encoder for every line: json.dumps(ensure_ascii=False) builds one per call
    head = encode({k: v for k, v in document.items() if k != "turns"})
    return _assembled(head, ",\n  ".join(encode(turn) for turn in document["turns"]))


_string = json.encoder.encode_basestring  # the C escaper JSONEncoder(ensure_ascii=False) uses
_ROLES = {ChatType.USER: '"user"'}
_AGENT = '"agent"'


def render_session(session: SessionRecord, turns: list[Turn], written_ms: int) -> str:
    """``render(session_document(...))``, byte for byte, without the dicts in between.

    The shipper writes a session's backup after every delivery that finishes it; building a
    dict per turn and encoding it was most of the Python time of that write.
    (tests/backup/test_backup_render.py holds the two to the same text.)
    """
    head = _ENCODER.encode({k: v for k, v in session_document(session, [], written_ms).items() if k != "turns"})
    return _assembled(head, ",\n  ".join(map(_turn_line, turns)))


def _assembled(head: str, turns: str) -> str:
    """The document's head object with its turns (already encoded, joined) as the last field."""
    return f'{head[:-1]}, "turns": [\n  {turns}\n]}}\n' if turns else f'{head[:-1]}, "turns": []}}\n'


def _turn_line(turn: Turn) -> str:
    meta = _meta_fields(turn) if turn.meta is not None else None
    return (f'{{"id": {_string(turn.turn_id)}, "seq": {_number(turn.seq)}, '
            f'"chat_type": {int(turn.chat_type)}, "role": {_ROLES.get(turn.chat_type, _AGENT)}, '
            f'"content": {_string(turn.content)}, "report_time_ms": {_number(turn.report_ms)}, '
            f'"captured_at": {_optional_time(turn.captured_ms)}, '
            f'"interrupted": {_boolean(turn.interrupted)}, '
            f'"status": {_string(turn.status.value)}, "attempts": {_number(turn.attempts)}, '
            f'"last_error": {"null" if turn.last_error is None else _string(turn.last_error)}, '
            f'"delivered_at": {_optional_time(turn.delivered_ms)}'
            + (f', {_ENCODER.encode(meta)[1:-1]}}}' if meta else '}'))


def _number(value: int | None) -> str:
    # As the encoder writes it: int.__repr__ for the ints stored columns hold, the encoder for anything else.
    if value is None:
        return "null"
    return int.__repr__(value) if type(value) is int else _ENCODER.encode(value)


def _boolean(value: bool) -> str:
    if type(value) is bool:
        return "true" if value else "false"
    return _ENCODER.encode(value)


def _optional_time(ms: int | None) -> str:
    return "null" if ms is None else f'"{iso_ms(ms)}"'

