"""Find a damaged spool or backup file, move it aside, and rebuild from everything intact.

When a process opens the spool and no other process has it open, it checks the file
(``PRAGMA integrity_check``, or ``quick_check`` on a very large file, plus impossible values).
A damaged spool is copied aside, read row by row around the damage (services/spool_salvage.py),
merged with the JSON backups (which hold every turn with its status), rebuilt under the same
name, and the originals land in ``<backup_dir>/quarantine/<time>/`` with a ``report.json``.
Damaged backup files are quarantined the same way and rewritten from the spool. Losses are
counted in the report, the log and the spool's ``losses`` table. A rebuilt spool passes the
check, so a restart never meets the same damage twice: no crash loop.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import sqlite3
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import structlog

from voicelog.services.backup._writer import (
    BackupDamaged,
    BackupTooNew,
    backup_files,
    damaged_backups,
    document_rows,
    quarantine_backup,
    read_backup_document,
    rewrite_backups,
)
from voicelog.services.domain._identity import mac_from_room_name
from voicelog.services.spool.recovery._salvage import COUNT_IMPLAUSIBLE_TURNS, Key, salvage_spool
from voicelog.services.spool._schema import SCHEMA, SCHEMA_VERSION, SESSION_COLUMNS, TURN_COLUMNS

if TYPE_CHECKING:
    from voicelog.services.spool._spool import Spool

log = structlog.get_logger("voicelog.recovery")
QUARANTINE = "quarantine"
# integrity_check also compares every index with its table, but costs ~3 s per GiB.
FULL_CHECK_MAX_BYTES = 256 * 1024 * 1024
_CORRUPT = ("SQLITE_CORRUPT", "SQLITE_NOTADB", "SQLITE_IOERR_SHORT_READ")


def is_corruption(exc: BaseException) -> bool:
    """Whether an SQLite error means the file is damaged (not busy, full or misused)."""
    name = getattr(exc, "sqlite_errorname", "") or ""
    return type(exc) is sqlite3.DatabaseError and (
        name.startswith(_CORRUPT) or "malformed" in str(exc) or "not a database" in str(exc))


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


class SpoolUsers:
    """A lock file every open Spool holds shared; holding it exclusively means "no one else"."""

    def __init__(self, spool_path: Path) -> None:
        self._fd: int | None = os.open(f"{spool_path}.users.lock", os.O_CREAT | os.O_RDWR, 0o600)

    def try_alone(self) -> bool:
        """Take the lock exclusively if no other connection holds it."""
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        return True

    def share(self) -> None:
        """Hold the lock shared for as long as the spool is open (waits out a checker)."""
        fcntl.flock(self._fd, fcntl.LOCK_SH)

    def release(self) -> None:
        """Give the lock up (closing the spool)."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


@contextlib.contextmanager
def _recovery_mutex(spool_path: Path) -> Iterator[None]:
    fd = os.open(f"{spool_path}.recover.lock", os.O_CREAT | os.O_RDWR, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def prepare_file(path: Path, backup_dir: Path, users: SpoolUsers, *,
                 now_ms: int) -> RecoveryReport | None:
    """Check the spool and backups before connecting, when this process is the only user."""
    if not users.try_alone():
        with _recovery_mutex(path):  # waits out a recovery under way elsewhere
            _finish_interrupted_rebuild(path)
        users.share()
        return None
    try:
        with _recovery_mutex(path):
            _finish_interrupted_rebuild(path)
            problem = spool_problem(path)
            if problem is not None:
                return recover(path, backup_dir, problem, now_ms)
            try:
                return _quarantine_damaged_backups(backup_dir, now_ms)
            except OSError as exc:  # the spool is sound: a backup folder problem must not stop it
                log.error("backup_check_failed", error=str(exc))
                return None
    finally:
        users.share()


def recover_in_use(path: Path, backup_dir: Path, reason: str, inode: int, *,
                   now_ms: int) -> RecoveryReport | None:
    """Recover a spool found damaged while others use it, unless one of them already did."""
    with _recovery_mutex(path):
        with contextlib.suppress(FileNotFoundError):
            if os.stat(path).st_ino != inode:
                return None
        return recover(path, backup_dir, reason, now_ms)


def spool_problem(path: Path) -> str | None:
    """Why the spool file is damaged, or None when it is sound (or does not exist yet)."""
    if not path.exists():
        return None
    if path.stat().st_size == 0:
        # Our spool writes its schema on creation: an empty file is one truncated to nothing.
        return "the spool file is empty (truncated)"
    check = "integrity_check" if path.stat().st_size <= FULL_CHECK_MAX_BYTES else "quick_check"
    try:
        conn = sqlite3.connect(path, timeout=30)
        try:
            found = [row[0] for row in conn.execute(f"PRAGMA {check}(10)")]
            if found != ["ok"]:
                return f"{check}: " + "; ".join(map(str, found))[:500]
            tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master")}
            bad = conn.execute(COUNT_IMPLAUSIBLE_TURNS).fetchone()[0] if "turns" in tables else 0
            return f"{bad} turn rows hold impossible values" if bad else None
        finally:
            conn.close()
    except sqlite3.DatabaseError as exc:
        if is_corruption(exc):
            return f"{type(exc).__name__}: {exc}"
        raise


def recover(path: Path, backup_dir: Path, reason: str, now_ms: int) -> RecoveryReport:
    """Quarantine the damaged spool and rebuild it from its intact rows and the backups."""
    qdir = _quarantine_dir(backup_dir, now_ms)
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


def _finish_interrupted_rebuild(path: Path) -> None:
    # Only under the recovery mutex: a ".rebuilt" file then belongs to a recovery that died.
    rebuilt = Path(f"{path}.rebuilt")
    if rebuilt.exists() and not path.exists():
        os.replace(rebuilt, path)  # a recovery died between moving the original and this rename
    elif rebuilt.exists():
        rebuilt.unlink()  # a recovery died before quarantining: it will simply run again


def _quarantine_dir(backup_dir: Path, now_ms: int) -> Path:
    stamp = datetime.fromtimestamp(now_ms / 1000, tz=UTC).strftime("%Y%m%dT%H%M%S.%fZ")
    for attempt in range(1000):
        candidate = backup_dir / QUARANTINE / (stamp if attempt == 0 else f"{stamp}-{attempt}")
        with contextlib.suppress(FileExistsError):
            candidate.mkdir(parents=True, mode=0o700)
            return candidate
    raise RuntimeError(f"cannot create a quarantine folder under {backup_dir / QUARANTINE}")


# --- the backups -------------------------------------------------------------------------------

def _merge_backups(backup_dir: Path, qdir: Path, turns: dict[Key, tuple], sessions: dict[str, tuple],
                   report: RecoveryReport, now_ms: int) -> None:
    """Add what only the backups hold; a backup saying "delivered" wins (fewer duplicates)."""
    for path in backup_files(backup_dir):
        try:
            document = read_backup_document(path)
        except BackupTooNew:
            continue
        except BackupDamaged as exc:
            report.backups_quarantined.append(quarantine_backup(path, backup_dir, qdir, str(exc)))
            continue
        session_row, turn_rows = document_rows(document, now_ms)
        sessions.setdefault(session_row[0], session_row)
        for row in turn_rows:
            key = (row[0], row[1])
            if key not in turns:
                turns[key] = row
                report.from_backups += 1
            elif row[7] == "delivered" and turns[key][7] != "delivered":
                turns[key] = turns[key][:7] + ("delivered", row[8]) + turns[key][9:13] + row[13:]
    for session_id, seq in turns:
        if session_id not in sessions:
            sessions[session_id] = _orphan_session(session_id, turns, now_ms)


def _orphan_session(session_id: str, turns: dict[Key, tuple], now_ms: int) -> tuple:
    """A session row for turns whose session row was lost: the room name may still give the MAC."""
    mac = mac_from_room_name(session_id)
    started = min(row[5] for key, row in turns.items() if key[0] == session_id)
    return (session_id, mac or "unknown", int(mac is not None), "room_name" if mac else "none",
            started, now_ms, "recovered", None, None, 0, 0, 0, now_ms)


def _quarantine_damaged_backups(backup_dir: Path, now_ms: int) -> RecoveryReport | None:
    """Move damaged backup files aside (the spool is sound and will rewrite them)."""
    damaged = damaged_backups(backup_dir)
    if not damaged:
        return None
    qdir = _quarantine_dir(backup_dir, now_ms)
    report = RecoveryReport("damaged backup files", str(qdir))
    report.backups_quarantined = [quarantine_backup(p, backup_dir, qdir, why) for p, why in damaged]
    report.save()
    return report


def rebuild_damaged_backups(spool: Spool, report: RecoveryReport, now_ms: int) -> None:
    """Rewrite each quarantined backup from the spool when the spool has its session."""
    if not report.backups_quarantined:
        return
    try:
        report.backups_rebuilt = rewrite_backups(spool, spool.backup_dir, report.backups_quarantined, now_ms)
        report.save()
    except OSError as exc:  # the next write of each session rebuilds it anyway
        log.error("backup_rebuild_failed", error=str(exc))
        return
    log.warning("backups_rebuilt_from_spool", rebuilt=len(report.backups_rebuilt),
                quarantined=len(report.backups_quarantined))


# --- the rebuilt spool -------------------------------------------------------------------------

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
