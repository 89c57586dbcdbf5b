"""Prometheus metrics for the daemon; one registry per process, passed in, never global.

Delivery outcomes are counted where they happen (the shipper, in this process). Capture
happens in job processes, so "captured", "skipped", the backlog and the spool size are read
from the spool itself (``SpoolStats``) on each scrape and applied with ``Metrics.apply``.
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

from voicelog.services.domain import UNDELIVERED, WAITING, TurnStatus
from voicelog.services.spool import open_spool

BACKLOG_STATUSES = UNDELIVERED
READY_PROBE_KEY = "ready_probe_ms"


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
        self.request_seconds = Histogram("voicelog_manager_request_seconds",
                                         "How long one request to the Manager took, answered or not",
                                         registry=r,
                                         buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10))
        self.parked_devices = Gauge("voicelog_parked_devices", "Devices (MACs) with parked turns", registry=r)
        self.spool_max_bytes = Gauge("voicelog_spool_max_bytes", "The spool's size cap (spool_max_mb)",
                                     registry=r)
        self._livekit: Gauge | None = None
        self.manager_auth_ok.set(1)
        for event in ("captured", "delivered", "parked", "dead_letter", "skipped"):
            self.turns.labels(event=event)  # present from the first scrape, at 0
        self._seen: dict[str, int] = {}

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

    def _advance(self, event: str, total: int) -> None:
        # The spool's totals shrink when retention prunes; a counter only moves on by growth.
        growth = total - self._seen.get(event, 0)
        if growth > 0:
            self.turns.labels(event=event).inc(growth)
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
    parked_devices: int = 0
    max_bytes: int = 0  # the cap (0: none)

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
                                 taken_ms=time.time_ns() // 1_000_000, parked_devices=parked,
                                 max_bytes=self.max_bytes)

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
