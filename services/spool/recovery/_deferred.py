"""Finish repairs that had to wait for disk space: merge a quarantined spool's rows back.

A damaged spool found on a disk too full to rebuild it was moved into quarantine with a
``repair-pending.json`` marker, and a fresh spool took over (``_rebuild.defer_repair``). Once
there is room, its intact rows (and the backups) are merged into the live spool through normal
write transactions, so capture and delivery carry on meanwhile. Whatever the live spool already
holds wins; sessions erased on request since stay erased. One process does each merge (the
recovery mutex), and the marker becomes ``report.json`` once it is done.
"""

from __future__ import annotations

import shutil
import sqlite3
from pathlib import Path
from typing import TYPE_CHECKING

import structlog

from voicelog.services.domain import FileLock
from voicelog.services.spool._schema import erased_digest
from voicelog.services.spool.recovery._quarantine import QUARANTINE, REPAIR_PENDING, RecoveryReport
from voicelog.services.spool.recovery._rebuild import merge_sources, space_shortfall
from voicelog.services.spool.recovery._salvage import Salvage, salvage_spool

if TYPE_CHECKING:
    from voicelog.services.spool._spool import Spool

log = structlog.get_logger("voicelog.recovery")


def pending_repairs(backup_dir: Path) -> list[Path]:
    """Markers of repairs still waiting for space, oldest first."""
    quarantine = Path(backup_dir) / QUARANTINE
    return sorted(quarantine.glob(f"*/{REPAIR_PENDING}")) if quarantine.is_dir() else []


def finish_deferred_repairs(spool: Spool, now_ms: int) -> list[RecoveryReport]:
    """Merge every pending repair there is room for into ``spool``; the reports of those done."""
    finished = []
    for marker in pending_repairs(spool.backup_dir):
        with FileLock(f"{spool.path}.recover.lock"):
            if marker.exists():  # another process may have finished it while we waited
                report = _finish(spool, marker, now_ms)
                if report is not None:
                    finished.append(report)
    return finished


def _finish(spool: Spool, marker: Path, now_ms: int) -> RecoveryReport | None:
    report = RecoveryReport.load(marker)
    qdir = marker.parent
    damaged = qdir / spool.path.name
    short = space_shortfall([damaged], qdir) if damaged.exists() else 0
    if short:
        log.info("spool_repair_still_waiting_for_space", quarantine=str(qdir), short_bytes=short)
        return None
    try:
        found = salvage_spool(damaged, qdir / "work")
        report.from_spool = len(found.turns)
        report.unreadable_regions, report.rejected_rows = found.unreadable_regions, found.rejected_rows
        merge_sources(found, spool.backup_dir, qdir, report, now_ms)
        _drop_erased(spool, found)
        report.sessions, added = spool.merge_recovered(found.sessions.values(), found.turns.values(),
                                                       found.losses, found.erased.values())
    except (OSError, sqlite3.Error) as exc:
        log.error("spool_repair_failed_will_retry", quarantine=str(qdir), error=f"{type(exc).__name__}: {exc}")
        return None
    finally:
        shutil.rmtree(qdir / "work", ignore_errors=True)
    report.deferred, report.finished_ms = None, now_ms
    report.save()
    marker.unlink()
    log.warning("spool_repair_finished", quarantine=str(qdir), turns_merged=added,
                recovered_from_spool=report.from_spool, recovered_from_backups=report.from_backups,
                lost=report.lost)
    return report


def _drop_erased(spool: Spool, found: Salvage) -> None:
    """Sessions erased on request since the deferral are not brought back."""
    for session_id in [s for s in found.sessions if spool.is_erased(s) or erased_digest(s) in found.erased]:
        found.sessions.pop(session_id)
    found.turns = {key: row for key, row in found.turns.items() if key[0] in found.sessions}
