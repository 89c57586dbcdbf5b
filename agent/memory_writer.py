"""The host's Redis memory writer as a running task: started beside the shipper, flushed when it stops.

One writer per host, in the process that holds the shipper lock (``start``, ``ship``, ``ship --once``)
or runs ``simulate``; job processes only read. Without ``memory.backend: redis`` there is none.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import structlog

from voicelog.services.config import Settings
from voicelog.services.memory import (
    MemoryObserver,
    RedisMemoryWriter,
    close_memory_writer,
    open_memory_writer,
)
from voicelog.services.spool import Spool

log = structlog.get_logger("voicelog.memory")


@contextlib.asynccontextmanager
async def running_memory_writer(settings: Settings, spool: Spool, *, observer: MemoryObserver | None = None
                                ) -> AsyncIterator[tuple[RedisMemoryWriter, asyncio.Task[None]] | None]:
    """The writer pushing in the background; on exit one last bounded flush, then closed."""
    writer = open_memory_writer(settings, spool, observer=observer)
    if writer is None:
        yield None
        return
    stop = asyncio.Event()
    task = asyncio.create_task(writer.run(stop), name="voicelog-memory-writer")
    try:
        yield writer, task
    finally:
        stop.set()
        await asyncio.gather(task, return_exceptions=True)
        if not writer.caught_up:
            log.warning("memory_not_all_in_redis_at_exit", error=writer.stats.last_error,
                        hint="the next start pushes the rest from the spool")
        await close_memory_writer(writer)


async def flush_memory(settings: Settings, spool: Spool, timeout: float = 5.0) -> bool | None:
    """Push everything sealed so far to Redis once (``ship --once``); None when memory is not in Redis."""
    writer = open_memory_writer(settings, spool)
    if writer is None:
        return None
    try:
        return await writer.flush(timeout)
    finally:
        await close_memory_writer(writer)
