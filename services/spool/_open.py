"""Open the host's spool: check it (and recover a damaged one) first, then connect.

Every open Spool holds a "users" lock shared; a process that can take it exclusively is the
only user, and only then is the whole file checked (``recovery``), so a check never runs under
someone's feet. A file found damaged later, while others use it, is recovered once, by whoever
finds it first (the recovery mutex, and the inode tells whether someone already did).
"""

from __future__ import annotations

import os
import sqlite3
import weakref
from collections.abc import Callable
from pathlib import Path

import structlog

from voicelog.services.backup import BackupWriter, remove_stale_temp_files, tighten_data_dir
from voicelog.services.config import Durability
from voicelog.services.domain import FileLock, wall_ms
from voicelog.services.sealing import ContentCipher
from voicelog.services.spool._checkpoint import CAPTURE_AUTOCHECKPOINT_PAGES, Checkpointer
from voicelog.services.spool._connection import WAL_CHECKPOINT_PAGES, SpoolConnection
from voicelog.services.spool._spool import Spool
from voicelog.services.spool.recovery import (
    RecoveryReport,
    finish_deferred_repairs,
    finish_interrupted_rebuild,
    is_corruption,
    quarantine_damaged_backups,
    recover,
    remove_stale_work,
    spool_problem,
)

log = structlog.get_logger("voicelog.recovery")


def open_spool(path: str | os.PathLike[str], *, durability: Durability = Durability.PROCESS,
               max_bytes: int | None = None, busy_timeout_ms: int = 5000,
               backup_dir: str | os.PathLike[str] | None = None,
               now: Callable[[], int] = wall_ms, cipher: ContentCipher | None = None,
               checkpoint: bool = False) -> Spool:
    """Check (recovering if need be) and open the spool at ``path``.

    By default the spool lives in the backup folder (``<backup_dir>/spool.db``). With
    ``checkpoint`` (the daemon, job processes: anything long-lived that captures or ships) a
    ``Checkpointer`` thread copies the WAL into the file and no commit of this process ever
    runs a checkpoint itself; without it (short CLI commands) SQLite's automatic one does.
    """
    path = Path(path)
    backups = Path(backup_dir) if backup_dir is not None else path.parent
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    for folder in {backups, path.parent}:
        tighten_data_dir(folder)  # the spool's own folder only when it is voicelog's (see there)
    users = FileLock(f"{path}.users.lock")
    alone, report = _check_when_alone(path, backups, users, now())
    pages = CAPTURE_AUTOCHECKPOINT_PAGES if checkpoint else WAL_CHECKPOINT_PAGES
    connection, found_later = _connect(path, backups, durability, busy_timeout_ms, now, pages)
    report = found_later or report
    checkpointer = Checkpointer(path, busy_timeout_ms=busy_timeout_ms).start() if checkpoint else None

    def release() -> None:
        if checkpointer is not None:
            checkpointer.stop()
        users.release()

    spool = Spool(connection, backup_dir=backups, max_bytes=max_bytes, cipher=cipher, now=now,
                  on_close=release)
    spool.checkpointer = checkpointer
    if checkpointer is not None:  # a spool dropped without close() must not leave its thread behind
        weakref.finalize(spool, checkpointer.stop_soon)
    spool.recovery = report
    if report is not None:
        _rebuild_quarantined_backups(spool, report, now())
    if alone:
        _repair_what_older_runs_left(spool, now())
    return spool


def _check_when_alone(path: Path, backup_dir: Path, users: FileLock,
                      now_ms: int) -> tuple[bool, RecoveryReport | None]:
    """Check the spool and backups before connecting, when this process is the only user.

    Returns whether it was alone (and so checked) and what a recovery did.
    """
    if not users.try_exclusive():
        with FileLock(f"{path}.recover.lock"):  # waits out a recovery under way elsewhere
            finish_interrupted_rebuild(path)
        users.shared()
        return False, None
    try:
        with FileLock(f"{path}.recover.lock"):
            finish_interrupted_rebuild(path)
            _remove_leftovers(backup_dir)
            problem = spool_problem(path)
            if problem is not None:
                return True, recover(path, backup_dir, problem, now_ms)
            try:
                return True, quarantine_damaged_backups(backup_dir, now_ms)
            except OSError as exc:  # the spool is sound: a backup folder problem must not stop it
                log.error("backup_check_failed", error=str(exc))
                return True, None
    finally:
        users.shared()  # converts the exclusive lock in place: nobody slips in between


def _remove_leftovers(backup_dir: Path) -> None:
    """Work files of dead recoveries and temporary files of dead backup writers (they hold words)."""
    try:
        remove_stale_work(backup_dir)
        removed = remove_stale_temp_files(backup_dir)
    except OSError as exc:
        log.error("leftover_cleanup_failed", error=str(exc))
        return
    if removed:
        log.warning("stale_backup_temp_files_removed", files=len(removed))


def _repair_what_older_runs_left(spool: Spool, now_ms: int) -> None:
    """Turns an older voicelog left without a session row, and repairs that waited for space."""
    try:
        spool.adopted = spool.adopt_orphans(now_ms)
        finish_deferred_repairs(spool, now_ms)
    except (OSError, sqlite3.Error) as exc:  # retried at the next open and by the daemon
        log.error("spool_repairs_failed", error=f"{type(exc).__name__}: {exc}")


def _connect(path: Path, backup_dir: Path, durability: Durability, busy_timeout_ms: int,
             now: Callable[[], int], pages: int) -> tuple[SpoolConnection, RecoveryReport | None]:
    """Connect and create the schema; a file others had open and that proves damaged is recovered."""
    connection = None
    try:
        connection = SpoolConnection(path, durability=durability, busy_timeout_ms=busy_timeout_ms,
                                 autocheckpoint_pages=pages)
        connection.ensure_schema()
        return connection, None
    except sqlite3.DatabaseError as exc:
        if not is_corruption(exc):
            raise
        reason, inode = str(exc), os.stat(path).st_ino
        if connection is not None:
            connection.close()
    # Others had the file open, so the full check was skipped; recover now, once.
    report = None
    with FileLock(f"{path}.recover.lock"):
        try:
            replaced = os.stat(path).st_ino != inode
        except FileNotFoundError:
            replaced = False
        if not replaced:
            report = recover(path, backup_dir, reason, now())
    connection = SpoolConnection(path, durability=durability, busy_timeout_ms=busy_timeout_ms,
                                 autocheckpoint_pages=pages)
    connection.ensure_schema()
    return connection, report


def _rebuild_quarantined_backups(spool: Spool, report: RecoveryReport, now_ms: int) -> None:
    """Rewrite each quarantined backup from the spool when the spool has its session."""
    if not report.backups_quarantined:
        return
    try:
        report.backups_rebuilt = BackupWriter(spool.backup_dir).rewrite(
            spool, report.backups_quarantined, now_ms)
        report.save()
    except OSError as exc:  # the next write of each session rebuilds it anyway
        log.error("backup_rebuild_failed", error=str(exc))
        return
    log.warning("backups_rebuilt_from_spool", rebuilt=len(report.backups_rebuilt),
                quarantined=len(report.backups_quarantined))
