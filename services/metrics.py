"""Prometheus metrics for the daemon; one registry per process, passed in, never global."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


class Metrics:
    """The counters, gauges and histograms voicelog exposes on /metrics."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.turns = Counter("voicelog_turns_total", "Turns by what happened to them "
                             "(captured, delivered, parked, dead_letter, skipped, lost)",
                             ["event"], registry=r)
        self.attempts = Counter("voicelog_delivery_attempts_total",
                                "Delivery attempts by outcome class", ["outcome"], registry=r)
        self.backlog = Gauge("voicelog_backlog_turns", "Turns waiting for delivery, by status",
                             ["status"], registry=r)
        self.oldest_pending_age = Gauge("voicelog_oldest_pending_age_seconds",
                                        "Age of the oldest undelivered turn", registry=r)
        self.latency = Histogram("voicelog_delivery_latency_seconds",
                                 "Capture to delivered", registry=r,
                                 buckets=(0.1, 0.5, 1, 2, 5, 10, 30, 60, 120, 300, 900, 3600))
        self.spool_bytes = Gauge("voicelog_spool_bytes", "Bytes the spool uses on disk", registry=r)
        self.sessions_active = Gauge("voicelog_sessions_active", "Device sessions being captured",
                                     registry=r)
        self.manager_auth_ok = Gauge("voicelog_manager_secret_accepted",
                                     "1 while the Manager accepts our secret", registry=r)
        self.manager_auth_ok.set(1)

    def turn_event(self, event: str, count: int = 1) -> None:
        """Count turns reaching a state."""
        if count:
            self.turns.labels(event=event).inc(count)
