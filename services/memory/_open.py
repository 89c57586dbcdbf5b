"""Build memory's parts from the settings: the reader (jobs, simulate, commands), the writer (daemon)."""

from __future__ import annotations

import asyncio
from urllib.parse import urlsplit, urlunsplit

from voicelog.services.config import Settings
from voicelog.services.memory._reader import MemoryReader
from voicelog.services.memory._redis import REDIS_ERRORS, RedisMemory, async_client
from voicelog.services.memory._writer import MemoryObserver, RedisMemoryWriter
from voicelog.services.spool import Spool, SpoolMemory

# The reader's own spool connection waits this long for a lock before the read counts as failed:
# well inside the 150 ms read budget.
READ_BUSY_TIMEOUT_MS = 100
WRITER_BUSY_TIMEOUT_MS = 2000


def open_memory_reader(settings: Settings, spool: Spool) -> MemoryReader | None:
    """The preload reader over the host's spool (and Redis with ``backend: redis``); None when off."""
    memory = settings.memory
    if not memory.enabled:
        return None
    local = SpoolMemory(spool.twin(busy_timeout_ms=READ_BUSY_TIMEOUT_MS))
    redis = RedisMemory(async_client(memory), memory) if memory.uses_redis else None
    return MemoryReader(memory, local, redis=redis, cipher=spool.cipher)


def open_memory_writer(settings: Settings, spool: Spool, *,
                       observer: MemoryObserver | None = None) -> RedisMemoryWriter | None:
    """The host's Redis writer over its own spool connection; None unless memory is kept in Redis."""
    memory = settings.memory
    if not memory.uses_redis:
        return None
    feed = SpoolMemory(spool.twin(busy_timeout_ms=WRITER_BUSY_TIMEOUT_MS))
    return RedisMemoryWriter(memory, feed, RedisMemory(async_client(memory), memory), observer=observer)


async def close_memory_writer(writer: RedisMemoryWriter | None) -> None:
    """Close the writer's Redis and spool connections."""
    if writer is not None:
        await writer.redis.aclose()
        writer.feed.spool.close()


def display_url(url: str) -> str:
    """The Redis URL with its password masked, for output and logs."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    netloc = f"{parts.username or ''}:***@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


async def redis_health(settings: Settings, timeout: float = 2.0) -> tuple[bool, str]:
    """Whether the memory Redis answers (and holds the epoch marker); with what to tell an operator."""
    memory = settings.memory
    redis = RedisMemory(async_client(memory), memory)
    try:
        epoch = await asyncio.wait_for(redis.epoch(), timeout)
    except (*REDIS_ERRORS, asyncio.TimeoutError) as exc:
        return False, f"{type(exc).__name__}: {exc}"[:200] or type(exc).__name__
    finally:
        await redis.aclose()
    if epoch is None:
        return True, "reachable but empty or reset: sessions preload from their spool until a writer refills it"
    return True, "reachable, filled by the fleet's writers"
