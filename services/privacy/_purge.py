"""Erase every local copy of a device's (or one session's) chats, on request.

Covers the spool (all statuses, dead-letter included, and turns an older voicelog left without a
session row), backup files (also ones copied from another box, or existing only on disk),
temporary files a killed writer left, and quarantined files that mention the device. SQLite's
freed pages are zeroed (secure_delete) and the write-ahead log is checkpointed, so deleted words
do not linger in the database files. With a ``MemoryEraser`` the device's (or session's)
conversation memory goes too, from the shared Redis as well.

A session still being captured is erased the same way and leaves a tombstone (a digest of its
id, no content): its capture stops quietly, and every later turn is refused and counted in
``losses`` (``erased_session_turn``) instead of being stored where nothing would find it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from voicelog.services.backup import (
    BackupError,
    BackupWriter,
    backup_file_name,
    backup_files,
    read_backup,
    remove_stale_temp_files,
    temp_files,
)
from voicelog.services.domain import mac_from_room_name, wall_ms
from voicelog.services.memory import EraseReport, MemoryEraser
from voicelog.services.spool import ClipStore, Spool


@dataclass
class PurgeReport:
    """What an erasure removed."""

    sessions: list[str] = field(default_factory=list)
    live: list[str] = field(default_factory=list)  # still being captured: later turns refused
    turns: int = 0
    clips: int = 0  # the children's voices (audio.enabled), erased with their turns
    files: list[str] = field(default_factory=list)
    leftovers: list[str] = field(default_factory=list)  # other dead writers' temporary files, removed too
    errors: list[str] = field(default_factory=list)
    wal_truncated: bool = True  # False: a reader elsewhere held old page images in the WAL for now
    rewritten: bool = True  # False: no room (or too busy) to rebuild the spool file whole
    memory: EraseReport | None = None


def purge(spool: Spool, backup_dir: str | Path, *, mac: str | None = None,
          session_id: str | None = None, dry_run: bool = False, now_ms: int | None = None,
          memory: MemoryEraser | None = None) -> PurgeReport:
    """Remove the selected device's or session's turns, sessions, files and memory; report them."""
    if not mac and not session_id:
        raise ValueError("purge needs a MAC or a session id")
    backup_dir = Path(backup_dir)
    report = PurgeReport()
    chosen = spool.sessions_of(mac=mac, session_id=session_id)
    records = {s: spool.session(s) for s in chosen}
    report.live = sorted(s for s, record in records.items() if record is not None and record.ended_ms is None)
    report.turns = sum(spool.turn_count(s) for s in chosen)
    clips = ClipStore(spool)
    report.clips = sum(len(clips.of_session(s)) for s in chosen)
    wanted = chosen | ({session_id} if session_id else set())
    paths = _files_to_remove(backup_dir, spool.path, _needles(mac, wanted), wanted, mac)
    writer = BackupWriter(backup_dir)
    # Where each chosen session's backup goes, even if it is not written yet: a writer that
    # was busy while we looked has finished by the time we hold its lock.
    expected = [writer.path_for(r) for r in records.values() if r is not None]
    report.sessions = sorted(chosen | ({session_id} if session_id and paths else set()))
    report.files = [str(p) for p in dict.fromkeys(paths + [p for p in expected if p.exists()])]
    if dry_run:
        return report
    now_ms = wall_ms() if now_ms is None else now_ms
    devices = _devices_of(spool, wanted)
    with writer.locked():  # no backup write in progress, and none brings a session back after
        erasure = spool.erase_sessions(chosen, now_ms)
        report.rewritten, report.wal_truncated = erasure.rewritten, erasure.wal_truncated
        leftovers = remove_stale_temp_files(backup_dir, min_age=0)
        for path in dict.fromkeys(paths + expected):
            _unlink(path, report)
    report.leftovers = sorted({str(p) for p in leftovers} - set(report.files))
    if memory is not None:
        report.memory = (memory.erase_device(mac, now_ms=now_ms) if mac
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


def _needles(mac: str | None, sessions: set[str]) -> list[bytes]:
    """Byte strings that identify the device's data inside any file."""
    values = set(sessions)
    if mac:
        values.update({mac, mac.replace(":", "")})
    return [v.encode("utf-8", "surrogatepass") for v in values if v]


def _files_to_remove(backup_dir: Path, spool_path: Path, needles: list[bytes],
                     sessions: set[str], mac: str | None) -> list[Path]:
    names = {backup_file_name(s) for s in sessions}
    chosen: list[Path] = []
    for path in backup_files(backup_dir):
        try:
            session = read_backup(path).session
            if session.session_id in sessions or (mac and session.mac == mac):
                chosen.append(path)
        except BackupError:
            if path.name in names or _mentions(path, needles):
                chosen.append(path)  # a damaged file that names the session or holds the device's data
    # Temporary files a killed writer left hold a whole session's words too.
    chosen += [p for p in temp_files(backup_dir) if _mentions(p, needles)]
    quarantine = backup_dir / "quarantine"
    if quarantine.is_dir():
        # A quarantined copy can't be edited row by row; its intact turns were recovered into
        # the live spool when it was quarantined, so a copy that mentions the device goes.
        chosen += [p for p in quarantine.rglob("*") if _regular(p) and _mentions(p, needles)]
    live = {spool_path, Path(f"{spool_path}-wal"), Path(f"{spool_path}-shm")}
    return [p for p in dict.fromkeys(chosen) if p not in live]


def _regular(path: Path) -> bool:
    return path.is_file() and not path.is_symlink()


def _mentions(path: Path, needles: list[bytes]) -> bool:
    if path.is_symlink():
        return False  # never read through a link: it may point anywhere
    try:
        data = path.read_bytes()
    except OSError:
        return False
    return any(needle in data for needle in needles)


def _unlink(path: Path, report: PurgeReport) -> None:
    try:
        path.unlink(missing_ok=True)
    except OSError as exc:
        report.errors.append(f"{path}: {exc.strerror}")
