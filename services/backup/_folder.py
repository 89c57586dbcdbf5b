"""The backup folder as a place on disk: private to the service user, free of dead writers' leftovers.

The folder holds children's words (the spool usually lives in it too), so it is tightened to
0700 whenever the spool is opened, and a temporary file a killed writer left behind (a whole
session's words, ``.tmp-*.json``) is removed by the open-time check, prune and purge.
"""

from __future__ import annotations

import os
import re
import stat
import time
from pathlib import Path

import structlog

log = structlog.get_logger("voicelog.backup")
TEMP_PREFIX = ".tmp-"
TEMP_SUFFIX = ".json"
# A writer holds its temporary file for milliseconds; one this old belongs to a dead process.
STALE_TEMP_SECONDS = 300.0
_DAY_DIR = re.compile(r"^\d{4}-\d{2}-\d{2}$")
# Folders other programs share: a misconfigured backup_dir pointing at one is reported, not chmod-ed.
_SHARED_FOLDERS = frozenset(map(Path, ("/", "/tmp", "/var/tmp", "/dev/shm", "/run", "/var", "/var/lib",
                                       "/home", "/etc", "/usr", "/opt", "/srv", "/mnt", "/media")))


def tighten_data_dir(folder: str | os.PathLike[str]) -> bool:
    """Make voicelog's data folder private (0700) if it is looser; True if it was changed (logged)."""
    folder = Path(folder)
    try:
        info = folder.stat()
    except FileNotFoundError:
        return False
    mode = stat.S_IMODE(info.st_mode)
    if not stat.S_ISDIR(info.st_mode) or mode & 0o7077 == 0:
        return False
    if folder.resolve() in _SHARED_FOLDERS or info.st_uid != os.geteuid():
        log.error("data_directory_not_private", path=str(folder), mode=oct(mode),
                  hint="give chat_history.backup_dir a folder of its own, owned by the service user")
        return False
    os.chmod(folder, 0o700)
    log.warning("data_directory_tightened", path=str(folder), was=oct(mode), now="0o700")
    return True


def temp_files(backup_dir: str | os.PathLike[str]) -> list[Path]:
    """Temporary files of backup writers in the day folders (live or left by a dead writer)."""
    try:
        days = [p for p in Path(backup_dir).iterdir() if _DAY_DIR.match(p.name) and p.is_dir()
                and not p.is_symlink()]
    except FileNotFoundError:
        return []
    return sorted(f for day in days for f in day.glob(f"{TEMP_PREFIX}*{TEMP_SUFFIX}"))


def remove_stale_temp_files(backup_dir: str | os.PathLike[str], *,
                            min_age: float = STALE_TEMP_SECONDS) -> list[Path]:
    """Delete writers' temporary files older than ``min_age`` seconds; returns those removed.

    ``min_age`` 0 is for callers holding the backup write lock: no write is in progress then.
    """
    removed, now = [], time.time()
    for path in temp_files(backup_dir):
        try:
            if now - path.lstat().st_mtime >= min_age:
                path.unlink()
                removed.append(path)
        except FileNotFoundError:
            continue  # its writer finished (renamed it) meanwhile
    return removed
