"""Forget what is old and delivered: spool sessions past retention and their backup files.

Undelivered turns are the only copy of what a child said that the Manager does not have yet,
so they are kept unless the caller asks otherwise (and then only past
``max_undelivered_days``). Safe beside a delivering daemon: each batch re-checks, inside its
own short write transaction, that a session is still old and delivered before deleting it.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from voicelog.services.backup import (
    BackupError,
    BackupWriter,
    backup_files,
    read_backup,
    remove_stale_temp_files,
)
from voicelog.services.config import ChatHistorySettings
from voicelog.services.domain import DONE, SessionRecord, normalise_mac
from voicelog.services.memory import MemoryEraser
from voicelog.services.spool import Spool

DAY_MS = 86_400_000
BATCH = 50  # sessions per write transaction: short enough never to stall capture


@dataclass(frozen=True)
class PrunedSession:
    """A session removed (or, in a dry run, to be removed)."""

    session_id: str
    mac: str
    ended_ms: int
    turns: int
    undelivered: int
    backup_file: str | None


@dataclass
class PruneReport:
    """What a prune removed, and what it kept because it is not delivered."""

    cutoff_ms: int
    undelivered_cutoff_ms: int | None
    dry_run: bool
    removed: list[PrunedSession] = field(default_factory=list)
    kept_undelivered: list[PrunedSession] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    quarantine_removed: list[str] = field(default_factory=list)
    temp_files_removed: list[str] = field(default_factory=list)  # left by killed backup writers
    tombstones_removed: int = 0  # erased sessions old enough that no capture can still run

    @property
    def turns_removed(self) -> int:
        return sum(s.turns for s in self.removed)


def prune(spool: Spool, backup_writer_or_dir: BackupWriter | str | os.PathLike[str],
          settings: ChatHistorySettings, *, now_ms: int, include_undelivered: bool = False,
          dry_run: bool = False, memory: MemoryEraser | None = None) -> PruneReport:
    """Delete ended sessions older than ``retention_days`` whose turns are all delivered.

    With ``include_undelivered``, sessions with undelivered turns go too once they ended more
    than ``max(retention_days, max_undelivered_days)`` ago. Backup files of removed sessions
    are deleted after the spool rows, and old backup-only files by the same rules.
    """
    writer = (backup_writer_or_dir if isinstance(backup_writer_or_dir, BackupWriter)
              else BackupWriter(backup_writer_or_dir))
    cutoff = now_ms - settings.retention_days * DAY_MS
    undelivered_cutoff = (now_ms - max(settings.retention_days, settings.max_undelivered_days) * DAY_MS
                          if include_undelivered else None)
    report = PruneReport(cutoff, undelivered_cutoff, dry_run)
    for candidate, session in _candidates(spool, cutoff):
        if candidate.undelivered and (undelivered_cutoff is None or candidate.ended_ms >= undelivered_cutoff):
            report.kept_undelivered.append(candidate)
        else:
            report.removed.append(_with_file(candidate, writer, session))
    if not dry_run:
        report.removed = _delete_sessions(spool, report.removed, cutoff, undelivered_cutoff)
        _delete_files(writer, report)
        report.tombstones_removed = spool.forget_erased_before(cutoff)
        report.temp_files_removed = [str(p) for p in remove_stale_temp_files(writer.backup_dir)]
    _prune_orphan_files(spool, writer, report)
    if not dry_run:
        _forget_in_memory(memory, report)
    if include_undelivered and not dry_run:
        _prune_quarantine(writer.backup_dir, now_ms, settings, report)
    return report


def _forget_in_memory(memory: MemoryEraser | None, report: PruneReport) -> None:
    """Removed sessions leave the shared memory too (Redis would otherwise keep them for the TTL)."""
    if memory is None or not report.removed:
        return
    devices: dict[str, list[str]] = {}
    for session in report.removed:
        if normalise_mac(session.mac):
            devices.setdefault(session.mac, []).append(session.session_id)
    erased = memory.erase_sessions(devices)
    if not erased.complete:
        report.errors.append(f"conversation memory in Redis not erased ({erased.error}); it expires "
                             "within memory.ttl_hours")


def _prune_quarantine(backup_dir: Path, now_ms: int, settings: ChatHistorySettings,
                      report: PruneReport) -> None:
    """Quarantined copies go when undelivered turns would: their intact turns were recovered."""
    quarantine = Path(backup_dir) / "quarantine"
    if not quarantine.is_dir():
        return
    keep_ms = max(settings.retention_days, settings.max_undelivered_days) * DAY_MS
    for folder in quarantine.iterdir():
        try:
            if folder.is_dir() and now_ms - folder.stat().st_mtime * 1000 > keep_ms:
                shutil.rmtree(folder)
                report.quarantine_removed.append(str(folder))
        except OSError as exc:
            report.errors.append(f"{folder}: {exc.strerror}")


def expiring_undelivered(spool: Spool, settings: ChatHistorySettings, *, now_ms: int,
                         warn_days: float = 3.0) -> list[PrunedSession]:
    """Ended sessions with undelivered turns that the automatic prune will drop within ``warn_days``."""
    keep_days = max(settings.retention_days, settings.max_undelivered_days)
    cutoff = now_ms - max(0.0, keep_days - warn_days) * DAY_MS
    return [candidate for candidate, _ in _candidates(spool, int(cutoff)) if candidate.undelivered]


def _candidates(spool: Spool, cutoff: int) -> list[tuple[PrunedSession, SessionRecord]]:
    """Ended sessions older than the cutoff, with turn and undelivered counts."""
    return [(PrunedSession(e.session.session_id, e.session.mac, e.session.ended_ms or 0, e.turns,
                           e.undone, None), e.session)
            for e in spool.ended_before(cutoff)]


def _with_file(candidate: PrunedSession, writer: BackupWriter, session: SessionRecord) -> PrunedSession:
    path = writer.path_for(session)
    return PrunedSession(**{**candidate.__dict__, "backup_file": str(path) if path.exists() else None})


def _delete_sessions(spool: Spool, chosen: list[PrunedSession], cutoff: int,
                     undelivered_cutoff: int | None) -> list[PrunedSession]:
    """Delete in batches, re-checking age and status in each transaction; return what went."""
    removed: list[PrunedSession] = []
    for start in range(0, len(chosen), BATCH):
        batch = {s.session_id: s for s in chosen[start:start + BATCH]}
        # Still ended and old? Still delivered, unless old enough to drop undelivered?
        gone = spool.delete_expired(
            (s.session_id, cutoff if not s.undelivered else undelivered_cutoff, s.undelivered > 0)
            for s in batch.values())
        removed += [batch[session_id] for session_id in gone]
    return removed


def _delete_files(writer: BackupWriter, report: PruneReport) -> None:
    with writer.locked():
        for session in report.removed:
            if session.backup_file:
                _unlink(Path(session.backup_file), report)


def _prune_orphan_files(spool: Spool, writer: BackupWriter, report: PruneReport) -> None:
    """Backup files whose session the spool no longer has, by the same age and status rules."""
    in_spool = spool.session_ids()
    removed = {s.session_id for s in report.removed}
    for path in backup_files(writer.backup_dir, until_ms=report.cutoff_ms):
        try:
            backup = read_backup(path)
        except BackupError:
            continue  # corrupt files are for `backups verify` to report, never to delete
        session = backup.session
        if session.session_id in in_spool or session.session_id in removed or session.ended_ms is None:
            continue
        undelivered = sum(t.status not in DONE for t in backup.turns)
        limit = report.cutoff_ms if not undelivered else report.undelivered_cutoff_ms
        if limit is None or session.ended_ms >= limit:
            continue
        report.removed.append(PrunedSession(session.session_id, session.mac, session.ended_ms,
                                            len(backup.turns), undelivered, str(path)))
        if not report.dry_run:
            with writer.locked():
                _unlink(path, report)


def _unlink(path: Path, report: PruneReport) -> None:
    try:
        path.unlink(missing_ok=True)
    except OSError as exc:
        report.errors.append(f"{path}: {exc.strerror}")
        return
    try:
        path.parent.rmdir()  # only succeeds once the day's folder is empty
    except OSError:
        pass
