"""ReferenceManager: a loopback Manager API over real MariaDB, with knobs to inject faults."""

import asyncio
import functools
import re
from collections import Counter
from dataclasses import dataclass
from typing import Awaitable, Callable

from aiohttp import web

from tests.kits.mariadb import LOCAL, MariaDB

from .endpoints import Endpoints
from .faults import GARBAGE_KINDS, FaultPlan, reset_connection
from .store import ChatStore

REPORT_TIME_UNITS = ("ms", "s")
_MAX_BODY_BYTES = 64 * 1024 * 1024  # Tomcat does not cap JSON bodies; audio can be large


@dataclass(frozen=True)
class _Route:
    """One contract route, as the path after the context; device routes take the secret and faults."""

    method: str
    pattern: re.Pattern
    handler: str
    device: bool


_ROUTES = (
    _Route("POST", re.compile(r"/agent/chat-history/report"), "report", True),
    _Route("POST", re.compile(r"/agent/chat-history/session"), "session", True),
    _Route("GET", re.compile(r"/agent/device/(?P<mac>[^/]+)/agent-id"), "agent_id", True),
    _Route("GET", re.compile(r"/agent/(?P<agent_id>[^/]+)/sessions"), "sessions", False),
    _Route("GET", re.compile(r"/agent/(?P<agent_id>[^/]+)/chat-history/(?P<session_id>[^/]+)"),
           "chat_history", False),
)


class ReferenceManager:
    """A stand-in for the Java Manager API that follows the contract, quirks included.

    Knobs are plain attributes read on every request (`secret`, `report_time_unit`,
    `honour_idempotency`, `context`, `delay_seconds`) plus the fault methods below.
    `content_type` ("varchar" | "text") only matters when the tables are first created.
    Faults, the delay and the secret apply to the device-server routes (report, session,
    agent-id); the console routes are always plain. `requests` counts device requests as
    "received" and then by outcome: stored, not_stored (conf 0), unknown_mac, replayed,
    agent_id, unauthorized, invalid (10034), error (500), fault_http, fault_code500,
    rate_limited, garbage, reset; console reads count as "console".
    """

    def __init__(
        self, database: str, *, host: str = "127.0.0.1", port: int = 0, context: str = "/xiaozhi",
        secret: str = "test-secret", report_time_unit: str = "ms", honour_idempotency: bool = False,
        content_type: str = "varchar", mariadb: MariaDB = LOCAL, pool_size: int = 12,
        shutdown_grace_seconds: float = 0.25,
    ) -> None:
        self.database, self.host, self.port = database, host, port
        self.context = context
        self.secret = secret
        self.report_time_unit = report_time_unit
        self.honour_idempotency = honour_idempotency
        self.content_type = content_type
        self.delay_seconds = 0.0
        self.requests: Counter = Counter()
        self.faults = FaultPlan()
        self._mariadb, self._pool_size = mariadb, pool_size
        self._grace = shutdown_grace_seconds
        self._store: ChatStore | None = None
        self._endpoints: Endpoints | None = None
        self._runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        """The base URL clients are configured with, context path included."""
        return f"http://{self.host}:{self.port}{self.context}"

    @property
    def context(self) -> str:
        """The context path, "" or "/name" (no trailing slash)."""
        return self._context

    @context.setter
    def context(self, value: str) -> None:
        value = value.strip("/")
        self._context = f"/{value}" if value else ""

    @property
    def report_time_unit(self) -> str:
        """How reportTime is read: "ms" (upstream since 2026-04-20) or "s" (older, toy fork)."""
        return self._report_time_unit

    @report_time_unit.setter
    def report_time_unit(self, value: str) -> None:
        if value not in REPORT_TIME_UNITS:
            raise ValueError(f"report_time_unit must be one of {REPORT_TIME_UNITS}, not {value!r}")
        self._report_time_unit = value

    @property
    def is_up(self) -> bool:
        """Whether the server is listening."""
        return self._runner is not None

    async def start(self) -> "ReferenceManager":
        """Open the pool, create missing tables and start listening."""
        self._store = await ChatStore.open(self._mariadb, self.database, self._pool_size)
        await self._store.create_tables(self.content_type)
        self._endpoints = Endpoints(self._store, self)
        await self.come_up()
        return self

    async def stop(self) -> None:
        """Stop listening and close the pool."""
        await self.go_down()
        if self._store is not None:
            await self._store.close()
            self._store = None

    async def __aenter__(self) -> "ReferenceManager":
        return await self.start()

    async def __aexit__(self, *exc_info) -> None:
        await self.stop()

    async def go_down(self) -> None:
        """Stop listening and drop open connections; in-flight requests get a short grace."""
        if self._runner is not None:
            runner, self._runner = self._runner, None
            await runner.cleanup()

    async def come_up(self) -> None:
        """Listen again, on the same port as before (the first listen picks it when port is 0)."""
        if self._runner is not None:
            return
        app = web.Application(client_max_size=_MAX_BODY_BYTES)
        app.router.add_route("*", "/{tail:.*}", self._dispatch)
        runner = web.AppRunner(app, handle_signals=False, access_log=None, shutdown_timeout=self._grace)
        await runner.setup()
        try:
            await web.TCPSite(runner, self.host, self.port, reuse_address=True).start()
        except BaseException:
            await runner.cleanup()
            raise
        self.port = runner.addresses[0][1]
        self._runner = runner

    async def bind_device(self, mac: str, agent_id: str = "agent1", chat_history_conf: int = 1) -> None:
        """Bind `mac` (exact string) to `agent_id`, and set that agent's chat_history_conf."""
        await self._require_store().bind(mac, agent_id, chat_history_conf)

    async def unbind_device(self, mac: str) -> None:
        """Forget the device `mac`, so its reports answer data false."""
        await self._require_store().unbind(mac)

    def fail_http(self, status: int, count: int = 1, *, after: int = 0, location: str | None = None) -> None:
        """Answer `count` device requests, once `after` more passed, with HTTP `status` (e.g. 502,
        or 302 to `location`), storing nothing."""
        self.faults.arm("http", count, after=after, status=status, location=location)

    def reject(self, count: int = 1, *, code: int = 10034, after: int = 0) -> None:
        """Refuse `count` device requests' content (HTTP 200, envelope `code`), once `after` more passed."""
        self.faults.arm("verdict", count, after=after, code=code)

    def fail_code500(self, count: int = 1) -> None:
        """Answer the next `count` device requests with HTTP 200 and a code 500 envelope, storing nothing."""
        self.faults.arm("code500", count)

    def rate_limit(self, count: int = 1, retry_after_seconds: float = 1) -> None:
        """Answer the next `count` device requests with HTTP 429 and Retry-After, storing nothing."""
        self.faults.arm("rate_limit", count, retry_after_seconds=retry_after_seconds)

    def reset_after_commit(self, count: int = 1) -> None:
        """Handle the next `count` device requests fully (commit included), then reset the TCP connection."""
        self.faults.arm("reset_after_commit", count)

    def garbage(self, count: int = 1, kind: str = "non_json") -> None:
        """Answer the next `count` device requests with an unusable HTTP 200 body, storing nothing."""
        if kind not in GARBAGE_KINDS:
            raise ValueError(f"kind must be one of {GARBAGE_KINDS}, not {kind!r}")
        self.faults.arm("garbage", count, kind=kind)

    def clear_faults(self) -> None:
        """Disarm every armed fault and the delay."""
        self.faults.clear()
        self.delay_seconds = 0.0

    async def rows(self, session_id: str | None = None) -> list[dict]:
        """Stored chat rows (optionally of one session) ordered by created_at, id."""
        return await self._require_store().rows(session_id)

    async def audio(self, audio_id: str) -> bytes | None:
        """The audio bytes stored under `audio_id`, or None."""
        return await self._require_store().audio(audio_id)

    def _require_store(self) -> ChatStore:
        if self._store is None:
            raise RuntimeError("ReferenceManager is not started")
        return self._store

    async def _dispatch(self, request: web.Request) -> web.StreamResponse:
        """Route by the path after the (live) context, as the Java app's servlet mapping does."""
        path = request.path
        if self.context and not path.startswith(self.context + "/"):
            return _not_found(request)
        tail = path[len(self.context):]
        for route in _ROUTES:
            match = route.pattern.fullmatch(tail)
            if match is None:
                continue
            if request.method != route.method:
                return web.json_response({"status": 405, "error": "Method Not Allowed", "path": path}, status=405)
            handle = getattr(self._endpoints, route.handler)
            work = functools.partial(handle, request, **match.groupdict())
            if route.device:
                return await self._with_faults(request, work)
            return await self._endpoints.guarded(work)
        return _not_found(request)

    async def _with_faults(self, request: web.Request, work: Callable[[], Awaitable[web.Response]]) -> web.Response:
        """Serve a device request through the armed faults and the delay."""
        self.requests["received"] += 1
        broken = self.faults.answer_before_handler()
        if broken is not None:
            outcome, response = broken
            self.requests[outcome] += 1
        else:
            response = await self._endpoints.guarded(work)
            if self.faults.take("reset_after_commit") is not None:
                self.requests["reset"] += 1
                reset_connection(request)
                return response  # never sent: the connection is gone
        if self.delay_seconds > 0:
            await asyncio.sleep(self.delay_seconds)
        return response


def _not_found(request: web.Request) -> web.Response:
    """Spring Boot's default 404 body."""
    return web.json_response({"status": 404, "error": "Not Found", "path": request.path}, status=404)
