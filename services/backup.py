"""Per-session JSON backups: one human-readable file per device session, written atomically.

Layout: ``<backup_dir>/<YYYY-MM-DD of session start, UTC>/<session file name>.json``.
The file is derived from the spool, so whoever writes it last writes the newest truth; an
advisory lock on the backup directory keeps two writers (job process, shipper) from interleaving.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import re
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from services.models import ChatType, SessionRecord, Turn
from services.spool import Spool

BACKUP_FORMAT = "voicelog.session-backup"
BACKUP_VERSION = 1
_SAFE_NAME = re.compile(r"[^A-Za-z0-9._-]")


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
        with _locked(self.backup_dir / ".write.lock"):
            # Read inside the lock so a slower writer can never replace newer state.
            session = spool.session(session_id) or session
            document = session_document(session, spool.turns(session_id), now_ms)
            self._replace(target, document)
        return target

    def _replace(self, target: Path, document: dict[str, Any]) -> None:
        data = json.dumps(document, ensure_ascii=False, indent=1).encode("utf-8", "surrogatepass")
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


class _locked:
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
