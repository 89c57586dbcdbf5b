"""Advisory file locks (flock) between voicelog's processes on one host: the one helper."""

from __future__ import annotations

import fcntl
import os
from pathlib import Path


class FileLock:
    """An flock on one file, held exclusively or shared, with or without waiting.

    The lock file is created private (0600). Converting a held lock (exclusive to shared) keeps
    the same descriptor, as flock allows, so no other process can slip in between.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        """Whether this object holds the lock now."""
        return self._fd is not None

    def try_exclusive(self) -> bool:
        """Take the lock exclusively if nobody else holds it; False (not held) otherwise."""
        return self._lock(fcntl.LOCK_EX | fcntl.LOCK_NB)

    def exclusive(self) -> None:
        """Take the lock exclusively, waiting for others to let go."""
        self._lock(fcntl.LOCK_EX)

    def shared(self) -> None:
        """Hold the lock shared (waits out an exclusive holder)."""
        self._lock(fcntl.LOCK_SH)

    def note(self, text: str) -> None:
        """Write a short note into the held lock file (e.g. the holder's pid)."""
        assert self._fd is not None, "note() needs the lock held"
        os.ftruncate(self._fd, 0)
        os.pwrite(self._fd, text.encode(), 0)

    def read_note(self) -> str:
        """The note the current holder wrote, or "" when there is none."""
        try:
            return self.path.read_text(errors="replace").strip()
        except OSError:
            return ""

    def release(self) -> None:
        """Let go of the lock (closing the descriptor releases it)."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def _lock(self, operation: int) -> bool:
        if self._fd is None:
            self._fd = os.open(self.path, os.O_CREAT | os.O_RDWR, 0o600)
        try:
            fcntl.flock(self._fd, operation)
        except BlockingIOError:
            self.release()
            return False
        return True

    def __enter__(self) -> FileLock:
        self.exclusive()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()
