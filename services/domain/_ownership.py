"""Who owns what on this host: the capturing process of a session, the single shipper."""

from __future__ import annotations

import os
from pathlib import Path

from voicelog.services.domain._locks import FileLock


def process_owner(pid: int | None = None) -> str:
    """``pid:starttime`` of a process, so a reused pid is not mistaken for the owner."""
    pid = os.getpid() if pid is None else pid
    return f"{pid}:{_start_time(pid) or '0'}"


def owner_alive(owner: str | None) -> bool:
    """Whether the process recorded as a session's owner is still running."""
    if not owner or ":" not in owner:
        return False
    pid_text, start = owner.split(":", 1)
    if not pid_text.isdigit():
        return False
    current = _start_time(int(pid_text))
    return current is not None and (start == "0" or current == start)


def _start_time(pid: int) -> str | None:
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            # The command name may hold spaces or parentheses: parse after the last ')'.
            return handle.read().rsplit(b")", 1)[1].split()[19].decode()
    except (OSError, IndexError):
        return None


class ShipperAlreadyRunning(RuntimeError):
    """Another process on this host already owns delivery for this spool."""


class ShipperLock:
    """An exclusive lock beside the spool: exactly one shipper per host delivers."""

    def __init__(self, spool_path: Path) -> None:
        self._lock = FileLock(f"{spool_path}.shipper.lock")
        self.path = self._lock.path

    def acquire(self) -> None:
        """Take the lock or raise ShipperAlreadyRunning naming the holder."""
        if not self._lock.try_exclusive():
            holder = self._lock.read_note() or "unknown"
            raise ShipperAlreadyRunning(f"another shipper (pid {holder}) already delivers from "
                                        f"this spool; stop it first")
        self._lock.note(str(os.getpid()))

    def release(self) -> None:
        """Give the lock up."""
        self._lock.release()
