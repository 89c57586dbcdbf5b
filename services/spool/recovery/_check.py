"""Tell whether a spool file is damaged: SQLite's own checks plus values no voicelog writes."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from voicelog.services.spool.recovery._salvage import COUNT_IMPLAUSIBLE_TURNS, STATUSES_JSON

# integrity_check also compares every index with its table, but costs ~3 s per GiB.
FULL_CHECK_MAX_BYTES = 256 * 1024 * 1024
_CORRUPT = ("SQLITE_CORRUPT", "SQLITE_NOTADB", "SQLITE_IOERR_SHORT_READ")


def is_corruption(exc: BaseException) -> bool:
    """Whether an SQLite error means the file is damaged (not busy, full or misused)."""
    name = getattr(exc, "sqlite_errorname", "") or ""
    return type(exc) is sqlite3.DatabaseError and (
        name.startswith(_CORRUPT) or "malformed" in str(exc) or "not a database" in str(exc))


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
            bad = (conn.execute(COUNT_IMPLAUSIBLE_TURNS, (STATUSES_JSON,)).fetchone()[0]
                   if "turns" in tables else 0)
            return f"{bad} turn rows hold impossible values" if bad else None
        finally:
            conn.close()
    except sqlite3.DatabaseError as exc:
        if is_corruption(exc):
            return f"{type(exc).__name__}: {exc}"
        raise
