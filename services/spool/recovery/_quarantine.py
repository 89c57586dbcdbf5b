"""Move damaged files aside, into ``<backup_dir>/quarantine/<time>/``, with a report of what was done."""

from __future__ import annotations

import contextlib
import json
import shutil
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import structlog

from voicelog.services.backup import damaged_backups

log = structlog.get_logger("voicelog.recovery")
QUARANTINE = "quarantine"


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

    def save(self) -> None:
        """Write report.json beside the quarantined files."""
        path = Path(self.quarantine_dir) / "report.json"
        path.write_text(json.dumps(asdict(self), ensure_ascii=False, indent=1), encoding="utf-8")


def quarantine_dir(backup_dir: Path, now_ms: int) -> Path:
    """A new, private folder for this recovery's quarantined files."""
    stamp = datetime.fromtimestamp(now_ms / 1000, tz=UTC).strftime("%Y%m%dT%H%M%S.%fZ")
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
