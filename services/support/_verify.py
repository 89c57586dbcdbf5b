"""Check backup files against the schema and the spool, and spool sessions for their files.

``backups verify`` reports every problem as one line support staff can act on; the spool is
the truth for sessions still in it, so those files can be rewritten from it (``--fix``).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from voicelog.services.backup import (
    STALE_TEMP_SECONDS,
    Backup,
    BackupError,
    BackupWriter,
    backup_file_name,
    backup_files,
    document_records,
    linked_files,
    load_document,
    problems,
    temp_files,
)
from voicelog.services.domain import ChatType, Turn
from voicelog.services.spool import Spool
from voicelog.services.support._catalog import Catalog
from voicelog.services.support._clips import clip_problems
from voicelog.services.support._repairs import Repair, repairs


@dataclass(frozen=True)
class Finding:
    """One thing wrong (``error``) or worth knowing (``warning``) about a file or a session."""

    severity: str
    where: str  # the file, or "spool"
    session_id: str | None
    what: str


@dataclass
class VerifyReport:
    """What ``backups verify`` checked and found."""

    files: int = 0
    sessions: int = 0
    findings: list[Finding] = field(default_factory=list)
    repairs: list[Repair] = field(default_factory=list)  # not yet acknowledged: each is an error
    all_repairs: list[Repair] = field(default_factory=list)

    @property
    def acknowledged_repairs(self) -> int:
        """Earlier repairs someone has already seen (``verify --ack``)."""
        return sum(1 for r in self.all_repairs if r.acknowledged)

    @property
    def errors(self) -> list[Finding]:
        """Findings that make verify fail."""
        return [f for f in self.findings if f.severity == "error"]

    def add(self, severity: str, where: Path | str, session_id: str | None, what: str) -> None:
        self.findings.append(Finding(severity, str(where), session_id, what))


def verify(catalog: Catalog) -> VerifyReport:
    """Check every backup file against the schema and the spool, and the spool against the files."""
    report = VerifyReport()
    _report_repairs(catalog, report)
    seen: dict[str, Path] = {}
    # A broken file still names its session by its file name; that makes it fixable from the spool.
    by_name = {backup_file_name(i): i for i in catalog.spool_session_ids()}
    for path in backup_files(catalog.backup_dir):
        report.files += 1
        backup = _checked_file(path, catalog, report, by_name.get(path.name))
        if backup is None:
            continue
        session_id = backup.session.session_id
        if session_id in seen:
            report.add("error", path, session_id, f"a second backup of this session (also {seen[session_id]})")
        seen[session_id] = path
        if catalog.spool is not None:
            _compare_with_spool(catalog.spool, backup, report)
    for path in linked_files(catalog.backup_dir):
        report.add("error", path, None, "a symbolic link where backups live: refused, never read through "
                   "(remove it; copy the real file here if it is a backup)")
    for path in temp_files(catalog.backup_dir):
        if _age(path) >= STALE_TEMP_SECONDS:
            report.add("warning", path, None, "a temporary file an interrupted backup write left (it may hold "
                       "a session's words); removed at the next start, prune or purge")
    if catalog.spool is None:
        report.add("warning", "spool", None, "no spool on this box: files were checked on their own")
    else:
        _spool_sessions_without_files(catalog, seen, report)
        for problem in clip_problems(catalog.spool):
            report.add("error", "spool", problem.session_id, f"turn #{problem.seq}'s audio clip cannot be "
                       f"played ({problem.what}); the turn is delivered without audio")
    return report


def _age(path: Path) -> float:
    try:
        return time.time() - path.lstat().st_mtime
    except FileNotFoundError:
        return 0.0


def _report_repairs(catalog: Catalog, report: VerifyReport) -> None:
    """Each repair not yet acknowledged is an error: damage was found, even if it is mended now."""
    own = catalog.spool.recovery if catalog.spool is not None else None
    report.all_repairs = repairs(catalog.backup_dir)
    for repair in report.all_repairs:
        if repair.acknowledged:
            continue
        report.repairs.append(repair)
        by = " (found now, when verify opened the spool)" if own is not None and \
            Path(own.quarantine_dir) == repair.folder else ""
        report.add("error", repair.folder, None, f"REPAIRED {repair.when}{by}: {repair.what}; the damaged "
                   "originals are in this folder; `backups verify --ack` once read")


def _checked_file(path: Path, catalog: Catalog, report: VerifyReport, named: str | None) -> Backup | None:
    try:
        document = load_document(path)
    except BackupError as exc:
        report.add("error", path, named, f"corrupt: {exc}")
        return None
    found = problems(document)
    for problem in found:
        report.add("error", path, named, f"wrong schema: {problem}")
    if found:
        return None
    try:
        backup = document_records(path, document)
    except ValueError as exc:
        report.add("error", path, document["session_id"], f"unreadable time: {exc}")
        return None
    for problem in _layout_problems(backup, document["turns"], catalog.path_for(backup.session)):
        report.add("error", path, backup.session.session_id, problem)
    return backup


def _layout_problems(backup: Backup, entries: list[dict[str, Any]], expected: Path) -> Iterator[str]:
    """Rules the schema cannot express: ids, order, roles, and where the file lives."""
    for index, (entry, turn) in enumerate(zip(entries, backup.turns)):
        if entry["id"] != f"{backup.session.session_id}#{turn.seq}":
            yield f"turns[{index}].id: {entry['id']!r} is not <session_id>#<seq>"
        if entry["role"] != ("user" if turn.chat_type == ChatType.USER else "agent"):
            yield f"turns[{index}].role: {entry['role']!r} does not match chat_type {entry['chat_type']}"
        if index and turn.seq <= backup.turns[index - 1].seq:
            yield f"turns[{index}]: seq {turn.seq} does not follow seq {backup.turns[index - 1].seq}"
        elif index and turn.report_ms <= backup.turns[index - 1].report_ms:
            yield f"turns[{index}]: report_time_ms does not increase (seq {turn.seq})"
    if backup.path.name != expected.name:
        yield f"file name should be {expected.name} for this session id"
    elif backup.path.parent.name != expected.parent.name:
        yield f"misplaced: a session started on {expected.parent.name} belongs in that day's folder"


def _compare_with_spool(spool: Spool, backup: Backup, report: VerifyReport) -> None:
    session_id, path = backup.session.session_id, backup.path
    report.sessions += 1
    stored = spool.session(session_id)
    if stored is None:
        report.add("error", path, session_id, "not in the spool (copied from another box, or the spool "
                   "lost it): `backups replay FILE` imports it")
        return
    if (stored.mac, stored.started_ms) != (backup.session.mac, backup.session.started_ms):
        report.add("error", path, session_id, f"session differs from the spool: mac {backup.session.mac} "
                   f"vs {stored.mac}, started_ms {backup.session.started_ms} vs {stored.started_ms}")
    # Content through the spool's API (it may seal text at rest); update times straight from SQL.
    updated = spool.turn_update_times(session_id)
    in_spool = {turn.seq: turn for turn in spool.turns(session_id)}
    stale = 0
    for turn in backup.turns:
        ours = in_spool.pop(turn.seq, None)
        if ours is None:
            report.add("error", path, session_id, f"turn #{turn.seq} is in the file but not in the spool")
            continue
        differs = _differences(turn, ours)
        if differs and updated.get(turn.seq, 0) > backup.written_ms:
            stale += 1  # the spool moved on after this file was written; the next write catches up
        elif differs:
            report.add("error", path, session_id, f"turn #{turn.seq} differs from the spool in {', '.join(differs)}")
    for seq in sorted(in_spool):
        if updated.get(seq, 0) > backup.written_ms or stored.ended_ms is None:
            stale += 1
        else:
            report.add("error", path, session_id, f"turn #{seq} is in the spool but missing from the file")
    if stale:
        report.add("warning", path, session_id, f"older than the spool: {stale} turn(s) changed after the "
                   "file was written; it is rewritten after the next delivery round")


def _differences(turn: Turn, stored: Turn) -> list[str]:
    pairs = (("chat_type", turn.chat_type, stored.chat_type), ("content", turn.content, stored.content),
             ("report_time_ms", turn.report_ms, stored.report_ms))
    found = [name for name, ours, theirs in pairs if ours != theirs]
    if turn.status != stored.status:
        found.append(f"status ({turn.status.value} in file, {stored.status.value} in spool)")
    return found


def _spool_sessions_without_files(catalog: Catalog, seen: dict[str, Path], report: VerifyReport) -> None:
    assert catalog.spool is not None
    for orphan in catalog.spool.orphans():
        report.sessions += 1
        report.add("error", "spool", orphan.session.session_id,
                   f"{sum(orphan.counts.values())} turn(s) have no session row (left by an older voicelog's "
                   "purge): `voicelog ship --once` or the next start gives them one and delivers them")
    for session in catalog.spool.sessions():
        if session.session_id in seen:
            continue
        report.sessions += 1
        expected = catalog.path_for(session)
        if expected.exists():
            continue  # its file is there but broken: already reported as such
        if session.ended_ms is None:
            report.add("warning", "spool", session.session_id, f"live session has no backup file yet ({expected})")
        else:
            report.add("error", "spool", session.session_id, f"no backup file (expected {expected})")


def rewrite_from_spool(catalog: Catalog, report: VerifyReport, writer: BackupWriter, now_ms: int) -> int:
    """Rewrite the files of spool sessions that have errors; returns how many were rewritten."""
    if catalog.spool is None:
        return 0
    fixable = {f.session_id for f in report.errors} & catalog.spool_session_ids()
    for session_id in sorted(fixable):
        writer.write(catalog.spool, session_id, now_ms)
    return len(fixable)
