"""Forget a device, or erase sessions, in both stores: for commands, the /v1 API, purge and retention.

Blocking on purpose: its callers are commands and threads, and each Redis call fails within
``redis_timeout_ms``. When Redis cannot be reached the local part is still done, and the caller
is told so: a forget is queued (the daemon's writer applies it once Redis is back), an erasure
is reported as not done in Redis.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

import structlog

from voicelog.services.config import MemorySettings
from voicelog.services.memory._redis import REDIS_ERRORS, RedisEraser, sync_client
from voicelog.services.spool import Spool, SpoolMemory

log = structlog.get_logger("voicelog.memory")
ERASE_TIMEOUT_MS = 1000  # per Redis call from a command: generous, still bounded


ERASED, NOT_USED, UNREACHABLE = "erased", "not used", "unreachable"


@dataclass(frozen=True)
class EraseReport:
    """What an erasure did in each store."""

    local: bool  # the spool's part is done
    redis: str  # ERASED, NOT_USED (memory is not kept in Redis) or UNREACHABLE
    redis_turns: int = 0  # turns deleted from Redis
    error: str | None = None  # why Redis could not be reached

    @property
    def complete(self) -> bool:
        """Done in every store memory uses."""
        return self.local and self.redis != UNREACHABLE

    def to_dict(self) -> dict[str, object]:
        """The report for JSON answers."""
        return {"local": "erased" if self.local else "not done", "redis": self.redis,
                "redis_turns": self.redis_turns, "error": self.error}


class MemoryEraser:
    """Forget and erase over this host's spool and, with ``backend: redis``, the shared Redis."""

    def __init__(self, settings: MemorySettings, spool: Spool) -> None:
        self.settings = settings
        self.local = SpoolMemory(spool)

    def forget(self, mac: str, *, now_ms: int) -> EraseReport:
        """Never preload the device's turns captured until now; they stay for delivery and backups."""
        report = self._in_redis(lambda eraser: eraser.forget(mac, now_ms))
        # Not applied in Redis yet: the daemon's writer applies it once Redis is back.
        self.local.forget(mac, now_ms, synced=report.redis != UNREACHABLE or not self.settings.uses_redis)
        return report

    def erase_device(self, mac: str, *, now_ms: int) -> EraseReport:
        """After ``purge --mac``: the device's memory goes from Redis and its cut-off row from the spool.

        In Redis a cut-off marker (named by a hash, holding only a time) stays for the TTL, so a
        writer elsewhere cannot push the device's old turns back.
        """
        report = self._in_redis(lambda eraser: eraser.forget(mac, now_ms))
        self.local.drop_forget(mac)
        return report

    def erase_sessions(self, sessions_by_mac: Mapping[str, Iterable[str]]) -> EraseReport:
        """After a session purge or retention: those sessions' turns go from Redis."""
        wanted = {mac: list(ids) for mac, ids in sessions_by_mac.items()}
        wanted = {mac: ids for mac, ids in wanted.items() if ids}
        return self._in_redis(lambda eraser: sum(eraser.erase_sessions(m, i) for m, i in wanted.items()),
                              skip=not wanted)

    def _in_redis(self, work: Callable[[RedisEraser], int], *, skip: bool = False) -> EraseReport:
        if not self.settings.uses_redis:
            return EraseReport(True, NOT_USED)
        if skip:
            return EraseReport(True, ERASED)
        eraser = RedisEraser(sync_client(self.settings, timeout_ms=ERASE_TIMEOUT_MS), self.settings)
        try:
            return EraseReport(True, ERASED, int(work(eraser)))
        except REDIS_ERRORS as exc:
            error = f"{type(exc).__name__}: {exc}"[:300]
            log.warning("memory_redis_erase_failed", error=error)
            return EraseReport(True, UNREACHABLE, error=error)
        finally:
            eraser.close()
