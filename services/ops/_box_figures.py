"""The figures of a box at one moment, for ``voicelog top``: the same ones ``/metrics`` shows.

They are read from the running daemon (``/metrics`` and ``/readyz`` on ``http.listen``) when one
answers, else straight from the spool (``SpoolStats``) with this process asking the Manager
itself (the same harmless secret check as ``doctor``, at most every few seconds). Two readings
make a frame: turns per second and the Manager's time per request come from their difference.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import asdict, dataclass, field
from typing import Any

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

from voicelog.services.config import Settings
from voicelog.services.domain import wall_ms
from voicelog.services.ops._http import MANAGER_PROBE_TTL, ManagerHealth, ManagerState
from voicelog.services.ops._metrics import BACKLOG_STATUSES, SpoolStats
from voicelog.services.shipping.manager import ManagerApiClient

DAEMON_TIMEOUT = 2.0  # seconds one read of the daemon's endpoint may take
Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]  # (name, sorted labels) -> value
MEMORY_PROBE_SECONDS = 5.0  # spool mode: how often this process asks the memory Redis itself


@dataclass
class BoxFigures:
    """One reading of the box (counters are totals; rates need two readings)."""

    source: str  # "daemon" or "spool"
    where: str  # the daemon's address, or the spool file
    taken: float = field(default_factory=time.monotonic)
    at_ms: int = field(default_factory=wall_ms)
    sessions_active: int = 0
    captured_total: float = 0.0
    delivered_total: float = 0.0
    backlog: dict[str, int] = field(default_factory=dict)
    oldest_waiting_s: float | None = None
    parked_devices: int = 0
    spool_bytes: int = 0
    spool_max_bytes: int = 0
    manager: str = "unknown"  # ok, down, secret refused, not configured, unknown
    manager_reason: str = ""
    requests: float = 0.0  # requests to the Manager so far (daemon), for the time per request
    request_seconds: float = 0.0
    probe_seconds: float | None = None  # this process's last own secret check (spool mode)
    livekit: str | None = None  # registered / not registered (only `voicelog start` has a worker)
    livekit_reason: str = ""
    memory: str = "off"  # the memory store in words: off, local, redis up/down with its lag


@dataclass
class BoxFrame:
    """What ``top`` shows: the latest reading and the rates since the one before."""

    now: BoxFigures
    captured_per_s: float | None
    delivered_per_s: float | None
    manager_latency_s: float | None

    def to_json(self) -> dict[str, Any]:
        """The frame for scripts (``top --json``)."""
        figures = asdict(self.now)
        figures.pop("taken")  # a monotonic clock reading means nothing outside this process
        return {**figures, "at_ms": self.now.at_ms, "captured_per_s": self.captured_per_s,
                "delivered_per_s": self.delivered_per_s, "manager_latency_s": self.manager_latency_s}


def frame(now: BoxFigures, before: BoxFigures | None) -> BoxFrame:
    """Rates between two readings (None for the first, or when the source changed)."""
    if before is None or before.source != now.source or now.taken <= before.taken:
        return BoxFrame(now, None, None, now.probe_seconds)
    seconds = now.taken - before.taken
    # Totals read from the spool fall when retention prunes: a rate is never negative.
    captured = max(0.0, now.captured_total - before.captured_total) / seconds
    delivered = max(0.0, now.delivered_total - before.delivered_total) / seconds
    asked = now.requests - before.requests
    latency = (now.request_seconds - before.request_seconds) / asked if asked > 0 else now.probe_seconds
    return BoxFrame(now, captured, delivered, latency)


class FigureSource:
    """Reads the box: from the daemon while it answers, else from the spool; close() when done."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._base = f"http://{settings.http.listen}" if settings.http.listen else None
        self._http: aiohttp.ClientSession | None = None
        self._stats: SpoolStats | None = None
        self._client: ManagerApiClient | None = None
        self._manager: ManagerHealth | None = None
        self._probe_seconds: float | None = None  # how long our last own secret check took
        self._redis_state: tuple[float, str] | None = None  # (when asked, what it said), spool mode

    async def read(self) -> BoxFigures:
        """One reading, from the daemon if it answers within DAEMON_TIMEOUT, else from the spool."""
        if self._base is not None:
            try:
                return await self._from_daemon()
            except (aiohttp.ClientError, OSError, TimeoutError, ValueError):
                pass  # no daemon (or not ours) on that address: read the spool instead
        return await self._from_spool()

    async def _from_daemon(self) -> BoxFigures:
        if self._http is None:
            self._http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=DAEMON_TIMEOUT))
        async with self._http.get(self._base + "/metrics") as response:
            response.raise_for_status()
            text = await response.text()
        async with self._http.get(self._base + "/readyz") as response:  # 503 is an answer too
            ready = await response.json(content_type=None)
        figures = BoxFigures("daemon", self._base)
        _apply_metrics(figures, _samples(text))
        figures.memory = memory_words(self.settings, _samples(text))
        _apply_readiness(figures, ready.get("checks", {}))
        return figures

    async def _from_spool(self) -> BoxFigures:
        history = self.settings.chat_history
        if self._stats is None:
            if not history.spool_file.exists():
                # A viewer must not create a spool where a wrong path points: say there is none.
                return await self._with_manager(BoxFigures("spool", f"{history.spool_file} (no spool there)"))
            self._stats = SpoolStats(history.spool_file, max_bytes=history.spool_max_mb * 1024 * 1024)
        snapshot = await self._stats.snapshot()
        figures = BoxFigures("spool", str(history.spool_file), sessions_active=snapshot.sessions_active,
                             captured_total=sum(snapshot.counts.values()),
                             delivered_total=snapshot.counts.get("delivered", 0),
                             backlog={s.value: snapshot.counts.get(s.value, 0) for s in BACKLOG_STATUSES},
                             oldest_waiting_s=None if snapshot.oldest_waiting_ms is None
                             else max(0, snapshot.taken_ms - snapshot.oldest_waiting_ms) / 1000,
                             parked_devices=snapshot.parked_devices, spool_bytes=snapshot.spool_bytes,
                             spool_max_bytes=snapshot.max_bytes)
        figures.memory = await self._memory_from_here()
        return await self._with_manager(figures)

    async def _memory_from_here(self) -> str:
        """The memory store as this process sees it (no daemon to ask): Redis asked every few seconds."""
        memory = self.settings.memory
        if not memory.enabled or not memory.uses_redis:
            return memory_words(self.settings, {})
        from voicelog.services.memory import display_url, redis_health

        if self._redis_state is None or time.monotonic() - self._redis_state[0] > MEMORY_PROBE_SECONDS:
            up, why = await redis_health(self.settings, timeout=1.0)
            state = f"redis {display_url(memory.redis_url)} " + ("up" if up else f"DOWN ({why})")
            self._redis_state = (time.monotonic(), state)
        return self._redis_state[1]

    async def _with_manager(self, figures: BoxFigures) -> BoxFigures:
        """Add the Manager's state as this process sees it (asking at most every few seconds)."""
        started = time.perf_counter()
        state, asked = await self._manager_state()
        if asked:
            self._probe_seconds = time.perf_counter() - started
        figures.probe_seconds = self._probe_seconds if state.configured else None
        figures.manager, figures.manager_reason = manager_word(state), state.reason
        return figures

    async def _manager_state(self) -> tuple[ManagerState, bool]:
        """The Manager's state, and whether the Manager was asked just now (else it was known)."""
        if self._manager is None:
            api = self.settings.manager_api
            self._client = ManagerApiClient(api) if api.url else None
            self._manager = ManagerHealth(self._client.check_secret if self._client else None, None,
                                          ttl=MANAGER_PROBE_TTL)
        known = self._manager.current()
        state = await self._manager.state()
        return state, state.configured and state is not known

    async def close(self) -> None:
        """Close connections (HTTP session, spool, Manager client)."""
        if self._http is not None:
            await self._http.close()
        if self._manager is not None:
            await self._manager.aclose()
        if self._client is not None:
            await self._client.aclose()
        if self._stats is not None:
            await asyncio.to_thread(self._stats.close)


def manager_word(state: ManagerState) -> str:
    """The Manager in one or two words: ok, down, secret refused, not configured."""
    if not state.configured:
        return "not configured"
    if state.secret_accepted:
        return "ok"
    return "secret refused" if state.reachable else "down"


def memory_words(settings: Settings, samples: Samples) -> str:
    """The memory store in a few words: off, local, or Redis up/down with its lag; and preloads."""
    memory = settings.memory
    if not memory.enabled:
        return "off (memory.enabled: false)"
    preloads = {o: samples.get(("voicelog_memory_preloads_total", (("outcome", o),)), 0.0)
                for o in ("hit", "miss", "timeout", "error")}
    started = sum(preloads.values())
    said = f"; {int(started)} session starts, {int(preloads['hit'])} remembered" if started else ""
    if not memory.uses_redis:
        return "local (this host's spool)" + said
    if not samples:
        return "redis (state unknown)" + said
    up = samples.get(("voicelog_memory_redis_up", ()), 0.0) >= 1
    lag = samples.get(("voicelog_memory_redis_lag_seconds", ()), 0.0)
    return ("redis up" if up else "redis DOWN (sessions read this host's spool)") + f", lag {lag:.1f} s" + said


def _samples(text: str) -> Samples:
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[sample.name, tuple(sorted(sample.labels.items()))] = sample.value
    return found


def _apply_metrics(figures: BoxFigures, samples: Samples) -> None:
    def value(name: str, **labels: str) -> float:
        return samples.get((name, tuple(sorted(labels.items()))), 0.0)

    figures.sessions_active = int(value("voicelog_sessions_active"))
    figures.captured_total = value("voicelog_turns_total", event="captured")
    figures.delivered_total = value("voicelog_turns_total", event="delivered")
    figures.backlog = {s.value: int(value("voicelog_backlog_turns", status=s.value))
                       for s in BACKLOG_STATUSES}
    waiting = figures.backlog.get("pending", 0) + figures.backlog.get("parked", 0)
    figures.oldest_waiting_s = value("voicelog_oldest_pending_age_seconds") if waiting else None
    figures.parked_devices = int(value("voicelog_parked_devices"))
    figures.spool_bytes = int(value("voicelog_spool_bytes"))
    figures.spool_max_bytes = int(value("voicelog_spool_max_bytes"))
    figures.requests = value("voicelog_manager_request_seconds_count")
    figures.request_seconds = value("voicelog_manager_request_seconds_sum")


def _apply_readiness(figures: BoxFigures, checks: dict[str, Any]) -> None:
    manager = checks.get("manager") or {}
    state = ManagerState(bool(manager.get("configured")), bool(manager.get("reachable")),
                         bool(manager.get("secret_accepted")), str(manager.get("reason") or ""), 0)
    figures.manager, figures.manager_reason = manager_word(state), state.reason
    livekit = checks.get("livekit")
    if isinstance(livekit, dict):
        figures.livekit = "registered" if livekit.get("registered") else "not registered"
        figures.livekit_reason = str(livekit.get("reason") or "")
