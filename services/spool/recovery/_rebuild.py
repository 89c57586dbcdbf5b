"""Rebuild a damaged spool from its intact rows and the JSON backups, under the same name.

The damaged file is copied aside and read row by row around the damage (``_salvage``), merged
with the backups (which hold every turn with its status), written as a new file, and only then
are the originals moved into quarantine: a crash part-way leaves them untouched, and a rebuilt
spool passes the check, so a restart never meets the same damage twice (no crash loop).

The rebuild needs about twice the spool's size in free space. When the disk has less (or the
rebuild fails for want of space), nothing is half-done: partial work is removed, the damaged
files are moved (renamed, which needs no space) into quarantine with a ``repair-pending.json``
marker, and a fresh spool takes new turns at once. ``_deferred`` merges the quarantined rows
back into the live spool once space returns.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import sqlite3
from pathlib import Path

import structlog

from voicelog.services.backup import BackupError, BackupTooNew, backup_files, read_backup
from voicelog.services.spool._errors import SpoolError
from voicelog.services.spool._schema import (
    ERASED_COLUMNS,
    SCHEMA,
    SCHEMA_VERSION,
    SESSION_COLUMNS,
    TURN_COLUMNS,
    erased_digest,
    orphan_session_row,
    session_row,
    turn_row,
)
from voicelog.services.spool.recovery._quarantine import (
    REPAIR_PENDING,
    RecoveryReport,
    private_file,
    quarantine_backup,
    quarantine_dir,
)
from voicelog.services.spool.recovery._salvage import Key, Salvage, salvage_spool

log = structlog.get_logger("voicelog.recovery")
_STATUS, _ATTEMPTS, _DELIVERED_MS, _UPDATED_MS = (TURN_COLUMNS.index(c) for c in (
    "status", "attempts", "delivered_ms", "updated_ms"))
SPACE_MARGIN = 1024 * 1024  # room kept free beyond the copies, for the WAL and the backups merged in
_SIDE_FILES = ("-wal", "-shm")


def recover(path: Path, backup_dir: Path, reason: str, now_ms: int) -> RecoveryReport:
    """Quarantine the damaged spool and rebuild it; on a disk too full for that, defer the repair."""
    qdir = quarantine_dir(backup_dir, now_ms)
    report = RecoveryReport(reason, str(qdir))
    short = space_shortfall([path], qdir)
    if short:
        return defer_repair(path, qdir, report, f"{short} more bytes of free disk are needed to repair it")
    try:
        _rebuild(path, backup_dir, qdir, report, now_ms)
    except (OSError, sqlite3.Error) as exc:
        discard_partial_work(path, qdir)
        return defer_repair(path, qdir, report, f"the repair failed: {type(exc).__name__}: {exc}")
    return report


def _rebuild(path: Path, backup_dir: Path, qdir: Path, report: RecoveryReport, now_ms: int) -> None:
    found = salvage_spool(path, qdir / "work")
    report.from_spool = len(found.turns)  # before the backups add to the same dict
    report.unreadable_regions, report.rejected_rows = found.unreadable_regions, found.rejected_rows
    merge_sources(found, backup_dir, qdir, report, now_ms)
    rebuilt = Path(f"{path}.rebuilt")
    _build_spool(rebuilt, found)
    # Only now move the originals: a crash before this point leaves them untouched.
    for suffix in ("", *_SIDE_FILES):
        original = Path(f"{path}{suffix}")
        if original.exists():
            shutil.move(original, qdir / original.name)
            report.spool_files.append(original.name)
    os.replace(rebuilt, path)
    shutil.rmtree(qdir / "work", ignore_errors=True)
    report.sessions = len(found.sessions)
    report.save()
    log.error("spool_quarantined", reason=report.reason, quarantine=str(qdir),
              recovered_from_spool=report.from_spool, recovered_from_backups=report.from_backups,
              lost=report.lost, unreadable_regions=report.unreadable_regions,
              backups_quarantined=len(report.backups_quarantined))


def merge_sources(found: Salvage, backup_dir: Path, qdir: Path, report: RecoveryReport, now_ms: int) -> None:
    """Complete what salvage found with the backups; count (and record) what no source holds."""
    _merge_backups(backup_dir, qdir, found, report, now_ms)
    _count_lost(found.turns, found.known, report)
    if report.lost:
        found.losses.append((now_ms, None, "spool_damaged", report.lost, str(qdir)))


def space_shortfall(files: list[Path], work_dir: Path) -> int:
    """Bytes of free space missing to repair ``files`` (copied into ``work_dir``, rebuilt beside them)."""
    size = sum(os.path.getsize(f"{f}{suffix}") for f in files for suffix in ("", "-wal")
               if os.path.exists(f"{f}{suffix}"))
    needed: dict[int, int] = {}
    for folder in {work_dir, *(f.parent for f in files)}:
        needed.setdefault(_device(folder), 0)
    needed[_device(work_dir)] += size  # the salvage copy
    needed[_device(files[0].parent)] += size  # the rebuilt file, no bigger than what it is built from
    short = 0
    for device, bytes_needed in needed.items():
        folder = work_dir if _device(work_dir) == device else files[0].parent
        short = max(short, bytes_needed + SPACE_MARGIN - shutil.disk_usage(folder).free)
    return short


def _device(folder: Path) -> int:
    while not folder.exists():
        folder = folder.parent
    return folder.stat().st_dev


def defer_repair(path: Path, qdir: Path, report: RecoveryReport, why: str) -> RecoveryReport:
    """Move the damaged files into quarantine (a rename: no space needed) and mark the repair pending.

    The next connection creates a fresh spool, so capture and delivery of new turns go on; the
    quarantined rows are merged back by ``finish_deferred_repairs`` once space returns.
    """
    for suffix in (*_SIDE_FILES, ""):  # the WAL first: a main file never stays without its WAL
        original = Path(f"{path}{suffix}")
        if not original.exists():
            continue
        try:
            os.rename(original, qdir / original.name)
        except OSError as exc:
            raise SpoolError(f"spool {path} is damaged ({report.reason}) and {why}; it cannot even be "
                             f"moved aside into {qdir} ({exc.strerror}). Free some space and start again") from exc
        report.spool_files.append(original.name)
    report.deferred = why
    report.save(REPAIR_PENDING)
    log.error("spool_repair_deferred", reason=report.reason, why=why, quarantine=str(qdir),
              hint="new turns go to a fresh spool; the damaged one's turns are merged back once "
                   "there is room (free disk space)")
    return report


def discard_partial_work(path: Path, qdir: Path) -> None:
    """Remove what a failed repair left: its work copies and a half-built spool."""
    shutil.rmtree(qdir / "work", ignore_errors=True)
    for suffix in ("", *_SIDE_FILES):
        Path(f"{path}.rebuilt{suffix}").unlink(missing_ok=True)


def finish_interrupted_rebuild(path: Path) -> None:
    """Complete or discard a rebuild a dead process left (call under the recovery mutex only)."""
    rebuilt = Path(f"{path}.rebuilt")
    if rebuilt.exists() and not path.exists():
        os.replace(rebuilt, path)  # a recovery died between moving the original and this rename
    elif rebuilt.exists():
        rebuilt.unlink()  # a recovery died before quarantining: it will simply run again
    for suffix in _SIDE_FILES:
        Path(f"{rebuilt}{suffix}").unlink(missing_ok=True)


def _merge_backups(backup_dir: Path, qdir: Path, found: Salvage, report: RecoveryReport,
                   now_ms: int) -> None:
    """Add what only the backups hold; a backup saying "delivered" wins (fewer duplicates).

    A session erased on request (its tombstone salvaged) is not brought back from a backup.
    """
    turns, sessions = found.turns, found.sessions
    for path in backup_files(backup_dir):
        try:
            backup = read_backup(path)
        except BackupTooNew:
            continue
        except BackupError as exc:
            report.backups_quarantined.append(quarantine_backup(path, backup_dir, qdir, str(exc)))
            continue
        if erased_digest(backup.session.session_id) in found.erased:
            continue
        sessions.setdefault(backup.session.session_id, session_row(backup.session, now_ms))
        for row in (turn_row(turn, now_ms) for turn in backup.turns):
            key = (row[0], row[1])
            if key not in turns:
                turns[key] = row
                report.from_backups += 1
            elif row[_STATUS] == "delivered" and turns[key][_STATUS] != "delivered":
                ours = list(turns[key])
                ours[_STATUS], ours[_ATTEMPTS], ours[_DELIVERED_MS] = "delivered", row[_ATTEMPTS], row[_DELIVERED_MS]
                ours[_UPDATED_MS] = now_ms
                turns[key] = tuple(ours)
    for session_id, _ in turns:
        if session_id not in sessions:
            started = min(row[5] for key, row in turns.items() if key[0] == session_id)
            sessions[session_id] = orphan_session_row(session_id, started, now_ms)


def _count_lost(turns: dict[Key, tuple], known: set[Key], report: RecoveryReport) -> None:
    """Turns an index still listed, and gaps in a session's seqs, that no source could fill."""
    by_session: dict[str, set[int]] = {}
    for session_id, seq in turns.keys() | known:
        by_session.setdefault(session_id, set()).add(seq)
    for session_id, seqs in by_session.items():
        recovered = {seq for seq in seqs if (session_id, seq) in turns}
        missing = sorted(set(range(min(seqs), max(seqs) + 1)) - recovered)
        if missing:
            report.lost_seqs[session_id] = missing
            report.lost += len(missing)


def _build_spool(target: Path, found: Salvage) -> None:
    for suffix in ("", *_SIDE_FILES):
        Path(f"{target}{suffix}").unlink(missing_ok=True)
    private_file(target)  # created private, so its WAL and shm are too
    conn = sqlite3.connect(target)
    with contextlib.closing(conn):
        conn.execute("PRAGMA journal_mode=WAL")
        for statement in SCHEMA:
            conn.execute(statement)
        conn.execute("INSERT INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))
        conn.executemany(f"INSERT OR IGNORE INTO sessions ({', '.join(SESSION_COLUMNS)}) VALUES"
                         f" ({', '.join('?' * len(SESSION_COLUMNS))})", found.sessions.values())
        conn.executemany(f"INSERT OR IGNORE INTO turns ({', '.join(TURN_COLUMNS)}) VALUES"
                         f" ({', '.join('?' * len(TURN_COLUMNS))})",
                         [found.turns[key] for key in sorted(found.turns)])
        conn.executemany("INSERT OR IGNORE INTO losses VALUES (?, ?, ?, ?, ?)",
                         [row for row in found.losses if len(row) == 5])
        conn.executemany(f"INSERT OR IGNORE INTO erased_sessions ({', '.join(ERASED_COLUMNS)}) VALUES (?, ?)",
                         found.erased.values())
        conn.commit()
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    os.chmod(target, 0o600)
