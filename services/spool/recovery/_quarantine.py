"""Move damaged files aside, into ``<backup_dir>/quarantine/<time>/``, with a report of what was done."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import structlog

from voicelog.services.backup import damaged_backups

log = structlog.get_logger("voicelog.recovery")
QUARANTINE = "quarantine"
# A quarantine folder holding a damaged spool whose rows are not merged back yet (disk was full).
REPAIR_PENDING = "repair-pending.json"
REPORT = "report.json"


@dataclass
class RecoveryReport:
    """What a recovery found and did; also written as ``report.json`` in the quarantine folder."""

    reason: str
    quarantine_dir: str
    spool_files: list[str] = field(default_factory=list)
    from_spool: int = 0  # turns read from the damaged file
    from_backups: int = 0  # turns only the backups still had
    sessions: int = 0
    unreadable_regions: int = 0  # places in the damaged file no row could be read from
    rejected_rows: int = 0  # rows read but holding impossible values
    lost: int = 0  # turns known missing: sequence gaps that no source could fill
    lost_seqs: dict[str, list[int]] = field(default_factory=dict)
    backups_quarantined: list[str] = field(default_factory=list)
    backups_rebuilt: list[str] = field(default_factory=list)
    deferred: str | None = None  # why the repair waits (not enough disk); None once done
    finished_ms: int | None = None  # when a deferred repair was merged back

    def save(self, name: str = REPORT) -> None:
        """Write the report (``report.json``, or the pending marker) beside the quarantined files."""
        path = Path(self.quarantine_dir) / name
        private_file(path)
        path.write_text(json.dumps(asdict(self), ensure_ascii=False, indent=1), encoding="utf-8")

    @classmethod
    def load(cls, path: Path) -> RecoveryReport:
        """A report written by ``save``."""
        known = {f for f in cls.__dataclass_fields__}
        data = json.loads(path.read_text(encoding="utf-8"))
        return cls(**{k: v for k, v in data.items() if k in known})


def private_file(path: Path) -> None:
    """Create ``path`` empty and readable by its owner only, unless it exists (work files hold words)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW, 0o600)
    os.close(fd)


def quarantine_dir(backup_dir: Path, now_ms: int) -> Path:
    """A new, private folder for this recovery's quarantined files."""
    stamp = datetime.fromtimestamp(now_ms / 1000, tz=UTC).strftime("%Y%m%dT%H%M%S.%fZ")
    (backup_dir / QUARANTINE).mkdir(parents=True, exist_ok=True, mode=0o700)
    for attempt in range(1000):
        candidate = backup_dir / QUARANTINE / (stamp if attempt == 0 else f"{stamp}-{attempt}")
        with contextlib.suppress(FileExistsError):
            candidate.mkdir(parents=True, mode=0o700)
            return candidate
    raise RuntimeError(f"cannot create a quarantine folder under {backup_dir / QUARANTINE}")


def quarantine_backup(path: Path, backup_dir: Path, qdir: Path, why: str) -> str:
    """Move a damaged backup file under ``qdir/backups``; returns its path relative to the folder."""
    relative = path.relative_to(backup_dir)
    target = qdir / "backups" / relative
    target.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    shutil.move(path, target)
    log.error("backup_quarantined", path=str(relative), reason=why, quarantine=str(qdir))
    return str(relative)


def quarantine_damaged_backups(backup_dir: Path, now_ms: int) -> RecoveryReport | None:
    """Move damaged backup files aside (the spool is sound and will rewrite them)."""
    damaged = damaged_backups(backup_dir)
    if not damaged:
        return None
    qdir = quarantine_dir(backup_dir, now_ms)
    report = RecoveryReport("damaged backup files", str(qdir))
    report.backups_quarantined = [quarantine_backup(p, backup_dir, qdir, why) for p, why in damaged]
    report.save()
    return report


def remove_stale_work(backup_dir: Path) -> list[str]:
    """Remove what dead recoveries left in quarantine: work copies and empty folders.

    Call only under the recovery mutex (no recovery is running then). Returns what went.
    """
    quarantine = backup_dir / QUARANTINE
    removed: list[str] = []
    if not quarantine.is_dir():
        return removed
    for folder in quarantine.iterdir():
        if folder.is_symlink() or not folder.is_dir():
            continue
        if (folder / "work").is_dir():
            shutil.rmtree(folder / "work", ignore_errors=True)
            removed.append(str(folder / "work"))
        with contextlib.suppress(OSError):
            folder.rmdir()  # only an empty folder: a recovery that failed before moving anything
            removed.append(str(folder))
    if removed:
        log.warning("stale_recovery_work_removed", paths=removed)
    return removed
