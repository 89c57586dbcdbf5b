"""WAL checkpoints off the capture path: no capture commit copies the WAL, and it stays bounded.

Real files and the real capture service. That no commit checkpointed is seen in the spool file
itself: a checkpoint is the only thing that writes pages of the WAL into it.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

from tests.kits.delivery import eventually
from tests.kits.faults import room
from voicelog.services.capture import ChatHistoryService
from voicelog.services.config import ChatHistorySettings
from voicelog.services.domain import ChatType, resolve_identity
from voicelog.services.spool import open_spool
from voicelog.services.spool._checkpoint import RESTART_BYTES, Checkpointer

WORDS = "the dragon in the story sleeps under the old bridge and dreams of pancakes " * 20  # ~1.5 kB


def wal_bytes(path: Path) -> int:
    return os.path.getsize(f"{path}-wal") if os.path.exists(f"{path}-wal") else 0


def capture(spool, turns: int, n: int = 0) -> ChatHistoryService:
    service = ChatHistoryService(spool, resolve_identity(room(n)), ChatHistorySettings())
    for i in range(turns):
        service.add_message(ChatType.USER if i % 2 else ChatType.AGENT, f"{i} {WORDS}")
    return service


async def test_capture_commits_never_checkpoint_and_the_checkpointer_keeps_the_wal_bounded(tmp_path):
    """With the checkpointer held still, 100 MB of WAL leave the spool file untouched; running, it copies them and the WAL stays small."""
    path = tmp_path / "spool.db"
    spool = open_spool(path, checkpoint=True)
    assert spool.checkpointer is not None
    spool.checkpointer.stop()  # held still: whatever reaches the file now came from a commit
    file_before = os.path.getsize(path)
    capture(spool, 6000)
    # SQLite's own automatic checkpoint would have run every ~4 MB of WAL inside a COMMIT.
    assert wal_bytes(path) > 8 * 1024 * 1024
    assert os.path.getsize(path) == file_before, "a capture commit copied the WAL into the file"

    checkpointer = Checkpointer(path, interval=0.05).start()
    try:
        await eventually(lambda: os.path.getsize(path) > 8 * 1024 * 1024, what="the WAL copied into the file")
        # Steady capture at ~1,000 turns/s (ten times a full box's peak): each turn writes ~4.5
        # pages (row, indexes, session) to the WAL, so these 5,000 turns append ~90 MB of
        # frames. Between commits the checkpointer copies them and the WAL is reused from its
        # start instead of growing. (Capture flat out with no gap at all can keep even a
        # RESTART waiting for the write lock: BENCHMARKS.md, section 1's max.)
        service = ChatHistoryService(spool, resolve_identity(room(1)), ChatHistorySettings())
        largest = 0
        for i in range(5000):
            service.add_message(ChatType.USER if i % 2 else ChatType.AGENT, f"{i} {WORDS}")
            if i % 10 == 9:
                await asyncio.sleep(0.01)
                largest = max(largest, wal_bytes(path))
        assert largest < RESTART_BYTES, f"the WAL grew to {largest} bytes"
        assert checkpointer.checkpoints["passive"] > 0
    finally:
        checkpointer.stop()
        spool.close()
    check = open_spool(path)
    assert sum(check.status_counts().values()) == 6000 + 5000
    check.close()


def test_short_commands_keep_sqlites_own_checkpoints_and_no_thread(tmp_path):
    """A spool opened without ``checkpoint`` (support commands) runs no thread and checkpoints as SQLite does."""
    path = tmp_path / "spool.db"
    spool = open_spool(path)
    assert spool.checkpointer is None
    assert spool.connection.db.execute("PRAGMA wal_autocheckpoint").fetchone()[0] == 1000
    capture(spool, 4000)
    assert wal_bytes(path) < 8 * 1024 * 1024  # reset after SQLite's automatic checkpoints
    spool.close()


def test_the_checkpointer_never_creates_a_spool_that_is_gone(tmp_path):
    """An erased or rebuilt-away spool file is not brought back empty by the checkpointer."""
    path = tmp_path / "spool.db"
    spool = open_spool(path, checkpoint=True)
    spool.close()
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    checkpointer = Checkpointer(path)
    assert checkpointer._connect() is None
    assert not path.exists()
