"""The local operations endpoint: /healthz, /readyz and /metrics over aiohttp.

/healthz says whether the process and its loops are alive (for restarts); /readyz says whether
it can do its job now: the spool takes writes, the Manager answers and accepts our secret, and
(for ``voicelog start``) the LiveKit worker is registered (for load balancers and dashboards).
Both answer JSON, 200 or 503 with a reason.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import asdict, dataclass

import structlog
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST

from voicelog.services.domain import wall_ms
from voicelog.services.ops._metrics import Metrics, SpoolStats
from voicelog.services.shipping import DeliveryGate
from voicelog.services.shipping.manager import DeliveryResult, Outcome

log = structlog.get_logger("voicelog.http")
# Longest a readiness answer may reuse a Manager probe; shorter if the auth probe is faster.
MANAGER_PROBE_TTL = 5.0


@dataclass(frozen=True)
class ManagerState:
    """The Manager as last seen: did it answer, does it accept our secret, and why not."""

    configured: bool
    reachable: bool
    secret_accepted: bool
    reason: str
    checked_ms: int

    @property
    def healthy(self) -> bool:
        """Delivery can proceed (or there is nothing to deliver to)."""
        return not self.configured or (self.reachable and self.secret_accepted)

    def to_dict(self) -> dict[str, object]:
        """The fields, for JSON answers."""
        return asdict(self)


class ManagerHealth:
    """Cheap, cached knowledge of the Manager: the shipper's auth gate plus a secret probe."""

    def __init__(self, check_secret: Callable[[], Awaitable[DeliveryResult]] | None,
                 gate: DeliveryGate | None, *, ttl: float = MANAGER_PROBE_TTL,
                 metrics: Metrics | None = None,
                 last_delivery_ms: Callable[[], int | None] = lambda: None) -> None:
        self._check_secret, self._gate, self._ttl = check_secret, gate, ttl
        self._metrics, self._last_delivery_ms = metrics, last_delivery_ms
        self._last: ManagerState | None = None
        self._last_probe = float("-inf")
        self._gate_was_closed = False
        self._probing: asyncio.Task[ManagerState] | None = None

    async def state(self, max_age: float | None = None) -> ManagerState:
        """The Manager's state, probing it when what we know is older than ``max_age`` (TTL)."""
        max_age = self._ttl if max_age is None else max_age
        known = self.current()
        if known is not None and (not known.configured or not self._gate_open()
                                  or time.monotonic() - self._last_probe < max_age):
            return known
        delivered = self._last_delivery_ms()
        if delivered is not None and wall_ms() - delivered < max_age * 1000:
            # A delivery just succeeded: that is proof enough, and costs the Manager nothing.
            return self._record(ManagerState(True, True, True, "delivering", wall_ms()))
        if self._probing is None:
            self._probing = asyncio.create_task(self._probe(), name="voicelog-manager-probe")
        try:
            return await asyncio.shield(self._probing)
        finally:
            if self._probing is not None and self._probing.done():
                self._probing = None

    def current(self) -> ManagerState | None:
        """What is known without asking the Manager (None before the first probe)."""
        if self._check_secret is None:
            return ManagerState(False, False, False, "manager_api.url is not set", wall_ms())
        if not self._gate_open():
            # The shipper was refused and probes by itself: no need to ask again.
            reason = (self._gate.describe() if self._gate else None) or "secret refused"
            self._gate_was_closed = True
            secret_refused = self._gate is None or self._gate.closed_by is not Outcome.MISCONFIGURED
            return self._record(ManagerState(True, secret_refused, not secret_refused, reason, wall_ms()))
        if self._gate_was_closed:
            # The gate reopens only on the shipper's probe seeing the secret accepted.
            self._gate_was_closed = False
            self._last_probe = time.monotonic()
            return self._record(ManagerState(True, True, True, "secret accepted", wall_ms()))
        return self._last

    async def aclose(self) -> None:
        """Cancel a probe still running."""
        if self._probing is not None:
            self._probing.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._probing

    def _gate_open(self) -> bool:
        return self._gate is None or self._gate.is_open

    async def _probe(self) -> ManagerState:
        result = await self._check_secret()
        self._last_probe = time.monotonic()
        accepted = result.outcome is Outcome.DELIVERED
        # A 401 envelope proves the Manager answered; anything else short of success means
        # delivery cannot happen now (down, proxy errors, garbage answers).
        reachable = accepted or result.outcome is Outcome.UNAUTHORIZED
        state = ManagerState(True, reachable, accepted,
                             "secret accepted" if accepted else result.reason, wall_ms())
        return self._record(state)

    def _record(self, state: ManagerState) -> ManagerState:
        self._last = state
        if self._metrics is not None:
            self._metrics.manager_reachable.set(int(state.reachable))
            self._metrics.manager_auth_ok.set(int(state.secret_accepted or not state.configured))
        return state


Liveness = Callable[[], dict[str, str | None]]


class OpsHttpServer:
    """Serves /healthz, /readyz and /metrics on a local address, and the apps mounted beside them.

    ``mounts`` maps a path prefix to an aiohttp application built elsewhere (the /v1 API): the
    operations side serves it without knowing what it does.
    """

    def __init__(self, listen: str, *, metrics: Metrics, stats: SpoolStats,
                 manager: ManagerHealth, liveness: Liveness,
                 last_delivery_ms: Callable[[], int | None] = lambda: None,
                 mounts: Mapping[str, web.Application] | None = None,
                 livekit: Callable[[], dict[str, object]] | None = None) -> None:
        self.host, port = listen.rsplit(":", 1)
        self.port = int(port)
        self._metrics, self._stats, self._manager = metrics, stats, manager
        self._livekit = livekit  # the worker's registration, for `voicelog start` only
        self._liveness, self._last_delivery_ms = liveness, last_delivery_ms
        self._mounts = dict(mounts or {})
        self._runner: web.AppRunner | None = None

    async def start(self) -> str:
        """Listen; return the bound ``host:port`` (the port is picked when configured as 0)."""
        app = web.Application()
        app.router.add_get("/healthz", self.healthz)
        app.router.add_get("/readyz", self.readyz)
        app.router.add_get("/metrics", self.metrics)
        for prefix, mounted in self._mounts.items():
            app.add_subapp(prefix, mounted)
        self._runner = web.AppRunner(app, handle_signals=False, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host.strip("[]"), self.port)
        await site.start()
        self.port = self._runner.addresses[0][1]
        address = f"{self.host}:{self.port}"
        log.info("http_listening", address=address)
        return address

    async def stop(self) -> None:
        """Stop listening."""
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def healthz(self, _: web.Request) -> web.Response:
        """200 while every loop of the daemon is alive; 503 naming the ones that are not."""
        checks = self._liveness()
        problems = {name: why for name, why in checks.items() if why}
        body = {"status": "unhealthy" if problems else "ok",
                "checks": {name: why or "ok" for name, why in checks.items()}}
        if problems:
            body["reason"] = "; ".join(f"{name}: {why}" for name, why in problems.items())
        return _json(body, 503 if problems else 200)

    async def readyz(self, _: web.Request) -> web.Response:
        """200 when the spool takes writes and the Manager takes our secret; else 503 and why."""
        spool_problem, manager = await asyncio.gather(self._stats.writable(), self._manager.state())
        reasons = []
        if spool_problem:
            reasons.append(spool_problem)
        if not manager.healthy:
            reasons.append(_manager_reason(manager))
        checks: dict[str, object] = {"spool": spool_problem or "ok", "manager": manager.to_dict()}
        if self._livekit is not None:
            checks["livekit"] = livekit = self._livekit()
            if not livekit["registered"]:
                reasons.append(f"livekit worker not registered: {livekit['reason']}")
        body: dict[str, object] = {"ready": not reasons, "checks": checks}
        if reasons:
            body["reason"] = "; ".join(reasons)
        return _json(body, 503 if reasons else 200)

    async def metrics(self, _: web.Request) -> web.Response:
        """The Prometheus exposition, with spool figures read fresh (at most once a second)."""
        self._metrics.apply(await self._stats.snapshot())
        last = self._last_delivery_ms()
        self._metrics.last_delivery.set(last / 1000 if last else 0)
        self._manager.current()  # refreshes the Manager gauges from the auth gate, no probe
        return web.Response(body=self._metrics.render(),
                            headers={"Content-Type": CONTENT_TYPE_LATEST})


def _manager_reason(state: ManagerState) -> str:
    if not state.reachable:
        return f"manager unreachable: {state.reason}"
    if not state.secret_accepted:
        return f"manager refuses our secret: {state.reason}"
    return f"manager unhealthy: {state.reason}"


def _json(body: dict[str, object], status: int) -> web.Response:
    return web.Response(text=json.dumps(body, ensure_ascii=False), status=status,
                        content_type="application/json")
