"""The long-running daemon: LiveKit worker and shipper side by side, stopped by signals.

First SIGTERM/SIGINT: stop taking sessions, let running ones end, flush to the Manager
within the drain timeout, exit 0; whatever was not delivered stays in the spool for the
next start. A second signal ends the wait at once (still exit 0, still nothing lost).
Beside the work itself runs the operations side (``Operations``): health/metrics HTTP,
systemd notifications, the MQTT fleet channel and the periodic prune.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.metadata
import os
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from pathlib import Path
from typing import Any

import structlog

from voicelog.agent.lifecycle import Heartbeat, StopSignals, race, stopped_within, until_done_or_hurried
from voicelog.agent.livekit_link import LinkState, LiveKitLink
from voicelog.agent.memory_writer import flush_memory, running_memory_writer
from voicelog.agent.wiring import host_spool
from voicelog.services.backup import BackupWriter
from voicelog.services.config import Durability, Settings
from voicelog.services.domain import ShipperLock, first_of, wall_ms
from voicelog.services.ops import (
    BACKLOG_STATUSES,
    MANAGER_PROBE_TTL,
    ManagerHealth,
    Metrics,
    Notifier,
    OpsHttpServer,
    SpoolStats,
)
from voicelog.services.shipping import Shipper, ShipSummary
from voicelog.services.shipping.manager import ManagerApiClient
from voicelog.services.spool import DeliveryState

log = structlog.get_logger("voicelog.daemon")
# The shipper passes its loop every poll_interval; this many missed passes means it is stuck
# (a busy spool can hold it for the 5 s SQLite busy timeout, so never less than 15 s).
STUCK_AFTER_POLLS = 10
STUCK_AFTER_MIN = 15.0
# The first prune comes soon after start, so a box that restarts often still prunes.
FIRST_PRUNE_DELAY = 60.0
# How long closing may wait for the MQTT goodbye and other side tasks.
CLOSE_GRACE = 5.0
# How often a spool repair that waits for disk space is retried (a folder listing and a statvfs).
REPAIR_RETRY_SECONDS = 5.0


class Operations:
    """The daemon's operational side: health/metrics HTTP, systemd, MQTT fleet channel, prune."""

    def __init__(self, settings: Settings, shipper: Shipper, metrics: Metrics,
                 heartbeat: Heartbeat, livekit: LiveKitLink | None = None) -> None:
        self.settings, self.shipper, self.metrics, self.heartbeat = settings, shipper, metrics, heartbeat
        self.api = None  # the /v1 routes, when http.api_token is set
        self.livekit = livekit
        history = settings.chat_history
        self.notifier = Notifier()
        self.stats = SpoolStats(history.spool_file, max_bytes=history.spool_max_mb * 1024 * 1024)
        self.manager = ManagerHealth(
            shipper.client.check_secret if settings.manager_api.url else None, shipper.gate,
            ttl=min(MANAGER_PROBE_TTL, settings.shipper.auth_retry_interval), metrics=metrics,
            last_delivery_ms=lambda: shipper.last_delivery_ms)
        self.http: OpsHttpServer | None = None
        self._watched: dict[str, asyncio.Task[Any]] = {}
        self._tasks: list[asyncio.Task[Any]] = []
        self._stop = asyncio.Event()
        self.fleet: Any = None  # the MQTT FleetChannel, when enabled

    async def start(self, stop: asyncio.Event) -> None:
        """Start the HTTP endpoint (when configured) and the side tasks."""
        self._stop = stop
        if self.livekit is not None:
            self.metrics.livekit().set(0)
        if self.settings.http.listen:
            await self._serve_http()
        self._spawn(self.notifier.keep_alive(self.healthy, stop), "voicelog-watchdog")
        self._spawn(self._announce_stop(stop), "voicelog-stop-notice")
        self._spawn(self._prune_periodically(stop), "voicelog-prune")
        self._spawn(self._repair_when_space_returns(stop), "voicelog-repair")
        if self.settings.mqtt.enabled:
            self.fleet = self._fleet_channel()
            self.watch("mqtt", self._spawn(self.fleet.run(stop), "voicelog-mqtt"))

    async def _serve_http(self) -> None:
        from voicelog.services.api import build_api

        self.api = build_api(self.settings)
        http = OpsHttpServer(self.settings.http.listen, metrics=self.metrics, stats=self.stats,
                             manager=self.manager, liveness=self.liveness,
                             last_delivery_ms=lambda: self.shipper.last_delivery_ms,
                             mounts={"/v1": self.api.app} if self.api else None,
                             livekit=self.livekit.readiness if self.livekit else None)
        try:
            await http.start()
        except OSError as error:
            # Delivery matters more than observability: carry on without the endpoint.
            log.error("http_listen_failed_running_without_health_endpoint",
                      listen=self.settings.http.listen, error=error.strerror or str(error))
            return
        self.http = http

    def watch(self, name: str, task: asyncio.Task[Any]) -> None:
        """Report ``task`` as dead in /healthz (and withhold the watchdog) if it ends early."""
        self._watched[name] = task

    def liveness(self) -> dict[str, str | None]:
        """Each loop of the daemon and what is wrong with it (None: alive)."""
        checks: dict[str, str | None] = {}
        for name, task in self._watched.items():
            checks[name] = "ended" if task.done() and not self._stop.is_set() else None
        if self.fleet is not None and checks.get("mqtt") is None:
            checks["mqtt_commands"] = self.fleet.commands_problem()
        limit = max(STUCK_AFTER_MIN, STUCK_AFTER_POLLS * self.settings.shipper.poll_interval)
        if "shipper" in checks and checks["shipper"] is None and self.heartbeat.age() > limit:
            checks["shipper"] = f"loop has not run for {self.heartbeat.age():.0f} s"
        return checks

    def healthy(self) -> bool:
        """Alive and well (while draining, always: the drain has its own time limit).

        A crashed MQTT command task restarts by itself: /healthz shows it, but it is no reason
        for the watchdog to restart the daemon (and cut the voice sessions it captures).
        """
        problems = {name: why for name, why in self.liveness().items() if why and name != "mqtt_commands"}
        return self._stop.is_set() or not problems

    def serving(self, status: str) -> None:
        """Tell systemd we are up (READY=1) and what we are doing, without claiming more."""
        self.notifier.ready(f"{status}{self._health_hint()}")

    def ready(self, doing: str) -> None:
        """We do our whole job now: say so to systemd and in the log."""
        self.notifier.status(f"{doing}{self._health_hint()}")
        log.info("daemon_ready", doing=doing)

    def livekit_changed(self, state: LinkState, doing: str) -> None:
        """Registration with LiveKit came or went: readiness, metrics and status follow it."""
        self.metrics.livekit().set(int(state.registered))
        if state.registered:
            self.ready(doing)
        else:
            self.notifier.status(f"waiting for LiveKit: {state.reason}{self._health_hint()}")

    def _health_hint(self) -> str:
        return f"; health on http://{self.http.host}:{self.http.port}" if self.http else ""

    async def aclose(self) -> None:
        """Stop the side tasks (the MQTT goodbye gets a short grace) and the HTTP server."""
        self._stop.set()
        if self._tasks:
            await asyncio.wait(self._tasks, timeout=CLOSE_GRACE)
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self.http is not None:
            await self.http.stop()
        if self.api is not None:
            await self.api.aclose()
        await self.manager.aclose()
        self.stats.close()
        self.notifier.close()
        summary = self.shipper.summary
        log.info("daemon_stopped", delivered=summary.delivered, parked=summary.parked,
                 dead_lettered=summary.dead_lettered)

    def _spawn(self, work: Coroutine[Any, Any, Any], name: str) -> asyncio.Task[Any]:
        task = asyncio.create_task(work, name=name)
        self._tasks.append(task)
        return task

    async def _announce_stop(self, stop: asyncio.Event) -> None:
        await stop.wait()
        self.notifier.stopping(f"draining, up to {self.settings.shipper.drain_timeout:g} s")

    async def _prune_periodically(self, stop: asyncio.Event) -> None:
        try:
            from voicelog.services.privacy import prune
        except ImportError:
            log.info("prune_unavailable_retention_module_missing")
            return
        interval = self.settings.chat_history.prune_interval
        delay = min(FIRST_PRUNE_DELAY, interval)
        while not await stopped_within(stop, delay):
            delay = interval
            self.metrics.apply(await self.stats.snapshot())  # count growth before rows go
            try:
                await asyncio.to_thread(self._prune_once, prune)
            except Exception:  # a failed prune is retried at the next interval
                log.exception("prune_failed")

    async def _repair_when_space_returns(self, stop: asyncio.Event) -> None:
        """Merge back a damaged spool set aside on a full disk, once there is room (no restart needed)."""
        from voicelog.services.spool import pending_repairs

        backup_dir = Path(self.settings.chat_history.backup_dir)
        while not await stopped_within(stop, REPAIR_RETRY_SECONDS):
            if not pending_repairs(backup_dir):
                continue
            try:
                if await asyncio.to_thread(self._repair_once):
                    self.shipper.wake()  # the merged turns are deliverable now
            except Exception:  # retried at the next interval
                log.exception("deferred_repair_failed")

    def _repair_once(self) -> bool:
        from voicelog.services.spool import finish_deferred_repairs

        # Its own short-lived connection (the shipper's is busy on the loop); the daemon's
        # checkpointer already runs, so none here.
        spool = host_spool(self.settings, checkpoint=False)
        try:
            return bool(finish_deferred_repairs(spool, wall_ms()))
        finally:
            spool.close()

    def _prune_once(self, prune: Callable[..., Any]) -> None:
        # Its own connection: the shipper's is used by the event loop meanwhile.
        from voicelog.services.memory import MemoryEraser
        from voicelog.services.privacy import expiring_undelivered

        spool = host_spool(self.settings, checkpoint=False)  # the daemon's checkpointer runs already
        history = self.settings.chat_history
        try:
            spool.adopt_orphans(wall_ms())  # turns an older voicelog left without a session row
            expiring = expiring_undelivered(spool, history, now_ms=wall_ms())
            # Undelivered turns are kept max_undelivered_days, then dropped: say so loudly first.
            report = prune(spool, history.backup_dir, history, now_ms=wall_ms(), include_undelivered=True,
                           memory=MemoryEraser(self.settings.memory, spool))
        finally:
            spool.close()
        if expiring:
            log.warning("undelivered_turns_expire_soon", sessions=len(expiring),
                        turns=sum(s.undelivered for s in expiring),
                        keep_days=max(history.retention_days, history.max_undelivered_days),
                        hint="deliver or export them (voicelog backups list --status pending)")
        dropped = [s for s in report.removed if s.undelivered]
        if dropped:
            log.error("undelivered_turns_dropped_after_max_undelivered_days", sessions=len(dropped),
                      turns=sum(s.undelivered for s in dropped))
        if report.removed or report.errors:
            log.info("pruned", sessions=len(report.removed), turns=report.turns_removed,
                     kept_undelivered=len(report.kept_undelivered), errors=report.errors[:5])

    def _fleet_channel(self) -> Any:
        from voicelog.services.ops import FleetChannel, FleetCommands, add_secrets

        mqtt = self.settings.mqtt
        add_secrets(mqtt.password.reveal(), mqtt.command_key.reveal())
        commands = FleetCommands(self.shipper.delivery, self.shipper.wake)
        return FleetChannel(mqtt, status=self._fleet_status, version=_version(), commands=commands,
                            metrics=self.metrics)

    async def _fleet_status(self) -> dict[str, Any]:
        snapshot = await self.stats.snapshot()
        manager = await self.manager.state(max_age=self.settings.mqtt.status_interval)
        oldest = snapshot.oldest_waiting_ms
        return {"backlog": {s.value: snapshot.counts.get(s.value, 0) for s in BACKLOG_STATUSES},
                "oldest_pending_age_s": round(max(0, snapshot.taken_ms - oldest) / 1000, 1)
                if oldest else None,
                "sessions_active": snapshot.sessions_active,
                "last_delivery_ms": self.shipper.last_delivery_ms,
                "manager": {"configured": manager.configured, "reachable": manager.reachable,
                            "secret_accepted": manager.secret_accepted, "reason": manager.reason}}


def build_shipper(settings: Settings, *, metrics: Metrics | None = None,
                  max_attempts: int | None = None,
                  now: Callable[[], int] = wall_ms) -> tuple[Shipper, Callable[[], Awaitable[None]]]:
    """A shipper over the host spool, and the coroutine function that releases its resources."""
    spool = host_spool(settings)
    lock = ShipperLock(spool.path)
    lock.acquire()
    client = ManagerApiClient(settings.manager_api)
    history = settings.chat_history
    shipper = Shipper(DeliveryState(spool), client, settings, observer=metrics, max_attempts=max_attempts, now=now,
                      backups=BackupWriter(history.backup_dir, fsync=history.durability == Durability.POWER))

    async def release() -> None:
        await client.aclose()
        spool.close()
        lock.release()

    return shipper, release


@contextlib.asynccontextmanager
async def _operated_shipper(settings: Settings, signals: StopSignals, livekit: LiveKitLink | None = None,
                            ) -> AsyncIterator[tuple[Shipper, Operations]]:
    """A shipper with the operations side started; both stopped and released on exit."""
    signals.install()
    metrics, heartbeat = Metrics(), Heartbeat()
    shipper, release = build_shipper(settings, metrics=metrics, now=heartbeat)
    ops = Operations(settings, shipper, metrics, heartbeat, livekit)
    try:
        await ops.start(signals.stop)
        # The memory writer stops last, after sessions and delivery have drained, with a final flush.
        async with running_memory_writer(settings, shipper.delivery.spool, observer=metrics) as writer:
            if writer is not None:
                ops.watch("memory_writer", writer[1])
            yield shipper, ops
    finally:
        signals.stop.set()
        await ops.aclose()
        await release()


async def run_shipper(settings: Settings, signals: StopSignals | None = None) -> ShipSummary:
    """Run the shipper alone, with the operations side, until a stop signal; then drain."""
    signals = signals or StopSignals()
    async with _operated_shipper(settings, signals) as (shipper, ops):
        task = asyncio.create_task(shipper.run(signals.stop), name="voicelog-shipper")
        ops.watch("shipper", task)
        ops.serving("delivering")
        ops.ready("delivering")
        await until_done_or_hurried(task, signals)
        return shipper.summary


async def ship_once(settings: Settings, max_attempts: int, deadline: float | None = None) -> ShipSummary:
    """``ship --once``: deliver what is deliverable now (bounded retries, a deadline), then push memory.

    The summary says whether every sealed turn reached Redis (``memory_flushed``; None: no Redis).
    """
    shipper, release = build_shipper(settings, max_attempts=max_attempts)
    try:
        summary = await shipper.run_once(deadline)
        summary.memory_flushed = await flush_memory(settings, shipper.delivery.spool)
        return summary
    finally:
        await release()


async def run_daemon(settings: Settings, server: Any) -> int:
    """Run the LiveKit worker and the shipper until signalled; drain both; return 0.

    "Ready" (the ``daemon_ready`` line, /readyz, the systemd status) waits for the worker's
    registration with LiveKit: before it, no device session can reach this box. With no
    ``manager_api.url`` nothing is delivered and no shipper loop runs.
    """
    signals = StopSignals()
    delivering = bool(settings.manager_api.url)
    doing = "capturing and delivering" if delivering else "capturing; delivery off (no manager_api.url)"
    link = LiveKitLink(os.environ.get("LIVEKIT_URL", ""), stopping=signals.stop.is_set)
    async with _operated_shipper(settings, signals, link) as (shipper, ops):
        link.on_change = lambda state: ops.livekit_changed(state, doing)
        link.attach(server)
        try:
            return await _serve_sessions(settings, server, shipper, ops, signals, delivering, link)
        finally:
            link.detach()


async def _serve_sessions(settings: Settings, server: Any, shipper: Shipper, ops: Operations,
                          signals: StopSignals, delivering: bool, link: LiveKitLink) -> int:
    worker = asyncio.create_task(server.run(), name="voicelog-livekit-worker")
    shipping = asyncio.create_task(shipper.run(signals.stop), name="voicelog-shipper") if delivering else None
    ops.watch("livekit_worker", worker)
    if shipping is not None:
        ops.watch("shipper", shipping)
    waiting = f"waiting for LiveKit registration at {link.state.url}"
    ops.serving(f"delivering; {waiting}" if delivering else waiting)
    log.info("daemon_started_waiting_for_livekit", url=link.state.url,
             delivery="on" if delivering else "off (no manager_api.url)")
    await first_of(worker, signals.stop)
    if worker.done() and not signals.stop.is_set():
        log.error("livekit_worker_exited", url=link.state.url, error=repr(worker.exception()))
        signals.stop.set()
        if shipping is not None:
            await until_done_or_hurried(shipping, signals)  # still flush what was captured
        return 1
    with contextlib.suppress(TimeoutError):
        await race(server.drain(settings.shipper.drain_timeout or None), signals.hurry)
    await server.aclose()
    if shipping is not None:
        await until_done_or_hurried(shipping, signals)
    return 0


def _version() -> str:
    try:
        return importlib.metadata.version("voicelog")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"
