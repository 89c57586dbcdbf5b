"""List sessions from the spool and the backups alike, and find one by id, prefix or file.

Support staff see a session from two sides: the spool (the truth while its turns are on this
box) and the JSON backups (what outlives the spool and travels between boxes). Both become the
same records here (``SessionRecord`` and ``Turn``), so every ``backups`` command reads alike.
Checking files against the spool is ``_verify``.
"""

from __future__ import annotations

import glob
import os
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path

from voicelog.services.backup import (
    Backup,
    BackupError,
    BackupWriter,
    backup_file_name,
    backup_files,
    linked_files,
    read_backup,
)
from voicelog.services.domain import SessionRecord, Turn
from voicelog.services.sealing import ContentCipher, ContentKeyError, is_sealed
from voicelog.services.spool import Spool


@dataclass(frozen=True)
class SessionView:
    """A session, its turn counts per status and (when loaded whole) its turns."""

    session: SessionRecord
    counts: dict[str, int]
    source: str  # "spool", "backup", or "orphan" (spool turns without a session row, not yet repaired)
    backup_path: Path | None = None
    turns: tuple[Turn, ...] = ()

    def opened(self, cipher: ContentCipher | None) -> SessionView:
        """This view with sealed content opened for people, or marked where no key opens it."""
        if not any(is_sealed(t.content) for t in self.turns):
            return self

        def opened(text: str) -> str:
            if not is_sealed(text):
                return text
            try:
                return cipher.open(text) if cipher else "[encrypted: no key configured]"
            except ContentKeyError:
                return "[encrypted: none of the configured keys opens it]"

        return replace(self, turns=tuple(replace(t, content=opened(t.content)) for t in self.turns))


@dataclass(frozen=True)
class SessionFilter:
    """Which sessions a command is about; an empty field does not filter."""

    session_ids: frozenset[str] = frozenset()
    macs: frozenset[str] = frozenset()
    since_ms: int | None = None
    until_ms: int | None = None  # exclusive
    statuses: frozenset[str] = frozenset()  # sessions having at least one turn in one of these

    def matches(self, session: SessionRecord, counts: Mapping[str, int]) -> bool:
        """Whether a session (with its status counts) passes this filter."""
        if self.session_ids and session.session_id not in self.session_ids:
            return False
        if self.macs and session.mac not in self.macs:
            return False
        if self.since_ms is not None and session.started_ms < self.since_ms:
            return False
        if self.until_ms is not None and session.started_ms >= self.until_ms:
            return False
        return not self.statuses or any(counts.get(s, 0) for s in self.statuses)


def status_counts(turns: Iterable[Turn]) -> dict[str, int]:
    """Turns per status value, only statuses that occur."""
    counts: dict[str, int] = {}
    for turn in turns:
        counts[turn.status.value] = counts.get(turn.status.value, 0) + 1
    return counts


# --- the catalog -----------------------------------------------------------------------------

@dataclass
class Catalog:
    """Sessions on this box: the spool (may be absent) and the backup folder."""

    spool: Spool | None
    backup_dir: Path
    unreadable: list[tuple[Path, str]] = field(default_factory=list)

    def path_for(self, session: SessionRecord) -> Path:
        """Where this box keeps (or would keep) the session's backup."""
        return BackupWriter(self.backup_dir).path_for(session)

    def summaries(self, wanted: SessionFilter) -> list[SessionView]:
        """Sessions passing the filter: spool sessions first-class, then backup-only ones."""
        found = list(self._spool_summaries(wanted))
        known = self.spool_session_ids()
        # Files of spool sessions are never parsed here: the spool is the fresher truth.
        for backup in self.backups(wanted, skip_names={backup_file_name(i) for i in known}):
            if backup.session.session_id in known:
                continue
            counts = status_counts(backup.turns)
            if wanted.matches(backup.session, counts):
                found.append(SessionView(backup.session, counts, "backup", backup.path))
        found.sort(key=lambda s: (s.session.started_ms, s.session.session_id))
        return found

    def backups(self, wanted: SessionFilter | None = None,
                skip_names: set[str] = frozenset()) -> Iterator[Backup]:
        """Readable backups in the filter's date range; unreadable ones are noted, not raised."""
        wanted = wanted or SessionFilter()
        self.unreadable[:] = [(path, "a symbolic link: backups are never read through links")
                              for path in linked_files(self.backup_dir)]
        for path in backup_files(self.backup_dir, since_ms=wanted.since_ms, until_ms=wanted.until_ms):
            if path.name in skip_names:
                continue
            try:
                yield read_backup(path)
            except BackupError as exc:
                self.unreadable.append((path, str(exc)))

    def spool_session_ids(self) -> set[str]:
        """Ids of every session in the spool."""
        return set() if self.spool is None else self.spool.session_ids()

    def _spool_summaries(self, wanted: SessionFilter) -> Iterator[SessionView]:
        if self.spool is None:
            return
        for found in self.spool.session_counts(
                session_ids=wanted.session_ids or None, macs=wanted.macs or None,
                since_ms=wanted.since_ms, until_ms=wanted.until_ms):
            if wanted.matches(found.session, found.counts):
                yield SessionView(found.session, found.counts, "orphan" if found.orphan else "spool",
                                  self._existing(found.session))

    def _existing(self, session: SessionRecord) -> Path | None:
        path = self.path_for(session)
        return path if path.exists() else None

    def load(self, ref: str) -> SessionView:
        """A session by id (or unique id prefix), else by backup file path; KeyError if none."""
        if self.spool is not None:
            session_id = self.resolve_id(ref)
            session = self.spool.session(session_id) if session_id else None
            source = "spool"
            if session is None and session_id is None:
                session, source = self._orphan(ref), "orphan"
            if session is not None:
                turns = tuple(self.spool.turns(session.session_id))
                return SessionView(session, status_counts(turns), source, self._existing(session), turns)
        path = Path(ref) if os.path.isfile(ref) else self.find_file(ref)
        if path is None:
            raise KeyError(f"no session {ref!r} in the spool or in {self.backup_dir}")
        backup = read_backup(path)
        return SessionView(backup.session, status_counts(backup.turns), "backup", path, backup.turns)

    def _orphan(self, ref: str) -> SessionRecord | None:
        """Turns without a session row whose session id is ``ref`` (or starts with it, uniquely)."""
        assert self.spool is not None
        found = [o.session for o in self.spool.orphans() if o.session.session_id.startswith(ref)]
        exact = [s for s in found if s.session_id == ref]
        return (exact or found)[0] if len(exact or found) == 1 else None

    def resolve_id(self, ref: str) -> str | None:
        """The session id ``ref`` names exactly or as a unique prefix; ValueError if ambiguous."""
        if self.spool is None:
            return None
        ids = self.spool.session_ids_with_prefix(ref, limit=6)
        if ref in ids or len(ids) <= 1:
            return ref if ref in ids else (ids[0] if ids else None)
        raise ValueError(f"{ref!r} matches several sessions: {', '.join(ids[:5])}; give more of the id")

    def find_file(self, session_id: str) -> Path | None:
        """The backup file of a session id (or of a unique start of one), in any day folder."""
        if "/" in session_id:
            return None
        name = backup_file_name(session_id)
        matches = sorted(Path(self.backup_dir).glob(f"*/{name}"))
        if not matches and len(session_id) >= 8 and glob.escape(session_id) == session_id:
            # `backups list` shows a unique start of the id on narrow terminals: accept it here too.
            matches = sorted(Path(self.backup_dir).glob(f"*/{session_id}*.json"))
            if len({p.name for p in matches}) > 1:
                raise ValueError(f"{session_id!r} matches several backup files: "
                                 f"{', '.join(sorted({p.stem for p in matches})[:5])}; give more of the id")
        return matches[-1] if matches else None
