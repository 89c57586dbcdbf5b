"""One process's connection to the spool file: pragmas, WAL, write transactions, file size.

``durability: process`` (synchronous=NORMAL) survives the death of any process,
``durability: power`` (synchronous=FULL) also survives power loss, at the cost of an fsync.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import structlog

from voicelog.services.config import Durability
from voicelog.services.spool import _queries as q
from voicelog.services.spool._errors import SpoolError
from voicelog.services.spool._schema import MIGRATIONS, SCHEMA, SCHEMA_VERSION

log = structlog.get_logger("voicelog.spool")

_SYNCHRONOUS = {Durability.PROCESS: "NORMAL", Durability.POWER: "FULL"}
# SQLite's own default, stated, for processes without a Checkpointer thread (short CLI commands):
# a lower one would put a checkpoint's two fsyncs on their commits more often. Processes with one
# raise it out of reach (``_checkpoint``). A full disk is handled by checkpointing on SQLITE_FULL.
WAL_CHECKPOINT_PAGES = 1000
_WAL_SIZE_LIMIT = 4 * 1024 * 1024  # a WAL grown past this (long reader) is cut back after
_REWRITE_MARGIN = 16 * 1024 * 1024  # free space kept beyond a rewrite's two copies


class SpoolConnection:
    """A connection with voicelog's pragmas, a write-transaction helper and size figures."""

    def __init__(self, path: Path, *, durability: Durability, busy_timeout_ms: int,
                 autocheckpoint_pages: int = WAL_CHECKPOINT_PAGES) -> None:
        self.path = path
        self._durability, self._busy_timeout_ms = Durability(durability), busy_timeout_ms
        self.autocheckpoint_pages = autocheckpoint_pages
        self.db = self._connect()

    def _connect(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.path, isolation_level=None,
                             timeout=self._busy_timeout_ms / 1000, check_same_thread=False)
        self.inode = os.stat(self.path).st_ino
        os.chmod(self.path, 0o600)
        db.execute(f"PRAGMA busy_timeout={int(self._busy_timeout_ms)}")
        self._enter_wal_mode(db)
        db.execute(f"PRAGMA synchronous={_SYNCHRONOUS[self._durability]}")
        db.execute(q.WAL_AUTOCHECKPOINT_SET.format(int(self.autocheckpoint_pages)))
        db.execute(f"PRAGMA journal_size_limit={_WAL_SIZE_LIMIT}")
        # A turn's row rewritten (text growing, status moving on) or moved by a page split leaves
        # its old bytes behind, in the page or in a freed page, unless zeroed: with secure_delete
        # every connection zeroes them, so an erasure later finds no stale copy of the words.
        db.execute(q.SECURE_DELETE_ON)
        return db

    def _enter_wal_mode(self, db: sqlite3.Connection) -> None:
        # Switching a brand-new file to WAL needs an exclusive lock, and SQLite answers BUSY at
        # once (no busy handler) when another process is doing the same: retry, bounded.
        deadline = time.monotonic() + self._busy_timeout_ms / 1000
        while True:
            try:
                db.execute("PRAGMA journal_mode=WAL")
                return
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) or time.monotonic() > deadline:
                    raise
                time.sleep(0.005)

    def sibling(self, *, busy_timeout_ms: int) -> SpoolConnection:
        """A second connection to the same file with the same durability."""
        return SpoolConnection(self.path, durability=self._durability, busy_timeout_ms=busy_timeout_ms,
                               autocheckpoint_pages=self.autocheckpoint_pages)

    def ensure_schema(self) -> None:
        """Create the tables of a new file, bring an older one up to date; refuse a newer one."""
        with self.write() as db:
            for statement in SCHEMA:
                db.execute(statement)
            row = db.execute(q.SCHEMA_VERSION_GET).fetchone()
            if row is None:
                db.execute(q.SCHEMA_VERSION_SET, (str(SCHEMA_VERSION),))
            elif int(row[0]) > SCHEMA_VERSION:
                raise SpoolError(f"spool {self.path} has schema {row[0]}, newer than this voicelog "
                                 f"({SCHEMA_VERSION}); upgrade voicelog")
            elif int(row[0]) < SCHEMA_VERSION:
                self._migrate(db, int(row[0]))

    def _migrate(self, db: sqlite3.Connection, found: int) -> None:
        # Inside the schema transaction: the file moves to the new version whole or not at all.
        for version in range(found + 1, SCHEMA_VERSION + 1):
            for table, column, statement in MIGRATIONS.get(version, ()):
                if column not in {row[0] for row in db.execute(q.TABLE_COLUMNS, (table,))}:
                    db.execute(statement)
        db.execute(q.META_SET, ("schema_version", str(SCHEMA_VERSION)))
        log.warning("spool_schema_upgraded", path=str(self.path), from_version=found, to_version=SCHEMA_VERSION)

    def close(self) -> None:
        """Close the connection."""
        self.db.close()

    def reopen_if_replaced(self) -> bool:
        """Reconnect when another process quarantined and rebuilt the file; True if it did."""
        try:
            replaced = os.stat(self.path).st_ino != self.inode
        except FileNotFoundError:
            return False  # mid-rebuild: the new file appears in a moment
        if replaced:
            self.db.close()
            self.db = self._connect()
        return replaced

    @contextmanager
    def write(self) -> Iterator[sqlite3.Connection]:
        """A write transaction that takes the write lock up front (BEGIN IMMEDIATE).

        Taking it first means a transaction never fails half-way with SQLITE_BUSY after it read.
        """
        self.db.execute("BEGIN IMMEDIATE")
        try:
            yield self.db
            self.db.execute("COMMIT")
        except BaseException:
            # Also after a failed COMMIT (disk full): never leave the connection mid-transaction.
            if self.db.in_transaction:
                self.db.execute("ROLLBACK")
            raise

    def size_bytes(self) -> int:
        """Bytes the spool occupies on disk, including its write-ahead log."""
        total = 0
        for suffix in ("", "-wal"):
            try:
                total += os.path.getsize(f"{self.path}{suffix}")
            except OSError:
                pass
        return total

    def used_bytes(self) -> int:
        """Bytes holding data: the file less its free pages (reused before the file grows)."""
        pages, free, size = (self.db.execute(f"PRAGMA {name}").fetchone()[0]
                             for name in ("page_count", "freelist_count", "page_size"))
        return (pages - free) * size

    def checkpoint(self) -> bool:
        """Copy the WAL into the main file without waiting; True when all of it was copied.

        On a nearly full disk this is what lets writes go on: the WAL is then reused from its
        start instead of growing (automatic checkpoints only come after ~4 MB of it).
        """
        try:
            busy, frames, copied = self.db.execute(q.CHECKPOINT_PASSIVE).fetchone()
        except sqlite3.DatabaseError:
            return False
        return busy == 0 and frames == copied

    def rewrite_file(self) -> bool:
        """Rebuild the whole file (VACUUM), so no old bytes stay anywhere in it; False if it cannot now.

        It needs about twice the file's size free (a temporary copy, kept beside the spool rather
        than in /tmp, and the WAL); without that room, or while another process holds the write
        lock past the busy timeout, it is skipped.
        """
        size = self.size_bytes()
        if shutil.disk_usage(self.path.parent).free < 2 * size + _REWRITE_MARGIN:
            return False
        folder = str(self.path.parent).replace("'", "''")
        try:
            self.db.execute(q.TEMP_STORE_DIRECTORY.format(f"'{folder}'"))
            self.db.execute(q.VACUUM)
        except sqlite3.OperationalError:
            return False
        return True

    def truncate_wal(self, attempts: int = 3) -> bool:
        """Checkpoint and cut the WAL to nothing, so deleted words leave no old page image.

        A reader in another process can hold the checkpoint back; it is retried briefly, and
        False says the WAL still holds older frames (the next checkpoint overwrites them).
        """
        for _ in range(attempts):
            busy, _, _ = self.db.execute(q.CHECKPOINT_TRUNCATE).fetchone()
            if busy == 0:
                return True
            time.sleep(0.05)
        return False
