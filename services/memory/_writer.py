"""The host's one Redis writer: sealed turns go from the spool to Redis, off every voice loop.

It runs in the daemon's process (beside the shipper), and in ``simulate`` and ``ship --once``,
which flush it before they exit. Job processes never write Redis: capture stays one SQLite commit,
with no connection and no work per job. Every ``push_interval`` (<= 0.5 s) it reads the turns
stored since its position, in rowid order, and pushes the sealed ones in one pipeline; a turn still
being captured is watched until it is sealed. While Redis is down nothing advances: the turns wait
in the spool (never in memory), and Redis catches up when it is back. When Redis comes back empty
(no epoch marker) the writer pushes its spool's whole TTL window again and then sets the marker.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass
from typing import Protocol

import structlog

from voicelog.services.config import MemorySettings
from voicelog.services.domain import wall_ms
from voicelog.services.memory._model import MemoryTurn
from voicelog.services.memory._redis import REDIS_ERRORS, RedisMemory
from voicelog.services.spool import FeedRow, SpoolMemory

log = structlog.get_logger("voicelog.memory")
BATCH = 500  # turns read from the spool, and pushed, per pass
SAVE_EVERY = 5.0  # seconds between saves of the writer's position in the spool
CURSOR, EPOCH = "memory_cursor", "memory_epoch"


class MemoryObserver(Protocol):
    """Who counts what the writer does (the daemon's metrics); must be cheap and never raise."""

    def memory_redis_state(self, *, up: bool, oldest_unpushed_ms: int | None) -> None:
        """Whether Redis takes writes, and the seal time of the oldest turn not yet in it."""

    def memory_redis_pushed(self, stored: int, refused: int) -> None:
        """Turns written to Redis (refused: past the TTL or forgotten)."""


class _Silent:
    def memory_redis_state(self, *, up: bool, oldest_unpushed_ms: int | None) -> None:
        pass

    def memory_redis_pushed(self, stored: int, refused: int) -> None:
        pass


@dataclass
class WriterStats:
    """What the writer has done since it started."""

    pushed: int = 0
    refused: int = 0
    failures: int = 0
    reseeds: int = 0
    up: bool = False
    last_error: str | None = None


class RedisMemoryWriter:
    """Push the host's sealed turns from the spool to Redis, in order, idempotently."""

    def __init__(self, settings: MemorySettings, feed: SpoolMemory, redis: RedisMemory, *,
                 observer: MemoryObserver | None = None) -> None:
        self.settings, self.feed, self.redis = settings, feed, redis
        self.observer = observer or _Silent()
        self.stats = WriterStats()
        self._position: int | None = None  # highest rowid read; None until the first pass
        self._watching: dict[int, FeedRow] = {}  # turns still being captured
        self._pending: dict[int, FeedRow] = {}  # sealed turns Redis has not acknowledged
        self._epoch: str | None = None
        self._caught_up = False
        self._reseeding = self._from_start = False
        self._saved: int | None = None
        self._saved_at = float("-inf")
        self._lock = asyncio.Lock()  # one pass at a time, whoever asks (the loop, a flush)

    async def run(self, stop: asyncio.Event) -> None:
        """Push every ``push_interval`` (at once again while a backlog drains) until ``stop``; then flush."""
        while not stop.is_set():
            await self.push_once()
            if self.stats.up and self.backlogged:
                await asyncio.sleep(0)  # let the loop breathe, then go on draining
                continue
            try:
                await asyncio.wait_for(stop.wait(), self.settings.push_interval)
            except (TimeoutError, asyncio.TimeoutError):
                pass
        await self.flush(timeout=2.0)

    async def flush(self, timeout: float = 5.0) -> bool:
        """Push until everything sealed so far is in Redis; False if that did not happen in time."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and not self.caught_up:
            await self.push_once()
            if not self.stats.up and not self.caught_up:
                await asyncio.sleep(min(0.1, max(0.0, deadline - time.monotonic())))
        async with self._lock:
            with contextlib.suppress(Exception):  # a busy spool: the next pass saves it
                await asyncio.to_thread(self._save_position, True)
        return self.caught_up

    @property
    def backlogged(self) -> bool:
        """More is waiting than one pass takes: the spool holds more, or a batch is still pending."""
        return not self._caught_up or len(self._pending) >= BATCH

    @property
    def caught_up(self) -> bool:
        """Everything sealed in the spool so far is in Redis (turns still open are not yet memory)."""
        return self._caught_up and not self._pending and self.stats.up and not self._reseeding

    async def push_once(self) -> None:
        """One pass: read what is new in the spool, push it, move the saved position on."""
        async with self._lock:
            await self._pass()

    async def _pass(self) -> None:
        try:
            forgets = await asyncio.to_thread(self._read_spool)
        except Exception as exc:  # noqa: BLE001 - a busy or damaged spool: try again next pass
            self._failed(f"spool: {type(exc).__name__}: {exc}", redis_down=False)
            return
        items = sorted(self._pending.values(), key=lambda r: r.rowid)[:BATCH]
        try:
            stored, epoch = await self.redis.write([(r.mac, MemoryTurn.from_spool(r.turn)) for r in items],
                                                   forgets, now_ms=wall_ms())
        except REDIS_ERRORS as exc:
            self._failed(f"redis: {type(exc).__name__}: {exc}", redis_down=True)
            return
        try:
            await self._after_push(items, stored, forgets, epoch)
        except REDIS_ERRORS as exc:  # setting the epoch marker: tried again after the next push
            self._failed(f"redis: {type(exc).__name__}: {exc}", redis_down=True)
        except Exception as exc:  # noqa: BLE001 - saving the position or a forget's mark: next pass
            self._failed(f"spool: {type(exc).__name__}: {exc}", redis_down=False)

    def _read_spool(self) -> list[tuple[str, int]]:
        """New and newly sealed turns into ``_pending``; returns forgets Redis has not applied yet."""
        if self._position is None or self.feed.replaced():
            self._restart_from(int(self.feed.meta(CURSOR) or 0))
            self._saved, self._epoch = self._position, self.feed.meta(EPOCH)
        floor = self.feed.take_floor()
        if floor is not None and floor < self._position:
            self._position = floor  # turns were deleted: rowids above it may be handed out again
        if len(self._pending) < BATCH:  # while Redis is down, the spool keeps what waits
            rows = self.feed.feed_after(self._position, BATCH)
            for row in rows:
                self._take(row)
                self._position = row.rowid
            self._caught_up = len(rows) < BATCH
        if self._watching:
            seen = {row.rowid: row for row in self.feed.feed_rows(list(self._watching))}
            for rowid in list(self._watching):
                del self._watching[rowid]
                if rowid in seen:
                    self._take(seen[rowid])
        return self.feed.unsynced_forgets(since_ms=wall_ms() - self.settings.ttl_ms)

    def _take(self, row: FeedRow) -> None:
        if row.open:
            self._watching[row.rowid] = row
        elif row.rememberable and row.turn.captured_ms >= wall_ms() - self.settings.ttl_ms:
            self._pending[row.rowid] = row

    def _restart_from(self, position: int) -> None:
        self._position, self._caught_up = position, False
        self._from_start = position == 0  # until an epoch is adopted: this scan covers the whole window
        self._watching.clear()

    async def _after_push(self, items: list[FeedRow], stored: list[int], forgets: list[tuple[str, int]],
                          epoch: str | None) -> None:
        for row in items:
            self._pending.pop(row.rowid, None)
        accepted = sum(stored)
        self.stats.pushed += accepted
        self.stats.refused += len(stored) - accepted
        self.observer.memory_redis_pushed(accepted, len(stored) - accepted)
        if not self.stats.up:
            log.info("memory_redis_writes_resumed", failures=self.stats.failures)
        self.stats.up, self.stats.last_error = True, None
        await asyncio.to_thread(self._after_push_in_spool, forgets)
        await self._check_epoch(epoch)
        self.observer.memory_redis_state(up=True, oldest_unpushed_ms=self._oldest_unpushed())

    def _after_push_in_spool(self, forgets: list[tuple[str, int]]) -> None:
        for mac, cutoff in forgets:
            self.feed.mark_forget_synced(mac, cutoff)
        self._save_position(False)

    def _save_position(self, now: bool) -> None:
        """Save where a restart begins: at most every few seconds (each save takes the spool's write
        lock, which capture also wants); a restart then pushes a few seconds again, harmlessly."""
        if self._position is None:
            return
        position = min([self._position, *(r - 1 for r in self._watching), *(r - 1 for r in self._pending)])
        if position == self._saved or not now and time.monotonic() - self._saved_at < SAVE_EVERY:
            return
        self.feed.save_meta(CURSOR, str(position))
        self._saved, self._saved_at = position, time.monotonic()

    async def _check_epoch(self, epoch: str | None) -> None:
        """Redis lost its data, or this host never filled it: push the whole TTL window again.

        The marker is set (or adopted) only once this host's window is back in Redis, so readers
        fall back to their spool meanwhile instead of trusting a half-filled Redis.
        """
        if epoch is not None and epoch == self._epoch:
            return
        if not self._reseeding:
            self._reseeding = True
            if self._epoch is not None:
                self.stats.reseeds += 1
                log.warning("memory_redis_reset_pushing_spool_again", marker_present=epoch is not None)
            if not self._from_start:
                self._restart_from(0)
            return
        if not self._caught_up or self._pending:
            return
        self._epoch = epoch if epoch is not None else await self.redis.mark_epoch()
        self._reseeding = self._from_start = False
        await asyncio.to_thread(self.feed.save_meta, EPOCH, self._epoch)

    def _failed(self, error: str, *, redis_down: bool) -> None:
        self.stats.failures += 1
        if self.stats.up or self.stats.failures == 1:
            log.warning("memory_redis_writes_failing", error=error[:300], waiting=len(self._pending))
        if redis_down:
            self.stats.up = False
        self.stats.last_error = error[:300]
        self.observer.memory_redis_state(up=self.stats.up, oldest_unpushed_ms=self._oldest_unpushed())

    def _oldest_unpushed(self) -> int | None:
        return min((r.updated_ms for r in self._pending.values()), default=None)
