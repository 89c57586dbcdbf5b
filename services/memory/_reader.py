"""Read a device's memory at session start, within a budget, never failing the session.

With ``backend: redis`` Redis is asked first (the fleet's view), merged with this host's spool
(which also holds turns the writer has not pushed yet), and the spool alone answers when Redis
fails, is slow or lost its data. Redis gets the budget less a reserve, so a hung Redis still leaves
time for the spool read (~0.1-2 ms). Whatever happens, the caller gets a ``Preload`` in time.
"""

from __future__ import annotations

import asyncio
import threading
import time
from dataclasses import dataclass, field
from enum import StrEnum

import structlog

from voicelog.services.config import MemorySettings
from voicelog.services.domain import wall_ms
from voicelog.services.memory._model import MemoryTurn, RememberedTurn, select
from voicelog.services.memory._redis import REDIS_ERRORS, RedisMemory, RedisMemoryReset
from voicelog.services.sealing import ContentCipher, ContentKeyError, is_sealed
from voicelog.services.spool import SpoolMemory

log = structlog.get_logger("voicelog.memory")
LOCAL_RESERVE_MS = 30  # of the budget kept for the spool read when Redis hangs
CLOSE_WAIT = 2.0  # seconds closing waits for a spool read or record still running in a thread
BREAKER_COOL_OFF = 1.0  # seconds Redis is skipped after it failed, so starts don't each pay the wait


class Outcome(StrEnum):
    """What a session start got from memory."""

    HIT = "hit"  # turns were preloaded
    MISS = "miss"  # the stores answered: nothing to remember
    TIMEOUT = "timeout"  # nothing answered within the budget: started without memory
    ERROR = "error"  # no store could be read: started without memory


@dataclass(frozen=True)
class Preload:
    """The turns a session starts with, and how they were found."""

    turns: tuple[RememberedTurn, ...]
    outcome: Outcome
    store: str  # "redis", "local" or "none"
    fell_back: bool = False  # Redis was configured but the spool answered alone
    elapsed_ms: float = 0.0
    reason: str | None = None  # why Redis was not used, or why nothing was read

    def to_dict(self) -> dict[str, object]:
        """The preload for JSON answers."""
        return {"store": self.store, "outcome": self.outcome.value, "fell_back": self.fell_back,
                "reason": self.reason, "turns": [t.to_dict() for t in self.turns]}


@dataclass
class _Breaker:
    open_until: float = 0.0

    def allows(self) -> bool:
        return time.monotonic() >= self.open_until

    def failed(self) -> None:
        self.open_until = time.monotonic() + BREAKER_COOL_OFF


@dataclass
class _Found:
    turns: list[MemoryTurn] = field(default_factory=list)
    cutoff_ms: int = -1


class MemoryReader:
    """The preload read over the spool (always) and Redis (when configured)."""

    def __init__(self, settings: MemorySettings, local: SpoolMemory, *, redis: RedisMemory | None = None,
                 cipher: ContentCipher | None = None) -> None:
        self.settings, self.local, self.redis, self.cipher = settings, local, redis, cipher
        self._breaker = _Breaker()
        # The spool connection is used from threads (reads, records) and closed from the loop:
        # one user at a time, and never after it is closed.
        self._spool_lock = threading.Lock()
        self._closed = False

    async def read(self, mac: str, *, agent_id: str | None = None, budget_ms: int | None = None,
                   now_ms: int | None = None) -> Preload:
        """The device's memory, read within ``budget_ms`` (default ``read_timeout_ms``)."""
        started = time.perf_counter()
        now_ms = wall_ms() if now_ms is None else now_ms
        deadline = asyncio.get_running_loop().time() + (budget_ms or self.settings.read_timeout_ms) / 1000
        found, store, reason = None, "local", None
        # Both stores at once: a session waits for the slower, not for the sum.
        spool_read = asyncio.ensure_future(asyncio.to_thread(self._recent, mac, now_ms - self.settings.ttl_ms))
        if self.redis is not None:
            found, reason = await self._from_redis(mac, now_ms, deadline)
            store = "redis" if found is not None else "local"
        local, local_problem = await self._from_spool(spool_read, deadline)
        if found is None and local is None:
            outcome = Outcome.TIMEOUT if local_problem == "timeout" else Outcome.ERROR
            return self._done(started, (), outcome, "none", reason or local_problem)
        merged = found or _Found()
        if local is not None:
            merged.turns += local.turns
        turns = select(merged.turns, self.settings, now_ms=now_ms, cutoff_ms=merged.cutoff_ms,
                       agent_id=agent_id, open_text=self._open)
        return self._done(started, tuple(turns), Outcome.HIT if turns else Outcome.MISS, store, reason)

    def _done(self, started: float, turns: tuple[RememberedTurn, ...], outcome: Outcome, store: str,
              reason: str | None) -> Preload:
        fell_back = self.redis is not None and store != "redis"
        return Preload(turns, outcome, store, fell_back, (time.perf_counter() - started) * 1000, reason)

    async def _from_redis(self, mac: str, now_ms: int, deadline: float) -> tuple[_Found | None, str | None]:
        if not self._breaker.allows():
            return None, "redis skipped: it failed less than a second ago"
        budget = deadline - asyncio.get_running_loop().time() - LOCAL_RESERVE_MS / 1000
        try:
            turns, cutoff = await asyncio.wait_for(
                self.redis.read(mac, now_ms=now_ms, limit=self.settings.max_turns), max(budget, 0.001))
        except (TimeoutError, asyncio.TimeoutError):
            reason = f"redis did not answer within {max(budget, 0) * 1000:.0f} ms"
        except RedisMemoryReset as exc:
            return None, str(exc)  # answered quickly: no reason to skip Redis for the next start
        except REDIS_ERRORS as exc:
            reason = f"redis unreachable: {type(exc).__name__}: {exc}"[:300]
        else:
            return _Found(turns, cutoff), None
        self._breaker.failed()
        return None, reason

    @staticmethod
    async def _from_spool(spool_read: asyncio.Future, deadline: float) -> tuple[_Found | None, str | None]:
        # A thread keeps a slow disk off the event loop; the wait is bounded, the read finishes alone.
        left = deadline - asyncio.get_running_loop().time()
        try:
            if left <= 0 and not spool_read.done():
                spool_read.cancel()
                return None, "timeout"
            turns = await asyncio.wait_for(spool_read, max(left, 0.0))
        except (TimeoutError, asyncio.TimeoutError):
            return None, "timeout"
        except Exception as exc:  # noqa: BLE001 - a damaged or locked spool: start without memory
            return None, f"spool unreadable: {type(exc).__name__}: {exc}"[:300]
        return _Found([MemoryTurn.from_spool(t) for t in turns]), None

    def _recent(self, mac: str, floor_ms: int) -> list:  # noqa: ANN401 - RecentTurn records
        with self._spool_lock:
            if self._closed:
                raise RuntimeError("memory reader closed")
            return self.local.recent(mac, floor_ms=floor_ms, limit=self.settings.max_turns)

    def _open(self, content: str) -> str | None:
        if not is_sealed(content):
            return content
        if self.cipher is None:
            return None  # sealed on a box with a key this one lacks: never preload ciphertext
        try:
            return self.cipher.open(content)
        except ContentKeyError:
            return None

    async def warm_up(self) -> None:
        """Connect to Redis now (while the job waits for the device), so the read pays no handshake."""
        if self.redis is None:
            return
        try:
            await asyncio.wait_for(self.redis.epoch(), self.settings.read_timeout_ms / 1000)
        except (*REDIS_ERRORS, asyncio.TimeoutError):
            pass  # the read itself will say what is wrong

    def record(self, session_id: str, preload: Preload) -> None:
        """Note in the spool what this session got, for /metrics (never raises)."""
        try:
            with self._spool_lock:
                if not self._closed:
                    self.local.record_preload(session_id, at_ms=wall_ms(), outcome=preload.outcome.value,
                                              store=preload.store, fell_back=preload.fell_back,
                                              turns=len(preload.turns))
        except Exception as exc:  # noqa: BLE001 - a count must never cost the session anything
            log.warning("memory_preload_not_recorded", error=str(exc)[:200])

    async def aclose(self) -> None:
        """Close the Redis connections, and the spool connection once no thread uses it."""
        if self.redis is not None:
            await self.redis.aclose()
        await asyncio.to_thread(self._close_spool)

    def _close_spool(self) -> None:
        # A read stuck on a dead disk must not hold up shutdown: then the connection is left open.
        if self._spool_lock.acquire(timeout=CLOSE_WAIT):
            try:
                self._closed = True
                self.local.spool.close()
            finally:
                self._spool_lock.release()
