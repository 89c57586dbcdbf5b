"""Prometheus metrics for the daemon; one registry per process, passed in, never global.

Delivery outcomes are counted where they happen (the shipper, in this process). Capture
happens in job processes, so "captured", "skipped", the backlog and the spool size are read
from the spool itself (``SpoolStats``) on each scrape and applied with ``Metrics.apply``; so are
the per-turn measurements (how long the child waited for the toy, LLM and TTS first output) of
turns sealed since this process started.
"""

from __future__ import annotations

import asyncio
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

from voicelog.services.domain import UNDELIVERED, WAITING, TurnMeta, TurnStatus
from voicelog.services.spool import (
    CLIPS_SKIPPED_FULL,
    CLIPS_UNREADABLE,
    ClipStore,
    PreloadCount,
    SpoolMemory,
    open_spool,
)

BACKLOG_STATUSES = UNDELIVERED
READY_PROBE_KEY = "ready_probe_ms"
# Per-turn measurement (ms, in TurnMeta) -> histogram name, help, buckets in seconds.
_WAIT_BUCKETS = (0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 8.0, 13.0)
_STEP_BUCKETS = (0.05, 0.1, 0.2, 0.35, 0.5, 0.75, 1.0, 2.0, 5.0)
TURN_HISTOGRAMS = {
    "e2e_latency_ms": ("voicelog_response_latency_seconds", "How long the child waited: end of the "
                       "child's speech to the first audio of the toy's reply", _WAIT_BUCKETS),
    "end_of_turn_delay_ms": ("voicelog_end_of_turn_delay_seconds", "End of the child's speech to "
                             "the decision that the turn is over", _STEP_BUCKETS),
    "llm_node_ttft_ms": ("voicelog_llm_ttft_seconds", "LLM time to first token, per reply", _STEP_BUCKETS),
    "tts_node_ttfb_ms": ("voicelog_tts_ttfb_seconds", "TTS time to first audio, per reply", _STEP_BUCKETS),
}


class Metrics:
    """The counters, gauges and histograms voicelog exposes on /metrics."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.turns = Counter("voicelog_turns_total", "Turns by what happened to them "
                             "(captured, delivered, parked, dead_letter, skipped)",
                             ["event"], registry=r)
        self.attempts = Counter("voicelog_delivery_attempts_total",
                                "Delivery attempts by outcome class", ["outcome"], registry=r)
        self.backlog = Gauge("voicelog_backlog_turns", "Undelivered turns in the spool, by status",
                             ["status"], registry=r)
        self.oldest_pending_age = Gauge("voicelog_oldest_pending_age_seconds",
                                        "Age of the oldest turn waiting for delivery", registry=r)
        self.latency = Histogram("voicelog_delivery_latency_seconds",
                                 "Capture to delivered", registry=r,
                                 buckets=(0.1, 0.5, 1, 2, 5, 10, 30, 60, 120, 300, 900, 3600))
        self.spool_bytes = Gauge("voicelog_spool_bytes", "Bytes the spool uses on disk", registry=r)
        self.sessions_active = Gauge("voicelog_sessions_active", "Device sessions being captured",
                                     registry=r)
        self.manager_auth_ok = Gauge("voicelog_manager_secret_accepted",
                                     "1 while the Manager accepts our secret", registry=r)
        self.manager_reachable = Gauge("voicelog_manager_reachable",
                                       "1 if the Manager answered the last health probe", registry=r)
        self.last_delivery = Gauge("voicelog_last_delivery_timestamp_seconds",
                                   "When a turn was last delivered (0: not since start)", registry=r)
        self.per_turn = {key: Histogram(name, text, registry=r, buckets=buckets)
                         for key, (name, text, buckets) in TURN_HISTOGRAMS.items()}
        self.mqtt_commands = Counter("voicelog_mqtt_commands_total",
                                     "MQTT fleet commands by result (accepted, refused, failed)",
                                     ["result"], registry=r)
        self.mqtt_command_restarts = Counter("voicelog_mqtt_command_task_restarts_total",
                                             "Times the MQTT command task crashed and was restarted",
                                             registry=r)
        self.request_seconds = Histogram("voicelog_manager_request_seconds",
                                         "How long one request to the Manager took, answered or not",
                                         registry=r,
                                         buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10))
        self.parked_devices = Gauge("voicelog_parked_devices", "Devices (MACs) with parked turns", registry=r)
        self.spool_max_bytes = Gauge("voicelog_spool_max_bytes", "The spool's size cap (spool_max_mb)",
                                     registry=r)
        self.audio_clips = Gauge("voicelog_audio_clips", "Turns' audio clips held in the spool (audio.enabled)",
                                 registry=r)
        self.audio_clip_bytes = Gauge("voicelog_audio_clip_bytes", "Bytes those clips take (cap: audio.max_mb)",
                                      registry=r)
        self.audio_skipped = Counter("voicelog_audio_clips_skipped_total", "Clips not kept (their text was): "
                                     "box_full (at audio.max_mb), unreadable (sent without audio)",
                                     ["reason"], registry=r)
        self._livekit: Gauge | None = None
        self.manager_auth_ok.set(1)
        for event in ("captured", "delivered", "parked", "dead_letter", "skipped"):
            self.turns.labels(event=event)  # present from the first scrape, at 0
        self._seen: dict[str, int] = {}
        self._applied: SpoolSnapshot | None = None
        self._memory_metrics(r)

    def _memory_metrics(self, r: CollectorRegistry) -> None:
        self.memory_preloads = Counter(
            "voicelog_memory_preloads_total", "Session starts by what memory gave: hit (turns preloaded), "
            "miss (nothing to remember), timeout or error (started without memory)", ["outcome"], registry=r)
        self.memory_turns_preloaded = Counter("voicelog_memory_turns_preloaded_total",
                                              "Turns sessions were started with, from memory", registry=r)
        self.memory_fallbacks = Counter("voicelog_memory_redis_fallbacks_total", "Session starts that read "
                                        "the spool because Redis failed, was too slow or had lost its data",
                                        registry=r)
        self.memory_redis_up = Gauge("voicelog_memory_redis_up",
                                     "1 while Redis takes the memory writer's pushes", registry=r)
        self.memory_redis_lag = Gauge("voicelog_memory_redis_lag_seconds",
                                      "Age of the oldest sealed turn not yet in Redis (0: none)", registry=r)
        self.memory_redis_written = Counter("voicelog_memory_redis_turns_total", "Turns the memory writer "
                                            "sent to Redis: stored, or refused (past the TTL, forgotten)",
                                            ["result"], registry=r)
        for outcome in ("hit", "miss", "timeout", "error"):
            self.memory_preloads.labels(outcome=outcome)
        for result in ("stored", "refused"):
            self.memory_redis_written.labels(result=result)
        self._oldest_unpushed_ms: int | None = None

    def memory_redis_state(self, *, up: bool, oldest_unpushed_ms: int | None) -> None:
        """The writer's view of Redis (a MemoryObserver)."""
        self.memory_redis_up.set(int(up))
        self._oldest_unpushed_ms = oldest_unpushed_ms
        self._set_lag(time.time_ns() // 1_000_000)

    def memory_redis_pushed(self, stored: int, refused: int) -> None:
        """Turns the writer sent to Redis (a MemoryObserver)."""
        if stored:
            self.memory_redis_written.labels(result="stored").inc(stored)
        if refused:
            self.memory_redis_written.labels(result="refused").inc(refused)

    def _set_lag(self, now_ms: int) -> None:
        oldest = self._oldest_unpushed_ms
        self.memory_redis_lag.set(0 if oldest is None else max(0, now_ms - oldest) / 1000)

    def turn_event(self, event: str, count: int = 1) -> None:
        """Count turns reaching a state."""
        if count:
            self.turns.labels(event=event).inc(count)

    def attempted(self, outcome: str) -> None:
        """Count one request to the Manager by its outcome class."""
        self.attempts.labels(outcome=outcome).inc()

    def delivered_after(self, seconds: float) -> None:
        """Record how long after capture a turn was delivered."""
        self.latency.observe(seconds)

    def request_took(self, seconds: float) -> None:
        """Record how long one request to the Manager took."""
        self.request_seconds.observe(seconds)

    def livekit(self) -> Gauge:
        """``voicelog_livekit_registered``: exported only by a process that runs the LiveKit worker."""
        if self._livekit is None:
            self._livekit = Gauge("voicelog_livekit_registered", "1 while the LiveKit worker is registered "
                                  "with the server (voicelog start only)", registry=self.registry)
        return self._livekit

    def apply(self, snapshot: SpoolSnapshot) -> None:
        """Set the spool-derived gauges and advance "captured" and "skipped" from a snapshot."""
        for status in BACKLOG_STATUSES:
            self.backlog.labels(status=status.value).set(snapshot.counts.get(status.value, 0))
        oldest = snapshot.oldest_waiting_ms
        self.oldest_pending_age.set(0 if oldest is None else max(0, snapshot.taken_ms - oldest) / 1000)
        self.spool_bytes.set(snapshot.spool_bytes)
        self.spool_max_bytes.set(snapshot.max_bytes)
        self.parked_devices.set(snapshot.parked_devices)
        self.sessions_active.set(snapshot.sessions_active)
        self._advance("captured", sum(snapshot.counts.values()))
        self._advance("skipped", snapshot.skipped)
        self.audio_clips.set(snapshot.clips[0])
        self.audio_clip_bytes.set(snapshot.clips[1])
        self._advance("clips:box_full", snapshot.clips[2], self.audio_skipped.labels(reason="box_full"))
        self._advance("clips:unreadable", snapshot.clips[3], self.audio_skipped.labels(reason="unreadable"))
        if snapshot is not self._applied:  # a cached snapshot applied again observes nothing twice
            self._applied = snapshot
            self.observe_turns(snapshot.measured)
        self._apply_preloads(snapshot.preloads)
        self._set_lag(snapshot.taken_ms)

    def observe_turns(self, measured: tuple[TurnMeta, ...]) -> None:
        """Put each turn's measurements into the per-turn histograms (in seconds)."""
        for meta in measured:
            for key, histogram in self.per_turn.items():
                if key in meta.metrics:
                    histogram.observe(meta.metrics[key] / 1000)

    def _apply_preloads(self, preloads: tuple[PreloadCount, ...]) -> None:
        """Job processes record each session's memory read in the spool; count what is new."""
        by_outcome: dict[str, int] = {}
        for count in preloads:
            by_outcome[count.outcome] = by_outcome.get(count.outcome, 0) + count.sessions
        for outcome, total in by_outcome.items():
            self._advance(f"preload:{outcome}", total, self.memory_preloads.labels(outcome=outcome))
        self._advance("preloaded_turns", sum(c.turns for c in preloads), self.memory_turns_preloaded)
        self._advance("fallbacks", sum(c.sessions for c in preloads if c.fell_back), self.memory_fallbacks)

    def _advance(self, event: str, total: int, counter: Counter | None = None) -> None:
        # The spool's totals shrink when retention prunes; a counter only moves on by growth.
        growth = total - self._seen.get(event, 0)
        if growth > 0:
            (counter or self.turns.labels(event=event)).inc(growth)
        self._seen[event] = total

    def render(self) -> bytes:
        """The registry in Prometheus text format."""
        return generate_latest(self.registry)


@dataclass(frozen=True)
class SpoolSnapshot:
    """What the spool holds at one moment: turn counts by status, skips, sessions, size."""

    counts: dict[str, int] = field(default_factory=dict)
    skipped: int = 0
    sessions_active: int = 0
    oldest_waiting_ms: int | None = None
    spool_bytes: int = 0
    taken_ms: int = 0
    measured: tuple[TurnMeta, ...] = ()  # turns sealed with measurements since the last read
    preloads: tuple[PreloadCount, ...] = ()  # memory reads at session starts, recorded by job processes
    parked_devices: int = 0
    max_bytes: int = 0  # the cap (0: none)
    clips: tuple[int, int, int, int] = (0, 0, 0, 0)  # audio clips: held, their bytes, skipped full, unreadable

    @property
    def waiting(self) -> int:
        """Turns waiting for delivery (pending or parked)."""
        return sum(self.counts.get(s.value, 0) for s in WAITING)


class SpoolStats:
    """Spool-wide figures for metrics, status and readiness, read on a connection of its own.

    The async methods run the queries in a thread (a big spool takes a while to count, and
    a busy lock can wait) and reuse a result younger than ``max_age`` seconds.
    """

    def __init__(self, spool_path: str | Path, *, max_bytes: int | None = None,
                 busy_timeout_ms: int = 2000, max_age: float = 1.0) -> None:
        self._spool = open_spool(spool_path, max_bytes=max_bytes, busy_timeout_ms=busy_timeout_ms)
        self.max_bytes = max_bytes or 0
        self._lock = threading.Lock()  # one query at a time on this connection
        self._max_age = max_age
        self._cached: dict[str, tuple[float, object]] = {}
        # Turns stored before this process started are not this process's to observe.
        self._measured_after = self._spool.last_turn_position()
        self._observed: set[int] = set()  # sealed turns seen above the mark (an older one is open)

    async def snapshot(self) -> SpoolSnapshot:
        """A recent snapshot, read in a thread when the cached one is too old."""
        return await self._fresh("snapshot", self.read)

    async def writable(self) -> str | None:
        """A recent write probe (None: writable), run in a thread when too old."""
        return await self._fresh("writable", self.probe_write)

    async def _fresh(self, name: str, read):
        taken, value = self._cached.get(name, (float("-inf"), None))
        if time.monotonic() - taken > self._max_age:
            value = await asyncio.to_thread(read)
            self._cached[name] = (time.monotonic(), value)
        return value

    def read(self) -> SpoolSnapshot:
        """Count what the spool holds now."""
        with self._lock:
            counts = self._spool.status_counts()
            active, skipped, oldest = self._spool.totals(WAITING)
            parked = self._spool.devices_with([TurnStatus.PARKED]) if counts.get("parked") else 0
            return SpoolSnapshot(counts=counts, skipped=int(skipped), sessions_active=int(active),
                                 oldest_waiting_ms=oldest, spool_bytes=self._spool.size_bytes(),
                                 taken_ms=time.time_ns() // 1_000_000, measured=self._newly_measured(),
                                 preloads=tuple(SpoolMemory(self._spool).preload_counts()),
                                 parked_devices=parked, max_bytes=self.max_bytes, clips=self._clips())

    def _clips(self) -> tuple[int, int, int, int]:
        store = ClipStore(self._spool)
        return (*store.totals(), store.counter(CLIPS_SKIPPED_FULL), store.counter(CLIPS_UNREADABLE))

    def _newly_measured(self) -> tuple[TurnMeta, ...]:
        """Measured turns sealed since the last read, each returned once."""
        rows, lowest_open = self._spool.measured_turns(self._measured_after)
        fresh = tuple(meta for position, meta in rows if position not in self._observed)
        self._observed.update(position for position, _ in rows)
        # Move the mark up to the oldest turn still open: everything below it is sealed for good.
        newest = max((position for position, _ in rows), default=self._measured_after)
        mark = newest if lowest_open is None else min(newest, lowest_open - 1)
        self._measured_after = max(self._measured_after, mark)
        self._observed = {p for p in self._observed if p > self._measured_after}
        return fresh

    def probe_write(self) -> str | None:
        """Commit one tiny write; None when the spool takes it, else why not."""
        try:
            with self._lock:
                if self._full():
                    return "spool is full: new turns are refused"
            with self._lock:
                self._spool.set_meta(READY_PROBE_KEY, str(time.time_ns() // 1_000_000))
        except Exception as error:  # noqa: BLE001 - any failure means "not writable", with why
            return f"spool not writable: {error}"
        return None

    def _full(self) -> bool:
        return self._spool.is_full()  # as the spool itself judges it

    def close(self) -> None:
        """Close the connection."""
        with self._lock:
            self._spool.close()
