"""Rebuild a damaged spool from its intact rows and the JSON backups, under the same name.

The damaged file is copied aside and read row by row around the damage (``_salvage``), merged
with the backups (which hold every turn with its status), written as a new file, and only then
are the originals moved into quarantine: a crash part-way leaves them untouched, and a rebuilt
spool passes the check, so a restart never meets the same damage twice (no crash loop).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import sqlite3
from pathlib import Path

import structlog

from voicelog.services.backup import BackupError, BackupTooNew, backup_files, read_backup
from voicelog.services.domain import mac_from_room_name
from voicelog.services.spool._schema import (
    SCHEMA,
    SCHEMA_VERSION,
    SESSION_COLUMNS,
    TURN_COLUMNS,
    session_row,
    turn_row,
)
from voicelog.services.spool.recovery._quarantine import RecoveryReport, quarantine_backup, quarantine_dir
from voicelog.services.spool.recovery._salvage import Key, salvage_spool

log = structlog.get_logger("voicelog.recovery")
_STATUS, _ATTEMPTS, _DELIVERED_MS, _UPDATED_MS = (TURN_COLUMNS.index(c) for c in (
    "status", "attempts", "delivered_ms", "updated_ms"))


def recover(path: Path, backup_dir: Path, reason: str, now_ms: int) -> RecoveryReport:
    """Quarantine the damaged spool and rebuild it from its intact rows and the backups."""
    qdir = quarantine_dir(backup_dir, now_ms)
    report = RecoveryReport(reason, str(qdir))
    found = salvage_spool(path, qdir / "work")
    report.from_spool = len(found.turns)  # before the backups add to the same dict
    report.unreadable_regions, report.rejected_rows = found.unreadable_regions, found.rejected_rows
    turns, sessions = found.turns, found.sessions
    _merge_backups(backup_dir, qdir, turns, sessions, report, now_ms)
    _count_lost(turns, found.known, report)
    if report.lost:
        found.losses.append((now_ms, None, "spool_damaged", report.lost, str(qdir)))
    rebuilt = Path(f"{path}.rebuilt")
    _build_spool(rebuilt, sessions, turns, found.losses)
    # Only now move the originals: a crash before this point leaves them untouched.
    for suffix in ("", "-wal", "-shm"):
        original = Path(f"{path}{suffix}")
        if original.exists():
            shutil.move(original, qdir / original.name)
            report.spool_files.append(original.name)
    os.replace(rebuilt, path)
    shutil.rmtree(qdir / "work", ignore_errors=True)
    report.sessions = len(sessions)
    report.save()
    log.error("spool_quarantined", reason=reason, quarantine=str(qdir), recovered_from_spool=report.from_spool,
              recovered_from_backups=report.from_backups, lost=report.lost,
              unreadable_regions=report.unreadable_regions,
              backups_quarantined=len(report.backups_quarantined))
    return report


def finish_interrupted_rebuild(path: Path) -> None:
    """Complete or discard a rebuild a dead process left (call under the recovery mutex only)."""
    rebuilt = Path(f"{path}.rebuilt")
    if rebuilt.exists() and not path.exists():
        os.replace(rebuilt, path)  # a recovery died between moving the original and this rename
    elif rebuilt.exists():
        rebuilt.unlink()  # a recovery died before quarantining: it will simply run again


def _merge_backups(backup_dir: Path, qdir: Path, turns: dict[Key, tuple], sessions: dict[str, tuple],
                   report: RecoveryReport, now_ms: int) -> None:
    """Add what only the backups hold; a backup saying "delivered" wins (fewer duplicates)."""
    for path in backup_files(backup_dir):
        try:
            backup = read_backup(path)
        except BackupTooNew:
            continue
        except BackupError as exc:
            report.backups_quarantined.append(quarantine_backup(path, backup_dir, qdir, str(exc)))
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
            sessions[session_id] = _orphan_session(session_id, turns, now_ms)


def _orphan_session(session_id: str, turns: dict[Key, tuple], now_ms: int) -> tuple:
    """A session row for turns whose session row was lost: the room name may still give the MAC."""
    mac = mac_from_room_name(session_id)
    started = min(row[5] for key, row in turns.items() if key[0] == session_id)
    return (session_id, mac or "unknown", int(mac is not None), "room_name" if mac else "none",
            started, now_ms, "recovered", None, None, 0, 0, 0, now_ms)


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


def _build_spool(target: Path, sessions: dict[str, tuple], turns: dict[Key, tuple],
                 losses: list[tuple]) -> None:
    for suffix in ("", "-wal", "-shm"):
        Path(f"{target}{suffix}").unlink(missing_ok=True)
    conn = sqlite3.connect(target)
    with contextlib.closing(conn):
        conn.execute("PRAGMA journal_mode=WAL")
        for statement in SCHEMA:
            conn.execute(statement)
        conn.execute("INSERT INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))
        conn.executemany(f"INSERT OR IGNORE INTO sessions ({', '.join(SESSION_COLUMNS)}) VALUES"
                         f" ({', '.join('?' * len(SESSION_COLUMNS))})", sessions.values())
        conn.executemany(f"INSERT OR IGNORE INTO turns ({', '.join(TURN_COLUMNS)}) VALUES"
                         f" ({', '.join('?' * len(TURN_COLUMNS))})",
                         [turns[key] for key in sorted(turns)])
        conn.executemany("INSERT OR IGNORE INTO losses VALUES (?, ?, ?, ?, ?)",
                         [row for row in losses if len(row) == 5])
        conn.commit()
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    os.chmod(target, 0o600)
