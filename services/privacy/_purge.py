"""Erase every local copy of a device's (or one session's) chats, on request.

Covers the spool (all statuses, dead-letter included), backup files (also ones copied from
another box), and quarantined files that mention the device. SQLite's freed pages are zeroed
(secure_delete) and the write-ahead log is checkpointed, so deleted words do not linger in
the database files. With a ``MemoryEraser`` the device's (or session's) conversation memory goes
too, from the shared Redis as well.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from voicelog.services.backup import BackupError, backup_files, read_backup
from voicelog.services.domain import mac_from_room_name, wall_ms
from voicelog.services.memory import EraseReport, MemoryEraser
from voicelog.services.spool import Spool


@dataclass
class PurgeReport:
    """What an erasure removed."""

    sessions: list[str] = field(default_factory=list)
    turns: int = 0
    files: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    memory: EraseReport | None = None


def purge(spool: Spool, backup_dir: str | Path, *, mac: str | None = None,
          session_id: str | None = None, dry_run: bool = False,
          memory: MemoryEraser | None = None) -> PurgeReport:
    """Remove the selected device's or session's turns, sessions, files and memory; report them."""
    if not mac and not session_id:
        raise ValueError("purge needs a MAC or a session id")
    report = PurgeReport()
    chosen = _sessions(spool, mac, session_id)
    report.sessions = sorted(chosen)
    report.turns = _count_turns(spool, chosen)
    needles = _needles(mac, session_id, chosen)
    paths = _files_to_remove(Path(backup_dir), spool.path, needles, chosen, mac)
    report.files = [str(p) for p in paths]
    if dry_run:
        return report
    devices = _devices_of(spool, chosen | ({session_id} if session_id else set()))
    _erase_rows(spool, chosen)
    for path in paths:
        try:
            path.unlink(missing_ok=True)
        except OSError as exc:
            report.errors.append(f"{path}: {exc.strerror}")
    if memory is not None:
        report.memory = (memory.erase_device(mac, now_ms=wall_ms()) if mac
                         else memory.erase_sessions(devices))
        if not report.memory.complete:
            report.errors.append(f"conversation memory in Redis not erased ({report.memory.error}); it "
                                 "expires within memory.ttl_hours; run the purge again once Redis answers")
    return report


def _devices_of(spool: Spool, sessions: set[str]) -> dict[str, list[str]]:
    """The sessions by device MAC (from the spool, else from the room name), for memory erasure."""
    devices: dict[str, list[str]] = {}
    for session_id in sessions:
        record = spool.session(session_id)
        mac = record.mac if record is not None and record.mac_valid else mac_from_room_name(session_id)
        if mac:
            devices.setdefault(mac, []).append(session_id)
    return devices


def _sessions(spool: Spool, mac: str | None, session_id: str | None) -> set[str]:
    return spool.sessions_of(mac=mac, session_id=session_id)


def _count_turns(spool: Spool, sessions: set[str]) -> int:
    return sum(spool.turn_count(s) for s in sessions)


def _needles(mac: str | None, session_id: str | None, sessions: set[str]) -> list[bytes]:
    """Byte strings that identify the device's data inside any file."""
    values = set(sessions)
    if session_id:
        values.add(session_id)
    if mac:
        values.update({mac, mac.replace(":", "")})
    return [v.encode("utf-8", "surrogatepass") for v in values if v]


def _files_to_remove(backup_dir: Path, spool_path: Path, needles: list[bytes],
                     sessions: set[str], mac: str | None) -> list[Path]:
    chosen: list[Path] = []
    for path in backup_files(backup_dir):
        try:
            session = read_backup(path).session
            if session.session_id in sessions or (mac and session.mac == mac):
                chosen.append(path)
        except BackupError:
            if _mentions(path, needles):
                chosen.append(path)  # a damaged file that holds the device's data goes too
    quarantine = backup_dir / "quarantine"
    if quarantine.is_dir():
        # A quarantined copy can't be edited row by row; its intact turns were recovered into
        # the live spool when it was quarantined, so a copy that mentions the device goes.
        chosen += [p for p in quarantine.rglob("*") if p.is_file() and _mentions(p, needles)]
    live = {spool_path, Path(f"{spool_path}-wal"), Path(f"{spool_path}-shm")}
    return [p for p in dict.fromkeys(chosen) if p not in live]


def _mentions(path: Path, needles: list[bytes]) -> bool:
    try:
        data = path.read_bytes()
    except OSError:
        return False
    return any(needle in data for needle in needles)


def _erase_rows(spool: Spool, sessions: set[str]) -> None:
    # Freed pages are zeroed and the WAL truncated, so no old page image keeps the words.
    spool.erase_sessions(sessions)
