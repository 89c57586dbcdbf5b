"""Per-session JSON backups: one human-readable file per device session, written atomically.

Layout: ``<backup_dir>/<YYYY-MM-DD of session start, UTC>/<session file name>.json``.
The file is derived from the spool, so whoever writes it last writes the newest truth; an
advisory lock on the backup directory keeps two writers (job process, shipper) from interleaving.
``read_backup_document`` is the strict reader spool recovery uses: a file it refuses is damaged.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import re
import shutil
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import structlog

from voicelog.services.domain._models import ChatType, SessionRecord, Turn, TurnStatus

if TYPE_CHECKING:  # the spool uses this module to recover, so import it for types only
    from voicelog.services.spool._spool import Spool

log = structlog.get_logger("voicelog.backup")
BACKUP_FORMAT = "voicelog.session-backup"
BACKUP_VERSION = 1
_SAFE_NAME = re.compile(r"[^A-Za-z0-9._-]")
_DAY_DIR = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_STATUSES = frozenset(status.value for status in TurnStatus)
# Field -> accepted types, for the strict reader (bool is checked apart: it is an int in Python).
_SESSION_FIELDS = {"session_id": (str,), "mac": (str,), "mac_valid": (bool,), "mac_source": (str,),
                   "agent_id": (str, type(None)), "started_ms": (int,), "ended_ms": (int, type(None)),
                   "end_reason": (str, type(None)), "skipped_empty_turns": (int,), "turns": (list,)}
_TURN_FIELDS = {"seq": (int,), "chat_type": (int,), "content": (str,), "report_time_ms": (int,),
                "captured_at": (str,), "interrupted": (bool,), "status": (str,), "attempts": (int,),
                "last_error": (str, type(None)), "delivered_at": (str, type(None))}


class BackupDamaged(ValueError):
    """A backup file cannot be read as a voicelog session backup; the message says why."""


class BackupTooNew(BackupDamaged):
    """A backup written by a newer voicelog: not damaged, just not ours to read or move."""


def iso_ms(ms: int | None) -> str | None:
    """An epoch-millisecond time as ISO 8601 UTC with milliseconds."""
    if ms is None:
        return None
    return datetime.fromtimestamp(ms / 1000, tz=UTC).isoformat(timespec="milliseconds")


def backup_file_name(session_id: str) -> str:
    """A file name that is safe on any filesystem and still unique per session id."""
    safe = _SAFE_NAME.sub("_", session_id)[:80]
    if safe != session_id or safe.startswith("."):
        digest = hashlib.sha256(session_id.encode("utf-8", "surrogatepass")).hexdigest()[:10]
        safe = f"{safe.lstrip('.')}-{digest}"
    return f"{safe}.json"


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
    }


class BackupWriter:
    """Write a session's backup file from the spool, atomically and under a per-file lock."""

    def __init__(self, backup_dir: str | os.PathLike[str], *, fsync: bool = False) -> None:
        self.backup_dir = Path(backup_dir)
        self.fsync = fsync

    def path_for(self, session: SessionRecord) -> Path:
        """Where a session's backup lives."""
        day = datetime.fromtimestamp(session.started_ms / 1000, tz=UTC).strftime("%Y-%m-%d")
        return self.backup_dir / day / backup_file_name(session.session_id)

    def write(self, spool: Spool, session_id: str, now_ms: int) -> Path | None:
        """Rewrite the session's backup from the spool's current state; None if no such session."""
        session = spool.session(session_id)
        if session is None:
            return None
        target = self.path_for(session)
        target.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        with self.locked():
            # Read inside the lock so a slower writer can never replace newer state.
            session = spool.session(session_id) or session
            document = session_document(session, spool.turns(session_id), now_ms)
            self._replace(target, document)
        return target

    def locked(self) -> _FileLock:
        """The lock every writer and deleter of backup files holds while it changes one."""
        self.backup_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        return _FileLock(self.backup_dir / ".write.lock")

    def _replace(self, target: Path, document: dict[str, Any]) -> None:
        data = _render(document).encode("utf-8", "surrogatepass")
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".tmp-", suffix=".json")
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
                if self.fsync:
                    handle.flush()
                    os.fsync(handle.fileno())
            os.chmod(tmp, 0o600)
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        if self.fsync:
            _fsync_dir(target.parent)


class _FileLock:
    """An exclusive advisory lock on one file for the duration of a with-block."""

    def __init__(self, lock_path: Path) -> None:
        self._lock_path = lock_path
        self._fd = -1

    def __enter__(self) -> None:
        self._fd = os.open(self._lock_path, os.O_CREAT | os.O_RDWR, 0o600)
        fcntl.flock(self._fd, fcntl.LOCK_EX)

    def __exit__(self, *exc: object) -> None:
        fcntl.flock(self._fd, fcntl.LOCK_UN)
        os.close(self._fd)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def backup_files(backup_dir: str | os.PathLike[str], *, since_ms: int | None = None,
                 until_ms: int | None = None) -> list[Path]:
    """Session backup files (``*.json`` in day folders only), skipping days outside the range."""
    first = _day(since_ms) if since_ms is not None else None
    last = _day(until_ms - 1) if until_ms is not None else None
    try:
        days = sorted(p for p in Path(backup_dir).iterdir() if p.is_dir() and _DAY_DIR.match(p.name))
    except FileNotFoundError:
        return []
    return [f for day in days if not ((first and day.name < first) or (last and day.name > last))
            for f in sorted(day.glob("*.json")) if not f.name.startswith(".")]


def _day(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d")


def read_backup_document(path: Path) -> dict[str, Any]:
    """The backup document in ``path``, checked field by field; BackupDamaged says what is wrong."""
    try:
        document = json.loads(path.read_bytes().decode("utf-8", "surrogatepass"))
    except (OSError, UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise BackupDamaged(f"unreadable: {type(exc).__name__}: {str(exc)[:200]}") from None
    if not isinstance(document, dict) or document.get("format") != BACKUP_FORMAT:
        raise BackupDamaged("not a voicelog session backup")
    version = document.get("version")
    if isinstance(version, int) and not isinstance(version, bool) and version > BACKUP_VERSION:
        raise BackupTooNew(f"backup version {version} is newer than this voicelog's {BACKUP_VERSION}")
    if version != BACKUP_VERSION:
        raise BackupDamaged(f"unknown backup version {version!r}")
    _check_fields(document, _SESSION_FIELDS, "session")
    for index, turn in enumerate(document["turns"]):
        if not isinstance(turn, dict):
            raise BackupDamaged(f"turns[{index}] is not an object")
        _check_fields(turn, _TURN_FIELDS, f"turns[{index}]")
        if turn["seq"] < 1 or turn["chat_type"] not in (1, 2) or turn["status"] not in _STATUSES:
            raise BackupDamaged(f"turns[{index}] has an impossible seq, chat_type or status")
        for key in ("captured_at", "delivered_at"):
            if turn[key] is not None:
                _iso_ms(turn[key], f"turns[{index}].{key}")
    if not document["session_id"]:
        raise BackupDamaged("empty session_id")
    return document


def _check_fields(entry: dict[str, Any], fields: dict[str, tuple[type, ...]], where: str) -> None:
    for key, types in fields.items():
        value = entry.get(key, KeyError)
        if value is KeyError or not isinstance(value, types) or (
                isinstance(value, bool) and bool not in types):
            raise BackupDamaged(f"{where}.{key} is missing or not {'/'.join(t.__name__ for t in types)}")


def _iso_ms(text: str, where: str) -> int:
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        raise BackupDamaged(f"{where} is not an ISO 8601 time") from None
    return int((when if when.tzinfo else when.replace(tzinfo=UTC)).timestamp() * 1000)


def iso_to_ms(text: str | None) -> int | None:
    """Epoch ms of a time as backups write it (already checked by read_backup_document)."""
    return None if text is None else _iso_ms(text, "time")


def document_rows(document: dict[str, Any], now_ms: int) -> tuple[tuple, list[tuple]]:
    """A checked backup as spool rows: (sessions row, turns rows), in spool_schema's columns.

    What backups do not keep (owner, wire time, retry time, parts sent) starts afresh.
    """
    session_id = document["session_id"]
    session = (session_id, document["mac"], int(document["mac_valid"]), document["mac_source"],
               document["started_ms"], document["ended_ms"], document["end_reason"], None,
               document["agent_id"], document["skipped_empty_turns"], 0, 0, now_ms)
    turns = [(session_id, t["seq"], t["chat_type"], t["content"], t["report_time_ms"],
              iso_to_ms(t["captured_at"]) or 0, int(t["interrupted"]), t["status"], t["attempts"],
              t["last_error"], 0, None, 0, iso_to_ms(t["delivered_at"]), now_ms)
             for t in document["turns"]]
    return session, turns


def quarantine_backup(path: Path, backup_dir: Path, quarantine_dir: Path, why: str) -> str:
    """Move a damaged backup file under ``quarantine_dir/backups``; returns its relative path."""
    relative = path.relative_to(backup_dir)
    target = quarantine_dir / "backups" / relative
    target.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    shutil.move(path, target)
    log.error("backup_quarantined", path=str(relative), reason=why, quarantine=str(quarantine_dir))
    return str(relative)


def damaged_backups(backup_dir: str | os.PathLike[str]) -> list[tuple[Path, str]]:
    """Every backup file the strict reader refuses, with why."""
    damaged = []
    for path in backup_files(backup_dir):
        try:
            read_backup_document(path)
        except BackupTooNew:
            continue
        except BackupDamaged as exc:
            damaged.append((path, str(exc)))
    return damaged


def rewrite_backups(spool: Spool, backup_dir: Path, relative_paths: list[str], now_ms: int) -> list[str]:
    """Write afresh, from the spool, each listed backup whose session the spool still has."""
    writer, wanted, written = BackupWriter(backup_dir), set(relative_paths), []
    for session in spool.sessions():
        relative = str(writer.path_for(session).relative_to(backup_dir))
        if relative in wanted:
            writer.write(spool, session.session_id, now_ms)
            written.append(relative)
    return written


def _render(document: dict[str, Any]) -> str:
    """JSON with one turn per line: readable with less, and fast (indent= uses the slow encoder)."""
    head = json.dumps({k: v for k, v in document.items() if k != "turns"}, ensure_ascii=False)
    turns = ",\n  ".join(json.dumps(turn, ensure_ascii=False) for turn in document["turns"])
    return f'{head[:-1]}, "turns": [\n  {turns}\n]}}\n' if turns else f'{head[:-1]}, "turns": []}}\n'
