"""WAL checkpoints off the capture path: a thread that copies the WAL into the spool file.

SQLite's automatic checkpoint runs inside the COMMIT of whichever write crosses the threshold,
so one ``add_message`` in a few hundred paid for copying the WAL and two fsyncs (the capture
p99.9 in the milliseconds). Processes that run a ``Checkpointer`` set their connections'
automatic checkpoint far out of reach (``CAPTURE_AUTOCHECKPOINT_PAGES``) and let this thread,
on its own connection, do the copying: PASSIVE (never blocks a writer) once the WAL passes
``passive_bytes``, RESTART (waits for readers, so the next writer starts the WAL from its
beginning) once it passes ``restart_bytes`` - the WAL stays bounded even under steady writes.
"""

from __future__ import annotations

import os
import sqlite3
import threading
from pathlib import Path

import structlog

from voicelog.services.spool import _queries as q

log = structlog.get_logger("voicelog.spool")

# On connections of a process that runs a Checkpointer: ~400 MB of WAL, never reached while the
# thread runs; still a bound if it cannot (a stuck disk), as SQLite's own would be.
CAPTURE_AUTOCHECKPOINT_PAGES = 100_000
PASSIVE_BYTES = 1024 * 1024
RESTART_BYTES = 32 * 1024 * 1024
INTERVAL_S = 0.25


class Checkpointer:
    """Checkpoint one spool file from a daemon thread until ``stop``."""

    def __init__(self, path: Path, *, busy_timeout_ms: int = 5000, interval: float = INTERVAL_S,
                 passive_bytes: int = PASSIVE_BYTES, restart_bytes: int = RESTART_BYTES) -> None:
        self.path, self.interval = Path(path), interval
        self.passive_bytes, self.restart_bytes = passive_bytes, restart_bytes
        self._busy_timeout_ms = busy_timeout_ms
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.checkpoints = {"passive": 0, "restart": 0, "failed": 0}
        self._inode = 0

    def start(self) -> Checkpointer:
        """Start the thread (once)."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="voicelog-checkpointer", daemon=True)
            self._thread.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the thread and wait for it (bounded: a checkpoint under way gets ``timeout``)."""
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout)

    def stop_soon(self) -> None:
        """Ask the thread to stop without waiting (a spool dropped without close)."""
        self._stop.set()

    def wal_bytes(self) -> int:
        """The WAL file's size (0 when there is none)."""
        try:
            return os.path.getsize(f"{self.path}-wal")
        except OSError:
            return 0

    def run_once(self, db: sqlite3.Connection, last_version: int | None) -> int | None:
        """One look: checkpoint if the WAL is big enough and something changed; the data version seen."""
        size = self.wal_bytes()
        if size < self.passive_bytes:
            return last_version
        version = db.execute(q.DATA_VERSION).fetchone()[0]
        if size < self.restart_bytes and version == last_version:
            return version  # nothing committed since the last copy: it is all in the file already
        kind = "restart" if size >= self.restart_bytes else "passive"
        try:
            db.execute(q.CHECKPOINT_RESTART if kind == "restart" else q.CHECKPOINT_PASSIVE).fetchone()
            self.checkpoints[kind] += 1
        except sqlite3.Error as exc:  # busy, or the file is being rebuilt: the next look tries again
            self.checkpoints["failed"] += 1
            log.debug("spool_checkpoint_failed", kind=kind, error=str(exc))
        return version

    def _connect(self) -> sqlite3.Connection | None:
        # mode=rw: never create a file. Missing means mid-rebuild (it reappears) or removed
        # (erased, a test's folder gone): nothing to checkpoint either way, so wait quietly.
        if not self.path.exists():
            return None
        db = sqlite3.connect(f"{self.path.resolve().as_uri()}?mode=rw", uri=True, isolation_level=None,
                             check_same_thread=False, timeout=self._busy_timeout_ms / 1000)
        db.execute(f"PRAGMA busy_timeout={int(self._busy_timeout_ms)}")
        self._inode = os.stat(self.path).st_ino
        return db

    def _replaced(self) -> bool:
        try:
            return os.stat(self.path).st_ino != self._inode
        except OSError:
            return True

    def _run(self) -> None:
        db = None
        version: int | None = None
        said = ""
        while not self._stop.wait(self.interval):
            try:
                if db is not None and self._replaced():  # a recovery rebuilt the file: follow it
                    db.close()
                    db, version = None, None
                if db is None:
                    db = self._connect()
                if db is not None:
                    version = self.run_once(db, version)
            except sqlite3.Error as exc:  # reconnect next time; say it once, not every 0.25 s
                if str(exc) != said:
                    log.warning("spool_checkpointer_error", error=str(exc))
                said = str(exc)
                if db is not None:
                    db.close()
                db, version = None, None
        if db is not None:
            db.close()
