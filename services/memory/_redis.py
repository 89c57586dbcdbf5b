"""Memory in a Redis shared by the fleet: one sorted set and one key per turn, per device.

Keys (``{dev}`` is the device's ``device_ref``, a hash tag, so one device's keys share a slot):

    <prefix>:{dev}:idx       ZSET   turn ref -> captured ms (the device's turns, trimmed to max_turns)
    <prefix>:{dev}:t:<ref>   STRING the turn (JSON; content sealed when encryption is on),
                                    expiring on its own TTL: Redis itself forgets each turn on time
    <prefix>:{dev}:forget    STRING the forget cut-off (ms); expires after the TTL (older turns are gone)
    <prefix>:epoch           STRING set once the fleet's writers have filled an empty Redis; missing
                                    means Redis lost its data, and an empty answer would be a false
                                    "no memory": readers then fall back to their spool

Every write and read is one Lua script per device (atomic; a batch of devices is one pipeline, one
round trip); a write is idempotent per turn, so a replay after an outage or a retry stores nothing twice. Redis Cluster: the epoch key lives in
another slot than a device's keys; run a single Redis (with a replica) or Sentinel.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass

import redis
import redis.asyncio as aioredis
from redis.asyncio.retry import Retry as AsyncRetry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError
from redis.retry import Retry

from voicelog.services.config import MemorySettings
from voicelog.services.memory._model import MemoryTurn, device_ref, session_ref

# Failing fast matters more than riding out a blip: a session start has 150 ms for everything.
# One retry still replaces a pooled connection the server closed (restart) without an error.
RETRIES = 1
REDIS_ERRORS = (RedisError, OSError, TimeoutError)

# One device's turns in one call: ARGV = max_turns, ttl, now, turn key base, then (ref, created, json)
# per turn. Returns 1 (stored) or 0 (refused: at/before the forget cut-off, or past the TTL) per turn.
_WRITE = """
local cut = tonumber(redis.call('GET', KEYS[2]) or '-1')
local maxn, ttl, now, base = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]), ARGV[4]
local stored = {}
for i = 5, #ARGV, 3 do
  local created = tonumber(ARGV[i + 1])
  if created <= cut or created < now - ttl then
    stored[#stored + 1] = 0
  else
    redis.call('SET', base .. ARGV[i], ARGV[i + 2], 'PX', math.max(1, created + ttl - now))
    redis.call('ZADD', KEYS[1], created, ARGV[i])
    stored[#stored + 1] = 1
  end
end
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', '(' .. (now - ttl))
local over = redis.call('ZCARD', KEYS[1]) - maxn
if over > 0 then
  local gone = redis.call('ZRANGE', KEYS[1], 0, over - 1)
  for i = 1, #gone do redis.call('DEL', base .. gone[i]) end
  redis.call('ZREMRANGEBYRANK', KEYS[1], 0, over - 1)
end
local newest = redis.call('ZRANGE', KEYS[1], -1, -1, 'WITHSCORES')
if newest[2] then redis.call('PEXPIRE', KEYS[1], math.max(1, tonumber(newest[2]) + ttl - now)) end
return stored
"""

_READ = """
if not redis.call('GET', KEYS[3]) then return -1 end
local cut = redis.call('GET', KEYS[2]) or '-1'
local floor = math.max(tonumber(cut) + 1, tonumber(ARGV[1]))
local refs = redis.call('ZRANGE', KEYS[1], '+inf', floor, 'BYSCORE', 'REV', 'LIMIT', 0, tonumber(ARGV[2]))
local out = {cut}
for i = 1, #refs do
  local value = redis.call('GET', ARGV[3] .. refs[i])
  if value then out[#out + 1] = value end
end
return out
"""

_FORGET = """
local old = tonumber(redis.call('GET', KEYS[2]) or '-1')
local cut = math.max(old, tonumber(ARGV[1]))
redis.call('SET', KEYS[2], cut, 'PX', ARGV[2])
local refs = redis.call('ZRANGE', KEYS[1], '-inf', cut, 'BYSCORE')
for i = 1, #refs do redis.call('DEL', ARGV[3] .. refs[i]) end
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', cut)
if redis.call('ZCARD', KEYS[1]) == 0 then redis.call('DEL', KEYS[1]) end
return #refs
"""

_ERASE_SESSIONS = """
local wanted = {}
for i = 2, #ARGV do wanted[ARGV[i]] = true end
local refs = redis.call('ZRANGE', KEYS[1], 0, -1)
local n = 0
for i = 1, #refs do
  if wanted[string.match(refs[i], '^(.*)#')] then
    redis.call('DEL', ARGV[1] .. refs[i])
    redis.call('ZREM', KEYS[1], refs[i])
    n = n + 1
  end
end
if redis.call('ZCARD', KEYS[1]) == 0 then redis.call('DEL', KEYS[1]) end
return n
"""


class RedisMemoryReset(RuntimeError):
    """Redis has no epoch marker: it lost its data, so its answer cannot be trusted as complete."""


@dataclass(frozen=True)
class DeviceKeys:
    """The keys of one device."""

    idx: str
    turn_base: str
    forget: str


class Keys:
    """Key names under one prefix."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self.epoch = f"{prefix}:epoch"

    def device(self, mac: str) -> DeviceKeys:
        """The keys of the device with this MAC."""
        base = f"{self.prefix}:{{{device_ref(mac)}}}"
        return DeviceKeys(f"{base}:idx", f"{base}:t:", f"{base}:forget")


def async_client(settings: MemorySettings) -> aioredis.Redis:
    """A client for the event loop that fails within ``redis_timeout_ms`` per attempt."""
    timeout = settings.redis_timeout_ms / 1000
    return aioredis.Redis.from_url(settings.redis_url, socket_connect_timeout=timeout, socket_timeout=timeout,
                                   retry=AsyncRetry(NoBackoff(), RETRIES), health_check_interval=0,
                                   max_connections=16)


def sync_client(settings: MemorySettings, *, timeout_ms: int | None = None) -> redis.Redis:
    """A blocking client (for commands and erasure), failing as fast."""
    timeout = (timeout_ms or settings.redis_timeout_ms) / 1000
    return redis.Redis.from_url(settings.redis_url, socket_connect_timeout=timeout, socket_timeout=timeout,
                                retry=Retry(NoBackoff(), RETRIES), health_check_interval=0)


class RedisMemory:
    """Reads and writes (asyncio): the job's preload and the daemon's writer."""

    def __init__(self, client: aioredis.Redis, settings: MemorySettings) -> None:
        self.client, self.settings = client, settings
        self.keys = Keys(settings.key_prefix)
        self._write = client.register_script(_WRITE)
        self._read = client.register_script(_READ)
        self._forget = client.register_script(_FORGET)

    async def read(self, mac: str, *, now_ms: int, limit: int) -> tuple[list[MemoryTurn], int]:
        """The device's newest turns within the TTL (oldest first) and its forget cut-off."""
        k = self.keys.device(mac)
        raw = await self._read(keys=[k.idx, k.forget, self.keys.epoch],
                               args=[now_ms - self.settings.ttl_ms, limit, k.turn_base])
        if raw == -1:
            raise RedisMemoryReset(f"{self.keys.epoch} is missing: Redis is empty or lost its data "
                                   "(the hosts' writers are filling it again)")
        cutoff, *values = raw
        turns = []
        for value in reversed(values):
            try:
                turns.append(MemoryTurn.from_json(value))
            except ValueError:
                continue  # not ours to interpret; never worth failing a session start over
        return turns, int(cutoff)

    async def write(self, items: Sequence[tuple[str, MemoryTurn]], forgets: Sequence[tuple[str, int]], *,
                    now_ms: int) -> tuple[list[int], str | None]:
        """Apply forgets, then store (mac, turn) items, in one pipeline (one script call per device).

        Returns 1 (stored) or 0 (refused) per item, in order, and the epoch marker, read in the
        same round trip.
        """
        by_device: dict[str, list[int]] = {}
        for index, (mac, _) in enumerate(items):
            by_device.setdefault(mac, []).append(index)
        async with self.client.pipeline(transaction=False) as pipe:
            for mac, cutoff in forgets:
                k = self.keys.device(mac)
                await self._forget(keys=[k.idx, k.forget], args=[cutoff, self.settings.ttl_ms, k.turn_base],
                                   client=pipe)
            for mac, indexes in by_device.items():
                k = self.keys.device(mac)
                turns = [part for i in indexes for part in (items[i][1].ref, items[i][1].created_ms,
                                                            items[i][1].to_json())]
                await self._write(keys=[k.idx, k.forget], client=pipe,
                                  args=[self.settings.max_turns, self.settings.ttl_ms, now_ms, k.turn_base, *turns])
            pipe.get(self.keys.epoch)
            *results, epoch = await pipe.execute()
        stored = [0] * len(items)
        for indexes, answers in zip(by_device.values(), results[len(forgets):], strict=True):
            for index, answer in zip(indexes, answers, strict=True):
                stored[index] = int(answer)
        return stored, epoch.decode() if isinstance(epoch, bytes) else epoch

    async def epoch(self) -> str | None:
        """The epoch marker (None: Redis is empty or lost its data)."""
        value = await self.client.get(self.keys.epoch)
        return value.decode() if isinstance(value, bytes) else value

    async def mark_epoch(self) -> str:
        """Set the epoch marker unless another writer did; returns the marker now in force."""
        await self.client.set(self.keys.epoch, uuid.uuid4().hex, nx=True)
        return await self.epoch() or ""

    async def aclose(self) -> None:
        """Close the connections."""
        await self.client.aclose()


class RedisEraser:
    """Forgetting and erasure (blocking), for commands, the /v1 API and retention."""

    def __init__(self, client: redis.Redis, settings: MemorySettings) -> None:
        self.client, self.settings = client, settings
        self.keys = Keys(settings.key_prefix)
        self._forget = client.register_script(_FORGET)
        self._erase = client.register_script(_ERASE_SESSIONS)

    def forget(self, mac: str, cutoff_ms: int) -> int:
        """Delete the device's turns captured at or before ``cutoff_ms`` and refuse them from now on."""
        k = self.keys.device(mac)
        return int(self._forget(keys=[k.idx, k.forget], args=[cutoff_ms, self.settings.ttl_ms, k.turn_base]))

    def erase_sessions(self, mac: str, session_ids: Sequence[str]) -> int:
        """Delete the turns of these sessions of a device; returns how many went."""
        if not session_ids:
            return 0
        k = self.keys.device(mac)
        return int(self._erase(keys=[k.idx], args=[k.turn_base, *(session_ref(s) for s in session_ids)]))

    def close(self) -> None:
        """Close the connections."""
        self.client.close()
