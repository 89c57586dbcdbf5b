"""Per-session JSON backups: one human-readable file per device session, written atomically.

Layout: ``<backup_dir>/<YYYY-MM-DD of session start, UTC>/<session file name>.json``.
The file is derived from the spool, so whoever writes it last writes the newest truth; an
advisory lock on the backup directory keeps two writers (job process, shipper) from interleaving.
The writer reads sessions through ``SessionSource``, a Protocol it owns, so this package never
imports the spool (the spool imports it, to recover from backups).
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Protocol

from voicelog.services.backup._folder import TEMP_PREFIX, TEMP_SUFFIX
from voicelog.services.backup._format import backup_file_name, day_folder, render_session
from voicelog.services.domain import FileLock, SessionRecord, Turn


class SessionSource(Protocol):
    """Where backups read sessions from (the spool)."""

    def session(self, session_id: str) -> SessionRecord | None: ...

    def turns(self, session_id: str) -> list[Turn]: ...

    def sessions(self) -> list[SessionRecord]: ...


class BackupWriter:
    """Write a session's backup file from the spool, atomically and under a per-folder lock."""

    def __init__(self, backup_dir: str | os.PathLike[str], *, fsync: bool = False) -> None:
        self.backup_dir = Path(backup_dir)
        self.fsync = fsync
        self._day_folders: set[Path] = set()  # day folders this writer made or found (see write)

    def path_for(self, session: SessionRecord) -> Path:
        """Where a session's backup lives."""
        return self.backup_dir / day_folder(session.started_ms) / backup_file_name(session.session_id)

    def write(self, source: SessionSource, session_id: str, now_ms: int) -> Path | None:
        """Rewrite the session's backup from the source's current state; None if no such session."""
        with self.locked():
            # Read inside the lock so a slower writer can never replace newer state, nor write
            # back a session erased meanwhile (purge deletes files under the same lock).
            session = source.session(session_id)
            if session is None:
                return None
            target = self.path_for(session)
            text = render_session(session, source.turns(session_id), now_ms)
            if target.parent not in self._day_folders:  # one mkdir per day folder, not per write
                self._make_folder(target.parent)
            try:
                self._replace(target, text)
            except FileNotFoundError:
                # The day folder went since (retention removes empty ones): make it again.
                self._make_folder(target.parent)
                self._replace(target, text)
        return target

    def _make_folder(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        self._day_folders.add(folder)

    def rewrite(self, source: SessionSource, relative_paths: Iterable[str], now_ms: int) -> list[str]:
        """Write afresh each listed backup (relative to the folder) whose session the source has."""
        wanted, written = set(relative_paths), []
        for session in source.sessions():
            relative = str(self.path_for(session).relative_to(self.backup_dir))
            if relative in wanted:
                self.write(source, session.session_id, now_ms)
                written.append(relative)
        return written

    def locked(self) -> FileLock:
        """The lock every writer and deleter of backup files holds while it changes one."""
        self.backup_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        return FileLock(self.backup_dir / ".write.lock")

    def _replace(self, target: Path, text: str) -> None:
        try:
            data = text.encode("utf-8")
        except UnicodeEncodeError:  # a lone surrogate from hostile input: readable beats exact
            data = text.encode("utf-8", "replace")
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=TEMP_PREFIX, suffix=TEMP_SUFFIX)
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
                if self.fsync:
                    handle.flush()
                    os.fsync(handle.fileno())
            # No chmod: mkstemp creates the file 0600 whatever the umask (a umask only removes bits).
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        if self.fsync:
            _fsync_dir(target.parent)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
