"""Repairs as findings: what the open-time check found damaged, and what it did about it.

Whoever opens the spool alone (the daemon at start, ``ship``, or ``backups verify`` itself)
checks it and the backups, moves damaged files to ``<backup_dir>/quarantine/<time>/`` and
rebuilds them, writing ``report.json`` there. A repair mends the data but is still a finding:
``backups verify`` reports each repair nobody has acknowledged yet, and fails on it, the way
``zpool status`` shows errors until ``zpool clear``. ``verify --ack`` acknowledges them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from voicelog.services.domain import wall_ms
from voicelog.services.spool import QUARANTINE

REPORT = "report.json"
ACKNOWLEDGED = "acknowledged"  # a file in the quarantine folder: its repair was reported and seen


@dataclass(frozen=True)
class Repair:
    """One past repair: where its quarantined files are and what it found and did."""

    folder: Path
    when: str  # UTC, from the folder name
    what: str  # found and done, in words
    acknowledged: bool


def repairs(backup_dir: Path) -> list[Repair]:
    """Every repair recorded under ``backup_dir/quarantine``, oldest first."""
    root = Path(backup_dir) / QUARANTINE
    if not root.is_dir():
        return []
    found = []
    for folder in sorted(p for p in root.iterdir() if p.is_dir()):
        report = _read(folder / REPORT)
        found.append(Repair(folder, _when(folder.name), describe(report) if report is not None
                            else "damaged files were moved here (no readable report.json)",
                            (folder / ACKNOWLEDGED).exists()))
    return found


def acknowledge(found: list[Repair]) -> int:
    """Mark repairs as seen, so later verifies pass; returns how many were new."""
    fresh = [r for r in found if not r.acknowledged]
    for repair in fresh:
        (repair.folder / ACKNOWLEDGED).write_text(f"acknowledged_ms {wall_ms()}\n", encoding="utf-8")
    return len(fresh)


def describe(report: dict[str, Any]) -> str:
    """A repair report in words: what was damaged, and what became of the data."""
    parts = [str(report.get("reason") or "damage found")]
    quarantined, rebuilt = report.get("backups_quarantined") or [], report.get("backups_rebuilt") or []
    if report.get("spool_files"):
        parts.append(f"spool moved aside and rebuilt from {report.get('from_spool', 0)} readable turn(s) "
                     f"and {report.get('from_backups', 0)} from backups")
    if quarantined:
        parts.append(f"{len(quarantined)} backup file(s) quarantined ({', '.join(quarantined[:3])}"
                     f"{', ...' if len(quarantined) > 3 else ''}), {len(rebuilt)} rewritten from the spool")
    if report.get("lost"):
        parts.append(f"{report['lost']} turn(s) LOST (no source held them)")
    return "; ".join(parts)


def _read(path: Path) -> dict[str, Any] | None:
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return value if isinstance(value, dict) else None


def _when(name: str) -> str:
    try:
        moment = datetime.strptime(name.split("-")[0], "%Y%m%dT%H%M%S.%fZ").replace(tzinfo=UTC)
    except ValueError:
        return name
    return moment.strftime("%Y-%m-%d %H:%M:%SZ")
